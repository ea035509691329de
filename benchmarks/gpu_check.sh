#!/usr/bin/env bash
# GPU check (issue 16): refine/align step times, peak CUDA memory and generation throughput on random-weight
# Qwen2.5-1.5B and 7B shapes, offline, in a few minutes on one GPU. Writes benchmarks/gpu_check.json.
#   bash benchmarks/gpu_check.sh [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 470 "$PY" benchmarks/gpu_check.py --shapes qwen2.5-1.5b,qwen2.5-7b --device cuda --out "${1:-benchmarks/gpu_check.json}"
