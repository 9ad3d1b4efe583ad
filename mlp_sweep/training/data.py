"""Datasets -> normalized tensors on the run's device, and shuffled index batches over them.

The whole dataset lives on the device as one tensor and a batch is an index slice of it, so
the training loop has no per-sample Python and no DataLoader workers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from mlp_sweep.config import DataConfig, Dataset
from mlp_sweep.errors import DataError
from mlp_sweep.paths import MNIST_ROOT

# The project's own copy of MNIST: <checkout>/data/MNIST/raw, or mlp_sweep/mnist/MNIST/raw in an
# installed wheel (mlp_sweep/paths.py). Its .gz files are decompressed beside them on first use,
# unless that folder is read-only: then default_root() puts the copies in the user's cache.
DATA_DIR = MNIST_ROOT

# torchvision's dataset class for each; also the folder name under data.root. Imported only
# when loading: torchvision takes over a second to import, and config checks need none of it.
TORCHVISION = {
    Dataset.mnist: "MNIST",
    Dataset.fashion_mnist: "FashionMNIST",
    Dataset.kmnist: "KMNIST",
}

# Pixel mean and std of each training set after scaling to [0, 1]; MNIST's are the tutorial's.
STATS = {
    Dataset.mnist: (0.1307, 0.3081),
    Dataset.fashion_mnist: (0.2860, 0.3530),
    Dataset.kmnist: (0.1918, 0.3483),
}

# Decompressed size and md5 of the canonical MNIST files: a truncated or corrupted copy is
# named here instead of failing later inside torchvision with a numpy reshape error.
MNIST_FILES = {
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}
IDX_FILES = list(MNIST_FILES)  # FashionMNIST and KMNIST use the same four names


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


# The folder a relative data.root is relative to: the command's starting folder, which the
# entry point sets (a job may run elsewhere with hydra.job.chdir=true); None: the current one.
ORIGIN: Path | None = None


def _writable(folder: Path) -> bool:
    """Whether files can be made in folder, or (not there yet) in its nearest existing parent."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def default_root(name: Dataset) -> Path:
    """The root an empty data.root stands for: DATA_DIR, where the shipped .gz files are
    decompressed (and other datasets downloaded) beside them, as in a checkout. When that
    folder is not writable (a wheel installed into a system Python's site-packages) and does
    not already hold the four files, a folder in the user's cache takes the copies instead."""
    raw = DATA_DIR / TORCHVISION[name] / "raw"
    if all((raw / file).exists() for file in IDX_FILES) or _writable(raw):
        return DATA_DIR
    return cache_dir() / "data"


def data_root(cfg: DataConfig) -> Path:
    if not cfg.root:
        return default_root(cfg.name)
    root = Path(cfg.root).expanduser()
    return ORIGIN / root if ORIGIN is not None and not root.is_absolute() else root


def raw_dir(cfg: DataConfig) -> Path:
    return data_root(cfg) / TORCHVISION[cfg.name] / "raw"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _decompress(gz: Path, out: Path) -> None:
    """gunzip next to the .gz through a temp file, so a kill never leaves half a file."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with gzip.open(gz, "rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, out)
    except (OSError, EOFError) as err:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"data.root={gz.parent.parent.parent}: cannot decompress {gz}: {err}"
        ) from err


def _check_mnist(cfg: DataConfig, folder: Path) -> None:
    for name, (size, md5) in MNIST_FILES.items():
        path = folder / name
        actual = path.stat().st_size
        if actual != size:
            raise DataError(
                f"data.root={data_root(cfg)}: {path} is {actual} bytes, expected {size} "
                "(truncated or corrupted; replace it or delete it to re-extract from the .gz)"
            )
        if _md5(path) != md5:
            raise DataError(
                f"data.root={data_root(cfg)}: {path} fails its md5 check "
                "(corrupted; replace it or delete it to re-extract from the .gz)"
            )


def _download(cfg: DataConfig) -> None:
    from torchvision import datasets

    cls = getattr(datasets, TORCHVISION[cfg.name])
    try:
        for train in (True, False):
            cls(str(data_root(cfg)), train=train, download=True)
    except Exception as err:  # offline, torchvision raises RuntimeError or URLError
        raise DataError(
            f"data.root={data_root(cfg)}: {cfg.name.name} not in {raw_dir(cfg)} and the "
            f"download failed ({type(err).__name__}); put the four *-ubyte.gz files there"
        ) from None


def prepare_raw(cfg: DataConfig) -> Path:
    """Make the dataset's four raw files ready to load, or say in one line why they are not.

    Shipped .gz files are decompressed; MNIST must match its canonical sizes and md5s (it is
    never downloaded); another dataset missing here is downloaded by torchvision when
    data.download allows. Returns the raw folder.
    """
    folder = raw_dir(cfg)
    # The .gz files: beside the copies, or in the shipped folder when the copies go to the cache.
    shipped = DATA_DIR / TORCHVISION[cfg.name] / "raw" if not cfg.root else folder
    for name in IDX_FILES:
        path, gz = folder / name, folder / f"{name}.gz"
        gz = gz if gz.exists() else shipped / f"{name}.gz"
        if not path.exists() and gz.exists():
            folder.mkdir(parents=True, exist_ok=True)
            _decompress(gz, path)
    missing = [name for name in IDX_FILES if not (folder / name).exists()]
    if missing and cfg.name is not Dataset.mnist and cfg.download:
        _download(cfg)
        missing = [name for name in IDX_FILES if not (folder / name).exists()]
    if missing:
        raise DataError(
            f"data.root={data_root(cfg)}: {cfg.name.name} not found, expected "
            f"{', '.join(missing)} (or the same names + .gz) in {folder}"
            + ("" if cfg.name is Dataset.mnist else "; data.download=false")
        )
    if cfg.name is Dataset.mnist:
        _check_mnist(cfg, folder)
    return folder


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


def cache_dir() -> Path:
    """Where decoded datasets are kept: $MLP_SWEEP_CACHE, else the user's cache folder."""
    if os.environ.get("MLP_SWEEP_CACHE"):
        return Path(os.environ["MLP_SWEEP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mlp_sweep"


def _cache_file(cfg: DataConfig) -> Path | None:
    """The cache entry for these raw files, or None when they are not all there.

    Keyed by each file's path, size, mtime and inode: replacing or editing a file gives a new
    key (and a new md5 check when the entry is built), so a stale entry is never read.
    """
    stats = []
    for name in IDX_FILES:
        path = raw_dir(cfg) / name
        try:
            st = path.stat()
        except OSError:
            return None
        stats.append([str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino])
    key = json.dumps([cfg.name.name, cfg.normalize, stats])
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir() / f"{cfg.name.name}-{'norm' if cfg.normalize else 'raw'}-{digest}.pt"


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
    path = _cache_file(cfg)
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
    path = _cache_file(cfg)
    if path is not None and path in _loaded:
        return _loaded[path]
    tensors = _load_cache(path) if path is not None else None
    if tensors is None:  # missing or not cached: check the files (or say why) first
        prepare_raw(cfg)
        path = _cache_file(cfg)
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
