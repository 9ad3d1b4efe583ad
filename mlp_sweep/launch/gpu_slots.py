"""Which GPU each of the pool's workers gets: `hydra.launcher.gpus` x `jobs_per_gpu` slots.

A slot is one worker pinned to one GPU by CUDA_VISIBLE_DEVICES, set in the worker before it
initialises CUDA (the fork server it comes from never does). Jobs go to whichever worker frees
first; a worker that dies is replaced in its slot, on the same GPU. Slots take the GPUs in
turn (0, 1, 0, 1 for two GPUs x 2), so a sweep with fewer jobs than slots still spreads over
every GPU.

Placement is on when `gpus` is given, or when it is `auto` and the sweep's jobs train on CUDA
(`device=cuda`, `cuda:N`, or `auto` where a GPU is visible). With `device=cpu` and a `gpus`
list the workers are pinned all the same and train on the CPU: that is how the placement is
tested on a machine without a GPU. No torch here: this runs in the command's process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from omegaconf import ListConfig

from mlp_sweep.errors import ConfigError
from mlp_sweep.training import gpus as found_gpus
from mlp_sweep.training import threads as cpu_threads
from mlp_sweep.training.gpus import Gpu

AUTO = "auto"
# jobs_per_gpu=auto: as many workers per GPU as the cores allow, at most this many (an MLP of
# this size leaves a GPU mostly idle; past ~8 processes per GPU their CUDA contexts and the
# GPU's time-slicing cost more than they give).
AUTO_MOST = 8
# What each worker's CUDA context takes on its GPU besides its tensors (the driver, cuBLAS's
# workspace, the caching allocator's first blocks): ~0.3-0.5 GB on recent GPUs.
CONTEXT_BYTES = 500 * 2**20
GPUS_KEY = "hydra.launcher.gpus"
PER_GPU_KEY = "hydra.launcher.jobs_per_gpu"


@dataclass(frozen=True)
class Slots:
    """Each worker slot's CUDA_VISIBLE_DEVICES, in the order workers start."""

    devices: tuple[str, ...]
    per_gpu: int

    def envs(self) -> list[dict[str, str]]:
        # PCI_BUS_ID: a number in CUDA_VISIBLE_DEVICES then means nvidia-smi's GPU of that
        # number (CUDA's own default order puts the fastest first).
        return [
            {found_gpus.ENV: device, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"} for device in self.devices
        ]

    def describe(self) -> str:
        gpus = list(dict.fromkeys(self.devices))
        return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(gpus)}) x {self.per_gpu}"


def parse_gpus(value: object) -> list[int] | None:
    """`hydra.launcher.gpus`: None for auto, else the GPU numbers (as this process numbers its
    visible GPUs, cuda:N's N). ConfigError in one line for anything else."""
    if value is None or value == AUTO:
        return None
    items: list[object]
    if isinstance(value, ListConfig | list | tuple):
        items = list(value)
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    else:
        items = [value]
    numbers = []
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or not text.isdigit():
            raise ConfigError(
                GPUS_KEY, _shown(value), "give auto or a list of GPU numbers, e.g. [0,1]"
            )
        numbers.append(int(text))
    if not numbers:
        raise ConfigError(GPUS_KEY, _shown(value), "give auto or a list of GPU numbers, e.g. [0,1]")
    if len(set(numbers)) != len(numbers):
        raise ConfigError(GPUS_KEY, _shown(value), "each GPU once; use jobs_per_gpu to share one")
    return numbers


def parse_per_gpu(value: object) -> int | None:
    """`hydra.launcher.jobs_per_gpu`: None for auto, else a count >= 1."""
    if value == AUTO:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(PER_GPU_KEY, value, "must be an integer >= 1, or auto")


def _shown(value: object) -> str:
    if isinstance(value, ListConfig | list | tuple):
        return f"[{','.join(str(v) for v in value)}]"
    return str(value)


def uses_cuda(devices: Iterable[str], visible: list[Gpu]) -> bool:
    """Whether jobs with these `device` values train on CUDA here."""
    for device in devices:
        spec = str(device).strip().lower()
        if spec.startswith("cuda") or (spec == "auto" and visible):
            return True
    return False


def auto_per_gpu(n_gpus: int, cores: int, threads: int | None) -> int:
    """jobs_per_gpu=auto: the cores shared over the GPUs, at threads per job (auto: 1)."""
    return max(1, min(AUTO_MOST, cores // max(1, n_gpus * (threads or 1))))


def plan(
    gpus: object,
    jobs_per_gpu: object,
    devices: Iterable[str],
    cores: int,
    threads: int | None = None,
    visible: list[Gpu] | None = None,
) -> Slots | None:
    """The sweep's slots, or None where its workers are not placed (no `gpus` given and no
    job on CUDA). Raises ConfigError, one line, for a GPU number that is not there when the
    jobs train on CUDA, and for a job that names a GPU by number (cuda:1) while placed."""
    asked, per_gpu = parse_gpus(gpus), parse_per_gpu(jobs_per_gpu)
    devices = list(devices)
    visible = found_gpus.visible() if visible is None else visible
    cuda = uses_cuda(devices, visible)
    if asked is None and not cuda:
        return None
    if cuda:
        numbered = [d for d in devices if str(d).strip().lower().startswith("cuda:")]
        other = [d for d in numbered if str(d).strip().lower() != "cuda:0"]
        if other:  # a placed worker sees its one GPU, as cuda:0
            n = str(other[0]).strip().lower().removeprefix("cuda:")
            raise ConfigError(
                "device",
                other[0],
                f"each worker sees only the GPU it is placed on; use device=cuda {GPUS_KEY}=[{n}]",
            )
        if not visible:
            if asked is None:  # none found without CUDA: the runs ask torch, unplaced
                return None
            raise ConfigError(
                GPUS_KEY, _shown(asked), "no GPU found here (nvidia-smi, /proc/driver/nvidia)"
            )
        if asked is None:
            asked = list(range(len(visible)))
        missing = [n for n in asked if n >= len(visible)]
        if missing:
            here = ", ".join(f"{i} ({g.name or g.entry})" for i, g in enumerate(visible))
            raise ConfigError(GPUS_KEY, _shown(asked), f"no GPU {missing[0]} here; visible: {here}")
        names = [visible[n].entry for n in asked]
    else:  # pinned all the same, for a CPU sweep that asked (see the module's docstring)
        assert asked is not None  # not placed otherwise: returned above
        names = [str(n) for n in asked]
    if per_gpu is None:
        per_gpu = auto_per_gpu(len(names), cores, threads)
    return Slots(tuple(name for _ in range(per_gpu) for name in names), per_gpu)


def split(
    jobs: int, n_jobs: int | None, wanted: int | None, slots: Slots | None
) -> tuple[int, int]:
    """(workers, torch threads each) for `jobs` payloads: as many as the cores allow
    (threads.split) or, placed, one worker per slot (at most one per payload, and n_jobs where
    given), the cores shared out among them as threads.split shares them."""
    if slots is None:
        return cpu_threads.split(jobs, n_jobs, wanted)
    workers = max(1, min(jobs, len(slots.devices), n_jobs or len(slots.devices)))
    return workers, wanted or max(1, cpu_threads.cores() // workers)
