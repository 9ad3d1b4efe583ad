"""Wall time of one sweep through the real entry point, launcher against launcher.

    python -m mlp_sweep.bench.launchers                      # README sweep: basic vs parallel, x2
    python -m mlp_sweep.bench.launchers --launchers basic,parallel,slurm \\
        --sweep model.act=relu,leaky,selu,softplus seed=0,1 --repeats 1

Each sweep is a fresh `python -m mlp_sweep -m ...` into its own folder, the launchers taking
turns so that the machine's noise falls on all of them alike; the medians, their ratio to the
first launcher, and whether every run's test_acc agrees exactly across launchers are printed.
`slurm` starts the repository's one-node test cluster (tests/cluster/slurm_cluster.py, which
needs the Debian packages of .ci/install-slurm.sh) for the benchmark and stops it after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mlp_sweep.results.summary import SUMMARY_FILE

# The checkout (the SLURM test cluster lives in its tests/).
ROOT = Path(__file__).resolve().parents[2]
README_SWEEP = ["model.act=relu,leaky,selu,softplus"]


def run_sweep(launcher: str, sweep: list[str], folder: Path, env: dict[str, str]) -> float:
    args = [sys.executable, "-m", "mlp_sweep", "-m", *sweep, f"hydra.sweep.dir={folder}"]
    args += [f"hydra/launcher={launcher}"]
    if launcher == "slurm":
        args += ["hydra.launcher.partition=debug"]
    tic = time.perf_counter()
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if result.returncode != 0:
        raise SystemExit(f"{launcher} sweep failed:\n{result.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launchers", default="basic,parallel")
    parser.add_argument("--sweep", nargs="+", default=README_SWEEP, help="the sweep's overrides")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    launchers = args.launchers.split(",")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with tempfile.TemporaryDirectory(prefix="mlp-sweep-bench-") as tmp:
        cluster = Path(tmp) / "slurm"
        if "slurm" in launchers:
            sys.path.insert(0, str(ROOT / "tests" / "cluster"))
            import slurm_cluster

            env.update(slurm_cluster.start(cluster))
        try:
            times: dict[str, list[float]] = {name: [] for name in launchers}
            accs: dict[str, list[float]] = {}
            for repeat in range(args.repeats):
                for name in launchers:
                    folder = Path(tmp) / f"{name}-{repeat}"
                    times[name].append(run_sweep(name, args.sweep, folder, env))
                    accs[name] = pd.read_csv(folder / SUMMARY_FILE)["test_acc"].tolist()
                    print(f"{name:>9} #{repeat}: {times[name][-1]:6.1f} s", flush=True)
        finally:
            if "slurm" in launchers:
                slurm_cluster.stop(cluster)
    first = statistics.median(times[launchers[0]])
    print(
        f"\nsweep: {' '.join(args.sweep)}  ({len(accs[launchers[0]])} runs, {os.cpu_count()} cpus)"
    )
    for name in launchers:
        median = statistics.median(times[name])
        print(f"{name:>9}: median {median:6.1f} s  ({median / first:.2f}x {launchers[0]})")
    same = all(accs[name] == accs[launchers[0]] for name in launchers)
    print(f"test_acc identical across launchers: {same}")


if __name__ == "__main__":
    main()
