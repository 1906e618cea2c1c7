"""Every registered policy behind the step API: a driver like the simulator's (requests arrive over time, idle
gaps jump to the next arrival or the policy's wake-up time) runs small random workloads on tight KV caches, and
checks after every step what any policy must keep: ``check_invariants()``, blocks = ceil(computed / block_size)
for running requests and none for waiting ones, blocks conserved, ``max_num_seqs`` and the token budget
respected, one output token at a time, every request finished exactly once, and progress (no stall)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluidsched
from fluidsched import POLICY_NAMES


@dataclass
class Spec:
    arrival: float
    prompt_len: int
    output_len: int
    type_id: int


TYPES = [(16, 8, 4.0), (48, 24, 2.0), (8, 40, 1.0)]  # (prompt, output, rate): small requests of three types

#: Policies whose own option replaces ``max_num_batched_tokens`` (documented in their modules).
BUDGET_OPTION = {"sarathi": "token_budget", "vllm-v0": "max_tokens_in_batch"}
#: Policies with Vidur's padded cap instead of a token budget: a step that admits holds only whole prefills, with
#: ``len(prefills) * max(prefills) <= budget`` unless it is a single prefill; decode-only steps are not capped
#: (documented in ``rust/src/policies/vllm_v0.rs``).
PADDED_BUDGET = {"vllm-v0"}
#: Policies that cap only prefills with ``max_num_batched_tokens``: decodes are never capped, and a prefill longer
#: than the whole budget runs whole as the step's only prefill (documented in ``rust/src/policies/mc_sf.rs``).
PREFILL_ONLY_BUDGET = {"mc-sf"}


@st.composite
def workloads(draw: st.DrawFn) -> list[Spec]:
    n = draw(st.integers(1, 16))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.01, 0.1, 0.5, 2.0]), min_size=n, max_size=n))
    specs = []
    t = 0.0
    for gap in gaps:
        t += gap
        j = draw(st.integers(0, len(TYPES) - 1))
        prompt, output, _ = TYPES[j]
        # Lengths around the type's mean, as in real traces.
        specs.append(Spec(t, draw(st.integers(1, 2 * prompt)), draw(st.integers(1, 2 * output)), j))
    return specs


class Driver:
    """Replays ``specs`` through a scheduler the way the simulator does, checking every step."""

    d0, d1 = 0.01, 1e-4

    def __init__(
        self,
        policy: str,
        specs: list[Spec],
        *,
        num_blocks: int,
        block_size: int,
        max_num_seqs: int,
        max_num_batched_tokens: int,
    ) -> None:
        self.policy = policy
        self.specs = specs
        self.num_blocks, self.block_size = num_blocks, block_size
        self.max_num_seqs, self.max_num_batched_tokens = max_num_seqs, max_num_batched_tokens
        self.s = fluidsched.Scheduler(
            policy,
            num_blocks=num_blocks,
            block_size=block_size,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            d0=self.d0,
            d1=self.d1,
            types=TYPES,
            output_lengths=[spec.output_len for spec in specs],
            arrival_rate=sum(rate for _, _, rate in TYPES),
            policy_options={BUDGET_OPTION[policy]: max_num_batched_tokens} if policy in BUDGET_OPTION else None,
        )
        assert self.s.policy == policy
        self.outputs = {rid: 0 for rid in range(len(specs))}
        self.finished: set[int] = set()
        self.now = 0.0
        self.next_arrival = 0
        self.log: list[str] = []

    def run(self) -> None:
        try:
            self._run()
        except AssertionError as e:
            raise AssertionError(f"{self.policy}: {e}\nlatest steps:\n" + "\n".join(self.log[-12:])) from e

    def _admit_arrivals(self) -> None:
        hints = self.s.needs_output_lengths
        while self.next_arrival < len(self.specs) and self.specs[self.next_arrival].arrival <= self.now:
            spec = self.specs[self.next_arrival]
            self.s.add_request(
                self.next_arrival,
                spec.prompt_len,
                spec.output_len,
                output_len_hint=spec.output_len if hints else None,
                type_id=spec.type_id,
                arrival=spec.arrival,
            )
            self.next_arrival += 1

    def _run(self) -> None:
        s, specs = self.s, self.specs
        empty_streak = 0
        # Generous bound: every token of every request recomputed once per request, plus idle jumps.
        bound = sum(spec.prompt_len + spec.output_len for spec in specs) * (len(specs) + 1) + 100
        for _ in range(bound):
            self._admit_arrivals()
            if len(self.finished) == len(specs):
                break
            if s.num_unfinished == 0:
                self.now = specs[self.next_arrival].arrival
                continue
            step = self._step()
            if step.scheduled:
                empty_streak = 0
                self.now += self.d0 + self.d1 * step.num_batched_tokens
                continue
            empty_streak += 1
            if step.preempted and empty_streak <= 2:
                continue  # retry at once after a self-preemption, as the simulator does
            wake = s.next_wakeup()
            candidates = [t for t in (wake,) if t is not None and t > self.now]
            if self.next_arrival < len(specs):
                candidates.append(specs[self.next_arrival].arrival)
            assert candidates, f"stalled at t={self.now}: nothing scheduled, no arrival and no wake-up; {s!r}"
            self.now = min(candidates)
        assert self.finished == set(range(len(specs))), f"unfinished after {bound} steps: {s!r}"
        assert s.num_unfinished == 0
        assert s.num_used_blocks == 0

    def _step(self) -> fluidsched.Step:
        s = self.s
        running_before = s.running_ids
        step = s.schedule(now=self.now)
        self.log.append(
            f"t={self.now:.3f} scheduled={step.scheduled} preempted={step.preempted} admitted={step.admitted}"
        )
        ids = [rid for rid, _, _ in step.scheduled]
        assert len(set(ids)) == len(ids)
        assert not set(step.preempted) & set(ids)
        assert set(step.preempted) <= set(running_before)
        assert step.num_batched_tokens == sum(n for _, n, _ in step.scheduled)
        if self.policy in PREFILL_ONLY_BUDGET:
            prefills = [n for _, n, prefill in step.scheduled if prefill]
            assert sum(prefills) <= self.max_num_batched_tokens or len(prefills) == 1
        elif self.policy in PADDED_BUDGET:
            prefills = [n for _, n, prefill in step.scheduled if prefill]
            if prefills:
                assert len(prefills) == len(step.scheduled), "a prefill-only step holds a decode"
                assert len(prefills) * max(prefills) <= self.max_num_batched_tokens or len(prefills) == 1
            else:
                assert all(n == 1 for _, n, _ in step.scheduled)
        else:
            assert step.num_batched_tokens <= self.max_num_batched_tokens
        assert all(n >= 1 for _, n, _ in step.scheduled)
        assert all(prefill for _, n, prefill in step.scheduled if n > 1)
        assert s.num_used_blocks + s.num_free_blocks == self.num_blocks
        out = s.complete_step()
        for rid, k in out.emitted:
            assert rid in ids
            assert k == self.outputs[rid] + 1
            self.outputs[rid] = k
        for rid in out.finished:
            assert rid not in self.finished, f"request {rid} finished twice"
            assert self.outputs[rid] == self.specs[rid].output_len
            self.finished.add(rid)
        check_scheduler(s, self.num_blocks, self.block_size, self.max_num_seqs, self.finished, self.next_arrival)
        return step


def run_policy(
    policy: str,
    specs: list[Spec],
    *,
    num_blocks: int,
    block_size: int,
    max_num_seqs: int,
    max_num_batched_tokens: int,
) -> None:
    Driver(
        policy,
        specs,
        num_blocks=num_blocks,
        block_size=block_size,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
    ).run()


def check_scheduler(
    s: fluidsched.Scheduler, num_blocks: int, block_size: int, max_num_seqs: int, finished: set[int], added: int
) -> None:
    s.check_invariants()
    assert s.num_running <= max_num_seqs
    assert s.num_waiting + s.num_running == s.num_unfinished == added - len(finished)
    running = s.running_ids
    assert len(set(running)) == len(running)
    used = 0
    for rid in range(added):
        if rid in finished:
            continue
        view = s.get_request(rid)
        computed, blocks = view["num_computed_tokens"], view["num_blocks"]
        assert isinstance(computed, int)
        assert isinstance(blocks, int)
        if view["state"] == "running":
            assert rid in running
            # At least enough for what was computed; a policy may reserve ahead (Orca), never beyond the cache.
            assert blocks >= -(-computed // block_size)
        else:
            assert view["state"] == "waiting"
            assert rid not in running
            assert (computed, blocks) == (0, 0)
        used += blocks
    assert used == s.num_used_blocks <= num_blocks


@pytest.mark.parametrize("policy", POLICY_NAMES)
@given(
    specs=workloads(),
    num_blocks=st.integers(7, 40),
    block_size=st.sampled_from([1, 4, 16]),
    max_num_seqs=st.integers(1, 8),
    max_num_batched_tokens=st.integers(16, 256),
)
def test_every_policy_keeps_the_scheduler_invariants(
    policy: str,
    specs: list[Spec],
    num_blocks: int,
    block_size: int,
    max_num_seqs: int,
    max_num_batched_tokens: int,
) -> None:
    # Every request must fit alone in the cache above the watermark (the scheduler rejects others up front).
    half = (num_blocks - int(0.01 * num_blocks)) * block_size // 2
    specs = [Spec(x.arrival, min(x.prompt_len, half), min(x.output_len, half), x.type_id) for x in specs]
    run_policy(
        policy,
        specs,
        num_blocks=num_blocks,
        block_size=block_size,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
    )


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_policy_serves_a_small_burst(policy: str) -> None:
    run_policy(
        policy,
        [Spec(0.0, 5, 3, 0), Spec(0.0, 40, 2, 1), Spec(1.0, 3, 9, 2), Spec(1.0, 30, 30, 1), Spec(9.0, 1, 1, 0)],
        num_blocks=16,
        block_size=4,
        max_num_seqs=2,
        max_num_batched_tokens=32,
    )
