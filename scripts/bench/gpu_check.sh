#!/usr/bin/env bash
# The one command of a session on the CUDA machine (see scripts/bench/README.md, "GPU check"): after the two install
# steps of ../shared/tools/gpu-wheels.sh, from the repository root there:
#     bash scripts/bench/gpu_check.sh
# It writes $OUT/nvidia-smi.txt, $OUT/gpu_check.json (written again after every step) and $OUT/gpu_check.log, and
# stops within GPU_CHECK_TIMEOUT seconds (450; gpu_check.py's own budget is 420). On a CPU, to try it:
#     OUT=/tmp/gpuout PYTHON=.venv/bin/python bash scripts/bench/gpu_check.sh --workload outliers
# Extra arguments go to gpu_check.py (--budget, --workload, --parts, ...).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpuout}
mkdir -p "$OUT"
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
else
  echo "nvidia-smi: not found on $(hostname)" >"$OUT/nvidia-smi.txt"
fi
timeout -k 10 "${GPU_CHECK_TIMEOUT:-450}" "$PY" scripts/bench/gpu_check.py --out "$OUT/gpu_check.json" "$@" 2>&1 | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 124 ] && echo "gpu_check.py: stopped by timeout after ${GPU_CHECK_TIMEOUT:-450} s; $OUT/gpu_check.json has what was done" | tee -a "$OUT/gpu_check.log"
exit "$rc"
