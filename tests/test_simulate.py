"""``fluidsched.simulate`` end to end: completeness, the summary against values recomputed from the per-request
and per-iteration arrays, event ordering, determinism, CSV output, rate rescaling, the linear time model,
preemption under memory pressure, and every registered policy."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import fluidsched
from fluidsched import POLICY_NAMES, SimResult, Workload, simulate
from fluidsched.simulate import DEFAULT_KV_CAPACITY

FloatArray = npt.NDArray[np.float64]

#: Relative tolerance for sums taken in a different order than the Rust core.
REL = 1e-9


#: Every per-request array of a :class:`SimResult`.
PER_REQUEST_ARRAYS = (
    "arrival",
    "first_scheduled",
    "first_token",
    "finish",
    "prompt_len",
    "output_len",
    "num_preemptions",
    "rejected",
    "trimmed",
)


def recomputed_summary(r: SimResult) -> dict[str, float]:
    """Every summary metric, recomputed in NumPy from the result's arrays (rejected requests count only in
    ``num_requests`` and ``num_rejected``: the span starts at the first served arrival)."""
    n = len(r.arrival)
    done = np.isfinite(r.finish)
    span = float(r.finish[done].max() - r.arrival[~r.rejected].min())
    latency, ttft = r.latency[done], r.ttft[done]
    it = r.iterations
    duration = it["duration"]
    busy = float(duration.sum())
    tbt = r.time_between_tokens
    return {
        "num_requests": n,
        "num_finished": int(done.sum()),
        "num_rejected": int(r.rejected.sum()),
        "throughput_tokens_per_s": float(r.output_len[done].astype(np.int64).sum()) / span,
        "requests_per_s": int(done.sum()) / span,
        "latency_mean_s": float(latency.mean()),
        "latency_p50_s": float(np.percentile(latency, 50)),
        "latency_p90_s": float(np.percentile(latency, 90)),
        "latency_p99_s": float(np.percentile(latency, 99)),
        "ttft_mean_s": float(ttft.mean()),
        "ttft_p50_s": float(np.percentile(ttft, 50)),
        "ttft_p90_s": float(np.percentile(ttft, 90)),
        "ttft_p99_s": float(np.percentile(ttft, 99)),
        "tbt_p50_s": float(np.percentile(tbt, 50)) if len(tbt) else math.nan,
        "tbt_p99_s": float(np.percentile(tbt, 99)) if len(tbt) else math.nan,
        "kv_usage_mean_fraction": float((duration * it["used_blocks"]).sum()) / busy / r.num_blocks,
        "kv_usage_max_fraction": float(it["used_blocks"].max()) / r.num_blocks,
        "num_preemptions": int(r.num_preemptions.astype(np.int64).sum()),
        "num_iterations": len(duration),
        "mean_iteration_time_s": busy / len(duration),
        "mean_batch_size": float(it["num_seqs"].mean()),
        "busy_fraction": min(1.0, busy / span),
        "simulated_span_s": span,
    }


def check_result(
    r: SimResult,
    workload: Workload,
    *,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int = 8192,
    lone_prefill_exempt: bool = False,
) -> None:
    """Everything a completed run must satisfy, whatever the policy. ``lone_prefill_exempt``: the token limit is
    Vidur's padded cap (``vllm-v0``), which a single prefill alone in its iteration may pass."""
    n = len(workload)
    summary = r.summary()
    # Complete, with exactly the documented keys (in order), counts as ints.
    assert list(summary) == list(fluidsched.SUMMARY_KEYS)
    assert summary["num_requests"] == summary["num_finished"] == n
    assert summary["num_rejected"] == 0
    for key in ("num_requests", "num_finished", "num_rejected", "num_preemptions", "num_iterations"):
        assert isinstance(summary[key], int), key
    # Per-request arrays describe the workload, in its order.
    for name in PER_REQUEST_ARRAYS:
        assert len(getattr(r, name)) == n, name
    assert r.rejected.dtype == r.trimmed.dtype == np.bool_
    assert not r.rejected.any()
    assert not r.trimmed.any()
    np.testing.assert_array_equal(r.arrival, np.asarray(workload.arrival))
    np.testing.assert_array_equal(r.prompt_len, np.asarray(workload.prompt_len))
    np.testing.assert_array_equal(r.output_len, np.asarray(workload.output_len))
    # Event ordering per request: arrival <= first scheduled < first token <= finish.
    assert np.isfinite(r.finish).all()
    assert (r.arrival <= r.first_scheduled).all()
    assert (r.first_scheduled < r.first_token).all()
    assert (r.first_token <= r.finish).all()
    # A one-token output finishes on the iteration that emits its first token, and only then.
    one = r.output_len == 1
    np.testing.assert_array_equal(r.first_token[one], r.finish[one])
    assert (r.first_token[~one] < r.finish[~one]).all()
    # The per-iteration log: iterations do not overlap, respect the limits, and never exceed the cache.
    it = r.iterations
    start, duration = it["start"], it["duration"]
    ends = start + duration
    assert (duration > 0).all()
    assert (start[1:] >= ends[:-1]).all()
    assert (it["num_seqs"] >= 1).all()
    assert (it["num_seqs"] <= max_num_seqs).all()
    assert (it["num_tokens"] >= it["num_seqs"]).all()
    within = it["num_tokens"] <= max_num_batched_tokens
    if lone_prefill_exempt:
        within |= it["num_seqs"] == 1
    assert within.all()
    assert (it["used_blocks"] <= r.num_blocks).all()
    # Request events happen at iteration boundaries: scheduled at a start, tokens at an end.
    assert np.isin(r.first_scheduled, start).all()
    assert np.isin(r.first_token, ends).all()
    assert np.isin(r.finish, ends).all()
    # Every output token but the first of each request leaves one gap; all gaps are positive.
    tbt = r.time_between_tokens
    assert len(tbt) == int(r.output_len.astype(np.int64).sum()) - n
    assert (tbt > 0).all()
    # The summary agrees with the arrays.
    assert 0 < summary["kv_usage_max_fraction"] <= 1
    # (A time-weighted mean of a full cache may round a hair above the max.)
    assert 0 < summary["kv_usage_mean_fraction"] <= summary["kv_usage_max_fraction"] * (1 + 1e-12)
    assert 0 < summary["busy_fraction"] <= 1
    assert summary["wall_time_s"] > 0
    expected = recomputed_summary(r)
    for key, value in expected.items():
        if isinstance(value, int):
            assert summary[key] == value, key
        elif math.isnan(value):
            assert math.isnan(summary[key]), key
        else:
            assert summary[key] == pytest.approx(value, rel=REL, abs=1e-12), key
    assert set(expected) | {"wall_time_s"} == set(fluidsched.SUMMARY_KEYS)


@pytest.fixture(scope="module")
def azure_vllm(azure_1k: Workload) -> SimResult:
    return simulate(azure_1k, "vllm")


def test_azure_sample_under_vllm(azure_vllm: SimResult, azure_1k: Workload) -> None:
    assert azure_vllm.policy == "vllm"
    assert azure_vllm.num_blocks == DEFAULT_KV_CAPACITY // 16
    check_result(azure_vllm, azure_1k)
    # The recorded arrival times of the Azure sample are kept (first request at 0 s, about 4-5 req/s).
    assert azure_vllm.arrival[0] == 0.0
    assert azure_1k.mean_rate is not None
    assert 1.0 < azure_1k.mean_rate < 20.0
    assert "vllm" in repr(azure_vllm)


def test_simulate_reads_a_trace_path_like_a_workload(azure_trace: Path, azure_vllm: SimResult) -> None:
    from_path = simulate(azure_trace, "vllm", num_requests=1000)
    np.testing.assert_array_equal(from_path.finish, azure_vllm.finish)
    assert len(fluidsched.load_workload(azure_trace)) == 5000


def same_result(a: SimResult, b: SimResult) -> bool:
    """Bit-identical per-request arrays, iteration logs and summaries (wall time aside)."""
    arrays = all(getattr(a, k).tobytes() == getattr(b, k).tobytes() for k in PER_REQUEST_ARRAYS)
    log = a.iterations.keys() == b.iterations.keys() and all(
        a.iterations[k].tobytes() == b.iterations[k].tobytes() for k in a.iterations
    )
    sa, sb = a.summary(), b.summary()
    del sa["wall_time_s"], sb["wall_time_s"]
    return (
        arrays
        and log
        and sa == sb
        and np.sort(a.time_between_tokens).tobytes() == np.sort(b.time_between_tokens).tobytes()
    )


def test_same_inputs_give_bit_identical_results(azure_1k: Workload, azure_vllm: SimResult) -> None:
    again = simulate(azure_1k, "vllm", seed=0)
    assert same_result(again, azure_vllm)
    # The trace has its own arrival times: the seed does not change a timed trace under vllm.
    assert same_result(simulate(azure_1k, "vllm", seed=123), azure_vllm)


def test_seed_drives_length_only_arrivals(lmsys_trace: Path) -> None:
    a = simulate(lmsys_trace, "vllm", rate=5.0, num_requests=300, seed=1)
    b = simulate(lmsys_trace, "vllm", rate=5.0, num_requests=300, seed=1)
    c = simulate(lmsys_trace, "vllm", rate=5.0, num_requests=300, seed=2)
    assert same_result(a, b)
    assert not np.array_equal(a.arrival, c.arrival)
    for r in (a, c):
        assert r.summary()["num_finished"] == 300
        assert (np.diff(r.arrival) >= 0).all()
        rate = (len(r.arrival) - 1) / (r.arrival[-1] - r.arrival[0])
        assert 3.5 < rate < 7.0  # Poisson at 5 req/s, 300 arrivals


def test_to_csv_round_trip(azure_vllm: SimResult, tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    azure_vllm.to_csv(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == [
            "request_id",
            "arrival_s",
            "prompt_len",
            "output_len",
            "first_scheduled_s",
            "first_token_s",
            "finish_s",
            "latency_s",
            "ttft_s",
            "num_preemptions",
            "rejected",
            "trimmed",
        ]
        rows = list(reader)
    assert len(rows) == len(azure_vllm.arrival)

    def column(name: str, kind: type[Any]) -> npt.NDArray[Any]:
        return np.array([kind(row[name]) for row in rows])

    np.testing.assert_array_equal(column("request_id", int), np.arange(len(rows)))
    for name, values in (
        ("arrival_s", azure_vllm.arrival),
        ("first_scheduled_s", azure_vllm.first_scheduled),
        ("first_token_s", azure_vllm.first_token),
        ("finish_s", azure_vllm.finish),
        ("latency_s", azure_vllm.latency),
        ("ttft_s", azure_vllm.ttft),
    ):
        # Floats are written with repr(): they read back exactly.
        assert column(name, float).tobytes() == values.tobytes(), name
    for name, ints in (
        ("prompt_len", azure_vllm.prompt_len),
        ("output_len", azure_vllm.output_len),
        ("num_preemptions", azure_vllm.num_preemptions),
        ("rejected", azure_vllm.rejected),
        ("trimmed", azure_vllm.trimmed),
    ):
        np.testing.assert_array_equal(column(name, int), ints.astype(np.int64))


def test_rate_rescales_the_arrivals(azure_trace: Path, azure_1k: Workload) -> None:
    native = azure_1k.mean_rate
    assert native is not None
    results = {rate: simulate(azure_trace, "vllm", rate=rate, num_requests=1000) for rate in (2.0, 8.0)}
    for rate, r in results.items():
        assert (len(r.arrival) - 1) / (r.arrival[-1] - r.arrival[0]) == pytest.approx(rate, rel=REL)
        # One scale factor about time 0: the gaps keep their shape.
        np.testing.assert_allclose(r.arrival, np.asarray(azure_1k.arrival) * native / rate, rtol=REL)
        check_result(r, azure_1k.rescaled_to_rate(rate))
    # Four times the load: higher throughput, and requests wait longer.
    slow, fast = results[2.0].summary(), results[8.0].summary()
    assert fast["throughput_tokens_per_s"] > slow["throughput_tokens_per_s"]
    assert fast["latency_mean_s"] > slow["latency_mean_s"]


@pytest.mark.parametrize(("d0", "d1"), [(0.005, 1e-4), (0.0, 3e-4), (0.02, 0.0)])
def test_linear_time_model(d0: float, d1: float) -> None:
    workload = Workload.from_types([(64, 32, 5.0), (128, 16, 2.0)], 300, seed=4)
    r = simulate(workload, "vllm", time_model="linear", d0=d0, d1=d1)
    check_result(r, workload)
    it = r.iterations
    np.testing.assert_allclose(it["duration"], d0 + d1 * it["num_tokens"].astype(np.float64), rtol=1e-12, atol=0)
    tokens = int(it["num_tokens"].astype(np.int64).sum())
    assert r.summary()["mean_iteration_time_s"] == pytest.approx(d0 + d1 * tokens / len(it["duration"]), rel=REL)


def test_linear_model_with_no_load_dependence_gives_exact_times() -> None:
    # One request alone, d1 = 0: prefill then (output - 1) decodes, each exactly d0.
    workload = Workload.from_requests([0.0], [100], [5])
    r = simulate(workload, "vllm", time_model="linear", d0=0.5, d1=0.0)
    assert r.first_scheduled[0] == 0.0
    assert r.first_token[0] == 0.5
    assert r.finish[0] == 2.5
    np.testing.assert_array_equal(r.time_between_tokens, [0.5] * 4)
    np.testing.assert_array_equal(r.iterations["num_tokens"], [100, 1, 1, 1, 1])


def test_memory_pressure_preempts_under_vllm_and_an_ample_cache_does_not() -> None:
    # 256-token prompts growing to 768 tokens, arriving faster than they can be served.
    workload = Workload.from_types([(256, 512, 20.0)], 120, seed=3)
    tight = simulate(workload, "vllm", kv_capacity=4096, time_model="linear", d0=0.01, d1=1e-5)
    ample = simulate(workload, "vllm", kv_capacity=1_000_000, time_model="linear", d0=0.01, d1=1e-5)
    check_result(tight, workload)
    check_result(ample, workload)
    assert tight.summary()["num_preemptions"] > 0
    assert (tight.num_preemptions > 0).any()
    assert tight.summary()["kv_usage_max_fraction"] > 0.9
    assert ample.summary()["num_preemptions"] == 0
    assert (ample.num_preemptions == 0).all()
    assert ample.summary()["kv_usage_max_fraction"] < 0.5


def test_kv_capacity_is_rounded_down_to_whole_blocks() -> None:
    workload = Workload.from_types([(64, 16, 5.0)], 50, seed=1)
    r = simulate(workload, "vllm", kv_capacity=1000, block_size=16)
    assert r.num_blocks == 62
    check_result(r, workload)


# ---------------------------------------------------------------------------------------------------------------
# Every registered policy (the list grows as policies land; these tests pick them up).


#: Policies whose token limit is Vidur's padded cap (their own option, replacing ``max_num_batched_tokens``): a
#: prefill-only iteration holds ``k`` prefills with ``k * longest <= cap``, or one prefill of any length.
PADDED_CAP = {"vllm-v0": "max_tokens_in_batch"}


@pytest.fixture(scope="module")
def typed_workload() -> Workload:
    return Workload.from_types([(64, 32, 6.0), (512, 128, 1.5), (128, 512, 0.5)], 300, seed=7)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_policy_completes_the_azure_sample(policy: str, azure_1k: Workload) -> None:
    workload = azure_1k.truncated(300)
    r = simulate(workload, policy)
    assert r.policy == policy
    check_result(r, workload)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_policy_completes_a_typed_workload_under_memory_pressure(policy: str, typed_workload: Workload) -> None:
    # 40 blocks of 16 tokens: the longest request (640 tokens) fits alone, little else does.
    padded = policy in PADDED_CAP
    r = simulate(
        typed_workload,
        policy,
        kv_capacity=40 * 16 + 15,
        max_num_seqs=16,
        max_num_batched_tokens=512,
        time_model="linear",
        d0=0.005,
        d1=1e-4,
        policy_options={PADDED_CAP[policy]: 512} if padded else None,
    )
    check_result(r, typed_workload, max_num_seqs=16, max_num_batched_tokens=512, lone_prefill_exempt=padded)
    assert r.num_blocks == 40


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_policy_is_deterministic(policy: str, typed_workload: Workload) -> None:
    kwargs: dict[str, Any] = {"kv_capacity": 8192, "seed": 5, "length_error": 0.2}
    assert same_result(simulate(typed_workload, policy, **kwargs), simulate(typed_workload, policy, **kwargs))


def test_policy_names_and_options_agree() -> None:
    assert len(POLICY_NAMES) == len(set(POLICY_NAMES))
    assert "vllm" in POLICY_NAMES
    assert list(fluidsched.POLICY_OPTIONS) == list(POLICY_NAMES)
