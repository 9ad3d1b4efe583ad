"""The loop: losses are true means, a run is repeatable, a blow-up is `diverged`, not a crash."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mlp_sweep.config import (
    DataConfig,
    Dataset,
    Impl,
    Loss,
    ModelConfig,
    OptimConfig,
    TrainerConfig,
)
from mlp_sweep.training.data import load_data
from mlp_sweep.training.loop import LOSSES, evaluate, fit, make_optimizer
from mlp_sweep.training.model import build_mlp

CPU = torch.device("cpu")
DATA = DataConfig(name=Dataset.synthetic, n_train=600, n_test=150)


def train_once(seed: int, epochs: int = 3, lr: float = 0.05, loss: Loss = Loss.ce):
    torch.manual_seed(seed)
    data = load_data(DATA, CPU)
    model = build_mlp(ModelConfig(hidden=[32]), data.num_features, 10)
    opt = make_optimizer(model.parameters(), OptimConfig(lr=lr))
    return fit(
        model,
        opt,
        data,
        TrainerConfig(epochs=epochs, batch_size=64),
        loss,
        torch.Generator().manual_seed(seed),
    )


def test_fit_records_every_epoch_and_learns() -> None:
    history = train_once(0)
    assert history.status == "ok"
    assert [e.epoch for e in history.epochs] == [1, 2, 3]
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert 0 <= history.epochs[-1].test_acc <= 1 and history.epochs[-1].test_acc > 0.5
    assert history.best is not None and history.best.test_acc == max(
        e.test_acc for e in history.epochs
    )


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    a, b, c = train_once(1), train_once(1), train_once(2)
    key = [(e.train_loss, e.test_loss, e.test_acc) for e in a.epochs]
    assert key == [(e.train_loss, e.test_loss, e.test_acc) for e in b.epochs]
    assert key != [(e.train_loss, e.test_loss, e.test_acc) for e in c.epochs]


def test_nonfinite_loss_stops_as_diverged() -> None:
    history = train_once(0, epochs=5, lr=1e12)
    assert history.status == "diverged"
    # It stops at the first epoch whose loss is not finite: that epoch is the last one kept.
    *before, last = history.epochs
    assert len(history.epochs) < 5
    assert all(math.isfinite(e.train_loss) for e in before)
    assert not math.isfinite(last.train_loss)


def test_evaluate_is_the_true_mean_over_uneven_chunks() -> None:
    torch.manual_seed(0)
    logits_model = build_mlp(ModelConfig(hidden=[]), 6, 4)
    x, y = torch.randn(23, 6), torch.randint(0, 4, (23,))
    loss, acc = evaluate(logits_model, x, y, Loss.ce, batch_size=5)
    with torch.no_grad():
        logits = logits_model(x)
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert acc == (logits.argmax(1) == y).sum().item() / 23


def test_mse_loss_is_on_softmax_outputs() -> None:
    logits, y = torch.randn(9, 10), torch.randint(0, 10, (9,))
    expected = F.mse_loss(logits.softmax(1), F.one_hot(y, 10).float())
    torch.testing.assert_close(LOSSES[Loss.mse](logits, y, "mean"), expected)
    torch.testing.assert_close(LOSSES[Loss.mse](logits, y, "sum"), expected * 9)
    assert train_once(0, loss=Loss.mse, lr=0.5).status == "ok"


def test_a_run_never_imports_torch_dynamo_or_sympy(tmp_path) -> None:
    """torch.optim's first call imports torch._dynamo (and Adam's step on every call), and
    skip_init's meta path imports sympy (each over a second a process, most of a trivial job's
    cost); runs of both impls and of Adam, with a checkpoint, resumed, do without them."""
    import subprocess
    import sys

    from tests.helpers import ROOT, cli_env

    code = (
        "import sys, json; from pathlib import Path; from mlp_sweep.run.runner import run; "
        "from mlp_sweep.config import Config, DataConfig, Dataset, Impl, ModelConfig, "
        "OptimConfig, Optimizer, TrainerConfig\n"
        "d = DataConfig(name=Dataset.synthetic, n_train=60, n_test=20)\n"
        "for impl, o in [(i, Optimizer.sgd) for i in Impl] + [(Impl.module, Optimizer.adam)]:\n"
        "    c = Config(data=d, model=ModelConfig(impl=impl), optim=OptimConfig(name=o), "
        "trainer=TrainerConfig(epochs=2))\n"
        f"    p = Path({str(tmp_path)!r}) / f'{{impl.value}}-{{o.value}}'; run(c, p)\n"
        "    m = p / 'metrics.json'\n"
        "    m.write_text(json.dumps({**json.loads(m.read_text()), 'status': 'interrupted'}))\n"
        "    r = run(c, p); print(impl.value, o.value, r['status'], r['resumed_from_epoch'])\n"
        "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(), cwd=ROOT, capture_output=True, text=True
    )
    expected = [*(f"{impl.value} sgd ok 2" for impl in Impl), "module adam ok 2", "False False"]
    assert done.stdout.splitlines() == expected, done.stderr[-2000:]
