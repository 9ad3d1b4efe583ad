"""Limits checked before any job: a sweep's size (counted, never listed), its runs' memory at
once on one machine, and a Ctrl-C or SIGTERM during the checks, which stops them at once.

Refusals run the entry point in this process (run_main); the signals need a real command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mlp_sweep import hydra_compat
from mlp_sweep.cli.limits import MAX_JOBS, MAX_JOBS_ENV
from mlp_sweep.cli.preflight import preflight
from mlp_sweep.config import Config, Dataset, Optimizer, Precision
from mlp_sweep.training import memory, threads
from mlp_sweep.training.memory import RunMemory, parameter_count, peak, run_memory, size_text
from tests.helpers import cli_env, group_gone

# ---- the memory estimate's arithmetic ------------------------------------------------------

DEFAULT_PARAMS = 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10  # 199,210
MNIST_BYTES = (60_000 + 10_000) * (784 * 4 + 8)  # float32 pixels, int64 labels


def config(**changes: object) -> Config:
    """The schema's defaults (MNIST, SGD, 784-200-200-10, batch 200), with dotted changes."""
    cfg = Config()
    for key, value in changes.items():
        section, _, name = key.rpartition("__")
        setattr(getattr(cfg, section) if section else cfg, name, value)
    return cfg


def test_parameters_of_the_tutorial_mlp() -> None:
    assert parameter_count([784, 200, 200, 10]) == DEFAULT_PARAMS == 199_210
    assert parameter_count([784, 10]) == 7_850  # logistic regression


def test_the_default_run_counted_part_by_part() -> None:
    run = run_memory(config())
    assert run.parameters == run.gradients == DEFAULT_PARAMS * 4
    assert run.optimizer == 0  # plain SGD keeps no state
    assert run.data == MNIST_BYTES and run.shared_data  # the memory-mapped cache, one copy
    # Evaluation's 10,000-row chunk through a 200-wide layer outweighs a 200-row batch.
    assert run.activations == 10_000 * 2 * 200 * 4
    assert run.total == run.own + MNIST_BYTES


@pytest.mark.parametrize(
    ("changes", "buffers"),
    [({}, 0), ({"optim__momentum": 0.9}, 1), ({"optim__name": Optimizer.adam}, 2)],
    ids=["sgd", "momentum", "adam"],
)
def test_optimizer_state_is_its_buffers(changes: dict[str, object], buffers: int) -> None:
    assert run_memory(config(**changes)).optimizer == buffers * DEFAULT_PARAMS * 4


def test_precision_sets_the_bytes_of_every_tensor() -> None:
    fp64 = run_memory(config(trainer__precision=Precision.fp64))
    assert fp64.parameters == DEFAULT_PARAMS * 8
    assert fp64.data == 70_000 * (784 * 8 + 8) and not fp64.shared_data  # a copy per run
    bf16 = run_memory(config(trainer__precision=Precision.bf16))
    fp32 = run_memory(config())
    assert bf16.activations == fp32.activations + DEFAULT_PARAMS * 2  # autocast's weight copy


def test_data_follows_the_dataset_and_its_limits() -> None:
    cfg = config()
    cfg.data.name, cfg.data.n_train, cfg.data.n_test = Dataset.synthetic, 4000, 1000
    assert run_memory(cfg).data == 5000 * (784 * 4 + 8) and not run_memory(cfg).shared_data
    cfg.data.limit_train, cfg.data.limit_test = 100, 50
    run = run_memory(cfg)
    assert run.data == 150 * (784 * 4 + 8)
    # Batches and evaluation chunks are no larger than the data.
    assert run.activations == 100 * (784 + 2 * 400 + 3 * 10 + 2 * 200) * 4


def test_a_400000_wide_model_needs_its_640_gb_of_weights() -> None:
    run = run_memory(config(model__hidden=[400_000, 400_000]))
    assert run.parameters > 400_000 * 400_000 * 4 == 640_000_000_000
    assert run.gradients == run.parameters


def test_peak_adds_the_largest_runs_and_their_data() -> None:
    small = RunMemory(parameters=10, gradients=10, optimizer=0, activations=5, data=100)
    large = RunMemory(parameters=50, gradients=50, optimizer=50, activations=0, data=100)
    shared = RunMemory(parameters=1, gradients=1, optimizer=0, activations=0, data=1000,
                       shared_data=True)  # fmt: skip
    runs = Counter({small: 3, large: 1})
    assert peak(runs, 1, 1) == 150 + 100
    assert peak(runs, 3, 3) == 150 + 25 + 25 + 300
    assert peak(runs, 3, 1) == 150 + 25 + 25 + 100  # a stack: one copy of the data
    assert peak(runs, 10, 10) == 150 + 3 * 25 + 4 * 100  # no more runs than there are
    assert peak(Counter({shared: 4}), 4, 4) == 4 * 2 + 1000  # shared data counted once


def test_sizes_read_as_people_write_them() -> None:
    assert [size_text(n) for n in (512, 850e6, 1.24e9, 640e9, 1.93e12)] == [
        "512 B", "850 MB", "1.2 GB", "640 GB", "1.9 TB",
    ]  # fmt: skip


def test_the_host_memory_is_this_machine_s_or_its_cgroup_s() -> None:
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < memory.host_memory() <= physical


def test_cuda_memory_is_not_asked_where_cuda_is_not_initialised() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        pytest.skip("CUDA is initialised in this test process")
    assert memory.gpu_memory("cuda:0") is None
    assert torch is None or not torch.cuda.is_initialized()  # and asking did not do it


# ---- a sweep's size, counted without listing it ---------------------------------------------

GRIDS = [
    ["seed=range(10)"],
    ["seed=range(5,0,-1)", "model.act=relu,selu"],
    ["optim.lr=range(0.1,1,0.1)"],
    ["optim.lr=range(1,0,-0.3)"],
    ["seed=shuffle(range(7))", "model.act=choice(relu,tanh)"],
    ["seed=0,1", "seed=range(4)"],  # a key given twice: its last
    ["model.hidden=[1,2]", "seed=range(0)"],
]


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: " ".join(g))
def test_grid_size_is_the_number_of_jobs_hydra_makes(grid: list[str]) -> None:
    overrides = hydra_compat.overrides_parser().parse_overrides(grid)
    assert hydra_compat.grid_size(overrides) == len(hydra_compat.expand_grid(overrides))


def test_a_huge_grid_is_counted_at_once() -> None:
    overrides = hydra_compat.overrides_parser().parse_overrides(
        ["seed=range(1000000000)", "optim.lr=range(0,1000,0.0001)", "model.act=relu,selu"]
    )
    start = time.perf_counter()
    assert hydra_compat.grid_size(overrides) == 1_000_000_000 * 10_000_000 * 2
    assert time.perf_counter() - start < 0.05


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stdout + result.stderr
    assert lines[0].startswith("mlp_sweep: error: ")
    return lines[0]


def test_a_sweep_past_the_limit_is_refused_from_its_size(run_main, tmp_path: Path) -> None:
    """2,000,000 jobs: listed and checked they took minutes and gigabytes; counted, at once."""
    start = time.perf_counter()
    line = one_line(run_main("-m", "seed=range(2000000)", "data=synthetic"))
    assert time.perf_counter() - start < 20  # ~2 s here; listing them took minutes
    assert f"2000000 jobs (seed: 2000000 values), more than the limit of {MAX_JOBS}" in line
    assert f"{MAX_JOBS_ENV}=2000000" in line  # the way on
    assert not (tmp_path / "outputs").exists()


def test_the_limit_counts_the_config_s_grid_too(
    run_main, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """experiment=activations_grid's hydra.sweeper.params: 4 activations x 4 inits x 5 seeds;
    a key on the command line replaces its axis, as Hydra's sweeper does."""
    monkeypatch.setenv(MAX_JOBS_ENV, "50")
    line = one_line(run_main("-m", "experiment=activations_grid"))
    assert (
        "80 jobs (model.act: 4 values, model.init: 4 values, seed: 5 values), "
        "more than the limit of 50" in line
    )
    argv = ["-m", "experiment=activations_grid", "seed=0,1", f"hydra.sweep.dir={tmp_path / 's'}"]
    assert preflight(argv) == [None] * 32  # under the limit: every job checked


def test_a_limit_that_is_not_a_number_says_so(run_main, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_JOBS_ENV, "lots")
    line = one_line(run_main("-m", "seed=range(3)", "data=synthetic"))
    assert f"{MAX_JOBS_ENV}=lots: must be a whole number >= 1" in line


# ---- memory ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["model.hidden=[400000,400000]"],
        ["-m", "model.hidden=[400000,400000]", "seed=0,1", "hydra/launcher=basic"],
        ["-m", "model.hidden=[400000,400000]", "seed=0,1"],
    ],
    ids=["single run", "basic", "parallel"],
)
def test_a_model_larger_than_the_machine_is_refused_before_any_job(
    run_main, tmp_path: Path, argv: list[str]
) -> None:
    line = one_line(run_main(*argv, "data=synthetic"))
    assert "a run of " in line and "model.hidden=[400000,400000]" in line
    assert "parameters 641 GB, gradients 641 GB" in line  # 400,000 x 400,000 x 4 bytes and more
    assert "more than this machine's" in line and "a smaller model (model.hidden)" in line
    assert not (tmp_path / "outputs").exists()


# Per run, on data=synthetic: 22 MB of weights, as much of gradients, 64 MB of evaluation
# activations and 16 MB of data: 124 MB.
MEDIUM = ["-m", "seed=range(8)", "data=synthetic", "model.hidden=[2000,2000]"]


@pytest.fixture
def small_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """8 cores and 500 MB: room for four such runs at once, not eight."""
    monkeypatch.setattr(memory, "host_memory", lambda: 500_000_000)
    monkeypatch.setattr(threads, "cores", lambda: 8)


def test_runs_that_fit_alone_but_not_side_by_side_are_refused(
    run_main, tmp_path: Path, small_machine: None
) -> None:
    line = one_line(run_main(*MEDIUM))
    assert "8 runs at once (8 workers for hydra.launcher.n_jobs=null) need 996 MB" in line
    assert "124 MB a run at most" in line and "more than this machine's 500 MB" in line
    assert "run fewer at once: hydra.launcher.n_jobs=4" in line
    # The way on works: four at once pass every check.
    sweep = f"hydra.sweep.dir={tmp_path / 's'}"
    assert preflight([*MEDIUM, "hydra.launcher.n_jobs=4", sweep]) == [None] * 8
    assert preflight([*MEDIUM, "hydra/launcher=basic", sweep]) == [None] * 8


def test_a_fused_stack_counts_its_members_and_one_copy_of_the_data(
    run_main, tmp_path: Path, small_machine: None
) -> None:
    line = one_line(run_main(*MEDIUM, "hydra/launcher=fused", "hydra.launcher.n_jobs=1"))
    assert "8 runs at once (1 worker for hydra.launcher.n_jobs=1, stacks of up to 16)" in line
    assert "need 886 MB" in line  # 8 x 108 MB + 16 MB of data
    assert "hydra.launcher.n_jobs=1 hydra.launcher.max_group=4" in line
    sweep = f"hydra.sweep.dir={tmp_path / 's'}"
    argv = [*MEDIUM, "hydra/launcher=fused", "hydra.launcher.n_jobs=1", sweep]
    assert preflight([*argv, "hydra.launcher.max_group=4"]) == [None] * 8


def test_a_slurm_job_is_checked_against_its_mem_gb(run_main) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    argv = ["-m", "seed=0,1", "data=synthetic", "model.hidden=[30000,30000]"]
    line = one_line(run_main(*argv, "hydra/launcher=slurm", "hydra.launcher.mem_gb=4"))
    assert "more than a SLURM job's hydra.launcher.mem_gb: 4.3 GB" in line
    assert "a larger hydra.launcher.mem_gb=" in line


# ---- a stop during the checks ----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize(
    ("signum", "launcher"),
    [(signal.SIGINT, "parallel"), (signal.SIGTERM, "basic")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_stop_during_the_checks_ends_them_at_once(
    tmp_path: Path, signum: int, launcher: str
) -> None:
    """90,000 jobs take a minute or more to check. A signal that comes meanwhile (seen in a
    stack dump, kill -USR1, to land inside the checks) ends the command within a second or
    two: one line, 128 + the signal, no sweep folder, no process of its left."""
    sweep = tmp_path / "sweep"
    argv = ["-m", "seed=range(90000)", "data=synthetic", f"hydra/launcher={launcher}"]
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlp_sweep", *argv, f"hydra.sweep.dir={sweep}"],
            cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while cpu_seconds(proc.pid) < 2:  # past its imports: its SIGUSR1 handler is set
            assert proc.poll() is None and time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.2)
        while "in preflight" not in stderr.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, stderr.read_text()
            proc.send_signal(signal.SIGUSR1)  # the stacks, printed to stderr
            time.sleep(0.5)
        said = len(stderr.read_text())
        sent = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    after = stderr.read_text()[said:]
    name = signal.Signals(signum).name
    print(f"{name} during the checks: exit {code} {took:.2f} s after the signal")
    assert code == 128 + signum, after
    assert after.strip().splitlines() == [f"mlp_sweep: interrupted ({name}); nothing had started"]
    assert took < 2, f"{took:.2f} s"
    assert not sweep.exists()
    assert group_gone(proc.pid, timeout=10)  # the fork server too, where one had started
