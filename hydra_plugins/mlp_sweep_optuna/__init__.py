"""Hydra sweeper `hydra/sweeper=mlp_sweep_optuna`: an Optuna study run through Hydra's launcher.

Ours rather than hydra-optuna-sweeper 1.3.0, which pins optuna<3 and breaks with SQLAlchemy 2.
Hydra imports every module under `hydra_plugins` at start-up, so none of them imports optuna at
module level: `--help` stays fast and an install without the `search` extra still works.
"""
