"""Chaos: the faults a long sweep meets, thrown at random moments, round after round.

Each round starts the sweep (the first time) or `--resume`s it, waits a random moment and
throws one fault: SIGKILL to a random worker (what the OOM killer does), SIGKILL to the whole
command (a lost node, `kill -9`), SIGINT to its process group (Ctrl-C in a terminal), SIGTERM to
the command (a scheduler's stop), or a clean stop followed by damage to a file of a run left
unfinished (a torn or garbage checkpoint.pt, metrics.json or history.csv). Rounds go on until a
resume ends the sweep whole (a sweep made whole while rounds remain is checked, and the same
sweep begins again in a new folder, so that every round has work to hit). Then every run is `ok`
with the very history of the same sweep never interrupted (to the last bit, on CPU), and
throughout:

- no round printed a traceback, and every round's processes were gone when it ended;
- a run's files, once it had finished, were never touched again by a later round.

The moments and faults come from a seeded RNG; the seed is printed, and
`MLP_SWEEP_CHAOS_SEED=<seed> python -m pytest tests/test_chaos.py` replays a run of rounds.
The default suite throws a few rounds; `python -m pytest -m slow tests/test_chaos.py` 50.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from mlp_sweep.search.study import load_study
from mlp_sweep.status import FINISHED
from tests.helpers import group_gone, pool_workers, run_command, start_cli

GRID = [
    "model.act=relu,selu,softplus,leaky",
    "seed=0,1,2",
    "optim.lr=0.05,0.1",
    "data=synthetic",
    "data.n_train=1500",
    "data.n_test=300",
    "trainer.epochs=4",
    "trainer.batch_size=25",
]
RUNS = 24
# The default suite's few rounds: the same sweep without its learning-rate sweep (12 runs).
SMALL_GRID = [arg for arg in GRID if not arg.startswith("optim.lr=")] + ["optim.lr=0.05"]
SMALL_RUNS = 12
FAULTS = ("kill_worker", "kill_command", "sigint", "sigterm", "damage")
HISTORY = ["epoch", "train_loss", "test_loss", "test_acc"]
RUN_FILES = ("metrics.json", "history.csv", "checkpoint.pt")


def _seed() -> int:
    return int(os.environ.get("MLP_SWEEP_CHAOS_SEED") or random.SystemRandom().randrange(10**6))


def _status(run_dir: Path) -> str | None:
    try:
        return str(json.loads((run_dir / "metrics.json").read_text())["status"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Chaos:
    """The rounds of one sweep, the faults they threw, and the invariants they kept."""

    def __init__(
        self,
        tmp_path: Path,
        args: list[str],
        seed: int,
        runs: int,
        moments: tuple[float, float] = (0.5, 6.0),
    ) -> None:
        """moments: the range of seconds after a start when a fault comes (a search spends
        its first seconds importing Optuna and opening its study, before any worker runs)."""
        self.tmp_path, self.args, self.runs, self.moments = tmp_path, args, runs, moments
        self.sweep = tmp_path / "sweep"
        self.rng = random.Random(seed)
        self.seed = seed
        self.thrown: collections.Counter[str] = collections.Counter()
        self.finished: dict[str, dict[str, bytes]] = {}  # run -> its files when first seen ok
        self.rounds = 0
        self.sweeps = 1  # the sweeps begun, one after another
        # The latest a fault may come: a round that ends before its fault's moment shortens it
        # to most of that round's length, so that later faults land inside the work.
        self.latest = moments[1]
        self.ended_first = False

    def where(self) -> str:
        return f"(chaos seed {self.seed}, round {self.rounds})"

    def command(self) -> list[str]:
        if (self.sweep / "multirun.yaml").exists():
            return ["--resume", str(self.sweep)]
        return ["-m", *self.args, f"hydra.sweep.dir={self.sweep}"]

    def round(self, fault: str | None) -> int:
        """One start of the command, with `fault` thrown at a random moment (None: none)."""
        self.rounds += 1
        self.ended_first = False
        started = time.monotonic()
        proc = start_cli(*self.command(), cwd=self.tmp_path)
        thrown = None
        if fault is not None:
            thrown = self.throw(fault, proc)
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGUSR1)  # each process prints its threads' stacks
            time.sleep(2)
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(
                f"round hung {self.where()} after {thrown}: {(out + err)[-12000:]}"
            ) from None
        if self.ended_first:  # the round ended before its fault's moment: come earlier
            self.latest = max(self.moments[0] + 0.2, 0.8 * (time.monotonic() - started))
        said = out + err
        assert "Traceback" not in said, f"{self.where()} {thrown}:\n{said[-4000:]}"
        assert group_gone(proc.pid), f"processes left running {self.where()}"
        if thrown == "damage":
            self.damage()
        if thrown:
            self.thrown[thrown] += 1
        self.check_finished_untouched()
        return proc.returncode

    def throw(self, fault: str, proc: subprocess.Popen[str]) -> str | None:
        """Wait a random moment, then the fault; None if the command ended first."""
        deadline = time.monotonic() + self.rng.uniform(self.moments[0], self.latest)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.ended_first = True
                return None
            time.sleep(0.02)
        if fault == "kill_worker":
            workers = pool_workers(proc.pid)
            if not workers:
                return None
            os.kill(self.rng.choice(sorted(workers)), signal.SIGKILL)
        elif fault == "kill_command":
            os.killpg(proc.pid, signal.SIGKILL)
        elif fault == "sigint":
            os.killpg(proc.pid, signal.SIGINT)
        elif fault in ("sigterm", "damage"):  # damage: stopped cleanly first, then damaged
            os.kill(proc.pid, signal.SIGTERM)
        return fault if proc.poll() is None or fault == "kill_command" else None

    def damage(self) -> None:
        """Tear or overwrite one file of a run the last round left unfinished."""
        if not self.sweep.exists():  # stopped before it made its folder
            return
        unfinished = [
            d
            for d in sorted(self.sweep.iterdir(), key=lambda d: d.name)
            if d.name.isdigit() and _status(d) not in FINISHED
        ]
        files = [d / name for d in unfinished for name in RUN_FILES if (d / name).exists()]
        if not files:
            return
        target = self.rng.choice(files)
        data = target.read_bytes()
        if self.rng.random() < 0.5:
            target.write_bytes(data[: len(data) // 2])  # torn
        else:
            target.write_bytes(bytes(self.rng.randrange(256) for _ in range(200)))  # garbage

    def check_finished_untouched(self) -> None:
        for run_dir in sorted(self.sweep.iterdir()) if self.sweep.exists() else []:
            if not run_dir.name.isdigit() or _status(run_dir) not in FINISHED:
                assert run_dir.name not in self.finished, (
                    f"run {run_dir.name} was finished, now {_status(run_dir)} {self.where()}"
                )
                continue
            files = {n: (run_dir / n).read_bytes() for n in RUN_FILES if (run_dir / n).exists()}
            before = self.finished.setdefault(run_dir.name, files)
            assert files == before, f"finished run {run_dir.name} was rewritten {self.where()}"

    def next_fault(self) -> str:
        """The kind thrown least so far (ties drawn at random): every kind gets its share."""
        fewest = min(self.thrown[f] for f in FAULTS)
        return self.rng.choice([f for f in FAULTS if self.thrown[f] == fewest])

    def run(
        self, rounds: int, check: Callable[[Chaos], None], faults: int = 0, each: int = 0
    ) -> None:
        """Rounds with a fault each, at least `rounds` of them and until `faults` faults were
        thrown in all and every kind `each` times (a fault whose round ended before its moment
        is not thrown); then clean resumes until the sweep is whole. `check` judges each whole
        sweep. One made whole while rounds remain is checked, and the next rounds start the
        same sweep anew in another folder: every round finds work to throw its fault into."""
        limit = 4 * max(rounds, faults)

        def more() -> bool:
            if self.rounds < rounds:
                return True
            enough = sum(self.thrown.values()) >= faults
            return not (enough and all(self.thrown[f] >= each for f in FAULTS))

        while more():
            assert self.rounds < limit, f"only {self.summary(0)} in {self.rounds} rounds"
            code = self.round(self.next_fault())
            if code == 0 and len(self.finished) == self.runs:
                check(self)
                self.sweeps += 1
                self.sweep = self.tmp_path / f"sweep{self.sweeps}"
                self.finished = {}
        for _ in range(3):
            if self.round(None) == 0:
                break
        assert len(self.finished) == self.runs, f"{sorted(self.finished)} {self.where()}"
        check(self)

    def summary(self, seconds: float) -> str:
        faults = ", ".join(f"{k} {self.thrown[k]}" for k in FAULTS)
        return (
            f"chaos seed {self.seed}: {self.rounds} rounds over {self.sweeps} sweep(s) in "
            f"{seconds:.0f} s; thrown {sum(self.thrown.values())}: {faults}"
        )


def _reference(tmp_path_factory: pytest.TempPathFactory, grid: list[str]) -> Path:
    """The same sweep, never interrupted."""
    folder = tmp_path_factory.mktemp("reference")
    done = run_command("-m", *grid, f"hydra.sweep.dir={folder / 'sweep'}", cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "sweep"


@pytest.fixture
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _reference(tmp_path_factory, GRID)


@pytest.fixture
def small_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _reference(tmp_path_factory, SMALL_GRID)


def _grid_chaos(
    tmp_path: Path,
    reference: Path,
    rounds: int,
    grid: list[str],
    runs: int,
    faults: int = 0,
    each: int = 0,
) -> None:
    tic = time.monotonic()
    chaos = Chaos(tmp_path, grid, _seed(), runs)
    print(f"chaos seed {chaos.seed}")

    def check(chaos: Chaos) -> None:
        for job in range(runs):
            pd.testing.assert_frame_equal(
                pd.read_csv(chaos.sweep / str(job) / "history.csv")[HISTORY],
                pd.read_csv(reference / str(job) / "history.csv")[HISTORY],
                check_exact=True,
                obj=f"run {job} {chaos.where()}",
            )
        frame = pd.read_csv(chaos.sweep / "summary.csv")
        assert frame["status"].eq("ok").all() and len(frame) == runs

    chaos.run(rounds, check, faults, each)
    print(chaos.summary(time.monotonic() - tic))


def test_a_sweep_survives_a_few_random_faults(tmp_path: Path, small_reference: Path) -> None:
    _grid_chaos(tmp_path, small_reference, rounds=3, grid=SMALL_GRID, runs=SMALL_RUNS)


@pytest.mark.slow
def test_a_sweep_survives_fifty_random_faults(tmp_path: Path, reference: Path) -> None:
    # At least 50 rounds, and until 40 faults have landed, every kind at least 5 times.
    _grid_chaos(tmp_path, reference, rounds=50, grid=GRID, runs=RUNS, faults=40, each=5)


SEARCH = [
    "hparams_search=optuna",
    "hydra.sweeper.n_trials=8",
    "data=synthetic",
    "data.n_train=1500",
    "data.n_test=300",
    "trainer.epochs=3",
    "trainer.batch_size=25",
]


def _search_chaos(
    tmp_path: Path, rounds: int, moments: tuple[float, float], faults: int = 0, each: int = 0
) -> None:
    pytest.importorskip("optuna", reason="needs the search extra: pip install '.[search]'")
    tic = time.monotonic()
    chaos = Chaos(tmp_path, SEARCH, _seed(), runs=8, moments=moments)
    print(f"chaos seed {chaos.seed}")

    def check(chaos: Chaos) -> None:
        study = load_study(chaos.sweep)
        # The preset's ASHA may prune a trial: a result too, as its record says.
        ended = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        assert len(ended) == 8, [(t.number, t.state.name) for t in study.trials]
        # Anything else is a trial asked for and killed before it got its values: failed, empty.
        others = [t for t in study.trials if t not in ended]
        assert all(t.state.name == "FAIL" and not t.params for t in others)
        for trial in ended:  # each trial's value is its own run's, from its own folder
            record = json.loads((chaos.sweep / str(trial.number) / "metrics.json").read_text())
            assert record["params"]["model.act"] == trial.params["model.act"]
            if trial.state.name == "PRUNED":
                assert record["status"] == "pruned" and record["epochs_done"] < 3
                continue
            assert record["status"] == "ok" and record["best_test_acc"] == trial.value
            assert max(trial.intermediate_values) == 3

    chaos.run(rounds, check, faults, each)
    print(chaos.summary(time.monotonic() - tic))


# Slow (~25 s), like its fifty-fault sibling, to keep the default suite near 6 minutes: by default
# a sweep meets random faults above, and a search's recovery is tests/test_search_recovery.py's
# (which now covers the partly sampled trial this test found) and tests/test_optuna_sweeper.py's.
@pytest.mark.slow
def test_a_search_survives_a_few_random_faults(tmp_path: Path) -> None:
    _search_chaos(tmp_path, rounds=2, moments=(0.5, 6.0))


@pytest.mark.slow
def test_a_search_survives_fifty_random_faults(tmp_path: Path) -> None:
    # Later moments than the grid's: a search spends its first seconds importing Optuna and
    # opening its study, before any worker runs; these reach its workers too.
    _search_chaos(tmp_path, rounds=50, moments=(3.0, 12.0), faults=40, each=5)
