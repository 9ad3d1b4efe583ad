"""The product's promise on real data: the four activations on full MNIST reach >= 0.90.

Slow (about a minute of training on 2 cores): run with `python -m pytest -m slow`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


@pytest.mark.slow
def test_four_activations_on_full_mnist(run_cli, tmp_path: Path) -> None:
    sweep = tmp_path / "full"
    result = run_cli(
        "-m",
        "model.act=relu,leaky,selu,softplus",
        "device=cpu",
        f"hydra.sweep.dir={sweep}",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["model.act"].tolist() == ["relu", "leaky", "selu", "softplus"]
    assert frame["status"].eq("ok").all()
    assert frame["epochs_done"].eq(10).all()
    assert frame["test_acc"].ge(0.90).all(), frame[["model.act", "test_acc"]]
