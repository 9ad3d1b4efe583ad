"""What a sweep leaves for people: summary.csv (summary.py), the plots (plots.py), both written
together (publish.py), the console while it runs (progress.py, console_filter.py) and the Hydra
callback that drives them (sweep_callback.py); runs of many sweeps as one frame (collect.py:
mlp_sweep.load / history), their paired comparisons (compare.py: mlp_sweep.compare / table)
and Student-t intervals (stats.py). Reads records through mlp_sweep.run.reader; never trains."""
