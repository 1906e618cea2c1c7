"""The calibrate tier needs torch and transformers (``make test-calibrate`` runs it in the vLLM tier's environment).

Each test module calls :func:`require_torch` first: without the packages the module is skipped, or, under
``FLUIDSCHED_REQUIRE_TORCH=1`` (what ``make test-calibrate`` and CI set), fails, so that the tier can never pass by
skipping.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def require_torch() -> None:
    """Skips the calling module when torch or transformers is missing (fails under FLUIDSCHED_REQUIRE_TORCH=1)."""
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if not missing:
        return
    if os.environ.get("FLUIDSCHED_REQUIRE_TORCH") == "1":
        raise RuntimeError(f"FLUIDSCHED_REQUIRE_TORCH=1 but {', '.join(missing)} is not importable here")
    pytest.skip(f"{', '.join(missing)} not installed (make test-calibrate runs this tier)", allow_module_level=True)
