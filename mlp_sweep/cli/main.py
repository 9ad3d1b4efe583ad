"""`python -m mlp_sweep` / `mlp-sweep`: check every job's config, then let Hydra run them.

The check composes each job of a sweep up front, so a bad value anywhere fails before any
training with one line naming the key, the value and the valid choices.

`python -m mlp_sweep --resume DIR` re-runs the sweep saved in DIR (its multirun.yaml) into
DIR: finished runs are skipped, the rest run or continue from their checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mlp_sweep.cli.checks import check_flags, check_keys, error_line, value_choices
from mlp_sweep.cli.preflight import KNOWN, preflight
from mlp_sweep.cli.resume import resume_argv
from mlp_sweep.config import register_configs, to_config
from mlp_sweep.errors import ConfigMismatch, MlpSweepError
from mlp_sweep.hydra_compat import known_mode, parse_args
from mlp_sweep.labels import SUMMARY_FILE, command, hydra_value, resume_command
from mlp_sweep.launch.task import job_info, records_runs
from mlp_sweep.paths import CONF_DIR
from mlp_sweep.results import sweep_callback as callbacks
from mlp_sweep.run.interrupt import (
    exit_code,
    holding_a_signal,
    ignore_signals,
    release_signals,
    signal_name,
    signals_raise,
)
from mlp_sweep.status import FINISHED, Status
from mlp_sweep.training import files


# An absolute path: Hydra would read "../conf" as a Python package when started as a console
# script. conf/ sits beside the package in the checkout (an editable install keeps it there).
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
@records_runs
def hydra_main(cfg: DictConfig) -> float | None:
    """One job. Returns its best test accuracy: what a search (hydra/sweeper=...) maximizes."""
    # Here, not at the top: torch comes with it, and the command's own process needs none
    # where its jobs run in workers (they import it while the command checks the jobs).
    from mlp_sweep.run.runner import run

    hc = HydraConfig.get()
    job = job_info(cast(DictConfig, hc), int(cfg.trainer.epochs), hc.mode == RunMode.MULTIRUN)
    run_dir = Path(hc.runtime.output_dir)
    if hc.mode == RunMode.RUN:
        callbacks.ACTIVE.run_dir = run_dir
    try:
        check_keys(cfg)  # preflight did for a basic sweep; not for another sweeper's trials
    except MlpSweepError as err:
        if hc.mode == RunMode.RUN:
            raise SystemExit(f"mlp_sweep: error: {err}") from None
        raise
    # With hydra.job.chdir=true the job runs in its folder: a relative data.root still means
    # the folder the command was started from, as preflight read it.
    files.ORIGIN = Path(hydra.utils.get_original_cwd())
    try:
        record = run(to_config(cfg), run_dir, job)
    except ConfigMismatch as err:  # preflight catches this first; a custom subdir may not
        raise SystemExit(f"mlp_sweep: error: {err}") from None
    if hc.mode == RunMode.RUN:
        if record["status"] == Status.RUNNING_ELSEWHERE:
            raise SystemExit(f"mlp_sweep: {record['error']}")
        print(
            f"{record['status']}: test_acc {record['test_acc']}, test_loss {record['test_loss']}, "
            f"{record['epochs_done']} epochs in {record['train_seconds']:.1f}s on "
            f"{record['device']}; record: {hc.runtime.output_dir}",
            flush=True,
        )
        if record["status"] == Status.FAILED:
            raise SystemExit(f"mlp_sweep: run failed: {record['error']}")
        if record["status"] == Status.TIMEOUT:
            where = f"hydra.run.dir={hydra_value(str(hc.runtime.output_dir))}"
            raise SystemExit(
                f"mlp_sweep: run {record['error']}; continue it with: "
                f"{command(*job.overrides, where)}"
            )
    # What a search maximizes: only a finished run's (a run failed or stopped at its time
    # limit partway has no value to compare; the search records the trial as failed).
    acc: Any = record.get("best_test_acc") if record.get("status") in FINISHED else None
    return acc


def main() -> None:
    argv, planned = sys.argv[1:], 0
    # A Ctrl-C while the command starts (mostly OmegaConf building configs, which a
    # KeyboardInterrupt raised partway leaves broken) is held to the first safe moment: the end
    # of the checks below, or the sweep's start, where the summary callback releases it.
    with signals_raise(held=True):
        try:
            register_configs()
            argv, planned = _checked_start()
            if holding_a_signal():
                release_signals()
            sys.argv = [sys.argv[0], *argv]
            with known_mode(KNOWN.mode) if KNOWN.composed else contextlib.nullcontext():
                hydra_main()
            ignore_signals()  # done: a stop held back in the last import has nothing to stop
        except (MlpSweepError, ValueError, OSError) as err:  # Hydra's own, outside its report
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"mlp_sweep: error: {error_line(err)}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as err:
            ignore_signals()
            print(
                f"mlp_sweep: interrupted ({signal_name(err)}); {_after_interrupt(argv, planned)}",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(exit_code(err))


def _checked_start() -> tuple[list[str], int]:
    """The command line, checked with every job of it (exit 2 and one line where one is bad);
    returns it and the number of runs it plans."""
    try:
        argv = resume_argv(sys.argv[1:])
        args = parse_args(argv)
        check_flags(args)
        if args.shell_completion and "query=bash" in args.overrides:
            _complete_values()  # exits where it knows the answer better than Hydra
        prior = preflight(argv)
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if not isinstance(err, MlpSweepError) and not _is_hydra_error(err):
            raise
        print(f"mlp_sweep: error: {error_line(err)}", file=sys.stderr)
        sys.exit(2)
    callbacks.ACTIVE.planned = len(prior)
    finished = sum(status in FINISHED for status in prior)
    if finished:
        print(
            f"mlp_sweep: resuming: {finished} of {len(prior)} runs already finished there and "
            f"are skipped; {len(prior) - finished} to run",
            flush=True,
        )
    return argv, len(prior)


def _complete_values() -> None:
    """Tab completion of an Enum or bool key's values, which Hydra's own completion lacks."""
    line = os.environ.get("COMP_LINE", "")
    point = int(os.environ.get("COMP_POINT", len(line)))
    words = line[:point].split(" ")
    choices = value_choices(words[-1]) if len(words) > 1 else None
    if choices is not None:
        print(" ".join(choices))
        sys.exit(0)


def _after_interrupt(argv: list[str], planned: int) -> str:
    """What was kept and how to go on, after the summary of what is on disk is written."""
    sweep_dir, run_dir = callbacks.ACTIVE.sweep_dir, callbacks.ACTIVE.run_dir
    if sweep_dir is not None:
        frame = callbacks.summarize_interrupted(sweep_dir)
        done = 0 if frame is None else int(frame["status"].isin(FINISHED).sum())
        total = max(planned, 0 if frame is None else len(frame))
        return (
            f"{done} of {total or '?'} runs finished; summary: {sweep_dir / SUMMARY_FILE}; "
            f"resume with: {resume_command(sweep_dir)}"
        )
    if run_dir is not None:
        again = [a for a in argv if not a.startswith("hydra.run.dir=")]
        where = f"hydra.run.dir={hydra_value(str(run_dir))}"
        return f"the run's record: {run_dir}; resume with: {command(*again, where)}"
    return "nothing had started"


def _is_hydra_error(err: BaseException) -> bool:
    """Raised by Hydra or OmegaConf (their own types, or a bare one from inside their code)."""
    if type(err).__module__.split(".")[0] in ("hydra", "omegaconf"):
        return True
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return any(f"{os.sep}{pkg}{os.sep}" in where for pkg in ("hydra", "omegaconf"))


if __name__ == "__main__":
    main()
