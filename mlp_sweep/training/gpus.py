"""The GPUs this machine has and this process may use, found without initialising CUDA.

A process that initialises CUDA cannot fork workers that use it, and CUDA_VISIBLE_DEVICES only
takes effect in a process that has not initialised it yet. So the command and the pool's fork
server never ask torch: they read `nvidia-smi` (index, name, uuid, memory), or where it is
missing the driver's /proc/driver/nvidia/gpus (no memory there), and filter that list through
CUDA_VISIBLE_DEVICES as CUDA does. No torch is imported here.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV = "CUDA_VISIBLE_DEVICES"
PROC_GPUS = Path("/proc/driver/nvidia/gpus")
QUERY = "index,name,uuid,memory.total"


@dataclass(frozen=True)
class Gpu:
    """One GPU as this process may see it."""

    entry: str  # what names it in CUDA_VISIBLE_DEVICES: the machine's index, or a UUID/MIG id
    index: int | None  # its index as the machine numbers it (nvidia-smi); None for a MIG slice
    name: str = ""
    uuid: str = ""
    memory: int | None = None  # bytes; None where nvidia-smi did not say

    def label(self) -> str:
        return f"{self.entry} ({self.name})" if self.name else self.entry


def parse_smi(text: str) -> list[Gpu]:
    """Rows of `nvidia-smi --query-gpu=index,name,uuid,memory.total --format=csv,noheader,
    nounits` (memory in MiB)."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        memory = int(parts[3]) * 2**20 if parts[3].isdigit() else None
        gpus.append(Gpu(parts[0], int(parts[0]), parts[1], parts[2], memory))
    return gpus


def _from_smi() -> list[Gpu] | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run(
            [smi, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_smi(done.stdout) if done.returncode == 0 else None


def _from_proc(root: Path = PROC_GPUS) -> list[Gpu]:
    """The driver's list: one folder per GPU named by its PCI address, in the bus order that
    nvidia-smi's indices follow."""
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    gpus = []
    for index, folder in enumerate(folders):
        fields: dict[str, str] = {}
        try:
            for line in (folder / "information").read_text().splitlines():
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        except OSError:
            pass
        gpus.append(Gpu(str(index), index, fields.get("Model", ""), fields.get("GPU UUID", "")))
    return gpus


@functools.cache
def machine_gpus() -> tuple[Gpu, ...]:
    """Every GPU of this machine, by its index (nvidia-smi's numbering), looked up once."""
    found = _from_smi()
    return tuple(found if found is not None else _from_proc())


def visible(
    env: Mapping[str, str] | None = None, machine: tuple[Gpu, ...] | None = None
) -> list[Gpu]:
    """The GPUs a process with this environment may use, in the order CUDA numbers them
    (cuda:0 first): the machine's, filtered by CUDA_VISIBLE_DEVICES. As CUDA does, the list
    stops at the first entry that names no GPU; empty or -1 hides them all. A number there is
    read as nvidia-smi's index, which is CUDA's with CUDA_DEVICE_ORDER=PCI_BUS_ID (the pool's
    workers get it) and on any machine whose GPUs are all of one model."""
    env = os.environ if env is None else env
    machine = machine_gpus() if machine is None else machine
    asked = env.get(ENV)
    if asked is None:
        return list(machine)
    seen: list[Gpu] = []
    for raw in asked.split(","):
        entry = raw.strip()
        gpu = _named(entry, machine)
        if gpu is None or gpu in seen:
            break
        seen.append(gpu)
    return seen


def _named(entry: str, machine: tuple[Gpu, ...]) -> Gpu | None:
    if entry.isdigit():
        index = int(entry)
        return next((g for g in machine if g.index == index), None)
    if entry.startswith("MIG-"):  # a MIG slice: known to the driver, not to nvidia-smi's list
        return Gpu(entry, None, uuid=entry)
    if entry.startswith("GPU-"):  # a UUID, or a unique prefix of one
        matches = [g for g in machine if g.uuid.startswith(entry)]
        if len(matches) == 1:
            return Gpu(entry, matches[0].index, matches[0].name, matches[0].uuid, matches[0].memory)
    return None
