"""Ctrl-C and SIGTERM are ordinary events: real signals sent to real sweeps and runs.

A terminal's Ctrl-C reaches the whole process group; a scheduler's SIGTERM (or `kill`)
reaches the command's own process. Either way the command says one line, writes its summary,
exits 128 + the signal, leaves no process behind, and --resume finishes the stopped runs from
their checkpoints with the numbers of an uninterrupted run.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import (
    CtrlCInsideOmegaConf,
    assert_same_history,
    epochs_written,
    group_gone,
    run_command,
    start_cli,
    wait_for,
)

# ~0.15 s an epoch on 2 cores: several epochs, so a signal lands mid-run.
LONG = ["data.limit_train=8000", "data.limit_test=2000", "trainer.epochs=8"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each activation's uninterrupted run: what a resumed run must end equal to. One sweep on
    the basic launcher (each run alone in one process, as a single run trains it)."""

    root = tmp_path_factory.mktemp("reference")
    args = ["-m", "model.act=relu,selu", *LONG, "hydra/launcher=basic", f"hydra.sweep.dir={root}"]
    result = run_command(*args, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"relu": root / "0", "selu": root / "1"}


@pytest.mark.parametrize(
    "launcher,signum,to_group",
    [  # Ctrl-C on the default launcher by default; SIGTERM to the parent alone (of a pool
        # whose second worker may still be starting) and the basic launcher with -m slow: the
        # default suite's chaos test sends SIGTERM to the parent at random moments.
        ("parallel", signal.SIGINT, True),
        pytest.param("parallel", signal.SIGTERM, False, marks=pytest.mark.slow),
        pytest.param("basic", signal.SIGINT, True, marks=pytest.mark.slow),
        pytest.param("basic", signal.SIGTERM, False, marks=pytest.mark.slow),
    ],
    ids=["parallel-ctrl-c", "parallel-sigterm", "basic-ctrl-c", "basic-sigterm"],
)
def test_interrupted_sweep_keeps_everything_and_resumes(
    run_cli, tmp_path: Path, uninterrupted, launcher: str, signum: int, to_group: bool
) -> None:
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "model.act=relu,selu",
        *LONG,
        f"hydra/launcher={launcher}",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = start_cli(*args, cwd=tmp_path)
    wait_for(lambda: epochs_written(sweep / "0") >= 2, proc)
    if to_group:  # first, `kill -USR1`: where each process is, printed, and they go on
        os.killpg(proc.pid, signal.SIGUSR1)
        time.sleep(0.3)
    (os.killpg if to_group else os.kill)(proc.pid, signum)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signum, err[-3000:]
    if to_group:  # the command's stacks and, on the parallel launcher, its two workers'
        workers = 2 if launcher == "parallel" else 0
        assert err.count("Current thread 0x") == 1 + workers, err[-3000:]
        assert ("in _worker" in err) == bool(workers), err[-3000:]
    name = signal.Signals(signum).name
    assert err.strip().splitlines()[-1] == (
        f"mlp_sweep: interrupted ({name}); 0 of 2 runs finished; summary: {sweep}/summary.csv; "
        f"resume with: python -m mlp_sweep --resume {sweep}"
    )
    assert "Traceback" not in out + err
    assert group_gone(proc.pid), "a worker outlived the command"
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["status"][0] == "interrupted"
    record = json.loads((sweep / "0" / "metrics.json").read_text())
    assert record["error"].startswith(f"interrupted by {name} after epoch ")
    assert 2 <= record["epochs_done"] < 8

    result = run_cli("--resume", str(sweep))
    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["status"].tolist() == ["ok", "ok"]
    resumed = json.loads((sweep / "0" / "metrics.json").read_text())
    assert resumed["resumed_from_epoch"] >= 2
    assert_same_history(sweep / "0", uninterrupted["relu"])
    assert_same_history(sweep / "1", uninterrupted["selu"])


# SIGTERM with -m slow: the same path as Ctrl-C (both raise Interrupted in the run).
@pytest.mark.parametrize(
    "signum",
    [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
    ids=["ctrl-c", "sigterm"],
)
def test_interrupted_single_run_resumes(
    run_cli, tmp_path: Path, uninterrupted, signum: int
) -> None:
    run_dir = tmp_path / "one"
    proc = start_cli("model.act=selu", *LONG, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_for(lambda: epochs_written(run_dir) >= 2, proc)
    os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        f"mlp_sweep: interrupted ({signal.Signals(signum).name}); the run's record: "
    )
    assert "Traceback" not in out + err
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"

    command = last.split("resume with: ", 1)[1].split()
    assert command[:3] == ["python", "-m", "mlp_sweep"]
    result = run_cli(*command[3:])
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok" and record["resumed_from_epoch"] >= 2
    assert_same_history(run_dir, uninterrupted["selu"])


@pytest.mark.parametrize(
    "within",
    [
        "register_configs",  # the schema, before anything is checked
        "preflight",  # the command's checks of every job
        "compose_config",  # Hydra composing the sweep's config
        "load_sweep_config",  # the sweep composing its first job
    ],
)
def test_ctrl_c_inside_omegaconf_says_one_line(run_main, tmp_path: Path, within: str) -> None:
    """A Ctrl-C at the worst moment of OmegaConf's work (see CtrlCInsideOmegaConf), in each part
    of the command that builds configs: while it starts, the command holds the signal to the
    sweep's start; a job's compose holds it to its end. One line, exit 130, no traceback."""
    args = ["-m", "model.act=relu,selu", "data=synthetic", "trainer.epochs=1"]
    with CtrlCInsideOmegaConf(within) as ctrl_c:
        result = run_main(*args, "hydra/launcher=basic", f"hydra.sweep.dir={tmp_path}")
    assert ctrl_c.sent, f"no such moment in {within}"
    said = result.stdout + result.stderr
    assert result.returncode == 130, said[-3000:]
    assert "Traceback" not in said and "Error" not in said, said[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mlp_sweep: interrupted (SIGINT)"), last


def test_a_stop_that_comes_inside_an_import_waits_for_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the main thread imports a module: raised inside importlib's lock code it
    could leave the module's lock held by nobody, and the next import of it, by any thread,
    would wait for ever (an interrupted search once hung so). It is raised once the import
    has ended instead: the module is whole, and another thread imports it at once."""
    from mlp_sweep.run.interrupt import Interrupted, signals_raise

    (tmp_path / "stopped_while_imported.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(0.3)  # the signal's handler runs here, inside the import\n"
        "WHOLE = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = False
    with pytest.raises(Interrupted), signals_raise():
        import stopped_while_imported  # noqa: F401

        imported = True
        time.sleep(5)  # where the stop lands
    assert imported and sys.modules["stopped_while_imported"].WHOLE
    other: list[object] = []
    thread = threading.Thread(
        target=lambda: other.append(importlib.import_module("stopped_while_imported"))
    )
    thread.start()
    thread.join(timeout=5)
    assert other and not thread.is_alive()
