"""What mlp_sweep's Hydra launchers (hydra_plugins/mlp_sweep_launchers) run on: a pool of
worker processes that stops cleanly on Ctrl-C, and the Hydra job a worker or a SLURM job
runs, with the run folder locked before Hydra writes anything into it."""
