"""Benchmarks: whole simulations per policy, and the cost of one step-API round trip through the bindings.

With ``--benchmark-disable`` (the default in ``pyproject.toml``) each benchmark body runs once, as a smoke test
whose result is still checked; ``pytest bench --benchmark-enable`` times them.
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import fluidsched
from fluidsched import POLICY_NAMES


@pytest.fixture(scope="module")
def azure_workload() -> fluidsched.Workload:
    """The whole bundled Azure 2023 sample (5,000 requests at their recorded arrival times)."""
    workload = fluidsched.load_workload(fluidsched.bundled_trace("azure"))
    assert len(workload) == 5000
    return workload


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_simulate_azure_sample(benchmark: BenchmarkFixture, azure_workload: fluidsched.Workload, policy: str) -> None:
    result = benchmark(fluidsched.simulate, azure_workload, policy)
    summary = result.summary()
    assert summary["num_requests"] == summary["num_finished"] == len(azure_workload)
    assert summary["num_iterations"] > 0
    assert 0 < summary["kv_usage_max_fraction"] <= 1
    benchmark.extra_info["simulated_requests_per_wall_s"] = summary["num_finished"] / summary["wall_time_s"]


BATCH = 64


def test_step_round_trip(benchmark: BenchmarkFixture) -> None:
    """``add_request`` + ``schedule`` + ``complete_step`` with 64 requests decoding: the FFI cost per iteration.

    Each round adds a one-token request that finishes in its prefill step, so the batch stays 64 decodes + 1."""
    # Big blocks: the 64 requests grow by one token per round for as many rounds as the timer wants.
    s = fluidsched.Scheduler("vllm", num_blocks=1 << 20, block_size=256, max_num_seqs=BATCH + 1)
    for rid in range(BATCH):
        s.add_request(rid, 32)  # open-ended: runs until the driver finishes it
    s.schedule()
    s.complete_step()
    assert s.num_running == BATCH
    next_id = BATCH

    def round_trip() -> tuple[fluidsched.Step, fluidsched.StepOutcome, int]:
        nonlocal next_id
        rid = next_id
        next_id += 1
        s.add_request(rid, 1, 1)
        step = s.schedule()
        return step, s.complete_step(), rid

    step, outcome, rid = benchmark(round_trip)
    assert len(step.scheduled) == BATCH + 1
    assert step.num_decode_seqs == BATCH
    assert step.scheduled[-1] == (rid, 1, True)
    assert step.admitted == (rid,)
    assert len(outcome.emitted) == BATCH + 1
    assert outcome.finished == (rid,)
    assert s.num_running == BATCH
    assert s.num_waiting == 0
    rounds = next_id - BATCH
    assert s.get_request(0)["num_output_tokens"] == rounds + 1
    s.check_invariants()
