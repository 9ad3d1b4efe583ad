"""Where a run's MLflow records go, and the sweep's parent run that every job nests under.

The tracking URI is logger.mlflow.tracking_uri, or a store inside the sweep's folder
(`sqlite:///<sweep>/mlflow.db`, artifacts in `<sweep>/mlartifacts`) that needs no server.

A sweep's jobs may start in several processes at once (workers, SLURM tasks, a stack's
members), and all of them must nest under one parent run. The first job to get here creates it
and writes its id into `<sweep>/mlflow.json`, under an flock on `<sweep>/mlflow.json.lock`; the
others (and a resume of the sweep) read it there. The same lock covers opening the store: the
first client of a new local store creates its tables, which two at once would both try.

The file is data from the folder: an id is only used where it has the form of an MLflow run
id, against the URI the command was given.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mlp_sweep.config import MlflowConfig
from mlp_sweep.labels import MLFLOW_ARTIFACTS, MLFLOW_DB, MLFLOW_PARENT_FILE
from mlp_sweep.training.writes import write_bytes_atomic

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

RUN_ID = re.compile(r"[0-9a-f]{32}")
# Tags mlp_sweep puts on its runs (besides MLflow's own mlflow.* ones).
TAG_SWEEP = "sweep_dir"
TAG_RUN_DIR = "run_dir"
TAG_STATUS = "status"


def tracking_uri(cfg: MlflowConfig, folder: Path) -> str:
    """cfg's URI, or the local store inside `folder` (the sweep's, or a single run's)."""
    if cfg.tracking_uri:
        return cfg.tracking_uri
    return f"sqlite:///{folder.resolve() / MLFLOW_DB}"


def create_local(folder: Path) -> None:
    """The local store's tables, made in a file of their own and renamed into place: a job
    killed while making them (it takes a second or two) leaves no half-made store, which no
    later client could open. Called under locked() in a sweep."""
    db = folder / MLFLOW_DB
    for name in (MLFLOW_DB, MLFLOW_ARTIFACTS):  # a received folder's: never followed out of it
        if (folder / name).is_symlink():
            raise RuntimeError(f"{folder / name} is a symbolic link; no MLflow store goes there")
    if db.exists():
        return
    from mlflow import MlflowClient

    for left in folder.glob(f"{MLFLOW_DB}.*.new"):  # a killed job's; the lock is ours now
        left.unlink(missing_ok=True)
    new = folder / f"{MLFLOW_DB}.{os.getpid()}.new"
    MlflowClient(tracking_uri=f"sqlite:///{new.resolve()}").search_experiments(max_results=1)
    os.replace(new, db)


def shown(uri: str) -> str:
    """The URI without any user:password@ it carries: what records and messages may hold."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# How records and mlflow.json name the store inside the sweep's folder: by no path, so that a
# moved or copied folder still finds its runs there.
LOCAL_NAME = "<sweep or run folder>/mlflow.db"


def store_name(cfg: MlflowConfig, uri: str) -> str:
    """The store as records and mlflow.json name it: the URI without credentials."""
    return shown(uri) if cfg.tracking_uri else LOCAL_NAME


def is_local(uri: str) -> bool:
    return uri.startswith("sqlite:")


def limit_requests(cfg: MlflowConfig) -> None:
    """MLflow's client retries a request 7 times with exponential backoff and waits 120 s for
    each by default (minutes for a dead server); a logger gives up far sooner. Set in the
    logger's own process, where nothing else uses MLflow; a user's own settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(cfg.request_timeout))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    # MLflow prints a run's link when it ends; the sweep prints its parent's once, itself.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def experiment_id(client: MlflowClient, name: str, folder: Path, uri: str) -> str:
    """The experiment's id, created if new (artifacts beside a local store's database)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise RuntimeError(
                f"MLflow experiment {name!r} is deleted at {shown(uri)}: restore it, or name "
                "another with logger.mlflow.experiment"
            )
        return str(found.experiment_id)
    location = (folder.resolve() / MLFLOW_ARTIFACTS).as_uri() if is_local(uri) else None
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:  # another job created it a moment ago
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


@contextlib.contextmanager
def locked(sweep_dir: Path) -> Iterator[None]:
    """The sweep's MLflow lock: one job at a time opens the store and finds the parent."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(sweep_dir / f"{MLFLOW_PARENT_FILE}.lock", flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_parents(sweep_dir: Path) -> dict[str, dict[str, str]]:
    """mlflow.json's entries whose ids have the right form: {"<uri> <experiment id>": {...}}."""
    path = sweep_dir / MLFLOW_PARENT_FILE
    try:
        if path.is_symlink():
            return {}
        entries = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(entries, dict):
        return {}
    return {
        key: value
        for key, value in entries.items()
        if isinstance(value, dict)
        and isinstance(value.get("parent_run_id"), str)
        and RUN_ID.fullmatch(value["parent_run_id"])
    }


def existing_run(client: MlflowClient, run_id: str) -> Run | None:
    """The run, or None where the server has no such run (other errors are raised)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def parent_key(name: str, experiment: str) -> str:
    """mlflow.json's key for the parent in a store (named by store_name) and experiment."""
    return f"{name} {experiment}"


def parent_run(
    client: MlflowClient, name: str, experiment: str, sweep_dir: Path, tags: dict[str, str]
) -> str:
    """The sweep's parent run in `experiment`: the one mlflow.json names, set running again
    if it had ended (a resumed sweep), or a new one. Called under locked(sweep_dir)."""
    key = parent_key(name, experiment)
    entries = read_parents(sweep_dir)
    known = entries.get(key)
    run = None if known is None else existing_run(client, known["parent_run_id"])
    if run is not None and run.info.lifecycle_stage == "active":
        if run.info.status != "RUNNING":
            client.update_run(run.info.run_id, status="RUNNING")
        return str(run.info.run_id)
    run = client.create_run(
        experiment,
        run_name=sweep_dir.name,
        tags={TAG_SWEEP: str(sweep_dir.resolve()), TAG_STATUS: "running", **tags},
    )
    entries[key] = {
        "tracking_uri": name,
        "experiment_id": experiment,
        "parent_run_id": run.info.run_id,
    }
    data = json.dumps(entries, indent=2).encode()
    write_bytes_atomic(sweep_dir / MLFLOW_PARENT_FILE, data)
    return str(run.info.run_id)
