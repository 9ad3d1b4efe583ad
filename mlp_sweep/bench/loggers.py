"""`python -m mlp_sweep.bench loggers`: what watching a run costs its training.

In one process, on full MNIST (the tutorial's MLP, SGD, batch 200, 10 epochs): the same run
through mlp_sweep.run.runner.run (record, checkpoints, pictures: a run as a sweep runs it)
with logger=none and with each watched setting, repeated in rounds. Each round runs every
setting once, in the reverse order of the round before (none, visdom, visdom, none, ...), so
a machine that speeds up or slows down during the bench hits both alike; each watched run is
compared with the logger=none run of its own round. Reported: the median over rounds of those
ratios, for the training time (the record's train_seconds), the whole run (wall time of run():
loading, epochs, records, checkpoints, the loggers' end) and the CPU time the process spent
(training and the loggers' threads), beside the medians of the times themselves. The loggers'
own CPU is reported apart: their threads in the run's process and, on Linux, the processes
they run in (mlp_sweep.loggers.forked), counted with the run's other children (the record's
`git` calls, ~0.01 s).

The visdom server is started here on 127.0.0.1 (`python -m mlp_sweep.visdom_server`) and
stopped by its pid; it shares the machine's cores with the run, so its CPU time per run is
reported too. Each round's visdom run draws in an environment of its own, as a new sweep's
first run does (a visdom window's every update costs the server time in proportion to what
the window already holds). The TensorBoard events go to a temporary folder, and MLflow's
runs to one local store there (sqlite, its tables made before the first round, as a sweep's
later jobs find them), an experiment of its own per bench.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlp_sweep.config import Config, LoggerConfig, MlflowConfig, TensorBoardConfig, VisdomConfig
from mlp_sweep.status import Status

SETTINGS = ("none", "visdom", "tensorboard", "mlflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_visdom(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlp_sweep.visdom_server", "--port", str(port)]
        + ["--env-path", str(folder / "visdom")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            time.sleep(0.2)
    _stop(server)
    raise SystemExit("mlp_sweep.bench loggers: the visdom server did not start")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux's /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    """User + system CPU time of this process's children that have ended and been waited for
    (the loggers' processes; not the visdom server, which runs on)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def _config(setting: str, every: int, epochs: int, port: int, round_: int, folder: Path) -> Config:
    cfg = Config()
    cfg.trainer.epochs = epochs
    cfg.logger = LoggerConfig(every_n_steps=every)
    if setting == "visdom":
        cfg.logger.visdom = VisdomConfig(
            server="http://127.0.0.1", port=port, env=f"mlp_sweep_bench_{round_}"
        )
    elif setting == "tensorboard":
        cfg.logger.tensorboard = TensorBoardConfig()
    elif setting == "mlflow":
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        cfg.logger.mlflow = MlflowConfig(tracking_uri=uri, experiment="mlp_sweep_bench")
    return cfg


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlp_sweep.bench loggers")
    parser.add_argument("--settings", default="none,visdom", help=f"of {', '.join(SETTINGS)}")
    parser.add_argument("--every", type=int, default=1, help="logger.every_n_steps")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", default="1", help="trainer.threads (1: as a sweep's worker trains; auto)"
    )
    args = parser.parse_args(argv)
    settings = args.settings.split(",")
    if "none" not in settings or not set(settings) <= set(SETTINGS):
        parser.error(f"--settings: none and any of {', '.join(SETTINGS[1:])}")
    from mlp_sweep.run.runner import run  # torch: after the arguments are checked

    with tempfile.TemporaryDirectory(prefix="mlp_sweep-loggerbench-") as tmp:
        folder = Path(tmp)
        server, port = _start_visdom(folder) if "visdom" in settings else (None, 0)
        if "mlflow" in settings:
            from mlp_sweep.loggers.mlflow_store import create_local

            create_local(folder)
        measured = (
            "training",
            "run",
            "CPU",
            "other threads' CPU",
            "loggers' processes' CPU",
            "server CPU",
        )
        times: dict[str, dict[str, list[float]]] = {s: {m: [] for m in measured} for s in settings}
        try:
            for i in range(args.repeats):
                for setting in settings if i % 2 == 0 else settings[::-1]:
                    cfg = _config(setting, args.every, args.epochs, port, i, folder)
                    cfg.trainer.threads = args.threads
                    served = _cpu_seconds(server.pid) if server is not None else 0.0
                    tic, cpu = time.perf_counter(), time.process_time()
                    main = time.thread_time()  # run() trains on this thread
                    children = _children_cpu()
                    record = run(cfg, folder / f"{setting}-{i}")
                    got = times[setting]
                    got["run"].append(time.perf_counter() - tic)
                    got["CPU"].append(time.process_time() - cpu)
                    others = got["CPU"][-1] - (time.thread_time() - main)
                    got["other threads' CPU"].append(max(0.0, others))  # 0, not -0.001
                    got["loggers' processes' CPU"].append(_children_cpu() - children)
                    got["server CPU"].append(
                        _cpu_seconds(server.pid) - served if server is not None else 0.0
                    )
                    if record["status"] != Status.OK or record["loggers_failed"]:
                        raise SystemExit(
                            f"{setting}: {record['status']} {record['loggers_failed']}"
                        )
                    got["training"].append(float(record["train_seconds"]))
                    print(
                        f"  round {i + 1} {setting:<12} "
                        + ", ".join(f"{m} {got[m][-1]:.2f} s" for m in measured),
                        flush=True,
                    )
        finally:
            if server is not None:
                _stop(server)
    print(
        f"{args.epochs} epochs of full MNIST, logger.every_n_steps={args.every}, "
        f"trainer.threads={args.threads}, {args.repeats} rounds: medians, the median of each "
        "round's ratio to its logger=none run and, in brackets, the range that holds the true "
        f"median ratio with {median_interval(args.repeats)[2]:.1%} confidence"
    )
    base = times["none"]
    for setting in settings:
        got = times[setting]
        parts = []
        for m in measured[:3]:
            ratios = sorted(a / b for a, b in zip(got[m], base[m], strict=True))
            low, high, _ = median_interval(len(ratios))
            parts.append(
                f"{m} {statistics.median(got[m]):6.2f} s ({statistics.median(ratios):.3f}x "
                f"[{ratios[low]:.3f}-{ratios[high]:.3f}])"
            )
        print(f"  logger={setting:<12} " + ", ".join(parts))
        threads = statistics.median(got["other threads' CPU"])
        share = statistics.median(
            c / t for c, t in zip(got["other threads' CPU"], got["training"], strict=True)
        )
        forked = statistics.median(got["loggers' processes' CPU"])
        line = (
            f"  {'':19} CPU of the loggers' threads {threads:.2f} s ({share:.1%} of training), "
            f"of the run's child processes {forked:.2f} s (the loggers', git's for the record)"
        )
        if server is not None:
            line += f", visdom server CPU {statistics.median(got['server CPU']):.2f} s"
        print(line)
    return 0


def median_interval(n: int) -> tuple[int, int, float]:
    """(i, j, confidence): the i-th and j-th of n sorted values (0-based) bracket their
    population's median with that confidence, whatever the distribution (sign test: each value
    falls below the median with probability 1/2); the narrowest such pair reaching 95%, or the
    widest there is for small n."""
    below = [math.comb(n, k) / 2**n for k in range(n + 1)]
    i = 0
    while i + 1 < n - 1 - i and 1 - 2 * sum(below[: i + 2]) >= 0.95:
        i += 1
    return i, n - 1 - i, 1 - 2 * sum(below[: i + 1])
