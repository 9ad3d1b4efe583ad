"""mlp_sweep: Hydra-configured sweeps of small PyTorch MLPs, gathered into one summary table."""

__version__ = "0.1.0"
