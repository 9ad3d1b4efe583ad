"""Both MLP forms, every activation x init: they build, learn, agree, and init as torch says."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from mlp_sweep.config import (
    Activation,
    DataConfig,
    Dataset,
    Impl,
    Init,
    Loss,
    ModelConfig,
    OptimConfig,
    Optimizer,
)
from mlp_sweep.training.data import load_data
from mlp_sweep.training.loop import evaluate, make_optimizer, train_epoch
from mlp_sweep.training.model import ACTIVATIONS, INITS, FunctionalMLP, build_mlp

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def synthetic():
    return load_data(DataConfig(name=Dataset.synthetic, n_train=1000, n_test=200), CPU)


def test_registries_cover_every_choice() -> None:
    assert set(ACTIVATIONS) == set(Activation)
    assert set(INITS) == set(Init)


@pytest.mark.parametrize("act,init", itertools.product(Activation, Init), ids=lambda v: v.name)
def test_every_activation_and_init_learns(synthetic, act: Activation, init: Init) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(act=act, init=init, hidden=[64, 64])
    model = build_mlp(cfg, synthetic.num_features, 10)
    before, _ = evaluate(model, synthetic.x_train, synthetic.y_train, Loss.ce)
    optimizer = make_optimizer(model.parameters(), OptimConfig(name=Optimizer.adam, lr=0.003))
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        train_epoch(model, optimizer, synthetic.x_train, synthetic.y_train, 100, Loss.ce, gen)
    after, acc = evaluate(model, synthetic.x_train, synthetic.y_train, Loss.ce)
    assert math.isfinite(after) and after < 0.8 * before, (before, after)
    assert acc > 0.5


@pytest.mark.parametrize("output_act", [False, True])
@pytest.mark.parametrize("act", list(Activation), ids=lambda a: a.name)
def test_module_and_functional_agree(act: Activation, output_act: bool) -> None:
    cfg = ModelConfig(act=act, init=Init.kaiming_normal, hidden=[32, 16], output_act=output_act)
    torch.manual_seed(3)
    module = build_mlp(cfg, 20, 10)
    torch.manual_seed(3)
    functional = build_mlp(ModelConfig(**{**cfg.__dict__, "impl": Impl.functional}), 20, 10)
    assert isinstance(module, nn.Sequential) and isinstance(functional, FunctionalMLP)
    # Same seed -> the same parameters, under the same names.
    assert module.state_dict().keys() == functional.state_dict().keys()
    for key, value in module.state_dict().items():
        assert torch.equal(value, functional.state_dict()[key]), key
    x = torch.randn(64, 20)
    torch.testing.assert_close(module(x), functional(x), rtol=0, atol=0)
    # And gradients: a training step moves both the same way.
    module(x).square().sum().backward()
    functional(x).square().sum().backward()
    for p_mod, p_fun in zip(module.parameters(), functional.parameters(), strict=True):
        torch.testing.assert_close(p_mod.grad, p_fun.grad)


def test_functional_loads_a_modules_parameters() -> None:
    cfg = ModelConfig(act=Activation.selu, hidden=[8])
    module = build_mlp(cfg, 5, 3)
    functional = FunctionalMLP(
        ModelConfig(act=Activation.selu, hidden=[8], init=Init.orthogonal), 5, 3, CPU
    )
    x = torch.randn(4, 5)
    assert not torch.allclose(module(x), functional(x))
    functional.load_state_dict(module.state_dict())
    torch.testing.assert_close(module(x), functional(x))


def test_shape_hidden_and_output_activation() -> None:
    layers = [type(m) for m in build_mlp(ModelConfig(act=Activation.leaky), 784, 10)]
    assert layers == [nn.Linear, nn.LeakyReLU, nn.Linear, nn.LeakyReLU, nn.Linear]
    tutorial = build_mlp(ModelConfig(output_act=True), 784, 10)
    assert isinstance(tutorial[-1], nn.ReLU)
    logistic = build_mlp(ModelConfig(hidden=[]), 784, 10)
    assert [type(m) for m in logistic] == [nn.Linear]
    assert logistic(torch.randn(2, 784)).shape == (2, 10)
    assert (
        build_mlp(ModelConfig(act=Activation.leaky, leaky_slope=0.2), 3, 2)[1].negative_slope == 0.2
    )


# Expected weight std for a 784 -> 400 layer, from torch.nn.init's formulas.
FAN_IN, FAN_OUT = 784, 400


def expected_std(init: Init, act: Activation) -> float:
    gain = {
        Activation.relu: math.sqrt(2),
        Activation.leaky: math.sqrt(2 / (1 + 0.01**2)),
        Activation.selu: 1.0,  # 'linear', per calculate_gain's SELU note
        Activation.tanh: 5 / 3,
        Activation.softplus: math.sqrt(2),
    }[act]
    if init in (Init.kaiming_normal, Init.kaiming_uniform):
        return gain / math.sqrt(FAN_IN)
    if init in (Init.xavier_normal, Init.xavier_uniform):
        return gain * math.sqrt(2 / (FAN_IN + FAN_OUT))
    if init is Init.lecun_normal:
        return 1 / math.sqrt(FAN_IN)
    if init is Init.orthogonal:
        return gain / math.sqrt(FAN_IN)  # rows orthonormal in 784 dims, scaled by gain
    return 1 / math.sqrt(3 * FAN_IN)  # default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))


@pytest.mark.parametrize(
    "init,act",
    itertools.product(
        Init,
        [Activation.relu, Activation.leaky, Activation.selu, Activation.tanh, Activation.softplus],
    ),
    ids=lambda v: v.name,
)
def test_init_statistics_match_torch_nn_init(init: Init, act: Activation) -> None:
    torch.manual_seed(0)
    model = build_mlp(ModelConfig(act=act, init=init, hidden=[FAN_OUT]), FAN_IN, 10)
    weight, bias = model[0].weight.detach(), model[0].bias.detach()
    std = expected_std(init, act)
    assert weight.mean().abs() < 0.02 * std * 10
    assert weight.std().item() == pytest.approx(std, rel=0.02)
    if init is Init.default:
        bound = 1 / math.sqrt(FAN_IN)
        assert bias.abs().max() <= bound and bias.abs().max() > 0.5 * bound
    else:
        assert torch.count_nonzero(bias) == 0
    if init is Init.orthogonal:
        gram = weight @ weight.T
        gain = std * math.sqrt(FAN_IN)
        torch.testing.assert_close(gram, gain**2 * torch.eye(FAN_OUT), atol=1e-4, rtol=1e-4)
    if init in (Init.kaiming_uniform, Init.xavier_uniform, Init.default):
        assert weight.abs().max() <= std * math.sqrt(3) + 1e-6


def test_default_init_is_nn_linears_own() -> None:
    torch.manual_seed(5)
    reference = nn.Linear(784, 200)
    torch.manual_seed(5)
    ours = build_mlp(ModelConfig(hidden=[]), 784, 200)[0]
    assert torch.equal(reference.weight, ours.weight) and torch.equal(reference.bias, ours.bias)
