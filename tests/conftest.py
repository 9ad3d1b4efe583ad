"""Fixtures shared by the test files; plain helpers are in tests/helpers.py."""

from __future__ import annotations

import fcntl
import json
import logging
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
from tests.helpers import QUICK, QUIET_THREADS, cli_env, run_command

__all__ = ["cli_env"]  # tests/test_lifecycle.py imports it from here; tests.helpers has it

register_configs()
# Before any test module imports torch (nothing imported so far does): see QUIET_THREADS.
for _name, _value in QUIET_THREADS.items():
    os.environ.setdefault(_name, _value)


# The files that take longest (each is a few real sweeps, killed, resumed), longest first. The
# suite runs on two pytest-xdist workers, a file per worker at a time (--dist loadfile, so a
# file's module fixtures run once); started first, the long files end beside the short ones
# instead of last and alone.
LONGEST_FIRST = [
    "test_fused.py",
    "test_slurm.py",
    "test_feature_matrix.py",
    "test_chaos.py",
    "test_locks.py",
    "test_interrupt.py",
    "test_faults.py",
    "test_retries_and_limits.py",
    "test_console.py",
    "test_loggers.py",
    "test_search_recovery.py",
    "test_results.py",
    "test_lifecycle.py",
    "test_sweep.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


@pytest.fixture
def compose_cfg() -> Iterator[Callable[..., DictConfig]]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda *overrides: compose("config", list(overrides))


@pytest.fixture
def typed_cfg(compose_cfg: Callable[..., DictConfig]) -> Callable[..., Config]:
    return lambda *overrides: to_config(compose_cfg(*overrides))


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


def _once(
    tmp_path_factory: pytest.TempPathFactory, name: str, args: Callable[[Path], list[str]]
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The command run once for the whole session, in a folder `name`, even where the suite's
    files are spread over several pytest-xdist workers: the first to need it runs it, under a
    lock, and leaves its output beside the folder; the others read that."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    root, said = base / name, base / f"{name}.json"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not said.exists():
            root.mkdir()
            done = run_command(*args(root), cwd=root)
            said.write_text(json.dumps([done.returncode, done.stdout, done.stderr]))
    code, out, err = json.loads(said.read_text())
    return subprocess.CompletedProcess(["mlp_sweep", *args(root)], code, out, err), root


# The real commands several files read (and never change): each runs once a session.
ACTIVATION_SWEEP = ["-m", "model.act=relu,leaky,selu,softplus", *QUICK, "device=cpu"]
SINGLE_RUN = ["device=cpu", "data=synthetic", "data.n_train=400", "data.n_test=200"]
SINGLE_RUN += ["trainer.batch_size=50", "trainer.epochs=2"]


@pytest.fixture(scope="session")
def activation_sweep(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`python -m mlp_sweep -m model.act=relu,leaky,selu,softplus` on a 2000-image MNIST subset
    (ACTIVATION_SWEEP), off a terminal, on the default launcher: its output and its folder.
    Read by tests/test_sweep.py (what it writes) and tests/test_console.py (what it prints)."""
    done, root = _once(
        tmp_path_factory,
        "activation_sweep",
        lambda root: [*ACTIVATION_SWEEP, f"hydra.sweep.dir={root / 'acts'}"],
    )
    return done, root / "acts"


# A grid trained twice: stacked on the fused launcher, and each run alone on the basic one. SGD
# runs of one seed share a stack (jobs 0 and 4 for seed 0); Adam's train alone in both.
FUSED_GRID = ["model.act=relu,selu", "optim=sgd,adam", "seed=0,1", "data=synthetic"]
FUSED_GRID += ["data.n_train=600", "data.n_test=200", "trainer.epochs=3", "trainer.precision=fp64"]


@pytest.fixture(scope="session")
def fused_twins(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """FUSED_GRID under hydra/launcher=fused (fuse=always) and hydra/launcher=basic: what the
    fused sweep printed, and the two folders. Read by tests/test_fused.py (the numbers) and
    tests/test_lifecycle.py (the records' form)."""
    said, fused = _once(
        tmp_path_factory,
        "fused_twins_fused",
        lambda root: ["-m", *FUSED_GRID, "hydra/launcher=fused", "hydra.launcher.fuse=always",
                      f"hydra.sweep.dir={root / 'sweep'}"],
    )  # fmt: skip
    alone, basic = _once(
        tmp_path_factory,
        "fused_twins_alone",
        lambda root: [
            "-m",
            *FUSED_GRID,
            "hydra/launcher=basic",
            f"hydra.sweep.dir={root / 'sweep'}",
        ],
    )
    assert said.returncode == 0, said.stderr[-3000:]
    assert alone.returncode == 0, alone.stderr[-3000:]
    return said, fused / "sweep", basic / "sweep"


@pytest.fixture(scope="session")
def single_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`python -m mlp_sweep` with SINGLE_RUN's values and the default run folder: its output
    and the folder it started in. Read by tests/test_sweep.py and tests/test_console.py."""
    return _once(tmp_path_factory, "single_run", lambda root: SINGLE_RUN)


@pytest.fixture
def run_main(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    hydra_restore_singletons: None,
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The command's entry point (mlp_sweep.cli.main.main) called in this process, in tmp_path,
    with sys.argv as `python -m mlp_sweep args...` sets it: run_cli's answer without a new
    process (~2.5 s of imports each). For what needs no real process: refusals, printed configs,
    a single run's overrides. What a call changes in the process is put back after it: logging
    (Hydra configures it), torch's threads and determinism, the entry point's module state.
    """
    import torch

    from mlp_sweep.cli import main as cli
    from mlp_sweep.results import sweep_callback
    from mlp_sweep.training import files

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(cwd or tmp_path)
        monkeypatch.setattr(sys, "argv", ["mlp_sweep", *args])
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        monkeypatch.setattr(sweep_callback, "ACTIVE", sweep_callback.Active())
        monkeypatch.setattr(files, "ORIGIN", files.ORIGIN)
        logs = _logging_state()
        threads = torch.get_num_threads()
        deterministic = torch.are_deterministic_algorithms_enabled()
        capsys.readouterr()  # what came before is not this command's
        code: object = 0
        try:
            cli.main()
        except SystemExit as done:
            code = done.code
        finally:
            _restore_logging(logs)
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)
        out, err = capsys.readouterr()
        if isinstance(code, str):  # as the interpreter does: the text on stderr, exit 1
            err, code = f"{err}{code}\n", 1
        assert isinstance(code, int | None), code
        return subprocess.CompletedProcess(["mlp_sweep", *args], code or 0, out, err)

    return run


LoggingState = dict[logging.Logger, tuple[int, list[logging.Handler], bool, bool]]


def _loggers() -> list[logging.Logger]:
    named = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(lg for lg in named if isinstance(lg, logging.Logger))]


def _logging_state() -> LoggingState:
    return {lg: (lg.level, list(lg.handlers), lg.disabled, lg.propagate) for lg in _loggers()}


def _restore_logging(state: LoggingState) -> None:
    """Every logger as it was; handlers added since (Hydra's console and file ones) closed."""
    for logger in _loggers():
        level, handlers, disabled, propagate = state.get(logger, (logging.NOTSET, [], False, True))
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers = handlers
        logger.setLevel(level)
        logger.disabled, logger.propagate = disabled, propagate


@pytest.fixture
def fresh_fork_server() -> Iterator[None]:
    """The test starts its own fork server (mlp_sweep.launch.pool's, one per process) with the
    preload it chooses, and leaves none to later tests."""
    _forget_fork_server()
    yield
    _forget_fork_server()


def _forget_fork_server() -> None:
    """Let this process's fork server go without waiting for it: it exits once its workers
    have (a sweep run in this process keeps its pool's idle workers until the process exits),
    and a thread reaps it then. The next pool starts a new one."""
    import threading
    from multiprocessing import forkserver

    server = forkserver._forkserver  # type: ignore[attr-defined]
    with server._lock:
        if server._forkserver_alive_fd is not None:
            os.close(server._forkserver_alive_fd)
            pid = server._forkserver_pid
            threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()
        server._forkserver_alive_fd = server._forkserver_address = server._forkserver_pid = None
        server._preload_modules = ["__main__"]


@pytest.fixture
def hydra_defaults(hydra_restore_singletons: None) -> None:
    """Hydra's launcher suites expect a process where no version_base was ever set; other
    modules here compose with version_base="1.3". Drop it for the test (the suite's own
    singleton fixture puts it back)."""
    from hydra.core.singleton import Singleton
    from hydra.version import VersionBase

    Singleton._instances.pop(VersionBase, None)  # type: ignore[attr-defined]
