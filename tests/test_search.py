"""hparams_search=optuna through the real entry point: a search that is killed and resumed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from mlp_sweep.search.study import load_study
from mlp_sweep.status import FINISHED
from tests.helpers import start_cli, wait_for

optuna = pytest.importorskip("optuna", reason='needs the search extra: pip install ".[search]"')

TINY = ["data=synthetic", "data.n_train=600", "data.n_test=200", "trainer.epochs=3"]


def finished(folder: Path) -> bool:
    try:
        return json.loads((folder / "metrics.json").read_text())["status"] in FINISHED
    except (OSError, ValueError, KeyError):
        return False


# Slow: the default suite's chaos test kills and resumes a search at random moments.
@pytest.mark.slow
def test_eight_trial_search_killed_and_resumed(run_cli, tmp_path: Path) -> None:
    sweep = tmp_path / "search"
    args = [
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=8",
        *TINY,
        f"hydra.sweep.dir={sweep}",
    ]
    proc = start_cli(*args, cwd=tmp_path, stdout=None)
    wait_for(lambda: (sweep / "4" / "metrics.json").exists(), proc, timeout=180)  # 0-3 told
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    study = load_study(sweep)
    done_before = {t.number for t in study.trials if t.state.is_finished()}
    assert 3 <= len(done_before) < 8
    before = {n: (sweep / str(n) / "metrics.json").read_bytes() for n in done_before}

    result = run_cli("--resume", str(sweep))
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study(sweep)
    assert len(study.trials) == 8 and all(t.state.is_finished() for t in study.trials)
    for n, data in before.items():  # finished trials were not re-run
        assert (sweep / str(n) / "metrics.json").read_bytes() == data
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["trial"].tolist() == list(range(8))
    assert {"optim.lr", "model.act", "model.init"} <= set(frame.columns)
    assert frame["status"].isin(["ok", "pruned"]).all()  # the preset's ASHA may prune
    for trial in study.trials:  # each row is its trial: same parameters, same value
        row = frame[frame["trial"] == trial.number].iloc[0]
        assert row["model.act"] == trial.params["model.act"]
        assert row["optim.lr"] == pytest.approx(trial.params["optim.lr"])
        assert row["status"] == trial.state.name.lower().replace("complete", "ok")
        if trial.state.name == "COMPLETE":
            assert row["best_test_acc"] == pytest.approx(trial.value)
    best = study.best_trial
    said = result.stdout + result.stderr
    assert f"best trial {best.number}: value {best.value:.4g}" in said
