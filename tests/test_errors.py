"""Bad input fails before any training: one line naming key, value and choices; exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlp_sweep.cli import main as cli
from mlp_sweep.config import DataConfig
from mlp_sweep.training.files import DATA_DIR, IDX_FILES, prepare_raw

BAD = {
    "unknown activation": (
        ["model.act=bogus"],
        ["model.act", "bogus", "relu, leaky, selu, softplus"],
    ),
    "unknown init": (
        ["model.init=bogus"],
        ["model.init", "bogus", "kaiming_normal", "lecun_normal"],
    ),
    "unknown optimizer": (["optim=bogus"], ["optim=bogus", "adam, sgd"]),
    "unknown dataset": (["data=bogus"], ["data=bogus", "mnist", "synthetic"]),
    "unknown key": (["model.actt=relu"], ["model.actt", "act, init, hidden"]),
    "lr not a number": (["optim.lr=abc"], ["optim.lr", "'abc'", "Float"]),
    "lr negative": (["optim.lr=-1"], ["optim.lr=-1", "> 0"]),
    "zero epochs": (["trainer.epochs=0"], ["trainer.epochs=0", ">= 1"]),
    "zero batch size": (["trainer.batch_size=0"], ["trainer.batch_size=0", ">= 1"]),
    "zero-width layer": (["model.hidden=[0]"], ["model.hidden=[0]", ">= 1"]),
    "not a device": (["device=banana"], ["device=banana", "auto, cpu, cuda, cuda:N, mps"]),
    "adam with momentum": (["optim=adam", "optim.momentum=0.9"], ["optim.momentum", "sgd"]),
    "bad value in one job of a sweep": (["-m", "optim.lr=0.1,-1"], ["optim.lr=-1", "> 0"]),
    "bad choice in one job of a sweep": (
        ["-m", "model.act=relu,bogus"],
        ["model.act", "bogus", "relu"],
    ),
}


@pytest.mark.parametrize("argv,expected", BAD.values(), ids=BAD.keys())
def test_bad_input_is_one_line_before_training(
    run_main, tmp_path: Path, argv: list[str], expected: list[str]
) -> None:
    result = run_main(*argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mlp_sweep: error: ")
    for fragment in expected:
        assert fragment in lines[0]
    assert not (tmp_path / "outputs").exists()  # nothing ran, nothing was written


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_unavailable_device_names_what_is_available(run_main, device: str) -> None:
    import torch

    index = int(device.partition(":")[2] or 0)
    if device.startswith("cuda") and torch.cuda.device_count() > index:
        pytest.skip(f"this machine has the device {device}")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    result = run_main(f"device={device}")
    code, err = result.returncode, result.stderr
    assert code == 2
    assert err.count("\n") == 1
    assert f"device={device}" in err and "available here: auto, cpu" in err


def test_data_root_without_mnist(run_main, tmp_path: Path) -> None:
    result = run_main(f"data.root={tmp_path}")
    code, err = result.returncode, result.stderr
    assert code == 2 and err.count("\n") == 1
    assert f"data.root={tmp_path}" in err and "mnist not found" in err


def test_real_process_exit_code_and_no_traceback(run_cli) -> None:
    result = run_cli("model.act=bogus")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mlp_sweep: error: model.act: Invalid value 'bogus', expected one of "
        "[relu, leaky, selu, softplus, tanh, sigmoid, elu, gelu, silu]"
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_device_cuda_without_gpu_in_a_real_process(run_cli) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: device=cuda is valid here")
    result = run_cli("-m", "device=cuda", "model.act=relu,selu")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mlp_sweep: error: device=cuda: CUDA is not available on this machine; "
        "available here: auto, cpu"
    ]


def test_full_error_gives_the_traceback(monkeypatch, tmp_path: Path) -> None:
    """HYDRA_FULL_ERROR=1: the exception itself leaves the entry point (the interpreter then
    prints its traceback), not the one line and exit 2."""
    from mlp_sweep.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["mlp_sweep", "optim.lr=-1"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="optim.lr=-1"):
        cli.main()


def test_dataset_missing_where_it_may_not_download(run_main, tmp_path: Path) -> None:
    argv = ["data=kmnist", "data.download=false", f"data.root={tmp_path}"]
    result = run_main(*argv)
    code, err = result.returncode, result.stderr
    assert code == 2 and err.count("\n") == 1
    assert f"data.root={tmp_path}" in err and str(tmp_path / "KMNIST" / "raw") in err


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_mnist_file_fails_before_training(run_main, tmp_path: Path, damage: str) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    prepare_raw(DataConfig())
    for name in IDX_FILES:
        (raw / name).symlink_to(DATA_DIR / "MNIST" / "raw" / name)
    images = raw / "t10k-images-idx3-ubyte"
    data = bytearray(images.read_bytes())
    images.unlink()
    images.write_bytes(bytes(data[:-784]) if damage == "truncated" else bytes(data[:-1]) + b"\x01")
    result = run_main(f"data.root={tmp_path}")
    code, err = result.returncode, result.stderr
    assert code == 2 and err.count("\n") == 1
    assert str(images) in err
    assert ("7839232 bytes, expected 7840016" if damage == "truncated" else "md5") in err
