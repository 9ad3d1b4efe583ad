"""The command: `python -m mlp_sweep` checks every job's config, then hands the jobs to Hydra.

main.py is the entry point; checks.py turns Hydra's flags and keys into one-line errors;
preflight.py composes and checks every job before any trains; limits.py refuses a sweep past
its job limit or its runs' memory; resume.py reads `--resume DIR` and replay.py says which of
its saved overrides are replayed; api.py is mlp_sweep.sweep from Python.
"""
