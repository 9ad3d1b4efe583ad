"""hydra.sweeper.seeds and several objectives: what a search's study is told, and what the
summary, the console and the plots make of it. Real searches of the entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlp_sweep.search.objectives import checked, pareto_front
from mlp_sweep.search.study import load_study

optuna = pytest.importorskip("optuna", reason="needs the search extra: pip install '.[search]'")

SMALL = ["data=synthetic", "data.n_train=600", "data.n_test=200"]


def _record(sweep: Path, job: int) -> dict:
    return json.loads((sweep / str(job) / "metrics.json").read_text())


def test_three_seeds_per_trial_give_the_study_their_mean(run_main, tmp_path: Path) -> None:
    """Two trials (lr 0.1, then a hopeless 1e-4) on seeds 7, 8, 9; the median pruner, after
    the first trial, judges the second on its seeds' mean (hydra/launcher=basic: the seeds
    run one after another, in a known order)."""
    sweep = tmp_path / "search"
    done = run_main(
        "-m",
        "hparams_search=optuna",
        "hydra/launcher=basic",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.seeds=3",
        "seed=7",
        "hydra.sweeper.params.optim.lr='choice(0.1,0.0001)'",
        "hydra.sweeper.params.model.act=relu",
        "hydra.sweeper.params.model.init=default",
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.pruning.warmup_trials=1",
        "trainer.epochs=3",
        *SMALL,
        f"hydra.sweep.dir={sweep}",
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-3000:]
    records = {job: _record(sweep, job) for job in range(6)}  # job = trial * 3 + seed index
    assert [r["seed"] for r in records.values()] == [7, 8, 9] * 2
    assert [r["params"]["optim.lr"] for r in records.values()] == [0.1] * 3 + [0.0001] * 3
    for line in ("[1/6] optim.lr=0.1 model.act=relu model.init=default seed=7  ok", "[6/6]"):
        assert line in said

    study = load_study(sweep)
    first, second = study.trials
    assert first.state.name == "COMPLETE"
    accs = [records[j]["best_test_acc"] for j in range(3)]
    assert len(set(accs)) > 1  # seeds that differ: their mean is no one seed's value
    mean = sum(accs) / 3
    assert first.value == pytest.approx(mean)
    # The second trial's seeds 7 and 8 trained on before its seed 9 could make a mean; that
    # mean of epoch 1, worse than the first trial's, had it pruned.
    assert second.state.name == "PRUNED"
    assert [records[j]["status"] for j in (3, 4, 5)] == ["ok", "ok", "pruned"]
    firsts = [pd.read_csv(sweep / str(j) / "history.csv")["test_acc"].iloc[0] for j in (3, 4, 5)]
    assert second.intermediate_values == {1: pytest.approx(sum(firsts) / 3)}
    assert "trial 1: pruned at epoch 1" in said

    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["trial"].tolist() == [0, 0, 0, 1, 1, 1]
    assert frame["seed"].tolist() == [7, 8, 9] * 2
    by_trial = pd.read_csv(sweep / "summary_by_config.csv")
    assert by_trial["trial"].tolist() == [0, 1] and by_trial["n_runs"].tolist() == [3, 3]
    assert by_trial["best_test_acc_mean"].iloc[0] == pytest.approx(mean)


def test_two_objectives_list_their_pareto_trials(run_cli, tmp_path: Path) -> None:
    """Accuracy against parameter count over three widths and two learning rates (a grid of
    six, every point a trial), each trial on two seeds, on the default launcher's workers
    (trials and seeds handed out one at a time as workers free up)."""
    sweep = tmp_path / "pareto"
    done = run_cli(
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.seeds=2",
        "hydra.sweeper.direction=[maximize,minimize]",
        "hydra.sweeper.objective=[best_test_acc,n_params]",
        "+hydra.sweeper.params.model.hidden='choice([8],[32],[128])'",  # + : not in the preset
        "hydra.sweeper.params.optim.lr='choice(0.5,0.02)'",
        "hydra.sweeper.params.model.act=relu",
        "hydra.sweeper.params.model.init=default",
        "trainer.epochs=2",
        *SMALL,
        f"hydra.sweep.dir={sweep}",
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-3000:]
    # The preset's pruner cannot work on two objectives: one line says so.
    assert "hydra.sweeper.pruner=asha is off: Optuna prunes single-objective studies" in said
    assert "database is locked" not in said

    frame = pd.read_csv(sweep / "summary.csv")
    assert len(frame) == 12 and frame["status"].eq("ok").all()
    assert frame["trial"].tolist() == [t for t in range(6) for _ in (0, 1)]
    assert frame["seed"].tolist() == [0, 1] * 6
    widths = frame["model.hidden"].map(lambda text: json.loads(text)[0])
    assert (frame["n_params"] == 784 * widths + widths + widths * 10 + 10).all()
    # Each trial is its seeds' mean; Pareto-optimal by hand: no other trial at least as
    # accurate with as few parameters, and better in one.
    means = frame.groupby("trial")[["best_test_acc", "n_params"]].mean()
    points = list(means.itertuples(index=False, name=None))
    optimal = [
        not any(a >= acc and n <= params and (a, n) != (acc, params) for a, n in points)
        for acc, params in points
    ]
    mine = [t for t, best in zip(means.index, optimal, strict=True) if best]
    assert frame.loc[frame["pareto"], "trial"].unique().tolist() == mine and mine

    study = load_study(sweep)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert sorted(t.number for t in study.best_trials) == mine
    for trial in study.trials:
        acc, params = means.loc[trial.number]
        assert trial.values == [pytest.approx(acc), params]
    assert f"Pareto front: {len(mine)} trial" in said
    for number in mine:
        assert f"  trial {number}: best_test_acc " in said
    assert (sweep / "pareto.png").stat().st_size > 0


@pytest.mark.parametrize(
    "overrides, line",
    [
        (
            ["hydra.sweeper.direction=[maximize,minimize]"],
            "hydra.sweeper.objective=[best_test_acc] needs one direction each, "
            "hydra.sweeper.direction=[maximize,minimize] has 2",
        ),
        (
            ["hydra.sweeper.objective=accuracy"],
            "hydra.sweeper.objective=accuracy: not a numeric field of a run's record; "
            "choose from best_test_acc, test_acc, test_loss",
        ),
        (["hydra.sweeper.direction=up"], "hydra.sweeper.direction=up: choose from maximize, "),
        (
            ["hydra.sweeper.seeds=3", "seed=1,2"],
            "hydra.sweeper.seeds=3 gives each trial its own seeds: take seed out of the search",
        ),
    ],
)
def test_a_mistaken_search_is_one_line_before_any_job(
    run_main, tmp_path: Path, overrides: list[str], line: str
) -> None:
    sweep = tmp_path / "bad"
    done = run_main("-m", "hparams_search=optuna", *overrides, *SMALL, f"hydra.sweep.dir={sweep}")
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert line in said, said[-2000:]
    assert "Traceback" not in said
    assert not list(sweep.glob("[0-9]*"))  # no job ran


def test_objectives_and_the_pareto_rule() -> None:
    assert checked(None, "minimize") == (["best_test_acc"], ["minimize"])
    assert checked(["test_loss", "n_params"], ["minimize", "minimize"]) == (
        ["test_loss", "n_params"],
        ["minimize", "minimize"],
    )
    ways = ["maximize", "minimize"]
    # (0.9, 10) beats (0.8, 10); (0.95, 20) trades against (0.9, 10); a tie dominates nothing.
    points = [[0.9, 10], [0.8, 10], [0.95, 20], [0.95, 20]]
    assert pareto_front(points, ways) == [True, False, True, True]
