"""What a sweep leaves for people: summary.csv (summary.py), the plots (plots.py), both written
together (publish.py), the console while it runs (progress.py, console_filter.py) and the Hydra
callback that drives them (sweep_callback.py). Reads records; never trains."""
