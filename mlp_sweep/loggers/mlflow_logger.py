"""logger=mlflow: each job a nested child run of its sweep's parent run in MLflow.

The child run is named as TensorBoard names the job (`3 model.act=selu`) and created by
whichever process trains the job. It holds:

- tags: job, sweep_dir, run_dir, status, git_commit (and MLflow's mlflow.source.git.commit),
  device, and logger.mlflow.tags;
- params: the job's whole flat config, as metrics.json's `params` holds it (JSON for lists),
  in batches of 100 (MLflow's limit), values cut at 6000 characters (MLflow's);
- metrics: `train_loss_step` at step = the optimizer step (every logger.every_n_steps steps,
  sent when their epoch ends), `train_loss`, `test_loss`, `test_acc`, `seconds` at step =
  epoch, and at the end `best_test_acc` and `best_epoch` (the last epoch's values are the
  metrics' latest);
- artifacts (logger.mlflow.artifacts): the test digits under their predictions each epoch (an
  image with a step slider), and at the end history.csv, steps.csv, metrics.json,
  hydra/config.yaml, confusion.png and misclassified.png.

Its status says what the record says: ok, diverged and pruned end FINISHED, failed FAILED,
interrupted and timeout KILLED (the tag `status` holds mlp_sweep's own word); a run killed
outright is set KILLED when its sweep ends (mlp_sweep.results.mlflow_parent).

A resumed run continues the same MLflow run (its id is in the record's logged_to): it sends
only the epochs and steps the MLflow run does not hold yet, so nothing is there twice. The
steps of an epoch cut short (interrupted, timed out) are never sent: its checkpoint does not
hold them, and the resumed run trains that epoch again.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlp_sweep.config import MlflowConfig
from mlp_sweep.loggers import mlflow_store as store
from mlp_sweep.loggers.run_info import RunInfo, folder_name
from mlp_sweep.status import Status
from mlp_sweep.training.loop import EpochStats

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from mlp_sweep.training.predict import Digits

EPOCH_METRICS = ("train_loss", "test_loss", "test_acc", "seconds")
STEP_METRIC = "train_loss_step"
DIGITS_KEY = "test_digits"
# MLflow's own limits: a batch's params and metrics, a param's key and value.
PARAMS_PER_BATCH, METRICS_PER_BATCH = 100, 1000
PARAM_KEY_MAX, PARAM_VALUE_MAX = 250, 6000
# The record's status -> the MLflow run's.
MLFLOW_STATUS: dict[str, str] = {
    Status.OK: "FINISHED",
    Status.DIVERGED: "FINISHED",
    Status.PRUNED: "FINISHED",
    Status.FAILED: "FAILED",
    Status.INTERRUPTED: "KILLED",
    Status.TIMEOUT: "KILLED",
    Status.INCOMPLETE: "KILLED",
}
RUN_FILES = ("history.csv", "steps.csv", "metrics.json", "confusion.png", "misclassified.png")
JOB_CONFIG = "hydra/config.yaml"


def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:PARAM_VALUE_MAX]


def _now_ms() -> int:
    return int(time.time() * 1000)


class MlflowLogger:
    name = "mlflow"

    def __init__(self, cfg: MlflowConfig) -> None:
        self.cfg = cfg
        self.client: MlflowClient | None = None
        self.run_id = ""
        self.run: RunInfo | None = None
        self.continued = False  # an earlier attempt's MLflow run, running again
        self.epochs_held = 0  # the last epoch the MLflow run holds
        self.step_held = 0  # the last optimizer step it holds
        self.digits_held = 0  # the last epoch whose digits it holds (or that restored)
        self.pending: list[tuple[int, float]] = []  # steps of the epoch under way

    @property
    def finish_seconds(self) -> float:
        return self.cfg.finish_timeout

    def prepare(self) -> None:
        import mlflow.entities  # noqa: F401
        from mlflow import MlflowClient  # noqa: F401

        if not self.cfg.tracking_uri:  # the local store's database layer, imported here too
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

        from mlp_sweep.loggers.digits import prepare

        prepare()

    def start(
        self, run: RunInfo, history: list[EpochStats], steps: list[tuple[int, float]]
    ) -> dict[str, Any]:
        from mlflow import MlflowClient

        store.limit_requests(self.cfg)
        self.run = run
        folder = run.sweep_dir or run.run_dir
        uri = store.tracking_uri(self.cfg, folder)
        where = store.store_name(self.cfg, uri)
        name = self.cfg.experiment or run.group
        sweep = run.sweep_dir
        # A sweep's jobs open its store and find its parent one at a time (mlflow_store).
        with store.locked(sweep) if sweep is not None else contextlib.nullcontext():
            if not self.cfg.tracking_uri:
                store.create_local(folder)
            self.client = client = MlflowClient(tracking_uri=uri)
            experiment = store.experiment_id(client, name, folder, uri)
            parent = None
            if sweep is not None:
                parent = store.parent_run(client, where, experiment, sweep, dict(self.cfg.tags))
        self.run_id = self._continued(run, where, experiment, parent) or self._create(
            run, experiment, parent
        )
        self._params(run.params)
        self.steps(steps)
        self._send_steps()
        self._send_epochs(history)
        self.digits_held = self.epochs_held
        return {
            "run_id": self.run_id,
            "experiment_id": experiment,
            "parent_run_id": parent,
            "tracking_uri": where,
        }

    def _continued(
        self, run: RunInfo, where: str, experiment: str, parent: str | None
    ) -> str | None:
        """The MLflow run an earlier attempt of this run made, running again, or None. Its id
        comes from the record or, where the record never got it (killed a moment after the
        run was created), from its tags: its job under the parent, or a single run's folder."""
        assert self.client is not None
        kept = run.logged_to.get(self.name)
        run_id = None
        if isinstance(kept, dict) and kept.get("tracking_uri") == where:
            candidate = kept.get("run_id")
            if isinstance(candidate, str) and store.RUN_ID.fullmatch(candidate):
                run_id = candidate
        if run_id is None:
            if parent is not None:
                query = f"tags.`mlflow.parentRunId` = '{parent}' and tags.job = '{run.job}'"
            else:
                query = f"tags.{store.TAG_RUN_DIR} = '{run.run_dir.resolve()}'"
            if query.count("'") == 4:  # no quote of a folder's name in the filter
                hits = self.client.search_runs([experiment], query, max_results=1)
                run_id = hits[0].info.run_id if hits else None
        if run_id is None:
            return None
        found = store.existing_run(self.client, run_id)
        if found is None:
            return None
        info = found.info
        if info.lifecycle_stage != "active" or info.experiment_id != experiment:
            return None
        self.client.update_run(run_id, status="RUNNING")
        held = {
            key: max((m.step for m in self.client.get_metric_history(run_id, key)), default=0)
            for key in ("test_acc", STEP_METRIC)
        }
        self.epochs_held, self.step_held = held["test_acc"], held[STEP_METRIC]
        self.continued = True
        return str(run_id)

    def _create(self, run: RunInfo, experiment: str, parent: str | None) -> str:
        from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID

        assert self.client is not None
        tags = {
            store.TAG_RUN_DIR: str(run.run_dir.resolve()),
            store.TAG_STATUS: Status.RUNNING.value,
            **dict(self.cfg.tags),
        }
        optional = {
            "job": run.job,
            store.TAG_SWEEP: run.sweep_dir and run.sweep_dir.resolve(),
            MLFLOW_PARENT_RUN_ID: parent,
            "git_commit": run.git_commit,
            MLFLOW_GIT_COMMIT: run.git_commit,
            "device": run.device,
        }
        tags.update({k: str(v) for k, v in optional.items() if v is not None})
        created = self.client.create_run(experiment, run_name=folder_name(run.label), tags=tags)
        return str(created.info.run_id)

    def _params(self, params: dict[str, Any]) -> None:
        """The flat config; a resumed run's MLflow run keeps the values it has (MLflow refuses
        to change a param, and only run settings such as logger.* may change on a resume)."""
        from mlflow.entities import Param

        assert self.client is not None
        held = self.client.get_run(self.run_id).data.params if self.continued else {}
        new = [
            Param(key[:PARAM_KEY_MAX], param_value(value))
            for key, value in params.items()
            if key not in held
        ]
        for at in range(0, len(new), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=new[at : at + PARAMS_PER_BATCH])

    def _log(self, metrics: list[Metric]) -> None:
        assert self.client is not None
        for at in range(0, len(metrics), METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[at : at + METRICS_PER_BATCH])

    def _send_epochs(self, history: list[EpochStats]) -> None:
        from mlflow.entities import Metric

        new = [stats for stats in history if stats.epoch > self.epochs_held]
        now = _now_ms()
        self._log(
            [
                Metric(key, float(getattr(stats, key)), now, stats.epoch)
                for stats in new
                for key in EPOCH_METRICS
            ]
        )
        if new:
            self.epochs_held = new[-1].epoch

    def steps(self, points: list[tuple[int, float]]) -> None:
        """Held until their epoch ends: the MLflow run holds the steps of the epochs the
        checkpoint holds, as steps.csv does, so a resumed run sends each step once."""
        self.pending += [(step, loss) for step, loss in points if step > self.step_held]

    def _send_steps(self) -> None:
        from mlflow.entities import Metric

        if not self.pending:
            return
        now = _now_ms()
        self._log([Metric(STEP_METRIC, loss, now, step) for step, loss in self.pending])
        self.step_held, self.pending = self.pending[-1][0], []

    def epoch(self, stats: EpochStats) -> None:
        self._send_steps()
        self._send_epochs([stats])

    def digits(self, epoch: int, digits: Digits) -> None:
        if not self.cfg.artifacts or epoch <= self.digits_held:
            return
        from mlp_sweep.loggers.digits import grid

        assert self.client is not None
        self.client.log_image(self.run_id, grid(digits), key=DIGITS_KEY, step=epoch)
        self.digits_held = epoch

    def finish(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        assert self.client is not None and self.run is not None
        status = str(record.get("status"))
        step = int(record.get("epochs_done") or 0)
        best = {k: record.get(k) for k in ("best_test_acc", "best_epoch")}
        self._log([Metric(k, float(v), _now_ms(), step) for k, v in best.items() if v is not None])
        if self.cfg.artifacts:
            self._artifacts(self.run.run_dir)
        self.client.set_tag(self.run_id, store.TAG_STATUS, status)
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "KILLED"))

    def _artifacts(self, run_dir: Path) -> None:
        assert self.client is not None
        for name in RUN_FILES:
            path = run_dir / name
            if path.is_file() and not path.is_symlink():
                self.client.log_artifact(self.run_id, str(path))
        if self.run is not None and self.run.config_yaml:  # .hydra/config.yaml's text
            self.client.log_text(self.run_id, self.run.config_yaml, JOB_CONFIG)

    def close(self) -> None:
        self.client = None
