"""hydra.sweeper.pruner: a search whose trials report each epoch and stop when the pruner says.

Real searches of the entry point: six trials, three with a learning rate that cannot learn in
an epoch (1e-4) after three alike that can (0.5), in that order (the space is a grid no bigger
than n_trials). The median pruner, after two finished trials, stops each hopeless one after its
first epoch, on the basic launcher and on the default one's workers alike.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from mlp_sweep.search.study import JOURNAL_FILE, PrunerName, PrunerSpec, load_study
from mlp_sweep.search.trial import epoch_value, trial_link
from mlp_sweep.training.loop import EpochStats, History
from tests.helpers import PRUNED_SEARCH, free_port, http_json, stop, wait_until

optuna = pytest.importorskip("optuna", reason="needs the search extra: pip install '.[search]'")


def _records(sweep: Path) -> dict[int, dict]:
    return {n: json.loads((sweep / str(n) / "metrics.json").read_text()) for n in range(6)}


def test_hopeless_trials_are_pruned_and_resume_leaves_them(run_main, tmp_path: Path) -> None:
    """On hydra/launcher=basic (the default launcher's workers: the test below)."""
    sweep = tmp_path / "search"
    done = run_main("-m", *PRUNED_SEARCH, "hydra/launcher=basic", f"hydra.sweep.dir={sweep}")
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-3000:]
    assert (sweep / JOURNAL_FILE).is_file()  # the study is a journal: many writers at once
    records = _records(sweep)
    lrs = {n: r["params"]["optim.lr"] for n, r in records.items()}
    assert [lrs[n] for n in range(6)] == [0.5] * 3 + [0.0001] * 3
    statuses = {n: r["status"] for n, r in records.items()}
    assert statuses == {0: "ok", 1: "ok", 2: "ok", 3: "pruned", 4: "pruned", 5: "pruned"}
    for n in (3, 4, 5):  # stopped after the first epoch: a result with its numbers
        assert records[n]["epochs_done"] == 1 and records[n]["error"] is None
        assert isinstance(records[n]["test_acc"], float)
        assert len(pd.read_csv(sweep / str(n) / "history.csv")) == 1
        assert f"pruned  test_acc {records[n]['test_acc']:.4f}" in said
        assert "(pruned at epoch 1)" in said
        assert f"trial {n}: pruned at epoch 1" in said
    study = load_study(sweep)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * 3 + ["PRUNED"] * 3
    for trial in study.trials:  # every epoch trained was reported, by the trial's own process
        epochs = records[trial.number]["epochs_done"]
        assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
        assert trial.intermediate_values[epochs] == pytest.approx(
            records[trial.number]["best_test_acc"]
        )
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["status"].tolist() == ["ok"] * 3 + ["pruned"] * 3
    assert frame["epochs_done"].tolist() == [4] * 3 + [1] * 3
    assert (sweep / "curves.png").stat().st_size > 0

    before = {n: (sweep / str(n) / "metrics.json").read_bytes() for n in range(6)}
    again = run_main("--resume", str(sweep))
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert {n: (sweep / str(n) / "metrics.json").read_bytes() for n in range(6)} == before
    assert [t.state.name for t in load_study(sweep).trials] == states
    _seen_by_optuna_dashboard(sweep, study)


def _seen_by_optuna_dashboard(sweep: Path, study: optuna.Study) -> None:
    """`optuna-dashboard <sweep>/optuna.journal`, started here on 127.0.0.1, serves each
    trial's state and intermediate values over its HTTP API."""
    command = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    command = command or shutil.which("optuna-dashboard")
    assert command, "optuna-dashboard is part of the search extra: pip install '.[search]'"
    port = free_port()
    server = subprocess.Popen(
        [command, str(sweep / JOURNAL_FILE), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api/studies"
    try:
        studies = wait_until(lambda: http_json(api)["study_summaries"], "optuna-dashboard", 60)
        assert [s["study_name"] for s in studies] == ["mlp_sweep"]
        detail = http_json(f"{api}/{studies[0]['study_id']}")
    finally:
        stop(server)
    served = {t["number"]: t for t in detail["trials"]}
    for trial in study.trials:
        assert served[trial.number]["state"] == trial.state.name.capitalize()
        values = {v["step"]: v["value"] for v in served[trial.number]["intermediate_values"]}
        assert values == pytest.approx(trial.intermediate_values)


def test_each_pruner_is_optunas_with_its_knobs() -> None:
    spec = PrunerSpec(PrunerName.asha, min_epochs=2, reduction_factor=4, max_epochs=10)
    asha = spec.build()
    assert isinstance(asha, optuna.pruners.SuccessiveHalvingPruner)
    assert (asha._min_resource, asha._reduction_factor) == (2, 4)
    median = PrunerSpec(PrunerName.median, min_epochs=3, warmup_trials=7).build()
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_warmup_steps, median._n_startup_trials) == (3, 7)
    band = PrunerSpec(PrunerName.hyperband, min_epochs=1, reduction_factor=3, max_epochs=9).build()
    assert isinstance(band, optuna.pruners.HyperbandPruner)
    assert (band._min_resource, band._max_resource, band._reduction_factor) == (1, 9, 3)
    assert isinstance(PrunerSpec().build(), optuna.pruners.NopPruner)


def test_the_objective_as_it_stands_after_each_epoch() -> None:
    history = History([EpochStats(1, 2.0, 1.5, 0.6, 1.0), EpochStats(2, 1.0, 1.6, 0.5, 2.0)])
    assert epoch_value("best_test_acc", history) == 0.6  # the best so far, not the last
    assert epoch_value("test_acc", history) == 0.5
    assert epoch_value("train_seconds", history) == 3.0
    assert epoch_value("params", history) is None  # known at the end only: not reported
    assert epoch_value("test_acc", History()) is None


def test_only_a_search_with_a_pruner_links_its_jobs_to_the_study() -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mlp_sweep.paths import CONF_DIR

    def hydra_of(*overrides: str):  # type: ignore[no-untyped-def]  # a job's HydraConfig
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            config = compose("config", list(overrides), return_hydra_config=True)
        hydra = OmegaConf.create({"hydra": OmegaConf.to_container(config.hydra)})["hydra"]
        hydra.job.num = 3
        hydra.sweep.dir = "/tmp/x"
        return hydra

    assert trial_link(hydra_of(), 10) is None  # a grid
    assert trial_link(hydra_of("hparams_search=optuna", "hydra.sweeper.pruner=none"), 10) is None
    link = trial_link(hydra_of("hparams_search=optuna", "hydra.sweeper.pruner=asha"), 10)
    assert link is not None and link.number == 3 and link.objective == "best_test_acc"
    assert link.storage == f"/tmp/x/{JOURNAL_FILE}" and link.pruner.name is PrunerName.asha
    assert link.pruner.max_epochs == 10
    seeded = trial_link(hydra_of("hparams_search=optuna", "hydra.sweeper.seeds=2"), 10)
    assert seeded is not None and (seeded.number, seeded.seed_index) == (1, 1)  # job 3
    two = ["hydra.sweeper.objective=[test_loss,n_params]", "hydra.sweeper.direction=[min,min]"]
    assert trial_link(hydra_of("hparams_search=optuna", *two), 10) is None  # single-objective


def test_a_worker_never_waits_for_a_batch(run_main, tmp_path: Path) -> None:
    """On the default launcher a search has no batch barrier: while trial 2 trains its fifteen
    epochs, the other worker starts trials 3, 4 and 5 in turn, each pruned after one (in batches
    of two, trial 4 would wait for trial 2's end). Records' times carry milliseconds. Fifteen,
    not ten: each run's end now draws its pictures, and ten left three pruned trials too little
    room on a busy machine. Trial 4 is the one checked: trial 5 starting before trial 2's end
    (usually 1-2 s before) proves nothing more, and once in a loaded suite it came 23 ms after."""
    sweep = tmp_path / "search"
    longer = ["data.n_train=10000", "trainer.batch_size=50", "trainer.epochs=15"]
    done = run_main("-m", *PRUNED_SEARCH, *longer, f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    records = _records(sweep)
    assert [records[n]["status"] for n in range(6)] == ["ok"] * 3 + ["pruned"] * 3
    start = {n: datetime.fromisoformat(r["started_at"]) for n, r in records.items()}
    end = {n: datetime.fromisoformat(r["finished_at"]) for n, r in records.items()}
    assert all("." in r["started_at"] and "." in r["finished_at"] for r in records.values())
    assert start[2] < start[3] < start[4] < end[2], (start, end)
    assert "trials one at a time as workers free up" in done.stdout + done.stderr
    # Pruned in the workers, which reported every epoch to the study themselves.
    study = load_study(sweep)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3 + ["PRUNED"] * 3
    for trial in study.trials:
        epochs = records[trial.number]["epochs_done"]
        assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))


def test_a_resumed_trial_tells_the_study_every_epoch_it_kept(tmp_path: Path) -> None:
    """Killed between an epoch's record and its report, a trial resumes from its checkpoint
    with epochs the study never heard of: the first report sends them all (the slow chaos test
    found a finished trial whose last epoch was missing from the study)."""
    from mlp_sweep.search.study import open_storage
    from mlp_sweep.search.trial import TrialLink

    storage = str(tmp_path / JOURNAL_FILE)
    study = optuna.create_study(study_name="s", storage=open_storage(storage), direction="maximize")
    study.ask()  # trial 0, as the sweeper asks it
    link = TrialLink(storage, "s", 0, "best_test_acc", PrunerSpec(PrunerName.median))
    epochs = [EpochStats(e, 1.0, 1.0, acc, 1.0) for e, acc in [(1, 0.5), (2, 0.7), (3, 0.6)]]
    assert link.should_prune(History(epochs[:1])) is False
    link = TrialLink(storage, "s", 0, "best_test_acc", PrunerSpec(PrunerName.median))  # resumed
    assert link.should_prune(History(epochs)) is False
    assert study.trials[0].intermediate_values == {1: 0.5, 2: 0.7, 3: 0.7}  # best so far
