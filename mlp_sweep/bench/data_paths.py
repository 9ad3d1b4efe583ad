"""One training epoch of the 784-200-200-10 MLP on full MNIST: the tutorial's DataLoader
(ToTensor + Normalize per sample) against mlp_sweep's on-device tensor + index slices.

    python -m mlp_sweep.bench.data_paths [--repeats 3]

Both run in this one process, alternating, and the medians and their ratio are printed: the
machine is shared, so only the ratio is meaningful.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torchvision import datasets, transforms

from mlp_sweep.config import DataConfig, Loss, ModelConfig, OptimConfig
from mlp_sweep.training.data import load_data
from mlp_sweep.training.files import DATA_DIR, prepare_raw
from mlp_sweep.training.loop import make_optimizer, train_epoch
from mlp_sweep.training.model import build_mlp


def tutorial_epoch() -> float:
    loader = torch.utils.data.DataLoader(
        datasets.MNIST(
            str(DATA_DIR),
            train=True,
            download=False,
            transform=transforms.Compose(
                [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
            ),
        ),
        batch_size=200,
        shuffle=True,
    )
    model = build_mlp(ModelConfig(), 784, 10)
    opt = make_optimizer(model.parameters(), OptimConfig())
    tic = time.perf_counter()
    for data, target in loader:
        loss = F.cross_entropy(model(data.view(-1, 784)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - tic


def mlp_sweep_epoch() -> float:
    tic = time.perf_counter()
    data = load_data(DataConfig(), torch.device("cpu"))  # loading counted, as a run pays it
    model = build_mlp(ModelConfig(), 784, 10)
    opt = make_optimizer(model.parameters(), OptimConfig())
    train_epoch(
        model,
        opt,
        data.x_train,
        data.y_train,
        200,
        Loss.ce,
        torch.Generator().manual_seed(0),
    )
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    prepare_raw(DataConfig())
    tutorial, ours = [], []
    for _ in range(args.repeats):
        tutorial.append(tutorial_epoch())
        ours.append(mlp_sweep_epoch())
    t, o = statistics.median(tutorial), statistics.median(ours)
    print(f"tutorial DataLoader epoch: median {t:.2f}s  {[round(x, 2) for x in tutorial]}")
    print(f"mlp_sweep epoch (load included): median {o:.2f}s  {[round(x, 2) for x in ours]}")
    print(f"ratio: {t / o:.1f}x; 10 epochs: tutorial ~{10 * t:.0f}s, mlp_sweep ~{10 * o:.0f}s")


if __name__ == "__main__":
    main()
