"""One run, start to finish: seed, data, model, training, and its record in its own folder.

Callable without Hydra: `run(Config(), Path("somewhere"))`. Its promises:

- A run that raises is recorded as `failed` with the error's one-line message instead of
  propagating, so one bad configuration cannot sink a sweep or cost it its summary.
- A folder whose record says the run finished (`ok` or `diverged`) with the same config is
  left alone: the run is skipped. A different config for that folder is refused
  (ConfigMismatch) before anything in it is touched.
- An unfinished run continues from its last checkpoint, and on CPU ends with the same numbers
  as an uninterrupted one.
- One writer per folder: a run trains only while holding its folder's lock (mlp_sweep.run.lock);
  a folder another process is training is left alone and reported `running elsewhere`.

Ctrl-C and SIGTERM stop a run between two instructions: it records itself `interrupted` (its
checkpoint holds the last finished epoch) and the interrupt goes on up to the command. What the
record holds at each moment is mlp_sweep.run.lifecycle's, shared with the stacked launcher.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mlp_sweep.config import Config, validate
from mlp_sweep.run import lock
from mlp_sweep.run.interrupt import signals_raise
from mlp_sweep.run.lifecycle import JobInfo, Lifecycle
from mlp_sweep.run.prior import prior_record
from mlp_sweep.run.record import now_iso
from mlp_sweep.run.state import compiled, configure_process, start_state
from mlp_sweep.status import FINISHED, Status
from mlp_sweep.training import precision
from mlp_sweep.training.data import load_data
from mlp_sweep.training.device import resolve_device
from mlp_sweep.training.loop import History, TimeLimitReached, deadline_after, fit

log = logging.getLogger(__name__)


class Pruned(Exception):
    """The search's pruner stopped the run after its last recorded epoch."""


def run(cfg: Config, run_dir: Path, job: JobInfo | None = None) -> dict[str, Any]:
    """Train and record one configuration in run_dir. Returns the final metrics.json fields.

    Skips a run that already finished there; resumes one that did not; leaves alone one that
    another process is training (status `running elsewhere`, nothing written).
    """
    prior = prior_record(run_dir, cfg)  # ConfigMismatch propagates: nothing touched
    if prior is not None and prior.get("status") in FINISHED:  # final: safe to read unlocked
        log.info("%s: already finished (%s), skipped", run_dir, prior["status"])
        return prior
    try:
        with lock.holding(run_dir, since=now_iso()):
            prior = prior_record(run_dir, cfg)  # it may have finished while we waited
            if prior is not None and prior.get("status") in FINISHED:
                log.info("%s: finished elsewhere meanwhile (%s), skipped", run_dir, prior["status"])
                return prior
            with signals_raise():
                return _train(Lifecycle(cfg, run_dir, job or JobInfo()))
    except lock.RunLocked as err:
        log.warning("%s", err)
        return {
            "status": Status.RUNNING_ELSEWHERE,
            "error": str(err),
            "test_acc": None,
            "best_test_acc": None,
            "run_dir": str(run_dir),
        }


def _train(life: Lifecycle) -> dict[str, Any]:
    """Train, recording as it goes; raises only on an interrupt."""
    cfg = life.cfg
    life.opened()
    try:
        validate(cfg)
        device = resolve_device(cfg.device)
        configure_process(cfg, device)
        life.configured(device)
        tic = time.perf_counter()
        data = load_data(cfg.data, device, precision.dtype(cfg.trainer.precision))
        life.data_loaded(data, device, time.perf_counter() - tic)
        state = start_state(cfg, data, device, life.checkpoint)
        life.started(state)

        prune = life.job.prune

        def pruned(history: History) -> bool:
            """Tell the search the history's epochs (the last one too); whether its pruner stops
            the run here (never at its end: nothing left to save)."""
            if prune is None or not history.epochs or history.status != Status.OK:
                return False
            return prune(history) and len(history.epochs) < cfg.trainer.epochs

        # Resumed: the study hears the kept epochs (a kill may have come between an epoch's
        # record and its report), and its pruner may stop the run where it was stopped.
        if pruned(state.history):
            return life.pruned()

        def on_epoch(history: History) -> None:
            state.history = history
            life.epoch_done(state)
            if pruned(history):
                raise Pruned

        trained = compiled(state.model) if cfg.trainer.compile else state.model
        deadline = deadline_after(cfg.trainer.time_limit)
        with precision.autocast(cfg.trainer.precision, device):
            history = fit(
                trained,
                state.optimizer,
                data,
                cfg.trainer,
                cfg.loss,
                state.generator,
                state.history,
                on_epoch,
                deadline,
                life.step_hook(),
                cfg.logger.every_n_steps,
            )
    except Pruned:
        return life.pruned()
    except TimeLimitReached:
        assert cfg.trainer.time_limit is not None
        return life.timed_out(cfg.trainer.time_limit)
    except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM: recorded, then passed on
        life.interrupted(err)
        raise
    except Exception as err:  # recorded, not raised: the sweep goes on
        return life.failed(err)
    return life.finished(history)
