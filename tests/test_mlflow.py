"""logger=mlflow against a real `mlflow server` (sqlite store), started here on 127.0.0.1 and
stopped by its pid: what a sweep puts there, read back over MLflow's REST API.

Each sweep must be one parent run with a nested child run per job, whose params are
metrics.json's, whose metric histories are history.csv's and steps.csv's, with its artifacts
and a status that says what the record says; a resume adds nothing twice; a server that is
down, stops, hangs or cannot store costs a run one warning line, never the run.

Behind the `mlflow` marker (~2 min: a server and several sweeps); .ci/run runs it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import close, open_page, wait_for_text
from tests.helpers import PRUNED_SEARCH, chromium_or_skip, start_cli, wait_for, wait_until
from tests.mlflow_server import Server, mlflow_command, start_server, stop_server

pytestmark = pytest.mark.mlflow

MNIST_TINY = [
    "data.limit_train=400",
    "data.limit_test=200",
    "trainer.batch_size=50",
    "optim.lr=0.1",
]
TINY = ["data=synthetic", "data.n_train=400", "data.n_test=200", "trainer.batch_size=50"]
EPOCH_KEYS = ("train_loss", "test_loss", "test_acc", "seconds")
MLFLOW_STATUS = {
    "ok": "FINISHED",
    "diverged": "FINISHED",
    "pruned": "FINISHED",
    "failed": "FAILED",
    "interrupted": "KILLED",
    "timeout": "KILLED",
    "incomplete": "KILLED",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield started
    finally:
        stop_server(started)


def run_sweep(tmp_path: Path, *args: str, timeout: float = 300) -> tuple[int, str]:
    proc = start_cli(*args, cwd=tmp_path)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def as_param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def sweep_runs(server: Server, experiment: str, sweep: Path) -> tuple[dict, dict[int, dict]]:
    """The sweep's parent run and its children by job number, checked to nest."""
    runs = server.runs(server.experiment_id(experiment))
    parents = [r for r in runs if "mlflow.parentRunId" not in r["tags"]]
    assert [p["name"] for p in parents] == [sweep.name]
    parent = parents[0]
    assert parent["tags"]["sweep_dir"] == str(sweep.resolve())
    children = {int(r["tags"]["job"]): r for r in runs if r is not parent}
    assert all(c["tags"]["mlflow.parentRunId"] == parent["id"] for c in children.values())
    return parent, children


def check_child(server: Server, run_dir: Path, child: dict[str, Any]) -> dict[str, Any]:
    """The child run says what the job's folder says; returns the job's record."""
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["logged_to"]["mlflow"]["run_id"] == child["id"]
    assert record["loggers_failed"] == {}
    assert child["params"] == {k: as_param(v) for k, v in record["params"].items()}
    assert child["tags"]["status"] == record["status"]
    assert child["status"] == MLFLOW_STATUS[record["status"]]
    assert child["tags"]["device"] == record["device"]
    assert child["tags"]["git_commit"] == str(record["git"]["commit"])
    assert child["name"].startswith(f"{run_dir.name} ")
    history = read_csv(run_dir / "history.csv")
    for key in EPOCH_KEYS:
        expected = [(int(row["epoch"]), float(row[key])) for row in history]
        assert server.history(child["id"], key) == expected, key
    steps = [
        (int(r["step"]), pytest.approx(float(r["train_loss"]), rel=1e-6))
        for r in read_csv(run_dir / "steps.csv")
    ]
    assert server.history(child["id"], "train_loss_step") == steps
    assert child["metrics"]["best_test_acc"] == record["best_test_acc"]
    files = server.artifacts(child["id"])
    assert {"history.csv", "steps.csv", "metrics.json", "hydra"} <= files
    assert server.artifacts(child["id"], "hydra") == {"hydra/config.yaml"}
    for picture in ("confusion.png", "misclassified.png"):
        assert (picture in files) == (run_dir / picture).is_file(), picture
    return record


@pytest.mark.parametrize(
    "launcher",
    [
        pytest.param([], id="parallel"),
        pytest.param(["hydra/launcher=fused", "hydra.launcher.fuse=always"], id="fused"),
    ],
)
def test_a_sweep_is_a_parent_run_with_a_child_per_job(
    server: Server, tmp_path: Path, launcher: list[str]
) -> None:
    sweep = tmp_path / "sweep"
    experiment = f"sweep-{tmp_path.name}"
    code, said = run_sweep(
        tmp_path,
        "-m",
        "model.act=relu,selu",
        *MNIST_TINY,  # real digits: the digits images and misclassified.png
        "trainer.epochs=3",
        "logger=mlflow",
        "logger.every_n_steps=2",
        f"logger.mlflow.tracking_uri={server.url}",
        f"logger.mlflow.experiment={experiment}",
        "+logger.mlflow.tags.team=vision",
        *launcher,
        f"hydra.sweep.dir={sweep}",
    )
    assert code == 0, said[-3000:]
    assert "logger mlflow failed" not in said
    parent, children = sweep_runs(server, experiment, sweep)
    assert sorted(children) == [0, 1]
    for job, child in children.items():
        assert check_child(server, sweep / str(job), child)["status"] == "ok"
        assert child["tags"]["team"] == "vision"
        digits = server.artifacts(child["id"], "images")
        assert len([f for f in digits if f.endswith(".png")]) >= 3  # one per epoch at least
    assert parent["status"] == "FINISHED" and parent["tags"]["status"] == "ok"
    assert {"summary.csv", "curves.png", "comparison.png"} <= server.artifacts(parent["id"])
    assert parent["tags"]["team"] == "vision"


def test_a_search_with_pruning(server: Server, tmp_path: Path) -> None:
    pytest.importorskip("optuna", reason="needs the search extra: pip install '.[search]'")
    sweep = tmp_path / "search"
    experiment = f"search-{tmp_path.name}"
    code, said = run_sweep(
        tmp_path,
        "-m",
        *PRUNED_SEARCH,
        "hydra/launcher=basic",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={server.url}",
        f"logger.mlflow.experiment={experiment}",
        f"hydra.sweep.dir={sweep}",
    )
    assert code == 0, said[-3000:]
    parent, children = sweep_runs(server, experiment, sweep)
    assert sorted(children) == list(range(6))
    statuses = {
        job: check_child(server, sweep / str(job), c)["status"] for job, c in children.items()
    }
    assert statuses == {0: "ok", 1: "ok", 2: "ok", 3: "pruned", 4: "pruned", 5: "pruned"}
    for job in (3, 4, 5):  # FINISHED (a result), told apart by its tag
        assert children[job]["status"] == "FINISHED"
        assert children[job]["tags"]["status"] == "pruned"
    best = max(
        (json.loads((sweep / str(j) / "metrics.json").read_text()) for j in range(3)),
        key=lambda r: r["best_test_acc"],  # the search's objective
    )
    assert parent["metrics"]["best_trial/best_test_acc"] == best["best_test_acc"]
    assert parent["tags"]["best_trial.optim.lr"] == "0.5"
    assert parent["tags"]["best_trial.run_dir"] == str(sweep / "0")
    assert parent["status"] == "FINISHED"


def test_a_resume_continues_the_same_runs_and_adds_nothing_twice(
    server: Server, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    experiment = f"resume-{tmp_path.name}"
    where = f"logger.mlflow.tracking_uri={server.url}"
    args = [
        "-m",
        "seed=0",
        *MNIST_TINY[:-2],
        "data.limit_train=2000",
        "trainer.batch_size=50",
        "trainer.epochs=40",
        "logger=mlflow",
        f"logger.mlflow.experiment={experiment}",
    ]
    proc = start_cli(*args, where, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    wait_for(lambda: len(read_csv_safe(sweep / "0" / "history.csv")) >= 2, proc)
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=120)
    record = json.loads((sweep / "0" / "metrics.json").read_text())
    assert record["status"] == "interrupted"
    parent, children = sweep_runs(server, experiment, sweep)
    first = children[0]
    assert first["status"] == "KILLED" and first["tags"]["status"] == "interrupted"
    assert parent["status"] == "KILLED"

    # The folder may not say where the runs go: the resume is refused until the user says it.
    code, said = run_sweep(tmp_path, "--resume", str(sweep))
    assert code != 0
    assert "logger.mlflow.tracking_uri" in said and "names where the runs' data is sent" in said

    code, said = run_sweep(tmp_path, "--resume", str(sweep), where)
    assert code == 0, said[-3000:]
    again, children = sweep_runs(server, experiment, sweep)
    assert again["id"] == parent["id"] and children[0]["id"] == first["id"]
    record = check_child(server, sweep / "0", children[0])  # each epoch and step once
    assert record["status"] == "ok" and record["epochs_done"] == 40
    assert record["resumed_from_epoch"] >= 2
    assert again["status"] == "FINISHED"


def read_csv_safe(path: Path) -> list[dict[str, str]]:
    try:
        return read_csv(path)
    except OSError:
        return []


def one_warning(said: str) -> None:
    warnings = [line for line in said.splitlines() if "logger mlflow failed" in line]
    assert len(warnings) == 1, said[-3000:]
    assert "the run goes on without it" in warnings[0]


def single_run(tmp_path: Path, *args: str, epochs: int) -> tuple[dict[str, Any], str]:
    run_dir = tmp_path / "run"
    code, said = run_sweep(
        tmp_path,
        *TINY,
        f"trainer.epochs={epochs}",
        "logger=mlflow",
        *args,
        f"hydra.run.dir={run_dir}",
    )
    assert code == 0, said[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok" and record["epochs_done"] == epochs
    return record, said


def test_no_server_at_all(tmp_path: Path) -> None:
    mlflow_command()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    record, said = single_run(
        tmp_path, f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}", epochs=2
    )
    assert "mlflow" in record["loggers_failed"]
    one_warning(said)


def test_a_server_that_never_answers_costs_a_bounded_wait(tmp_path: Path) -> None:
    mlflow_command()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections queue up; nothing ever reads them
        port = silent.getsockname()[1]
        record, said = single_run(
            tmp_path,
            f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}",
            "logger.mlflow.request_timeout=1",
            "logger.mlflow.finish_timeout=2",
            epochs=2,
        )
    assert "mlflow" in record["loggers_failed"]
    one_warning(said)


def test_a_server_stopped_mid_run(tmp_path: Path) -> None:
    own = start_server(tmp_path / "own-server")
    run_dir = tmp_path / "run"
    try:
        proc = start_cli(
            *TINY,
            "data.n_train=100",
            "trainer.epochs=600",
            "logger=mlflow",
            f"logger.mlflow.tracking_uri={own.url}",
            "logger.mlflow.request_timeout=2",
            f"hydra.run.dir={run_dir}",
            cwd=tmp_path,
        )
        wait_for(lambda: (run_dir / "history.csv").exists(), proc)
    finally:
        stop_server(own)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok" and record["epochs_done"] == 600
    assert "mlflow" in record["loggers_failed"]
    one_warning(out + err)


def test_a_server_whose_disk_is_full(tmp_path: Path) -> None:
    """Its artifacts on a 64 KiB tmpfs: the first images fill it, and the server answers the
    next upload with an error."""
    mlflow_command()
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        own = start_server(tmp_path / "own-server", artifacts=disk)
        try:
            record, said = single_run(
                tmp_path, *MNIST_TINY[:2], f"logger.mlflow.tracking_uri={own.url}", epochs=6
            )
        finally:
            stop_server(own)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    assert "mlflow" in record["loggers_failed"]
    one_warning(said)


# Closes MLflow's assistant panel and expands the sweep's parent run in the runs list.
EXPAND_SWEEP = """(() => {
  const close = Array.from(document.querySelectorAll('button'))
    .find(b => b.getAttribute('aria-label') === 'Close');
  if (close) close.click();
  const expander = document.querySelector('button[data-component-id*=runnamecellrenderer]');
  if (expander) expander.click();
  return Boolean(expander);
})()"""


def drawn(path: Path) -> Path:
    """A page with charts on it, not a blank or a spinner: many colours."""
    from PIL import Image

    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 500, f"{path}: {len(colours)} colours"
    return path


def test_the_mlflow_page_shows_the_runs(server: Server, tmp_path: Path) -> None:
    """MLflow's own web UI in headless chromium: the experiment's runs, the sweep's parent
    expanded, their charts; one run's metric charts (MLP_SWEEP_SCREENSHOTS=<folder> keeps
    the screenshots, for docs/img)."""
    chromium_or_skip()
    sweep = tmp_path / "sweep"
    experiment = "mlp_sweep activations"
    code, said = run_sweep(
        tmp_path,
        "-m",
        "model.act=relu,leaky,selu,softplus",
        "data.limit_train=2000",
        "data.limit_test=1000",
        "optim.lr=0.1",
        "trainer.epochs=5",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={server.url}",
        f"logger.mlflow.experiment={experiment}",
        f"hydra.sweep.dir={sweep}",
    )
    assert code == 0, said[-3000:]
    exp = server.experiment_id(experiment)
    parent, children = sweep_runs(server, experiment, sweep)
    names = [children[job]["name"] for job in sorted(children)]
    assert names == [
        "0 model.act=relu",
        "1 model.act=leaky",
        "2 model.act=selu",
        "3 model.act=softplus",
    ]
    proc, page = open_page(f"{server.url}/#/experiments/{exp}/runs?compareRunsMode=CHART")
    try:
        wait_until(lambda: page.run(EXPAND_SWEEP), "the sweep's parent run, to expand", 60)
        wait_for_text(page, *names, "test_acc", "train_loss_step")
        time.sleep(5)  # the charts of the runs just shown draw
        shots = [drawn(page.screenshot(tmp_path / "mlflow_runs.png"))]
        run_page = f"{server.url}/#/experiments/{exp}/runs/{children[0]['id']}/model-metrics"
        page.call("Page.navigate", url=run_page)
        wait_for_text(page, names[0], "test_acc", "best_test_acc")
        time.sleep(5)
        shots.append(drawn(page.screenshot(tmp_path / "mlflow_run.png")))
    finally:
        close(proc, page)
    keep = os.environ.get("MLP_SWEEP_SCREENSHOTS")
    for shot in shots if keep else []:
        shutil.copyfile(shot, Path(keep) / shot.name)
