"""`python -m mlp_sweep` and the `mlp-sweep` script.

A sweep's fork server (which imports torch once for all its workers) is started before anything
else, so that its imports overlap the command's own (mlp_sweep.launch.warm_pool); then the
command runs (mlp_sweep.cli.main).
"""

import sys

# The exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def main() -> None:
    try:
        from mlp_sweep.run.interrupt import stacks_on_sigusr1

        stacks_on_sigusr1()
        from mlp_sweep.cli.resume import resume_argv
        from mlp_sweep.launch.warm_pool import start_workers

        start_workers(sys.argv[1:], replay=resume_argv)
        from mlp_sweep.cli.main import main as command

        try:
            command()
        except SystemExit as done:
            _exit_past_given_up_loggers(done.code)
            raise
        _exit_past_given_up_loggers(0)
    except KeyboardInterrupt:
        # Ctrl-C while the command still starts (its imports, the check of every job): no
        # run has begun, so there is nothing to record; the command says so in one line.
        print("mlp_sweep: interrupted (SIGINT); nothing had started", file=sys.stderr)
        sys.exit(INTERRUPTED)


def _exit_past_given_up_loggers(code: object) -> None:
    """Exit now, without the interpreter's finalization, where a logger given up at a run's
    end (`still sending after N s; given up`) left its daemon thread alive: finalization stops
    such a thread wherever it is, and inside torch's C++ (pickling a tensor for a forked
    logger) that aborts the whole process ("terminate called without an active exception",
    exit -6) after the run was recorded. Everything the command wrote is flushed first."""
    import threading

    stuck = [t for t in threading.enumerate() if t.name.startswith("mlp_sweep-logger-")]
    if not any(t.is_alive() for t in stuck):
        return
    import logging
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # a message: printed as SystemExit prints it
        print(code, file=sys.stderr, flush=True)
        status = 1
    os._exit(status)


# Guarded: the parallel launcher's workers may import this module as __mp_main__.
if __name__ == "__main__":
    main()
