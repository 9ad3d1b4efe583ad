"""`python -m mlp_sweep.bench`: measurements, each a ratio taken in one process.

training.py (the default: against the tutorial and the roofline), stacked.py (`fused`: K runs as
one stack against K alone), overhead.py (`sweep-overhead`: the cost per job beside plain
Hydra), launchers.py (a sweep's wall time per launcher), data_paths.py (DataLoader against
on-device index slices).
"""
