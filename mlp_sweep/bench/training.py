"""`python -m mlp_sweep.bench`: how far mlp_sweep is from the tutorial and from the machine.

One process, each measurement repeated, medians, printed as a table and written as JSON:

- tutorial: the tutorial's data path (torchvision MNIST, ToTensor + Normalize per sample, a
  shuffled DataLoader of 200) with the same MLP and SGD: seconds per model-epoch (a training
  pass and a test pass). Timed over the first --tutorial-batches batches of each pass and
  scaled to the whole pass: its cost per batch is steady, and a whole epoch takes ~18 s here.
- mlp_sweep: the code a run uses (load_data, build_mlp, make_optimizer, train_epoch, evaluate),
  seconds per model-epoch on the chosen device and precision.
- roofline: the model-epoch's matmul FLOPs (forward, backward without the input's gradient,
  the test pass) over the matmul throughput measured here, at the same threads and precision.
- sweep: a real 4-run sweep through the entry point (`-m model.act=relu,leaky,selu,softplus`,
  the default launcher): its wall time, the overhead per run (wall time not spent training,
  the training spread over the runs at once, per run), its peak memory (PSS summed over its
  processes), and its wall time against the tutorial's loop run four times.

`python -m mlp_sweep.bench sweep-overhead` measures instead what a sweep costs per job around
its runs, beside a plain Hydra app (mlp_sweep/bench/overhead.py); `python -m mlp_sweep.bench fused`
K runs trained as one stack against the same K alone (mlp_sweep/bench/stacked.py).

speedup = tutorial / mlp_sweep; efficiency = roofline / mlp_sweep. Timings on a shared machine
are noisy: read the ratios, which are measured in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from mlp_sweep import labels
from mlp_sweep.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    Precision,
    TrainerConfig,
)
from mlp_sweep.results.summary import SUMMARY_FILE
from mlp_sweep.run.record import METRICS_FILE
from mlp_sweep.training import precision as precisions
from mlp_sweep.training.data import load_data
from mlp_sweep.training.device import resolve_device
from mlp_sweep.training.files import DATA_DIR
from mlp_sweep.training.loop import evaluate, make_optimizer, train_epoch
from mlp_sweep.training.model import build_mlp

N_TRAIN, N_TEST = 60_000, 10_000
SWEEP = ["-m", "model.act=relu,leaky,selu,softplus"]


def epoch_flops(sizes: list[int], n_train: int = N_TRAIN, n_test: int = N_TEST) -> float:
    """Matmul FLOPs of one model-epoch: per training sample a forward (2*a*b a layer) and a
    backward (the weights' and the inputs' gradients, 2*a*b each, the first layer's input
    gradient excepted); per test sample a forward."""
    forward = sum(2 * a * b for a, b in pairwise(sizes))
    first_input_grad = 2 * sizes[0] * sizes[1]
    return n_train * (3 * forward - first_input_grad) + n_test * forward


def median_time(fn: Callable[[], float | None], repeats: int) -> tuple[float, list[float]]:
    """Median of fn's durations (fn returns its own duration, or None to be timed whole)."""
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        took = fn()
        times.append(took if took is not None else time.perf_counter() - tic)
    return statistics.median(times), times


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048) -> float:
    """Throughput of an n x n matmul: what the hardware gives at this size and precision."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 20 if device.type == "cpu" else 200
    torch.mm(a, b)
    sync(device)
    tic = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - tic) / 1e9


def tutorial_epoch(batch_size: int, hidden: list[int], batches: int) -> float:
    """Seconds per model-epoch of the tutorial's loop, from its first `batches` batches."""
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    train = torch.utils.data.DataLoader(
        datasets.MNIST(str(DATA_DIR), train=True, download=False, transform=transform),
        batch_size=batch_size,
        shuffle=True,
    )
    test = torch.utils.data.DataLoader(
        datasets.MNIST(str(DATA_DIR), train=False, download=False, transform=transform),
        batch_size=batch_size,
        shuffle=True,
    )
    model = build_mlp(ModelConfig(hidden=hidden), 784, 10)
    optimizer = make_optimizer(model.parameters(), OptimConfig())
    loss_fn = torch.nn.CrossEntropyLoss()
    tic, n = time.perf_counter(), 0
    for n, (x, y) in enumerate(train, start=1):
        loss = loss_fn(model(x.view(-1, 28 * 28)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if n == batches:
            break
    train_s = (time.perf_counter() - tic) / n * len(train)
    tic, n = time.perf_counter(), 0
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for n, (x, y) in enumerate(test, start=1):
            logits = model(x.view(-1, 28 * 28))
            test_loss += loss_fn(logits, y).item()
            correct += int(logits.argmax(1).eq(y).sum())
            if n == max(1, batches // 6):
                break
    test_s = (time.perf_counter() - tic) / n * len(test)
    return train_s + test_s


def mlp_sweep_epochs(cfg: Config, device: torch.device, epochs: int) -> list[float]:
    """Seconds of each of `epochs` model-epochs, as a run trains them (first one excluded)."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    data = load_data(cfg.data, device)
    model = build_mlp(cfg.model, data.num_features, data.num_classes, device)
    optimizer = make_optimizer(model.parameters(), cfg.optim)
    times = []
    with precisions.autocast(cfg.trainer.precision, device):
        for _ in range(epochs + 1):
            sync(device)
            tic = time.perf_counter()
            train_epoch(
                model,
                optimizer,
                data.x_train,
                data.y_train,
                cfg.trainer.batch_size,
                cfg.loss,
                generator,
            )
            evaluate(model, data.x_test, data.y_test, cfg.loss, cfg.trainer.eval_batch_size)
            sync(device)
            times.append(time.perf_counter() - tic)
    return times[1:]  # the first pays one-time costs (allocator, kernels' first calls)


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def run_sweep(args: list[str], cwd: Path) -> dict[str, Any]:
    """A real sweep through the entry point; wall time, its records, its peak memory."""
    import pandas as pd

    sweep_dir = cwd / "sweep"
    argv = [sys.executable, "-m", "mlp_sweep", *args, f"hydra.sweep.dir={sweep_dir}"]
    tic = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    peak_kb = 0
    while proc.poll() is None:
        peak_kb = max(peak_kb, sum(_pss_kb(pid) for pid in _session_pids(proc.pid)))
        time.sleep(0.25)  # sampling /proc costs CPU the sweep would otherwise get
    wall = time.perf_counter() - tic
    out = proc.stdout.read().decode() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(
            f"mlp_sweep.bench.training: the sweep failed ({proc.returncode}):\n{out[-2000:]}"
        )
    frame = pd.read_csv(sweep_dir / SUMMARY_FILE)
    records = [json.loads((Path(d) / METRICS_FILE).read_text()) for d in frame["run_dir"]]
    cores = len(os.sched_getaffinity(0))
    threads = max(r["threads"] or 1 for r in records)
    slots = max(1, min(len(records), cores // threads))  # runs training at once
    train = float(frame["train_seconds"].sum())
    return {
        "command": labels.command(*args),
        "runs": len(frame),
        "wall_s": wall,
        "train_s_sum": train,
        "runs_at_once": slots,
        # Wall time not spent in train_epoch/evaluate (the runs' training spread over the
        # slots that ran at once), per run.
        "overhead_per_run_s": max(wall - train / slots, 0.0) / len(frame),
        "peak_pss_mb": peak_kb / 1024,
        "test_acc": frame["test_acc"].round(4).tolist(),
    }


def machine() -> dict[str, Any]:
    info = {
        "date": time.strftime("%Y-%m-%d"),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlp_sweep.bench", description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, auto")
    parser.add_argument("--precision", default="fp32", choices=precisions.CHOICES)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--hidden", default="200,200", help="hidden widths, e.g. 200,200")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="mlp_sweep epochs per repeat")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--tutorial-batches", type=int, default=60)
    parser.add_argument("--no-tutorial", action="store_true")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument(
        "--sweep-args",
        default=" ".join(SWEEP),
        help="the sweep's arguments, one string (default: %(default)s)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="default: outputs/bench/<time>.json"
    )
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    hidden = [int(w) for w in args.hidden.split(",") if w]
    cfg = Config(
        model=ModelConfig(hidden=hidden),
        data=DataConfig(),
        trainer=TrainerConfig(batch_size=args.batch_size, precision=Precision(args.precision)),
        device=str(device),
    )
    precisions.configure(args.precision, device)
    dtype = precisions.matmul_dtype(args.precision)
    sizes = [784, *hidden, 10]
    flops = epoch_flops(sizes)

    result: dict[str, Any] = {"machine": machine(), "device": str(device)}
    result["options"] = {
        "precision": args.precision,
        "batch_size": args.batch_size,
        "hidden": hidden,
        "repeats": args.repeats,
    }
    peak = statistics.median(matmul_gflops(device, dtype) for _ in range(args.repeats))
    roofline = flops / (peak * 1e9)
    ours_all: list[float] = []
    for _ in range(args.repeats):
        ours_all += mlp_sweep_epochs(cfg, device, args.epochs)
    ours = statistics.median(ours_all)
    result.update(
        matmul_gflops=peak,
        epoch_gflop=flops / 1e9,
        roofline_s=roofline,
        mlp_sweep_s=ours,
        mlp_sweep_all_s=ours_all,
        efficiency=roofline / ours,
    )
    if not args.no_tutorial:
        tutorial, tutorial_all = median_time(
            lambda: tutorial_epoch(args.batch_size, hidden, args.tutorial_batches), args.repeats
        )
        result.update(tutorial_s=tutorial, tutorial_all_s=tutorial_all, speedup=tutorial / ours)
    if not args.no_sweep:
        with tempfile.TemporaryDirectory() as tmp:
            sweep = run_sweep(shlex.split(args.sweep_args), Path(tmp))
        if "tutorial_s" in result:
            epochs = 10  # the tutorial's loop, four times: once per activation
            sweep["tutorial_4x_s"] = 4 * epochs * result["tutorial_s"]
            sweep["vs_tutorial_4x"] = sweep["tutorial_4x_s"] / sweep["wall_s"]
        result["sweep"] = sweep

    print(table(result))
    path = args.json or Path("outputs/bench") / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"json: {path}")
    return 0


def table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"{m['date']}  {m['cpu']}  {m['cores']} cores, {m['threads']} torch threads"
        + (f"  {m['gpu']}" if "gpu" in m else "")
        + f"  torch {m['torch']}",
        f"device {r['device']}, {r['options']['precision']}, batch {r['options']['batch_size']}, "
        f"hidden {r['options']['hidden']}, medians of {r['options']['repeats']} repeats",
        "",
        f"{'':<28}{'s / model-epoch':>16}",
    ]
    if "tutorial_s" in r:
        lines.append(f"{'tutorial (DataLoader)':<28}{r['tutorial_s']:>16.3f}")
    lines.append(f"{'mlp_sweep':<28}{r['mlp_sweep_s']:>16.3f}")
    lines.append(
        f"{'roofline':<28}{r['roofline_s']:>16.3f}   ({r['epoch_gflop']:.1f} GFLOP at "
        f"{r['matmul_gflops']:.0f} GFLOP/s, 2048^2 matmul)"
    )
    lines.append("")
    if "speedup" in r:
        lines.append(f"speedup    = tutorial / mlp_sweep  = {r['speedup']:.1f}x")
    lines.append(f"efficiency = roofline / mlp_sweep  = {r['efficiency']:.2f}")
    if "sweep" in r:
        s = r["sweep"]
        lines += [
            "",
            f"sweep: {s['command']}",
            f"  {s['runs']} runs in {s['wall_s']:.1f} s wall, {s['runs_at_once']} at once; "
            f"training {s['train_s_sum']:.1f} s in all",
            f"  overhead per run {s['overhead_per_run_s']:.2f} s; "
            f"peak memory {s['peak_pss_mb']:.0f} MB (PSS, all its processes)",
        ]
        if "vs_tutorial_4x" in s:
            lines.append(
                f"  the tutorial's loop four times: {s['tutorial_4x_s']:.0f} s -> "
                f"{s['vs_tutorial_4x']:.1f}x faster"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
