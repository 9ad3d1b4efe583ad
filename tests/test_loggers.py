"""logger=tensorboard and logger=visdom against real servers, started here on 127.0.0.1.

The values a viewer serves must be the values in each run's history.csv; a logger whose server
dies or hangs must cost the run nothing but one warning line and a note in its record.
"""

from __future__ import annotations

import csv
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlp_sweep.loggers import LoggerSet, RunInfo
from mlp_sweep.training.loop import EpochStats
from tests.helpers import cli_env, free_port, http_json, start_cli, stop, wait_for, wait_until


def needs_visdom() -> Any:
    return pytest.importorskip(
        "visdom", reason="needs visdom, the visdom logger's extra: see README (Loggers)"
    )


def needs_tensorboard() -> Any:
    pytest.importorskip("tensorboard", reason='needs the viz extra: pip install ".[viz]"')
    from tensorboard.backend.event_processing import event_accumulator

    return event_accumulator.EventAccumulator


TINY = ["data=synthetic", "data.n_train=400", "data.n_test=200", "trainer.batch_size=50"]


def start_visdom(env_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlp_sweep.visdom_server", "--port", str(port)]
        + ["--env-path", str(env_path)],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = visdom_client(port)
    wait_until(lambda: proc.poll() is None and client.check_connection(), "the visdom server")
    return proc, port


def visdom_client(port: int) -> Any:
    visdom = needs_visdom()
    logging.getLogger("visdom").setLevel(logging.CRITICAL)
    return visdom.Visdom(
        server="http://127.0.0.1", port=port, use_incoming_socket=False, raise_exceptions=False
    )


@pytest.fixture
def visdom_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    needs_visdom()
    proc, port = start_visdom(tmp_path / "visdom-envs")
    try:
        yield proc, port
    finally:
        stop(proc)


def history(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_tensorboard_and_visdom_serve_every_runs_history(
    tmp_path: Path, visdom_server: tuple[subprocess.Popen[bytes], int]
) -> None:
    """One sweep, both loggers at once, on the default (parallel, worker processes) launcher."""
    accumulator = needs_tensorboard()
    _, port = visdom_server
    sweep = tmp_path / "sweep"
    proc = start_cli(
        "-m",
        "model.act=relu,selu",
        *TINY,
        "trainer.epochs=3",
        "logger=[tensorboard,visdom]",
        f"logger.visdom.port={port}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    runs = {"0": "model.act=relu", "1": "model.act=selu"}
    for job in runs:
        record = json.loads((sweep / job / "metrics.json").read_text())
        assert record["loggers"] == ["tensorboard", "visdom"]
        assert record["loggers_failed"] == {}

    # TensorBoard's own reader: the event files say what history.csv says.
    for job in runs:
        events = accumulator(str(sweep / job))
        events.Reload()
        expected = history(sweep / job)
        for tag in ("train_loss", "test_loss", "test_acc", "seconds"):
            got = [(e.step, e.value) for e in events.Scalars(tag)]
            assert [s for s, _ in got] == [1, 2, 3]
            assert [v for _, v in got] == pytest.approx([row[tag] for row in expected], rel=1e-6)
        final = events.Scalars("final/best_test_acc")
        assert final[-1].value == pytest.approx(max(row["test_acc"] for row in expected), rel=1e-6)

    # A real TensorBoard server over the sweep: scalars and the HParams view, over HTTP.
    tb_port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep)]
        + ["--host", "127.0.0.1", "--port", str(tb_port), "--reload_interval", "1"],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{tb_port}/data/plugin"
        tags = wait_until(
            lambda: (t := http_json(f"{base}/scalars/tags")) and set(runs) <= set(t) and t,
            "TensorBoard to list the runs",
        )
        assert {"train_loss", "test_loss", "test_acc", "final/test_acc"} <= set(tags["0"])
        for job in runs:
            served = http_json(f"{base}/scalars/scalars?run={job}&tag=test_acc")
            assert [step for _, step, _ in served] == [1, 2, 3]
            assert [value for _, _, value in served] == pytest.approx(
                [row["test_acc"] for row in history(sweep / job)], rel=1e-6
            )
        groups = wait_until(
            lambda: (
                (
                    g := http_json(
                        f"{base}/hparams/session_groups",
                        {
                            "experimentName": "",
                            "allowedStatuses": [
                                "STATUS_UNKNOWN",
                                "STATUS_SUCCESS",
                                "STATUS_RUNNING",
                            ],
                            "colParams": [],
                            "startIndex": 0,
                            "sliceSize": 100,
                        },
                    )["sessionGroups"]
                )
                and len(g) == 2
                and g
            ),
            "the HParams view to list both runs",
        )
        acts = {g["name"]: g["hparams"]["model.act"] for g in groups}
        assert acts == {"0": "relu", "1": "selu"}
        assert not any(k.startswith("logger.") for g in groups for k in g["hparams"])
        metric = {
            g["name"]: {m["name"]["tag"]: m["value"] for m in g["metricValues"]} for g in groups
        }
        for job in runs:
            record = json.loads((sweep / job / "metrics.json").read_text())
            assert metric[job]["final/test_acc"] == pytest.approx(record["test_acc"], rel=1e-6)
    finally:
        stop(server)

    # visdom: the sweep's env, one window per metric, one line per run named by its overrides.
    client = visdom_client(port)
    env = f"mlp_sweep_{sweep.name}"
    assert env in client.get_env_list()
    for metric in ("train_loss", "test_loss", "test_acc"):
        window = json.loads(client.get_window_data(win=metric, env=env))
        lines = {trace["name"]: trace for trace in window["content"]["data"]}
        assert set(lines) == {f"{job}: {label}" for job, label in runs.items()}
        for job, label in runs.items():
            expected = history(sweep / job)
            assert lines[f"{job}: {label}"]["x"] == [1, 2, 3]
            assert lines[f"{job}: {label}"]["y"] == pytest.approx([r[metric] for r in expected])


def test_visdom_server_stopped_mid_run(
    tmp_path: Path, visdom_server: tuple[subprocess.Popen[bytes], int]
) -> None:
    """The run goes on to its last epoch; one warning line; the record says which logger."""
    server, port = visdom_server
    run_dir = tmp_path / "run"
    epochs = 150
    proc = start_cli(
        *TINY,
        "data.n_train=100",
        f"trainer.epochs={epochs}",
        "logger=visdom",
        f"logger.visdom.port={port}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    wait_for(lambda: (run_dir / "history.csv").exists(), proc)
    stop(server)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok"
    assert record["epochs_done"] == epochs
    assert set(record["loggers_failed"]) == {"visdom"}
    warnings = [line for line in (out + err).splitlines() if "logger visdom failed" in line]
    assert len(warnings) == 1, out + err
    assert "the run goes on without it" in warnings[0]


def test_visdom_server_that_never_answers_costs_a_bounded_wait(tmp_path: Path) -> None:
    """A server that accepts connections and never answers: the run still ends, on time."""
    needs_visdom()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections queue up; nothing ever reads them
        port = silent.getsockname()[1]
        run_dir = tmp_path / "run"
        proc = start_cli(
            *TINY,
            "trainer.epochs=2",
            "logger=visdom",
            f"logger.visdom.port={port}",
            "logger.visdom.flush_timeout=1",
            f"hydra.run.dir={run_dir}",
            cwd=tmp_path,
        )
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok"
    assert record["epochs_done"] == 2
    assert "given up" in record["loggers_failed"]["visdom"]


def test_no_visdom_server_at_all(tmp_path: Path, run_main: Callable[..., Any]) -> None:
    """Through the entry point, in this process: nothing here needs a process of its own."""
    needs_visdom()
    run_dir = tmp_path / "run"
    done = run_main(
        *TINY,
        "trainer.epochs=2",
        "logger=visdom",
        f"logger.visdom.port={free_port()}",
        f"hydra.run.dir={run_dir}",
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok"
    assert "no visdom server answers at http://localhost:" in record["loggers_failed"]["visdom"]
    lines = [x for x in (done.stdout + done.stderr).splitlines() if "logger visdom failed" in x]
    assert len(lines) == 1


class Recorder:
    def __init__(self, name: str, fail_on: str | None = None) -> None:
        self.name, self.fail_on, self.calls = name, fail_on, []  # type: ignore[var-annotated]

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if what == self.fail_on:
            raise OSError(28, "No space left on device")

    def start(self, run: RunInfo, history: list[EpochStats]) -> None:
        self._call("start")

    def epoch(self, stats: EpochStats) -> None:
        self._call(f"epoch {stats.epoch}")

    def finish(self, record: dict[str, Any]) -> None:
        self._call("finish")

    def close(self) -> None:
        self._call("close")


def test_a_failing_logger_stops_alone(caplog: pytest.LogCaptureFixture) -> None:
    """A disk full for one logger's files: that logger stops after one warning, the others and
    the run go on."""
    full, fine = Recorder("tensorboard", fail_on="epoch 2"), Recorder("visdom")
    with caplog.at_level(logging.WARNING):
        loggers = LoggerSet([(full, 5.0), (fine, 5.0)])
        loggers.start(RunInfo(Path("."), "0: x", "sweep", {}), [])
        for epoch in (1, 2, 3):
            loggers.epoch(EpochStats(epoch, 1.0, 1.0, 0.5, 0.1))
        loggers.finish({})
        failed = loggers.close()
    assert failed == {"tensorboard": "OSError: [Errno 28] No space left on device"}
    assert full.calls == ["start", "epoch 1", "epoch 2"]
    assert fine.calls == ["start", "epoch 1", "epoch 2", "epoch 3", "finish", "close"]
    assert [r.getMessage() for r in caplog.records if "failed" in r.getMessage()] == [
        "logger tensorboard failed: OSError: [Errno 28] No space left on device; "
        "the run goes on without it"
    ]
