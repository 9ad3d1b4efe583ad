"""The MLP in two forms (nn.Sequential, or raw tensors as in the tutorial's low-level version),
with registries of activations and initialisations. Adding either is one line in a dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn

from mlp_sweep.config import Activation, Impl, Init, ModelConfig

ACTIVATIONS: dict[Activation, Callable[[ModelConfig], nn.Module]] = {
    Activation.relu: lambda c: nn.ReLU(),
    Activation.leaky: lambda c: nn.LeakyReLU(c.leaky_slope),
    Activation.selu: lambda c: nn.SELU(),
    Activation.softplus: lambda c: nn.Softplus(beta=c.softplus_beta),
    Activation.tanh: lambda c: nn.Tanh(),
    Activation.sigmoid: lambda c: nn.Sigmoid(),
    Activation.elu: lambda c: nn.ELU(c.elu_alpha),
    Activation.gelu: lambda c: nn.GELU(),
    Activation.silu: lambda c: nn.SiLU(),
}


def init_nonlinearity(cfg: ModelConfig) -> tuple[Any, float | None]:
    """The (nonlinearity, param) that torch.nn.init should compute gains for.

    SELU gets 'linear' (variance 1/fan_in), as torch.nn.init.calculate_gain's SELU note asks
    for self-normalizing nets. Activations calculate_gain does not know (softplus, elu, gelu,
    silu) are ReLU-like for positive inputs and get ReLU's gain.
    """
    known = {
        Activation.relu: ("relu", None),
        Activation.leaky: ("leaky_relu", cfg.leaky_slope),
        Activation.selu: ("linear", None),
        Activation.tanh: ("tanh", None),
        Activation.sigmoid: ("sigmoid", None),
    }
    return known.get(cfg.act, ("relu", None))


def _gain(nonlinearity: Any, param: float | None) -> float:
    return nn.init.calculate_gain(nonlinearity, param)


def _default(w: Tensor, b: Tensor, nl: str, p: float | None) -> None:
    # Exactly nn.Linear.reset_parameters, so both impls draw the same numbers.
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    bound = 1.0 / math.sqrt(w.shape[1]) if w.shape[1] > 0 else 0.0
    nn.init.uniform_(b, -bound, bound)


def _zero_bias(init: Callable[[Tensor, Any, float | None], object]) -> Callable[..., None]:
    def apply(w: Tensor, b: Tensor, nl: str, p: float | None) -> None:
        init(w, nl, p)
        nn.init.zeros_(b)

    return apply


INITS: dict[Init, Callable[[Tensor, Tensor, Any, float | None], None]] = {
    Init.default: _default,
    Init.kaiming_normal: _zero_bias(
        lambda w, nl, p: nn.init.kaiming_normal_(w, a=p or 0.0, nonlinearity=nl)
    ),
    Init.kaiming_uniform: _zero_bias(
        lambda w, nl, p: nn.init.kaiming_uniform_(w, a=p or 0.0, nonlinearity=nl)
    ),
    Init.xavier_normal: _zero_bias(lambda w, nl, p: nn.init.xavier_normal_(w, _gain(nl, p))),
    Init.xavier_uniform: _zero_bias(lambda w, nl, p: nn.init.xavier_uniform_(w, _gain(nl, p))),
    # LeCun normal: std = 1/sqrt(fan_in) whatever the activation, which is what SELU expects.
    Init.lecun_normal: _zero_bias(
        lambda w, nl, p: nn.init.kaiming_normal_(w, nonlinearity="linear")
    ),
    Init.orthogonal: _zero_bias(lambda w, nl, p: nn.init.orthogonal_(w, _gain(nl, p))),
}


def layer_sizes(cfg: ModelConfig, in_features: int, out_features: int) -> list[int]:
    return [in_features, *cfg.hidden, out_features]


def init_parameters(cfg: ModelConfig, weights: list[Tensor], biases: list[Tensor]) -> None:
    """Initialise every layer in place with cfg.init, the gain following cfg.act."""
    nl, p = init_nonlinearity(cfg)
    with torch.no_grad():
        for w, b in zip(weights, biases, strict=True):
            INITS[cfg.init](w, b, nl, p)


class FunctionalMLP:
    """The tutorial's low-level MLP: plain tensors with requires_grad and x @ W.T + b.

    Its state_dict keys match the nn.Sequential form ("0.weight", "2.weight", ...), so either
    can load the other's parameters.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        in_features: int,
        out_features: int,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ):
        sizes = layer_sizes(cfg, in_features, out_features)
        self.weights = [torch.empty(o, i, device=device) for i, o in pairwise(sizes)]
        self.biases = [torch.empty(o, device=device) for o in sizes[1:]]
        init_parameters(cfg, self.weights, self.biases)
        self.weights = [w.to(dtype) for w in self.weights]
        self.biases = [b.to(dtype) for b in self.biases]
        for t in self.tensors():
            t.requires_grad_(True)
        self.act = ACTIVATIONS[cfg.act](cfg)
        self.output_act = cfg.output_act

    def tensors(self) -> Iterator[Tensor]:
        for w, b in zip(self.weights, self.biases, strict=True):
            yield w
            yield b

    def parameters(self) -> list[Tensor]:
        return list(self.tensors())

    def __call__(self, x: Tensor) -> Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w.t() + b
            if i < last or self.output_act:
                x = self.act(x)
        return x

    def state_dict(self) -> dict[str, Tensor]:
        state = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            state[f"{2 * i}.weight"], state[f"{2 * i}.bias"] = w.detach(), b.detach()
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                w.copy_(state[f"{2 * i}.weight"])
                b.copy_(state[f"{2 * i}.bias"])

    def train(self, mode: bool = True) -> FunctionalMLP:
        return self  # nothing behaves differently in training (no dropout, no batch norm)

    def eval(self) -> FunctionalMLP:
        return self


Model = nn.Module | FunctionalMLP


def _uninitialised_linear(in_features: int, out_features: int, device: torch.device) -> nn.Linear:
    """An nn.Linear whose parameters are left uninitialised, the RNG untouched.

    Both impls then draw the same numbers from one seed. This is what
    torch.nn.utils.skip_init does, without its to_empty(), whose meta-tensor path
    imports sympy: ~1.1 s in every process that builds a model (measured by cProfile).
    """
    linear = nn.Linear(in_features, out_features, device="meta")
    linear.weight = nn.Parameter(torch.empty(out_features, in_features, device=device))
    linear.bias = nn.Parameter(torch.empty(out_features, device=device))
    return linear


def build_mlp(
    cfg: ModelConfig,
    in_features: int,
    out_features: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Model:
    """The MLP as cfg.impl says, initialised by cfg.init from torch's global RNG.

    The initial values are drawn in float32 whatever the dtype, so an fp64 run starts from the
    same weights as an fp32 one.
    """
    device = torch.device(device)
    if cfg.impl is Impl.functional:
        return FunctionalMLP(cfg, in_features, out_features, device, dtype)
    sizes = layer_sizes(cfg, in_features, out_features)
    linears = [_uninitialised_linear(i, o, device) for i, o in pairwise(sizes)]
    init_parameters(cfg, [lin.weight for lin in linears], [lin.bias for lin in linears])
    layers: list[nn.Module] = []
    for i, lin in enumerate(linears):
        layers.append(lin)
        if i < len(linears) - 1 or cfg.output_act:
            layers.append(ACTIVATIONS[cfg.act](cfg))
    return nn.Sequential(*layers).to(dtype)
