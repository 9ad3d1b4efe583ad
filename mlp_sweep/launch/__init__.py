"""What mlp_sweep's Hydra launchers (hydra_plugins/mlp_sweep_launchers) run on: a pool of
worker processes that stops cleanly on Ctrl-C (pool.py) and its fork server started at the top
of the command (warm_pool.py), the Hydra job a worker or a SLURM job runs, with the run folder
locked before Hydra writes anything into it (jobs.py), which jobs the fused launcher stacks
(fuse_groups.py) and trains as one (stacked_group.py), and what a SLURM job asks for
(slurm_resources.py)."""
