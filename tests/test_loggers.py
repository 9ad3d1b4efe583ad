"""logger=tensorboard and logger=visdom against real servers, started here on 127.0.0.1.

The values a viewer serves must be the values in each run's history.csv; a logger whose server
dies or hangs must cost the run nothing but one warning line and a note in its record.
"""

from __future__ import annotations

import base64
import csv
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from mlp_sweep.loggers import LoggerSet, RunInfo
from mlp_sweep.training.loop import EpochStats
from tests.helpers import (
    Recorder,
    chromium,
    chromium_or_skip,
    cli_env,
    free_port,
    http_json,
    screenshot,
    start_cli,
    stop,
    wait_for,
    wait_until,
)


def needs_visdom() -> Any:
    return pytest.importorskip(
        "visdom", reason="needs visdom, the visdom logger's extra: see README (Loggers)"
    )


def needs_tensorboard() -> Any:
    pytest.importorskip("tensorboard", reason='needs the viz extra: pip install ".[viz]"')
    from tensorboard.backend.event_processing import event_accumulator

    return event_accumulator.EventAccumulator


TINY = ["data=synthetic", "data.n_train=400", "data.n_test=200", "trainer.batch_size=50"]
MNIST_TINY = [
    "data.limit_train=400",
    "data.limit_test=200",
    "trainer.batch_size=50",
    "optim.lr=0.1",
]


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
        *MNIST_TINY,  # real digits: the screenshots show what a user sees
        "trainer.epochs=3",
        "logger=[tensorboard,visdom]",
        "logger.every_n_steps=1",  # the tutorial's: every step (8 an epoch here)
        f"logger.visdom.port={port}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    runs = {"0": "model.act=relu", "1": "model.act=selu"}
    names = {job: f"tb/{job} {label}" for job, label in runs.items()}  # TensorBoard's run names
    for job in runs:
        record = json.loads((sweep / job / "metrics.json").read_text())
        assert record["loggers"] == ["tensorboard", "visdom"]
        assert record["loggers_failed"] == {}
        assert not list((sweep / job).glob("events.out.tfevents.*"))  # in tb/, named

    # TensorBoard's own reader: the event files say what history.csv and steps.csv say.
    for job in runs:
        events = accumulator(str(sweep / names[job]), size_guidance={"images": 0, "scalars": 0})
        events.Reload()
        expected = history(sweep / job)
        for tag in ("train_loss", "test_loss", "test_acc", "seconds"):
            got = [(e.step, e.value) for e in events.Scalars(tag)]
            assert [s for s, _ in got] == [1, 2, 3]
            assert [v for _, v in got] == pytest.approx([row[tag] for row in expected], rel=1e-6)
        final = events.Scalars("final/best_test_acc")
        assert final[-1].value == pytest.approx(max(row["test_acc"] for row in expected), rel=1e-6)
        steps = _steps(sweep / job)
        assert [s for s, _, _ in steps] == list(range(1, 25))  # 3 epochs of 8 steps
        got = [(e.step, e.value) for e in events.Scalars("train/loss_step")]
        assert got == [(s, pytest.approx(v, rel=1e-6)) for s, _, v in steps]
        for epoch, row in enumerate(expected, start=1):  # the steps' mean is the epoch's loss
            losses = [v for _, e, v in steps if e == epoch]
            assert sum(losses) / len(losses) == pytest.approx(row["train_loss"], rel=1e-5)
        images = events.Images("test/digits")
        assert [(i.step, i.width, i.height) for i in images] == [(e, 272, 384) for e in (1, 2, 3)]

    # A real TensorBoard server over the sweep: scalars, images and the HParams view, over HTTP.
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
            lambda: (
                (t := http_json(f"{base}/scalars/tags")) and set(names.values()) <= set(t) and t
            ),
            "TensorBoard to list the runs",
        )
        assert set(tags) == set(names.values())  # each run once, by its swept values
        for name in names.values():
            assert {"train_loss", "test_acc", "final/test_acc", "train/loss_step"} <= set(
                tags[name]
            )
        for job, name in names.items():
            query = urllib.parse.urlencode({"run": name, "tag": "test_acc"})
            served = http_json(f"{base}/scalars/scalars?{query}")
            assert [step for _, step, _ in served] == [1, 2, 3]
            assert [value for _, _, value in served] == pytest.approx(
                [row["test_acc"] for row in history(sweep / job)], rel=1e-6
            )
            query = urllib.parse.urlencode({"run": name, "tag": "train/loss_step"})
            served = http_json(f"{base}/scalars/scalars?{query}")
            assert [step for _, step, _ in served] == list(range(1, 25))
            query = urllib.parse.urlencode({"run": name, "tag": "test/digits", "sample": 0})
            shown = http_json(f"{base}/images/images?{query}")
            assert [image["step"] for image in shown] == [1, 2, 3]
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
        assert acts == {names["0"]: "relu", names["1"]: "selu"}
        assert not any(k.startswith("logger.") for g in groups for k in g["hparams"])
        metric = {
            g["name"]: {m["name"]["tag"]: m["value"] for m in g["metricValues"]} for g in groups
        }
        for job, name in names.items():
            record = json.loads((sweep / job / "metrics.json").read_text())
            assert metric[name]["final/test_acc"] == pytest.approx(record["test_acc"], rel=1e-6)
        if chromium():  # the pages as a user sees them (docs/watching.md shows them)
            page = f"http://127.0.0.1:{tb_port}/#"
            shots = [
                screenshot(page + "scalars&tagFilter=loss", tmp_path / "tensorboard_scalars.png"),
                screenshot(page + "images", tmp_path / "tensorboard_images.png"),
            ]
    finally:
        stop(server)

    # visdom: the sweep's env, one window per metric, one line per run named by its overrides;
    # the step line with every step sent, and each run's window of digits.
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
    window = json.loads(client.get_window_data(win="train_loss_step", env=env))
    lines = {trace["name"]: trace for trace in window["content"]["data"]}
    for job, label in runs.items():
        steps = _steps(sweep / job)
        assert lines[f"{job}: {label}"]["x"] == [s for s, _, _ in steps]
        assert lines[f"{job}: {label}"]["y"] == pytest.approx([v for _, _, v in steps])
        shown = json.loads(
            client.get_window_data(win=f"digits_{job}_model_act_{label[10:]}", env=env)
        )
        png = base64.b64decode(shown["content"]["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png[16:24]) == (272, 384)  # width, height: 8 x 8 digits
        assert shown["title"].startswith(f"{job}: {label}, epoch 3: ")

    # visdom's page, offline: its scripts come from the npm registry at install time
    # (`python -m mlp_sweep.visdom_server --install-page`), or the page is blank.
    chromium_or_skip()
    shots.append(screenshot(f"http://127.0.0.1:{port}/env/{env}", tmp_path / "visdom.png"))
    keep = os.environ.get("MLP_SWEEP_SCREENSHOTS")  # a folder to keep them in (docs/img)
    for shot in shots if keep else []:
        shutil.copyfile(shot, Path(keep) / f"watch_{shot.name}")


def _steps(run_dir: Path) -> list[tuple[int, int, float]]:
    with open(run_dir / "steps.csv", newline="") as f:
        return [
            (int(r["step"]), int(r["epoch"]), float(r["train_loss"])) for r in csv.DictReader(f)
        ]


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


def test_a_failing_logger_stops_alone(caplog: pytest.LogCaptureFixture) -> None:
    """A disk full for one logger's files (writing the step line, the curves or the digits):
    that logger stops after one warning, the others and the run go on."""
    for failing in ("step 2", "epoch 2", "digits 2"):
        caplog.clear()
        full, fine = Recorder("tensorboard", fail_on=failing), Recorder("visdom")
        with caplog.at_level(logging.WARNING):
            loggers = LoggerSet([(full, 5.0), (fine, 5.0)])
            loggers.start(RunInfo(Path("."), "0: x", "sweep", {}), [], [])
            for epoch in (1, 2, 3):
                loggers.step(epoch, torch.tensor(1.0))
                loggers.epoch(EpochStats(epoch, 1.0, 1.0, 0.5, 0.1))
                loggers.digits(epoch, None)  # type: ignore[arg-type]  # a recorder reads none
            loggers.finish({})
            failed = loggers.close()
        assert failed == {"tensorboard": "OSError: [Errno 28] No space left on device"}
        every = [f"{what} {e}" for e in (1, 2, 3) for what in ("step", "epoch", "digits")]
        assert full.calls == ["start", *every[: every.index(failing) + 1]]
        assert fine.calls == ["start", *every, "finish", "close"]
        assert [r.getMessage() for r in caplog.records if "failed" in r.getMessage()] == [
            "logger tensorboard failed: OSError: [Errno 28] No space left on device; "
            "the run goes on without it"
        ]


def test_training_starts_once_the_loggers_libraries_are_imported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """start() returns after each logger's prepare() (its imports, which would otherwise hold
    the interpreter's lock while the first epoch trains); a missing library is one warning
    naming what to install, and that logger is never started."""
    slow, missing = Recorder("tensorboard", importing=0.5), Recorder("visdom", fail_on="prepare")
    with caplog.at_level(logging.WARNING):
        loggers = LoggerSet([(slow, 5.0), (missing, 5.0)])
        tic = time.monotonic()
        loggers.start(RunInfo(Path("."), "0: x", "sweep", {}), [], [])
        waited = time.monotonic() - tic
        failed = loggers.close()
    assert 0.4 <= waited < 5.0
    assert failed == {
        "visdom": "visdom is not installed; it needs visdom: see docs/watching.md "
        "(pip install visdom==0.2.4, with its constraint)"
    }
    assert slow.calls == ["start", "close"] and missing.calls == []
    assert len([r for r in caplog.records if "logger visdom failed" in r.getMessage()]) == 1
