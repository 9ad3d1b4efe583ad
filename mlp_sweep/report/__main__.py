import argparse
import sys
from pathlib import Path

from mlp_sweep.report.build import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlp_sweep.report",
        description="Write docs/RESULTS.md (and its figures, docs/results/runs.csv) from a sweep "
        "of experiment=activations_grid and one of experiment=tutorial_repro.",
    )
    parser.add_argument("grid", type=Path, help="the activations_grid sweep folder")
    parser.add_argument("tutorial", type=Path, help="the tutorial_repro sweep folder")
    parser.add_argument("--out", type=Path, default=Path("docs/RESULTS.md"))
    args = parser.parse_args(argv)
    write_report(args.grid, args.tutorial, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
