"""`device=` -> torch.device, refusing names that are not devices or not on this machine."""

from __future__ import annotations

import re

import torch

from mlp_sweep.errors import DeviceError

CHOICES = "auto, cpu, cuda, cuda:N, mps"


def available() -> list[str]:
    """The device names that would work here, for error messages."""
    names = ["auto", "cpu"]
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count:
        names += ["cuda"] + [f"cuda:{i}" for i in range(count)]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def resolve_device(spec: str) -> torch.device:
    """auto -> cuda, then mps, then cpu; anything else must exist here."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    match = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", spec)
    if match is None:
        raise DeviceError("device", spec, f"not a device; choose one of {CHOICES}")
    kind, index = match.group(1), match.group(2)
    here = f"available here: {', '.join(available())}"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device", spec, f"CUDA is not available on this machine; {here}")
        if index is None:  # record which GPU "cuda" meant
            return torch.device("cuda", torch.cuda.current_device())
        if int(index) >= torch.cuda.device_count():
            raise DeviceError("device", spec, f"no such GPU; {here}")
    elif kind == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device", spec, f"MPS is not available on this machine; {here}")
    elif index is not None and int(index) != 0:
        raise DeviceError("device", spec, f"there is one cpu device; {here}")
    return torch.device(spec)
