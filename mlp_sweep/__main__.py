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

        command()
    except KeyboardInterrupt:
        # Ctrl-C while the command still starts (its imports, the check of every job): no
        # run has begun, so there is nothing to record; the command says so in one line.
        print("mlp_sweep: interrupted (SIGINT); nothing had started", file=sys.stderr)
        sys.exit(INTERRUPTED)


# Guarded: the parallel launcher's workers may import this module as __mp_main__.
if __name__ == "__main__":
    main()
