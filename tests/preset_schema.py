"""A checker for time-model preset files (``fluidsched-time-model/1``), written from the agreed format description,
independently of the code that writes them; and the format's iteration time, to recompute a preset's predictions.

Used by the calibrate tests (core tier: presets built from synthetic fits; torch tier: files the CLI wrote).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

TOP_KEYS = {"format", "name", "description", "model", "device", "kv_cache", "iteration", "fit", "provenance"}
MODEL_KEYS = {"name", "num_layers", "hidden_size", "num_attention_heads", "num_kv_heads", "head_dim", "dtype"}
DEVICE_KEYS = {"name", "memory_bytes"}
KV_KEYS = {"block_size", "num_blocks", "kv_bytes_per_token", "how"}
ITERATION_KEYS = {
    "num_layers",
    "overhead_ms",
    "token_step",
    "linear_ops_ms",
    "linear_ops_extrapolation_ms_per_token",
    "decode_attention_ms",
    "prefill_attention_ms",
}
FIT_KEYS = {"mape_percent", "regions", "num_points"}
REGION_KEYS = {"decode", "prefill", "mixed"}
PROVENANCE_KEYS = {"source", "tool", "created"}  # required; a writer may add more


def _require(condition: Any, message: str) -> None:
    """An assertion on several conditions at once, with ``message`` when it fails."""
    if not condition:
        raise AssertionError(message)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return (isinstance(x, float) or _is_int(x)) and math.isfinite(x)


def _positive_ints(obj: dict[str, Any], keys: set[str], where: str) -> None:
    for k in keys:
        _require(_is_int(obj[k]) and obj[k] > 0, f"{where}.{k} must be a positive integer, got {obj[k]!r}")


def _keys(obj: Any, expected: set[str], where: str, *, at_least: bool = False) -> None:
    assert isinstance(obj, dict), f"{where} must be an object"
    if at_least:
        assert expected <= set(obj), f"{where} lacks {sorted(expected - set(obj))}"
    else:
        assert set(obj) == expected, f"{where} keys {sorted(obj)} != {sorted(expected)}"


def check_preset(p: Any) -> None:
    """Asserts that ``p`` (a parsed JSON preset) has exactly the format's keys, types and invariants."""
    _keys(p, TOP_KEYS, "preset")
    assert p["format"] == "fluidsched-time-model/1"
    _require(isinstance(p["name"], str) and p["name"], "name must be a non-empty string")
    assert isinstance(p["description"], str)

    _keys(p["model"], MODEL_KEYS, "model")
    _positive_ints(p["model"], MODEL_KEYS - {"name", "dtype"}, "model")
    assert isinstance(p["model"]["name"], str)
    assert p["model"]["dtype"] in ("bf16", "fp16", "fp32")

    _keys(p["device"], DEVICE_KEYS, "device")
    assert isinstance(p["device"]["name"], str)
    assert p["device"]["name"]
    _positive_ints(p["device"], {"memory_bytes"}, "device")

    _keys(p["kv_cache"], KV_KEYS, "kv_cache")
    _positive_ints(p["kv_cache"], KV_KEYS - {"how"}, "kv_cache")
    assert isinstance(p["kv_cache"]["how"], str)
    assert p["kv_cache"]["how"]

    it = p["iteration"]
    _keys(it, ITERATION_KEYS, "iteration")
    _positive_ints(it, {"num_layers", "token_step"}, "iteration")
    assert it["num_layers"] == p["model"]["num_layers"]
    assert _is_number(it["overhead_ms"])
    assert it["overhead_ms"] >= 0
    table = it["linear_ops_ms"]
    _require(isinstance(table, list) and table, "linear_ops_ms must be a non-empty list")
    for row in table:
        _require(isinstance(row, list) and len(row) == 2, f"table row {row!r} is not [tokens, ms]")
        _require(_is_int(row[0]) and row[0] > 0 and _is_number(row[1]) and row[1] >= 0, f"bad table row {row!r}")
    tokens, ms = [r[0] for r in table], [r[1] for r in table]
    assert all(a < b for a, b in itertools.pairwise(tokens)), "table tokens must strictly increase"
    assert all(a <= b for a, b in itertools.pairwise(ms)), "table ms must not decrease"
    assert tokens[0] <= it["token_step"], "the table's first point must be at most token_step tokens"
    slope = it["linear_ops_extrapolation_ms_per_token"]
    assert _is_number(slope)
    assert slope > 0
    for key, n in (("decode_attention_ms", 3), ("prefill_attention_ms", 4)):
        coefs = it[key]
        _require(isinstance(coefs, list) and len(coefs) == n, f"{key} must have {n} numbers")
        assert all(_is_number(c) and c >= 0 for c in coefs), f"{key} must be finite and >= 0: {coefs}"

    fit = p["fit"]
    _keys(fit, FIT_KEYS, "fit")
    assert fit["mape_percent"] is None or (_is_number(fit["mape_percent"]) and fit["mape_percent"] >= 0)
    _keys(fit["regions"], REGION_KEYS, "fit.regions")
    for v in fit["regions"].values():
        assert v is None or (_is_number(v) and v >= 0)
    assert fit["num_points"] is None or (_is_int(fit["num_points"]) and fit["num_points"] >= 0)

    _keys(p["provenance"], PROVENANCE_KEYS, "provenance", at_least=True)
    for k in PROVENANCE_KEYS:
        assert isinstance(p["provenance"][k], str)
        assert p["provenance"][k]


def preset_iteration_ms(
    p: dict[str, Any],
    *,
    prefill: Sequence[tuple[int, int]] = (),
    decode_contexts: Sequence[int] = (),
) -> float:
    """Milliseconds of one iteration under preset ``p``, from the format's description: ``prefill`` chunks as
    (chunk, context) pairs, one decode per entry of ``decode_contexts``."""
    it = p["iteration"]
    n = sum(c for c, _ in prefill) + len(decode_contexts)
    step = it["token_step"]
    n = -(-n // step) * step
    xs, ys = [r[0] for r in it["linear_ops_ms"]], [r[1] for r in it["linear_ops_ms"]]
    if n <= xs[0]:
        linear = ys[0]
    elif n >= xs[-1]:
        linear = ys[-1] + (n - xs[-1]) * it["linear_ops_extrapolation_ms_per_token"]
    else:
        j = next(i for i, x in enumerate(xs) if x >= n)
        linear = ys[j - 1] + (ys[j] - ys[j - 1]) * (n - xs[j - 1]) / (xs[j] - xs[j - 1])
    c0, c1, c2 = it["decode_attention_ms"]
    decode = c0 + c1 * len(decode_contexts) + c2 * sum(decode_contexts) if decode_contexts else 0.0
    p0, p1, p2, p3 = it["prefill_attention_ms"]
    pre = sum(p0 * c + p1 * c * c + p2 * c * kv + p3 * kv for c, kv in prefill)
    return float(it["overhead_ms"] + it["num_layers"] * (linear + decode + pre))
