"""It installs like a package: the wheel carries conf/, the MNIST copy and the Hydra plugins,
and a fresh venv that sees the wheel (not the checkout) runs sweeps from an empty folder.

Installing torch into a fresh venv would cost gigabytes, so the venv borrows this Python's
installed dependencies through a folder of symlinks to its site-packages, less everything of
mlp_sweep's editable install (a .pth in the venv puts that folder on its path).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlp_sweep.config import DataConfig
from mlp_sweep.training import files

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [
    "mlp_sweep/conf/config.yaml",
    "mlp_sweep/conf/hydra/launcher/slurm.yaml",
    "mlp_sweep/conf/data/synthetic.yaml",
    "mlp_sweep/mnist/MNIST/raw/train-images-idx3-ubyte.gz",
    "mlp_sweep/mnist/MNIST/raw/t10k-labels-idx1-ubyte.gz",
    "mlp_sweep/paths.py",
    "hydra_plugins/mlp_sweep_launchers/parallel_launcher.py",
    "hydra_plugins/mlp_sweep_launchers/fused_launcher.py",
    "hydra_plugins/mlp_sweep_grid/grid_sweeper.py",
    "hydra_plugins/mlp_sweep_optuna/optuna_sweeper.py",
]
MNIST = ["trainer.epochs=1", "data.limit_train=2000", "data.limit_test=500"]
SWEEP = ["-m", "model.act=relu,selu", *MNIST]


@dataclass(frozen=True)
class Venv:
    python: Path
    env: dict[str, str]
    wheel: Path


def _copy_source(dest: Path) -> None:
    """What the build reads, without the checkout's caches, outputs and decompressed MNIST.

    A copy rather than the checkout: setuptools builds in the source tree, its build/lib keeps
    the files of earlier builds (a module since moved would still ship), and other tests and
    people use the checkout at the same time.
    """
    ignore = shutil.ignore_patterns(".*", "__pycache__", "*.pyc", "*-ubyte", "*.egg-info")
    dest.mkdir()
    for entry in ROOT.iterdir():
        if entry.name.startswith(".") or entry.name in {"build", "dist", "outputs", "tests"}:
            continue
        if entry.name.endswith(".egg-info"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, dest / entry.name, ignore=ignore)
        else:
            shutil.copy2(entry, dest / entry.name)


def _editable_part(entry: Path) -> bool:
    name = entry.name.lower().replace("-", "_")
    return name.startswith(("mlp_sweep", "__editable__")) or name == "hydra_plugins"


def _borrow_site_packages(view: Path, venv_site: Path) -> None:
    """Symlinks to this Python's installed packages, less mlp_sweep's editable install, and
    one .pth in the venv that puts them on its path. The other .pth files' lines join it, their
    folders made absolute, unless they are the editable install's or point into the checkout."""
    lines = []
    user_site = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    for number, site_dir in enumerate(Path(p) for p in [*site.getsitepackages(), *user_site]):
        if not site_dir.is_dir():
            continue
        into = view / str(number)
        into.mkdir(parents=True)
        lines.append(str(into))
        for entry in site_dir.iterdir():
            if entry.suffix == ".pth":
                text = entry.read_text(errors="replace")
                if not _editable_part(entry) and str(ROOT) not in text:
                    lines += [
                        line if line.startswith(("import ", "import\t")) else str(site_dir / line)
                        for line in text.splitlines()
                        if line.strip() and not line.startswith("#")
                    ]
            elif entry.name == "hydra_plugins":  # other projects' plugins (submitit's) stay
                (into / "hydra_plugins").mkdir()
                for plugin in entry.iterdir():
                    if not plugin.name.startswith("mlp_sweep"):
                        (into / "hydra_plugins" / plugin.name).symlink_to(plugin)
            elif not _editable_part(entry):
                (into / entry.name).symlink_to(entry)
    (venv_site / "zz_borrowed_site_packages.pth").write_text("\n".join(lines) + "\n")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(cmd)} exited {result.returncode}:\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module")
def venv() -> Iterator[Venv]:
    """The wheel built from a copy of the checkout, installed into a fresh venv."""
    # Offline: the build uses this environment's setuptools, the venv borrows its pip.
    pytest.importorskip("setuptools", minversion="64", reason="the wheel's build backend")
    pytest.importorskip("pip", reason="builds the wheel and installs it")
    with tempfile.TemporaryDirectory(prefix="mlp_sweep-wheel-") as tmp:
        work = Path(tmp)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "PIP_", "HYDRA_", "MLP_SWEEP_", "VIRTUAL_ENV"))
        }
        env["MLP_SWEEP_CACHE"] = str(work / "cache")  # the decoded MNIST, removed after
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        _copy_source(work / "src")
        _run(
            [sys.executable, "-m", "pip", "wheel", str(work / "src"), "--no-deps"]
            + ["--no-build-isolation", "-w", str(work / "dist"), "-q"],
            work,
            env,
        )
        (wheel,) = (work / "dist").glob("mlp_sweep-*.whl")
        # pip comes from the borrowed site-packages: no ensurepip, a second saved.
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", work / "venv"], check=True)
        python = work / "venv" / "bin" / "python"
        purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
        venv_site = Path(_run([str(python), "-c", purelib], work, env).strip())
        _borrow_site_packages(work / "borrowed", venv_site)
        _run(
            [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
            work,
            env,
        )
        yield Venv(python, env, wheel)


def _empty(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def _one_sweep(cwd: Path, runs: int) -> Path:
    """The one sweep folder under cwd, after checking its summary.csv: `runs` ok rows."""
    summaries = list((cwd / "outputs" / "sweeps").glob("*/summary.csv"))
    assert len(summaries) == 1, f"no single summary.csv under {cwd}: {summaries}"
    with summaries[0].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["status"] for row in rows] == ["ok"] * runs, rows
    return summaries[0].parent


def test_the_wheel_ships_conf_mnist_and_plugins(venv: Venv) -> None:
    names = set(zipfile.ZipFile(venv.wheel).namelist())
    missing = [name for name in SHIPPED if name not in names]
    assert not missing, f"not in {venv.wheel.name}: {missing}"
    # hydra_plugins stays a namespace package: Hydra scans every folder of that name.
    assert "hydra_plugins/__init__.py" not in names
    assert not [n for n in names if n.endswith("-ubyte") or "__pycache__" in n]


def test_the_venv_sees_the_wheel_not_the_checkout(venv: Venv, tmp_path: Path) -> None:
    probe = (
        "import json, os, sys, mlp_sweep, hydra_plugins.mlp_sweep_launchers as l;"
        "from mlp_sweep.paths import CONF_DIR, MNIST_ROOT;"
        "print(json.dumps([mlp_sweep.__file__, l.__file__, str(CONF_DIR), str(MNIST_ROOT),"
        " [os.path.abspath(p) for p in sys.path]]))"
    )
    out = _run([str(venv.python), "-c", probe], tmp_path, venv.env)
    *files, path = json.loads(out.strip().splitlines()[-1])
    prefix = str(venv.python.parent.parent)
    assert all(f.startswith(prefix) for f in files), files
    assert not [p for p in path if p == str(ROOT) or p.startswith(f"{ROOT}{os.sep}")], path


def test_a_sweep_on_the_shipped_mnist_then_its_resume(venv: Venv, tmp_path: Path) -> None:
    cwd = _empty(tmp_path, "cwd")
    _run([str(venv.python), "-m", "mlp_sweep", *SWEEP], cwd, venv.env)
    sweep = _one_sweep(cwd, runs=2)
    out = _run([str(venv.python), "-m", "mlp_sweep", "--resume", str(sweep)], cwd, venv.env)
    assert "2 of 2 runs already finished" in out, out[-4000:]


@pytest.mark.parametrize(
    "launcher",
    [["hydra/launcher=basic"], ["hydra/launcher=fused", "hydra.launcher.fuse=always"]],
    ids=["basic", "fused"],
)
def test_the_other_launchers(venv: Venv, tmp_path: Path, launcher: list[str]) -> None:
    cwd = _empty(tmp_path, "cwd")
    _run([str(venv.python), "-m", "mlp_sweep", *SWEEP, *launcher], cwd, venv.env)
    _one_sweep(cwd, runs=2)


def test_an_optuna_search(venv: Venv, tmp_path: Path) -> None:
    pytest.importorskip("optuna", reason="hparams_search=optuna needs the search extra")
    cwd = _empty(tmp_path, "cwd")
    search = ["hparams_search=optuna", "hydra.sweeper.n_trials=2"]
    args = ["-m", *search, "data=synthetic", "trainer.epochs=1"]
    _run([str(venv.python), "-m", "mlp_sweep", *args], cwd, venv.env)
    _one_sweep(cwd, runs=2)


def test_the_console_script(venv: Venv, tmp_path: Path) -> None:
    cwd = _empty(tmp_path, "cwd")
    script = venv.python.parent / "mlp-sweep"
    out = _run([str(script), "trainer.epochs=1", "data=synthetic"], cwd, venv.env)
    assert list((cwd / "outputs" / "runs").glob("*/metrics.json")), out[-4000:]


def test_read_only_shipped_mnist_decompresses_into_the_user_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A wheel in a site-packages the user cannot write: the .gz files stay where they are
    and their decompressed copies go to the cache folder. Only the smallest file is really
    decompressed; the other three are tiny stand-ins, so the md5 check is stubbed out."""
    shipped = tmp_path / "site-packages" / "mlp_sweep" / "mnist"
    raw = shipped / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in files.IDX_FILES:
        gz = raw / f"{name}.gz"
        if name == "t10k-labels-idx1-ubyte":
            shutil.copy(files.DATA_DIR / "MNIST" / "raw" / gz.name, gz)
        else:
            gz.write_bytes(gzip.compress(name.encode()))
    raw.chmod(0o555)
    monkeypatch.setattr(files, "DATA_DIR", shipped)
    monkeypatch.setenv("MLP_SWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(files, "_check_mnist", lambda cfg, folder: None)
    if os.geteuid() == 0:  # root writes through chmod; say the folder is read-only instead
        writable = files._writable
        monkeypatch.setattr(
            files, "_writable", lambda p: not p.is_relative_to(shipped) and writable(p)
        )
    try:
        cfg = DataConfig()
        assert files.data_root(cfg) == tmp_path / "cache" / "data"
        folder = files.prepare_raw(cfg)
        assert folder == tmp_path / "cache" / "data" / "MNIST" / "raw"
        assert sorted(p.name for p in raw.iterdir()) == sorted(f"{n}.gz" for n in files.IDX_FILES)
        labels = (folder / "t10k-labels-idx1-ubyte").read_bytes()
        assert len(labels) == files.MNIST_FILES["t10k-labels-idx1-ubyte"][0]
        assert (folder / "train-images-idx3-ubyte").read_bytes() == b"train-images-idx3-ubyte"
        # Decompressed once: the cache's copies are used from then on.
        assert files.data_root(cfg) == tmp_path / "cache" / "data"
    finally:
        raw.chmod(0o755)


def test_a_writable_or_already_decompressed_shipped_mnist_stays_in_place(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A checkout (writable) decompresses beside the .gz as before; so does a read-only
    install whose folder already holds the four files (say, made there by its installer)."""
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    monkeypatch.setattr(files, "DATA_DIR", tmp_path / "mnist")
    monkeypatch.setenv("MLP_SWEEP_CACHE", str(tmp_path / "cache"))
    assert files.data_root(DataConfig()) == tmp_path / "mnist"
    for name in files.IDX_FILES:
        (raw / name).touch()
    monkeypatch.setattr(files, "_writable", lambda p: False)
    assert files.data_root(DataConfig()) == tmp_path / "mnist"
