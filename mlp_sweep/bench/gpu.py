"""`python -m mlp_sweep.bench gpu`: one command that measures a GPU machine (< ~8 min on one).

In order, each step timed and kept in one JSON (and the markdown table docs/speed.md shows):

1. tests: `pytest -m gpu` from the checkout (the CUDA checks, placement included);
2. epochs: seconds per model-epoch on full MNIST in fp32, tf32 and bf16 (the code a run uses),
   against the tutorial's data path on the same GPU (a shuffled DataLoader of 200, each batch
   copied to the GPU, fp32) and the matmul roofline at each precision;
3. sweeps: the README's 4-activation sweep through the entry point on the default launcher
   (one job per GPU) and fused (hydra/launcher=fused fuse=always), then a larger sweep packed
   1, 2, 4 and 8 jobs per GPU: models trained per second.

On a machine with no CUDA GPU it says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mlp_sweep.bench.training import (
    SWEEP,
    epoch_flops,
    machine,
    matmul_gflops,
    median_time,
    mlp_sweep_epochs,
    run_sweep,
    sync,
)
from mlp_sweep.config import Config, DataConfig, ModelConfig, OptimConfig, Precision, TrainerConfig
from mlp_sweep.training import precision as precisions
from mlp_sweep.training.files import DATA_DIR
from mlp_sweep.training.loop import make_optimizer
from mlp_sweep.training.model import build_mlp

ROOT = Path(__file__).resolve().parents[2]  # the checkout, where tests/ is
PRECISIONS = ("fp32", "tf32", "bf16")
HIDDEN = [200, 200]
# The packed sweep: the 4 activations x 4 seeds, fewer epochs than the README's 10 so that four
# packings fit the budget; models trained per second is runs / wall time.
PACK_SWEEP = ["-m", "model.act=relu,leaky,selu,softplus", "seed=range(4)"]


def no_gpu_line() -> str | None:
    """The one line to print where there is no CUDA GPU here; None where there is one."""
    if torch.cuda.is_available():
        return None
    build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
    return (
        f"mlp_sweep.bench gpu: no CUDA GPU on this machine ({build}); run it on one that "
        "has one (.ci/gpu-check.sh installs, tests and benchmarks in one go)"
    )


def tutorial_cuda_epoch(device: torch.device, batches: int, batch_size: int = 200) -> float:
    """Seconds per model-epoch of the tutorial's loop on the GPU, from its first `batches`
    training batches (and a sixth as many test batches), scaled to whole passes."""
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    loaders = [
        torch.utils.data.DataLoader(
            datasets.MNIST(str(DATA_DIR), train=train, download=False, transform=transform),
            batch_size=batch_size,
            shuffle=True,
        )
        for train in (True, False)
    ]
    model = build_mlp(ModelConfig(hidden=HIDDEN), 784, 10, device)
    optimizer = make_optimizer(model.parameters(), OptimConfig())
    loss_fn = torch.nn.CrossEntropyLoss()
    total = 0.0
    for loader, limit, train in ((loaders[0], batches, True), (loaders[1], batches // 6, False)):
        sync(device)
        tic, n = time.perf_counter(), 0
        with torch.set_grad_enabled(train):
            for n, (x, y) in enumerate(loader, start=1):
                x, y = x.to(device), y.to(device)
                loss = loss_fn(model(x.view(-1, 784)), y)
                if train:
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                if n == max(1, limit):
                    break
        sync(device)
        total += (time.perf_counter() - tic) / n * len(loader)
    return total


def run_tests(timeout: float) -> dict[str, Any]:
    """`pytest -m gpu` from the checkout: its summary line, failures and time."""
    if not (ROOT / "tests" / "test_gpu.py").exists():
        return {"skipped": f"no tests/ beside the package ({ROOT})"}
    tic = time.perf_counter()
    argv = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-n", "0", "-p", "no:randomly"]
    try:
        done = subprocess.run(
            [*argv, "tests"], cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"pytest -m gpu took over {timeout:.0f} s", "seconds": timeout}
    lines = done.stdout.strip().splitlines()
    return {
        "returncode": done.returncode,
        "summary": lines[-1] if lines else done.stderr.strip()[-500:],
        "failed": [line for line in lines if line.startswith(("FAILED", "ERROR"))],
        "seconds": time.perf_counter() - tic,
    }


def epochs(device: torch.device, repeats: int, n_epochs: int, batches: int) -> dict[str, Any]:
    """Per-epoch seconds by precision, the roofline at each, and the tutorial's loop."""
    flops = epoch_flops([784, *HIDDEN, 10])
    found: dict[str, Any] = {"epoch_gflop": flops / 1e9}
    for name in PRECISIONS:
        precisions.configure(name, device)
        cfg = Config(
            model=ModelConfig(hidden=HIDDEN),
            data=DataConfig(),
            trainer=TrainerConfig(batch_size=200, precision=Precision(name)),
            device=str(device),
        )
        times: list[float] = []
        for _ in range(repeats):
            times += mlp_sweep_epochs(cfg, device, n_epochs)
        peak = statistics.median(
            matmul_gflops(device, precisions.matmul_dtype(name)) for _ in range(repeats)
        )
        found[name] = {
            "mlp_sweep_s": statistics.median(times),
            "matmul_gflops": peak,
            "roofline_s": flops / (peak * 1e9),
        }
    precisions.configure("fp32", device)
    tutorial, _ = median_time(lambda: tutorial_cuda_epoch(device, batches), repeats)
    found["tutorial_s"] = tutorial
    return found


def sweeps(pack: list[int], pack_epochs: int, readme: bool = True) -> dict[str, Any]:
    """The README's sweep alone and fused (`readme`), then the packed sweep at each
    jobs_per_gpu."""
    found: dict[str, Any] = {}
    cuda = ["device=cuda"]
    plans: dict[str, list[str]] = {}
    if readme:
        plans["alone"] = [*SWEEP, *cuda]
        plans["fused"] = [*SWEEP, *cuda, "hydra/launcher=fused", "hydra.launcher.fuse=always"]
    for k in pack:
        plans[f"packed_{k}"] = [
            *PACK_SWEEP, *cuda, f"trainer.epochs={pack_epochs}", f"hydra.launcher.jobs_per_gpu={k}",
        ]  # fmt: skip
    for name, args in plans.items():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                done = run_sweep(args, Path(tmp))
            except SystemExit as failed:  # one failed sweep must not cost the others
                found[name] = {"error": str(failed)[-2000:]}
                continue
        done["models_per_s"] = done["runs"] / done["wall_s"]
        found[name] = done
    return found


def table(r: dict[str, Any]) -> str:
    """The markdown docs/speed.md shows."""
    m, e = r["machine"], r.get("epochs", {})
    lines = [
        f"{m.get('gpu', '?')}, {m['cores']} cores, torch {m['torch']}, {m['date']}",
        "",
        "| precision | s / model-epoch | roofline s | matmul TFLOP/s | vs the tutorial (fp32) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in PRECISIONS:
        if name in e:
            p = e[name]
            lines.append(
                f"| {name} | {p['mlp_sweep_s']:.4f} | {p['roofline_s']:.5f} | "
                f"{p['matmul_gflops'] / 1000:.0f} | {e['tutorial_s'] / p['mlp_sweep_s']:.1f}x |"
            )
    if "tutorial_s" in e:
        lines.append(f"| tutorial | {e['tutorial_s']:.3f} | | | 1.0x |")
    lines += [
        "",
        "| sweep | runs | wall s | models / s | test_acc |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, s in r.get("sweeps", {}).items():
        if "error" in s:
            lines.append(f"| {name} | failed | | | {s['error'].splitlines()[0][:80]} |")
            continue
        accs = " ".join(f"{a:.4f}" for a in s["test_acc"][:4])
        accs += " ..." if len(s["test_acc"]) > 4 else ""
        lines.append(
            f"| {name} | {s['runs']} | {s['wall_s']:.1f} | {s['models_per_s']:.2f} | {accs} |"
        )
    tests = r.get("tests", {})
    lines += ["", f"pytest -m gpu: {tests.get('summary') or tests.get('skipped') or tests}"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlp_sweep.bench gpu", description=__doc__)
    parser.add_argument(
        "--json", type=Path, default=None, help="default: outputs/bench/gpu-<time>.json"
    )
    parser.add_argument("--no-tests", action="store_true", help="skip pytest -m gpu")
    parser.add_argument("--tests-timeout", type=float, default=240.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="mlp_sweep epochs per repeat")
    parser.add_argument("--tutorial-batches", type=int, default=60)
    parser.add_argument("--pack", default="1,2,4,8", help="jobs_per_gpu values to sweep")
    parser.add_argument("--pack-epochs", type=int, default=5)
    parser.add_argument(
        "--no-readme-sweep", action="store_true", help="skip the 4-activation sweep alone and fused"
    )
    args = parser.parse_args(argv)
    line = no_gpu_line()
    if line is not None:
        print(line, file=sys.stderr)
        return 2
    device = torch.device("cuda", 0)
    path = args.json or Path("outputs/bench") / f"gpu-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine(), "seconds": {}}
    steps = [
        (
            "tests",
            lambda: {"skipped": "--no-tests"} if args.no_tests else run_tests(args.tests_timeout),
        ),
        ("epochs", lambda: epochs(device, args.repeats, args.epochs, args.tutorial_batches)),
        (
            "sweeps",
            lambda: sweeps(
                [int(k) for k in args.pack.split(",") if k],
                args.pack_epochs,
                readme=not args.no_readme_sweep,
            ),
        ),
    ]
    for name, step in steps:
        tic = time.perf_counter()
        print(f"bench gpu: {name} ...", flush=True)
        result[name] = step()
        result["seconds"][name] = time.perf_counter() - tic
        path.write_text(json.dumps(result, indent=2) + "\n")  # what is done, if a later step dies
    markdown = table(result)
    path.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)
    print(f"json: {path}")
    return 0
