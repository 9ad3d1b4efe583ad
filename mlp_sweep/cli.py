"""`python -m mlp_sweep` / `mlp-sweep`: check every job's config, then let Hydra run them.

The check composes each job of a sweep up front, so a bad value anywhere fails before any
training with one line naming the key, the value and the valid choices.

`python -m mlp_sweep --resume DIR` re-runs the sweep saved in DIR (its multirun.yaml) into
DIR: finished runs are skipped, the rest run or continue from their checkpoints.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mlp_sweep.config import register_configs
from mlp_sweep.errors import ConfigError, ConfigMismatch, MlpSweepError
from mlp_sweep.preflight import CONF_DIR, error_line, preflight, to_config
from mlp_sweep.record import FINISHED
from mlp_sweep.runner import JobInfo, run

# Hydra options that are not overrides; the saved ones must not be replayed by --resume.
NOT_REPLAYED = ("hydra.sweep.dir=", "hydra.mode=")


# An absolute path: Hydra would read "../conf" as a Python package when started as a console
# script. conf/ sits beside the package in the checkout (an editable install keeps it there).
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    job = JobInfo(
        num=OmegaConf.select(cast(DictConfig, hc), "job.num", default=None),  # unset in a run
        overrides=list(hc.overrides.task),
    )
    try:
        record = run(to_config(cfg), Path(hc.runtime.output_dir), job)
    except ConfigMismatch as err:  # preflight catches this first; a custom subdir may not
        raise SystemExit(f"mlp_sweep: error: {err}") from None
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


def _quote(value: str) -> str:
    return value if re.fullmatch(r"[\w/.\-:~]+", value) else "'" + value.replace("'", "\\'") + "'"


def resume_argv(argv: list[str]) -> list[str]:
    """`--resume DIR [overrides...]` -> the command line that made DIR, pointed at DIR."""
    if "--resume" not in argv:
        return argv
    at = argv.index("--resume")
    if at + 1 >= len(argv):
        raise ConfigError("--resume", "", "give the sweep folder to resume")
    folder, extra = Path(argv[at + 1]), argv[:at] + argv[at + 2 :]
    saved = folder / "multirun.yaml"
    if not saved.is_file():
        raise ConfigError("--resume", folder, f"not a sweep folder (no {saved})")
    overrides = OmegaConf.load(saved).hydra.overrides
    hydra_args = [o for o in overrides.hydra if not str(o).startswith(NOT_REPLAYED)]
    extra = [a for a in extra if a not in ("-m", "--multirun")]
    return ["-m", *hydra_args, *overrides.task, f"hydra.sweep.dir={_quote(str(folder))}", *extra]


def main() -> None:
    register_configs()
    try:
        argv = resume_argv(sys.argv[1:])
        prior = preflight(argv)
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if not isinstance(err, MlpSweepError) and not _is_hydra_error(err):
            raise
        print(f"mlp_sweep: error: {error_line(err)}", file=sys.stderr)
        sys.exit(2)
    finished = sum(status in FINISHED for status in prior)
    if finished:
        print(
            f"mlp_sweep: resuming: {finished} of {len(prior)} runs already finished there and "
            f"are skipped; {len(prior) - finished} to run",
            flush=True,
        )
    sys.argv = [sys.argv[0], *argv]
    hydra_main()


def _is_hydra_error(err: BaseException) -> bool:
    return type(err).__module__.split(".")[0] in ("hydra", "omegaconf")


if __name__ == "__main__":
    main()
