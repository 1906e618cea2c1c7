"""``fluidsched calibrate`` without torch: the fit recovers known time models from synthetic timings, KV sizing,
model configs, the grid, the preset's format, and the CLI's errors before torch is needed."""

from __future__ import annotations

import csv
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli_helpers import run_cli
from fluidsched.calibrate import build_preset, read_log, rounded, write_log
from fluidsched.calibrate_fit import (
    Measurement,
    TimeModelFit,
    attention_features,
    fit_errors,
    fit_time_model,
    non_decreasing_fit,
    nonneg_least_squares,
)
from fluidsched.calibrate_shapes import (
    BUILTIN_CONFIGS,
    QUICK_GRID,
    BatchPoint,
    Grid,
    kv_bytes_per_token,
    kv_capacity_blocks,
    load_model_shape,
)
from fluidsched.errors import InvalidConfigError
from preset_schema import check_preset, preset_iteration_ms

POINTS = QUICK_GRID.points()
LINEAR_TOKENS = [p.num_tokens for p in POINTS if p.region == "linear"]


def ground_truth(rng: np.random.Generator) -> TimeModelFit:
    """A random time model in the preset's family: increasing table on the quick grid's linear points, each
    attention coefficient zero (one time in four) or positive at a realistic scale."""
    layers = int(rng.integers(1, 41))
    steps = rng.uniform(0, 0.01, len(LINEAR_TOKENS)) * np.diff([0, *LINEAR_TOKENS])
    table = rng.uniform(0.05, 0.5) + np.cumsum(steps)
    scales = [5e-3, 1e-3, 1e-5, 1e-4, 1e-7, 1e-7, 1e-5]
    coefs = [0.0 if rng.random() < 0.25 else float(rng.uniform(0.1, 2) * s) for s in scales]
    return TimeModelFit(
        num_layers=layers,
        overhead_ms=float(rng.uniform(0, 5)),
        token_step=1,
        linear_ops_ms=tuple((n, float(v)) for n, v in zip(LINEAR_TOKENS, table, strict=True)),
        linear_ops_extrapolation_ms_per_token=1e-3,
        decode_attention_ms=(coefs[0], coefs[1], coefs[2]),
        prefill_attention_ms=(coefs[3], coefs[4], coefs[5], coefs[6]),
    )


def synthetic(truth: TimeModelFit, noise: float = 0.0, seed: int = 0) -> list[Measurement]:
    """What calibrate would measure on hardware that follows ``truth`` exactly (times x lognormal noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for p in POINTS:
        outside = truth.overhead_ms
        if p.region == "linear":
            ms = outside + truth.num_layers * truth.linear_ops(p.num_tokens)
        else:
            ms = truth.predict_ms(p)
        ms *= float(np.exp(rng.normal(0, noise))) if noise else 1.0
        out.append(Measurement(point=p, ms=ms, min_ms=ms, max_ms=ms, outside_ms=outside, repeats=1))
    return out


@given(st.integers(0, 2**32 - 1))
def test_fit_recovers_the_ground_truth_model(seed: int) -> None:
    truth = ground_truth(np.random.default_rng(seed))
    fit = fit_time_model(synthetic(truth), truth.num_layers)
    assert fit.overhead_ms == pytest.approx(truth.overhead_ms, rel=1e-12, abs=1e-12)
    assert [n for n, _ in fit.linear_ops_ms] == LINEAR_TOKENS
    for (_, got_ms), (_, want_ms) in zip(fit.linear_ops_ms, truth.linear_ops_ms, strict=True):
        assert got_ms == pytest.approx(want_ms, rel=1e-9)
    # Each coefficient, judged by the largest contribution its term makes to any point's time.
    features = np.array([attention_features(p) for p in POINTS if p.region != "linear"]).max(axis=0)
    largest = max(truth.predict_ms(p) for p in POINTS)
    got = np.array(fit.decode_attention_ms + fit.prefill_attention_ms)
    want = np.array(truth.decode_attention_ms + truth.prefill_attention_ms)
    assert np.all(got >= 0)
    assert np.all(np.abs(got - want) * features * truth.num_layers <= 1e-7 * largest), (got, want)
    errors = fit_errors(fit, synthetic(truth))
    assert errors.mape_percent < 1e-6
    assert errors.num_points == sum(p.region != "linear" for p in POINTS)


def test_fit_error_under_noise_is_the_noise() -> None:
    truth = ground_truth(np.random.default_rng(7))
    measured = synthetic(truth, noise=0.03, seed=1)
    fit = fit_time_model(measured, truth.num_layers)
    errors = fit_errors(fit, measured)
    # 3 % lognormal noise: mean |error| of the data itself is about 2.4 %; a fit cannot do much better or worse.
    assert 1.0 < errors.mape_percent < 4.5
    assert all(v is not None and v < 6.0 for v in errors.regions.values())
    assert math.isfinite(errors.max_percent)
    assert errors.max_percent >= errors.mape_percent


def test_the_table_is_made_non_decreasing_and_the_slope_positive() -> None:
    truth = ground_truth(np.random.default_rng(3))
    measured = synthetic(truth)
    # Make the linear-operator points zig-zag, as GEMM tile steps and noise do.
    bumped = [
        Measurement(m.point, m.ms * (1.3 if i % 3 == 1 else 1.0), m.ms, m.ms, m.outside_ms, 1)
        if m.point.region == "linear"
        else m
        for i, m in enumerate(measured)
    ]
    fit = fit_time_model(bumped, truth.num_layers)
    values = [v for _, v in fit.linear_ops_ms]
    assert values == sorted(values)
    assert fit.linear_ops_extrapolation_ms_per_token > 0


@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(0.01, 10)), min_size=1, max_size=30))
def test_non_decreasing_fit_is_monotone_and_keeps_the_weighted_mean(pairs: list[tuple[float, float]]) -> None:
    values, weights = [v for v, _ in pairs], [w for _, w in pairs]
    out = non_decreasing_fit(values, weights)
    assert len(out) == len(values)
    assert all(a <= b + 1e-9 for a, b in itertools.pairwise(out))
    assert np.dot(out, weights) == pytest.approx(np.dot(values, weights), rel=1e-9, abs=1e-6)
    assert non_decreasing_fit(sorted(values), weights) == pytest.approx(sorted(values))


def test_non_decreasing_fit_pools_a_violating_pair() -> None:
    assert non_decreasing_fit([1.0, 3.0, 2.0], [1.0, 1.0, 1.0]) == [1.0, 2.5, 2.5]
    assert non_decreasing_fit([1.0, 3.0, 2.0], [1.0, 3.0, 1.0]) == [1.0, 2.75, 2.75]


@given(st.integers(0, 2**32 - 1), st.integers(1, 5))
def test_nonneg_least_squares_meets_the_optimality_conditions(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(12, k)) * rng.uniform(1e-6, 1e3, size=k)
    y = rng.normal(size=12)
    x = nonneg_least_squares(a, y)
    assert np.all(x >= 0)
    grad = a.T @ (a @ x - y)
    scale = np.linalg.norm(a, axis=0) * np.linalg.norm(y)
    for j in range(k):  # KKT: zero gradient on the support, non-negative off it
        if x[j] > 0:
            assert abs(grad[j]) <= 1e-7 * scale[j]
        else:
            assert grad[j] >= -1e-7 * scale[j]


def test_linear_ops_lookup_follows_the_format() -> None:
    fit = TimeModelFit(2, 0.0, 8, ((8, 1.0), (16, 2.0), (32, 2.0)), 0.5, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0))
    assert fit.linear_ops(1) == 1.0  # rounded up to 8
    assert fit.linear_ops(9) == 2.0  # rounded up to 16
    assert fit.linear_ops(24) == 2.0
    assert fit.linear_ops(40) == 2.0 + 8 * 0.5  # extrapolated from 32
    early = TimeModelFit(2, 0.0, 1, ((4, 1.0), (8, 3.0)), 0.5, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0))
    assert early.linear_ops(1) == 1.0  # clamped below the first point
    assert early.linear_ops(6) == 2.0


@pytest.mark.parametrize(
    ("name", "dtype", "expected"),
    [
        ("llama2-7b", "fp16", 524_288),
        ("llama2-7b", "bf16", 524_288),
        ("llama2-7b", "fp32", 1_048_576),
        ("llama3-8b", "fp16", 131_072),
        ("llama3-8b", "bf16", 131_072),
        ("mistral-7b", "bf16", 131_072),
        ("llama2-13b", "fp16", 819_200),
        ("tiny-llama", "fp32", 512),
    ],
)
def test_kv_bytes_per_token_on_known_models(name: str, dtype: str, expected: int) -> None:
    assert kv_bytes_per_token(load_model_shape(name), dtype) == expected


def test_kv_capacity_rounds_down_to_whole_blocks() -> None:
    assert kv_capacity_blocks(524_288 * 100 + 5, 524_288, 16) == 6  # 100 tokens -> 6 blocks of 16
    assert kv_capacity_blocks(1e12, 512, 16, max_tokens=4100) == 256
    with pytest.raises(InvalidConfigError, match="no room for the KV cache"):
        kv_capacity_blocks(524_288 * 15, 524_288, 16)
    with pytest.raises(InvalidConfigError, match="no room"):
        kv_capacity_blocks(-1e9, 512, 16)


def test_builtin_shapes_match_the_public_configs() -> None:
    s = load_model_shape("llama3-8b")
    assert (s.num_layers, s.hidden_size, s.num_attention_heads, s.num_kv_heads, s.head_dim) == (32, 4096, 32, 8, 128)
    tiny = load_model_shape("tiny-llama", num_layers=3)
    assert (tiny.num_layers, tiny.hidden_size, tiny.num_kv_heads, tiny.head_dim, tiny.vocab_size) == (3, 64, 2, 16, 256)
    assert BUILTIN_CONFIGS["tiny-llama"]["num_hidden_layers"] == 2  # the override did not leak into the built-in


def test_a_config_file_or_directory_is_read(tmp_path: Path) -> None:
    config = {"model_type": "qwen2", "hidden_size": 96, "num_attention_heads": 6, "num_key_value_heads": 2}
    config |= {"num_hidden_layers": 3, "vocab_size": 100, "head_dim": 32, "_name_or_path": "org/model"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    for spec in (tmp_path, tmp_path / "config.json"):
        s = load_model_shape(str(spec))
        assert (s.name, s.model_type, s.num_layers, s.head_dim, s.num_kv_heads) == ("org/model", "qwen2", 3, 32, 2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON config"),
        ("[1, 2]", "expected a JSON object"),
        ('{"model_type": "gpt2", "n_layer": 2}', "model_type 'gpt2' is not supported"),
        ('{"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 9}', "hidden_size"),
        (
            '{"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, '
            '"num_key_value_heads": 3, "vocab_size": 9}',
            "do not divide",
        ),
    ],
)
def test_bad_configs_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(InvalidConfigError, match=message):
        load_model_shape(str(path))


def test_grid_points_start_at_one_token_and_respect_memory_and_positions() -> None:
    points = QUICK_GRID.points()
    linear = [p.num_tokens for p in points if p.region == "linear"]
    assert linear[0] == 1
    assert linear == sorted(set(linear))
    assert linear[-1] == max(p.num_tokens for p in points if p.region != "linear")
    assert {p.region for p in points} == {"linear", "decode", "prefill", "mixed"}
    capped = QUICK_GRID.points(max_cached_tokens=2000)
    assert all(p.cached_tokens <= 2000 for p in capped)
    assert len(capped) < len(points)
    short = Grid((1, 2), (8, 16), (8, 64)).points(max_position=40)
    assert all(p.max_position <= 40 for p in short)
    assert BatchPoint("decode", num_decode_seqs=4, decode_context=10).cached_tokens == 44


def _synthetic_preset() -> tuple[dict[str, Any], TimeModelFit, list[Measurement]]:
    truth = ground_truth(np.random.default_rng(11))
    measured = synthetic(truth, noise=0.02)
    fit = rounded(fit_time_model(measured, truth.num_layers))
    shape = load_model_shape("llama2-7b", num_layers=truth.num_layers)
    preset = build_preset(
        name="synthetic",
        description="synthetic",
        shape=shape,
        dtype="bf16",
        device={"name": "test device", "memory_bytes": 80 * 2**30},
        kv_cache={"block_size": 16, "num_blocks": 100, "kv_bytes_per_token": 524288, "how": "test"},
        fit=fit,
        errors=fit_errors(fit, measured),
        provenance={"source": "synthetic", "tool": "test", "created": "2026-01-01"},
    )
    return json.loads(json.dumps(preset)), fit, measured


def test_the_preset_has_the_format_and_predicts_as_the_format_says(tmp_path: Path) -> None:
    preset, fit, measured = _synthetic_preset()
    check_preset(preset)
    for m in measured:
        p = m.point
        if p.region == "linear":
            continue
        prefill = [(p.prefill_chunk, p.prefill_context)] if p.prefill_chunk else []
        independent = preset_iteration_ms(
            preset, prefill=prefill, decode_contexts=[p.decode_context] * p.num_decode_seqs
        )
        assert fit.predict_ms(p) == pytest.approx(independent, rel=1e-12)
    log = tmp_path / "log.csv"
    write_log(str(log), measured, fit)
    with log.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(measured)
    assert {r["region"] for r in rows} == {"linear", "decode", "prefill", "mixed"}
    errors = [abs(float(r["error_percent"])) for r in rows if r["region"] != "linear"]
    assert np.mean(errors) == pytest.approx(preset["fit"]["mape_percent"], abs=0.01)


def test_the_checker_rejects_a_broken_preset() -> None:
    preset, _, _ = _synthetic_preset()
    table = preset["iteration"]["linear_ops_ms"]
    table[1][1], table[2][1] = table[2][1] + 1, table[2][1]
    with pytest.raises(AssertionError, match="must not decrease"):
        check_preset(preset)


def test_missing_extra_is_one_line_naming_it(capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    code, out, err = run_cli(capsys, "calibrate", "--model-config", "tiny-llama", "--out", "/tmp/never.json")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "pip install 'fluidsched[calibrate]'" in err
    assert "torch" in err


def test_errors_before_torch_is_needed(capsys: pytest.CaptureFixture[str], monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # none of these may get as far as importing torch
    out = str(tmp_path / "p.json")
    code, _, err = run_cli(capsys, "calibrate", "--model-config", str(tmp_path / "nope.json"), "--out", out)
    assert code == 2
    assert "no such file, and not a built-in shape" in err
    assert "llama2-7b" in err
    code, _, err = run_cli(capsys, "calibrate", "--model-config", "tiny-llama", "--device", "cpu", "--dtype", "fp16")
    assert code == 2
    assert "--out" in err
    args = ["calibrate", "--model-config", "tiny-llama", "--device", "cpu", "--dtype", "fp16", "--out", out]
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert "fp16 on CPU" in err
    assert err.count("\n") == 1
    code, _, err = run_cli(capsys, "calibrate", "--model-config", "tiny-llama", "--out", str(tmp_path))
    assert code == 2
    assert "is a directory" in err
    code, _, err = run_cli(capsys, "calibrate", "--model-config", "tiny-llama", "--out", out, "--kv-lens", "0,4")
    assert code == 2
    assert "positive integers" in err
    assert not Path(out).exists()


def test_help_is_self_sufficient(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "calibrate", "--help")
    assert code == 0
    for needle in ("examples:", "fluidsched calibrate --model-config tiny-llama", "fluidsched[calibrate]", "llama3-8b"):
        assert needle in out


EXAMPLES = Path(__file__).resolve().parents[1] / "bench" / "calibration"


@pytest.mark.parametrize("name", ["tiny-llama-fp32-cpu", "llama2-7b-4-layers-bf16-cpu"])
def test_the_committed_cpu_examples_match_their_logs(name: str) -> None:
    preset = json.loads((EXAMPLES / "cpu-example" / f"{name}.json").read_text())
    check_preset(preset)
    assert preset["name"] == name
    assert "CPU" in preset["description"]
    measured = read_log(str(EXAMPLES / "cpu-example" / f"{name}.csv"))
    errors = fit_errors(TimeModelFit.from_preset(preset), measured)
    assert (
        errors.num_points
        == preset["fit"]["num_points"]
        == preset["provenance"]["grid"]["num_points"] - sum(m.point.region == "linear" for m in measured)
    )
    assert errors.mape_percent == pytest.approx(preset["fit"]["mape_percent"], abs=0.001)
    for region, value in errors.regions.items():
        assert value == pytest.approx(preset["fit"]["regions"][region], abs=0.001)


def test_compare_presets_prints_predictions_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_presets", EXAMPLES / "compare_presets.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tiny = str(EXAMPLES / "cpu-example" / "tiny-llama-fp32-cpu.json")
    module.main([tiny, tiny, "--log", str(EXAMPLES / "cpu-example" / "tiny-llama-fp32-cpu.csv")])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| decode b=26 kv=1200")]
    assert len(rows) == 1
    assert rows[0].endswith("| 1.00 |")  # a preset against itself
    preset = json.loads(Path(tiny).read_text())
    assert f"| tiny-llama-fp32-cpu | {preset['fit']['mape_percent']:.1f} % |" in out
