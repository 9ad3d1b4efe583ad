"""The worker pool's fork server, started at the top of the command instead of at launch.

The pool's workers are forked from one server process that imports what a job runs, torch
above all (~3 s of CPU; mlp_sweep.launch.pool). The command's own start is Hydra's set-up and
the check of every job (~1 s), with no torch (it trains nothing on this launcher). Started
first, the server imports while the command does all that, on a core the command does not use,
and the workers are forked ready when the sweep launches.

Whether the launcher will want workers is read from the command line alone (nothing is composed
yet, and torch must not be imported here): the grid's size on the command line, the cores, and
`hydra.launcher.n_jobs` and `trainer.threads` where given, counted by threads.split() as the
launcher counts them. Where the line does not say, or another launcher or sweeper may run the
jobs, the server starts at launch instead.

The command line is read as Hydra will read it: `replay` is the command's own rewriting of it
(mlp_sweep.cli.resume.resume_argv for `--resume DIR`), given by the entry point.
"""

from __future__ import annotations

from collections.abc import Callable

from mlp_sweep.errors import ConfigError
from mlp_sweep.launch import pool
from mlp_sweep.training import threads

# What the server imports for every worker: the module that trains a run, and with it torch
# (the task function's module, mlp_sweep.cli.main, imports it only when a job runs).
PRELOAD = "mlp_sweep.run.runner"
# hydra/launcher choices whose pool may start early. Not fused: with fuse=auto it times a stack
# against runs alone in this process before launching, which workers still importing would skew.
LAUNCHERS = ("parallel",)
# The command line as the command rewrites it before Hydra reads it (see the module's docstring).
Replay = Callable[[list[str]], list[str]]


def start_workers(argv: list[str], replay: Replay | None = None) -> None:
    if expected_workers(argv, replay=replay) > 0:
        pool.warm_up(PRELOAD)


def expected_workers(
    argv: list[str], cores: int | None = None, replay: Replay | None = None
) -> int:
    """How many workers the launcher will want for this command line, as far as it says
    (0: not said, or none: the server is not started early).

    At most what the sweep will use, as far as its line tells, and one fewer than the cores.
    """
    try:
        return _expected(replay(argv) if replay else argv, cores or threads.cores())
    except Exception:  # a malformed line: the command itself will say what is wrong
        return 0


def _expected(argv: list[str], cores: int) -> int:
    from mlp_sweep.hydra_compat import grid_size, parse_args

    args = parse_args(argv)
    flags = (args.help, args.hydra_help, args.cfg, args.info, args.shell_completion)
    others = (args.config_path, args.config_name, args.config_dir, args.experimental_rerun)
    if not args.multirun or any(flags) or any(x is not None for x in others):
        return 0
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(args.overrides)
    jobs, cap, per_job = grid_size(overrides), None, None
    for override in overrides:
        key = override.get_key_element()
        if key in ("hydra/sweeper", "hparams_search"):
            return 0  # another sweeper decides its batches
        if key == "hydra/launcher":
            if override.is_sweep_override() or override.value() not in LAUNCHERS:
                return 0
        elif key == "hydra.launcher.n_jobs":
            value = override.value()
            if override.is_sweep_override() or not isinstance(value, int) or value < 1:
                return 0
            cap = value
        elif key == "trainer.threads":
            if override.is_sweep_override():
                return 0
            try:
                per_job = threads.parse(override.value())
            except ConfigError:
                return 0  # the check says what is wrong with it
    workers, _ = threads.split(jobs, cap, per_job, cores)
    # One core stays the command's (see the module's docstring).
    return min(workers, cores - 1)
