"""Stateful property test of the step API (``fluidsched.Scheduler``) under the ``vllm`` policy.

A hypothesis state machine adds requests (known and unknown output lengths, some too large), runs steps
(schedule + complete_step, the driver finishing some requests), aborts requests, reuses ids and misuses the API, on
a tiny KV cache so that preemption, head-of-line blocking, the watermark, ``max_num_seqs`` and the token budget all
bind. Every step is checked twice:

- against :class:`vllm_model.VllmModel`, a pure-Python oracle that predicts ``step.scheduled``, ``preempted``,
  ``admitted``, ``emitted``, ``finished`` and every request's progress and blocks exactly;
- against properties observed on the Rust scheduler alone: FCFS admission (fresh requests in arrival order,
  preempted ones first), preemption of the newest running request, no admission in a step that preempted,
  blocks = ceil(computed / block_size) while running and 0 otherwise, conservation of blocks and requests, one
  output token at a time, each request finishes exactly once, and ``check_invariants()``.

At teardown the machine finishes the open-ended requests and drains the scheduler: every request must finish
within a bound on the number of steps (liveness).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import fluidsched
from vllm_model import ModelStep, VllmModel

UNKNOWN_ID = 10**12


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Life:
    """Driver-side record of one incarnation of a request id (an id may be reused once its request left)."""

    rid: int
    arrival_seq: int
    output_len: int | None
    last_output: int = 0
    ever_admitted: bool = False
    gone: str | None = None  # "finished" or "aborted"


class StepApiMachine(RuleBasedStateMachine):
    """Drives a small ``vllm`` scheduler and its Python model side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.sched: fluidsched.Scheduler | None = None
        self.model: VllmModel | None = None
        self.lives: dict[int, Life] = {}  # the latest incarnation of every id used
        self.history: list[Life] = []  # every incarnation, in arrival order
        self.next_id = 0
        self.now = 0.0
        self.num_steps = 0
        self.healthy = True  # false once a check failed: teardown then leaves the state alone

    # ------------------------------------------------------------------------------------------------ setup
    @initialize(
        num_blocks=st.integers(2, 16),
        block_size=st.integers(1, 4),
        watermark=st.sampled_from([0.0, 0.01, 0.1, 0.3]),
        max_num_seqs=st.integers(1, 6),
        max_num_batched_tokens=st.integers(1, 40),
        enable_chunked_prefill=st.booleans(),
    )
    def setup(
        self,
        num_blocks: int,
        block_size: int,
        watermark: float,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        enable_chunked_prefill: bool,
    ) -> None:
        note(
            f"Scheduler('vllm', num_blocks={num_blocks}, block_size={block_size}, watermark={watermark}, "
            f"max_num_seqs={max_num_seqs}, max_num_batched_tokens={max_num_batched_tokens}, "
            f"enable_chunked_prefill={enable_chunked_prefill})"
        )
        self.sched = fluidsched.Scheduler(
            "vllm",
            num_blocks=num_blocks,
            block_size=block_size,
            watermark=watermark,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            enable_chunked_prefill=enable_chunked_prefill,
        )
        self.model = VllmModel(
            num_blocks=num_blocks,
            block_size=block_size,
            watermark=watermark,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            enable_chunked_prefill=enable_chunked_prefill,
        )
        assert self.sched.policy == "vllm"
        assert not self.sched.needs_output_lengths
        assert self.sched.num_blocks == num_blocks
        assert self.sched.block_size == block_size
        assert self.sched.watermark_blocks == self.model.watermark_blocks
        assert self.sched.num_free_blocks == num_blocks
        assert self.sched.next_wakeup() is None

    @property
    def s(self) -> fluidsched.Scheduler:
        assert self.sched is not None
        return self.sched

    @property
    def m(self) -> VllmModel:
        assert self.model is not None
        return self.model

    def live_ids(self) -> list[int]:
        return sorted(self.m.requests)

    def gone_ids(self) -> list[int]:
        return sorted(rid for rid, life in self.lives.items() if life.gone is not None)

    # ------------------------------------------------------------------------------------------------ rules
    @rule(data=st.data(), count=st.integers(1, 4))
    def add_requests(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            output_len = data.draw(st.one_of(st.none(), st.integers(1, 4), st.integers(1, 12)), label="output_len")
            gone = self.gone_ids()
            reuse: bool = data.draw(st.booleans(), label="reuse an id")
            if gone and reuse:
                rid = data.draw(st.sampled_from(gone), label="reused id")
            else:
                rid = self.next_id
                self.next_id += 1
            # Mostly requests that fit, many short ones; the largest draw is one token more than the cache holds.
            top = max(1, self.m.usable_tokens - (1 if output_len is None else output_len) + 1)
            prompt_len = data.draw(st.one_of(st.integers(1, min(4, top)), st.integers(1, top)), label="prompt_len")
            self.add_one(rid, prompt_len, output_len)

    def add_one(self, rid: int, prompt_len: int, output_len: int | None) -> None:
        expected = self.m.add_error(rid, prompt_len, output_len)
        note(f"add_request({rid}, prompt_len={prompt_len}, output_len={output_len}) -> {expected}")
        if expected is not None:
            assert expected is fluidsched.InvalidRequestError
            with pytest.raises(expected) as info:
                self.s.add_request(rid, prompt_len, output_len)
            message = str(info.value)
            assert f"request {rid}" in message
            assert f"only {self.m.usable_tokens} are usable" in message
            return
        self.s.add_request(rid, prompt_len, output_len, arrival=self.now)
        self.m.add(rid, prompt_len, output_len)
        life = Life(rid, arrival_seq=len(self.history), output_len=output_len)
        self.lives[rid] = life
        self.history.append(life)
        view = self.s.get_request(rid)
        assert view["state"] == "waiting"
        assert view["arrival"] == self.now

    @rule(data=st.data(), count=st.integers(1, 4))
    def run_steps(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            live = self.live_ids()
            finish_some = st.lists(st.sampled_from(live), max_size=3) if live else st.just([])
            finished = data.draw(st.one_of(st.just([]), finish_some), label="finished by the driver")
            misuse = data.draw(st.booleans(), label="misuse while pending")
            self.one_step(finished, misuse=misuse)

    @rule(data=st.data())
    def abort(self, data: st.DataObject) -> None:
        live = self.live_ids()
        if not live:
            return
        rid = data.draw(st.sampled_from(live), label="abort id")
        note(f"abort_request({rid})")
        self.s.abort_request(rid)
        self.m.abort(rid)
        self.lives[rid].gone = "aborted"
        with pytest.raises(fluidsched.UnknownRequestError, match=f"unknown request id {rid}"):
            self.s.get_request(rid)

    @rule(data=st.data())
    def misuse(self, data: st.DataObject) -> None:
        """Calls that must fail and change nothing (the invariant then checks that nothing changed)."""
        if self.m.requests:
            rid = data.draw(st.sampled_from(self.live_ids()), label="live id")
            with pytest.raises(fluidsched.DuplicateRequestError, match=f"duplicate request id {rid}"):
                self.s.add_request(rid, 1, 1)
        with pytest.raises(fluidsched.InvalidRequestError, match="prompt_len must be >= 1"):
            self.s.add_request(UNKNOWN_ID, 0)
        with pytest.raises(fluidsched.InvalidRequestError, match="output length must be >= 1"):
            self.s.add_request(UNKNOWN_ID, 1, 0)
        rid = data.draw(st.sampled_from([*self.gone_ids(), UNKNOWN_ID]), label="unknown id")
        with pytest.raises(fluidsched.UnknownRequestError, match=f"unknown request id {rid}"):
            self.s.abort_request(rid)
        with pytest.raises(fluidsched.UnknownRequestError, match=f"unknown request id {rid}"):
            self.s.get_request(rid)
        with pytest.raises(fluidsched.InvalidStateError, match="without a pending schedule"):
            self.s.complete_step()

    # ------------------------------------------------------------------------------------------------ a step
    def one_step(self, finished: Sequence[int], *, misuse: bool = False, full_check: bool = True) -> None:
        s, m = self.s, self.m
        self.healthy = False
        running_before = s.running_ids
        preempted_waiting = {rid for rid, r in m.requests.items() if r.state == "waiting" and r.preemptions}
        self.now += 0.25
        expected = m.schedule()
        step = s.schedule(now=self.now)
        note(f"step {self.num_steps}: scheduled={step.scheduled} preempted={step.preempted} admitted={step.admitted}")
        self.num_steps += 1
        self.check_step(step, expected, running_before, preempted_waiting)
        for happened, what in (
            (step.preempted, "a step preempted"),
            (expected.self_preempted, "a request preempted itself"),
            (len(step.admitted) > 1, "a step admitted several requests"),
            (not step.scheduled and m.requests, "an empty step with requests held"),
            (
                any(p and rid not in step.admitted for rid, _, p in step.scheduled),
                "a running request continued a prefill",
            ),
            (finished, "the driver finished requests"),
        ):
            if happened:
                event(what)
        # While the step is pending, blocks are held for the tokens being computed.
        assert s.num_used_blocks == m.used_blocks
        assert s.num_used_blocks + s.num_free_blocks == s.num_blocks
        if misuse:
            with pytest.raises(fluidsched.InvalidStateError, match="schedule called twice"):
                s.schedule(now=self.now)
            if m.requests:
                with pytest.raises(fluidsched.InvalidStateError, match="abort_request between"):
                    s.abort_request(next(iter(m.requests)))
            # An unknown id in `finished` is rejected before anything changes: the step stays pending.
            with pytest.raises(fluidsched.UnknownRequestError, match=f"unknown request id {UNKNOWN_ID}"):
                s.complete_step(finished=[*finished, UNKNOWN_ID])
        outcome = s.complete_step(finished=list(finished))
        emitted, done = m.complete(list(finished))
        assert outcome.emitted == tuple(emitted)
        assert outcome.finished == tuple(done)
        self.check_outcome(outcome, step, finished, running_before)
        if full_check:
            self.check_state()
        self.healthy = True

    def check_step(
        self,
        step: fluidsched.Step,
        expected: ModelStep,
        running_before: list[int],
        preempted_waiting: set[int],
    ) -> None:
        # Exact prediction by the model.
        assert step.scheduled == tuple(expected.scheduled)
        assert step.preempted == tuple(expected.preempted)
        assert step.admitted == tuple(expected.admitted)
        assert step.num_batched_tokens == expected.num_batched_tokens
        assert step.num_prefill_tokens == expected.num_prefill_tokens
        assert step.num_decode_seqs == expected.num_decode_seqs
        assert len(step) == len(step.scheduled)
        assert step.now == self.now
        # Observed properties, independent of the model.
        ids = [rid for rid, _, _ in step.scheduled]
        assert len(set(ids)) == len(ids), "a request scheduled twice in one step"
        assert 0 < step.num_batched_tokens <= self.m.max_tokens or not step.scheduled
        assert all(n >= 1 for _, n, _ in step.scheduled)
        assert all(prefill for _, n, prefill in step.scheduled if n > 1), "a decode computes one token"
        # Preemption takes the newest running requests, newest first, and blocks admission for the step.
        assert step.preempted == tuple(running_before[::-1][: len(step.preempted)])
        assert not set(step.preempted) & set(ids)
        if step.preempted:
            assert step.admitted == ()
        # Running requests come first (in admission order), then the admissions.
        continuing = [rid for rid in ids if rid not in step.admitted]
        assert ids == continuing + list(step.admitted)
        assert continuing == [rid for rid in running_before if rid in continuing]
        assert set(continuing) <= set(running_before)
        # FCFS: preempted requests are re-admitted before any fresh request ...
        fresh = [rid for rid in step.admitted if not self.lives[rid].ever_admitted]
        assert list(step.admitted) == [rid for rid in step.admitted if rid not in fresh] + fresh
        if fresh:
            assert preempted_waiting <= set(step.admitted), "a fresh request overtook a preempted one"
        for rid in step.admitted:
            self.lives[rid].ever_admitted = True
        # ... and fresh requests are admitted in arrival order: no live request that was never admitted arrived
        # before one that was.
        never = [life.arrival_seq for life in self.history if life.gone is None and not life.ever_admitted]
        ever = [life.arrival_seq for life in self.history if life.gone is None and life.ever_admitted]
        if never and ever:
            assert min(never) > max(ever), "a request was admitted before one that arrived earlier"

    def check_outcome(
        self,
        outcome: fluidsched.StepOutcome,
        step: fluidsched.Step,
        finished: Sequence[int],
        running_before: list[int],
    ) -> None:
        scheduled_ids = {rid for rid, _, _ in step.scheduled}
        for rid, k in outcome.emitted:
            assert rid in scheduled_ids
            life = self.lives[rid]
            assert k == life.last_output + 1, "output tokens are emitted one at a time and never re-emitted"
            life.last_output = k
        assert len(set(outcome.finished)) == len(outcome.finished)
        for rid in outcome.finished:
            life = self.lives[rid]
            assert life.gone is None, f"request {rid} finished twice"
            life.gone = "finished"
            reached = life.output_len is not None and life.last_output == life.output_len
            assert reached or rid in finished, f"request {rid} finished before its output length"
            with pytest.raises(fluidsched.UnknownRequestError):
                self.s.get_request(rid)
        for rid in finished:
            assert self.lives[rid].gone == "finished"
        for rid in self.m.requests:
            life = self.lives[rid]
            if life.output_len is not None:
                assert life.last_output < life.output_len, f"request {rid} produced all its output but is held"
        # The running list after the step: survivors in order, then the admissions, less what finished.
        survivors = [rid for rid in running_before if rid not in step.preempted] + list(step.admitted)
        assert self.s.running_ids == [rid for rid in survivors if rid not in outcome.finished]

    # ------------------------------------------------------------------------------------------- invariants
    @invariant()
    def state_matches_model(self) -> None:
        if self.sched is None:
            return
        self.check_state()

    def check_state(self) -> None:
        s, m = self.s, self.m
        self.healthy = False
        s.check_invariants()
        assert s.running_ids == m.running
        assert s.num_running == len(m.running)
        assert s.num_waiting == len(m.waiting)
        assert s.num_unfinished == len(m.requests)
        assert s.num_running <= m.max_num_seqs
        used = 0
        for rid, r in m.requests.items():
            view = s.get_request(rid)
            assert view["request_id"] == rid
            assert view["prompt_len"] == r.prompt_len
            assert (view["state"], view["num_computed_tokens"], view["num_output_tokens"]) == (
                r.state,
                r.computed,
                r.output,
            )
            assert (view["num_preemptions"], view["num_blocks"]) == (r.preemptions, r.blocks)
            computed, blocks = view["num_computed_tokens"], view["num_blocks"]
            assert isinstance(computed, int)
            assert isinstance(blocks, int)
            if view["state"] == "running":
                assert blocks == ceil_div(computed, s.block_size)
            else:
                assert view["state"] == "waiting"
                assert (blocks, computed) == (0, 0)
            used += blocks
        assert s.num_used_blocks == used == m.used_blocks
        assert s.num_used_blocks + s.num_free_blocks == s.num_blocks
        assert 0 <= s.num_used_blocks <= s.num_blocks
        # No request lost: every incarnation is waiting, running, finished or aborted, exactly once.
        live = {life.rid for life in self.history if life.gone is None}
        assert live == set(m.requests)
        assert len(m.waiting) + len(m.running) == len(m.requests)
        assert set(m.waiting).isdisjoint(m.running)
        assert sum(life.gone is None for life in self.history) == s.num_unfinished
        self.healthy = True

    # ------------------------------------------------------------------------------------------------ drain
    def teardown(self) -> None:
        if self.sched is None or self.model is None or not self.healthy:
            return
        # Liveness: once the driver has finished the open-ended requests, every request finishes. Each step the
        # oldest running request gets at least one token and is never preempted (it fits alone), or the head of
        # the queue is admitted; that bounds the number of steps.
        unbounded = [rid for rid, r in self.m.requests.items() if r.output_len is None]
        bound = sum(r.prompt_len + (r.output_len or 0) + 1 for r in self.m.requests.values()) + 1
        self.one_step(unbounded, full_check=False)
        steps = 0
        while self.m.requests:
            assert steps <= bound, f"no progress after {steps} steps: {self.s!r}"
            self.one_step([], full_check=False)
            steps += 1
        self.check_state()
        assert self.s.num_unfinished == 0
        assert self.s.num_used_blocks == 0
        assert all(life.gone is not None for life in self.history)


TestStepApi = StepApiMachine.TestCase


@st.composite
def scheduler_configs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "num_blocks": draw(st.integers(2, 24)),
        "block_size": draw(st.integers(1, 4)),
        "watermark": draw(st.sampled_from([0.0, 0.01, 0.1, 0.3])),
        "max_num_seqs": draw(st.integers(1, 8)),
        "max_num_batched_tokens": draw(st.integers(1, 48)),
        "enable_chunked_prefill": draw(st.booleans()),
    }


@given(
    config=scheduler_configs(),
    arrivals=st.lists(
        st.tuples(st.integers(0, 30), st.integers(1, 96), st.integers(1, 16)),
        min_size=1,
        max_size=40,
    ),
)
def test_vllm_matches_the_model_on_random_workloads(
    config: dict[str, Any], arrivals: list[tuple[int, int, int]]
) -> None:
    """Whole workloads (requests arriving over time, every one run to completion) under heavy contention: many
    steps preempt several requests, re-admit them, split prefills and hit the budget without chunking. Uses the
    state machine's checks step by step."""
    machine = StepApiMachine()
    machine.setup(**config)
    usable = machine.m.usable_tokens
    arrivals.sort(key=lambda a: a[0])
    last = arrivals[-1][0]
    for t in range(last + 1):
        for _, prompt_len, output_len in (a for a in arrivals if a[0] == t):
            output_len = min(output_len, usable - 1)
            prompt_len = 1 + (prompt_len - 1) % (usable - output_len)
            machine.add_one(machine.next_id, prompt_len, output_len)
            machine.next_id += 1
        machine.one_step([])
    machine.teardown()
    assert machine.s.num_unfinished == 0
    assert all(life.gone == "finished" and life.last_output == life.output_len for life in machine.history)


# ---------------------------------------------------------------------------------------------------------------
# The documented semantics on hand-made examples (all covered by the machine too, spelled out here).


def test_readme_example() -> None:
    s = fluidsched.Scheduler("vllm", num_blocks=1000, block_size=16)
    s.add_request(1, prompt_len=300)
    step = s.schedule(now=0.0)
    assert step.scheduled == ((1, 300, True),)
    assert step.admitted == (1,)
    assert s.num_used_blocks == ceil_div(300, 16)
    out = s.complete_step()
    assert out.emitted == ((1, 1),)
    assert out.finished == ()
    assert s.schedule(now=1.0).scheduled == ((1, 1, False),)
    assert s.complete_step(finished=[1]).finished == (1,)
    assert s.num_unfinished == 0
    assert s.num_used_blocks == 0


def test_an_output_of_d_tokens_takes_d_iterations() -> None:
    s = fluidsched.Scheduler("vllm", num_blocks=64, block_size=4)
    s.add_request(7, prompt_len=10, output_len=5)
    emitted: list[tuple[int, int]] = []
    for i in range(5):
        step = s.schedule(now=float(i))
        assert step.scheduled == ((7, 10 if i == 0 else 1, i == 0),)
        out = s.complete_step()
        emitted += out.emitted
        assert out.finished == ((7,) if i == 4 else ())
    assert emitted == [(7, k) for k in range(1, 6)]
    assert s.num_unfinished == 0


def test_preempted_request_goes_back_to_the_head_of_the_queue() -> None:
    # 4 blocks of 2 tokens, no watermark: two 4-token prompts fill the cache.
    s = fluidsched.Scheduler("vllm", num_blocks=4, block_size=2, watermark=0.0)
    s.add_request(1, prompt_len=4)
    s.add_request(2, prompt_len=4)
    assert s.schedule().admitted == (1, 2)
    s.complete_step()
    assert s.num_free_blocks == 0
    s.add_request(3, prompt_len=1)
    # Request 1's 5th token needs a third block: the newest running request (2) is preempted; nothing is admitted.
    step = s.schedule()
    assert (step.preempted, step.scheduled, step.admitted) == ((2,), ((1, 1, False),), ())
    s.complete_step()
    view = s.get_request(2)
    assert (view["state"], view["num_preemptions"], view["num_computed_tokens"], view["num_blocks"]) == (
        "waiting",
        1,
        0,
        0,
    )
    assert view["num_output_tokens"] == 1  # kept: the re-prefill recomputes prompt + generated tokens
    # Head-of-line blocking: 2's re-prefill (5 tokens, 3 blocks) does not fit the free block, and 3 (which would
    # fit) waits behind it.
    step = s.schedule()
    assert (step.scheduled, step.admitted) == (((1, 1, False),), ())
    s.complete_step(finished=[1])
    step = s.schedule()
    assert step.admitted == (2, 3)
    assert step.scheduled == ((2, 5, True), (3, 1, True))
    assert s.complete_step().emitted == ((2, 2), (3, 1))


@given(prompt_len=st.integers(1, 200), chunk=st.integers(1, 64))
def test_chunked_prefill_splits_by_the_token_budget(prompt_len: int, chunk: int) -> None:
    s = fluidsched.Scheduler("vllm", num_blocks=64, block_size=4, max_num_batched_tokens=chunk, watermark=0.0)
    s.add_request(0, prompt_len=prompt_len, output_len=2)
    done = 0
    chunks = []
    while done < prompt_len:
        ((rid, n, prefill),) = s.schedule().scheduled
        assert (rid, prefill) == (0, True)
        chunks.append(n)
        done += n
        assert s.complete_step().emitted == (((0, 1),) if done == prompt_len else ())
        assert s.get_request(0)["num_blocks"] == ceil_div(done, 4)
    assert chunks == [chunk] * (prompt_len // chunk) + ([prompt_len % chunk] if prompt_len % chunk else [])


@given(max_num_seqs=st.integers(1, 8), num_requests=st.integers(1, 12))
def test_max_num_seqs_caps_the_running_requests(max_num_seqs: int, num_requests: int) -> None:
    s = fluidsched.Scheduler("vllm", num_blocks=256, block_size=4, max_num_seqs=max_num_seqs)
    for i in range(num_requests):
        s.add_request(i, prompt_len=3, output_len=3)
    step = s.schedule()
    assert step.admitted == tuple(range(min(max_num_seqs, num_requests)))
    s.complete_step()
    assert s.num_running == min(max_num_seqs, num_requests)
    assert s.num_waiting == num_requests - s.num_running


def test_watermark_blocks_admission_but_not_running_requests() -> None:
    # 10 blocks of 1 token with a 20% watermark: admission needs 2 blocks to stay free.
    s = fluidsched.Scheduler("vllm", num_blocks=10, block_size=1, watermark=0.2)
    assert s.watermark_blocks == 2
    s.add_request(0, prompt_len=7)  # 7 + 2 <= 10: admitted
    s.add_request(1, prompt_len=2)  # 2 + 2 > 3 free: blocked by the watermark
    step = s.schedule()
    assert step.admitted == (0,)
    s.complete_step()
    # The running request keeps growing into the watermark (it is not admission).
    for _ in range(3):
        assert s.schedule().scheduled == ((0, 1, False),)
        s.complete_step()
    assert s.num_free_blocks == 0
    assert s.num_waiting == 1
    with pytest.raises(fluidsched.InvalidRequestError, match="only 8 are usable"):
        s.add_request(2, prompt_len=8)


def test_several_preempted_requests_requeue_in_admission_order() -> None:
    # 4 blocks of 1 token: four 1-token prompts fill the cache, then every decode needs a new block.
    s = fluidsched.Scheduler("vllm", num_blocks=4, block_size=1, watermark=0.0)
    for rid in (1, 2, 3, 4):
        s.add_request(rid, prompt_len=1)
    assert s.schedule().admitted == (1, 2, 3, 4)
    s.complete_step()
    step = s.schedule()
    # 1 takes 4's block, 2 takes 3's: the newest go first, and no admission follows.
    assert step.preempted == (4, 3)
    assert step.scheduled == ((1, 1, False), (2, 1, False))
    s.complete_step()
    s.abort_request(1)
    s.abort_request(2)
    s.add_request(5, prompt_len=1)
    step = s.schedule()
    # Both go back to the head of the queue, ahead of 5, and keep their admission order (3 before 4).
    assert step.admitted == (3, 4)
    assert step.scheduled == ((3, 2, True), (4, 2, True))


def test_unchunked_prefill_waits_for_budget_while_later_requests_run() -> None:
    s = fluidsched.Scheduler(
        "vllm", num_blocks=1000, block_size=1, watermark=0.0, max_num_batched_tokens=6, enable_chunked_prefill=False
    )
    s.add_request(1, prompt_len=1, output_len=10)
    s.add_request(2, prompt_len=1, output_len=10)
    assert s.schedule().scheduled == ((1, 1, True), (2, 1, True))
    s.complete_step()
    # A 9-token prompt is longer than the whole budget: it is chunked even without chunked prefill.
    s.add_request(3, prompt_len=9, output_len=2)
    assert s.schedule().scheduled == ((1, 1, False), (2, 1, False), (3, 4, True))
    s.complete_step()
    # The 5 tokens 3 still owes fit in a budget (6) so they must run whole, but only 4 are left after the decodes:
    # 3 sits the step out, and the budget goes to the next request in line.
    s.add_request(4, prompt_len=1, output_len=10)
    step = s.schedule()
    assert step.scheduled == ((1, 1, False), (2, 1, False), (4, 1, True))
    assert step.admitted == (4,)
    s.complete_step()
    # Running requests after the one that sits out are still scheduled.
    assert s.schedule().scheduled == ((1, 1, False), (2, 1, False), (4, 1, False))
    s.complete_step()
    assert s.get_request(3)["num_computed_tokens"] == 4
