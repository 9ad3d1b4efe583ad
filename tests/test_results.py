"""docs/RESULTS.md: generated from real sweeps by `python -m mlp_sweep.report`, and reproducible.

The fast test builds a page from two tiny sweeps and checks its numbers against the runs'
records; the slow one reruns a slice of the committed page's sweeps and finds the same
numbers, bit for bit (CPU determinism), as docs/results/runs.csv holds them.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import ROOT

# The basic launcher: tiny runs one after another beat two workers importing torch.
TINY = ["data=synthetic", "data.n_train=300", "data.n_test=100", "trainer.epochs=2"]
TINY += ["hydra/launcher=basic"]


def test_the_page_states_what_the_runs_recorded(run_cli, run_main, tmp_path: Path) -> None:
    """Two sweeps run by the entry point in this process (what they record is the sweeps'
    tests' business), then the page built by its own command, in a process of its own."""
    grid, repro = tmp_path / "grid", tmp_path / "repro"
    for experiment, folder, axes in (
        ("activations_grid", grid, ["model.act=relu,selu", "model.init=default,xavier_normal"]),
        ("tutorial_repro", repro, ["model.act=relu,selu"]),
    ):
        done = run_main(
            "-m", f"experiment={experiment}", *axes, "seed=range(2)", *TINY,
            f"hydra.sweep.dir={folder}",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "docs" / "RESULTS.md"
    done = run_cli(str(grid), str(repro), "--out", str(out), module="mlp_sweep.report")
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    records = [json.loads(p.read_text()) for p in sorted(grid.glob("*/metrics.json"))]
    assert len(records) == 8
    accs = [
        r["test_acc"]
        for r in records
        if r["params"]["model.act"] == "selu" and r["params"]["model.init"] == "xavier_normal"
    ]
    cell = f"{statistics.fmean(accs):.4f} ± {statistics.stdev(accs):.4f}"
    assert "| selu | " in text and cell in text
    assert "| relu | selu |" in text  # the paired comparison, matched on init and seed
    assert "(4 pairs each)" in text
    assert (tmp_path / "docs" / "img" / "results_curves.png").stat().st_size > 10_000
    assert (tmp_path / "docs" / "img" / "results_logits.png").stat().st_size > 10_000
    runs = pd.read_csv(tmp_path / "docs" / "results" / "runs.csv")
    assert len(runs) == 16 and set(runs["experiment"]) == {"activations_grid", "tutorial_repro"}
    commit = records[0]["git"]["commit"]
    assert commit and commit in text
    assert f"python -m mlp_sweep.report {grid} {repro}" in text


@pytest.mark.slow  # three full-MNIST runs of 10 epochs: ~1 minute
@pytest.mark.parametrize(
    ("experiment", "act", "init", "output_act", "seed"),
    [
        ("activations_grid", "relu", "default", False, 0),
        ("activations_grid", "selu", "lecun_normal", False, 3),
        ("tutorial_repro", "relu", "default", True, 1),
    ],
)
def test_a_slice_of_the_page_reproduces_bit_for_bit(
    run_cli, tmp_path: Path, experiment: str, act: str, init: str, output_act: bool, seed: int
) -> None:
    runs = pd.read_csv(ROOT / "docs" / "results" / "runs.csv")
    row = runs[
        (runs.experiment == experiment)
        & (runs.act == act)
        & (runs.init == init)
        & (runs.output_act == output_act)
        & (runs.seed == seed)
    ].iloc[0]
    run_dir = tmp_path / "run"
    done = run_cli(
        f"experiment={experiment}", f"model.act={act}", f"model.init={init}",
        f"model.output_act={str(output_act).lower()}", f"seed={seed}",
        f"trainer.threads={int(row['threads'])}", f"hydra.run.dir={run_dir}",
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert (record["test_acc"], record["test_loss"]) == (row["test_acc"], row["test_loss"])
