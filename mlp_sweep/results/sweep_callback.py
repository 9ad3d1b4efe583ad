"""Hydra callback: after a multirun, gather every job's record into summary.csv.

It also remembers, in the command's own process, which folder the command writes, so that
an interrupted command can still write the summary of what it kept (see cli.main).
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mlp_sweep import labels
from mlp_sweep.hydra_compat import GRID_SWEEPERS
from mlp_sweep.results.progress import Progress, is_terminal
from mlp_sweep.run.interrupt import ignore_signals, release_signals

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd

# mlp_sweep.results.summary (pandas: 0.2 s to import) is imported where a summary is written,
# not here: every worker process imports this module with the task, and never writes a summary.


@dataclass
class Active:
    sweep_dir: Path | None = None  # set when a multirun starts, in the parent process
    run_dir: Path | None = None  # set when a single run starts
    planned: int | None = None  # the jobs preflight expanded (a grid's size), when it could
    progress: Progress | None = None  # the sweep's console while it runs
    mlflow: Any = None  # logger.mlflow's settings (a DictConfig) when logger=mlflow

    def stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


ACTIVE = Active()


class SummaryCallback(Callback):
    """Reads the records from disk, so it works for any launcher (jobs may run elsewhere)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        release_signals()  # composed: a Ctrl-C held while the command started stops it here

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        release_signals()  # composed: a Ctrl-C held while the command started stops it here
        ACTIVE.sweep_dir = Path(config.hydra.sweep.dir)
        ACTIVE.mlflow = config.get("logger", {}).get("mlflow")
        sweeper = config.hydra.sweeper
        if sweeper.get("_target_") in GRID_SWEEPERS:
            total = ACTIVE.planned
        else:  # a search: as many runs as the trials it is asked for, one per seed each
            total = sweeper.get("n_trials")
            if total is not None:
                total *= int(sweeper.get("seeds") or 1)
        params = sweeper.get("params")
        if params is not None:
            params = OmegaConf.to_container(params, resolve=False)
        swept = labels.swept_in_command(list(config.hydra.overrides.task), params)
        if int(sweeper.get("seeds") or 1) > 1:  # a search's trials, each on several seeds
            swept.add("seed")
        live = is_terminal(sys.stdout) and not config.get("verbose", False)
        ACTIVE.progress = Progress(ACTIVE.sweep_dir, total, swept or None, live)
        ACTIVE.progress.start()
        # matplotlib takes ~0.4 s to import: do it while the jobs run, not after them.
        threading.Thread(target=_import_plots, name="mlp_sweep-import", daemon=True).start()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Every job has ended: what is left is writing what they left, which a signal could
        # only cut short (one raised inside an import, while the plot import thread runs,
        # can leave the import locks held and the command hung). So no signal stops it now.
        ignore_signals()
        from mlp_sweep.results.publish import write_results
        from mlp_sweep.results.summary import SUMMARY_FILE, SummaryError, count_failed, format_table

        ACTIVE.stop_progress()
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            frame, drawn = write_results(sweep_dir)
        except SummaryError as err:
            # SystemExit passes through Hydra's error reporting: one line, non-zero exit.
            raise SystemExit(f"mlp_sweep: no summary: {err}") from None
        print(format_table(frame), flush=True)
        print(
            f"summary: {sweep_dir / SUMMARY_FILE} ({labels.counted(len(frame), 'run')})", flush=True
        )
        if drawn:
            print(f"plots: {', '.join(str(p) for p in drawn)}", flush=True)
        _finish_mlflow(config.get("logger", {}).get("mlflow"), sweep_dir, frame)
        failed = count_failed(frame)
        if failed:
            raise SystemExit(
                f"mlp_sweep: {failed} of {labels.counted(len(frame), 'run')} failed or did not "
                "finish; "
                f"see the status and error columns of {sweep_dir / SUMMARY_FILE}; "
                f"retry them with: {labels.resume_command(sweep_dir)}"
            )


def _finish_mlflow(settings: DictConfig | None, sweep_dir: Path, frame: pd.DataFrame) -> None:
    """logger=mlflow: the sweep's parent run gets its results and its status; a failure is
    one warning line (mlp_sweep.results.mlflow_parent)."""
    if settings is None:
        return
    from mlp_sweep.results.mlflow_parent import finish_sweep

    cfg = OmegaConf.to_object(settings)
    where, why = finish_sweep(sweep_dir, cfg, best_trial(frame, sweep_dir))  # type: ignore[arg-type]
    if where is not None:
        print(f"mlflow: {where}", flush=True)
    if why is not None:
        log.warning("logger mlflow: the sweep's parent run was not finished: %s", why)


def best_trial(frame: pd.DataFrame, sweep_dir: Path) -> dict[str, Any] | None:
    """A search's best finished trial by its first objective: its job, swept values and
    objective values; None for a grid or a search with no finished trial."""
    from mlp_sweep.results.summary import search_settings

    search = search_settings(sweep_dir)
    if not search.is_search or not search.objectives:
        return None
    objective, direction = search.objectives[0], search.directions[0]
    if objective not in frame.columns:
        return None
    done = frame[(frame["status"] == "ok") & frame[objective].notna()]
    if done.empty:
        return None
    scores = done[objective]
    row = done.loc[scores.idxmax() if direction == "maximize" else scores.idxmin()]
    swept = labels.swept_in_folder(sweep_dir) or set()
    values = {key: row[key] for key in sorted(swept) if key in frame.columns}
    values["run_dir"] = row.get("run_dir")
    objectives = {key: row[key] for key in search.objectives if key in frame.columns}
    return {"values": values, "objectives": objectives}


def _import_plots() -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed, and no GUI toolkit off the main thread
        import matplotlib.pyplot  # noqa: F401

        import mlp_sweep.results.plots  # noqa: F401
    except Exception:  # drawing will say what is wrong, in one line
        pass


def summarize_interrupted(sweep_dir: Path) -> pd.DataFrame | None:
    """summary.csv (and plots) of what an interrupted sweep kept, or None when it kept nothing."""
    from mlp_sweep.results.publish import write_results
    from mlp_sweep.results.summary import SummaryError

    ACTIVE.stop_progress()
    try:
        frame = write_results(sweep_dir)[0]
    except SummaryError:
        return None
    _finish_mlflow(ACTIVE.mlflow, sweep_dir, frame)  # its parent run ends KILLED
    return frame
