"""What many test files share: the command's environment, starting and watching real commands,
and comparing histories. Fixtures live in conftest.py; import these as `from tests.helpers ...`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mlp_sweep.loggers import RunInfo
    from mlp_sweep.training.loop import EpochStats

ROOT = Path(__file__).resolve().parent.parent

# Small enough for a few seconds a run on 2 cores, big enough to learn something.
QUICK = [
    "data.limit_train=2000",
    "data.limit_test=500",
    "trainer.epochs=2",
    "trainer.batch_size=50",
    "optim.lr=0.1",
]

HISTORY_COLUMNS = ["epoch", "train_loss", "test_loss", "test_acc"]


# OpenMP threads that sleep at a barrier instead of spinning: the same numbers, but a run's two
# threads no longer wait on each other for 10-70x longer while another process has a core (a
# sweep's workers, a second command, another user): measured 0.1-0.2 s an epoch against 1-7 s
# on a busy 2-core machine. Set for this process (tests/conftest.py) and the commands it starts.
QUIET_THREADS = {"OMP_WAIT_POLICY": "PASSIVE"}


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env = {**QUIET_THREADS, **env}  # unless the environment says otherwise
    env["PYTHONUNBUFFERED"] = "1"
    # The checkout under test, whatever copy of mlp_sweep happens to be installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def assert_same_history(run_dir: Path, reference: Path) -> None:
    """run_dir trained exactly as reference did, epoch by epoch, to the last bit."""
    import pandas as pd

    pd.testing.assert_frame_equal(
        pd.read_csv(run_dir / "history.csv")[HISTORY_COLUMNS],
        pd.read_csv(reference / "history.csv")[HISTORY_COLUMNS],
        check_exact=True,
    )


def run_command(
    *args: str, cwd: Path, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m mlp_sweep args...` to its end, its output captured."""
    return run_python("-m", "mlp_sweep", *args, cwd=cwd, timeout=timeout, env=env)


def sweep_in(factory: pytest.TempPathFactory, name: str, *args: str) -> Path:
    """`python -m mlp_sweep -m args...` run to its end in a fresh folder `name`: the sweep's
    folder (a module fixture's real sweep, which its tests read or copy)."""
    root = factory.mktemp(name)
    done = run_command("-m", *args, f"hydra.sweep.dir={root / 'sweep'}", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "sweep"


def run_python(
    *args: str, cwd: Path, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python args...` to its end, in the commands' environment (or `env`), its output
    captured."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    alive: bool  # not a zombie
    cmdline: bytes
    environ: bytes


def processes() -> list[Process]:
    """Every process this user can see, from /proc (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        found.append(
            Process(int(entry.name), int(fields[1]), fields[0] not in "ZX", cmdline, environ)
        )
    return found


def pool_workers(pid: int) -> list[int]:
    """The live workers of the command `pid`: the children of its fork server (a child of the
    command started by multiprocessing's forkserver module), mlp_sweep.launch.pool's."""
    found = processes()
    servers = {p.pid for p in found if p.ppid == pid and FORK_SERVER in p.cmdline}
    return [p.pid for p in found if p.ppid in servers and p.alive]


# In the command line of the fork server and of every worker forked from it.
FORK_SERVER = b"multiprocessing.forkserver"


class CtrlCInsideOmegaConf:
    """Within the block, SIGINT is sent to this process at the first moment, inside a call of a
    function named `within`, that OmegaConf appends an item to a list it builds with the list's
    flags overridden. There a KeyboardInterrupt leaves a None placeholder in the list (append
    cleans up after an Exception only), on which the finally block that puts the flags back
    then fails: a Ctrl-C turned into an AttributeError. `sent` says whether the moment came.
    """

    def __init__(self, within: str) -> None:
        self.within = within
        self.sent = False

    def _hook(self, frame: FrameType, event: str, arg: object) -> None:
        caller = frame.f_back
        if (
            event == "call"
            and frame.f_code.co_name == "_set_item_impl"
            and caller is not None
            and caller.f_code.co_name == "append"
            and "omegaconf" in caller.f_code.co_filename
            and caller.f_back is not None
            and caller.f_back.f_code.co_name == "_set_value_impl"
            and len(caller.f_locals["self"].__dict__["_content"]) >= 2  # its flags looked up
            and self._inside(caller)
        ):
            sys.setprofile(None)  # once; the rest of the command at full speed
            self.sent = True
            signal.raise_signal(signal.SIGINT)

    def _inside(self, frame: FrameType | None) -> bool:
        while frame is not None:
            if frame.f_code.co_name == self.within:
                return True
            frame = frame.f_back
        return False

    def __enter__(self) -> CtrlCInsideOmegaConf:
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)


# Servers a test starts on 127.0.0.1 (visdom, TensorBoard, optuna-dashboard) and stops itself.
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def http_json(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server we started, by its process group, and reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def chromium() -> str | None:
    """Debian's chromium (.ci/install-chromium.sh), or None where it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_or_skip() -> None:
    """Skip a browser check, saying why, where chromium is missing; fail in CI (CI set, as
    .ci/run is run), which installs it: a broken install there must not pass as a skip."""
    if chromium():
        return
    why = "no chromium: Debian's chromium is not installed (bash .ci/install-chromium.sh)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"CI={os.environ['CI']}: {why}", pytrace=False)
    pytest.skip(why)


def screenshot(url: str, path: Path, size: tuple[int, int] = (1400, 1000)) -> Path:
    """The page at `url` as a PNG, from headless chromium, after its scripts had 10 s of
    virtual time to draw; checked to be a drawn page, not a blank one."""
    browser = chromium()
    assert browser, "Debian's chromium: bash .ci/install-chromium.sh"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        + [f"--screenshot={path}", f"--window-size={size[0]},{size[1]}"]
        + ["--virtual-time-budget=10000", url],
        capture_output=True,
        timeout=120,
        check=False,
    )
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == size
        colours = image.convert("RGB").getcolors(maxcolors=size[0] * size[1])
    assert colours is not None
    biggest = max(count for count, _ in colours)
    # A page with its scripts missing is one colour (visdom's blank blue): a drawn page has
    # many, and no colour covers nearly all of it.
    assert len(colours) > 200 and biggest < 0.9 * size[0] * size[1], f"{url}: a blank page"
    return path


class Recorder:
    """A logger that records its calls (and fails, or takes its time to import, on demand)."""

    def __init__(self, name: str, fail_on: str | None = None, importing: float = 0.0) -> None:
        self.name, self.fail_on, self.calls = name, fail_on, []  # type: ignore[var-annotated]
        self.importing = importing  # seconds prepare() takes

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if what == self.fail_on:
            raise OSError(28, "No space left on device")

    def prepare(self) -> None:
        if self.fail_on == "prepare":  # as a logger whose library is not installed
            raise ImportError(f"No module named '{self.name}'", name=self.name)
        time.sleep(self.importing)

    def start(self, run: RunInfo, history: list[EpochStats], steps: list[Any]) -> None:
        self._call("start")

    def steps(self, points: list[Any]) -> None:
        self._call(f"step {points[-1][0]}")

    def epoch(self, stats: EpochStats) -> None:
        self._call(f"epoch {stats.epoch}")

    def digits(self, epoch: int, digits: Any) -> None:
        self._call(f"digits {epoch}")

    def finish(self, record: dict[str, Any]) -> None:
        self._call("finish")

    def close(self) -> None:
        self._call("close")


# A search whose median pruner stops trials 3-5 (lr 0.0001) once trials 0-2 (lr 0.5) finished:
# hydra/launcher=basic runs them in that order (tests/test_pruning.py, tests/test_mlflow.py).
PRUNED_SEARCH = [
    "hparams_search=optuna",
    "hydra.sweeper.n_trials=6",
    "hydra.sweeper.params.optim.lr='choice(0.5,0.0001)'",
    # Three trials alike per learning rate: test batches of another size give the same numbers.
    "hydra.sweeper.params.model.act=relu",
    "hydra.sweeper.params.model.init=default",
    "trainer.eval_batch_size=50,100,200",
    "hydra.sweeper.pruner=median",
    "hydra.sweeper.pruning.warmup_trials=2",
    "data=synthetic",
    "data.n_train=600",
    "data.n_test=200",
    "trainer.epochs=4",
]
