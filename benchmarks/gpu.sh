#!/usr/bin/env bash
# The prepared GPU check (see benchmarks/gpu_check.py): JAX sees the GPU, a GPU run agrees with
# CPU float64, throughput at 1e5 and 1e6 trajectories. Run from anywhere; finishes well inside
# 10 minutes on an H100. Figures go to benchmarks/RESULTS.md by hand, with the device's name.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
timeout 540 python benchmarks/gpu_check.py "$@"
