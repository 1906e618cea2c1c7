"""WAIT and Nested WAIT beyond the paper's rule (``docs/wait.md`` §3.3, §4.4): admission credit, a per-step token
budget with chunked prefill, and the options that restore the paper's algorithms."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fluidsched

TWO_TYPES = [(50, 156, 167.0), (100, 171, 31.0)]
MODEL: dict[str, Any] = {"time_model": "linear", "d0": 0.01, "d1": 8e-5, "kv_capacity": 118_784}
PAPER_WAIT = {"credit": False, "rate_estimation": False, "backlog": 0.0}


def two_type_workload(rho: float, max_num_seqs: int, n: int = 6000) -> fluidsched.Workload:
    """The two-type mix at load ``rho`` relative to ``plan``'s largest sustainable rate under ``max_num_seqs``."""
    rate = rho * fluidsched.plan(types=TWO_TYPES, max_num_seqs=max_num_seqs, **MODEL)["max_rate_per_s"]
    total = sum(r for _, _, r in TWO_TYPES)
    return fluidsched.Workload.from_types([(p, o, w / total * rate) for p, o, w in TWO_TYPES], n, seed=1)


@pytest.mark.parametrize(
    ("policy", "paper", "rho"), [("wait", PAPER_WAIT, 0.8), ("nested-wait", {"credit": False}, 0.9)]
)
def test_credit_keeps_admission_up_with_arrivals_under_a_concurrency_cap(
    policy: str, paper: dict[str, Any], rho: float
) -> None:
    # At vLLM's default max_num_seqs the planned cohorts round down to 1 request per step, fewer than arrive: the
    # paper's rule lets the queue grow (seconds more TTFT, throughput lost); the credit admits what arrives.
    workload = two_type_workload(rho, 4096)  # rho relative to the memory limit: max_num_seqs 256 binds first
    tracked = fluidsched.simulate(workload, policy, max_num_seqs=256, **MODEL).summary()
    rule = fluidsched.simulate(workload, policy, max_num_seqs=256, policy_options=paper, **MODEL).summary()
    baseline = fluidsched.simulate(workload, "vllm", max_num_seqs=256, **MODEL).summary()
    assert tracked["num_finished"] == rule["num_finished"] == len(workload)
    assert tracked["ttft_mean_s"] < 0.5 * rule["ttft_mean_s"]
    assert tracked["throughput_tokens_per_s"] > 1.03 * rule["throughput_tokens_per_s"]
    assert tracked["throughput_tokens_per_s"] >= 0.99 * baseline["throughput_tokens_per_s"]


def test_credit_keeps_wait_free_of_preemption_where_memory_binds() -> None:
    workload = two_type_workload(1.1, 4096)
    tracked = fluidsched.simulate(workload, "wait", max_num_seqs=4096, **MODEL).summary()
    baseline = fluidsched.simulate(workload, "vllm", max_num_seqs=4096, **MODEL).summary()
    assert tracked["num_preemptions"] == 0
    assert baseline["num_preemptions"] > 0
    assert tracked["throughput_tokens_per_s"] > baseline["throughput_tokens_per_s"]


@pytest.mark.parametrize("policy", ["wait", "nested-wait"])
def test_token_budget_batches_prompts_in_chunks(azure_1k: fluidsched.Workload, policy: str) -> None:
    whole = fluidsched.simulate(azure_1k, policy)
    chunked = fluidsched.simulate(azure_1k, policy, policy_options={"token_budget": 256})
    assert int(np.max(whole.iterations["num_tokens"])) > 256
    assert int(np.max(chunked.iterations["num_tokens"])) <= 256
    assert chunked.summary()["num_finished"] == len(azure_1k)
    # Long prompts no longer stall the decodes sharing their iteration.
    assert chunked.summary()["tbt_p99_s"] < whole.summary()["tbt_p99_s"]


@pytest.mark.parametrize("value", [0, 1.5, -3, "big"])
def test_bad_token_budget_is_named(azure_1k: fluidsched.Workload, value: object) -> None:
    with pytest.raises(fluidsched.InvalidConfigError, match="token_budget"):
        fluidsched.simulate(azure_1k, "wait", policy_options={"token_budget": value})  # type: ignore[dict-item]


def test_tracking_options_are_listed() -> None:
    for option in ("credit", "rate_estimation", "ewma_alpha", "backlog", "token_budget"):
        assert option in fluidsched.POLICY_OPTIONS["wait"]
    for option in ("credit", "token_budget"):
        assert option in fluidsched.POLICY_OPTIONS["nested-wait"]
    with pytest.raises(fluidsched.InvalidConfigError, match="backlog"):
        fluidsched.simulate(two_type_workload(0.5, 256, n=50), "wait", policy_options={"backlog": -1.0}, **MODEL)


@pytest.mark.parametrize(("max_num_seqs", "binding"), [(128, "max_num_seqs"), (4096, "memory")])
def test_plan_names_the_binding_limit_and_wait_reaches_its_throughput(max_num_seqs: int, binding: str) -> None:
    # The fluid model now carries max_num_seqs and max_num_batched_tokens as well as memory: plan says which one
    # limits the sustainable rate, and WAIT in overload reaches the throughput plan gives for the arrival mix.
    workload = two_type_workload(1.2, max_num_seqs, n=20_000)
    rate = 1.2 * fluidsched.plan(types=TWO_TYPES, max_num_seqs=max_num_seqs, **MODEL)["max_rate_per_s"]
    total = sum(r for _, _, r in TWO_TYPES)
    p = fluidsched.plan(types=[(a, b, w / total * rate) for a, b, w in TWO_TYPES], max_num_seqs=max_num_seqs, **MODEL)
    assert p["max_rate_binding"] == binding
    assert p["binding_constraint"] == binding
    assert not p["limits_feasible"]
    reached = fluidsched.simulate(workload, "wait", max_num_seqs=max_num_seqs, **MODEL).summary()
    assert reached["throughput_tokens_per_s"] == pytest.approx(p["mix_throughput_tokens_per_s"], rel=0.02)
