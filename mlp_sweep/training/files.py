"""A dataset's files: where they are, whether they are intact, where their decoded cache goes.

No torch here: the command checks every job's data before starting any, and on the parallel
launcher its own process never imports torch (its workers do, while it checks).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import shutil
from pathlib import Path

from mlp_sweep.config import DataConfig, Dataset
from mlp_sweep.errors import DataError
from mlp_sweep.paths import MNIST_ROOT
from mlp_sweep.training.writes import atomic_file

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

# Decompressed size and md5 of the canonical MNIST files: a truncated or corrupted copy is
# named here instead of failing later inside torchvision with a numpy reshape error.
MNIST_FILES = {
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}
IDX_FILES = list(MNIST_FILES)  # FashionMNIST and KMNIST use the same four names
# Each decoded tensor and the raw file it comes from.
DECODED_FROM = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


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
    """gunzip next to the .gz, atomically (mlp_sweep.training.writes): a kill never leaves
    half a file, nor a crash an empty one that the next run would take for the whole."""
    try:
        with gzip.open(gz, "rb") as src, atomic_file(out) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, EOFError) as err:
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


def cache_dir() -> Path:
    """Where decoded datasets are kept: $MLP_SWEEP_CACHE, else the user's cache folder."""
    if os.environ.get("MLP_SWEEP_CACHE"):
        return Path(os.environ["MLP_SWEEP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mlp_sweep"


def cache_file(cfg: DataConfig) -> Path | None:
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


def _idx_dims(path: Path) -> list[int] | None:
    """The dimensions an IDX file's header gives (images: [n, rows, cols]; labels: [n]), or
    None when it has no readable IDX header of unsigned bytes."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        return None
    # Magic: two zero bytes, the type (0x08: unsigned byte), the number of dimensions.
    if len(head) < 4 or head[:3] != b"\x00\x00\x08" or len(head) < 4 + 4 * head[3]:
        return None
    return [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(head[3])]


def decoded_shapes(cfg: DataConfig) -> dict[str, tuple[int, ...]] | None:
    """The shape of each decoded tensor (x: [n, features], y: [n]), read from the raw files'
    headers: what a cache entry of these files must hold. None when a header is unreadable."""
    shapes: dict[str, tuple[int, ...]] = {}
    for key, name in DECODED_FROM.items():
        dims = _idx_dims(raw_dir(cfg) / name)
        if not dims:
            return None
        shapes[key] = (dims[0], math.prod(dims[1:])) if key.startswith("x") else (dims[0],)
    return shapes


def cache_missing(cfg: DataConfig) -> bool:
    """Whether the decoded cache of these (present) raw files has yet to be built."""
    path = cache_file(cfg)
    return path is not None and not path.exists()
