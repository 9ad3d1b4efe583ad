"""The training step without autograd, for the runs most sweeps are made of.

A step of the 784-200-200-10 MLP is a dozen small kernels; on a CPU, autograd's bookkeeping
around them (graph nodes, gradient buffers allocated and freed every step, the optimizer's
per-parameter loop) costs about a quarter of the epoch. For an MLP of Linear layers and one of
mlp_sweep's activations, trained with cross-entropy and plain SGD (no momentum, no weight
decay: the tutorial's setup), this module runs the same step by hand: the forward pass keeps
what the backward pass needs, and the backward pass calls the very ATen kernels autograd would
call (addmm/mm, the activation's own *_backward, nll_loss_backward, _log_softmax_backward_data)
and updates each layer as soon as its gradients are known. Same kernels, same inputs, same
order of updates: the same numbers, bit for bit (tests/test_fast.py checks every activation,
both model forms, on and off the logits, against the autograd path).

Anything else (Adam, momentum, weight decay, the MSE loss, bf16 autocast, a compiled model)
trains through autograd (loss.backward(), optimizer.step()).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mlp_sweep.training.model import FunctionalMLP, Model

aten = torch.ops.aten

# (gradient of the activation's output, its input, its output) -> gradient of its input,
# with the arguments autograd's own backward formula passes (derivatives.yaml).
ActGrad = Callable[[Tensor, Tensor, Tensor], Tensor]


def activation_grad(act: nn.Module) -> ActGrad | None:
    """The backward of one of mlp_sweep's activation modules, or None for any other module."""
    if isinstance(act, nn.ReLU):
        return lambda g, z, a: aten.threshold_backward(g, a, 0)
    if isinstance(act, nn.LeakyReLU):
        slope = act.negative_slope
        return lambda g, z, a: aten.leaky_relu_backward(g, z, slope, False)
    if isinstance(act, nn.SELU):  # selu is elu with SELU's alpha and scale
        alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
        return lambda g, z, a: aten.elu_backward(g, alpha, scale, 1, False, z)
    if isinstance(act, nn.ELU):
        alpha = act.alpha
        return lambda g, z, a: aten.elu_backward(g, alpha, 1, 1, False, z)
    if isinstance(act, nn.Softplus):
        beta, threshold = act.beta, act.threshold
        return lambda g, z, a: aten.softplus_backward(g, z, beta, threshold)
    if isinstance(act, nn.Tanh):
        return lambda g, z, a: aten.tanh_backward(g, a)
    if isinstance(act, nn.Sigmoid):
        return lambda g, z, a: aten.sigmoid_backward(g, a)
    if isinstance(act, nn.GELU):
        approximate = act.approximate
        return lambda g, z, a: aten.gelu_backward(g, z, approximate=approximate)
    if isinstance(act, nn.SiLU):
        return lambda g, z, a: aten.silu_backward(g, z)
    return None


@dataclass
class Layer:
    weight: Tensor
    bias: Tensor
    act: nn.Module | None  # applied after the layer, or None
    act_grad: ActGrad | None


@dataclass
class ManualStep:
    layers: list[Layer]
    fused_bias: bool  # nn.Linear: addmm(b, x, W.t()); the functional form: x @ W.t() + b
    lr: float

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """One SGD step on the batch (x, y); returns the batch's mean loss (on the device)."""
        with torch.no_grad():
            saved = []
            h = x
            for layer in self.layers:
                if self.fused_bias:
                    z = torch.addmm(layer.bias, h, layer.weight.t())
                else:
                    z = h @ layer.weight.t() + layer.bias
                a = layer.act(z) if layer.act is not None else z
                saved.append((h, z, a))
                h = a
            logp = torch._log_softmax(h, 1, False)
            loss, total_weight = aten.nll_loss_forward(logp, y, None, 1, -100)
            g = aten.nll_loss_backward(torch.ones_like(loss), logp, y, None, 1, -100, total_weight)
            g = aten._log_softmax_backward_data(g, logp, 1, logp.dtype)
            for i in range(len(self.layers) - 1, -1, -1):
                layer = self.layers[i]
                h_in, z, a = saved[i]
                if layer.act_grad is not None:
                    g = layer.act_grad(g, z, a)
                grad_w = g.t().mm(h_in)
                grad_b = g.sum(0)
                if i > 0:
                    g = g.mm(layer.weight)  # with the weights before this step's update
                layer.weight.add_(grad_w, alpha=-self.lr)
                layer.bias.add_(grad_b, alpha=-self.lr)
            return loss


def _layers(model: Model) -> tuple[list[Layer], bool] | None:
    if isinstance(model, FunctionalMLP):
        grad = activation_grad(model.act)
        if grad is None:
            return None
        last = len(model.weights) - 1
        functional = [
            Layer(w, b, *((model.act, grad) if i < last or model.output_act else (None, None)))
            for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True))
        ]
        return functional, False
    if not isinstance(model, nn.Sequential):
        return None
    layers: list[Layer] = []
    for module in model:
        if isinstance(module, nn.Linear) and module.bias is not None:
            layers.append(Layer(module.weight, module.bias, None, None))
        elif layers and layers[-1].act is None and (grad := activation_grad(module)) is not None:
            layers[-1].act, layers[-1].act_grad = module, grad
        else:
            return None
    return (layers, True) if layers else None


def manual_step(
    model: Model, optimizer: torch.optim.Optimizer, cross_entropy: bool
) -> ManualStep | None:
    """The hand-written step for this model and optimizer, or None where autograd must train."""
    if not cross_entropy or type(optimizer) is not torch.optim.SGD:
        return None
    autocast = any(torch.is_autocast_enabled(d) for d in ("cpu", "cuda"))
    if autocast or len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    if group["momentum"] or group["weight_decay"] or group["nesterov"] or group["maximize"]:
        return None
    found = _layers(model)
    if found is None:
        return None
    layers, fused = found
    params = {id(p) for p in group["params"]}
    if params != {id(t) for layer in layers for t in (layer.weight, layer.bias)}:
        return None
    return ManualStep(layers, fused, float(group["lr"]))
