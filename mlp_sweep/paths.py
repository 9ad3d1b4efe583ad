"""Where the shipped files are: conf/ and the MNIST copy, in a checkout or in an installed wheel.

conf/ and data/ stay at the top of the repository, where users of Hydra projects look for them.
The wheel carries them as package data: pyproject.toml's package-dir maps them to the packages
mlp_sweep.conf and mlp_sweep.mnist, so they unpack beside this module. A mapping rather than
Hydra's `pkg://` search path because both @hydra.main's config_path and the MNIST reader (and
`--resume`'s check of config groups) need a real folder, and the mapping gives one in both
installs: inside the package for a wheel, the checkout's own folders for an editable install.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _shipped(installed: str, checkout: str) -> Path:
    inside = _PACKAGE / installed  # a wheel's copy
    return inside if inside.is_dir() else _PACKAGE.parent / checkout


# The primary config folder (config.yaml and its groups).
CONF_DIR = _shipped("conf", "conf")
# The shipped MNIST: a torchvision-style root holding MNIST/raw/*.gz.
MNIST_ROOT = _shipped("mnist", "data")
