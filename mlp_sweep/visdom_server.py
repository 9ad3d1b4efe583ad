"""`python -m mlp_sweep.visdom_server`: visdom's server, started offline.

The code lives in mlp_sweep.loggers.visdom_server; this module keeps the documented command.
"""

from mlp_sweep.loggers.visdom_server import main

if __name__ == "__main__":
    main()
