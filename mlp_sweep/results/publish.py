"""A sweep folder's results: summary.csv, then its plots. The one place that writes both, for
the sweep callback (at a sweep's end, or what an interrupted sweep kept) and for
`python -m mlp_sweep.summary DIR...` (any folder, any time)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlp_sweep.results.summary import SUMMARY_FILE, SummaryError, format_table, write_summary

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def write_results(sweep_dir: Path) -> tuple[pd.DataFrame, list[Path]]:
    """Write summary.csv (and summary_by_config.csv) and draw the plots. Returns the summary
    and the plots drawn. Raises SummaryError when the folder holds no run."""
    frame = write_summary(sweep_dir)
    return frame, draw(sweep_dir, frame)


def draw(sweep_dir: Path, frame: pd.DataFrame) -> list[Path]:
    """The sweep's plots; a plot that cannot be drawn costs a warning line, never the summary."""
    from mlp_sweep.results.plots import write_plots  # matplotlib: only here

    try:
        return write_plots(sweep_dir, frame)
    except Exception as err:
        log.warning("no plots for %s: %s: %s", sweep_dir, type(err).__name__, err)
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlp_sweep.summary",
        description="Rebuild summary.csv, summary_by_config.csv and the plots of sweep folders.",
    )
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    for sweep_dir in args.sweep_dirs:
        try:
            frame = write_summary(sweep_dir)
        except SummaryError as err:
            print(f"mlp_sweep.summary: error: {err}", file=sys.stderr)
            return 2
        print(format_table(frame))
        print(f"wrote {sweep_dir / SUMMARY_FILE} ({len(frame)} runs)")
        drawn = draw(sweep_dir, frame)
        if drawn:
            print(f"plots: {', '.join(str(p) for p in drawn)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
