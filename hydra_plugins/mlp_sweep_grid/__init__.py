"""Hydra sweeper `hydra/sweeper=grid` (mlp_sweep's default): Hydra's basic sweeper, with each
job's config composed once per structure (mlp_sweep.launch.compose) rather than from scratch."""
