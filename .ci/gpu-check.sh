#!/usr/bin/env bash
# A fresh GPU machine in one go: install, the CUDA tests, the GPU benchmark, its JSON printed.
#
#   bash .ci/gpu-check.sh [OUT_DIR]        # default: $OUT if set, else outputs/gpu-check
#
# `python -m mlp_sweep.bench gpu` runs `pytest -m gpu` as its first step (its summary and
# failures land in the JSON), then the epochs and the sweeps: ~5-8 minutes on one GPU.
# Installs as the README says where a package index answers. A machine that reaches none (a
# lent GPU machine whose image already holds torch, pandas, matplotlib and pytest) installs
# from wheels put in .whl/ beforehand, e.g. on a machine that has the index:
#   pip download --no-deps -d .whl hydra-core==1.3.2 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-outputs/gpu-check}}"
py="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
mkdir -p "$out"

echo "== machine"
nvidia-smi -L || echo "nvidia-smi: not found"
"$py" --version

echo "== install"
if [ -d .whl ]; then
    "$py" -m pip install -q --no-index --find-links .whl --no-build-isolation -e . || exit 1
else
    "$py" -m pip install -q -e ".[dev,cluster,search,viz]" || exit 1
fi

echo "== python -m mlp_sweep.bench gpu (pytest -m gpu first)"
"$py" -m mlp_sweep.bench gpu --json "$out/bench-gpu.json" 2>&1 | tee "$out/bench-gpu.log"
code=${PIPESTATUS[0]}

echo "== $out/bench-gpu.json"
cat "$out/bench-gpu.json" 2>/dev/null || echo "(not written: exit $code)"
exit "$code"
