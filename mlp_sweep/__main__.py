"""`python -m mlp_sweep` and the `mlp-sweep` script.

A sweep's workers are started before anything imports torch, so that their imports overlap the
command's own (mlp_sweep.cli.early_workers); then the command runs (mlp_sweep.cli.main).
"""

import sys


def main() -> None:
    from mlp_sweep.cli.early_workers import start_workers

    start_workers(sys.argv[1:])
    from mlp_sweep.cli.main import main as command

    command()


# Guarded: the parallel launcher's spawned workers may import this module as __mp_main__.
if __name__ == "__main__":
    main()
