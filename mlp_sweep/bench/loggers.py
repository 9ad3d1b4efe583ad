"""`python -m mlp_sweep.bench loggers`: what watching a run costs its training.

In one process, on full MNIST (the tutorial's MLP, SGD, batch 200, 10 epochs): the same run
through mlp_sweep.run.runner.run (record, checkpoints, pictures: a run as a sweep runs it)
with logger=none and with each watched setting, alternated, repeated; medians of the training
time (the record's train_seconds), of the whole run (wall time of run(): loading, epochs,
records, checkpoints, the loggers' end) and of the CPU time the process spent on it (training
and the loggers' threads; less sensitive to other work on the machine), and their ratios to
logger=none. The visdom server
is started here on 127.0.0.1 (`python -m mlp_sweep.visdom_server`) and stopped by its pid;
the TensorBoard events go to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlp_sweep.config import Config, LoggerConfig, TensorBoardConfig, VisdomConfig

SETTINGS = ("none", "visdom", "tensorboard")


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


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def _config(setting: str, every: int, epochs: int, port: int) -> Config:
    cfg = Config()
    cfg.trainer.epochs = epochs
    cfg.logger = LoggerConfig(every_n_steps=every)
    if setting == "visdom":
        cfg.logger.visdom = VisdomConfig(server="http://127.0.0.1", port=port)
    elif setting == "tensorboard":
        cfg.logger.tensorboard = TensorBoardConfig()
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
        try:
            seconds: dict[str, list[float]] = {s: [] for s in settings}
            walls: dict[str, list[float]] = {s: [] for s in settings}
            cpus: dict[str, list[float]] = {s: [] for s in settings}
            for i in range(args.repeats):  # alternated, so drift in the machine hits all
                for setting in settings:
                    cfg = _config(setting, args.every, args.epochs, port)
                    cfg.trainer.threads = args.threads
                    tic, cpu = time.perf_counter(), time.process_time()
                    record = run(cfg, folder / f"{setting}-{i}")
                    walls[setting].append(time.perf_counter() - tic)
                    cpus[setting].append(time.process_time() - cpu)
                    if record["status"] != "ok" or record["loggers_failed"]:
                        raise SystemExit(
                            f"{setting}: {record['status']} {record['loggers_failed']}"
                        )
                    seconds[setting].append(float(record["train_seconds"]))
                    print(
                        f"  {setting:<12} repeat {i + 1}: "
                        f"training {record['train_seconds']:.2f} s, "
                        f"run {walls[setting][-1]:.2f} s, CPU {cpus[setting][-1]:.2f} s",
                        flush=True,
                    )
        finally:
            if server is not None:
                _stop(server)
    base, base_wall = statistics.median(seconds["none"]), statistics.median(walls["none"])
    base_cpu = statistics.median(cpus["none"])
    print(
        f"{args.epochs} epochs of full MNIST, logger.every_n_steps={args.every}, "
        f"trainer.threads={args.threads}, medians of {args.repeats}:"
    )
    for setting in settings:
        train, wall = statistics.median(seconds[setting]), statistics.median(walls[setting])
        cpu = statistics.median(cpus[setting])
        print(
            f"  logger={setting:<12} training {train:6.2f} s ({train / base:.3f}x logger=none), "
            f"run {wall:6.2f} s ({wall / base_wall:.3f}x), "
            f"CPU of the process {cpu:6.2f} s ({cpu / base_cpu:.3f}x)"
        )
    return 0
