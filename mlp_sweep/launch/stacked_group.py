"""A group of a sweep's jobs trained as one stack, as a worker of hydra/launcher=fused runs it.

Two steps. First the group trains as one stack through the run driver (mlp_sweep.run.runner.
run_stack): each member under its own folder's lock, validated, recorded, logged, watched and
pruned as a run alone is, so a sweep's progress display, summary, search and resume see each
member as the run it is. Then each job goes through Hydra's run_job as any launcher's does
(.hydra/, the job's log, callbacks, its return value), where the task finds its run finished
and skips it. A member that cannot join (invalid, finished already, trained elsewhere, another
config in its folder) is left to that second step, which does for it exactly what it does
under the other launchers; so is every member, should the stacked training itself fail (they
then continue alone from their checkpoints).

Here is only what is Hydra's: a job's Entry from its composed config, and the logger that
writes a member's lines into the job's log file as the job's logging would.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mlp_sweep.config import Config, to_config
from mlp_sweep.launch.task import job_dir, job_info, reads_hydra_config, task_config
from mlp_sweep.run.job import JobInfo
from mlp_sweep.run.runner import StackMember, run_stack
from mlp_sweep.training.writes import LogFile

log = logging.getLogger(__name__)
# The lifecycle's logger name, so a member's lines read as a run's alone.
LIFECYCLE_LOGGER = "mlp_sweep.run.lifecycle"


@dataclass
class Entry:
    """One job of the group: its config, folder, place in the sweep, and its log's form."""

    cfg: Config
    run_dir: Path
    job: JobInfo
    log_file: Path  # the job's log (hydra.job.name.log), which run_job appends to afterwards
    log_format: str  # its job logging's file format, and date format (None: logging's own)
    log_datefmt: str | None = None


def _member_logger(entry: Entry) -> tuple[logging.Logger, logging.Handler]:
    """A logger onto the job's own log file, formatted as the job's logging formats it (the
    job's logging is Hydra's to set up, in run_job, after the group has trained)."""
    entry.run_dir.mkdir(parents=True, exist_ok=True)
    handler = LogFile(entry.log_file)  # appends, and never through a link planted there
    handler.setFormatter(logging.Formatter(entry.log_format, entry.log_datefmt))
    logger = logging.Logger(LIFECYCLE_LOGGER, logging.INFO)  # standalone: no propagation
    logger.addHandler(handler)
    return logger, handler


def train_group(entries: Sequence[Entry]) -> dict[Path, dict[str, Any]]:
    """Train what can of these runs as one stack, each recorded in its own folder; how each
    run that ended in the stack ended, by folder (mlp_sweep.run.runner.run_stack)."""
    with contextlib.ExitStack() as opened:
        members = []
        for e in entries:
            logger, handler = _member_logger(e)
            opened.callback(handler.close)
            members.append(StackMember(e.cfg, e.run_dir, e.job, logger))
        return run_stack(members)


def entry(config: DictConfig) -> Entry:
    """A job of the group, from its composed config (Hydra's node included)."""
    if reads_hydra_config(config):
        HydraConfig.instance().set_config(config)
    cfg = to_config(task_config(config))
    job = job_info(config.hydra, cfg.trainer.epochs, multirun=True)
    folder = job_dir(config)
    logging_cfg = config.hydra.job_logging
    formatter = OmegaConf.select(logging_cfg, "handlers.file.formatter", default="simple")
    form = OmegaConf.select(logging_cfg, f"formatters.{formatter}", default=None) or {}
    return Entry(
        cfg,
        folder,
        job,
        folder / f"{config.hydra.job.name}.log",
        str(form.get("format") or logging.BASIC_FORMAT),
        form.get("datefmt"),
    )
