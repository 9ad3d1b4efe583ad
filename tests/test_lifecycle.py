"""One run lifecycle: a member of a stack leaves the same folder as the run trained alone.

The same grid runs under hydra/launcher=basic (each run alone, mlp_sweep.run.runner) and
hydra/launcher=fused with fuse=always (stacks, mlp_sweep.launch.stacked_group): conftest's
fused_twins, shared with tests/test_fused.py. Both go through mlp_sweep.run.lifecycle, so each
job's metrics.json, history.csv, checkpoint.pt and log have the same keys and form. The numbers
themselves are test_fused.py's to compare.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

# The members of one stack (SGD, seed 0, two activations), and the grid's epochs.
STACK = ["0", "4"]
EPOCHS = 3
# Where the stacked member's folder may differ, and why.
STACKED_ONLY_KEYS = {"fused"}  # which jobs trained together
STACKED_ONLY_LINES = [
    r"trained stacked with jobs #0, #4 \(hydra/launcher=fused\)",
    # The stack trained it before Hydra's run_job, whose task then reports how it ended.
    r".*/\d: ended in its stack \(ok\)",
]


@pytest.fixture(scope="module")
def twins(fused_twins) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    _, stacked, alone = fused_twins
    return alone, stacked


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _form(value: object) -> str:
    """A value's shape, not its number: the kind, and for containers their keys."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_form(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, bool) or value is None:
        return repr(value)
    return type(value).__name__


@pytest.mark.parametrize("job", STACK)
def test_records_have_the_same_keys_and_form(twins: tuple[Path, Path], job: str) -> None:
    alone, stacked = (_record(folder / job) for folder in twins)
    assert stacked["fused"] == {"jobs": [int(j) for j in STACK], "members": len(STACK)}
    assert set(stacked) - set(alone) == STACKED_ONLY_KEYS
    assert set(alone) - set(stacked) == set()
    assert list(alone) == [k for k in stacked if k not in STACKED_ONLY_KEYS]  # the same order
    for key in alone:
        if key not in ("started_at", "finished_at"):
            assert _form(alone[key]) == _form(stacked[key]), key
    for key in ("status", "error", "epochs_done", "best_epoch", "overrides", "params", "device"):
        assert alone[key] == stacked[key], key
    assert alone["status"] == "ok" and alone["epochs_done"] == EPOCHS


@pytest.mark.parametrize("job", STACK)
def test_histories_have_the_same_columns_and_epochs(twins: tuple[Path, Path], job: str) -> None:
    tables = []
    for folder in twins:
        with open(folder / job / "history.csv", newline="") as f:
            tables.append(list(csv.DictReader(f)))
    alone, stacked = tables
    assert [list(r) for r in alone] == [list(r) for r in stacked]
    assert [r["epoch"] for r in alone] == [r["epoch"] for r in stacked] == ["1", "2", "3"]


@pytest.mark.parametrize("job", STACK)
def test_checkpoints_have_the_same_structure(twins: tuple[Path, Path], job: str) -> None:
    alone, stacked = (
        torch.load(folder / job / "checkpoint.pt", map_location="cpu", weights_only=True)
        for folder in twins
    )
    assert sorted(alone) == sorted(stacked)
    assert json.loads(alone["params"]) == json.loads(stacked["params"])
    assert alone["status"] == stacked["status"] == "ok"
    assert [list(e) for e in alone["history"]] == [list(e) for e in stacked["history"]]
    for name, tensor in alone["model"].items():
        assert stacked["model"][name].shape == tensor.shape, name
    assert alone["optimizer"]["param_groups"] == stacked["optimizer"]["param_groups"]
    assert alone["generator"].shape == stacked["generator"].shape


def _log_lines(run_dir: Path) -> list[str]:
    """The job's log lines, timestamps and measured seconds masked."""
    text = (run_dir / "mlp_sweep.log").read_text()
    text = re.sub(r"^\[[^\]]+\]", "[T]", text, flags=re.M)
    return re.sub(r"\(\d+\.\d+s\)", "(Ns)", text).splitlines()


@pytest.mark.parametrize("job", STACK)
def test_logs_have_the_same_lines_in_the_same_form(twins: tuple[Path, Path], job: str) -> None:
    alone, stacked = (_log_lines(folder / job) for folder in twins)
    extra = [line for line in stacked if any(re.search(p, line) for p in STACKED_ONLY_LINES)]
    assert len(extra) == len(STACKED_ONLY_LINES), stacked
    shared = [line for line in stacked if line not in extra]
    # Line by line: the same logger, level and message, numbers aside.
    assert [re.sub(r"\d\.\d{4}", "X", line) for line in shared] == [
        re.sub(r"\d\.\d{4}", "X", line) for line in alone
    ]
    assert any("epoch 3/3  train_loss" in line for line in alone)
    assert all(line.startswith("[T][mlp_sweep.run.") for line in alone), alone
