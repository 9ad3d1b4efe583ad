"""A search killed between asking Optuna for a trial and sampling its values resumes.

Such a kill leaves the study holding a RUNNING trial with no values and no folder: nobody's
work. Resuming tells the study it failed, says so in one line, and asks a new trial in its
place; before, every --resume stopped on 'a trial left running has no value for ...'.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlp_sweep.search.study import load_study

optuna = pytest.importorskip("optuna", reason="needs the search extra: pip install '.[search]'")

TINY = ["data=synthetic", "data.n_train=300", "data.n_test=100", "trainer.epochs=1"]


def _study(sweep: Path):  # type: ignore[no-untyped-def]
    return load_study(sweep)


@pytest.mark.parametrize("drawn", [0, 1], ids=["no values", "some values"])
def test_a_trial_asked_but_never_sampled_is_failed_and_replaced(
    run_main, tmp_path: Path, drawn: int
) -> None:
    sweep = tmp_path / "search"
    args = ["-m", "hparams_search=optuna", *TINY, f"hydra.sweep.dir={sweep}"]
    first = run_main(*args, "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.stderr[-3000:]
    # The state a SIGKILL between ask() and the sampling leaves: trial 2, RUNNING, no values;
    # or one between two values (Optuna stores each as it is drawn): optim.lr only.
    stuck = _study(sweep).ask()
    if drawn:
        stuck.suggest_float("optim.lr", 0.001, 0.5, log=True)  # the preset's distribution
    assert stuck.number == 2 and len(stuck.params) == drawn

    resumed = run_main("--resume", str(sweep))
    said = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, said[-3000:]
    assert "Traceback" not in said
    lines = [line for line in said.splitlines() if "trial 2 was asked for" in line]
    assert len(lines) == 1, said
    values = "only optim.lr of its values" if drawn else "no values"
    assert lines[0].endswith(
        f"][HYDRA] trial 2 was asked for but got {values} before the sweep was killed; "
        "marked failed, a new trial takes its place"
    )
    trials = _study(sweep).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert not (sweep / "2").exists()

    grown = run_main(*args, "hydra.sweeper.n_trials=3")  # the same search, one trial more
    assert grown.returncode == 0, grown.stderr[-3000:]
    trials = _study(sweep).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["trial"].tolist() == [0, 1, 3] and frame["status"].eq("ok").all()
