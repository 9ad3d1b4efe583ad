"""`device=` -> torch.device, refusing names that are not devices or not on this machine.

torch is imported where a device is asked about, not at the top: the command checks every
job's device before starting any, and `cpu` or `auto` need no torch for that (the command's
own process then never imports it on the parallel launcher; its workers do, while it starts).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from mlp_sweep.errors import DeviceError
from mlp_sweep.training import gpus

if TYPE_CHECKING:
    import torch

CHOICES = "auto, cpu, cuda, cuda:N, mps"


def available() -> list[str]:
    """The device names that would work here, for error messages."""
    import torch

    names = ["auto", "cpu"]
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count:
        names += ["cuda"] + [f"cuda:{i}" for i in range(count)]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def resolve_device(spec: str) -> torch.device:
    """auto -> cuda, then mps, then cpu; anything else must exist here."""
    import torch

    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, index = _parsed(spec)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device", spec, f"CUDA is not available on this machine; {_here()}")
        if index is None:  # record which GPU "cuda" meant
            return torch.device("cuda", torch.cuda.current_device())
        if int(index) >= torch.cuda.device_count():
            raise DeviceError("device", spec, f"no such GPU; {_here()}")
    elif kind == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device", spec, f"MPS is not available on this machine; {_here()}")
    elif index is not None and int(index) != 0:
        raise DeviceError("device", spec, f"there is one cpu device; {_here()}")
    return torch.device(spec)


def check_device(spec: str) -> str:
    """The device name, normalized, if it could name a device here (DeviceError if not).

    Without torch for `auto` and `cpu`: whether CUDA or MPS is there is only asked of torch
    (imported) where the name asks for one of them.
    """
    spec = str(spec).strip().lower()
    if spec == "auto":
        return spec
    kind, index = _parsed(spec)
    if kind == "cuda":
        seen = gpus.visible()
        if seen and int(index or 0) < len(seen):
            return spec  # there, found without initialising CUDA in this process
        if seen:
            listed = ", ".join(f"cuda:{i}" for i in range(len(seen)))
            raise DeviceError(
                "device", spec, f"no such GPU; available here: auto, cpu, cuda, {listed}"
            )
        # Nothing found without CUDA (no nvidia-smi, no driver folder): torch says.
    if kind != "cpu" or (index is not None and int(index) != 0):
        resolve_device(spec)  # raises where it names no device here
    return spec


def gpu_identity(device: torch.device | str) -> dict[str, Any]:
    """Which GPU ran a run, for its record: this process's CUDA_VISIBLE_DEVICES (what the
    launcher pinned its worker to, recorded whatever the device), and on CUDA the GPU's index
    as the machine numbers it (nvidia-smi's), its name and its UUID."""
    import torch

    found: dict[str, Any] = {
        "cuda_visible_devices": os.environ.get(gpus.ENV),
        "gpu_index": None,
        "gpu_name": None,
        "gpu_uuid": None,
    }
    device = torch.device(device)
    if device.type != "cuda":
        return found
    ordinal = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(ordinal)
    uuid = str(getattr(props, "uuid", "") or "")
    uuid = uuid if not uuid or uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
    found.update(gpu_name=props.name, gpu_uuid=uuid or None)
    # The UUID says which of the machine's GPUs it is, whatever order CUDA numbered them in.
    same = [g for g in gpus.machine_gpus() if uuid and g.uuid == uuid]
    seen = gpus.visible()
    if same:
        found["gpu_index"] = same[0].index
    elif ordinal < len(seen):
        found["gpu_index"] = seen[ordinal].index
    elif found["cuda_visible_devices"] is None:
        found["gpu_index"] = ordinal
    return found


def _parsed(spec: str) -> tuple[str, str | None]:
    match = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", spec)
    if match is None:
        raise DeviceError("device", spec, f"not a device; choose one of {CHOICES}")
    return match.group(1), match.group(2)


def _here() -> str:
    return f"available here: {', '.join(available())}"
