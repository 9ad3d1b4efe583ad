"""A toy Hydra app for the optuna sweeper's tests: returns (x - 2)^2.

Each run appends its x to runs.txt in its own folder, so a test can count how often a trial
ran. KILL_AT_JOB=N makes job N kill its own process, as a power cut or `kill -9` would.
"""

import os
import signal
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    with open(Path(hc.runtime.output_dir) / "runs.txt", "a") as runs:
        runs.write(f"{cfg.x}\n")
    if os.environ.get("KILL_AT_JOB") == str(hc.job.num):
        os.kill(os.getpid(), signal.SIGKILL)
    return float((cfg.x - 2) ** 2)


if __name__ == "__main__":
    main()
