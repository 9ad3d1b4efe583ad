"""The search's side of a run: its Optuna study, opened by the sweeper in the command and by
each trial in its worker or SLURM job (hydra_plugins/mlp_sweep_optuna drives the search)."""
