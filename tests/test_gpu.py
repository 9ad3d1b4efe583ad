"""The CUDA path, for real, where a GPU is present; skipped (with the reason) where not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlp_sweep.config import Config, DataConfig, Impl, ModelConfig, TrainerConfig
from mlp_sweep.run.runner import run
from mlp_sweep.training.model import build_mlp

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def test_run_on_cuda_keeps_everything_on_the_gpu(tmp_path: Path) -> None:
    cfg = Config(
        data=DataConfig(limit_train=5000, limit_test=1000),
        trainer=TrainerConfig(epochs=2),
        device="cuda",
    )
    record = run(cfg, tmp_path)
    assert record["status"] == "ok", record["error"]
    assert record["device"].startswith("cuda")
    assert json.loads((tmp_path / "metrics.json").read_text())["device"] == record["device"]
    assert 0.5 < record["test_acc"] <= 1.0


def test_cuda_sweep_through_the_entry_point(run_cli, tmp_path: Path) -> None:
    import pandas as pd

    sweep = tmp_path / "gpu"
    result = run_cli(
        "-m", "device=cuda,cpu", "data=synthetic", "trainer.epochs=2", f"hydra.sweep.dir={sweep}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["device"].tolist() == ["cuda:0", "cpu"]
    assert frame["status"].eq("ok").all()


@pytest.mark.parametrize("impl", list(Impl), ids=lambda impl: impl.value)
def test_the_same_weights_compute_the_same_on_cpu_and_cuda(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """build_mlp draws a model's weights on its own device (CUDA's generator on a GPU, not the
    CPU's), so the GPU model is given the CPU model's weights; then both compute one function."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # fp32 as on the CPU
    cfg = ModelConfig(impl=impl)
    torch.manual_seed(0)
    cpu_model = build_mlp(cfg, 784, 10)
    gpu_model = build_mlp(cfg, 784, 10, "cuda")
    gpu_model.load_state_dict(cpu_model.state_dict())
    for key, value in cpu_model.state_dict().items():
        on_gpu = gpu_model.state_dict()[key]
        assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), value), key
    x = torch.randn(32, 784)
    expected = cpu_model(x)
    assert expected.abs().max() > 0.1  # a real output to compare, not zeros
    torch.testing.assert_close(gpu_model(x.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", list(Impl), ids=lambda impl: impl.value)
def test_the_seed_decides_the_weights_on_cuda(impl: Impl) -> None:
    """On the GPU as on the CPU, one seed gives one model and another seed another."""

    def weights(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        model = build_mlp(ModelConfig(impl=impl), 784, 10, "cuda")
        return {k: v.cpu() for k, v in model.state_dict().items()}

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not any(torch.equal(first[k], other[k]) for k in first if k.endswith("weight"))


def test_tf32_and_bf16_stay_within_0_3_points_of_fp32_on_the_activation_sweep(
    run_cli, tmp_path: Path
) -> None:
    """The issue's accuracy bar, on the README's 4-activation sweep (full MNIST, 10 epochs)."""
    import pandas as pd

    acc = {}
    for precision in ("fp32", "tf32", "bf16"):
        sweep = tmp_path / precision
        result = run_cli(
            "-m", "model.act=relu,leaky,selu,softplus", "device=cuda",
            f"trainer.precision={precision}", f"hydra.sweep.dir={sweep}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        acc[precision] = pd.read_csv(sweep / "summary.csv")["test_acc"]
    for precision in ("tf32", "bf16"):
        assert (acc[precision] - acc["fp32"]).abs().max() <= 0.003, (precision, acc)


def test_compiled_run_on_cuda_matches_eager(tmp_path: Path) -> None:
    base = Config(data=DataConfig(limit_train=5000, limit_test=1000), device="cuda")
    eager = run(base, tmp_path / "eager")
    compiled = run(
        Config(data=base.data, trainer=TrainerConfig(compile=True), device="cuda"),
        tmp_path / "compiled",
    )
    assert compiled["status"] == "ok", compiled["error"]
    assert abs(compiled["test_acc"] - eager["test_acc"]) <= 0.003


# ---- placement across GPUs and packing on each (the CPU-observable side: test_gpu_placement) --

PLACED = ["-m", "model.act=relu,selu", "seed=0,1", "data=synthetic", "trainer.epochs=2"]
PLACED += ["device=cuda"]


def _placed_sweep(run_cli, folder: Path, *extra: str) -> list[dict]:
    result = run_cli(*PLACED, *extra, f"hydra.sweep.dir={folder}")
    assert result.returncode == 0, result.stderr[-3000:]
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("*/metrics.json"))]
    assert len(found) == 4 and {r["status"] for r in found} == {"ok"}
    return found


def test_a_sweep_uses_every_visible_gpu_and_records_which(run_cli, tmp_path: Path) -> None:
    from mlp_sweep.training import gpus

    seen = gpus.visible()
    found = _placed_sweep(run_cli, tmp_path / "all")
    used = {r["gpu_index"] for r in found}
    assert used == {g.index for g in seen[: len(found)]}  # every GPU, up to one per job
    for r in found:
        assert r["device"] == "cuda:0"  # a worker sees its own GPU alone
        assert r["gpu_uuid"] and r["gpu_name"]
        assert r["cuda_visible_devices"] == next(g.entry for g in seen if g.index == r["gpu_index"])


@pytest.mark.parametrize("per_gpu", [1, 2, 4])
def test_packing_gives_the_numbers_of_runs_alone(run_cli, tmp_path: Path, per_gpu: int) -> None:
    """The same four runs one per GPU and packed 2 or 4 to one: the same losses."""
    alone = _placed_sweep(run_cli, tmp_path / "alone", "hydra.launcher.gpus=[0]")
    packed = _placed_sweep(
        run_cli, tmp_path / "packed", "hydra.launcher.gpus=[0]",
        f"hydra.launcher.jobs_per_gpu={per_gpu}",
    )  # fmt: skip
    assert len({r["pid"] for r in packed}) == min(per_gpu, 4)
    for a, b in zip(alone, packed, strict=True):
        assert a["overrides"] == b["overrides"]
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5)
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-3)


def test_bench_gpu_runs_its_steps(tmp_path: Path) -> None:
    """The benchmark's epochs and one packed sweep (tests and the longer sweeps left out)."""
    from mlp_sweep.bench import gpu

    out = tmp_path / "gpu.json"
    argv = ["--no-tests", "--no-readme-sweep", "--repeats", "1", "--epochs", "1"]
    argv += ["--tutorial-batches", "10"]
    assert gpu.main([*argv, "--pack", "2", "--pack-epochs", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {"fp32", "tf32", "bf16", "tutorial_s"} <= set(result["epochs"])
    assert result["sweeps"]["packed_2"]["runs"] == 16
    assert out.with_suffix(".md").read_text().startswith(result["machine"]["gpu"])
