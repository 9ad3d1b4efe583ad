"""`python -m mlp_sweep.report GRID_DIR TUTORIAL_DIR`: docs/RESULTS.md, from two sweeps.

build.py writes the page from page.py's sections (mlp_sweep.results.compare and
results/stats.py: paired differences and intervals; figures.py: its figures; evidence.py: what
the ReLU-on-logits runs' checkpoints show).
"""

from mlp_sweep.report.build import write_report

__all__ = ["write_report"]
