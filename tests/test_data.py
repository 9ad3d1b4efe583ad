"""Datasets load as normalized tensors, broken files are named, batches cover every sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mlp_sweep.config import DataConfig, Dataset
from mlp_sweep.errors import DataError
from mlp_sweep.training.data import batch_indices, load_data
from mlp_sweep.training.files import DATA_DIR, prepare_raw

CPU = torch.device("cpu")
SHIPPED = DATA_DIR / "MNIST" / "raw"
# Facts measured on the canonical files (../shared/data/README.md).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist():
    return load_data(DataConfig(), CPU)


def test_shipped_mnist_loads_whole_and_normalized(mnist) -> None:
    assert mnist.x_train.shape == (60_000, 784) and mnist.x_test.shape == (10_000, 784)
    assert mnist.x_train.dtype == torch.float32 and mnist.y_train.dtype == torch.int64
    assert torch.bincount(mnist.y_train).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.y_test).tolist() == TEST_COUNTS
    # The tutorial's Normalize constants are the training set's own mean and std.
    assert mnist.x_train.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert mnist.x_train.std().item() == pytest.approx(1.0, abs=1e-3)


def test_limits_take_the_first_samples(mnist) -> None:
    small = load_data(DataConfig(limit_train=300, limit_test=50), CPU)
    assert len(small.x_train) == 300 and len(small.y_test) == 50
    assert torch.equal(small.x_train, mnist.x_train[:300])
    assert torch.equal(small.y_test, mnist.y_test[:50])


def test_normalize_off_keeps_unit_range() -> None:
    raw = load_data(DataConfig(normalize=False, limit_train=100, limit_test=10), CPU)
    assert raw.x_train.min() == 0.0 and raw.x_train.max() == 1.0


def copy_gz(root: Path) -> Path:
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for gz in SHIPPED.glob("*.gz"):
        shutil.copy(gz, folder / gz.name)
    return folder


def test_gz_files_are_decompressed_and_checked(tmp_path: Path) -> None:
    folder = copy_gz(tmp_path)
    prepare_raw(DataConfig(root=str(tmp_path)))
    assert (folder / "train-images-idx3-ubyte").stat().st_size == 47_040_016
    assert not list(folder.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_mnist_file_is_named(tmp_path: Path, damage: str) -> None:
    folder = copy_gz(tmp_path)
    prepare_raw(DataConfig(root=str(tmp_path)))
    labels = folder / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    if damage == "truncated":
        data = data[:5000]
    else:
        data[100] ^= 0xFF
    labels.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        load_data(DataConfig(root=str(tmp_path)), CPU)
    message = str(err.value)
    assert str(labels) in message and "\n" not in message
    assert ("5000 bytes, expected 10008" if damage == "truncated" else "md5") in message


def test_missing_dataset_offline_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_data(DataConfig(name=Dataset.fashion_mnist, root=str(tmp_path), download=False), CPU)
    message = str(err.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and "\n" not in message
    assert "train-images-idx3-ubyte" in message and "data.download=false" in message


def test_failed_download_is_one_line_naming_the_folder(tmp_path: Path, monkeypatch) -> None:
    from torchvision import datasets

    def offline(self) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirrors...")

    monkeypatch.setattr(datasets.KMNIST, "download", offline)
    with pytest.raises(DataError) as err:
        prepare_raw(DataConfig(name=Dataset.kmnist, root=str(tmp_path), download=True))
    message = str(err.value)
    assert "\n" not in message and "download failed (RuntimeError)" in message
    assert str(tmp_path / "KMNIST" / "raw") in message


def test_synthetic_is_fixed_whatever_the_run_seed() -> None:
    torch.manual_seed(1)
    a = load_data(DataConfig(name=Dataset.synthetic, n_train=50, n_test=20), CPU)
    torch.manual_seed(2)
    b = load_data(DataConfig(name=Dataset.synthetic, n_train=50, n_test=20), CPU)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (50, 784) and a.x_test.shape == (20, 784)


def test_batches_cover_every_index_once_and_follow_the_seed() -> None:
    batches = batch_indices(1003, 200, torch.Generator().manual_seed(0), CPU)
    assert [len(b) for b in batches] == [200] * 5 + [3]
    assert sorted(torch.cat(batches).tolist()) == list(range(1003))
    again = batch_indices(1003, 200, torch.Generator().manual_seed(0), CPU)
    assert all(torch.equal(x, y) for x, y in zip(batches, again, strict=True))
    other = batch_indices(1003, 200, torch.Generator().manual_seed(1), CPU)
    assert not torch.equal(batches[0], other[0])
