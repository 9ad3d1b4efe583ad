"""`python -m mlp_sweep` / `mlp-sweep`: check every job's config, then let Hydra run them.

The check composes each job of a sweep up front, so a bad value anywhere fails before any
training with one line naming the key, the value and the valid choices.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mlp_sweep.config import register_configs
from mlp_sweep.errors import MlpSweepError
from mlp_sweep.preflight import CONF_DIR, error_line, preflight, to_config
from mlp_sweep.runner import JobInfo, run


# An absolute path: Hydra would read "../conf" as a Python package when started as a console
# script. conf/ sits beside the package in the checkout (an editable install keeps it there).
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    job = JobInfo(
        num=OmegaConf.select(cast(DictConfig, hc), "job.num", default=None),  # unset in a run
        overrides=list(hc.overrides.task),
    )
    record = run(to_config(cfg), Path(hc.runtime.output_dir), job)
    if hc.mode == RunMode.RUN:
        print(
            f"{record['status']}: test_acc {record['test_acc']}, test_loss {record['test_loss']}, "
            f"{record['epochs_done']} epochs in {record['train_seconds']:.1f}s on "
            f"{record['device']}; record: {hc.runtime.output_dir}",
            flush=True,
        )
        if record["status"] == "failed":
            raise SystemExit(f"mlp_sweep: run failed: {record['error']}")
    acc: Any = record["test_acc"]
    return acc


def main() -> None:
    register_configs()
    try:
        preflight(sys.argv[1:])
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if not isinstance(err, MlpSweepError) and not _is_hydra_error(err):
            raise
        print(f"mlp_sweep: error: {error_line(err)}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


def _is_hydra_error(err: BaseException) -> bool:
    return type(err).__module__.split(".")[0] in ("hydra", "omegaconf")


if __name__ == "__main__":
    main()
