"""`python -m mlp_sweep.bench load`: how long mlp_sweep.load takes over many sweeps.

A real 2-run sweep (synthetic data, 1 epoch) is the template; its first run's record, history
and Hydra files are copied into S sweeps of N runs each (seed 0..N-1, each sweep another
learning rate, so no two runs are reruns of each other), then `mlp_sweep.load(folder)` reads
them all in a fresh process, repeated; medians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlp_sweep.labels import MULTIRUN_FILE
from mlp_sweep.run.record import METRICS_FILE

TEMPLATE = [
    "-m",
    "seed=0,1",
    "data=synthetic",
    "data.n_train=200",
    "data.n_test=100",
    "trainer.epochs=1",
    "hydra/launcher=basic",
]


def fake_sweeps(template: Path, folder: Path, sweeps: int, runs: int) -> None:
    """`sweeps` sweep folders of `runs` finished runs each, from template's job 0."""
    job = template / "0"
    record = json.loads((job / METRICS_FILE).read_text())
    history = (job / "history.csv").read_bytes()
    for s in range(sweeps):
        sweep = folder / f"sweep-{s:03d}"
        sweep.mkdir(parents=True)
        shutil.copyfile(template / MULTIRUN_FILE, sweep / MULTIRUN_FILE)
        lr = round(0.001 * (s + 1), 6)
        for seed in range(runs):
            run = sweep / str(seed)
            shutil.copytree(job / ".hydra", run / ".hydra")
            record.update(seed=seed, job_num=seed, overrides=[f"seed={seed}", f"optim.lr={lr}"])
            record["params"].update({"seed": seed, "optim.lr": lr})
            (run / METRICS_FILE).write_text(json.dumps(record, indent=2))
            (run / "history.csv").write_bytes(history)


def timed_load(folder: Path) -> tuple[float, int]:
    """Seconds of mlp_sweep.load(folder) in a fresh process (imports not counted), and rows."""
    code = (
        "import sys, time; import mlp_sweep; t = time.perf_counter(); "
        "f = mlp_sweep.load(sys.argv[1]); print(time.perf_counter() - t, len(f))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True
    )
    seconds, rows = out.stdout.split()
    return float(seconds), int(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlp_sweep.bench load")
    parser.add_argument("--sweeps", type=int, default=100)
    parser.add_argument("--runs", type=int, default=100, help="runs per sweep")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlp_sweep-loadbench-") as tmp:
        work = Path(tmp)
        template = work / "template"
        subprocess.run(
            [sys.executable, "-m", "mlp_sweep", *TEMPLATE, f"hydra.sweep.dir={template}"],
            capture_output=True,
            check=True,
        )
        tic = time.perf_counter()
        fake_sweeps(template, work / "sweeps", args.sweeps, args.runs)
        made = time.perf_counter() - tic
        print(f"{args.sweeps} sweeps x {args.runs} runs written in {made:.1f} s", flush=True)
        times = []
        for i in range(args.repeats):
            seconds, rows = timed_load(work / "sweeps")
            assert rows == args.sweeps * args.runs, rows
            times.append(seconds)
            print(f"  load {i + 1}: {seconds:.2f} s, {rows} rows", flush=True)
    median = statistics.median(times)
    print(f"mlp_sweep.load over {rows} runs in {args.sweeps} sweeps: median {median:.2f} s")
    return 0
