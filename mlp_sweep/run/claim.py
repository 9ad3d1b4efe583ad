"""Whether a run folder is this process's to train: the one claim every launcher makes (skip a
finished run, lock, check again), without torch, so the command's own process can make it for
the jobs it runs in place (mlp_sweep.launch.jobs) as a worker makes it for its own."""

from __future__ import annotations

import contextlib
from pathlib import Path

from mlp_sweep.config import Config
from mlp_sweep.run import lock
from mlp_sweep.run.prior import prior_record
from mlp_sweep.run.reader import Record, elsewhere, read_run
from mlp_sweep.run.record import now_iso


def claim(run_dir: Path, cfg: Config | None, held: contextlib.ExitStack) -> Record | None:
    """None: run_dir is this process's to train, its lock now held by `held`. Otherwise the
    Record that says why not: the run finished there (skip it), or another process holds it
    (`running elsewhere`). With a cfg, a folder of another config raises ConfigMismatch before
    anything in it is touched; without one, that check is left to the run."""

    def finished() -> Record | None:
        record = read_run(run_dir) if cfg is None else prior_record(run_dir, cfg)
        return record if record.finished else None

    if (done := finished()) is not None:  # final: safe to read unlocked
        return done
    try:
        held.enter_context(lock.holding(run_dir, since=now_iso()))
    except lock.RunLocked as err:
        return elsewhere(run_dir, str(err))
    return finished()  # it may have finished while we waited
