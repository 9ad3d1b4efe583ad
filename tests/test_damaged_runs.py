"""A damaged file in a stopped run's folder costs that file, never the run.

A run interrupted after its first epoch has its checkpoint damaged (torn, garbage, another
model's shapes, an older format without its keys); running it again moves the checkpoint aside
as checkpoint.pt.unreadable, says so in one warning line that names the file and what happens,
and trains from epoch 0 to the same numbers as a run never interrupted. Never does it pass on
torch's advice to load the file with weights_only=False.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath

import pytest
import torch

from mlp_sweep.config import Config, DataConfig, Dataset, ModelConfig, TrainerConfig
from mlp_sweep.run import runner
from mlp_sweep.run.record import CHECKPOINT_FILE, save_checkpoint
from mlp_sweep.training import loop

EPOCHS = 3


def _cfg(hidden: tuple[int, ...] = (32,)) -> Config:
    return Config(
        model=ModelConfig(hidden=list(hidden)),
        data=DataConfig(name=Dataset.synthetic, n_train=300, n_test=100),
        trainer=TrainerConfig(epochs=EPOCHS, threads="1"),
    )


def _history(run_dir: Path) -> list[str]:
    """history.csv without its seconds column."""
    lines = (run_dir / "history.csv").read_text().splitlines()
    return [",".join(line.split(",")[:-1]) for line in lines]


def _interrupted_after_one_epoch(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = loop.fit

    def stop_after_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        on_epoch = args[7]

        def then_stop(history: loop.History) -> None:
            on_epoch(history)
            raise KeyboardInterrupt

        return real(*args[:7], then_stop)

    with monkeypatch.context() as patch:
        patch.setattr(runner, "fit", stop_after_first)
        with pytest.raises(KeyboardInterrupt):
            runner.run(_cfg(), run_dir)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_done"] == 1


def _torn(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage, not a checkpoint\xff" * 100)


def _pickled_object(path: Path) -> None:
    """A file that only loads with weights_only=False: torch's message would advise that."""
    torch.save({"params": "{}", "model": PurePosixPath("not/a/tensor")}, path)


def _other_shapes(path: Path) -> None:
    """A checkpoint of another model (its config's params line kept, as if edited)."""
    state = torch.load(path, weights_only=True)
    state["model"] = {k: torch.zeros(3, *v.shape[1:]) for k, v in state["model"].items()}
    save_checkpoint(path, state)


def _older_format(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    del state["generator"], state["torch_rng"]
    save_checkpoint(path, state)


DAMAGE = {
    "torn": _torn,
    "garbage": _garbage,
    "pickled object": _pickled_object,
    "other shapes": _other_shapes,
    "older format": _older_format,
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    assert runner.run(_cfg(), run_dir)["status"] == "ok"
    return _history(run_dir)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_set_aside_and_the_run_restarts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    uninterrupted: list[str],
    damage: str,
) -> None:
    _interrupted_after_one_epoch(tmp_path, monkeypatch)
    checkpoint = tmp_path / CHECKPOINT_FILE
    DAMAGE[damage](checkpoint)
    damaged = checkpoint.read_bytes()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        record = runner.run(_cfg(), tmp_path)
    assert record["status"] == "ok" and record["epochs_done"] == EPOCHS
    assert record["resumed_from_epoch"] is None  # from epoch 0, not from the damaged file
    assert _history(tmp_path) == uninterrupted
    assert (tmp_path / "checkpoint.pt.unreadable").read_bytes() == damaged
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    line = warnings[0]
    assert "\n" not in line and line.startswith(f"{checkpoint} is unreadable (")
    assert line.endswith("moved aside to checkpoint.pt.unreadable, the run restarts from epoch 0")
    assert "weights_only" not in line and "trust" not in line
    # And the next run finds it finished: nothing is set aside twice.
    assert runner.run(_cfg(), tmp_path)["status"] == "ok"
    assert _history(tmp_path) == uninterrupted
