"""Time-model presets: profiled iteration-time models of one LLM on one GPU, stored as JSON files.

fluidsched ships a few (:func:`list_presets`; the files are in ``fluidsched/data/presets/``), and any file in the
same format (``docs/time-model.md``, "Preset files") can be used wherever a time model is accepted:
``time_model="llama3-8b-h100"`` or ``time_model="/path/to/my-gpu.json"`` in :func:`fluidsched.simulate`,
:func:`fluidsched.plan`, ``fluidsched simulate --time-model ...`` and the vLLM adapter's settings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

from fluidsched._core import PRESET_NAMES, preset_info
from fluidsched.errors import InvalidConfigError

__all__ = ["DEFAULT_KV_CAPACITY", "DEFAULT_TIME_MODEL", "default_kv_capacity", "list_presets", "load_preset"]

#: The time model used when none is given: Llama-2-7B on one A100-80GB.
DEFAULT_TIME_MODEL = "llama2-7b-a100"
#: KV capacity (tokens) used with the ``linear`` time model when none is given: the default preset's, 7,424
#: blocks of 16 tokens (Llama-2-7B on one A100-80GB, Vidur's memory planner).
DEFAULT_KV_CAPACITY = 118_784

PRESET_DIR = Path(__file__).resolve().parent / "data" / "presets"

TimeModelArg = Union[str, "os.PathLike[str]"]


def list_presets() -> list[str]:
    """Names of the shipped presets (each is ``fluidsched/data/presets/<name>.json``), sorted."""
    return sorted(PRESET_NAMES)


def time_model_name(time_model: TimeModelArg) -> str:
    """``time_model`` as the string the core takes: a name unchanged, a path as its file-system string."""
    if isinstance(time_model, (str, os.PathLike)):
        return os.fspath(time_model)
    raise InvalidConfigError(
        f"time_model must be 'linear', a preset name ({', '.join(list_presets())}) or a preset file path, "
        f"got {time_model!r}"
    )


def _preset_file(name_or_path: TimeModelArg) -> Path:
    name = time_model_name(name_or_path)
    return PRESET_DIR / f"{name}.json" if name in PRESET_NAMES else Path(name)


def load_preset(name_or_path: TimeModelArg) -> dict[str, Any]:
    """The preset ``name_or_path`` (a shipped preset's name or a preset file's path), checked, as the dict its
    JSON file holds. Raises :class:`~fluidsched.InvalidConfigError` naming the file and the key at fault."""
    name = time_model_name(name_or_path)
    preset_info(name)  # the core's checks: the same the simulator makes
    path = _preset_file(name)
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def default_kv_capacity(time_model: TimeModelArg) -> int:
    """KV capacity (tokens) to simulate with when none is given: the preset's (``kv_cache.num_blocks *
    kv_cache.block_size``), or :data:`DEFAULT_KV_CAPACITY` for ``linear``."""
    name = time_model_name(time_model)
    if name == "linear":
        return DEFAULT_KV_CAPACITY
    capacity: int = preset_info(name)["kv_capacity_tokens"]
    return capacity
