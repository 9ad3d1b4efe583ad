"""The default launcher's workers, started at the top of the command instead of at launch.

A worker's start is its imports, torch above all (~2.5 s); the command's own start is Hydra's
set-up and the check of every job (~1 s), with no torch (it trains nothing on this launcher).
Started first, the workers import while the command does all that, on the cores the command does
not use: on 2 cores one worker starts early (two made a refused command ~0.3 s slower to say so,
and a sweep no faster: measured).

How many the launcher will want is read from the command line alone (nothing is composed yet,
and torch must not be imported here): the grid's size on the command line, the cores, and
`hydra.launcher.n_jobs` and `trainer.threads` where given, counted by threads.split() as the
launcher counts them. Where the line does not say, or another launcher or sweeper may run the
jobs, none are started; a sweep whose config adds more jobs starts the rest at launch. Workers
started here that the launcher does not take are killed (mlp_sweep.launch.pool.discard_warm).
"""

from __future__ import annotations

from mlp_sweep.launch import pool
from mlp_sweep.training import threads

# What a worker imports while it waits: the task function's module and everything it runs.
PRELOAD = "mlp_sweep.cli.main"
# hydra/launcher choices whose pool may start early. Not fused: with fuse=auto it times a stack
# against runs alone in this process before launching, which workers still importing would skew.
LAUNCHERS = ("parallel",)


def start_workers(argv: list[str]) -> None:
    pool.warm_up(expected_workers(argv), PRELOAD)


def expected_workers(argv: list[str], cores: int | None = None) -> int:
    """How many of the pool's workers to start now for this command line (0: none).

    At most what the sweep will use, as far as its line tells, and one fewer than the cores.
    """
    try:
        return _expected(argv, cores or threads.cores())
    except Exception:  # a malformed line: the command itself will say what is wrong
        return 0


def _expected(argv: list[str], cores: int) -> int:
    from mlp_sweep.cli.resume import resume_argv
    from mlp_sweep.hydra_compat import parse_args

    args = parse_args(resume_argv(argv))
    flags = (args.help, args.hydra_help, args.cfg, args.info, args.shell_completion)
    others = (args.config_path, args.config_name, args.config_dir, args.experimental_rerun)
    if not args.multirun or any(flags) or any(x is not None for x in others):
        return 0
    from hydra.core.override_parser.overrides_parser import OverridesParser

    jobs, cap, per_job = 1, None, None
    for override in OverridesParser.create().parse_overrides(args.overrides):
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
            value = override.value()
            if override.is_sweep_override():
                return 0
            if isinstance(value, int) and value >= 1:
                per_job = value
            elif str(value).strip().lower() != threads.AUTO:
                return 0
        elif override.is_sweep_override():
            jobs *= len(list(override.sweep_string_iterator()))
    workers, _ = threads.split(jobs, cap, per_job, cores)
    # One core stays the command's (see the module's docstring).
    return min(workers, cores - 1)
