"""Datasets -> normalized tensors on the run's device, and shuffled index batches over them.

The whole dataset lives on the device as one tensor and a batch is an index slice of it, so
the training loop has no per-sample Python and no DataLoader workers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from mlp_sweep.config import DataConfig, Dataset
from mlp_sweep.errors import DataError
from mlp_sweep.training.files import (
    TORCHVISION,
    cache_file,
    data_root,
    decoded_shapes,
    prepare_raw,
    raw_dir,
)
from mlp_sweep.training.writes import atomic_file

log = logging.getLogger(__name__)

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
    """torch.save, atomically (mlp_sweep.training.writes): readers see all of it or none, and
    a crash never leaves a torn entry behind a whole name."""
    with atomic_file(path, 0o644) as f:  # 0644: the cache's other users read it too
        torch.save(tensors, f)


def _build(cfg: DataConfig, path: Path | None) -> dict[str, Tensor]:
    """Decode the (checked) raw files and keep the result at path for the next job."""
    tensors = _decode(cfg)
    if path is not None:
        try:
            _save_cache(path, tensors)
        except OSError:  # a read-only or full cache costs speed, never the run
            pass
    return tensors


def _fault(tensors: object, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """What makes a loaded cache entry unfit for these raw files, or None: each tensor there
    with its dtype and the shape the files' headers give, labels 0-9."""
    if not isinstance(tensors, dict):
        return f"holds a {type(tensors).__name__}, not the decoded tensors"
    for key, shape in shapes.items():
        tensor = tensors.get(key)
        want = torch.float32 if key.startswith("x") else torch.int64
        if not isinstance(tensor, Tensor):
            return f"lacks {key}"
        if tensor.dtype != want:
            return f"holds {key} as {tensor.dtype}, expected {want}"
        if tuple(tensor.shape) != shape:
            return f"holds {key} of shape {list(tensor.shape)}, expected {list(shape)}"
        if key.startswith("y") and len(tensor) and not 0 <= tensor.min() <= tensor.max() <= 9:
            return f"holds {key} with labels outside 0-9"
    return None


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _load_cache(cfg: DataConfig, path: Path) -> dict[str, Tensor] | None:
    """The cache entry, memory-mapped, or None when it is missing or unfit (then rebuilt,
    with one warning naming it): a cache folder may be shared, or damaged, and an entry that
    loads but lacks a tensor would otherwise fail every run that reads it."""
    inode = _inode(path)
    shapes = decoded_shapes(cfg) if inode is not None else None
    if inode is None or shapes is None:  # no entry; raw files that prepare_raw will name
        return None
    for _ in range(3):  # a few times only, should other processes keep rebuilding it
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:
            fault: str | None = f"is unreadable ({type(err).__name__})"
        else:
            fault = _fault(tensors, shapes)
            if fault is None:
                return tensors
        now = _inode(path)
        if now is None or now == inode:  # not rebuilt by another process since: ours to do
            break
        inode = now
    log.warning("data cache %s %s; rebuilding it", path, fault)
    return None


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
    tensors = _load_cache(cfg, path) if path is not None else None
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
