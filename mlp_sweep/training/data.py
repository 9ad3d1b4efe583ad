"""Datasets -> normalized tensors on the run's device, and shuffled index batches over them.

The whole dataset lives on the device as one tensor and a batch is an index slice of it, so
the training loop has no per-sample Python and no DataLoader workers.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from mlp_sweep.config import DataConfig, Dataset
from mlp_sweep.errors import DataError
from mlp_sweep.training.files import TORCHVISION, cache_file, data_root, prepare_raw, raw_dir

# Pixel mean and std of each training set after scaling to [0, 1]; MNIST's are the tutorial's.
STATS = {
    Dataset.mnist: (0.1307, 0.3081),
    Dataset.fashion_mnist: (0.2860, 0.3530),
    Dataset.kmnist: (0.1918, 0.3483),
}


@dataclass(frozen=True)
class Data:
    x_train: Tensor  # float32 [n_train, features], on the run's device
    y_train: Tensor  # int64 [n_train]
    x_test: Tensor
    y_test: Tensor
    num_classes: int

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])


def _load_torchvision(cfg: DataConfig, train: bool) -> tuple[Tensor, Tensor]:
    """One split through torchvision's own dataset class, from files prepare_raw readied."""
    from torchvision import datasets

    try:
        ds = getattr(datasets, TORCHVISION[cfg.name])(str(data_root(cfg)), train=train)
    except Exception as err:  # torchvision's parser fails with bare asserts on a bad file
        raise DataError(
            f"data.root={data_root(cfg)}: cannot read {cfg.name.name} from {raw_dir(cfg)} "
            f"({type(err).__name__}{f': {err}' if str(err) else ''}); "
            "the files are damaged or not IDX files"
        ) from err
    return ds.data, ds.targets


def _synthetic(cfg: DataConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Ten Gaussian blobs in 784 dimensions: offline, fast, and learnable in a few steps.

    The generator's seed is fixed, not the run's, so every run of a sweep sees the same data.
    """
    gen = torch.Generator().manual_seed(20230718)
    centers = 0.3 * torch.randn(10, 784, generator=gen)
    n = cfg.n_train + cfg.n_test
    y = torch.randint(0, 10, (n,), generator=gen)
    x = centers[y] + torch.randn(n, 784, generator=gen)
    return x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train :], y[cfg.n_train :]


def _to_features(images: Tensor, cfg: DataConfig) -> Tensor:
    x = images.reshape(len(images), -1).float().div_(255.0)
    if cfg.normalize:
        mean, std = STATS[cfg.name]
        x = x.sub_(mean).div_(std)
    return x


def _decode(cfg: DataConfig) -> dict[str, Tensor]:
    """The raw files (which prepare_raw has readied) as normalized tensors on the CPU."""
    images, y_train = _load_torchvision(cfg, train=True)
    x_train = _to_features(images, cfg)
    images, y_test = _load_torchvision(cfg, train=False)
    x_test = _to_features(images, cfg)
    return {
        "x_train": x_train,
        "y_train": y_train.long(),
        "x_test": x_test,
        "y_test": y_test.long(),
    }


def _save_cache(path: Path, tensors: dict[str, Tensor]) -> None:
    """torch.save through a temp file and a rename: readers see all of it or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide it from the other users of the cache
        with os.fdopen(fd, "wb") as f:
            torch.save(tensors, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _build(cfg: DataConfig, path: Path | None) -> dict[str, Tensor]:
    """Decode the (checked) raw files and keep the result at path for the next job."""
    tensors = _decode(cfg)
    if path is not None:
        try:
            _save_cache(path, tensors)
        except OSError:  # a read-only or full cache costs speed, never the run
            pass
    return tensors


def _load_cache(path: Path) -> dict[str, Tensor] | None:
    """The cache entry, memory-mapped, or None when it is missing or damaged (then rebuilt)."""
    if not path.exists():
        return None
    try:
        tensors: dict[str, Tensor] = torch.load(
            path, map_location="cpu", weights_only=True, mmap=True
        )
    except Exception:
        return None
    return tensors


def ensure_cached(cfg: DataConfig) -> None:
    """Check the raw files (md5 for MNIST) and build the cache entry if it is missing: done
    once per command before any job starts, so jobs neither repeat the check nor race to
    decode the same files."""
    prepare_raw(cfg)
    path = cache_file(cfg)
    if path is not None and not path.exists():
        try:
            _build(cfg, path)
        except DataError:  # unreadable files fail in each job, as a `failed` row
            pass


# Decoded datasets this process has loaded, by cache file: a worker running many jobs of a
# sweep decodes (or maps) each dataset once.
_loaded: dict[Path, dict[str, Tensor]] = {}


def _decoded(cfg: DataConfig) -> dict[str, Tensor]:
    """Decoded, normalized tensors on the CPU: from this process's memory, the cache file
    (memory-mapped, so parallel workers share one copy in the page cache), or the raw files
    (checked, then cached for the next job)."""
    path = cache_file(cfg)
    if path is not None and path in _loaded:
        return _loaded[path]
    tensors = _load_cache(path) if path is not None else None
    if tensors is None:  # missing or not cached: check the files (or say why) first
        prepare_raw(cfg)
        path = cache_file(cfg)
        tensors = _build(cfg, path)
    if path is not None:
        _loaded[path] = tensors
    return tensors


def load_data(cfg: DataConfig, device: torch.device, dtype: torch.dtype = torch.float32) -> Data:
    """The configured dataset as float features (of dtype) and int64 labels, held whole on
    `device`. On the CPU in float32 the features stay the memory-mapped cache: no copy."""
    if cfg.name is Dataset.synthetic:
        x_train, y_train, x_test, y_test = _synthetic(cfg)
    else:
        decoded = _decoded(cfg)
        x_train, y_train = decoded["x_train"], decoded["y_train"]
        x_test, y_test = decoded["x_test"], decoded["y_test"]
    x_train, y_train = x_train[: cfg.limit_train], y_train[: cfg.limit_train]
    x_test, y_test = x_test[: cfg.limit_test], y_test[: cfg.limit_test]
    return Data(
        x_train=x_train.contiguous().to(device=device, dtype=dtype),
        y_train=y_train.long().to(device),
        x_test=x_test.contiguous().to(device=device, dtype=dtype),
        y_test=y_test.long().to(device),
        num_classes=10,
    )


def batch_indices(
    n: int, batch_size: int, generator: torch.Generator, device: torch.device
) -> tuple[Tensor, ...]:
    """One epoch's shuffled mini-batches as index tensors on `device`; the last may be short.

    The permutation is drawn on the CPU so the batch order depends only on the seed, not on
    the device.
    """
    return torch.randperm(n, generator=generator).to(device).split(batch_size)
