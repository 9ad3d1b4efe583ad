"""A run or sweep folder is data: a symbolic link planted in one (a colleague's zipped sweep, a
shared share) never turns a write of ours into an overwrite of a file elsewhere, each record
write reaches the disk with its folder, and a damaged data cache entry is rebuilt, not trusted.

Each case plants links to decoy files outside the folder and checks the decoys byte for byte
afterwards; the runs are tiny synthetic ones, trained in this process (~1 s each)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mlp_sweep.config import Config, Dataset, LoggerConfig, TensorBoardConfig
from mlp_sweep.run import lock, steps_file
from mlp_sweep.run.reader import read_run
from mlp_sweep.run.runner import run
from mlp_sweep.status import Status
from mlp_sweep.training import data as data_module
from mlp_sweep.training.files import DECODED_FROM, cache_file, prepare_raw
from mlp_sweep.training.writes import LogFile, open_append, write_bytes_atomic
from tests.helpers import run_command

DECOY = b"precious: never to be written by mlp_sweep\n"


def tiny(epochs: int = 1) -> Config:
    cfg = Config()
    cfg.data.name = Dataset.synthetic
    cfg.data.n_train, cfg.data.n_test = 400, 200
    cfg.trainer.epochs, cfg.trainer.batch_size = epochs, 50
    return cfg


def plant(link: Path, outside: Path) -> Path:
    """A decoy file in `outside` and a link to it at `link`; returns the decoy."""
    outside.mkdir(parents=True, exist_ok=True)
    decoy = outside / f"decoy-{link.name}"
    decoy.write_bytes(DECOY)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(decoy)
    return decoy


def untouched(decoys: list[Path]) -> None:
    for decoy in decoys:
        assert decoy.read_bytes() == DECOY, decoy


# --- the lock -------------------------------------------------------------------------------


def test_a_linked_lock_file_leaves_the_run_alone_and_its_target_unchanged(tmp_path: Path) -> None:
    """A received run folder whose .lock points at a file of the user's: training it (as a
    resume would) writes neither through the link nor anywhere in the folder."""
    run_dir = tmp_path / "received" / "0"
    decoy = plant(run_dir / lock.LOCK_FILE, tmp_path / "home")
    record = run(tiny(), run_dir)
    untouched([decoy])
    assert record["status"] == Status.RUNNING_ELSEWHERE
    assert record["error"] == (
        f"{run_dir / '.lock'} is a symbolic link, not a lock file; left alone here "
        "(delete it to train this run)"
    )
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    assert lock.holder(run_dir) is None  # asking never opens the target either
    assert read_run(run_dir).status == Status.INCOMPLETE


def test_a_dangling_lock_link_creates_nothing_at_its_target(tmp_path: Path) -> None:
    run_dir, target = tmp_path / "run", tmp_path / "home" / ".bashrc"
    run_dir.mkdir()
    (run_dir / lock.LOCK_FILE).symlink_to(target)
    with pytest.raises(lock.LockRefused, match="is a symbolic link"):
        lock.acquire(run_dir, "now")
    assert not target.exists() and not target.parent.exists()


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_lock_that_is_not_a_file_is_refused_without_hanging(tmp_path: Path, kind: str) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if kind == "fifo":
        os.mkfifo(run_dir / lock.LOCK_FILE)  # opening one for reading alone would block
    else:
        (run_dir / lock.LOCK_FILE).mkdir()
    assert lock.holder(run_dir) is None
    what = "not a regular file" if kind == "fifo" else "a folder, not a lock file"
    with pytest.raises(lock.LockRefused, match=what):
        lock.acquire(run_dir, "now")
    assert lock.holder(run_dir) is None


def test_links_where_hydra_writes_go_when_the_lock_is_taken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hydra's run_job writes .hydra/*.yaml and the job's log with open(), which follows links,
    right after the launcher takes the lock: the lock's holder removes them first."""
    outside = tmp_path / "home"
    job0, job1 = tmp_path / "sweep" / "0", tmp_path / "sweep" / "1"
    decoys = [
        plant(job0 / ".hydra" / "config.yaml", outside),
        plant(job0 / "mlp_sweep.log", outside),
    ]
    (outside / "config-dir").mkdir()
    (job1).mkdir(parents=True)
    (job1 / ".hydra").symlink_to(outside / "config-dir")
    (job0 / "notes.txt").symlink_to(decoys[0])  # not a name Hydra writes: left as it is
    with caplog.at_level(logging.WARNING, logger="mlp_sweep.run.lock"):
        for job in (job0, job1):
            with lock.holding(job, "now"):
                pass
    assert not (job0 / ".hydra" / "config.yaml").is_symlink()
    assert not os.path.lexists(job0 / "mlp_sweep.log")
    assert not os.path.lexists(job1 / ".hydra")
    assert (job0 / "notes.txt").is_symlink()
    assert list((outside / "config-dir").iterdir()) == []
    untouched(decoys)
    assert len(caplog.records) == 3
    assert all("a symbolic link where Hydra writes; removed" in r.message for r in caplog.records)


def test_a_crafted_sweep_folder_writes_nothing_through_its_links(
    tmp_path: Path, run_cli: Callable[..., object]
) -> None:
    """A real fused sweep into a folder whose jobs hold links where Hydra writes (.hydra/,
    its config.yaml, the job's log): refused before any job, in one line naming the first
    link, each decoy unchanged and nothing written. (A link planted after that check, in a
    folder the check could not see, is removed when the job's lock is taken: the tests above.)"""
    sweep, outside = tmp_path / "sweep", tmp_path / "home"
    decoys = [
        plant(sweep / "0" / ".hydra" / "config.yaml", outside),
        plant(sweep / "0" / "mlp_sweep.log", outside / "0"),
        plant(sweep / "1" / "mlp_sweep.log", outside / "1"),
    ]
    (outside / "config-dir").mkdir()
    (sweep / "1" / ".hydra").symlink_to(outside / "config-dir")
    done = run_command(
        "-m", "seed=0,1", "data=synthetic", "data.n_train=400", "data.n_test=200",
        "trainer.epochs=1", "trainer.batch_size=50", "hydra/launcher=fused",
        "hydra.launcher.fuse=always", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is a symbolic link" in lines[0], lines
    untouched(decoys)
    assert list((outside / "config-dir").iterdir()) == []
    assert not any(sweep.rglob("metrics.json"))


# --- the record -----------------------------------------------------------------------------

RECORD_FILES = [
    "metrics.json",
    "history.csv",
    "checkpoint.pt",
    "steps.csv",
    "confusion.png",  # misclassified.png: drawn for images only, written as confusion.png is
    "traceback.txt",
]


def test_record_files_replace_their_links_and_leave_the_targets(tmp_path: Path) -> None:
    """Every file a run writes into its folder, each planted as a link to a decoy: the run
    ends ok, each of its files is a regular file of its own, and no decoy changed."""
    pytest.importorskip("tensorboard", reason='needs the viz extra: pip install ".[viz]"')
    run_dir = tmp_path / "received" / "0"
    decoys = [plant(run_dir / name, tmp_path / "home") for name in RECORD_FILES]
    cfg = tiny(epochs=2)
    cfg.logger = LoggerConfig(tensorboard=TensorBoardConfig(), every_n_steps=3)  # steps.csv
    record = run(cfg, run_dir)
    assert record["status"] == Status.OK, record.get("error")
    untouched(decoys)
    for name in RECORD_FILES[:-1]:
        assert (run_dir / name).is_file() and not (run_dir / name).is_symlink(), name
    assert not os.path.lexists(run_dir / "traceback.txt")  # an earlier failure's: removed
    assert read_run(run_dir).fields["epochs_done"] == 2
    assert [e for _, e, _ in steps_file.read(run_dir / steps_file.FILE, 2)] == [1, 1, 1, 2, 2, 2]


def test_an_append_to_steps_csv_never_follows_a_link(tmp_path: Path) -> None:
    """A link planted at steps.csv between two epochs: the next epoch writes the whole file
    in its place instead of appending through it."""
    path = tmp_path / steps_file.FILE
    steps = steps_file.StepsFile(path)
    first, second = [(3, 1, 0.5)], [(6, 2, 0.25)]
    steps.add(first, first)
    path.unlink()
    decoy = plant(path, tmp_path / "home")
    steps.add(second, first + second)
    untouched([decoy])
    assert not path.is_symlink()
    assert steps_file.read(path, 2) == first + second


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_open_append_replaces_a_link_or_a_fifo(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "job.log"
    if kind == "link":
        decoy = plant(path, tmp_path / "home")
    else:
        os.mkfifo(path)  # nobody reads it: a plain open for writing would block
    os.close(open_append(path))
    handler = LogFile(path)
    handler.emit(logging.makeLogRecord({"msg": "epoch 1/1"}))
    handler.close()
    assert not path.is_symlink() and path.read_text() == "epoch 1/1\n"
    if kind == "link":
        untouched([decoy])


def test_write_bytes_atomic_replaces_a_link_not_its_target(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    decoy = plant(path, tmp_path / "home")
    write_bytes_atomic(path, b"{}\n")
    untouched([decoy])
    assert not path.is_symlink() and path.read_bytes() == b"{}\n"


# --- durability: the folder's fsync after each replace --------------------------------------


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path]]:
    """What reaches the disk, in order: ("fsync", the file or folder the descriptor names)
    and ("replace", the name replaced)."""
    events: list[tuple[str, Path]] = []
    fsync, replace = os.fsync, os.replace

    def recorded_fsync(fd: int) -> None:
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}"))))
        fsync(fd)

    def recorded_replace(src: str | Path, dst: str | Path) -> None:
        replace(src, dst)
        events.append(("replace", Path(dst)))

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    return events


def each_replace_synced(events: list[tuple[str, Path]], folder: Path) -> int:
    """How many names in `folder` were replaced; asserts that each replace was preceded by
    its file's fsync and followed by the folder's before anything else was replaced there."""
    replaced = [i for i, (what, path) in enumerate(events) if what == "replace"]
    count = 0
    for i in replaced:
        name = events[i][1]
        if name.parent != folder:
            continue
        count += 1
        before = [p for what, p in events[:i] if what == "fsync" and p.parent == folder]
        assert before and before[-1].name.startswith(f".{name.name}."), (name, before)
        after = next(e for e in events[i + 1 :] if e[1] == folder or e[0] == "replace")
        assert after == ("fsync", folder), (name, events[i + 1 : i + 3])
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads fds' paths from /proc")
def test_each_record_write_syncs_its_folder(tmp_path: Path, synced: list[tuple[str, Path]]) -> None:
    run_dir = tmp_path / "run"
    assert run(tiny(epochs=2), run_dir)["status"] == Status.OK
    replaced = {p.name for what, p in synced if what == "replace" and p.parent == run_dir}
    assert {"metrics.json", "history.csv", "checkpoint.pt", "confusion.png"} <= replaced
    assert each_replace_synced(synced, run_dir) >= 6  # metrics, history, checkpoint x epochs


# --- the data cache and the decompressed files ----------------------------------------------

N_TRAIN, N_TEST = 60, 20


def write_idx(path: Path, values: torch.Tensor) -> None:
    """An IDX file of unsigned bytes, as MNIST's: the magic, each dimension, the values."""
    dims = list(values.shape)
    head = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(head + values.to(torch.uint8).numpy().tobytes())


@pytest.fixture
def small_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """A run's config on a 60 + 20 image KMNIST of our own (no md5 to match), with its cache
    in tmp_path."""
    monkeypatch.setenv("MLP_SWEEP_CACHE", str(tmp_path / "cache"))
    raw = tmp_path / "data" / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for n, split in ((N_TRAIN, "train"), (N_TEST, "t10k")):
        write_idx(
            raw / f"{split}-images-idx3-ubyte", torch.randint(0, 256, (n, 28, 28), generator=gen)
        )
        write_idx(raw / f"{split}-labels-idx1-ubyte", torch.randint(0, 10, (n,), generator=gen))
    cfg = tiny()
    cfg.data.name, cfg.data.root = Dataset.kmnist, str(tmp_path / "data")
    cfg.trainer.batch_size = 20
    return cfg


def _entry(cfg: Config) -> Path:
    path = cache_file(cfg.data)
    assert path is not None
    return path


DAMAGE: dict[str, Callable[[dict[str, torch.Tensor]], object]] = {
    "keyless": lambda t: {k: v for k, v in t.items() if k != "y_train"},
    "dtype": lambda t: {**t, "y_test": t["y_test"].int()},
    "count": lambda t: {**t, "x_train": t["x_train"][:-1], "y_train": t["y_train"][:-1]},
    "features": lambda t: {**t, "x_test": t["x_test"][:, :100]},
    "labels": lambda t: {**t, "y_train": t["y_train"] + 10},
    "not a dict": lambda t: t["x_train"],
}


@pytest.mark.parametrize("damage", [*DAMAGE, "torn"])
def test_a_damaged_cache_entry_is_rebuilt_with_one_warning(
    small_dataset: Config, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, cpu = small_dataset, torch.device("cpu")
    first = data_module.load_data(cfg.data, cpu)  # builds the entry
    path = _entry(cfg)
    good = torch.load(path, weights_only=True)
    if damage == "torn":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        torch.save(DAMAGE[damage](good), path)
    data_module._loaded.clear()  # as a new worker process starts
    with caplog.at_level(logging.WARNING, logger="mlp_sweep.training.data"):
        again = data_module.load_data(cfg.data, cpu)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"data cache {path} "), warnings
    assert warnings[0].endswith("; rebuilding it")
    assert torch.equal(again.x_train, first.x_train) and torch.equal(again.y_test, first.y_test)
    rebuilt = torch.load(path, weights_only=True)
    assert rebuilt.keys() == good.keys()
    assert all(torch.equal(rebuilt[k], good[k]) for k in good)
    caplog.clear()
    data_module._loaded.clear()
    with caplog.at_level(logging.WARNING, logger="mlp_sweep.training.data"):
        data_module.load_data(cfg.data, cpu)  # the rebuilt entry is used as it is
    assert caplog.records == []


def test_a_keyless_cache_entry_costs_a_run_nothing(small_dataset: Config, tmp_path: Path) -> None:
    """The issue's case: an entry that loads but lacks a key failed every run with a KeyError
    and was never rebuilt."""
    path = _entry(small_dataset)
    prepare_raw(small_dataset.data)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x_train": torch.zeros(N_TRAIN, 784)}, path)
    record = run(small_dataset, tmp_path / "run")
    assert record["status"] == Status.OK, record.get("error")
    assert set(torch.load(path, weights_only=True)) == set(DECODED_FROM)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads fds' paths from /proc")
def test_the_cache_and_the_decompressed_files_are_written_durably(
    small_dataset: Config, tmp_path: Path, synced: list[tuple[str, Path]]
) -> None:
    import gzip

    raw = tmp_path / "data" / "KMNIST" / "raw"
    for name in DECODED_FROM.values():  # as shipped: .gz only, decompressed on first use
        (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
        (raw / name).unlink()
    data_module.load_data(small_dataset.data, torch.device("cpu"))
    assert each_replace_synced(synced, raw) == 4
    assert each_replace_synced(synced, _entry(small_dataset).parent) == 1
    assert not [p for p in raw.iterdir() if p.name.endswith(".tmp")]


# --- links where Hydra writes before any lock of ours: refused before any job ---------------


def _decoy(tmp_path: Path) -> tuple[Path, bytes]:
    decoy = tmp_path / "home" / ".bashrc"
    decoy.parent.mkdir(parents=True, exist_ok=True)
    decoy.write_bytes(b"precious\n")
    return decoy, decoy.read_bytes()


@pytest.mark.parametrize(
    "planted",
    [
        "sweep/multirun.yaml",
        "sweep/0/mlp_sweep.log",
        "sweep/0/.hydra/config.yaml",
        "sweep/0/.hydra",
        "sweep/mlflow.db",  # logger=mlflow's store and parent id: written by the jobs
        "sweep/mlflow.json",
    ],
)
def test_a_link_where_hydra_writes_refuses_the_sweep(
    run_main, tmp_path: Path, planted: str
) -> None:
    """hydra/launcher=basic (Hydra writes .hydra/, the log and multirun.yaml with a plain
    open() before any lock of ours): one line, exit 2, nothing started, the target untouched."""
    decoy, before = _decoy(tmp_path)
    link = tmp_path / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(decoy.parent if planted.endswith(".hydra") else decoy)
    result = run_main(
        "-m", "hydra/launcher=basic", "data=synthetic", "data.n_train=100", "trainer.epochs=1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is a symbolic link" in lines[0] and str(link) in lines[0], lines
    assert decoy.read_bytes() == before
    assert not (tmp_path / "sweep" / "0" / "metrics.json").exists()


def test_a_single_run_whose_hydra_folder_is_a_link_is_refused(run_main, tmp_path: Path) -> None:
    decoy, before = _decoy(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".hydra").symlink_to(decoy.parent)
    result = run_main("data=synthetic", "data.n_train=100", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    assert "is a symbolic link" in result.stderr.strip().splitlines()[-1]
    assert decoy.read_bytes() == before and sorted(p.name for p in decoy.parent.iterdir()) == [
        ".bashrc"
    ]
