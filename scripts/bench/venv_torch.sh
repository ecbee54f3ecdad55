# Sourced by setup_inc.sh and setup_nncf.sh: what a peer's venv of its own needs before the peer itself.
# torch goes first, pinned (TORCH_SPEC), so that nothing resolves an unpinned torch (a multi-GB CUDA build).

# torch's version in $PY, without its local part ("2.13.0", not "2.13.0+cpu"); empty where torch does not import.
torch_version() {
    "$PY" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || true
}

# venv_with_torch TAG DIR: DIR made with $PYTHON (python3.11) where missing, and $TORCH_SPEC (torch==2.13.0)
# installed in it where another torch, or none, is there. Sets PY (DIR's python) and TORCH_WANT (the version).
venv_with_torch() {
    local tag=$1 dir=$2 have
    PYTHON=${PYTHON:-python3.11}
    TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
    PY=$dir/bin/python
    if [ -x "$PY" ]; then echo "$tag: $dir exists ($($PY --version))"
    else echo "$tag: creating $dir with $PYTHON"; "$PYTHON" -m venv "$dir"; fi
    TORCH_WANT=${TORCH_SPEC#torch==}
    have=$(torch_version)
    if [ "$have" = "$TORCH_WANT" ]; then echo "$tag: torch $have already installed"
    else echo "$tag: installing $TORCH_SPEC"; $PY -m pip install -q "$TORCH_SPEC"; fi
}

# changed_since FREEZE: the lines `pip freeze` shows now and did not in FREEZE (an earlier `pip freeze`), indented.
changed_since() {
    diff <(echo "$1") <($PY -m pip freeze) | sed -n 's/^> /  /p' || true
}
