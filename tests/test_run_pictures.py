"""What a run gets wrong (confusion.png, misclassified.png, per-class accuracy), and the train
loss per step (steps.csv) that the loggers draw, kept across a resume."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch

from mlp_sweep.config import Config, LoggerConfig, TensorBoardConfig
from mlp_sweep.run import pictures, steps_file
from mlp_sweep.run.lifecycle import JobInfo, Lifecycle
from mlp_sweep.run.runner import run
from mlp_sweep.training.data import load_data
from tests.helpers import QUICK


def _steps(run_dir: Path) -> list[tuple[int, int, float]]:
    with open(run_dir / "steps.csv", newline="") as f:
        return [
            (int(r["step"]), int(r["epoch"]), float(r["train_loss"])) for r in csv.DictReader(f)
        ]


def test_each_run_draws_what_it_gets_wrong(run_cli, tmp_path: Path) -> None:
    """A real two-run sweep on MNIST: each run's pictures, per-class accuracy and worst class,
    and the summary's worst_class column."""
    sweep = tmp_path / "sweep"
    done = run_cli("-m", "model.act=relu,selu", *QUICK, f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    cfg = Config()
    cfg.data.limit_test = 500
    labels = load_data(cfg.data, torch.device("cpu")).y_test
    per_class = torch.bincount(labels, minlength=10).tolist()
    frame = pd.read_csv(sweep / "summary.csv")
    for job in (0, 1):
        run_dir = sweep / str(job)
        record = json.loads((run_dir / "metrics.json").read_text())
        for name in ("confusion.png", "misclassified.png"):
            assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        class_acc = record["class_acc"]
        assert len(class_acc) == 10 and all(0 <= a <= 1 for a in class_acc)
        right = sum(a * n for a, n in zip(class_acc, per_class, strict=True))
        assert right / sum(per_class) == pytest.approx(record["test_acc"], abs=1e-3)
        assert record["worst_class"] == class_acc.index(min(class_acc))
        assert frame.loc[job, "worst_class"] == record["worst_class"]


def test_a_picture_that_cannot_be_drawn_costs_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pictures, "draw_confusion", broken)
    cfg = Config()
    cfg.data.name = cfg.data.name.synthetic
    cfg.data.n_train, cfg.data.n_test, cfg.trainer.epochs = 400, 200, 1
    with caplog.at_level(logging.WARNING):
        record = run(cfg, tmp_path / "run")
    assert record["status"] == "ok"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "no confusion.png / misclassified.png: OSError: [Errno 28] No space left on device"
    ]
    assert not (tmp_path / "run" / "confusion.png").exists()


def test_the_pictures_and_digits_reuse_the_last_evaluations_predictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that trains its epochs here predicts the test digits once per epoch, in its
    evaluation; the pictures and the loggers' digits take those predictions, so the pictures
    agree with test_acc (class_acc is rounded to 4 places)."""
    from mlp_sweep.run import lifecycle

    cfg = Config()
    cfg.data.limit_train, cfg.data.limit_test, cfg.trainer.epochs = 2000, 500, 2
    cfg.logger = LoggerConfig(tensorboard=TensorBoardConfig())
    real, calls = lifecycle.predict, []
    monkeypatch.setattr(lifecycle, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    record = run(cfg, tmp_path / "run")
    assert record["status"] == "ok" and calls == []
    assert (tmp_path / "run" / "confusion.png").exists()
    per_class = torch.bincount(load_data(cfg.data, torch.device("cpu")).y_test, minlength=10)
    right = sum(acc * n for acc, n in zip(record["class_acc"], per_class.tolist(), strict=True))
    assert right == pytest.approx(record["test_acc"] * 500, abs=0.05)


def test_a_resumed_run_keeps_its_steps_and_its_events_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped by Ctrl-C after epoch 2 of 3, with rows of epoch 3 and a torn line after the
    checkpoint's (a kill in the middle of epoch 3's append), and resumed: steps.csv equals an
    uninterrupted run's, and TensorBoard's events hold each step once, as steps.csv says."""
    pytest.importorskip("tensorboard", reason='needs the viz extra: pip install ".[viz]"')
    from tensorboard.backend.event_processing import event_accumulator

    def config() -> Config:
        cfg = Config()
        cfg.data.name = cfg.data.name.synthetic
        cfg.data.n_train, cfg.data.n_test, cfg.trainer.epochs = 400, 200, 3
        cfg.trainer.batch_size = 50
        cfg.logger = LoggerConfig(tensorboard=TensorBoardConfig(), every_n_steps=3)
        return cfg

    reference = run(config(), tmp_path / "reference")
    assert reference["status"] == "ok"

    done = Lifecycle.epoch_done

    def stop_after_two(self: Lifecycle, state: object) -> None:
        done(self, state)  # type: ignore[arg-type]
        if self.record.fields["epochs_done"] == 2:
            raise KeyboardInterrupt

    sweep = tmp_path / "sweep"
    job = JobInfo(num=0, overrides=["seed=0"], sweep_dir=sweep)
    with monkeypatch.context() as patch:
        patch.setattr(Lifecycle, "epoch_done", stop_after_two)
        with pytest.raises(KeyboardInterrupt):
            run(config(), sweep / "0", job)
    assert json.loads((sweep / "0" / "metrics.json").read_text())["status"] == "interrupted"
    assert {e for _, e, _ in _steps(sweep / "0")} == {1, 2}
    with open(sweep / "0" / "steps.csv", "a") as f:  # as a kill in epoch 3's append would
        f.write("27,3,0.5\n30,")
    assert run(config(), sweep / "0", job)["status"] == "ok"

    steps = _steps(sweep / "0")
    assert steps == _steps(tmp_path / "reference")  # 8 steps an epoch, a point every 3
    assert [s for s, _, _ in steps] == [3, 6, 8, 11, 14, 16, 19, 22, 24]
    events = event_accumulator.EventAccumulator(str(sweep / "tb" / "0 seed=0"))
    events.Reload()
    got = [(e.step, e.value) for e in events.Scalars("train/loss_step")]
    assert got == [(s, pytest.approx(v, rel=1e-6)) for s, _, v in steps]


def test_steps_are_appended_and_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    """Each epoch appends its own rows; a process's first write rewrites the file whole; only
    whole lines of the checkpoint's epochs are read back."""
    path = tmp_path / "steps.csv"
    writer = steps_file.StepsFile(path)
    epoch1, epoch2 = [(1, 1, 2.5), (2, 1, 2.25)], [(3, 2, 2.0)]
    writer.add(epoch1, epoch1)
    writer.add(epoch2, epoch1 + epoch2)
    assert path.read_text() == "step,epoch,train_loss\n1,1,2.5\n2,1,2.25\n3,2,2.0\n"
    with open(path, "a") as f:
        f.write("4,3")  # torn: its loss never written
    assert steps_file.read(path, 3) == epoch1 + epoch2
    assert steps_file.read(path, 1) == epoch1
    again = steps_file.StepsFile(path)  # a resumed run's process, from its checkpoint's epoch 1
    again.add(epoch2, epoch1 + epoch2)
    assert steps_file.read(path, 9) == epoch1 + epoch2
    assert path.read_text().endswith("3,2,2.0\n")
    path.write_text("step,epoch\n1,1\n")  # not steps.csv's columns: no steps, no error
    assert steps_file.read(path, 1) == []
    assert steps_file.read(tmp_path / "missing.csv", 1) == []
