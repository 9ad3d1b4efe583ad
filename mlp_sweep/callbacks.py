"""Hydra callback: after a multirun, gather every job's record into summary.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mlp_sweep.summary import (
    SUMMARY_FILE,
    SummaryError,
    count_failed,
    format_table,
    write_summary,
)


class SummaryCallback(Callback):
    """Reads the records from disk, so it works for any launcher (jobs may run elsewhere)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
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
