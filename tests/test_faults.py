"""Sweeps never lose a result: real processes killed, failing, refused and resumed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mlp_sweep.config import DataConfig
from mlp_sweep.training.files import DATA_DIR, IDX_FILES, prepare_raw
from tests.helpers import assert_same_history, cli_env, epochs_written, wait_for

# ~0.15 s an epoch on 2 cores: long enough to be killed mid-run, short enough for the suite.
KILL_ARGS = [
    "model.act=relu,selu,softplus",
    "data.limit_train=10000",
    "data.limit_test=2000",
    "trainer.epochs=4",
    "trainer.batch_size=100",
]
SYNTH = ["data=synthetic", "data.n_train=500", "trainer.epochs=2"]


def digest(folder: Path) -> dict[str, str]:
    """Every file under folder (but Hydra's per-launch .hydra/ and the log) -> its sha256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"
    }


def start_sweep(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mlp_sweep", "-m", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )


# Slow-marked on both launchers: the default suite's chaos test SIGKILLs the whole command at
# random moments and checks every run's history against an uninterrupted sweep.
@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["parallel", "basic"])
def test_sigkill_mid_run_then_rerun_loses_nothing(run_cli, tmp_path: Path, launcher: str) -> None:
    sweep = tmp_path / "killed"
    args = [*KILL_ARGS, f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep}"]
    proc = start_sweep(args, tmp_path)
    # Job 2 has finished an epoch: it is mid-run, and it only started once job 0 or 1 was
    # done (basic: one at a time; parallel: two workers on this 2-core machine). The other may
    # be mid-run too, or not started yet (its worker, started at launch, still importing).
    wait_for(lambda: epochs_written(sweep / "2") >= 1, proc, timeout=180)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((sweep / "2" / "metrics.json").read_text())["status"] == "running"
    records = {n: sweep / n / "metrics.json" for n in ("0", "1")}
    done = [
        n
        for n, record in records.items()
        if record.is_file() and json.loads(record.read_text())["status"] == "ok"
    ]
    assert done, "no run had finished before the kill"
    finished_before = {n: digest(sweep / n) for n in done}
    for n in done:
        assert {"metrics.json", "history.csv", "checkpoint.pt"} <= finished_before[n].keys()

    result = run_cli("-m", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming: {len(done)} of 3 runs already finished" in result.stdout
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["model.act"].tolist() == ["relu", "selu", "softplus"]  # each exactly once
    assert frame["status"].tolist() == ["ok"] * 3
    assert frame["epochs_done"].tolist() == [4] * 3
    for n in done:  # not retrained, not rewritten
        assert digest(sweep / n) == finished_before[n]
    resumed = json.loads((sweep / "2" / "metrics.json").read_text())
    assert resumed["resumed_from_epoch"] >= 1

    # The resumed run ends exactly where an uninterrupted run of the same seed ends.
    reference = tmp_path / "reference"
    single = [a for a in KILL_ARGS if not a.startswith("model.act")]
    result = run_cli("model.act=softplus", *single, f"hydra.run.dir={reference}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_history(sweep / "2", reference)


@pytest.fixture
def broken_fashion_root(tmp_path: Path) -> Path:
    """A data root with the real MNIST and a Fashion-MNIST whose files are garbage."""
    root = tmp_path / "datasets"
    root.mkdir()
    prepare_raw(DataConfig())  # the shipped MNIST, decompressed
    (root / "MNIST").symlink_to(DATA_DIR / "MNIST")
    fashion = root / "FashionMNIST" / "raw"
    fashion.mkdir(parents=True)
    for name in IDX_FILES:
        (fashion / name).write_bytes(b"\x00\x00\x08\x03garbage" * 10)
    return root


def test_one_failing_configuration_still_gets_a_full_summary(
    run_main, tmp_path: Path, broken_fashion_root: Path
) -> None:
    """The entry point called in this process, its jobs in it too (hydra/launcher=basic): a run
    records its own failure whichever process trains it (on the default launcher, in real
    processes: test_diverged_and_failed_runs_are_rows_of_a_real_sweep)."""
    sweep = tmp_path / "failing"
    result = run_main(
        "-m",
        "hydra/launcher=basic",
        "data=mnist,fashion_mnist",
        "model.act=relu,selu",
        f"data.root={broken_fashion_root}",
        "data.download=false",
        "data.limit_train=1000",
        "data.limit_test=200",
        "trainer.epochs=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mlp_sweep: 2 of 4 runs failed or did not finish")
    assert str(sweep / "summary.csv") in last
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["data"].tolist() == ["mnist", "mnist", "fashion_mnist", "fashion_mnist"]
    assert frame["status"].tolist() == ["ok", "ok", "failed", "failed"]
    assert frame["error"][2] and isinstance(frame["error"][2], str)
    assert "\n" not in frame["error"][2]
    assert "cannot read fashion_mnist" in frame["error"][2]
    record = json.loads((sweep / "2" / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"] == frame["error"][2]
    # One line on the console; the traceback is kept beside the failed run's record.
    assert "Traceback" not in result.stdout + result.stderr
    assert (sweep / "2" / "traceback.txt").read_text().startswith("Traceback")
    assert not (sweep / "0" / "traceback.txt").exists()


# Slow: by default the feature x launcher matrix's grid (tests/test_feature_matrix.py) runs a
# diverging and two failing runs through real sweeps on every launcher, with the same checks.
@pytest.mark.slow
def test_diverged_and_failed_runs_are_rows_of_a_real_sweep(
    run_cli, tmp_path: Path, broken_fashion_root: Path
) -> None:
    """On the default launcher, in real processes: a run whose loss leaves the finite numbers
    is a result (`diverged`, exit 0 for it), a run that raises in its worker is `failed`, one
    line each, and the summary holds every row."""
    sweep = tmp_path / "diverging"
    result = run_cli(
        "-m", "data=synthetic,fashion_mnist", "optim.lr=0.01,1e12", "data.n_train=500",
        "trainer.epochs=2", f"data.root={broken_fashion_root}", "data.download=false",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("mlp_sweep: 2 of 4 runs failed or did not finish")
    )
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["status"].tolist() == ["ok", "diverged", "failed", "failed"]
    assert pd.isna(frame["test_loss"][1])
    assert (
        frame["error"][2].startswith("data.root=")
        and "cannot read fashion_mnist" in frame["error"][2]
    )
    assert (sweep / "2" / "traceback.txt").read_text().startswith("Traceback")


@pytest.fixture(scope="module")
def finished_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep = tmp_path_factory.mktemp("finished") / "done"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlp_sweep",
            "-m",
            "model.act=relu,selu",
            *SYNTH,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=sweep.parent,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


@pytest.fixture
def finished_sweep(finished_once: Path, tmp_path: Path) -> Path:
    """A private copy of a finished 2-run sweep, for tests that poke at it."""
    return Path(shutil.copytree(finished_once, tmp_path / "done", symlinks=True))


@pytest.mark.parametrize(
    "change,message",
    [
        (["model.act=relu,tanh"], "model.act: 'selu' there, 'tanh' now"),
        (["model.act=relu,selu", "optim.lr=0.5"], "optim.lr: 0.01 there, 0.5 now"),
        (["model.act=relu,selu", "optim.lr=-1"], "optim.lr=-1.0: must be a number > 0"),
        (["model.act=relu,bogus"], "Invalid value 'bogus'"),
    ],
    ids=["changed sweep", "changed fixed value", "bad value", "bad choice"],
)
def test_finished_sweep_is_never_touched_by_a_refused_command(
    run_main, finished_sweep: Path, change: list[str], message: str
) -> None:
    """Refused by the entry point, called here (a refusal needs no process of its own)."""
    before = {
        **digest(finished_sweep),
        "multirun.yaml": (finished_sweep / "multirun.yaml").read_text(),
    }
    result = run_main("-m", *change, *SYNTH, f"hydra.sweep.dir={finished_sweep}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    after = {
        **digest(finished_sweep),
        "multirun.yaml": (finished_sweep / "multirun.yaml").read_text(),
    }
    assert after == before


def test_resume_reruns_only_what_is_missing(run_main, finished_sweep: Path) -> None:
    (finished_sweep / "1" / "metrics.json").unlink()
    (finished_sweep / "1" / "checkpoint.pt").unlink()
    (finished_sweep / "summary.csv").unlink()
    kept = digest(finished_sweep / "0")
    result = run_main("--resume", str(finished_sweep))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming: 1 of 2 runs already finished" in result.stdout
    assert digest(finished_sweep / "0") == kept
    frame = pd.read_csv(finished_sweep / "summary.csv")
    assert frame["status"].tolist() == ["ok", "ok"] and frame["model.act"].tolist() == [
        "relu",
        "selu",
    ]
    again = run_main("--resume", str(finished_sweep))
    assert again.returncode == 0 and "resuming: 2 of 2 runs already finished" in again.stdout


def test_resume_of_a_folder_that_is_no_sweep(run_main, tmp_path: Path) -> None:
    result = run_main("--resume", str(tmp_path))
    assert result.returncode == 2
    saved = tmp_path / "multirun.yaml"
    assert result.stderr.strip().splitlines() == [
        f"mlp_sweep: error: --resume={tmp_path}: not a sweep folder (no {saved})"
    ]


WRITER = """
import sys
from pathlib import Path
from mlp_sweep.run.record import write_bytes_atomic
path, i = Path(sys.argv[1]), 1
write_bytes_atomic(path, b"b" * 4_000_000)  # a whole file there before any kill can come
print("ready", flush=True)
while True:
    write_bytes_atomic(path, (b"a" if i % 2 else b"b") * 4_000_000)
    i += 1
"""


def test_sigkill_during_atomic_writes_never_tears_a_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    for attempt in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, env=cli_env()
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(0.02 + 0.031 * attempt)  # land at a different point of a write each time
        proc.kill()
        proc.wait()
        data = target.read_bytes()
        assert data in (b"a" * 4_000_000, b"b" * 4_000_000)


@pytest.mark.slow  # the default suite keeps a cheaper check of it: see the docstring
def test_same_seed_is_bit_identical_across_processes(run_cli, tmp_path: Path) -> None:
    """Two processes, the same MNIST run: the same numbers to the last bit. By default,
    tests/test_sweep.py::test_a_run_is_reproducible_from_its_own_folder checks the same of a
    sweep's run and its rerun in a new process (and the interrupt and fault tests of resumed
    runs against uninterrupted ones)."""
    args = ["data.limit_train=3000", "data.limit_test=500", "trainer.epochs=2", "model.act=selu"]
    records = []
    for name in ("first", "second"):
        result = run_cli(*args, f"hydra.run.dir={name}")
        assert result.returncode == 0, result.stderr[-3000:]
        records.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    for key in ("test_acc", "test_loss", "train_loss", "best_test_acc"):
        assert records[0][key] == records[1][key], key
    assert records[0]["deterministic"] is True and records[0]["seed"] == 0
    histories = [
        pd.read_csv(tmp_path / n / "history.csv").drop(columns="seconds")
        for n in ("first", "second")
    ]
    pd.testing.assert_frame_equal(*histories, check_exact=True)
