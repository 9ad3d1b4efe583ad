"""GPU placement, observed on a machine without a GPU: which GPUs a process sees (nvidia-smi and
CUDA_VISIBLE_DEVICES read without CUDA), the slots `hydra.launcher.gpus` x `jobs_per_gpu` make,
the pool's workers pinned to them (a dead one replaced on its own GPU), a real sweep whose
records say which CUDA_VISIBLE_DEVICES each job's worker had, and the one-line refusals.

The CUDA side of it, for real, is tests/test_gpu.py's (marked gpu).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from mlp_sweep.bench import __main__ as bench
from mlp_sweep.cli.limits import Launcher, LimitError, MemoryCheck
from mlp_sweep.config import Config, DataConfig, Dataset
from mlp_sweep.errors import ConfigError, DeviceError
from mlp_sweep.launch import gpu_slots
from mlp_sweep.launch.pool import Pool
from mlp_sweep.training import gpus
from mlp_sweep.training.device import check_device, gpu_identity
from mlp_sweep.training.gpus import Gpu
from tests.helpers import run_python
from tests.test_pool import _SAYS_IF_TORCH

SMI = """\
0, NVIDIA H100 80GB HBM3, GPU-aaaa1111-0000-0000-0000-000000000000, 81559
1, NVIDIA H100 80GB HBM3, GPU-bbbb2222-0000-0000-0000-000000000000, 81559
"""
TWO = tuple(gpus.parse_smi(SMI))


def small_gpus(memory_gb: float) -> tuple[Gpu, ...]:
    return tuple(Gpu(str(i), i, "Small GPU", f"GPU-{i}", int(memory_gb * 2**30)) for i in (0, 1))


# ---- which GPUs a process sees --------------------------------------------------------------


def test_nvidia_smi_rows_give_index_name_uuid_and_memory() -> None:
    assert [(g.index, g.name, g.memory) for g in TWO] == [
        (0, "NVIDIA H100 80GB HBM3", 81559 * 2**20),
        (1, "NVIDIA H100 80GB HBM3", 81559 * 2**20),
    ]
    assert gpus.parse_smi("No devices were found\n") == []


@pytest.mark.parametrize(
    ("env", "entries", "indices"),
    [
        ({}, ["0", "1"], [0, 1]),  # unset: every GPU of the machine
        ({"CUDA_VISIBLE_DEVICES": "1,0"}, ["1", "0"], [1, 0]),  # cuda:0 is the machine's 1
        ({"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}, ["GPU-bbbb"], [1]),  # a UUID prefix
        ({"CUDA_VISIBLE_DEVICES": "0,7,1"}, ["0"], [0]),  # CUDA stops at the first unknown
        ({"CUDA_VISIBLE_DEVICES": ""}, [], []),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, [], []),
    ],
    ids=["unset", "reordered", "uuid", "stops", "empty", "minus-one"],
)
def test_cuda_visible_devices_filters_the_machine_s_gpus_as_cuda_does(
    env: dict[str, str], entries: list[str], indices: list[int]
) -> None:
    seen = gpus.visible(env, TWO)
    assert [g.entry for g in seen] == entries
    assert [g.index for g in seen] == indices


def test_this_machine_has_no_gpu_and_finding_that_out_needs_no_torch() -> None:
    done = run_python(
        "-c",
        "import sys; from mlp_sweep.training import gpus; "
        "print(len(gpus.machine_gpus()), 'torch' in sys.modules)",
        cwd=Path.cwd(),
    )
    count, torch_imported = done.stdout.split()
    assert torch_imported == "False"
    if Path("/proc/driver/nvidia/gpus").exists():
        pytest.skip("this machine has an NVIDIA driver")
    assert count == "0"


# ---- slots -----------------------------------------------------------------------------------


def test_two_gpus_by_two_jobs_make_four_slots_taking_the_gpus_in_turn() -> None:
    slots = gpu_slots.plan([0, 1], 2, ["cpu"], cores=2, visible=[])
    assert slots is not None and slots.devices == ("0", "1", "0", "1")
    assert [e["CUDA_VISIBLE_DEVICES"] for e in slots.envs()] == ["0", "1", "0", "1"]
    assert slots.describe() == "2 GPUs (0, 1) x 2"
    assert gpu_slots.split(8, None, None, slots) == (4, 1)  # a worker per slot, cores shared
    assert gpu_slots.split(3, None, None, slots) == (3, 1)  # at most one per job
    assert gpu_slots.split(8, 2, None, slots) == (2, 1)  # n_jobs caps them


@pytest.mark.parametrize(
    ("devices", "visible", "expected"),
    [
        (["cpu"], list(TWO), None),  # auto and a CPU sweep: not placed
        (["auto"], [], None),  # auto with no GPU: the CPU
        (["auto"], list(TWO), ("0", "1")),  # auto with GPUs: CUDA, on all of them
        (["cuda", "cpu"], list(TWO), ("0", "1")),  # any CUDA job places the sweep
        (["cuda"], [TWO[1]], ("1",)),  # the one CUDA_VISIBLE_DEVICES left, by its number
    ],
    ids=["cpu", "auto-no-gpu", "auto-gpus", "cuda-and-cpu", "visible-subset"],
)
def test_auto_places_a_sweep_whose_jobs_train_on_cuda(
    devices: list[str], visible: list[Gpu], expected: tuple[str, ...] | None
) -> None:
    slots = gpu_slots.plan("auto", 1, devices, cores=16, visible=visible)
    assert (slots.devices if slots else None) == expected


def test_jobs_per_gpu_auto_shares_the_cores_out_over_the_gpus() -> None:
    assert gpu_slots.plan("auto", "auto", ["cuda"], cores=16, visible=list(TWO)).per_gpu == 8
    assert gpu_slots.plan("auto", "auto", ["cuda"], cores=64, visible=list(TWO)).per_gpu == 8
    assert gpu_slots.plan("auto", "auto", ["cuda"], 16, 4, list(TWO)).per_gpu == 2
    assert gpu_slots.plan("auto", "auto", ["cuda"], cores=1, visible=list(TWO)).per_gpu == 1


@pytest.mark.parametrize(
    ("gpus_value", "per_gpu", "devices", "line"),
    [
        (
            [0, 5],
            1,
            ["cuda"],
            "hydra.launcher.gpus=[0,5]: no GPU 5 here; visible: 0 (NVIDIA H100 80GB HBM3), 1 (",
        ),
        ("0,x", 1, ["cpu"], "hydra.launcher.gpus=0,x: give auto or a list of GPU numbers"),
        ([1, 1], 1, ["cpu"], "hydra.launcher.gpus=[1,1]: each GPU once; use jobs_per_gpu"),
        ("auto", 0, ["cpu"], "hydra.launcher.jobs_per_gpu=0: must be an integer >= 1, or auto"),
        ("auto", 1, ["cuda:1"], "device=cuda:1: each worker sees only the GPU it is placed on"),
    ],
    ids=["no-such-gpu", "not-a-number", "twice", "zero-per-gpu", "numbered-device"],
)
def test_placement_mistakes_are_one_line(
    gpus_value: object, per_gpu: object, devices: list[str], line: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        gpu_slots.plan(gpus_value, per_gpu, devices, cores=8, visible=list(TWO))
    assert str(caught.value).startswith(line) and "\n" not in str(caught.value)


# ---- the pool's workers, pinned --------------------------------------------------------------


def _where(seconds: float, folder: str, name: str) -> tuple[int, str]:
    """Note this job's worker and its CUDA_VISIBLE_DEVICES, then work for a while."""
    found = (os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    Path(folder, name).write_text(json.dumps(found))
    time.sleep(seconds)
    return found


def _kill_when_started(path: Path, said: dict[str, object]) -> None:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    pid, device = json.loads(path.read_text())
    said["killed"] = (pid, device)
    os.kill(pid, signal.SIGKILL)


def test_workers_are_pinned_slot_by_slot_and_a_killed_one_comes_back_on_its_gpu(
    tmp_path: Path,
) -> None:
    slots = gpu_slots.plan([0, 1], 2, ["cpu"], cores=2, visible=[])
    assert slots is not None
    pool = Pool(_where, 4, retries=1, slot_envs=slots.envs())
    try:
        # Eight jobs on four slots: each worker keeps its GPU from job to job.
        first = pool.run([(0.2, str(tmp_path), f"a{i}") for i in range(8)])
        assert {kind for kind, _ in first} == {"ok"}
        by_pid = {pid: device for _, (pid, device) in first}
        assert len(by_pid) == 4 and Counter(by_pid.values()) == {"0": 2, "1": 2}
        assert sorted(Counter(pid for _, (pid, _) in first).values()) == [2, 2, 2, 2]  # reused

        # A worker on GPU 1 killed mid-job: the job runs again, and a new worker takes its slot.
        said: dict[str, object] = {}
        killer = threading.Thread(target=_kill_when_started, args=(tmp_path / "b1", said))
        killer.start()
        second = pool.run([(1.0 if i == 1 else 0.05, str(tmp_path), f"b{i}") for i in range(4)])
        killer.join()
        killed_pid, killed_on = said["killed"]  # type: ignore[misc]
        assert killed_on == "1" and [kind for kind, _ in second] == ["ok"] * 4

        # Four slow jobs: one on each worker now alive.
        third = pool.run([(0.5, str(tmp_path), f"c{i}") for i in range(4)])
        now = {pid: device for _, (pid, device) in third}
        assert len(now) == 4 and Counter(now.values()) == {"0": 2, "1": 2}
        assert killed_pid not in now
        (new,) = set(now) - set(by_pid)
        assert now[new] == "1"  # the replacement is on the killed worker's GPU
    finally:
        pool.close()


# ---- a real sweep, placed --------------------------------------------------------------------

TINY = ["data=synthetic", "data.n_train=200", "data.n_test=100", "trainer.epochs=1"]
TINY += ["trainer.batch_size=50", "device=cpu"]


def records(sweep: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]


def test_a_sweep_on_two_gpus_by_two_records_each_job_s_gpu(tmp_path: Path) -> None:
    """Eight jobs on four pinned workers; the command itself still imports no torch."""
    sweep = tmp_path / "s"
    done = run_python(
        "-c", _SAYS_IF_TORCH, "-m", "seed=range(8)", *TINY, "hydra.launcher.gpus=[0,1]",
        "hydra.launcher.jobs_per_gpu=2", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 4 worker processes on 2 GPUs (0, 1) x 2" in done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "torch imported here: False"
    found = records(sweep)
    assert len(found) == 8 and {r["status"] for r in found} == {"ok"}
    assert all("cuda_visible_devices" in r for r in found), "the record lacks the job's GPU"
    by_pid: dict[object, set[object]] = {}
    for r in found:
        by_pid.setdefault(r["pid"], set()).add(r["cuda_visible_devices"])
    assert all(len(devices) == 1 for devices in by_pid.values())  # a worker keeps its GPU
    workers = Counter(next(iter(devices)) for devices in by_pid.values())
    assert workers == {"0": 2, "1": 2}  # four slots, two on each GPU
    assert all(r["gpu_index"] is None and r["device"] == "cpu" for r in found)


def test_the_fused_launcher_stacks_per_gpu(tmp_path: Path) -> None:
    sweep = tmp_path / "f"
    done = run_python(
        "-m", "mlp_sweep", "-m", "optim.lr=0.1,0.2,0.3,0.4", *TINY, "hydra/launcher=fused",
        "hydra.launcher.fuse=always", "hydra.launcher.gpus=[0,1]", f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 fused in 2 stacks" in done.stdout + done.stderr
    stacks: dict[object, set[object]] = {}
    for r in records(sweep):
        assert r["fused"] is not None
        stacks.setdefault(r["pid"], set()).add(r["cuda_visible_devices"])
    assert sorted(tuple(devices) for devices in stacks.values()) == [("0",), ("1",)]


def test_an_optuna_searchs_trials_are_placed_the_same_way(tmp_path: Path) -> None:
    """The search launches its trials through the parallel launcher: each on a pinned worker,
    the two GPUs both used."""
    pytest.importorskip("optuna", reason="needs the search extra: pip install '.[search]'")
    sweep = tmp_path / "o"
    done = run_python(
        "-m", "mlp_sweep", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner=none", *TINY,
        "hydra.launcher.gpus=[0,1]", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = records(sweep)
    assert len(found) == 4 and {r["status"] for r in found} == {"ok"}
    by_pid: dict[object, set[object]] = {}
    for r in found:
        by_pid.setdefault(r["pid"], set()).add(r["cuda_visible_devices"])
    assert all(len(devices) == 1 for devices in by_pid.values())  # a worker keeps its GPU
    assert {next(iter(d)) for d in by_pid.values()} == {"0", "1"}


# ---- refusals before any job -----------------------------------------------------------------


def test_device_cuda_with_no_gpu_is_one_line(run_main, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpus, "machine_gpus", lambda: ())
    with pytest.raises(DeviceError, match=r"^device=cuda: CUDA is not available"):
        check_device("cuda")
    done = run_main("-m", "seed=0,1", *TINY[:-1], "device=cuda")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("mlp_sweep: error: device=cuda: ")
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_gpu_that_is_not_there_is_refused_before_any_job(
    run_main, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(gpus, "machine_gpus", lambda: TWO)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert check_device("cuda:1") == "cuda:1"  # found through nvidia-smi's list, no torch
    with pytest.raises(DeviceError, match=r"^device=cuda:2: no such GPU; available here: "):
        check_device("cuda:2")
    done = run_main(
        "-m", "seed=0,1", *TINY[:-1], "device=cuda", "hydra.launcher.gpus=[1,3]",
        f"hydra.sweep.dir={tmp_path / 's'}",
    )  # fmt: skip
    assert done.returncode == 2
    line = done.stderr.strip()
    assert line.startswith("mlp_sweep: error: hydra.launcher.gpus=[1,3]: no GPU 3 here; visible:")
    assert "\n" not in line and not (tmp_path / "s").exists()


def test_jobs_per_gpu_past_the_gpu_s_memory_is_refused_with_what_fits(
    run_main, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(gpus, "machine_gpus", lambda: small_gpus(1.8))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    # 60,000 synthetic samples: ~190 MB a run on the GPU, plus ~0.5 GB for each CUDA context.
    big = ["data=synthetic", "data.n_train=60000", "device=cuda"]
    done = run_main(
        "-m", "seed=range(8)", *big, "hydra.launcher.jobs_per_gpu=4",
        f"hydra.sweep.dir={tmp_path / 's'}",
    )  # fmt: skip
    assert done.returncode == 2
    line = done.stderr.strip()
    assert line.startswith("mlp_sweep: error: hydra.launcher.jobs_per_gpu=4: 4 workers on one GPU")
    assert line.endswith("more than GPU 0 (Small GPU)'s 1.9 GB; choose jobs_per_gpu=2 or fewer")
    cfg = Config(data=DataConfig(name=Dataset.synthetic, n_train=60000), device="cuda")
    for per_gpu in (2, 3):
        check = MemoryCheck(Launcher(pool=True, jobs_per_gpu=per_gpu))
        for seed in range(8):
            check.add(cfg, [f"seed={seed}"])
        if per_gpu == 2:
            check.check()  # two fit: 1.4 GB with their CUDA contexts
    with pytest.raises(LimitError, match=r"choose jobs_per_gpu=2 or fewer$"):
        check.check()


# ---- the record and the benchmark ------------------------------------------------------------


def test_the_record_s_gpu_fields_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpu_identity("cpu") == {
        "cuda_visible_devices": "1",
        "gpu_index": None,
        "gpu_name": None,
        "gpu_uuid": None,
    }
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_identity("cpu")["cuda_visible_devices"] is None


def test_bench_gpu_without_a_gpu_says_so_in_one_line_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: tests/test_gpu.py runs the benchmark")
    assert bench.main(["gpu"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("mlp_sweep.bench gpu: no CUDA GPU on this machine")


# ---- SLURM: what a GPU job asks for ----------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "device", "gpus_per_node", "sbatch"),
    [
        ({}, "cuda", 1, "--gpus-per-node=1"),  # a whole GPU a job
        ({"gres": "shard:1"}, "cuda", 0, "--gres=shard:1"),  # jobs sharing a GPU's shards
        ({"gpus_per_task": 1}, "cuda", 0, "--gpus-per-task=1"),
        ({}, "cpu", 0, None),
    ],
    ids=["whole-gpu", "shard", "per-task", "cpu"],
)
def test_a_slurm_gpu_job_asks_for_its_gpu_once(
    given: dict[str, object], device: str, gpus_per_node: int, sbatch: str | None
) -> None:
    from mlp_sweep.launch.slurm_resources import slurm_resources

    params = {"cpus_per_task": None, "gpus_per_node": None, "mem_gb": 4, **given}
    filled = slurm_resources(params, None, device)
    assert filled["gpus_per_node"] == gpus_per_node and filled["cpus_per_task"] == 1
    submitit = pytest.importorskip("submitit.slurm.slurm", reason="the cluster extra")
    keys = {k: v for k, v in filled.items() if v and k != "mem_gb"}
    lines = submitit._make_sbatch_string(command="x", folder="/tmp/%j", mem="4GB", **keys)
    gpu_lines = [
        line for line in lines.splitlines() if line.startswith("#SBATCH") and "gpu" in line
    ] + [line for line in lines.splitlines() if line.startswith("#SBATCH --gres")]
    assert gpu_lines == ([f"#SBATCH {sbatch}"] if sbatch else [])
