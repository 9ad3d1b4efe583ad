"""`python -m mlp_sweep.bench sweep-overhead`: what a sweep costs around its runs.

A trivial job (50 synthetic samples, one epoch, no checkpoint) trains in ~3 ms, so a sweep of
them measures everything else: start-up, the pre-launch check, Hydra's per-job work, the
record, the summary. For each size N (default 10, 100, 1000), timed in this one process:

- check: the pre-launch check of the N jobs (mlp_sweep.cli.preflight), in process;
- plain Hydra: a minimal @hydra.main app (no config, returns 0), `-m '+seed=range(N)'`: the
  anchor, what Hydra itself costs a job;
- basic / default: `python -m mlp_sweep -m 'seed=range(N)' <trivial>` on hydra/launcher=basic
  and on the default launcher.

Each wall time is also shown per job, and as the marginal cost of a job (the slope between
two sizes, start-up left out). Plain Hydra's and basic's CPU seconds are shown too: on a
shared machine another user's work stretches the wall time of whichever command it overlaps,
and its CPU time much less. (Not the default launcher's: its workers are children of a fork
server that the command never waits for, so their CPU time never reaches this process's
count.) --repeat K runs each size K rounds of the three commands in turn and reports medians
(of ratios: the median of each round's ratio).

Then a folder of --folder-runs finished runs (copies of a real one) is summarized,
resume-scanned (`--resume` up to the point of launching) and plotted in a fresh process, which
reports its seconds and peak memory; so does a folder a tenth the size, to show how memory
grows per run.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

TRIVIAL = [
    "data=synthetic",
    "data.n_train=50",
    "data.n_test=50",
    "trainer.epochs=1",
    "trainer.checkpoint=false",
]
PLAIN_APP = """import hydra


@hydra.main(version_base="1.3", config_path=None)
def main(cfg):
    return 0


if __name__ == "__main__":
    main()
"""


KINDS = ("plain", "basic", "default")


def _run(command: list[str], cwd: Path, log: Path) -> tuple[float, float]:
    """The command's wall seconds and CPU seconds (user + system, its own and those of the
    children it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}; see {log}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu


def check_seconds(n: int, sweep_dir: Path) -> float:
    from mlp_sweep.cli.preflight import preflight
    from mlp_sweep.config import register_configs

    register_configs()
    tic = time.perf_counter()
    statuses = preflight(["-m", f"seed=range({n})", *TRIVIAL, f"hydra.sweep.dir={sweep_dir}"])
    seconds = time.perf_counter() - tic
    assert len(statuses) == n, len(statuses)
    return seconds


def sweep_sizes(sizes: list[int], work: Path, repeat: int = 1) -> list[dict[str, Any]]:
    """For each size, `repeat` rounds of plain Hydra, basic and default in turn, each into a
    fresh folder (`<kind><n>-<round>`): the medians of their wall and CPU seconds, and of each
    round's ratio to plain Hydra's."""
    app = work / "plain_app.py"
    app.write_text(PLAIN_APP)
    rows = []
    for n in sizes:
        sweep = [sys.executable, "-m", "mlp_sweep", "-m", f"seed=range({n})", *TRIVIAL]
        commands = {
            "plain": [sys.executable, str(app), "-m", f"+seed=range({n})"],
            "basic": [*sweep, "hydra/launcher=basic"],
            "default": sweep,
        }
        rounds: list[dict[str, float]] = []
        for r in range(repeat):
            got: dict[str, float] = {}
            for kind, command in commands.items():
                folder = work / f"{kind}{n}-{r}"
                wall, cpu = _run(
                    [*command, f"hydra.sweep.dir={folder}"], work, work / f"{folder.name}.log"
                )
                got[kind], got[f"{kind}_cpu"] = wall, cpu
            got["basic/plain"] = got["basic"] / got["plain"]
            got["basic/plain_cpu"] = got["basic_cpu"] / got["plain_cpu"]
            got["default/plain"] = got["default"] / got["plain"]
            rounds.append(got)
        row: dict[str, Any] = {"n": n, "check": check_seconds(n, work / f"check{n}")}
        row |= {k: statistics.median(got[k] for got in rounds) for k in rounds[0]}
        row["rounds"] = rounds
        print(_size_line(row), flush=True)
        rows.append(row)
    return rows


def _size_line(row: dict[str, Any]) -> str:
    n = row["n"]
    cells = [f"{row[k]:7.1f} s {1000 * row[k] / n:6.1f} ms" for k in KINDS]
    cpu = "  ".join(f"{row[f'{k}_cpu']:6.1f} s" for k in ("plain", "basic"))
    return f"{n:>6}  {1000 * row['check'] / n:6.2f} ms  " + "  ".join(cells) + f"    {cpu}"


def fake_sweep(template: Path, dest: Path, n: int) -> None:
    """dest: a sweep folder of n finished runs `seed=0..n-1`, copies of template's job 0."""
    job = template / "0"
    record = json.loads((job / "metrics.json").read_text())
    dest.mkdir(parents=True)
    saved = (template / "multirun.yaml").read_text()
    (dest / "multirun.yaml").write_text(
        saved.replace(f"seed=range({_template_size(template)})", f"seed=range({n})").replace(
            str(template), str(dest)
        )
    )
    config = (job / ".hydra" / "config.yaml").read_text()
    for seed in range(n):
        folder = dest / str(seed)
        shutil.copytree(job, folder)
        overrides = [o for o in record["overrides"] if not o.startswith("seed=")]
        record.update(seed=seed, job_num=seed, overrides=[f"seed={seed}", *overrides])
        record["params"]["seed"] = seed
        (folder / "metrics.json").write_text(json.dumps(record, indent=2))
        (folder / ".hydra" / "overrides.yaml").write_text(
            "".join(f"- {o}\n" for o in record["overrides"])
        )
        (folder / ".hydra" / "config.yaml").write_text(
            config.replace("\nseed: 0\n", f"\nseed: {seed}\n")
        )


def _template_size(template: Path) -> int:
    return sum(1 for d in template.iterdir() if d.name.isdigit())


def scan(folder: Path) -> dict[str, float]:
    """Summary, resume scan and plots of one sweep folder, in this (fresh) process."""
    from mlp_sweep.cli.preflight import preflight
    from mlp_sweep.cli.resume import resume_argv
    from mlp_sweep.config import register_configs
    from mlp_sweep.results.publish import draw
    from mlp_sweep.results.summary import write_summary
    from mlp_sweep.status import FINISHED

    register_configs()
    out: dict[str, float] = {}
    tic = time.perf_counter()
    frame = write_summary(folder)
    out["summary"] = time.perf_counter() - tic
    tic = time.perf_counter()
    statuses = preflight(resume_argv(["--resume", str(folder)]))
    out["resume"] = time.perf_counter() - tic
    assert len(statuses) == len(frame) and all(s in FINISHED for s in statuses), statuses[:3]
    tic = time.perf_counter()
    drawn = draw(folder, frame)
    out["plots"] = time.perf_counter() - tic
    assert len(drawn) == 2, drawn
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def scan_in_fresh_process(folder: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "mlp_sweep.bench", "sweep-overhead", "--scan", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mlp_sweep.bench sweep-overhead")
    parser.add_argument("--sizes", default="10,100,1000", help="sweep sizes, e.g. 10,100,1000")
    parser.add_argument("--folder-runs", type=int, default=10_000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds per size, for medians on a noisy machine"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--scan", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scan is not None:  # the child of scan_in_fresh_process
        print(json.dumps(scan(args.scan)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="mlp_sweep-overhead-") as tmp:
        work = Path(tmp)
        print("trivial jobs: python -m mlp_sweep -m 'seed=range(N)' " + " ".join(TRIVIAL))
        print(
            f"{'N':>6}  {'check/job':>9}  {'plain Hydra':>19}  {'basic':>19}  {'default':>19}"
            f"    CPU: plain, basic"
            + (f"  (medians of {args.repeat} rounds)" if args.repeat > 1 else "")
        )
        rows = sweep_sizes(sizes, work, args.repeat)
        print(marginal_table(rows))
        folders = {}
        for n in sorted({max(args.folder_runs // 10, 1), args.folder_runs}):
            fake_sweep(work / f"basic{sizes[0]}-0", work / f"folder{n}", n)
            folders[n] = scan_in_fresh_process(work / f"folder{n}")
            f = folders[n]
            total = f["summary"] + f["resume"] + f["plots"]
            print(
                f"folder of {n} runs: summary {f['summary']:.1f} s, resume scan "
                f"{f['resume']:.1f} s, plots {f['plots']:.1f} s: {total:.1f} s; "
                f"peak memory {f['peak_mb']:.0f} MB"
            )
        small, big = sorted(folders)
        if small != big:
            grow = (folders[big]["peak_mb"] - folders[small]["peak_mb"]) * 1024 / (big - small)
            print(f"memory per run: {grow:.1f} kB ({small} -> {big} runs)")
    if args.json:
        args.json.write_text(json.dumps({"sizes": rows, "folders": folders}, indent=2))
        print(f"json: {args.json}")
    return 0


def marginal_table(rows: list[dict[str, Any]]) -> str:
    """Per job, start-up left out: the slope of wall time between consecutive sizes."""
    lines = ["marginal cost of a job (slope between sizes):"]
    for a, b in pairwise(rows):
        dn = b["n"] - a["n"]
        slope = {k: 1000 * (b[k] - a[k]) / dn for k in ("plain", "basic", "default")}
        lines.append(
            f"  {a['n']}->{b['n']}: plain Hydra {slope['plain']:.1f} ms, basic "
            f"{slope['basic']:.1f} ms ({slope['basic'] / slope['plain']:.2f}x), default "
            f"{slope['default']:.1f} ms ({slope['default'] / slope['plain']:.2f}x)"
        )
    for row in rows:
        lines.append(
            f"  N={row['n']}: basic/plain {row['basic/plain']:.2f}x wall, "
            f"{row['basic/plain_cpu']:.2f}x CPU; default/plain {row['default/plain']:.2f}x wall"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
