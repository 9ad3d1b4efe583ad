"""`python -m mlp_sweep.bench fused`: K runs trained as one stack against the same K alone.

In one process, medians of repeats, on full MNIST (the tutorial's MLP, SGD, batch 200):
- alone: seconds per model-epoch of K runs one after another (train_epoch + evaluate, the
  code a run uses, hand-written step included);
- fused: seconds per model-epoch of the same K runs as one stack
  (mlp_sweep.training.stacked_sgd), i.e. the
  stack's epoch divided by K.
The K runs cycle through relu, leaky, selu, softplus with one seed (one batch order), as
hydra/launcher=fused groups them. Then the README's 4-activation sweep through the entry
point, on the default launcher and on hydra/launcher=fused: wall time of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mlp_sweep.config import Activation, Config, ModelConfig, Precision, TrainerConfig
from mlp_sweep.training import precision as precisions
from mlp_sweep.training.data import batch_indices, load_data
from mlp_sweep.training.loop import History, evaluate, make_optimizer, train_epoch
from mlp_sweep.training.model import build_mlp
from mlp_sweep.training.stacked import Member, StackedMLP
from mlp_sweep.training.stacked_sgd import StackedSGD, step

ACTS = [Activation.relu, Activation.leaky, Activation.selu, Activation.softplus]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _configs(k: int, precision: Precision) -> list[Config]:
    trainer = TrainerConfig(precision=precision)
    return [Config(model=ModelConfig(act=ACTS[i % len(ACTS)]), trainer=trainer) for i in range(k)]


def alone_epoch(cfgs: list[Config], device: torch.device) -> float:
    """Seconds of one model-epoch, each run trained alone, averaged over the K runs."""
    total = 0.0
    for cfg in cfgs:
        dtype = precisions.dtype(cfg.trainer.precision)
        data = load_data(cfg.data, device, dtype)
        torch.manual_seed(cfg.seed)
        model = build_mlp(cfg.model, data.num_features, data.num_classes, device, dtype)
        optimizer = make_optimizer(model.parameters(), cfg.optim)
        generator = torch.Generator().manual_seed(cfg.seed)
        with precisions.autocast(cfg.trainer.precision, device):
            _sync(device)
            tic = time.perf_counter()
            train_epoch(model, optimizer, data.x_train, data.y_train, 200, cfg.loss, generator)
            evaluate(model, data.x_test, data.y_test, cfg.loss)
            _sync(device)
        total += time.perf_counter() - tic
    return total / len(cfgs)


def fused_epoch(cfgs: list[Config], device: torch.device) -> float:
    """Seconds of one model-epoch of the K runs as one stack (the stack's epoch / K)."""
    first = cfgs[0]
    dtype = precisions.dtype(first.trainer.precision)
    data = load_data(first.data, device, dtype)
    members = []
    for cfg in cfgs:
        torch.manual_seed(cfg.seed)
        model = build_mlp(cfg.model, data.num_features, data.num_classes, device, dtype)
        optimizer = make_optimizer(model.parameters(), cfg.optim)
        generator = torch.Generator().manual_seed(cfg.seed)
        members.append(Member(cfg, model, optimizer, generator, History()))
    stack = StackedMLP(members)
    sgd = StackedSGD(stack)
    generator = members[0].generator
    with precisions.autocast(first.trainer.precision, device):
        _sync(device)
        tic = time.perf_counter()
        for idx in batch_indices(len(data.x_train), 200, generator, data.x_train.device):
            xb, yb = data.x_train.index_select(0, idx), data.y_train.index_select(0, idx)
            step(stack, sgd, xb, yb, first.loss)
        stack.evaluate(data.x_test, data.y_test, first.loss, 10_000)
        _sync(device)
    return (time.perf_counter() - tic) / len(cfgs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlp_sweep.bench fused")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=precisions.CHOICES)
    parser.add_argument("--sizes", default="4,8,16", help="K, e.g. 4,8,16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from mlp_sweep.training.device import resolve_device

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = Precision[args.precision]
    precisions.configure(precision, device)
    print(f"device {device}, {args.precision}, {torch.get_num_threads()} torch threads, "
          f"medians of {args.repeats}")  # fmt: skip
    print(f"{'K':>4}  {'alone s/model-epoch':>20}  {'fused s/model-epoch':>20}  speedup")
    rows: list[dict[str, Any]] = []
    for k in [int(s) for s in args.sizes.split(",")]:
        cfgs = _configs(k, precision)
        alone_epoch(cfgs[:1], device)  # warm-up: first calls, allocator
        fused_epoch(cfgs[:2], device)
        alone, fused = [], []
        for _ in range(args.repeats):  # alternated, so drift in the machine's speed hits both
            alone.append(alone_epoch(cfgs, device))
            fused.append(fused_epoch(cfgs, device))
        row = {"k": k, "alone_s": statistics.median(alone), "fused_s": statistics.median(fused)}
        row["speedup"] = row["alone_s"] / row["fused_s"]
        rows.append(row)
        print(f"{k:>4}  {row['alone_s']:>20.3f}  {row['fused_s']:>20.3f}  {row['speedup']:.2f}x",
              flush=True)  # fmt: skip
    result: dict[str, Any] = {"device": str(device), "precision": args.precision, "sizes": rows}
    if not args.no_sweep:
        from mlp_sweep.bench.training import SWEEP, run_sweep

        sweeps = {}
        with tempfile.TemporaryDirectory(prefix="mlp_sweep-fusedbench-") as tmp:
            for name, extra in (("default", []), ("fused", ["hydra/launcher=fused"])):
                cwd = Path(tmp) / name
                cwd.mkdir()
                extra = [*extra, f"device={args.device}", f"trainer.precision={args.precision}"]
                sweeps[name] = run_sweep([*SWEEP, *extra], cwd)
        d, f = sweeps["default"], sweeps["fused"]
        print(f"sweep: {d['command']}")
        print(f"  default launcher {d['wall_s']:.1f} s wall; hydra/launcher=fused "
              f"{f['wall_s']:.1f} s wall -> {d['wall_s'] / f['wall_s']:.2f}x")  # fmt: skip
        print(f"  test_acc default {d['test_acc']}, fused {f['test_acc']}")
        result["sweep"] = sweeps
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
