"""logger=mlflow without a server: MLflow's limits on what one request may carry, the sweep's
own store, and a store a received folder plants a link for. (Against a real server, sweeps
on every launcher, a search, a resume and a failing server: tests/test_mlflow.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlp_sweep.config import MlflowConfig
from mlp_sweep.labels import MLFLOW_DB
from mlp_sweep.loggers import RunInfo
from mlp_sweep.training.loop import EpochStats

pytest.importorskip("mlflow", reason='needs the track extra: pip install ".[track]"')

from mlp_sweep.loggers.mlflow_logger import PARAM_VALUE_MAX, MlflowLogger  # noqa: E402
from mlp_sweep.loggers.mlflow_store import create_local  # noqa: E402


def test_past_mlflows_limits_on_params_and_metrics(tmp_path: Path) -> None:
    """250 params (MLflow takes 100 a request), one longer than MLflow keeps, and 2500 step
    points in one epoch (1000 a request): every one arrives, the long value cut at 6000."""
    from mlflow import MlflowClient

    params = {f"key.{i:03d}": i for i in range(249)} | {"long": "x" * 7000}
    logger = MlflowLogger(MlflowConfig(experiment="limits"))
    logger.prepare()
    where = logger.start(RunInfo(tmp_path, "run", "runs", params), [], [])
    logger.steps([(step, 1.0 / step) for step in range(1, 2501)])
    logger.epoch(EpochStats(1, 0.5, 0.4, 0.9, 1.0))
    logger.finish({"status": "ok", "epochs_done": 1, "best_test_acc": 0.9, "best_epoch": 1})
    logger.close()
    client = MlflowClient(f"sqlite:///{tmp_path / MLFLOW_DB}")
    run = client.get_run(where["run_id"])
    assert len(run.data.params) == 250
    assert run.data.params["long"] == "x" * PARAM_VALUE_MAX
    assert run.data.params["key.007"] == "7"
    steps = client.get_metric_history(where["run_id"], "train_loss_step")
    assert sorted(m.step for m in steps) == list(range(1, 2501))
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "ok"


def test_a_link_planted_for_the_store_is_never_followed(tmp_path: Path) -> None:
    decoy = tmp_path / "elsewhere.db"
    decoy.write_bytes(b"precious")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / MLFLOW_DB).symlink_to(decoy)
    with pytest.raises(RuntimeError, match="is a symbolic link; no MLflow store goes there"):
        create_local(folder)
    assert decoy.read_bytes() == b"precious"


def test_a_single_run_keeps_its_store_in_its_own_folder(run_main, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = run_main(
        "data=synthetic", "data.n_train=200", "data.n_test=100", "trainer.epochs=2",
        "logger=mlflow", f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["loggers_failed"] == {}
    kept = record["logged_to"]["mlflow"]
    assert kept["tracking_uri"] == "<sweep or run folder>/mlflow.db"
    assert kept["parent_run_id"] is None
    from mlflow import MlflowClient

    run = MlflowClient(f"sqlite:///{run_dir / MLFLOW_DB}").get_run(kept["run_id"])
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"


def test_the_stores_copies_of_records_are_no_runs(run_main, tmp_path: Path) -> None:
    """The sweep's local store keeps each run's metrics.json among its artifacts: load() and
    the summary count the sweep's runs, not those copies."""
    import mlp_sweep
    from mlp_sweep.results.summary import write_summary

    sweep = tmp_path / "sweep"
    done = run_main(
        "-m", "model.act=relu,selu", "hydra/launcher=basic", "data=synthetic",
        "data.n_train=200", "data.n_test=100", "trainer.epochs=1", "logger=mlflow",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(list((sweep / "mlartifacts").rglob("metrics.json"))) == 2
    assert list(mlp_sweep.load(sweep)["job"]) == [0, 1]
    assert len(write_summary(sweep)) == 2


def test_tags_take_any_key_and_a_typo_beside_them_is_refused(run_main, tmp_path: Path) -> None:
    refused = run_main("logger=mlflow", "+logger.mlflow.tagz.team=vision", "data=synthetic")
    assert refused.returncode == 2
    said = refused.stderr.strip().splitlines()[-1]
    assert said.startswith("mlp_sweep: error: logger.mlflow.tagz: no such key; keys here: ")
    assert "tracking_uri, experiment, tags," in said
    run_dir = tmp_path / "run"
    done = run_main(
        "logger=mlflow", "+logger.mlflow.tags.team=vision", "data=synthetic", "data.n_train=100",
        "trainer.epochs=1", f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    from mlflow import MlflowClient

    kept = json.loads((run_dir / "metrics.json").read_text())["logged_to"]["mlflow"]
    run = MlflowClient(f"sqlite:///{run_dir / MLFLOW_DB}").get_run(kept["run_id"])
    assert run.data.tags["team"] == "vision"
