#!/usr/bin/env bash
# Create the virtualenv for the optional Ray test tier (tests/ray_tier): Ray plus what the tests need, so the
# core environment (.venv) never imports or installs Ray. The Makefile's `ray-env` target runs this script and
# then builds fluidsched into the environment with maturin.
#
#   tools/setup_ray_env.sh [VENV]        # VENV defaults to .venv-ray
#
# It also installs pandas and pyarrow, so the tier covers `fluidsched.sweep(..., as_frame=True)` and Parquet
# output, which the core tier can only check for their "not installed" errors.
#
# Idempotent: does nothing when VENV/.ray-ready exists and is newer than this script. A stale or half-built VENV
# (one with a pyvenv.cfg) is removed and rebuilt.
#
# Environment: PYTHON (interpreter to create the venv with; default python3; must be 3.10+).
# About 1 minute and 600 MB on a fresh machine.
set -euo pipefail

VENV="${1:-.venv-ray}"
STAMP="$VENV/.ray-ready"
RAY_VERSION="2.60.0"
PACKAGES=("ray==$RAY_VERSION" "numpy>=1.24" "tqdm>=4.60" "pandas>=2" "pyarrow>=12" "matplotlib>=3.7"
    "pytest>=8" "hypothesis>=6.100" "pytest-benchmark>=4" "maturin>=1.9.4,<2")

start=$SECONDS
log() { printf '[setup_ray_env %4ds] %s\n' "$((SECONDS - start))" "$*"; }

if [[ -f "$STAMP" && ! "${BASH_SOURCE[0]}" -nt "$STAMP" ]]; then
    log "$VENV is ready ($(cat "$STAMP")); nothing to do"
    exit 0
fi

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
    echo "error: $PYTHON is $("$PYTHON" -V 2>&1); fluidsched needs Python 3.10+ (set PYTHON=...)" >&2
    exit 1
fi

source "$(dirname "${BASH_SOURCE[0]}")/venv_lib.sh"
fresh_venv "$VENV" "$PYTHON"
phase=$SECONDS
"${PIP[@]}" install "${PACKAGES[@]}"
log "ray $RAY_VERSION and test tools installed ($((SECONDS - phase))s)"

"$PY" -c 'import ray, pandas, pyarrow, pytest; print(f"import check ok: ray {ray.__version__}, pandas {pandas.__version__}, pyarrow {pyarrow.__version__}")'

printf 'ray==%s python=%s built=%s\n' "$RAY_VERSION" "$("$PY" -c 'import platform; print(platform.python_version())')" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$STAMP"
log "done in $((SECONDS - start))s; $VENV is $(du -sh "$VENV" | cut -f1)"
