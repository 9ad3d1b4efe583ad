"""The hand-written step (mlp_sweep.training.sgd_step) gives autograd's numbers, bit for bit."""

from __future__ import annotations

import pytest
import torch

from mlp_sweep.config import (
    Activation,
    DataConfig,
    Dataset,
    Impl,
    Loss,
    ModelConfig,
    OptimConfig,
    Optimizer,
    TrainerConfig,
)
from mlp_sweep.training import sgd_step as fast
from mlp_sweep.training.data import load_data
from mlp_sweep.training.loop import fit, make_optimizer
from mlp_sweep.training.model import build_mlp

DATA = DataConfig(name=Dataset.synthetic, n_train=500, n_test=200)


def train(model_cfg: ModelConfig, autograd: bool, optim: OptimConfig | None = None,
          loss: Loss = Loss.ce, monkeypatch: pytest.MonkeyPatch | None = None):  # fmt: skip
    if autograd:
        assert monkeypatch is not None
        monkeypatch.setattr("mlp_sweep.training.loop.manual_step", lambda *a: None)
    torch.manual_seed(0)
    data = load_data(DATA, torch.device("cpu"))
    model = build_mlp(model_cfg, data.num_features, 10)
    optimizer = make_optimizer(model.parameters(), optim or OptimConfig(lr=0.1))
    if not autograd and optim is None:  # the test is about the hand-written step: it must run
        assert fast.manual_step(model, optimizer, loss is Loss.ce) is not None
    history = fit(model, optimizer, data, TrainerConfig(epochs=2, batch_size=64), loss,
                  torch.Generator().manual_seed(0))  # fmt: skip
    if monkeypatch is not None:
        monkeypatch.undo()
    return [(e.train_loss, e.test_loss, e.test_acc) for e in history.epochs], model.state_dict()


@pytest.mark.parametrize("act", list(Activation))
@pytest.mark.parametrize("impl", list(Impl))
def test_every_activation_bit_for_bit(act, impl, monkeypatch: pytest.MonkeyPatch) -> None:
    for output_act in (False, True):
        cfg = ModelConfig(act=act, impl=impl, hidden=[32, 16], output_act=output_act)
        by_hand, weights = train(cfg, autograd=False)
        by_autograd, reference = train(cfg, autograd=True, monkeypatch=monkeypatch)
        assert by_hand == by_autograd, (act, impl, output_act)
        for key, value in reference.items():
            assert torch.equal(weights[key], value), key


def test_it_is_used_only_where_it_gives_the_same_step() -> None:
    model = build_mlp(ModelConfig(hidden=[8]), 20, 10)

    def step(optim: OptimConfig, ce: bool = True):
        return fast.manual_step(model, make_optimizer(model.parameters(), optim), ce)

    assert step(OptimConfig(lr=0.1)) is not None
    assert step(OptimConfig(lr=0.1), ce=False) is None  # mse
    assert step(OptimConfig(momentum=0.9)) is None
    assert step(OptimConfig(weight_decay=1e-4)) is None
    assert step(OptimConfig(name=Optimizer.adam, lr=1e-3)) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert step(OptimConfig()) is None
    assert fast.manual_step(torch.nn.Sequential(torch.nn.Linear(20, 10), torch.nn.Dropout()),
                          torch.optim.SGD(model.parameters(), lr=0.1), True) is None  # fmt: skip


def test_other_optimizers_still_train_through_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ModelConfig(hidden=[16])
    momentum = OptimConfig(lr=0.05, momentum=0.9)
    assert train(cfg, False, momentum)[0] == train(cfg, True, momentum, monkeypatch=monkeypatch)[0]
