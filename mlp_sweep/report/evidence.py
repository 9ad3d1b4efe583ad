"""What a trained model does with its logits: read from a run's own checkpoint and config.

The tutorial applies its activation to the logits too. With ReLU there, every negative class
score becomes exactly 0 and passes no gradient back: a sample whose scores are all <= 0 is
predicted as the first class (a tie at 0), and a class whose score is negative for a sample
cannot be pushed up by that sample. These counts show how often that happens on the test set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from mlp_sweep.config import Config, DataConfig
from mlp_sweep.run.record import CHECKPOINT_FILE, load_checkpoint
from mlp_sweep.training.data import Data, load_data
from mlp_sweep.training.model import build_mlp

CPU = torch.device("cpu")


def run_config(run_dir: Path) -> Config:
    """The run's own resolved config (.hydra/config.yaml) as the typed schema."""
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), saved))
    assert isinstance(typed, Config)
    return typed


_LOADED: dict[str, Data] = {}


def _test_set(data: DataConfig) -> Data:
    """Loaded once per distinct data config (the runs of a sweep share one)."""
    key = repr(data)
    if key not in _LOADED:
        _LOADED[key] = load_data(data, CPU)
    return _LOADED[key]


def logit_counts(run_dir: Path) -> dict[str, Any]:
    """Shares of the test set: scores at 0 exactly, samples whose true class scores <= 0,
    samples whose top score is tied (argmax then picks the first of them)."""
    cfg = run_config(run_dir)
    data = _test_set(cfg.data)
    model = build_mlp(cfg.model, data.num_features, data.num_classes, CPU)
    model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_FILE)["model"])
    with torch.no_grad():
        scores = model(data.x_test)
    top2 = scores.topk(2, dim=1).values
    true_score = scores.gather(1, data.y_test[:, None]).squeeze(1)
    return {
        "zero_scores": float((scores == 0).float().mean()),
        "true_class_nonpositive": float((true_score <= 0).float().mean()),
        "tied_top": float((top2[:, 0] == top2[:, 1]).float().mean()),
        "accuracy": float((scores.argmax(1) == data.y_test).float().mean()),
    }
