# Shared by tools/setup_vllm_env.sh and tools/setup_ray_env.sh (sourced, not run): a fresh virtualenv for a test
# tier. `fresh_venv VENV PYTHON` removes a stale VENV (only if it is a virtualenv: it has a pyvenv.cfg), creates
# it with PYTHON, sets PY (its interpreter) and PIP (a quiet, non-interactive pip command array) and upgrades pip.
# Needs a `log` function in the caller.

fresh_venv() {
    local venv="$1" python="$2"
    if [[ -e "$venv" ]]; then
        if [[ -f "$venv/pyvenv.cfg" ]]; then
            log "removing stale environment $venv"
            rm -rf -- "$venv"
        else
            echo "error: $venv exists and is not a virtualenv (no pyvenv.cfg); refusing to touch it" >&2
            exit 1
        fi
    fi
    log "creating $venv with $("$python" -V 2>&1)"
    "$python" -m venv "$venv"
    PY="$venv/bin/python"
    PIP=("$PY" -m pip --disable-pip-version-check --no-input --quiet)
    "${PIP[@]}" install --upgrade pip
}
