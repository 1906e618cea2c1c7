"""Engine-independent half of the engine adapters: the ``fluidsched`` settings and the controller they build.

An engine adapter (``fluidsched.vllm``) reads a settings dict (for vLLM: ``--additional-config
'{"fluidsched": {...}}'``), checks it here, and builds an :class:`~fluidsched.AdmissionController` from it with
the engine's own numbers (KV blocks, block size, ``max_num_seqs``, ``max_num_batched_tokens``). Nothing here
imports an engine, so the settings are tested with the core suite.

Settings (every key optional; unknown keys and bad values raise :class:`~fluidsched.InvalidConfigError` naming the
key):

``policy``
    ``"nested-wait"`` (default; unknown output lengths), ``"wait"`` (output lengths from a per-request hint) or
    ``"vllm"`` (admit all: the engine's own scheduler, for comparison and differential tests).
``time_model``, ``d0``, ``d1``
    The iteration-time model the thresholds are planned with: a shipped preset's name (default
    ``"llama2-7b-a100"``; :func:`fluidsched.list_presets`), the path of a preset JSON file (for example one
    ``fluidsched calibrate`` wrote for this GPU), or ``"linear"`` with ``d0`` (seconds) and ``d1`` (seconds per
    token). Measured step durations correct it at run
    time (``measure_iterations``).
``types``
    ``[[prompt_len, output_len, rate], ...]``: request types with arrival rates (req/s). WAIT plans its per-type
    thresholds from them; Nested WAIT uses them as its length distribution when no sample is given.
``length_sample``
    A trace (``"azure"``, ``"lmsys"`` or a path) whose prompt and output lengths are Nested WAIT's length
    distribution (and, with ``arrival_rate``, whose mix WAIT types come from).
``arrival_rate``
    Expected arrival rate, req/s (Nested WAIT needs it unless ``types`` give rates).
``options``
    Policy options, as ``fluidsched simulate -o`` takes them (``thresholds``, ``max_wait``, ``num_segments``, ...).
``output_len_hint``
    Where WAIT reads a request's output length: ``"max_tokens"`` (default: the request's ``max_tokens``) or
    ``"none"``. A request may always carry its own hint as ``sampling_params.extra_args["fluidsched_output_len"]``.
``measure_iterations``
    Feed measured step durations back into the thresholds (default ``true``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluidsched._core import AdmissionController, preset_info
from fluidsched.data import BUNDLED_TRACES, bundled_trace
from fluidsched.errors import FluidschedError, InvalidConfigError
from fluidsched.simulate import OptionValue, load_workload

__all__ = ["ADAPTER_POLICIES", "SETTINGS_KEYS", "AdapterSettings", "EngineLimits", "build_controller"]

#: Policies an engine adapter can run.
ADAPTER_POLICIES: tuple[str, ...] = ("nested-wait", "wait", "vllm")

#: Keys accepted in the ``fluidsched`` settings dict.
SETTINGS_KEYS: tuple[str, ...] = (
    "policy",
    "time_model",
    "d0",
    "d1",
    "types",
    "length_sample",
    "arrival_rate",
    "options",
    "output_len_hint",
    "measure_iterations",
)

_HINT_SOURCES = ("max_tokens", "none")
_MAX_SAMPLE = 20_000


def _bad(key: str, want: str, got: object) -> InvalidConfigError:
    return InvalidConfigError(f"fluidsched setting {key!r} must be {want}, got {got!r}")


def _number(key: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(key, "a number", value)
    x = float(value)
    if x != x or x in (float("inf"), float("-inf")) or (positive and x <= 0) or x < 0:
        raise _bad(key, "a finite number > 0" if positive else "a finite number >= 0", value)
    return x


@dataclass(frozen=True)
class EngineLimits:
    """The engine's numbers the thresholds are planned with."""

    #: KV blocks usable by requests (vLLM: ``num_gpu_blocks - 1``, block 0 is the null block).
    num_blocks: int
    #: Tokens per KV block.
    block_size: int
    #: Most requests running at once.
    max_num_seqs: int
    #: Most tokens in one step.
    max_num_batched_tokens: int
    #: Fraction of blocks kept free at admission.
    watermark: float = 0.0


@dataclass(frozen=True)
class AdapterSettings:
    """The checked ``fluidsched`` settings (see the module documentation for each key)."""

    policy: str = "nested-wait"
    time_model: str = "llama2-7b-a100"
    d0: float | None = None
    d1: float | None = None
    types: tuple[tuple[int, int, float], ...] = ()
    length_sample: str | None = None
    arrival_rate: float | None = None
    options: dict[str, OptionValue] = field(default_factory=dict)
    output_len_hint: str = "max_tokens"
    measure_iterations: bool = True

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> AdapterSettings:
        """Checks a settings dict; raises :class:`~fluidsched.InvalidConfigError` naming the first bad key."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise InvalidConfigError(f"fluidsched settings must be a JSON object, got {type(raw).__name__}")
        for key in raw:
            if key not in SETTINGS_KEYS:
                raise InvalidConfigError(
                    f"unknown fluidsched setting {key!r}; the settings are: {', '.join(SETTINGS_KEYS)}"
                )
        policy = raw.get("policy", "nested-wait")
        if policy not in ADAPTER_POLICIES:
            raise _bad("policy", f"one of {', '.join(ADAPTER_POLICIES)}", policy)
        time_model = raw.get("time_model", "linear" if "d0" in raw or "d1" in raw else "llama2-7b-a100")
        if not isinstance(time_model, str) or not time_model:
            raise _bad("time_model", "a preset name, a preset file path or 'linear'", time_model)
        if time_model != "linear":
            try:
                preset_info(time_model)
            except FluidschedError as e:
                raise InvalidConfigError(f"fluidsched setting 'time_model': {e}") from e
        d0 = _number("d0", raw["d0"], positive=True) if "d0" in raw else None
        d1 = _number("d1", raw["d1"]) if "d1" in raw else None
        types: list[tuple[int, int, float]] = []
        for t in raw.get("types", []) or []:
            ok = isinstance(t, (list, tuple)) and len(t) == 3
            ok = ok and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in t[:2])
            if not ok:
                raise _bad("types", "a list of [prompt_len, output_len, rate] with lengths >= 1", t)
            types.append((int(t[0]), int(t[1]), _number("types", t[2], positive=True)))
        sample = raw.get("length_sample")
        if sample is not None and not isinstance(sample, str):
            raise _bad("length_sample", f"a path or one of {sorted(BUNDLED_TRACES)}", sample)
        rate = _number("arrival_rate", raw["arrival_rate"], positive=True) if "arrival_rate" in raw else None
        options = raw.get("options", {}) or {}
        if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
            raise _bad("options", "an object of policy options", options)
        hint = raw.get("output_len_hint", "max_tokens")
        if hint not in _HINT_SOURCES:
            raise _bad("output_len_hint", f"one of {', '.join(_HINT_SOURCES)}", hint)
        measure = raw.get("measure_iterations", True)
        if not isinstance(measure, bool):
            raise _bad("measure_iterations", "true or false", measure)
        return cls(
            policy=policy,
            time_model=time_model,
            d0=d0,
            d1=d1,
            types=tuple(types),
            length_sample=sample,
            arrival_rate=rate,
            options=dict(options),
            output_len_hint=hint,
            measure_iterations=measure,
        )


def _length_sample(name: str) -> tuple[list[int], list[int]]:
    path = bundled_trace(name) if name in BUNDLED_TRACES else Path(name)
    if not path.exists():
        raise _bad("length_sample", f"an existing file or one of {sorted(BUNDLED_TRACES)}", name)
    try:
        workload = load_workload(path, rate=1.0, num_requests=_MAX_SAMPLE)
    except FluidschedError as e:
        raise InvalidConfigError(f"fluidsched setting 'length_sample': {e}") from e
    return list(workload.prompt_len), list(workload.output_len)


def build_controller(settings: AdapterSettings, limits: EngineLimits) -> AdmissionController:
    """The controller for ``settings`` under the engine's ``limits``; errors name the problem."""
    prompts: list[int] | None = None
    outputs: list[int] | None = None
    if settings.length_sample is not None:
        prompts, outputs = _length_sample(settings.length_sample)
    return AdmissionController(
        settings.policy,
        num_blocks=limits.num_blocks,
        block_size=limits.block_size,
        watermark=limits.watermark,
        max_num_seqs=limits.max_num_seqs,
        max_num_batched_tokens=limits.max_num_batched_tokens,
        policy_options=dict(settings.options) or None,
        time_model=settings.time_model,
        d0=settings.d0,
        d1=settings.d1,
        types=list(settings.types) or None,
        prompt_lengths=prompts,
        output_lengths=outputs,
        arrival_rate=settings.arrival_rate,
    )
