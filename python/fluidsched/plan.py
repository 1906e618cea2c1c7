"""``fluidsched.plan``: the fluid model's view of a workload and the thresholds WAIT / Nested WAIT would use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fluidsched._core import Workload
from fluidsched._core import plan as _plan
from fluidsched.errors import InvalidConfigError
from fluidsched.presets import DEFAULT_TIME_MODEL, TimeModelArg, default_kv_capacity, time_model_name
from fluidsched.simulate import OptionValue, kv_capacity_blocks

__all__ = ["PLAN_KEYS", "plan"]

#: Top-level keys of :func:`plan`'s result that ``fluidsched plan --json`` always prints.
PLAN_KEYS: tuple[str, ...] = (
    "rho",
    "stable",
    "iteration_time_s",
    "batch_size",
    "memory_required_tokens",
    "memory_feasible",
    "throughput_tokens_per_s",
    "demand_throughput_tokens_per_s",
    "max_rate_per_s",
    "max_rate_binding",
    "binding_constraint",
    "limits_feasible",
    "mix_throughput_tokens_per_s",
    "wait_thresholds",
    "nested_wait_thresholds",
    "nested_segments",
    "nested_buffer_tokens",
    "types",
    "d0",
    "d1",
    "fluid_time_model",
    "fluid_exact_time",
    "capacity_tokens",
)


def plan(
    workload: Workload | None = None,
    *,
    types: Sequence[tuple[int, int, float]] | None = None,
    time_model: TimeModelArg = DEFAULT_TIME_MODEL,
    d0: float | None = None,
    d1: float | None = None,
    kv_capacity: int | None = None,
    block_size: int = 16,
    watermark: float = 0.01,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int = 8192,
    wait_options: Mapping[str, OptionValue] | None = None,
    nested_options: Mapping[str, OptionValue] | None = None,
) -> dict[str, Any]:
    """Solves the fluid model for ``types`` (``(prompt_len, output_len, rate)`` tuples) or a ``workload`` and
    returns the equilibrium (``rho``, ``stable``, ``iteration_time_s`` = T*, ``batch_size`` = N*,
    ``memory_required_tokens`` = M*, ``memory_feasible``), whether it also respects ``max_num_seqs`` and
    ``max_num_batched_tokens`` (``limits_feasible``), the fluid-optimal throughput under all of them
    (``throughput_tokens_per_s``; ``binding_constraint`` names the limit when the demand cannot be served:
    ``memory``, ``max_num_seqs`` or ``max_num_batched_tokens``), the largest sustainable arrival rate for the
    same mix (``max_rate_per_s``, set by ``max_rate_binding``), and the thresholds WAIT (``wait_thresholds``, one
    per type) and Nested WAIT (``nested_wait_thresholds``, one per segment) would use in a simulation with the
    same settings.

    For a workload without type labels, types come from binning its output lengths (see ``docs/wait.md``). The
    time model (as in :func:`~fluidsched.simulate`: a preset name, a preset file path, or ``"linear"`` with ``d0``
    and ``d1``) is linearised as ``d0 + d1 * tokens`` for the fluid model; ``kv_capacity`` defaults to the preset's.
    """
    if (types is None) == (workload is None):
        raise InvalidConfigError("plan needs exactly one of types=[(prompt, output, rate), ...] or a workload")
    for i, t in enumerate(types or ()):
        if isinstance(t, (str, bytes)) or not isinstance(t, Sequence) or len(t) != 3:
            raise InvalidConfigError(f"types[{i}] must be (prompt_len, output_len, rate), got {t!r:.80}")
    time_model = time_model_name(time_model)
    if kv_capacity is None:
        kv_capacity = default_kv_capacity(time_model)
    num_blocks = kv_capacity_blocks(kv_capacity, block_size)
    raw = _plan(
        types=list(types) if types is not None else None,
        workload=workload,
        time_model=time_model,
        d0=d0,
        d1=d1,
        num_blocks=num_blocks,
        block_size=block_size,
        watermark=watermark,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        wait_options=dict(wait_options) if wait_options else None,
        nested_options=dict(nested_options) if nested_options else None,
    )
    fluid = raw.pop("fluid")
    return {**fluid, **raw}
