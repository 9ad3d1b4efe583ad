"""A sweep folder's results: summary.csv, then its plots. The one place that writes both, for
the sweep callback (at a sweep's end, or what an interrupted sweep kept) and for
`python -m mlp_sweep.summary DIR...` (any folder, any time)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlp_sweep.labels import MULTIRUN_FILE, counted
from mlp_sweep.results.summary import SUMMARY_FILE, SummaryError, format_table, write_summary
from mlp_sweep.run.record import METRICS_FILE

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
        description="Rebuild summary.csv, summary_by_config.csv and the plots of sweep folders. "
        "A folder of sweeps (outputs/sweeps) gets one table over all its runs, grouped by "
        "configuration over seeds: summary_all.csv and summary_all_by_config.csv in it.",
    )
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="DIR")
    parser.add_argument(
        "--newest", action="store_true", help="a folder of sweeps: keep only the newest rerun"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    for sweep_dir in args.sweep_dirs:
        if sweep_dir.is_dir() and not is_sweep(sweep_dir):
            code = summarize_many(sweep_dir, args.newest)
            if code:
                return code
            continue
        try:
            frame = write_summary(sweep_dir)
        except SummaryError as err:
            print(f"mlp_sweep.summary: error: {err}", file=sys.stderr)
            return 2
        print(format_table(frame))
        print(f"wrote {sweep_dir / SUMMARY_FILE} ({counted(len(frame), 'run')})")
        drawn = draw(sweep_dir, frame)
        if drawn:
            print(f"plots: {', '.join(str(p) for p in drawn)}")
    return 0


def is_sweep(folder: Path) -> bool:
    """A sweep's folder (its multirun.yaml), a run's, or one whose job folders are its own;
    not a folder that holds sweeps."""
    if (folder / MULTIRUN_FILE).is_file() or (folder / METRICS_FILE).is_file():
        return True
    return not any((child / MULTIRUN_FILE).is_file() for child in folder.iterdir())


def summarize_many(folder: Path, newest: bool) -> int:
    """Every run under a folder of sweeps: one table by configuration over seeds, and
    summary_all.csv (a row per run) and summary_all_by_config.csv in the folder."""
    import pandas as pd

    from mlp_sweep.results.collect import ALL_BY_CONFIG_FILE, ALL_FILE, load, varying
    from mlp_sweep.results.summary import by_config
    from mlp_sweep.run.record import write_bytes_atomic

    frame = load(folder, reruns="newest" if newest else "all")
    if frame.empty:
        print(f"mlp_sweep.summary: error: {folder}: no runs found under it", file=sys.stderr)
        return 2
    grouped = by_config(frame, varying(frame))
    for name, table in ((ALL_FILE, frame), (ALL_BY_CONFIG_FILE, grouped)):
        write_bytes_atomic(folder / name, table.to_csv(index=False).encode())
    shown = grouped.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].round(4)
    print(shown.to_string(index=False))
    sweeps = frame["sweep"].nunique()
    reruns = int(frame["rerun"].sum())
    print(
        f"wrote {folder / ALL_FILE} ({counted(len(frame), 'run')} in {counted(sweeps, 'sweep')}"
        + (f", {reruns} of them reruns" if reruns else "")
        + f") and {folder / ALL_BY_CONFIG_FILE} ({counted(len(grouped), 'configuration')})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
