"""The grid of a sweep: workloads x policy variants x arrival rates (or loads) x seeds, expanded into runs.

Every run is a pure function of its coordinates: the parent process builds each run's workload (seeded), turns it
into plain arrays (:class:`RunTask`), and any worker, local or on Ray, simulates it to the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fluidsched._core import POLICY_NAMES, Workload
from fluidsched.errors import FluidschedError, InvalidConfigError
from fluidsched.plan import plan
from fluidsched.simulate import OptionValue

__all__ = ["GridPoint", "PolicyVariant", "RunTask", "WorkloadSource", "expand_grid", "format_options"]

TypeMix = tuple[tuple[int, int, float], ...]


def format_options(options: Mapping[str, OptionValue]) -> str:
    """``key=value`` pairs sorted by key, joined by spaces (lists as ``1,2,3``): the ``options`` column."""

    def text(v: OptionValue) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list):
            return ",".join(f"{x:g}" for x in v)
        return str(v)

    return " ".join(f"{k}={text(options[k])}" for k in sorted(options))


@dataclass(frozen=True)
class PolicyVariant:
    """One policy with one set of options: a line in the sweep's plots."""

    policy: str
    options: tuple[tuple[str, OptionValue], ...] = ()

    @property
    def options_text(self) -> str:
        """The options as the ``options`` column writes them (empty for the policy's defaults)."""
        return format_options(dict(self.options))

    @property
    def label(self) -> str:
        """``policy`` or ``policy [key=value ...]``."""
        return f"{self.policy} [{self.options_text}]" if self.options else self.policy

    @staticmethod
    def make(policy: str, options: Mapping[str, OptionValue] | None = None) -> PolicyVariant:
        """A variant with ``options`` (checked to be a mapping of option names to values)."""
        if not isinstance(policy, str) or policy not in POLICY_NAMES:
            raise InvalidConfigError(f"unknown policy {policy!r}; choose from {', '.join(POLICY_NAMES)}")
        opts = dict(options or {})
        for key in opts:
            if not isinstance(key, str) or not key:
                raise InvalidConfigError(f"policy option names must be non-empty strings, got {key!r}")
        return PolicyVariant(policy, tuple(sorted(opts.items())))


@dataclass(frozen=True)
class WorkloadSource:
    """A named workload of the grid: ``build(rate, seed)`` returns it at ``rate`` req/s (``None``: the trace's own
    arrival times). ``types`` is set for a typed mix (its rates are weights when the grid gives loads)."""

    name: str
    build: Callable[[float | None, int], Workload]
    types: TypeMix | None = None


@dataclass(frozen=True)
class GridPoint:
    """The coordinates of one run, and what the fluid model says about its workload."""

    index: int
    workload: str
    variant: PolicyVariant
    rate: float
    load: float
    seed: int
    max_rate_per_s: float
    fluid_throughput_tokens_per_s: float
    fluid_mix_throughput_tokens_per_s: float

    def coordinates(self) -> dict[str, Any]:
        """The row's grid columns: workload, policy, options, rate, load, seed, and the fluid columns."""
        return {
            "workload": self.workload,
            "policy": self.variant.policy,
            "options": self.variant.options_text,
            "rate": self.rate,
            "load": self.load,
            "seed": self.seed,
            "max_rate_per_s": self.max_rate_per_s,
            "fluid_throughput_tokens_per_s": self.fluid_throughput_tokens_per_s,
            "fluid_mix_throughput_tokens_per_s": self.fluid_mix_throughput_tokens_per_s,
        }


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs for one run, as plain picklable data."""

    index: int
    arrival: npt.NDArray[np.float64]
    prompt_len: npt.NDArray[np.uint32]
    output_len: npt.NDArray[np.uint32]
    type_id: npt.NDArray[np.uint32] | None
    policy: str
    options: dict[str, OptionValue]
    seed: int
    sim_kwargs: dict[str, Any]

    def workload(self) -> Workload:
        """The run's workload, rebuilt from the arrays."""
        return Workload.from_requests(self.arrival, self.prompt_len, self.output_len, self.type_id)


def task_arrays(
    wl: Workload,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint32], npt.NDArray[np.uint32], npt.NDArray[np.uint32] | None]:
    """A workload as arrays (arrival, prompt_len, output_len, type_id or None when any request has no type)."""
    types = wl.type_id
    type_id = None if any(t is None for t in types) else np.asarray(types, dtype=np.uint32)
    return (
        np.asarray(wl.arrival, dtype=np.float64),
        np.asarray(wl.prompt_len, dtype=np.uint32),
        np.asarray(wl.output_len, dtype=np.uint32),
        type_id,
    )


def _checked_values(name: str, values: Sequence[float] | None) -> list[float] | None:
    if values is None:
        return None
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise InvalidConfigError(f"{name} must be finite numbers > 0, got {v!r}")
        out.append(float(v))
    if not out:
        raise InvalidConfigError(f"{name} is empty: give at least one value")
    if len(set(out)) != len(out):
        raise InvalidConfigError(f"{name} has repeated values: {out}")
    return out


class _FluidView:
    """The fluid model of one workload: its type mix (rates per second at 1 req/s) and the largest stable rate."""

    def __init__(self, source: WorkloadSource, seed: int, plan_kwargs: Mapping[str, Any]) -> None:
        self.plan_kwargs = dict(plan_kwargs)
        if source.types is not None:
            total = sum(r for _, _, r in source.types)
            mix = [(p, o, r / total) for p, o, r in source.types]
        else:
            reference = plan(source.build(1.0, seed), **self.plan_kwargs)
            mix = [(int(p), int(o), float(r)) for p, o, r in reference["types"]]
            total = sum(r for _, _, r in mix)
            mix = [(p, o, r / total) for p, o, r in mix]
        self.mix = mix
        self.max_rate: float = float(plan(types=mix, **self.plan_kwargs)["max_rate_per_s"])

    def at_rate(self, rate: float) -> tuple[float, float]:
        """(fluid throughput, fluid throughput at the arrival mix), output tokens/s, at ``rate`` req/s."""
        result = plan(types=[(p, o, r * rate) for p, o, r in self.mix], **self.plan_kwargs)
        return float(result["throughput_tokens_per_s"]), float(result["mix_throughput_tokens_per_s"])


def expand_grid(
    sources: Sequence[WorkloadSource],
    variants: Sequence[PolicyVariant],
    *,
    rates: Sequence[float] | None,
    loads: Sequence[float] | None,
    seeds: Sequence[int],
    plan_kwargs: Mapping[str, Any],
) -> tuple[list[GridPoint], dict[tuple[str, float, int], Workload]]:
    """The grid in its order (workload, policy variant, rate or load, seed) and the workload of each
    (workload, rate, seed). Without ``rates`` and ``loads``, each workload keeps its own arrival times."""
    if not sources:
        raise InvalidConfigError("the sweep has no workload: give at least one")
    if not variants:
        raise InvalidConfigError("the sweep has no policy: give at least one")
    if rates is not None and loads is not None:
        raise InvalidConfigError("give arrival rates or loads, not both")
    rate_list = _checked_values("rates", rates)
    load_list = _checked_values("loads", loads)
    seed_list = list(seeds)
    if not seed_list:
        raise InvalidConfigError("seeds is empty: give at least one seed")
    for s in seed_list:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**64:
            raise InvalidConfigError(f"seeds must be integers from 0 to 2**64 - 1, got {s!r}")
    if len(set(seed_list)) != len(seed_list):
        raise InvalidConfigError(f"seeds has repeated values: {seed_list}")
    if len({s.name for s in sources}) != len(sources):
        raise InvalidConfigError(f"workload names must differ, got {[s.name for s in sources]}")
    if len(set(variants)) != len(variants):
        raise InvalidConfigError(f"a policy variant is listed twice: {[v.label for v in variants]}")

    points: list[GridPoint] = []
    workloads: dict[tuple[str, float, int], Workload] = {}
    for source in sources:
        fluid = _fluid_view(source, seed_list[0], plan_kwargs, required=load_list is not None)
        max_rate = fluid.max_rate if fluid else math.nan
        grid_rates: list[tuple[float | None, float]] = []  # (rate asked of build, load given or nan)
        if load_list is not None:
            if not (math.isfinite(max_rate) and max_rate > 0):
                raise InvalidConfigError(f"workload {source.name}: the fluid model gives no maximum rate for loads")
            grid_rates = [(load * max_rate, load) for load in load_list]
        elif rate_list is not None:
            grid_rates = [(rate, math.nan) for rate in rate_list]
        else:
            grid_rates = [(None, math.nan)]
        per_rate = []
        for asked, load in grid_rates:
            for seed in seed_list:
                wl = source.build(asked, seed)
                rate = asked if asked is not None else (wl.mean_rate or math.nan)
                workloads[(source.name, rate, seed)] = wl
            if math.isnan(load) and fluid:
                load = rate / max_rate
            fluid_tp, fluid_mix = fluid.at_rate(rate) if fluid and math.isfinite(rate) else (math.nan, math.nan)
            per_rate.append((rate, load, fluid_tp, fluid_mix))
        for variant in variants:
            for rate, load, fluid_tp, fluid_mix in per_rate:
                for seed in seed_list:
                    points.append(
                        GridPoint(len(points), source.name, variant, rate, load, seed, max_rate, fluid_tp, fluid_mix)
                    )
    return points, workloads


def _fluid_view(
    source: WorkloadSource, seed: int, plan_kwargs: Mapping[str, Any], *, required: bool
) -> _FluidView | None:
    """The workload's fluid model; ``None`` when it cannot be solved and loads were not asked for."""
    try:
        return _FluidView(source, seed, plan_kwargs)
    except FluidschedError as e:
        if required:
            raise InvalidConfigError(f"workload {source.name}: cannot convert loads to rates: {e}") from e
        return None
