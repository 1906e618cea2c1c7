"""The engine-facing admission seam: ``AdmissionController`` and the adapter settings (no vLLM needed).

The central property: the controller (what the vLLM adapter calls) and the simulator's policy make the same
admission decisions, step by step, because they run the same Rust decision code. Driven side by side on random
workloads with ample memory (so no engine-specific memory rule interferes), they admit the same requests in the
same order at every step, for WAIT and for Nested WAIT.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluidsched
from fluidsched.adapter import SETTINGS_KEYS, AdapterSettings, EngineLimits, build_controller

BIG: dict[str, Any] = {"num_blocks": 1 << 20, "block_size": 16, "max_num_seqs": 64, "max_num_batched_tokens": 1 << 20}


@dataclass(frozen=True)
class Arrival:
    request_id: int
    time: float
    prompt_len: int
    output_len: int
    type_id: int


@st.composite
def workloads(draw: st.DrawFn, num_types: int) -> list[Arrival]:
    n = draw(st.integers(1, 40))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.3]), min_size=n, max_size=n))
    out, t = [], 0.0
    for i, gap in enumerate(gaps):
        t += gap
        out.append(
            Arrival(
                request_id=i,
                time=t,
                prompt_len=draw(st.integers(1, 64)),
                output_len=draw(st.integers(1, 30)),
                type_id=draw(st.integers(0, num_types - 1)),
            )
        )
    return out


def side_by_side(
    sim: fluidsched.Scheduler, ctrl: fluidsched.AdmissionController, arrivals: list[Arrival], dt: float
) -> Iterator[tuple[list[int], list[int]]]:
    """Drives both until every request finished; yields (simulator admissions, controller admissions) per step."""
    pending = list(arrivals)
    now, done, steps = 0.0, 0, 0
    while done < len(arrivals):
        steps += 1
        assert steps < 100_000, "no progress"
        while pending and pending[0].time <= now:
            a = pending.pop(0)
            sim.add_request(
                a.request_id,
                a.prompt_len,
                a.output_len,
                output_len_hint=a.output_len,
                type_id=a.type_id,
                arrival=a.time,
            )
            ctrl.add_request(
                a.request_id, a.prompt_len, arrival=a.time, output_len_hint=a.output_len, type_id=a.type_id
            )
        step = sim.schedule(now)
        admit_all, admit, _resume = ctrl.decide(
            now=now,
            num_running=ctrl.num_running,
            num_free_blocks=BIG["num_blocks"],
            max_num_seqs=BIG["max_num_seqs"],
        )
        assert not admit_all
        yield list(step.admitted), list(admit)
        for rid in step.admitted:
            ctrl.on_admitted(rid, 0)
        outcome = sim.complete_step()
        now += dt
        emitted = [(rid, n) for rid, n in outcome.emitted if rid not in outcome.finished]
        ctrl.on_outputs([rid for rid, _ in emitted], [n for _, n in emitted], now)
        for rid in outcome.finished:
            assert ctrl.finish(rid)
            done += 1
        if not step.scheduled and pending and sim.num_running == 0:
            now = max(now, pending[0].time)


@given(arrivals=workloads(num_types=3), thresholds=st.lists(st.integers(1, 4), min_size=3, max_size=3))
def test_wait_controller_matches_the_simulator_policy(arrivals: list[Arrival], thresholds: list[int]) -> None:
    options: dict[str, Any] = {"thresholds": [float(x) for x in thresholds], "max_wait": 0.5}
    sim = fluidsched.Scheduler("wait", policy_options=options, **BIG)
    ctrl = fluidsched.AdmissionController("wait", policy_options=options, time_model="linear", d0=0.01, d1=1e-4, **BIG)
    sim_all: list[int] = []
    for sim_admitted, ctrl_admitted in side_by_side(sim, ctrl, arrivals, dt=0.02):
        assert sim_admitted == ctrl_admitted
        sim_all += sim_admitted
    assert sorted(sim_all) == [a.request_id for a in arrivals]
    assert ctrl.num_waiting == ctrl.num_running == 0


@given(arrivals=workloads(num_types=1), segments=st.lists(st.integers(1, 25), min_size=1, max_size=3, unique=True))
def test_nested_wait_controller_matches_the_simulator_policy(arrivals: list[Arrival], segments: list[int]) -> None:
    options: dict[str, Any] = {"segments": [float(b) for b in sorted(segments)], "max_wait": 0.3}
    context: dict[str, Any] = {"d0": 0.01, "d1": 1e-4, "types": [(32, 15, 20.0)]}
    sim = fluidsched.Scheduler("nested-wait", policy_options=options, **context, **BIG)
    ctrl = fluidsched.AdmissionController(
        "nested-wait",
        policy_options=options,
        time_model="linear",
        **context,
        **BIG,
    )
    assert ctrl.thresholds  # planned exactly like the simulator's policy
    for sim_admitted, ctrl_admitted in side_by_side(sim, ctrl, arrivals, dt=0.02):
        assert sim_admitted == ctrl_admitted
    assert ctrl.num_waiting == ctrl.num_running == ctrl.num_paused == 0


def test_nested_wait_pauses_at_a_boundary_and_resumes() -> None:
    ctrl = fluidsched.AdmissionController(
        "nested-wait",
        policy_options={"segments": [2.0], "max_wait": 1.0},
        time_model="linear",
        d0=0.01,
        d1=1e-4,
        types=[(16, 10, 1.0)],
        **BIG,
    )
    ctrl.add_request(7, 16, arrival=0.0)
    # Segment 1's threshold may exceed 1: the deadline lets the lone request in.
    view: dict[str, Any] = {"num_free_blocks": BIG["num_blocks"], "max_num_seqs": 8}
    _, admit, _ = ctrl.decide(now=1.0, num_running=0, **view)
    assert admit == [7]
    ctrl.on_admitted(7, 0)
    assert ctrl.on_outputs([7], [1], 1.1) == []
    assert ctrl.on_outputs([7], [2], 1.2) == [7]
    assert ctrl.is_paused(7)
    assert ctrl.num_paused == 1
    assert ctrl.next_wakeup(1.2) == pytest.approx(2.2)
    _, _, resume = ctrl.decide(now=2.2, num_running=1, **view)
    assert resume == [7]
    assert not ctrl.is_paused(7)
    assert ctrl.finish(7)
    assert ctrl.num_running == 0


def test_measured_iterations_replan_wait_thresholds() -> None:
    limits: dict[str, Any] = {**BIG, "max_num_seqs": 100_000}
    types = [(50, 156, 40.0), (100, 171, 7.4)]  # rho = 0.82 under the planned model
    ctrl = fluidsched.AdmissionController("wait", time_model="linear", d0=0.01, d1=8e-5, types=types, **limits)
    planned = ctrl.thresholds
    assert ctrl.time_correction == 1.0
    # Iterations 20 % slower than the model says: the load is heavier than planned, cohorts grow.
    replanned = [ctrl.observe_iteration(1.2 * (0.01 + 8e-5 * 400), 400) for _ in range(5)]
    assert replanned[0]
    assert not any(replanned[1:])
    assert ctrl.time_correction == pytest.approx(1.2)
    assert all(a > b for a, b in zip(ctrl.thresholds, planned, strict=True))
    # Measurements within 10 % of the model change nothing; nonsense is ignored.
    same = fluidsched.AdmissionController("wait", time_model="linear", d0=0.01, d1=8e-5, types=types, **limits)
    assert not same.observe_iteration(1.05 * (0.01 + 8e-5 * 400), 400)
    assert same.thresholds == planned
    assert not same.observe_iteration(float("nan"), 400)
    assert not same.observe_iteration(-1.0, 400)


def test_pass_through_and_errors() -> None:
    ctrl = fluidsched.AdmissionController("vllm", num_blocks=100)
    ctrl.add_request(1, 10, arrival=0.0)
    assert ctrl.decide(now=0.0, num_running=0, num_free_blocks=99, max_num_seqs=4) == (
        True,
        [],
        [],
    )
    with pytest.raises(fluidsched.DuplicateRequestError):
        ctrl.add_request(1, 10, arrival=0.0)
    with pytest.raises(fluidsched.UnknownRequestError):
        ctrl.on_admitted(2)
    with pytest.raises(fluidsched.UnknownRequestError):
        ctrl.requeue(2)
    with pytest.raises(fluidsched.InvalidRequestError, match="prompt"):
        ctrl.add_request(3, 0, arrival=0.0)
    with pytest.raises(fluidsched.InvalidRequestError, match="arrival"):
        ctrl.add_request(3, 5, arrival=float("nan"))
    with pytest.raises(fluidsched.InvalidConfigError, match="now"):
        ctrl.decide(now=float("inf"), num_running=0, num_free_blocks=1, max_num_seqs=1)
    with pytest.raises(fluidsched.InvalidConfigError, match="orca"):
        fluidsched.AdmissionController("orca", num_blocks=100)
    with pytest.raises(fluidsched.InvalidConfigError, match="num_blocks"):
        fluidsched.AdmissionController("vllm", num_blocks=0)
    with pytest.raises(fluidsched.InvalidConfigError, match="no option"):
        fluidsched.AdmissionController("wait", num_blocks=100, policy_options={"thresholdz": [1.0]})
    with pytest.raises(fluidsched.InvalidConfigError, match="differ in length"):
        ctrl.on_outputs([1, 2], [1], 0.0)


LIMITS = EngineLimits(num_blocks=7423, block_size=16, max_num_seqs=256, max_num_batched_tokens=8192)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"polcy": "wait"}, "unknown fluidsched setting 'polcy'"),
        ({"policy": "fcfs"}, "'policy' must be one of"),
        ({"d0": -1}, "'d0' must be a finite number > 0"),
        ({"d0": "fast"}, "'d0' must be a number"),
        ({"arrival_rate": float("nan")}, "'arrival_rate'"),
        ({"types": [[10, 0, 1.0]]}, "'types'"),
        ({"types": [[10, 5]]}, "'types'"),
        ({"types": [[10, 5, 0]]}, "'types'"),
        ({"options": [1, 2]}, "'options'"),
        ({"output_len_hint": "oracle"}, "'output_len_hint'"),
        ({"measure_iterations": "yes"}, "'measure_iterations'"),
        ({"length_sample": 3}, "'length_sample'"),
    ],
)
def test_settings_errors_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(fluidsched.InvalidConfigError, match=message):
        AdapterSettings.from_mapping(raw)


def test_settings_build_each_policy() -> None:
    assert set(SETTINGS_KEYS) >= {"policy", "options", "types"}
    nested = build_controller(
        AdapterSettings.from_mapping({"policy": "nested-wait", "length_sample": "lmsys", "arrival_rate": 5}), LIMITS
    )
    assert nested.policy == "nested-wait"
    assert len(nested.thresholds) >= 1
    wait = build_controller(
        AdapterSettings.from_mapping({"policy": "wait", "types": [[128, 256, 4.0], [512, 64, 1.0]]}), LIMITS
    )
    assert wait.policy == "wait"
    assert len(wait.thresholds) == 2
    # The defaults (Nested WAIT) need a length distribution and a rate: the error says what to pass.
    with pytest.raises(fluidsched.InvalidConfigError, match="nested-wait needs"):
        build_controller(AdapterSettings.from_mapping(None), LIMITS)
    with pytest.raises(fluidsched.InvalidConfigError, match="length_sample"):
        build_controller(AdapterSettings.from_mapping({"length_sample": "/nonexistent.csv"}), LIMITS)
    with pytest.raises(fluidsched.InvalidConfigError, match="rate"):
        build_controller(AdapterSettings.from_mapping({"policy": "nested-wait", "length_sample": "lmsys"}), LIMITS)
    with pytest.raises(fluidsched.InvalidConfigError, match="d1"):
        build_controller(AdapterSettings.from_mapping({"policy": "wait", "d0": 0.01}), LIMITS)
