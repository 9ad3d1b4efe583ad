"""trainer.precision and trainer.compile, checked on the CPU (tests/test_gpu.py on a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlp_sweep.config import (
    Config,
    DataConfig,
    Dataset,
    ModelConfig,
    OptimConfig,
    Precision,
    TrainerConfig,
)
from mlp_sweep.run.runner import run

DATA = DataConfig(name=Dataset.synthetic, n_train=800, n_test=400)


def cfg(precision: Precision = Precision.fp32, **trainer: object) -> Config:
    return Config(
        model=ModelConfig(hidden=[64, 64]),
        optim=OptimConfig(lr=0.2),
        data=DATA,
        trainer=TrainerConfig(epochs=3, batch_size=50, precision=precision, **trainer),  # type: ignore[arg-type]
        device="cpu",
    )


def history(run_dir: Path) -> list[tuple[float, float, float]]:
    lines = (run_dir / "history.csv").read_text().splitlines()[1:]
    return [tuple(float(v) for v in line.split(",")[1:4]) for line in lines]  # type: ignore[misc]


def test_each_precision_trains_close_to_fp32(tmp_path: Path) -> None:
    records = {p: run(cfg(p), tmp_path / p.value) for p in Precision}
    assert all(r["status"] == "ok" for r in records.values())
    fp32 = history(tmp_path / "fp32")
    # tf32 only changes GPU matmuls: on a CPU, the very same numbers.
    assert history(tmp_path / "tf32") == fp32
    # fp64 starts from the same weights; float32 rounding is all that differs.
    for a, b in zip(history(tmp_path / "fp64"), fp32, strict=True):
        assert a[0] == pytest.approx(b[0], rel=1e-4) and a[2] == pytest.approx(b[2], abs=0.01)
    # bf16 matmuls: a coarser run, still close.
    bf16 = history(tmp_path / "bf16")
    assert bf16 != fp32
    assert abs(bf16[-1][2] - fp32[-1][2]) < 0.05
    # Each record says what it ran at: precision is part of the config a resume compares.
    saved = json.loads((tmp_path / "bf16" / "metrics.json").read_text())
    assert saved["params"]["trainer.precision"] == "bf16"


def test_fp64_keeps_the_model_and_data_in_float64(tmp_path: Path) -> None:
    from mlp_sweep.training import precision
    from mlp_sweep.training.data import load_data
    from mlp_sweep.training.model import build_mlp

    dtype = precision.dtype(Precision.fp64)
    data = load_data(DATA, torch.device("cpu"), dtype)
    model = build_mlp(ModelConfig(hidden=[8]), data.num_features, 10, "cpu", dtype)
    assert data.x_train.dtype == torch.float64
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    run(cfg(Precision.fp64), tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert {t.dtype for t in state["model"].values()} == {torch.float64}


@pytest.mark.slow
def test_compile_on_cpu_gives_the_eager_numbers(tmp_path: Path) -> None:
    """torch.compile (inductor, C++ on the CPU): same training, within float tolerance."""
    eager = run(cfg(), tmp_path / "eager")
    compiled = run(cfg(compile=True), tmp_path / "compiled")
    assert compiled["status"] == "ok", compiled["error"]
    for a, b in zip(history(tmp_path / "compiled"), history(tmp_path / "eager"), strict=True):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-4)
    assert compiled["test_acc"] == pytest.approx(eager["test_acc"], abs=0.01)
