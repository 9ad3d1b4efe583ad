"""logger=mlflow at a sweep's end, in the command's process: the parent run gets the sweep's
results and ends with the status its jobs earned.

- artifacts: summary.csv, summary_by_config.csv, curves.png, comparison.png (and a search's
  pareto.png);
- a search's best trial: its objectives as the parent's metrics `best_trial/<objective>`, and
  its settings and folder as tags `best_trial.<key>`, `best_trial.run_dir`;
- a job whose process was killed outright (its record `incomplete`) never told MLflow: its
  child run, still RUNNING there, is set KILLED with the tag status=incomplete;
- the parent ends FINISHED when every job finished, FAILED when one failed, and KILLED when
  one was interrupted, timed out or did not finish; its tag `status` says the same in
  mlp_sweep's words, and `runs` counts the jobs.

Nothing here can fail the sweep: the caller gets one line to print instead (finish_sweep
runs on a thread with a deadline, as the jobs' loggers do), and on success the line that
says where to see the sweep (the parent run's page, or the `mlflow ui` command of a local
store).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlp_sweep.config import MlflowConfig
from mlp_sweep.errors import one_line
from mlp_sweep.loggers import mlflow_store as store
from mlp_sweep.loggers.run_info import LOGGED_TO
from mlp_sweep.run.reader import job_dirs, read_run
from mlp_sweep.status import FINISHED, Status

PARENT_FILES = (
    "summary.csv",
    "summary_by_config.csv",
    "curves.png",
    "comparison.png",
    "pareto.png",
)
UNFINISHED = {Status.INTERRUPTED, Status.TIMEOUT, Status.INCOMPLETE}


def finish_sweep(
    sweep_dir: Path, cfg: MlflowConfig, best: dict[str, Any] | None = None
) -> tuple[str | None, str | None]:
    """End the sweep's parent run (see the module). Returns (where to see it, None) when
    done, (None, why not) when not, (None, None) where no job reached MLflow. Waits at most
    cfg.finish_timeout seconds."""
    if not store.read_parents(sweep_dir):
        return None, None
    said: list[str] = []
    failure: list[str] = []

    def work() -> None:
        try:
            said.append(_finish(sweep_dir, cfg, best))
        except Exception as err:
            failure.append(one_line(err))

    thread = threading.Thread(target=work, name="mlp_sweep-mlflow-parent", daemon=True)
    thread.start()
    thread.join(cfg.finish_timeout)
    if thread.is_alive():
        return None, f"still sending after {cfg.finish_timeout:g} s; given up"
    if failure:
        return None, failure[0]
    return (said[0] or None), None


def where_to_see(uri: str, experiment: str, parent: str) -> str:
    """The parent run's page on a server, or the command that serves a local store."""
    if uri.startswith(("http://", "https://")):
        return f"{store.shown(uri).rstrip('/')}/#/experiments/{experiment}/runs/{parent}"
    return f"runs in {uri}; see them with: mlflow ui --backend-store-uri {uri}"


def sweep_status(statuses: Sequence[str]) -> tuple[str, str]:
    """(the parent's MLflow status, mlp_sweep's word for it)."""
    if any(s == Status.FAILED for s in statuses):
        return "FAILED", "failed"
    if any(s not in FINISHED for s in statuses):
        return "KILLED", "incomplete"
    return "FINISHED", "ok"


def _finish(sweep_dir: Path, cfg: MlflowConfig, best: dict[str, Any] | None) -> str:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    store.limit_requests(cfg)
    uri = store.tracking_uri(cfg, sweep_dir)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(cfg.experiment or sweep_dir.name)
    if experiment is None:
        return ""
    key = store.parent_key(store.store_name(cfg, uri), experiment.experiment_id)
    known = store.read_parents(sweep_dir).get(key)
    if known is None:
        return ""
    parent = known["parent_run_id"]
    statuses = []
    for run_dir in job_dirs(sweep_dir):
        record = read_run(run_dir)
        statuses.append(record.status)
        if record.status in UNFINISHED:
            _kill_child(client, record.get(LOGGED_TO), parent, record.status)
    for name in PARENT_FILES:
        path = sweep_dir / name
        if path.is_file() and not path.is_symlink():
            client.log_artifact(parent, str(path))
    now, tags = int(time.time() * 1000), []
    metrics = []
    if best:
        for key, value in best.get("objectives", {}).items():
            metrics.append(Metric(f"best_trial/{key}", float(value), now, 0))
        values = best.get("values", {}).items()
        tags += [RunTag(f"best_trial.{k}", str(v)[:5000]) for k, v in values]
    status, word = sweep_status(statuses)
    tags += [RunTag(store.TAG_STATUS, word), RunTag("runs", str(len(statuses)))]
    client.log_batch(parent, metrics=metrics, tags=tags)
    client.set_terminated(parent, status)
    return where_to_see(uri, str(experiment.experiment_id), parent)


def _kill_child(client: Any, logged_to: Any, parent: str, status: str) -> None:
    """A child run whose process never told MLflow how it ended: KILLED, tagged why."""
    kept = logged_to.get("mlflow") if isinstance(logged_to, dict) else None
    run_id = kept.get("run_id") if isinstance(kept, dict) else None
    if not (isinstance(run_id, str) and store.RUN_ID.fullmatch(run_id)):
        return
    run = store.existing_run(client, run_id)
    if run is None or run.data.tags.get("mlflow.parentRunId") != parent:
        return  # not this sweep's (a record is data: it names no run of another)
    client.set_tag(run_id, store.TAG_STATUS, str(status))
    if run.info.status == "RUNNING":
        client.set_terminated(run_id, "KILLED")
