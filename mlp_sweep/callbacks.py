"""Hydra callback: after a multirun, gather every job's record into summary.csv.

It also remembers, in the command's own process, which folder the command writes, so that
an interrupted command can still write the summary of what it kept (see cli.main).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

if TYPE_CHECKING:
    import pandas as pd

# mlp_sweep.summary (pandas: 0.2 s to import) is imported where a summary is written, not here:
# every worker process imports this module with the task, and never writes a summary.


@dataclass
class Active:
    sweep_dir: Path | None = None  # set when a multirun starts, in the parent process
    run_dir: Path | None = None  # set when a single run starts


ACTIVE = Active()


class SummaryCallback(Callback):
    """Reads the records from disk, so it works for any launcher (jobs may run elsewhere)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        ACTIVE.sweep_dir = Path(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mlp_sweep.summary import (
            SUMMARY_FILE,
            SummaryError,
            count_failed,
            format_table,
            write_summary,
        )

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            frame = write_summary(sweep_dir)
        except SummaryError as err:
            # SystemExit passes through Hydra's error reporting: one line, non-zero exit.
            raise SystemExit(f"mlp_sweep: no summary: {err}") from None
        print(format_table(frame), flush=True)
        print(f"summary: {sweep_dir / SUMMARY_FILE} ({len(frame)} runs)", flush=True)
        failed = count_failed(frame)
        if failed:
            raise SystemExit(
                f"mlp_sweep: {failed} of {len(frame)} runs failed or did not finish; "
                f"see the status and error columns of {sweep_dir / SUMMARY_FILE}; "
                f"retry them with: python -m mlp_sweep --resume {sweep_dir}"
            )


def summarize_interrupted(sweep_dir: Path) -> pd.DataFrame | None:
    """summary.csv of what an interrupted sweep kept, or None when it kept nothing."""
    from mlp_sweep.summary import SummaryError, write_summary

    try:
        return write_summary(sweep_dir)
    except SummaryError:
        return None
