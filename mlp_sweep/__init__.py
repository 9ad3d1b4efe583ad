"""mlp_sweep: Hydra-configured sweeps of small PyTorch MLPs, gathered into one pandas table.

From Python (pandas is imported on first use, not with the package):

    import mlp_sweep
    runs = mlp_sweep.load("outputs/sweeps")            # every run of every sweep: one frame
    curves = mlp_sweep.history(runs)                   # their epochs, one row each
    mlp_sweep.compare(runs, by="model.act", metric="test_acc", paired_on=["model.init", "seed"])
    mlp_sweep.table(runs, rows="model.act", cols="model.init")
    runs = mlp_sweep.sweep(["model.act=relu,selu", "trainer.epochs=3"])   # run one, get its frame
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# MKL's strict reproducibility mode makes a GEMM's result independent of the thread count, so
# a run gives the same numbers alone on every core, beside other jobs on one core, or resumed
# elsewhere. MKL reads it once, at its first call, hence here. Measured cost: none to ~3% on
# this project's MLP. Set MKL_CBWR yourself to choose otherwise.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"

__all__ = ["SweepError", "compare", "history", "load", "sweep", "table"]

if TYPE_CHECKING:
    from mlp_sweep.cli.api import SweepError, sweep
    from mlp_sweep.results.collect import history, load
    from mlp_sweep.results.compare import compare, table

_PUBLIC = {
    "load": "mlp_sweep.results.collect",
    "history": "mlp_sweep.results.collect",
    "sweep": "mlp_sweep.cli.api",
    "SweepError": "mlp_sweep.cli.api",
    "compare": "mlp_sweep.results.compare",
    "table": "mlp_sweep.results.compare",
}


def __getattr__(name: str) -> Any:
    """The public functions, imported when first used: `import mlp_sweep` stays light for the
    command line and the workers, which need none of them."""
    if name in _PUBLIC:
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlp_sweep' has no attribute {name!r}")
