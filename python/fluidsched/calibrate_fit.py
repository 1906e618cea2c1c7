"""Fitting the time-model preset to measured whole-model iteration times (numpy only, no torch).

The model (the ``fluidsched-time-model/1`` preset's) of one iteration, in ms::

    t = overhead + L * (linear(n) + decode_attention + prefill_attention)

with ``L`` layers, ``n`` tokens, ``decode_attention = c0 + c1*b + c2*sum(kv)`` when ``b > 0`` sequences decode and
``prefill_attention = p0*sum(c) + p1*sum(c^2) + p2*sum(c*kv) + p3*sum(kv)`` over prefill chunks. The fit has three
stages, each on quantities measured for it (see docs/calibrate.md):

1. ``overhead``: the median over the real iterations of ``outside_ms``, the same iteration's time with no decoder
   layer (embedding, rotary tables, final norm, LM head on the last token of each sequence);
2. ``linear(n)``: from the ``linear`` points (the layers with the attention kernel skipped):
   ``(ms - outside_ms) / L``, made non-decreasing (pool-adjacent-violators, weights 1/t^2);
3. the seven attention coefficients, jointly, by non-negative least squares on relative error (weights 1/t^2) over
   the decode, prefill and mixed points, with ``overhead`` and ``linear`` fixed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fluidsched.calibrate_shapes import BatchPoint
from fluidsched.errors import InvalidConfigError

__all__ = [
    "FIT_REGIONS",
    "FitErrors",
    "Measurement",
    "TimeModelFit",
    "fit_errors",
    "fit_time_model",
    "non_decreasing_fit",
    "nonneg_least_squares",
]

#: Regions whose error the preset's ``fit`` reports (real iterations; ``linear`` points are not iterations).
FIT_REGIONS = ("decode", "prefill", "mixed")

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Measurement:
    """The timing of one :class:`BatchPoint`: median, fastest and slowest of ``repeats`` runs (ms, whole model),
    and ``outside_ms``, the median time of the same iteration without its decoder layers."""

    point: BatchPoint
    ms: float
    min_ms: float
    max_ms: float
    outside_ms: float
    repeats: int


@dataclass(frozen=True)
class TimeModelFit:
    """A fitted time model in the preset's terms: per-layer table and coefficients (ms), whole-model overhead."""

    num_layers: int
    overhead_ms: float
    token_step: int
    linear_ops_ms: tuple[tuple[int, float], ...]
    linear_ops_extrapolation_ms_per_token: float
    decode_attention_ms: tuple[float, float, float]
    prefill_attention_ms: tuple[float, float, float, float]

    @classmethod
    def from_preset(cls, preset: dict[str, Any]) -> TimeModelFit:
        """The time model of a parsed ``fluidsched-time-model/1`` preset (its ``iteration`` object)."""
        it = preset["iteration"]
        d, p = it["decode_attention_ms"], it["prefill_attention_ms"]
        return cls(
            num_layers=int(it["num_layers"]),
            overhead_ms=float(it["overhead_ms"]),
            token_step=int(it["token_step"]),
            linear_ops_ms=tuple((int(n), float(v)) for n, v in it["linear_ops_ms"]),
            linear_ops_extrapolation_ms_per_token=float(it["linear_ops_extrapolation_ms_per_token"]),
            decode_attention_ms=(float(d[0]), float(d[1]), float(d[2])),
            prefill_attention_ms=(float(p[0]), float(p[1]), float(p[2]), float(p[3])),
        )

    def linear_ops(self, num_tokens: int) -> float:
        """Per-layer linear-operator time (ms) at ``num_tokens``, with the preset loader's rules: round up to a
        multiple of ``token_step``, clamp below the first point, interpolate, extrapolate past the last."""
        n = -(-num_tokens // self.token_step) * self.token_step
        xs = [t for t, _ in self.linear_ops_ms]
        ys = [v for _, v in self.linear_ops_ms]
        if n >= xs[-1]:
            return ys[-1] + (n - xs[-1]) * self.linear_ops_extrapolation_ms_per_token
        return float(np.interp(n, xs, ys))

    def attention(self, point: BatchPoint) -> float:
        """Per-layer attention time (ms) of ``point`` (0 for a ``linear`` point)."""
        if point.region == "linear":
            return 0.0
        return float(attention_features(point) @ np.array(self.decode_attention_ms + self.prefill_attention_ms))

    def predict_ms(self, point: BatchPoint) -> float:
        """Whole-model time (ms) the preset gives ``point``: what the simulator will charge for it."""
        return self.overhead_ms + self.num_layers * (self.linear_ops(point.num_tokens) + self.attention(point))


def attention_features(point: BatchPoint) -> Array:
    """The seven attention regressors of ``point``: decode ``[1, b, sum kv]`` (zero when nothing decodes), then
    prefill ``[sum c, sum c^2, sum c*kv, sum kv]`` (zero without a chunk)."""
    b, c = point.num_decode_seqs, point.prefill_chunk
    decode = [1.0, float(b), float(b * point.decode_context)] if b else [0.0, 0.0, 0.0]
    kv = point.prefill_context
    prefill = [float(c), float(c * c), float(c * kv), float(kv)] if c else [0.0, 0.0, 0.0, 0.0]
    return np.array(decode + prefill)


def non_decreasing_fit(values: Sequence[float], weights: Sequence[float]) -> list[float]:
    """The weighted least-squares non-decreasing fit of ``values`` (pool-adjacent-violators)."""
    blocks: list[list[float]] = []  # [weighted mean, total weight, count]
    for v, w in zip(values, weights, strict=True):
        blocks.append([float(v), float(w), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return [m for m, _, n in blocks for _ in range(int(n))]


def nonneg_least_squares(a: Array, y: Array) -> Array:
    """``argmin ||a x - y||`` subject to ``x >= 0``, exactly, by trying every support (for a few columns).

    The optimum is the unconstrained least-squares solution on its own support, so the best feasible one of those
    is it. Columns are scaled to unit norm first; all-zero columns get 0.
    """
    k = a.shape[1]
    norms = np.linalg.norm(a, axis=0)
    live = [j for j in range(k) if norms[j] > 0]
    scaled = a[:, live] / norms[live]
    best, best_loss = np.zeros(k), float(y @ y)
    for size in range(1, len(live) + 1):
        for support in itertools.combinations(range(len(live)), size):
            cols = list(support)
            sol, *_ = np.linalg.lstsq(scaled[:, cols], y, rcond=None)
            if np.any(sol < 0):
                continue
            r = scaled[:, cols] @ sol - y
            loss = float(r @ r)
            if loss < best_loss - 1e-12 * max(best_loss, 1e-300):
                best_loss = loss
                best = np.zeros(k)
                for j, v in zip(cols, sol, strict=True):
                    best[live[j]] = v / norms[live[j]]
    return best


def _linear_table(measurements: Sequence[Measurement], num_layers: int) -> tuple[list[int], list[float]]:
    by_tokens: dict[int, list[tuple[float, float]]] = {}
    for m in measurements:
        per_layer = max(0.0, (m.ms - m.outside_ms) / num_layers)
        by_tokens.setdefault(m.point.num_tokens, []).append((per_layer, m.ms))
    xs = sorted(by_tokens)
    raw = [float(np.median([v for v, _ in by_tokens[x]])) for x in xs]
    # Relative to the whole-model time (never near zero, unlike a per-layer difference of two noisy times).
    weights = [1.0 / max(float(np.median([t for _, t in by_tokens[x]])), 1e-9) ** 2 for x in xs]
    return xs, non_decreasing_fit(raw, weights)


def _extrapolation_slope(xs: Sequence[int], ys: Sequence[float]) -> float:
    """Least-squares slope of the table's upper half (n >= largest/2); the whole table's mean slope if that is not
    positive; a tiny positive number for a flat table (the preset needs a slope > 0)."""
    upper = [(x, y) for x, y in zip(xs, ys, strict=True) if 2 * x >= xs[-1]]
    if len(upper) >= 2:
        ux, uy = np.array([p[0] for p in upper], float), np.array([p[1] for p in upper], float)
        slope = float(np.polyfit(ux, uy, 1)[0])
        if slope > 0:
            return slope
    if len(xs) >= 2 and ys[-1] > ys[0]:
        return (ys[-1] - ys[0]) / (xs[-1] - xs[0])
    return 1e-9


def fit_time_model(measurements: Sequence[Measurement], num_layers: int, token_step: int = 1) -> TimeModelFit:
    """Fits the preset's time model to ``measurements`` (whole-model ms) of a model with ``num_layers`` layers.

    Needs ``linear`` points (the first at ``token_step`` tokens or fewer) and at least one real iteration.
    """
    linear = [m for m in measurements if m.point.region == "linear"]
    real = [m for m in measurements if m.point.region in FIT_REGIONS]
    if not linear or not real:
        raise InvalidConfigError("the fit needs linear-operator points and at least one real iteration")
    xs, ys = _linear_table(linear, num_layers)
    if xs[0] > token_step:
        raise InvalidConfigError(f"the linear-operator table must start at {token_step} token(s) or fewer")
    overhead = float(np.median([m.outside_ms for m in real]))
    base = TimeModelFit(
        num_layers=num_layers,
        overhead_ms=overhead,
        token_step=token_step,
        linear_ops_ms=tuple(zip(xs, ys, strict=True)),
        linear_ops_extrapolation_ms_per_token=_extrapolation_slope(xs, ys),
        decode_attention_ms=(0.0, 0.0, 0.0),
        prefill_attention_ms=(0.0, 0.0, 0.0, 0.0),
    )
    # Relative error: each row of the whole-model residual divided by its measured time.
    t = np.array([m.ms for m in real])
    rest = t - np.array([base.predict_ms(m.point) for m in real])
    a = np.array([attention_features(m.point) * num_layers for m in real]) / t[:, None]
    coef = nonneg_least_squares(a, rest / t)
    c = [float(v) for v in coef]
    return TimeModelFit(
        num_layers=num_layers,
        overhead_ms=overhead,
        token_step=token_step,
        linear_ops_ms=base.linear_ops_ms,
        linear_ops_extrapolation_ms_per_token=base.linear_ops_extrapolation_ms_per_token,
        decode_attention_ms=(c[0], c[1], c[2]),
        prefill_attention_ms=(c[3], c[4], c[5], c[6]),
    )


@dataclass(frozen=True)
class FitErrors:
    """How far the preset's predictions are from the measurements: mean absolute percentage error (MAPE) over the
    real iterations and per region (None for a region without points), the largest error, and the point count."""

    mape_percent: float
    regions: dict[str, float | None]
    max_percent: float
    num_points: int
    linear_mape_percent: float  # the table's monotone smoothing against the linear points


def fit_errors(fit: TimeModelFit, measurements: Sequence[Measurement]) -> FitErrors:
    """The errors of ``fit`` on ``measurements``."""

    def predicted(m: Measurement) -> float:
        if m.point.region == "linear":  # the table alone, on top of the point's own outside-the-layers time
            return m.outside_ms + fit.num_layers * fit.linear_ops(m.point.num_tokens)
        return fit.predict_ms(m.point)

    def errors(region: str) -> list[float]:
        return [abs(predicted(m) - m.ms) / m.ms * 100.0 for m in measurements if m.point.region == region and m.ms > 0]

    per_region = {r: errors(r) for r in FIT_REGIONS}
    every = [e for r in FIT_REGIONS for e in per_region[r]]
    linear = errors("linear")
    return FitErrors(
        mape_percent=float(np.mean(every)) if every else math.nan,
        regions={r: (float(np.mean(v)) if v else None) for r, v in per_region.items()},
        max_percent=max(every, default=math.nan),
        num_points=len(every),
        linear_mape_percent=float(np.mean(linear)) if linear else math.nan,
    )
