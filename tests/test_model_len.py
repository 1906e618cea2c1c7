"""The model length limit: ``simulate(max_model_len=..., over_length=...)`` and ``fluidsched simulate
--max-model-len N --over-length MODE``. Each mode against an equivalent run without a limit, how rejected requests
appear in the arrays, the summary, the CSV and the CLI, bad values, and Orca's reservation."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fluidsched
from cli_helpers import run_cli
from fluidsched import InvalidConfigError, SimResult, Workload, simulate
from fluidsched.simulate import DEFAULT_OVER_LENGTH, OVER_LENGTH_MODES

#: Linear time model for the synthetic runs.
LINEAR: dict[str, Any] = {"time_model": "linear", "d0": 0.005, "d1": 1e-4}


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fluidsched: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


@pytest.fixture(scope="module")
def mixed() -> Workload:
    """200 requests, prompts 1-600 and outputs 1-300 tokens, about 5 per second: many above 500 tokens."""
    rng = np.random.default_rng(7)
    arrival = np.cumsum(rng.exponential(0.2, 200))
    prompt = rng.integers(1, 601, 200)
    output = rng.integers(1, 301, 200)
    return Workload.from_requests(arrival.tolist(), prompt.tolist(), output.tolist())


def over(workload: Workload, n: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    total = np.asarray(workload.prompt_len, dtype=np.int64) + np.asarray(workload.output_len, dtype=np.int64)
    return total > n


def test_modes_and_default() -> None:
    assert OVER_LENGTH_MODES == ("reject", "trim", "keep")
    assert DEFAULT_OVER_LENGTH == "trim"
    assert "num_rejected" in fluidsched.SUMMARY_KEYS


@pytest.mark.parametrize("policy", fluidsched.POLICY_NAMES)
def test_reject_serves_exactly_the_requests_that_fit(mixed: Workload, policy: str) -> None:
    too_long = over(mixed, 500)
    assert 20 < too_long.sum() < 180
    r = simulate(mixed, policy, max_model_len=500, over_length="reject", kv_capacity=16_384, **LINEAR)
    s = r.summary()
    assert (s["num_requests"], s["num_rejected"]) == (200, int(too_long.sum()))
    assert s["num_finished"] + s["num_rejected"] == s["num_requests"]
    np.testing.assert_array_equal(r.rejected, too_long)
    assert not r.trimmed.any()
    # Rejected requests: NaN events, latency and TTFT; their own lengths; no preemptions.
    for name in ("first_scheduled", "first_token", "finish", "latency", "ttft"):
        values = getattr(r, name)
        assert np.isnan(values[too_long]).all(), name
        assert np.isfinite(values[~too_long]).all(), name
    np.testing.assert_array_equal(r.prompt_len, mixed.prompt_len)
    assert (r.num_preemptions[too_long] == 0).all()
    # The run equals one of the served requests alone: rejected requests distort no metric.
    kept = np.flatnonzero(~too_long)
    served = Workload.from_requests(
        [mixed.arrival[i] for i in kept], [mixed.prompt_len[i] for i in kept], [mixed.output_len[i] for i in kept]
    )
    alone = simulate(served, policy, kv_capacity=16_384, **LINEAR)
    np.testing.assert_array_equal(r.finish[kept], alone.finish)
    np.testing.assert_array_equal(r.ttft[kept], alone.ttft)
    sa, sb = s, alone.summary()
    for key in fluidsched.SUMMARY_KEYS:
        if key in ("num_requests", "num_rejected", "wall_time_s"):
            continue
        assert sa[key] == sb[key] or (math.isnan(sa[key]) and math.isnan(sb[key])), key
    assert sa["num_requests"] == sb["num_requests"] + sa["num_rejected"]


def test_trim_cuts_prompts_as_vidur_does(mixed: Workload) -> None:
    n = 500  # every output (<= 300) leaves room for a prompt
    r = simulate(mixed, "vllm", max_model_len=n, **LINEAR)  # the default mode
    too_long = over(mixed, n)
    prompt, output = np.asarray(mixed.prompt_len), np.asarray(mixed.output_len)
    np.testing.assert_array_equal(r.trimmed, too_long)
    assert not r.rejected.any()
    np.testing.assert_array_equal(r.output_len, output)
    np.testing.assert_array_equal(r.prompt_len, np.where(too_long, n - output, prompt))
    s = r.summary()
    assert s["num_finished"] == s["num_requests"] == 200
    assert s["num_rejected"] == 0
    # Equal to a run of the trimmed workload.
    trimmed = Workload.from_requests(mixed.arrival, r.prompt_len.tolist(), r.output_len.tolist())
    np.testing.assert_array_equal(simulate(trimmed, "vllm", **LINEAR).finish, r.finish)


def test_trim_cuts_the_output_when_it_alone_does_not_fit() -> None:
    workload = Workload.from_requests([0.0, 0.5, 1.0], [50, 10, 40], [300, 100, 60])
    r = simulate(workload, "vllm", max_model_len=100, over_length="trim", **LINEAR)
    assert list(zip(r.prompt_len.tolist(), r.output_len.tolist(), strict=True)) == [(1, 99), (1, 99), (40, 60)]
    assert r.trimmed.tolist() == [True, True, False]


def test_keep_and_no_limit_are_identical(mixed: Workload) -> None:
    a = simulate(mixed, "vllm", max_model_len=100, over_length="keep", **LINEAR)
    b = simulate(mixed, "vllm", **LINEAR)
    for name in ("finish", "first_token", "prompt_len", "output_len", "num_preemptions", "rejected", "trimmed"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    sa, sb = a.summary(), b.summary()
    del sa["wall_time_s"], sb["wall_time_s"]
    assert sa == sb
    # over_length alone, without a limit, changes nothing either.
    assert simulate(mixed, "vllm", over_length="reject", **LINEAR).summary()["num_rejected"] == 0


def test_a_request_too_big_for_the_cache_is_fine_once_trimmed_or_rejected() -> None:
    workload = Workload.from_requests([0.0, 1.0], [3000, 100], [100, 100])
    with pytest.raises(fluidsched.InvalidRequestError, match="max_model_len"):
        simulate(workload, "vllm", kv_capacity=2048, **LINEAR)
    with pytest.raises(fluidsched.InvalidRequestError):
        simulate(workload, "vllm", kv_capacity=2048, max_model_len=1024, over_length="keep", **LINEAR)
    rejected = simulate(workload, "vllm", kv_capacity=2048, max_model_len=1024, over_length="reject", **LINEAR)
    assert rejected.rejected.tolist() == [True, False]
    assert rejected.summary()["simulated_span_s"] == rejected.finish[1] - 1.0
    trimmed = simulate(workload, "vllm", kv_capacity=2048, max_model_len=1024, **LINEAR)
    assert trimmed.prompt_len.tolist() == [924, 100]


def test_all_rejected() -> None:
    workload = Workload.from_requests([0.0, 1.0], [30, 40], [30, 40])
    r = simulate(workload, "vllm", max_model_len=50, over_length="reject", **LINEAR)
    s = r.summary()
    assert (s["num_requests"], s["num_finished"], s["num_rejected"], s["num_iterations"]) == (2, 0, 2, 0)
    assert math.isnan(s["latency_mean_s"])
    assert s["throughput_tokens_per_s"] == 0.0


def test_csv_marks_rejected_and_trimmed_requests(mixed: Workload, tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    r = simulate(mixed, "vllm", max_model_len=500, over_length="reject", kv_capacity=16_384, **LINEAR)
    r.to_csv(path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["rejected"]) for row in rows] == r.rejected.astype(int).tolist()
    assert all(row["trimmed"] == "0" for row in rows)
    assert all(row["latency_s"] == "nan" for row in rows if row["rejected"] == "1")


# --------------------------------------------------------------------------------------------------- errors

BAD_VALUES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("zero", {"max_model_len": 0}, ("max_model_len", "got 0")),
    ("one", {"max_model_len": 1}, ("max_model_len", "from 2", "got 1")),
    ("negative", {"max_model_len": -100}, ("max_model_len", "got -100")),
    ("above u32", {"max_model_len": 2**32}, ("max_model_len", f"got {2**32}")),
    ("bool", {"max_model_len": True}, ("max_model_len", "got True")),
    ("float", {"max_model_len": 2048.0}, ("max_model_len", "got 2048.0")),
    ("unknown mode", {"max_model_len": 100, "over_length": "drop"}, ("over_length", '"drop"', "reject")),
    ("unknown mode without a limit", {"over_length": "truncate"}, ("over_length", '"truncate"')),
]


@pytest.mark.parametrize(("kwargs", "fragments"), [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_bad_values_raise_invalid_config(mixed: Workload, kwargs: dict[str, Any], fragments: tuple[str, ...]) -> None:
    with pytest.raises(InvalidConfigError) as info:
        simulate(mixed, "vllm", **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


# ------------------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize("mode", [*OVER_LENGTH_MODES, None])
def test_cli_modes_match_the_api(capsys: pytest.CaptureFixture[str], azure_trace: Path, mode: str | None) -> None:
    args = ["simulate", "--trace", str(azure_trace), "--num-requests", "600", "--max-model-len", "2048", "-q"]
    code, out, err = run_cli(capsys, *args, "--json", *(["--over-length", mode] if mode else []))
    assert code == 0, err
    summary = json.loads(out)
    api = simulate(azure_trace, "vllm", num_requests=600, max_model_len=2048, over_length=mode or "trim")
    for key, value in api.summary().items():
        if key != "wall_time_s":
            assert summary[key] == (None if isinstance(value, float) and math.isnan(value) else value), key
    too_long = int(api.rejected.sum() + api.trimmed.sum()) if mode != "keep" else 0
    if mode == "reject":
        assert summary["num_rejected"] > 0
        assert summary["num_finished"] + summary["num_rejected"] == 600
    else:
        assert summary["num_rejected"] == 0
    # The text table says what the limit did.
    code, out, _ = run_cli(capsys, *args, *(["--over-length", mode] if mode else []))
    assert code == 0
    table = {line.split("  ")[0]: line for line in out.splitlines()}
    row = table["model length"]
    assert f"2048 tokens, over-length requests: {mode or 'trim'}" in row
    if mode == "reject":
        assert f"({too_long} rejected, 0 trimmed)" in row
        assert "rejected: over the model length" in table["requests finished"]
    elif mode == "keep":
        assert "(0 rejected, 0 trimmed)" in row
    else:
        assert f"(0 rejected, {too_long} trimmed)" in row


def test_cli_without_a_limit_has_no_model_length_row(capsys: pytest.CaptureFixture[str], azure_trace: Path) -> None:
    code, out, _ = run_cli(capsys, "simulate", "--trace", str(azure_trace), "--num-requests", "100", "-q")
    assert code == 0
    assert "model length" not in out
    assert "rejected" not in out


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--max-model-len", "0"], ("--max-model-len", "'0'")),
        (["--max-model-len", "1"], ("--max-model-len", "from 2")),
        (["--max-model-len", "-4096"], ("--max-model-len", "'-4096'")),
        (["--max-model-len", "4k"], ("--max-model-len", "'4k'")),
        (["--max-model-len", str(2**32)], ("--max-model-len",)),
        (["--max-model-len", "100", "--over-length", "drop"], ("--over-length", "'drop'")),
        (["--over-length", "reject"], ("--over-length", "--max-model-len")),
    ],
    ids=["zero", "one", "negative", "not an integer", "above u32", "unknown mode", "mode without a limit"],
)
def test_cli_bad_values_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], azure_trace: Path, args: list[str], fragments: tuple[str, ...]
) -> None:
    code, out, err = run_cli(capsys, "simulate", "--trace", str(azure_trace), "--num-requests", "10", "-q", *args)
    one_line_error(code, err, *fragments)
    assert out == ""


def test_cli_help_documents_the_default_and_the_alternative(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "simulate", "--help")
    assert code == 0
    flat = " ".join(out.split())
    for fragment in ("--max-model-len N", "--over-length {reject,trim,keep}", "default: trim", "Vidur", "vLLM"):
        assert fragment in flat, fragment


# ------------------------------------------------------------------------------------------------------ Orca


def test_orca_never_preempts_with_requests_capped_at_its_reservation(azure_trace: Path) -> None:
    """The issue's remark: with max_model_len equal to Orca's max_tokens reservation, trimmed or rejected, no
    request outgrows its reservation, so Orca never preempts. Kept (or without a limit), the Azure sample's
    requests above 4,096 tokens outgrow it and Orca preempts."""
    kept: SimResult = simulate(azure_trace, "orca", max_model_len=4096, over_length="keep")
    assert kept.summary()["num_preemptions"] > 0
    for mode in ("trim", "reject"):
        r = simulate(azure_trace, "orca", max_model_len=4096, over_length=mode)
        s = r.summary()
        assert s["num_preemptions"] == 0, mode
        assert s["num_finished"] + s["num_rejected"] == 5000
    small = simulate(azure_trace, "orca", policy_options={"max_tokens": 2048}, max_model_len=2048, num_requests=2000)
    assert small.summary()["num_preemptions"] == 0
    assert small.trimmed.sum() > 0
