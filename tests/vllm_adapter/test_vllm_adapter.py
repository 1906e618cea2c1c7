"""``fluidsched.vllm`` inside a real vLLM 0.32.0 scheduler, driven by hand with fake model outputs.

(a) admit-all: the adapter schedules exactly what stock vLLM schedules, step by step (hypothesis, both the plain
    and the async scheduler);
(b) WAIT: nothing starts below its type's threshold except through the deadline flush;
(c) KV blocks are conserved every step and nothing leaks once every request finished;
(d) Nested WAIT: a paused request is never scheduled and keeps its blocks;
(e) every request finishes under sparse arrivals and under bursts.
The end-to-end ``LLM.generate()`` runs live in ``test_vllm_generate.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import harness as h
import pytest

h.require_vllm()
pytestmark = pytest.mark.vllm
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

h.import_vllm_quietly()

from vllm.v1.core.sched.async_scheduler import AsyncScheduler  # noqa: E402
from vllm.v1.core.sched.scheduler import Scheduler  # noqa: E402

import fluidsched  # noqa: E402
from fluidsched.vllm import (  # noqa: E402
    FluidschedAsyncScheduler,
    FluidschedScheduler,
    GatedWaitingQueue,
    make_scheduler,
)

BLOCK = 16


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return h.write_stub_model_config(tmp_path_factory.mktemp("stub"))


def settings_for(policy: str, **extra: Any) -> dict[str, Any]:
    return {"fluidsched": {"policy": policy, "measure_iterations": False, **extra}}


# --- (a) the pass-through is transparent -----------------------------------------------------------------------


@st.composite
def workloads(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    """(arrival step, prompt_len, max_tokens) per request."""
    n = draw(st.integers(1, 24))
    return [(draw(st.integers(0, 30)), draw(st.integers(1, 200)), draw(st.integers(1, 40))) for _ in range(n)]


def requests_by_step(work: Sequence[tuple[int, int, int]], tag: str) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for i, (step, prompt, max_tokens) in enumerate(work):
        out.setdefault(step, []).append(h.make_request(f"{tag}{i}", prompt, max_tokens, block_size=BLOCK))
    return out


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    work=workloads(),
    num_blocks=st.sampled_from([24, 60, 400]),
    max_num_seqs=st.sampled_from([2, 5, 16]),
    max_num_batched_tokens=st.sampled_from([64, 256, 8192]),
    prefix_caching=st.booleans(),
    async_scheduling=st.booleans(),
)
def test_admit_all_schedules_exactly_what_vllm_schedules(
    model_dir: str,
    work: list[tuple[int, int, int]],
    num_blocks: int,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    prefix_caching: bool,
    async_scheduling: bool,
) -> None:
    # Requests that could never fit the cache would stall both schedulers alike; keep the workload servable.
    work = [(s, min(p, (num_blocks - 2) * BLOCK - m - 1), m) for s, p, m in work]
    knobs: dict[str, Any] = {
        "model_dir": model_dir,
        "num_blocks": num_blocks,
        "block_size": BLOCK,
        "max_num_seqs": max_num_seqs,
        "max_num_batched_tokens": max_num_batched_tokens,
        "enable_prefix_caching": prefix_caching,
        "async_scheduling": async_scheduling,
    }
    stock = h.make_vllm_scheduler(AsyncScheduler if async_scheduling else Scheduler, **knobs)
    ours = h.make_vllm_scheduler(make_scheduler, additional_config=settings_for("vllm"), **knobs)
    assert isinstance(ours, FluidschedAsyncScheduler if async_scheduling else FluidschedScheduler)
    assert isinstance(ours.waiting, GatedWaitingQueue)
    expected = h.run_steps(stock, requests_by_step(work, "r"), 2000, overlap=async_scheduling)
    got = h.run_steps(ours, requests_by_step(work, "r"), 2000, overlap=async_scheduling)
    assert got.scheduled == expected.scheduled
    assert [t.preempted for t in got.trace] == [t.preempted for t in expected.trace]
    assert got.finished == expected.finished == {f"r{i}" for i in range(len(work))}
    assert h.kv_free_blocks(ours) == h.kv_total_usable_blocks(ours)
    assert ours.controller.num_waiting == ours.controller.num_running == 0


# --- a driver with a fake clock, for the policies that wait -----------------------------------------------------


@dataclass
class Arrival:
    step: int
    req_id: str
    prompt_len: int
    max_tokens: int


@dataclass
class Drive:
    """What `drive` saw."""

    admitted_at: dict[str, int] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    steps: int = 0


def drive(
    sched: Any,
    arrivals: Sequence[Arrival],
    *,
    dt: float,
    max_steps: int,
    before: Callable[[int, float], None] | None = None,
    after: Callable[[int, Any], None] | None = None,
) -> Drive:
    """Lockstep schedule/update with a fake clock advancing `dt` per step; checks KV conservation every step."""
    now = [0.0]
    sched.clock = lambda: now[0]
    by_step: dict[int, list[Arrival]] = {}
    for a in arrivals:
        by_step.setdefault(a.step, []).append(a)
    seen = Drive()
    total = h.kv_total_usable_blocks(sched)
    for step in range(max_steps):
        now[0] = step * dt
        for a in by_step.get(step, ()):
            sched.add_request(
                h.make_request(a.req_id, a.prompt_len, a.max_tokens, arrival_time=now[0], block_size=BLOCK)
            )
        if before is not None:
            before(step, now[0])
        out = sched.schedule()
        for new in out.scheduled_new_reqs:
            seen.admitted_at.setdefault(new.req_id, step)
        if after is not None:
            after(step, out)
        runner = h.fake_runner_output(out, scheduler=sched)
        for eco in sched.update_from_output(out, runner).values():
            seen.finished |= {o.request_id for o in eco.outputs if o.finish_reason is not None}
        # (c) every block is free or held by exactly one live request (no prefix caching here).
        held = sum(len(sched.kv_cache_manager.get_block_ids(r)[0]) for r in sched.requests)
        assert h.kv_free_blocks(sched) + held == total
        seen.steps = step + 1
        if step >= max(by_step, default=0) and not sched.has_requests():
            break
    assert h.kv_free_blocks(sched) == total, "blocks leaked"
    return seen


# --- (b) WAIT's thresholds, (c), (e) ----------------------------------------------------------------------------

WAIT_TYPES = [[16, 8, 1.0], [16, 32, 1.0]]  # outputs 8 and 32 tokens: max_tokens picks the type
WAIT_THRESHOLDS = [3, 2]
MAX_WAIT = 0.5
DT = 0.05


@st.composite
def typed_arrivals(draw: st.DrawFn) -> list[Arrival]:
    n = draw(st.integers(1, 30))
    return [
        Arrival(draw(st.integers(0, 60)), f"w{i}", draw(st.integers(1, 64)), draw(st.sampled_from([8, 32])))
        for i in range(n)
    ]


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(arrivals=typed_arrivals())
def test_wait_starts_nothing_below_threshold_except_by_the_flush(model_dir: str, arrivals: list[Arrival]) -> None:
    # The paper's cohort rule (no admission credit, no online rates): what this property states exactly.
    paper = {"credit": False, "rate_estimation": False, "backlog": 0}
    config = settings_for(
        "wait",
        types=WAIT_TYPES,
        options={"thresholds": WAIT_THRESHOLDS, "max_wait": MAX_WAIT, "memory_guard": False, **paper},
    )
    sched = h.make_vllm_scheduler(
        make_scheduler, model_dir=model_dir, num_blocks=4000, max_num_seqs=64, additional_config=config
    )
    arrival_of = {a.req_id: a for a in arrivals}
    typ = {a.req_id: (0 if a.max_tokens == 8 else 1) for a in arrivals}
    waiting: list[set[str]] = [set(), set()]
    violations: list[str] = []

    def before(step: int, now: float) -> None:
        for a in arrivals:
            if a.step == step:
                waiting[typ[a.req_id]].add(a.req_id)
        state["now"] = now

    state: dict[str, float] = {}

    def after(step: int, out: Any) -> None:
        started = [r.req_id for r in out.scheduled_new_reqs]
        for j in (0, 1):
            mine = [r for r in started if typ[r] == j]
            if not mine:
                continue
            oldest = min(arrival_of[r].step * DT for r in waiting[j])
            ready = len(waiting[j]) >= WAIT_THRESHOLDS[j]
            due = oldest + MAX_WAIT <= state["now"] + 1e-9
            if not (ready or due) or len(mine) > max(WAIT_THRESHOLDS[j], 0):
                violations.append(f"step {step}: type {j} started {mine} with {len(waiting[j])} waiting")
            waiting[j] -= set(mine)

    seen = drive(sched, arrivals, dt=DT, max_steps=3000, before=before, after=after)
    assert violations == []
    # (e) and every request finished, exactly once.
    assert seen.finished == set(arrival_of)
    assert sched.controller.num_waiting == sched.controller.num_running == 0


def test_wait_holds_a_cohort_until_its_threshold(model_dir: str) -> None:
    config = settings_for("wait", types=[[16, 8, 1.0]], options={"thresholds": [3], "max_wait": 100.0})
    sched = h.make_vllm_scheduler(make_scheduler, model_dir=model_dir, num_blocks=400, additional_config=config)
    arrivals = [Arrival(0, "a", 10, 8), Arrival(2, "b", 10, 8), Arrival(5, "c", 10, 8)]
    seen = drive(sched, arrivals, dt=DT, max_steps=200)
    # Nobody starts until the third arrives; then all three start together.
    assert seen.admitted_at == {"a": 5, "b": 5, "c": 5}
    assert seen.finished == {"a", "b", "c"}


# --- (d) Nested WAIT pauses keep their blocks; (e) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "steps"),
    [("sparse", [20 * i for i in range(12)]), ("burst", [0] * 30 + [5] * 10)],
)
def test_nested_wait_pauses_keep_blocks_and_everything_finishes(model_dir: str, pattern: str, steps: list[int]) -> None:
    config = settings_for("nested-wait", types=[[16, 12, 20.0]], options={"segments": [3, 6], "max_wait": 0.3})
    sched = h.make_vllm_scheduler(
        make_scheduler, model_dir=model_dir, num_blocks=2000, max_num_seqs=32, additional_config=config
    )
    arrivals = [Arrival(s, f"{pattern}{i}", 8 + i % 7, 4 + (i * 5) % 12) for i, s in enumerate(steps)]
    paused_blocks: dict[str, list[int]] = {}
    pauses = 0

    def before(step: int, now: float) -> None:
        paused_blocks.clear()
        for rid, req in sched.requests.items():
            if req.next_decode_eligible_step > sched.current_step + 1:
                paused_blocks[rid] = list(sched.kv_cache_manager.get_block_ids(rid)[0])

    def after(step: int, out: Any) -> None:
        nonlocal pauses
        pauses += len(paused_blocks)
        for rid, blocks in paused_blocks.items():
            if rid in out.num_scheduled_tokens:
                # Resumed this very step by the policy (its entry was let in): allowed, and it keeps its blocks.
                assert not sched.controller.is_paused(sched._int_ids[rid])
            assert list(sched.kv_cache_manager.get_block_ids(rid)[0])[: len(blocks)] == blocks

    seen = drive(sched, arrivals, dt=DT, max_steps=5000, before=before, after=after)
    assert seen.finished == {a.req_id for a in arrivals}
    assert pauses > 0, "no request ever paused: the test would prove nothing"
    assert sched.controller.num_paused == 0


def test_paused_request_is_never_scheduled(model_dir: str) -> None:
    config = settings_for(
        "nested-wait",
        types=[[16, 12, 50.0]],
        time_model="linear",
        d0=0.01,
        d1=1e-5,
        options={"segments": [2], "max_wait": 0.2},
    )
    sched = h.make_vllm_scheduler(make_scheduler, model_dir=model_dir, num_blocks=400, additional_config=config)
    # A lone request reaching segment 2 waits there for its deadline (n_2 >= 2), holding its blocks.
    assert sched.controller.thresholds[1] >= 2
    seen_paused_steps = 0

    def after(step: int, out: Any) -> None:
        nonlocal seen_paused_steps
        for rid, req in sched.requests.items():
            if sched._int_ids.get(rid) is not None and sched.controller.is_paused(sched._int_ids[rid]):
                seen_paused_steps += 1
                assert rid not in out.num_scheduled_tokens
                assert req.next_decode_eligible_step > sched.current_step

    seen = drive(sched, [Arrival(0, "p", 10, 8)], dt=DT, max_steps=400, after=after)
    assert seen.finished == {"p"}
    # Paused from its 2nd output token until the deadline, 0.2 s = 4 steps of 0.05 s later.
    assert seen_paused_steps >= 3


# --- start-up errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"fluidsched": {"polcy": "wait"}}, "unknown fluidsched setting 'polcy'"),
        ({"fluidsched": {"policy": "wait", "d0": "x"}}, "'d0'"),
        ({"fluidsched": {"policy": "wait", "options": {"thresholdz": [1]}}}, "thresholdz"),
    ],
)
def test_bad_settings_fail_at_startup(model_dir: str, config: Mapping[str, Any], message: str) -> None:
    with pytest.raises(fluidsched.InvalidConfigError, match=message):
        h.make_vllm_scheduler(make_scheduler, model_dir=model_dir, additional_config=config)


def test_thresholds_use_the_engines_numbers(model_dir: str) -> None:
    config = settings_for("wait", types=[[50, 156, 40.0], [100, 171, 7.4]], time_model="linear", d0=0.01, d1=8e-5)
    small = h.make_vllm_scheduler(make_scheduler, model_dir=model_dir, num_blocks=200, additional_config=config)
    large = h.make_vllm_scheduler(make_scheduler, model_dir=model_dir, num_blocks=20000, additional_config=config)
    assert small.fluidsched_limits.num_blocks == 199
    assert small.fluidsched_limits.max_num_seqs == 16
    # A cache of 199 blocks caps the cohorts the fluid model allows; a large one does not.
    assert sum(small.controller.thresholds) <= sum(large.controller.thresholds)
    assert small.controller.thresholds != large.controller.thresholds or small.controller.thresholds == [1, 1]


# --- robustness: what API clients and engine settings can throw at the adapter -------------------------------------


@pytest.mark.parametrize("policy", ["vllm", "wait", "nested-wait"])
def test_bad_request_fields_never_crash_the_engine(model_dir: str, policy: str) -> None:
    from vllm import SamplingParams

    extra = {"types": [[16, 8, 5.0]], "options": {"max_wait": 0.1}} if policy != "vllm" else {}
    sched = h.make_vllm_scheduler(make_scheduler, model_dir=model_dir, additional_config=settings_for(policy, **extra))
    bad_args: list[dict[str, Any]] = [
        {"fluidsched_output_len": "abc"},
        {"fluidsched_output_len": [5]},
        {"fluidsched_output_len": 2**40},
        {"fluidsched_output_len": True},
        {"fluidsched_type": "chat"},
        {"fluidsched_type": -1},
        {"fluidsched_type": 10**9},
    ]
    arrivals = []
    for i, args in enumerate(bad_args):
        request = h.make_request(f"x{i}", 12, 5, block_size=BLOCK)
        request.sampling_params = SamplingParams(max_tokens=5, ignore_eos=True, extra_args=args)
        arrivals.append(request)
    odd = h.make_request("nan", 12, 5, block_size=BLOCK, arrival_time=float("nan"))
    result = h.run_steps(sched, {0: [*arrivals, odd]}, 400)
    assert result.finished == {f"x{i}" for i in range(len(bad_args))} | {"nan"}
    assert h.kv_free_blocks(sched) == h.kv_total_usable_blocks(sched)


def test_priority_scheduling_is_refused_at_startup(model_dir: str) -> None:
    with pytest.raises(fluidsched.InvalidConfigError, match="fcfs"):
        h.make_vllm_scheduler(
            make_scheduler, model_dir=model_dir, policy="priority", additional_config=settings_for("vllm")
        )


def test_a_cache_full_of_paused_requests_does_not_stall(model_dir: str) -> None:
    # One long request pauses at its segment boundary holding most of a small cache; two more wait for blocks.
    # Without the deadlock breaker vLLM would schedule nothing until the paused request's deadline (1 s).
    config = settings_for(
        "nested-wait",
        types=[[16, 12, 50.0]],
        time_model="linear",
        d0=0.01,
        d1=1e-5,
        options={"segments": [2], "max_wait": 1.0},
    )
    sched = h.make_vllm_scheduler(
        make_scheduler, model_dir=model_dir, num_blocks=40, max_num_seqs=16, additional_config=config
    )
    assert sched.controller.thresholds[1] >= 2
    arrivals = [Arrival(0, "a", 480, 6), Arrival(1, "b", 200, 4), Arrival(2, "c", 200, 4)]
    empty_steps = 0

    def after(step: int, out: Any) -> None:
        nonlocal empty_steps
        empty_steps += out.total_num_scheduled_tokens == 0 and sched.has_requests()

    seen = drive(sched, arrivals, dt=0.01, max_steps=400, after=after)
    assert seen.finished == {"a", "b", "c"}
    assert empty_steps <= 2, f"{empty_steps} empty steps: the engine idled with paused requests in the cache"
    assert seen.steps < 60


def test_admitting_from_a_long_queue_keeps_the_queue_consistent(model_dir: str) -> None:
    # WAIT admits cohorts scattered through a long FCFS queue; the gated queue removes them lazily.
    config = settings_for("wait", types=[[16, 8, 1.0], [16, 32, 1.0]], options={"thresholds": [3, 5]})
    sched = h.make_vllm_scheduler(
        make_scheduler, model_dir=model_dir, num_blocks=4000, max_num_seqs=8, additional_config=config
    )
    arrivals = [Arrival(0, f"q{i}", 8, 8 if i % 3 else 32) for i in range(60)]

    def after(step: int, out: Any) -> None:
        queue = sched.waiting
        assert len(queue) == len(list(queue)) == sched.controller.num_waiting
        assert not ({r.request_id for r in queue} & {r.request_id for r in sched.running})

    seen = drive(sched, arrivals, dt=DT, max_steps=2000, after=after)
    assert seen.finished == {a.req_id for a in arrivals}
