from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mlp_sweep.config import Config, register_configs, to_config
from mlp_sweep.paths import CONF_DIR

ROOT = Path(__file__).resolve().parent.parent
register_configs()

# Small enough for a few seconds a run on 2 cores, big enough to learn something.
QUICK = [
    "data.limit_train=2000",
    "data.limit_test=500",
    "trainer.epochs=2",
    "trainer.batch_size=50",
    "optim.lr=0.1",
]


@pytest.fixture
def compose_cfg() -> Iterator[Callable[..., DictConfig]]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda *overrides: compose("config", list(overrides))


@pytest.fixture
def typed_cfg(compose_cfg: Callable[..., DictConfig]) -> Callable[..., Config]:
    return lambda *overrides: to_config(compose_cfg(*overrides))


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONUNBUFFERED"] = "1"
    # The checkout under test, whatever copy of mlp_sweep happens to be installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m <module> args...` as a user would, in tmp_path, and capture its output."""

    def run(
        *args: str,
        module: str = "mlp_sweep",
        cwd: Path | None = None,
        timeout: float = 240,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=cwd or tmp_path,
            env={**cli_env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def start_cli(
    *args: str,
    cwd: Path,
    stdout: int | None = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """`python -m mlp_sweep args...` in its own process group, as a terminal would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "mlp_sweep", *args],
        cwd=cwd,
        env=env or cli_env(),
        stdout=stdout,
        stderr=subprocess.PIPE if stdout is not None else subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )


def wait_for(
    condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 120
) -> None:
    """Poll until condition() holds; fail if the process ends first or time runs out."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the command ended before the moment the test waits for"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def epochs_written(run_dir: Path) -> int:
    """Epochs in run_dir's history.csv so far (0 when there is none yet)."""
    try:
        return max(0, len((run_dir / "history.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def group_gone(pgid: int, timeout: float = 10) -> bool:
    """True once no process of the group is left (zombies are reaped by init within moments)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def hydra_defaults(hydra_restore_singletons: None) -> None:
    """Hydra's launcher suites expect a process where no version_base was ever set; other
    modules here compose with version_base="1.3". Drop it for the test (the suite's own
    singleton fixture puts it back)."""
    from hydra.core.singleton import Singleton
    from hydra.version import VersionBase

    Singleton._instances.pop(VersionBase, None)  # type: ignore[attr-defined]


HISTORY_COLUMNS = ["epoch", "train_loss", "test_loss", "test_acc"]


def assert_same_history(run_dir: Path, reference: Path) -> None:
    """run_dir trained exactly as reference did, epoch by epoch, to the last bit."""
    import pandas as pd

    pd.testing.assert_frame_equal(
        pd.read_csv(run_dir / "history.csv")[HISTORY_COLUMNS],
        pd.read_csv(reference / "history.csv")[HISTORY_COLUMNS],
        check_exact=True,
    )
