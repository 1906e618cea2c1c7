#!/usr/bin/env python3
"""Rebuilds every shipped time-model preset (``python/fluidsched/data/presets/*.json``) from the reduced Vidur
profiles in ``tools/profiles/vidur/`` and reports the fit errors. Needs numpy and scipy (dev tools only).

    python tools/fit_time_model.py            # report; write nothing
    python tools/fit_time_model.py --write    # (re)write the preset JSON files
    python tools/fit_time_model.py --check    # exit 1 if a shipped preset differs from what the pipeline builds

Deterministic: the same inputs give the same files, byte for byte. The method (docs/time-model.md):

* linear operators: per token count, the sum of the per-layer TP=1 operator medians of Vidur's ``mlp.csv``
  (duplicated counts averaged, counts that are not multiples of 8 dropped: they are never looked up), made
  non-decreasing by isotonic regression (``scipy.optimize.isotonic_regression``), rounded to 1e-6 ms; past the
  table, the least-squares slope of the table's upper half;
* attention: relative-error weighted least squares (``numpy.linalg.lstsq``) of the closed forms on Vidur's
  attention samples, where a preset has them; otherwise derived from a measured preset (``ATTENTION_FROM``);
* KV capacity: Vidur's memory planner (``kv_capacity``);
* fit errors per region (decode, prefill, mixed) of the whole per-layer iteration against the measurements.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "tools" / "profiles" / "vidur"
PRESET_DIR = REPO / "python" / "fluidsched" / "data" / "presets"
VIDUR_COMMIT = "7d47513363ec447a741ac5e47241580b47724fbf"
CREATED = "2026-12-04"  # fixed, so that reruns reproduce the files byte for byte

LAYER_OPS = (
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)
TOKEN_STEP = 8  # Vidur rounds the batch's token count up to a multiple of 8 before the lookup.
BLOCK_SIZE = 16
GIB = 1024**3

#: Memory bandwidth, GB/s (NVIDIA datasheets: A100-SXM4-80GB and H100-SXM5-80GB HBM, A40 GDDR6), for
#: memory-bound decode attention.
HBM_GBPS = {"a100": 2039.0, "h100": 3350.0, "a40": 696.0}
DEVICES: dict[str, dict[str, Any]] = {
    "a100": {"name": "NVIDIA A100-SXM4-80GB", "memory_bytes": 80 * GIB, "hbm_gb_per_s": HBM_GBPS["a100"]},
    "h100": {"name": "NVIDIA H100-SXM5-80GB", "memory_bytes": 80 * GIB, "hbm_gb_per_s": HBM_GBPS["h100"]},
    "a40": {"name": "NVIDIA A40-48GB", "memory_bytes": 48 * GIB, "hbm_gb_per_s": HBM_GBPS["a40"]},
}
MODELS: dict[str, dict[str, Any]] = {
    "llama2-7b": {
        "name": "meta-llama/Llama-2-7b-hf",
        "num_layers": 32,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_attention_heads": 32,
        "num_kv_heads": 32,
        "head_dim": 128,
        "dtype": "fp16",
        "vidur_dir": "meta-llama/Llama-2-7b-hf",
    },
    "llama3-8b": {
        "name": "meta-llama/Meta-Llama-3-8B",
        "num_layers": 32,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_attention_heads": 32,
        "num_kv_heads": 8,
        "head_dim": 128,
        "dtype": "fp16",
        "vidur_dir": "meta-llama/Meta-Llama-3-8B",
    },
    # The shapes below are the values of each model's Hugging Face config.json (huggingface.co/<name>, file
    # config.json: num_hidden_layers, hidden_size, intermediate_size, num_attention_heads, num_key_value_heads;
    # head_dim = hidden_size / num_attention_heads); Vidur's vidur/config/model_config.py profiles the same shapes.
    "phi-2": {
        "name": "microsoft/phi-2",
        "num_layers": 32,
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "num_attention_heads": 32,
        "num_kv_heads": 32,
        "head_dim": 80,
        "dtype": "fp16",
        "vidur_dir": "microsoft/phi-2",
        # fc1 -> GELU -> fc2 (two weight matrices, not three) and one LayerNorm per layer: attention and MLP read
        # the same normalized input, so Vidur's profile has no post_attention_layernorm.
        "gated_mlp": False,
        "post_attention_norm": False,
        "config_source": "huggingface.co/microsoft/phi-2 config.json",
    },
    "internlm-20b": {
        "name": "internlm/internlm-20b",
        "num_layers": 60,
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_attention_heads": 40,
        "num_kv_heads": 40,
        "head_dim": 128,
        "dtype": "fp16",
        "vidur_dir": "internlm/internlm-20b",
        "config_source": "huggingface.co/internlm/internlm-20b config.json",
    },
    "codellama-34b": {
        "name": "codellama/CodeLlama-34b-Instruct-hf",
        "num_layers": 48,
        "hidden_size": 8192,
        "intermediate_size": 22016,
        "num_attention_heads": 64,
        "num_kv_heads": 8,
        "head_dim": 128,
        "dtype": "fp16",
        "vidur_dir": "codellama/CodeLlama-34b-Instruct-hf",
        "config_source": "huggingface.co/codellama/CodeLlama-34b-Instruct-hf config.json",
    },
}
#: Keys of ``MODELS`` entries that steer the tool and stay out of the preset's ``model`` section.
TOOL_KEYS = ("vidur_dir", "gated_mlp", "post_attention_norm", "config_source")


@dataclass(frozen=True)
class PresetPlan:
    """How one preset is built: which profiles it reads and what it derives."""

    model: str
    device: str
    #: ``(device, model)`` whose linear-operator profile is used; with ``ops_ratio`` it is scaled by the per-token
    #: ratio ``ops_ratio[1] / ops_ratio[0]`` of two measured profiles (a device change measured on another model).
    ops_from: tuple[str, str]
    ops_ratio: tuple[tuple[str, str], tuple[str, str]] | None = None

    @property
    def name(self) -> str:
        return f"{self.model}-{self.device}"


PLANS = (
    PresetPlan("llama2-7b", "a100", ops_from=("a100", "llama2-7b")),
    PresetPlan("llama2-7b", "h100", ops_from=("h100", "llama2-7b")),
    PresetPlan("llama2-7b", "a40", ops_from=("a40", "llama2-7b")),
    PresetPlan("llama3-8b", "a100", ops_from=("a100", "llama3-8b")),
    PresetPlan(
        "llama3-8b",
        "h100",
        ops_from=("a100", "llama3-8b"),
        ops_ratio=(("a100", "llama2-7b"), ("h100", "llama2-7b")),
    ),
    PresetPlan("phi-2", "a100", ops_from=("a100", "phi-2")),
    PresetPlan("phi-2", "h100", ops_from=("h100", "phi-2")),
    PresetPlan("phi-2", "a40", ops_from=("a40", "phi-2")),
    PresetPlan("internlm-20b", "a100", ops_from=("a100", "internlm-20b")),
    PresetPlan("internlm-20b", "h100", ops_from=("h100", "internlm-20b")),
    PresetPlan("codellama-34b", "a100", ops_from=("a100", "codellama-34b")),
    PresetPlan("codellama-34b", "h100", ops_from=("h100", "codellama-34b")),
)
#: The one profile with attention samples; every other preset's attention is derived from its fit.
ATTENTION_SOURCE = ("a100", "llama2-7b")


def sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits."""
    return float(f"{x:.{digits - 1}e}")


# ----------------------------------------------------------------------------------------------------------------
# Linear operators


def layer_ops(model: str) -> tuple[str, ...]:
    """The per-layer operators Vidur adds up for ``model``: :data:`LAYER_OPS`, less the post-attention norm of a
    model that has none (Phi-2)."""
    norm = MODELS[model].get("post_attention_norm", True)
    return tuple(op for op in LAYER_OPS if norm or op != "post_attention_layernorm")


def raw_linear_ops(device: str, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Token counts (multiples of 8) and per-layer ms sums of the profile, duplicates averaged."""
    by_tokens: dict[int, list[float]] = {}
    ops = layer_ops(model)
    with (PROFILES / device / model / "linear_ops.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            total = sum(float(row[f"time_stats.{op}.median"]) for op in ops)
            by_tokens.setdefault(int(row["num_tokens"]), []).append(total)
    tokens = np.array([t for t in sorted(by_tokens) if t % TOKEN_STEP == 0])
    ms = np.array([sum(by_tokens[t]) / len(by_tokens[t]) for t in tokens])
    return tokens, ms


def monotone(ms: np.ndarray) -> np.ndarray:
    """The least-squares non-decreasing fit (isotonic regression, equal weights)."""
    from scipy.optimize import isotonic_regression

    return np.asarray(isotonic_regression(ms, increasing=True).x)


def linear_ops_table(plan: PresetPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(tokens, raw ms, table ms, extrapolation slope)``: the raw sums, their monotone fit rounded to 1e-6 ms,
    and the least-squares slope (4 significant digits) of the table on its upper half."""
    tokens, raw = raw_linear_ops(*plan.ops_from)
    if plan.ops_ratio is not None:
        (t0, m0), (t1, m1) = (raw_linear_ops(*p) for p in plan.ops_ratio)
        assert np.array_equal(t0, t1), "the ratio profiles must share their token counts"
        ratio = monotone(m1) / monotone(m0)
        # Past the ratio profiles' last count, the ratio of their upper half (compute-bound GEMMs) is used.
        ratio_tail = float(np.median(ratio[t0 >= t0[-1] // 2]))
        raw = raw * np.interp(tokens, t0, ratio, right=ratio_tail)
    table = np.array([round(float(m), 6) for m in monotone(raw)])  # Python's round: correctly rounded
    upper = tokens >= tokens[-1] // 2
    slope = sig(float(np.polyfit(tokens[upper], table[upper], 1)[0]), 5)
    return tokens, raw, table, slope


def lookup(tokens: np.ndarray, table: np.ndarray, slope: float, n: np.ndarray) -> np.ndarray:
    """The Rust lookup: round up to a multiple of 8, interpolate, clamp below, extrapolate past the table."""
    t = np.maximum(1, -(-n // TOKEN_STEP)) * TOKEN_STEP
    inside = np.interp(t, tokens, table)
    return np.where(t > tokens[-1], table[-1] + (t - tokens[-1]) * slope, inside)


# ----------------------------------------------------------------------------------------------------------------
# Attention


def attention_samples() -> dict[str, np.ndarray]:
    """Vidur's attention samples of the source profile: kind, b, c, kv, ms columns."""
    cols: dict[str, list[Any]] = {"kind": [], "b": [], "c": [], "kv": [], "ms": []}
    with (PROFILES / ATTENTION_SOURCE[0] / ATTENTION_SOURCE[1] / "attention_samples.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            cols["kind"].append(row["kind"])
            cols["b"].append(int(row["batch_size"]))
            cols["c"].append(int(row["prefill_chunk_size"]))
            cols["kv"].append(int(row["kv_cache_size"]))
            cols["ms"].append(float(row["attn_time_ms_median"]))
    return {k: np.array(v) for k, v in cols.items()}


def decode_features(b: np.ndarray, kv: np.ndarray) -> np.ndarray:
    """Columns of ``c0 + c1·b + c2·Σkv`` (the samples' Σkv is ``b·kv``)."""
    return np.column_stack([np.ones(len(b)), b, b * kv]).astype(float)


def prefill_features(c: np.ndarray, kv: np.ndarray) -> np.ndarray:
    """Columns of ``p0·c + p1·c² + p2·c·kv + p3·kv`` for one chunk."""
    c, kv = c.astype(float), kv.astype(float)
    return np.column_stack([c, c * c, c * kv, kv])


def relative_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Minimises sum(((x @ beta - y) / y) ** 2): rows weighted by 1/y, columns scaled for conditioning."""
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    beta, *_ = np.linalg.lstsq(x / scale / y[:, None], np.ones(len(y)), rcond=None)
    return np.array([sig(v) for v in beta / scale])


#: The coefficients first published for these samples (ms per layer; the fit that the `llama2-7b-a100` preset has
#: used since it was Rust code). Kept while the refit agrees with them within `PUBLISHED_TOLERANCE`, so that
#: results under the default preset stay bit-identical; the refit differs only in the 4th significant digit
#: (decode intercept 0.005977, prefill per-cached-token 9.562e-6).
PUBLISHED_ATTENTION = ([0.00598, 0.001097, 8.772e-6], [1.325e-4, 1.246e-7, 1.080e-7, 9.56e-6])
PUBLISHED_TOLERANCE = 1e-3


def refit_attention() -> tuple[list[float], list[float]]:
    """Decode ``[c0, c1, c2]`` and prefill ``[p0, p1, p2, p3]`` (ms per layer) fitted on the samples."""
    s = attention_samples()
    d, p = s["kind"] == "decode", s["kind"] == "prefill"
    decode = relative_lstsq(decode_features(s["b"][d], s["kv"][d]), s["ms"][d])
    prefill = relative_lstsq(prefill_features(s["c"][p], s["kv"][p]), s["ms"][p])
    return [float(v) for v in decode], [float(v) for v in prefill]


def fitted_attention() -> tuple[list[float], list[float]]:
    """The source preset's attention: :data:`PUBLISHED_ATTENTION` while the refit agrees with it, else the refit."""
    refit = refit_attention()
    agree = all(
        abs(r - q) <= PUBLISHED_TOLERANCE * abs(q)
        for got, published in zip(refit, PUBLISHED_ATTENTION, strict=True)
        for r, q in zip(got, published, strict=True)
    )
    return (list(PUBLISHED_ATTENTION[0]), list(PUBLISHED_ATTENTION[1])) if agree else refit


def derived_attention(plan: PresetPlan, gemm_ratio: float) -> tuple[list[float], list[float], str]:
    """The attention coefficients of ``plan``, derived from the source fit, and how they were derived.

    * KV heads: decode's per-context-token cost and prefill's per-cached-token cost read the KV cache, so they
      scale with the KV bytes per token, KV heads x head_dim (Llama-3-8B: 8 KV heads instead of 32, a quarter).
    * Query heads: decode's per-sequence cost and prefill's per-token, per-token-squared and per-token-per-cached-
      token costs are work per query head, so they scale with query heads x head_dim (Llama-3-8B: 32 of 128, as
      the source; InternLM-20B: 40 of 128). Decode's intercept (one kernel call) is kept.
    * Device: decode attention is bound by HBM bandwidth (scaled by the bandwidth ratio); prefill attention is
      compute-bound (scaled by ``gemm_ratio``, the measured H100/A100 ratio of the linear operators' upper half).
    """
    decode, prefill = fitted_attention()
    src_model, dst_model = MODELS[ATTENTION_SOURCE[1]], MODELS[plan.model]
    head_dim = dst_model["head_dim"]
    of_dim = f" of {head_dim}" if head_dim != src_model["head_dim"] else ""
    kv_ratio = (dst_model["num_kv_heads"] * head_dim) / (src_model["num_kv_heads"] * src_model["head_dim"])
    q_ratio = (dst_model["num_attention_heads"] * head_dim) / (src_model["num_attention_heads"] * src_model["head_dim"])
    bw_ratio = HBM_GBPS[ATTENTION_SOURCE[0]] / HBM_GBPS[plan.device]
    how = []
    if kv_ratio != 1:
        decode[2] *= kv_ratio
        prefill[3] *= kv_ratio
        how.append(
            f"KV-read terms (decode [2], prefill [3]) x {kv_ratio:g} for {dst_model['num_kv_heads']} KV heads{of_dim}"
        )
    if q_ratio != 1:
        decode[1] *= q_ratio
        prefill[:3] = [v * q_ratio for v in prefill[:3]]
        how.append(
            f"per-query-head terms (decode [1], prefill [0]-[2]) x {q_ratio:g} for "
            f"{dst_model['num_attention_heads']} query heads{of_dim}"
        )
    if plan.device != ATTENTION_SOURCE[0]:
        decode = [v * bw_ratio for v in decode]
        prefill = [v * gemm_ratio for v in prefill]
        how.append(
            f"decode x {bw_ratio:.4f} (HBM bandwidth "
            f"{HBM_GBPS[ATTENTION_SOURCE[0]]:g}/{HBM_GBPS[plan.device]:g} GB/s), "
            f"prefill x {gemm_ratio:.4f} (measured {plan.device}/{ATTENTION_SOURCE[0]} ratio of the linear "
            "operators at 2048-4096 tokens)"
        )
    return [sig(v) for v in decode], [sig(v) for v in prefill], "; ".join(how)


def gemm_ratio(device: str) -> float:
    """Median ratio ``device`` / A100 of Llama-2-7B's monotone linear-operator tables on their upper half."""
    t0, m0 = raw_linear_ops("a100", "llama2-7b")
    _, m1 = raw_linear_ops(device, "llama2-7b")
    upper = t0 >= t0[-1] // 2
    return float(np.median((monotone(m1) / monotone(m0))[upper]))


# ----------------------------------------------------------------------------------------------------------------
# KV capacity (Vidur's memory planner, vidur/scheduler/utils/memory_planner.py)


def kv_capacity(model: dict[str, Any], device: dict[str, Any], max_tokens: int = 4096) -> tuple[int, int, str]:
    """``(num_blocks, kv_bytes_per_token, how)``: 90 % of device memory minus the fp16 weights of the transformer
    layers (Vidur's parameter count: no embedding or LM head), in requests of ``max_tokens`` KV tokens, each
    ``max_tokens / 16`` blocks."""
    h, heads, kv_heads, d = model["hidden_size"], model["num_attention_heads"], model["num_kv_heads"], model["head_dim"]
    mlp_matrices = 3 if model.get("gated_mlp", True) else 2  # gate, up, down; or fc1, fc2
    per_layer = h * d * (heads + 2 * kv_heads) + h * d * heads + mlp_matrices * h * model["intermediate_size"]
    params = per_layer * model["num_layers"]
    kv_bytes_per_token = 2 * 2 * model["num_layers"] * kv_heads * d
    available = device["memory_bytes"] * 0.9 - 2 * params
    requests = int(available // (kv_bytes_per_token * max_tokens))
    num_blocks = requests * max_tokens // BLOCK_SIZE
    how = (
        f"Vidur's memory planner: 90 % of {device['memory_bytes'] // GIB} GiB minus fp16 weights of "
        f"{params:,} layer parameters = {available / GIB:.2f} GiB, in requests of {max_tokens} tokens x "
        f"{kv_bytes_per_token:,} KV bytes per token (2 x {model['num_layers']} layers x {kv_heads} KV heads x "
        f"{d} x 2 bytes): {requests} requests x {max_tokens // BLOCK_SIZE} blocks of {BLOCK_SIZE}"
    )
    return num_blocks, kv_bytes_per_token, how


# ----------------------------------------------------------------------------------------------------------------
# Fit errors


def per_layer_ms(
    ops: tuple[np.ndarray, np.ndarray, float], decode: list[float], prefill: list[float], shape: dict[str, np.ndarray]
) -> np.ndarray:
    """The model's per-layer ms of shapes with ``b`` decodes at context ``dkv`` and one chunk ``c`` on ``pkv``."""
    b, dkv, c, pkv = shape["b"], shape["dkv"], shape["c"], shape["pkv"]
    ms = lookup(*ops, b + c)
    ms = ms + np.where(b > 0, decode_features(b, dkv) @ np.array(decode), 0.0)
    return ms + prefill_features(c, pkv) @ np.array(prefill)


def fit_errors(
    plan: PresetPlan,
    ops: tuple[np.ndarray, np.ndarray, float],
    raw_ops: np.ndarray,
    decode: list[float],
    prefill: list[float],
    attention_scale: tuple[list[float], list[float]],
) -> dict[str, Any]:
    """Relative error of the per-layer iteration (linear operators + attention) against the measurements: the raw
    operator sums at the batch's token count plus the measured attention samples (scaled as the preset's
    attention was derived, for a derived preset). Mixed: every prefill sample of up to 2,048 tokens together with
    every decode sample."""
    tokens = ops[0]
    s = attention_samples()
    d, p = s["kind"] == "decode", s["kind"] == "prefill"
    dscale, pscale = (np.array(v) for v in attention_scale)
    measured_decode = (
        s["ms"][d]
        * (decode_features(s["b"][d], s["kv"][d]) @ dscale)
        / (decode_features(s["b"][d], s["kv"][d]) @ np.array(fitted_attention()[0]))
    )
    measured_prefill = (
        s["ms"][p]
        * (prefill_features(s["c"][p], s["kv"][p]) @ pscale)
        / (prefill_features(s["c"][p], s["kv"][p]) @ np.array(fitted_attention()[1]))
    )

    def raw_at(n: np.ndarray) -> np.ndarray:
        t = np.maximum(1, -(-n // TOKEN_STEP)) * TOKEN_STEP
        return np.interp(t, tokens, raw_ops)

    zeros = np.zeros(int(d.sum()), dtype=int)
    dec = {"b": s["b"][d], "dkv": s["kv"][d], "c": zeros, "pkv": zeros}
    zeros = np.zeros(int(p.sum()), dtype=int)
    pre = {"b": zeros, "dkv": zeros, "c": s["c"][p], "pkv": s["kv"][p]}
    small = s["c"][p] <= 2048
    mi, mj = np.meshgrid(np.flatnonzero(small), np.arange(int(d.sum())), indexing="ij")
    mi, mj = mi.ravel(), mj.ravel()
    mix = {"b": dec["b"][mj], "dkv": dec["dkv"][mj], "c": pre["c"][mi], "pkv": pre["pkv"][mi]}
    regions: dict[str, Any] = {}
    all_errors = []
    for region, shape, attn in (
        ("decode", dec, measured_decode),
        ("prefill", pre, measured_prefill),
        ("mixed", mix, measured_prefill[mi] + measured_decode[mj]),
    ):
        measured = raw_at(shape["b"] + shape["c"]) + attn
        err = np.abs(per_layer_ms(ops, decode, prefill, shape) / measured - 1.0)
        regions[region] = round(100 * float(err.mean()), 2)
        all_errors.append(err)
    err = np.concatenate(all_errors)
    return {"mape_percent": round(100 * float(err.mean()), 2), "regions": regions, "num_points": len(err)}


def linearization(
    ops: tuple[np.ndarray, np.ndarray, float], decode: list[float], prefill: list[float], layers: int, capacity: int
) -> dict[str, float]:
    """The tokens-only line ``d0 + d1 · num_tokens`` the core computes at load time (same shapes, same
    relative-error fit, 4 significant digits), with its MAPE on those shapes: informational, checked by a test."""
    rows = []
    for ctx in range(100, 2001, 100):
        rows += [(0, b, ctx) for b in range(1, 257) if b * (ctx + 1) <= capacity]
    for chunk in (128, 256, 512, 1024, 2048):
        for ctx in range(100, 2001, 100):
            for b in (0, 1, 2, 4, 8, 16, 32, 64, 128, 256):
                if (b > 0 or ctx == 100) and chunk + b * (ctx + 1) <= capacity:
                    rows.append((chunk, b, ctx))
    c, b, ctx = (np.array(col) for col in zip(*rows, strict=True))
    shape = {"b": b, "dkv": ctx, "c": c, "pkv": np.zeros(len(c), dtype=int)}
    y = layers * per_layer_ms(ops, decode, prefill, shape) / 1000.0
    x = (b + c).astype(float)
    d0, d1 = relative_lstsq(np.column_stack([np.ones(len(x)), x]), y)
    mape = 100 * float(np.mean(np.abs((d0 + d1 * x) / y - 1.0)))
    return {"d0_s": float(d0), "d1_s_per_token": float(d1), "mape_percent": round(mape, 1), "num_shapes": len(x)}


# ----------------------------------------------------------------------------------------------------------------
# Presets


def build(plan: PresetPlan) -> dict[str, Any]:
    """The preset document of ``plan``."""
    model, device = MODELS[plan.model], DEVICES[plan.device]
    tokens, raw, table, slope = linear_ops_table(plan)
    fitted = fitted_attention()
    if (plan.device, plan.model) == ATTENTION_SOURCE:
        decode, prefill = fitted
        refit = refit_attention()
        attention_how = (
            f"relative-error least squares on {len(attention_samples()['ms'])} Vidur attention samples "
            f"(coefficients as first published; this refit gives decode {refit[0]}, prefill {refit[1]})"
        )
    else:
        ratio = gemm_ratio(plan.device)
        decode, prefill, how = derived_attention(plan, ratio)
        attention_how = f"derived from the {ATTENTION_SOURCE[1]}-{ATTENTION_SOURCE[0]} fit: {how}"
    num_blocks, kv_bytes, kv_how = kv_capacity(model, device)
    ops = (tokens, table, slope)
    fit = fit_errors(plan, ops, raw, decode, prefill, (decode, prefill))
    fit["linearization"] = linearization(ops, decode, prefill, model["num_layers"], num_blocks * BLOCK_SIZE)
    fit["attention"] = attention_how
    ops_dir = f"data/profiling/compute/{plan.ops_from[0]}/{MODELS[plan.ops_from[1]]['vidur_dir']}/mlp.csv"
    source = f"microsoft/vidur (MIT) at {VIDUR_COMMIT}: {ops_dir}"
    if plan.ops_ratio is not None:
        (a_dev, _), (b_dev, b_model) = plan.ops_ratio
        source += (
            f" x the per-token {b_dev}/{a_dev} ratio of the {b_model} profiles (no {plan.device} profile of this model)"
        )
    source += f"; attention: {attention_how}"
    if "config_source" in model:
        source += f"; model shapes: {model['config_source']}"
    model_info = {k: v for k, v in model.items() if k not in TOOL_KEYS}
    return {
        "format": "fluidsched-time-model/1",
        "name": plan.name,
        "description": f"{model['name'].split('/')[1]}, fp16, TP=1, one {device['name'].split()[1]}, "
        "from Vidur's operator profiles",
        "model": model_info,
        "device": device,
        "kv_cache": {"block_size": BLOCK_SIZE, "num_blocks": num_blocks, "kv_bytes_per_token": kv_bytes, "how": kv_how},
        "iteration": {
            "num_layers": model["num_layers"],
            "overhead_ms": 0.0,
            "token_step": TOKEN_STEP,
            "linear_ops_ms": [[int(t), float(m)] for t, m in zip(tokens, table, strict=True)],
            "linear_ops_extrapolation_ms_per_token": slope,
            "decode_attention_ms": decode,
            "prefill_attention_ms": prefill,
        },
        "fit": fit,
        "provenance": {"source": source, "tool": "tools/fit_time_model.py", "created": CREATED},
    }


def dumps(doc: dict[str, Any]) -> str:
    """JSON with 2-space indentation and the linear-operator table six pairs per line."""
    table = doc["iteration"]["linear_ops_ms"]
    marker = "@@TABLE@@"
    text = json.dumps({**doc, "iteration": {**doc["iteration"], "linear_ops_ms": marker}}, indent=2)
    rows = [", ".join(json.dumps(pair) for pair in table[i : i + 6]) for i in range(0, len(table), 6)]
    body = "[\n      " + ",\n      ".join(rows) + "\n    ]"
    return text.replace(json.dumps(marker), body) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# Cross-check against BLIS (inference-sim/inference-sim, commit f90a1e3): its "trained-physics" step time, a roofline
# prior with coefficients fitted to real vLLM runs (defaults.yaml `trained_physics_coefficients`, one set for every
# model and GPU; hardware_config.json for peak FLOP/s and HBM bandwidth). The formula is re-derived here from its
# documentation for dense models at TP=1: every term in microseconds.

BLIS_BETA = (0.152128, 0.0, 1.36252915, 0.752037, 32.09546717, 4.41684444, 126.024825, 481.8613888, 0.0, 1.94710771)
BLIS_HW = {"a100": (312.0, 2.039), "h100": (989.5, 3.35)}  # TFLOP/s peak, TB/s


def blis_step_ms(model: dict[str, Any], device: str, prefill: list[int], decode_contexts: list[int]) -> float:
    """BLIS's step time (ms) of full prefills of ``prefill`` tokens each plus decodes at ``decode_contexts``."""
    tflops, tbs = BLIS_HW[device]
    peak, bw = tflops * 1e6, tbs * 1e6  # FLOP/us, bytes/us
    layers, d, heads, dh = model["num_layers"], model["hidden_size"], model["num_attention_heads"], model["head_dim"]
    dkv, dff = model["num_kv_heads"] * dh, model["intermediate_size"]
    beta = BLIS_BETA
    t_pf = sum(prefill)
    t_dc = len(decode_contexts)
    ctx = sum(decode_contexts)
    mlp_matrices = 3 if model.get("gated_mlp", True) else 2
    proj_ffn = 2 * d * (2 * d + 2 * dkv) + 2 * mlp_matrices * d * dff  # FLOPs per token per layer
    pf_compute = layers * (t_pf * proj_ffn + sum(4 * heads * c * 1.5 * c * dh for c in prefill)) / peak
    pf_kv = layers * 2 * dkv * t_pf * 2 / bw
    dc_compute = layers * (t_dc * proj_ffn + 4 * heads * ctx * dh) / peak
    dc_kv = layers * 2 * dkv * 2 * (ctx + t_dc) / bw
    weight = layers * (d * (2 * d + 2 * dkv) + mlp_matrices * d * dff) * 2 / bw
    us = (
        (beta[0] * pf_compute + beta[8] * pf_kv if t_pf else 0.0)
        + (beta[1] * dc_compute + beta[9] * dc_kv if t_dc else 0.0)
        + beta[2] * weight
        + beta[4] * layers
        + beta[5] * (len(prefill) + t_dc)
        + beta[6]
    )
    return us / 1000.0


BLIS_BATCHES = (
    ("decode 64 x 1024 context", [], [1024] * 64),
    ("decode 8 x 512 context", [], [512] * 8),
    ("prefill 2048 tokens", [2048], []),
    ("mixed: prefill 512 + decode 64 x 1024", [512], [1024] * 64),
)


def blis_table() -> str:
    """Markdown table: each A100 or H100 preset's iteration time and BLIS's for the same batches (the A40 is not
    in the hardware data used here)."""
    lines = [
        "| preset | batch | fluidsched (ms) | BLIS trained-physics (ms) | fluidsched / BLIS |",
        "|---|---|---|---|---|",
    ]
    for plan in PLANS:
        if plan.device not in BLIS_HW:
            continue
        doc = build(plan)
        it = doc["iteration"]
        tokens = np.array([t for t, _ in it["linear_ops_ms"]])
        table = np.array([m for _, m in it["linear_ops_ms"]])
        ops = (tokens, table, it["linear_ops_extrapolation_ms_per_token"])
        for label, prefill, decodes in BLIS_BATCHES:
            n = sum(prefill) + len(decodes)
            per_layer = float(lookup(*ops, np.array([n]))[0])
            if decodes:
                per_layer += float(
                    (decode_features(np.array([len(decodes)]), np.array([decodes[0]])) @ it["decode_attention_ms"])[0]
                )
            for c in prefill:
                per_layer += float((prefill_features(np.array([c]), np.array([0])) @ it["prefill_attention_ms"])[0])
            ms = it["num_layers"] * per_layer + it["overhead_ms"]
            blis = blis_step_ms(MODELS[plan.model], plan.device, prefill, decodes)
            lines.append(f"| {plan.name} | {label} | {ms:.2f} | {blis:.2f} | {ms / blis:.2f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the preset files")
    mode.add_argument("--check", action="store_true", help="exit 1 if a shipped preset is out of date")
    mode.add_argument("--blis", action="store_true", help="print the comparison with BLIS's step-time model")
    args = ap.parse_args()
    if args.blis:
        print(blis_table())
        return 0
    stale = []
    for plan in PLANS:
        doc = build(plan)
        text = dumps(doc)
        path = PRESET_DIR / f"{plan.name}.json"
        fit, kv, it = doc["fit"], doc["kv_cache"], doc["iteration"]
        lin = fit["linearization"]
        print(
            f"{plan.name}: {len(it['linear_ops_ms'])} table points, "
            f"slope {it['linear_ops_extrapolation_ms_per_token']}; "
            f"decode {it['decode_attention_ms']}, prefill {it['prefill_attention_ms']}; "
            f"KV {kv['num_blocks']} x {kv['block_size']} = {kv['num_blocks'] * kv['block_size']:,} tokens; "
            f"fit MAPE {fit['mape_percent']} % {fit['regions']} on {fit['num_points']} points; "
            f"line d0 {lin['d0_s']} s, d1 {lin['d1_s_per_token']} s/token (MAPE {lin['mape_percent']} %)"
        )
        if args.write:
            path.write_text(text)
        elif args.check and (not path.exists() or path.read_text() != text):
            stale.append(path.name)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python tools/fit_time_model.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
