"""One hypothesis state machine per policy over the Python step API.

Each machine adds requests (random lengths, types and arrival gaps; some with an unknown output length that the
driver finishes), steps (``schedule`` + ``complete_step``), aborts waiting or running requests, and checks the
scheduler against a small pure-Python model of the state after every rule:

- every held request's state, computed tokens and output tokens match the model, which applies each step's
  scheduled tokens itself;
- KV blocks: never above capacity, free + used = total, each running request holds at least
  ceil(computed / block_size) blocks (Orca reserves more) and every waiting one none, and aborting or finishing
  a request returns exactly its blocks;
- every request finishes or is aborted exactly once, and nothing is lost (held + finished + aborted = added);
- the policy's own rule: FCFS first admission (vllm, sarathi, orca, sglang, vllm-v0), the token budget (sarathi's own;
  for vllm-v0 Vidur's padded cap on prefill-only steps, a lone prefill exempt, and no decode in a step that admits),
  no preemption for orca, and none for mc-sf and wait while all lengths are exact;
- liveness: at teardown, stepping without new arrivals (jumping to the policy's wake-up time when a step is
  empty) finishes every request within a bounded number of steps.

``HYPOTHESIS_PROFILE=long`` (``make fuzz``) runs 10,000 examples per policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import fluidsched
from fluidsched import POLICY_NAMES, Scheduler

NUM_BLOCKS = 24
BLOCK_SIZE = 4
MAX_NUM_SEQS = 6
MAX_TOKENS = 64
TYPES = [(6, 5, 3.0), (20, 12, 1.0)]  # (prompt, output, rate) for the policies that plan from types
D0, D1 = 0.01, 1e-3
FCFS = {"vllm", "sarathi", "orca", "sglang", "vllm-v0"}
USABLE_TOKENS = NUM_BLOCKS * BLOCK_SIZE  # the watermark is 0 here

OPTIONS: dict[str, dict[str, bool | int | float | str | Sequence[float]]] = {
    "sarathi": {"token_budget": 32},
    "orca": {"max_tokens": USABLE_TOKENS},
    "vllm-v0": {"max_tokens_in_batch": MAX_TOKENS},
}
#: Per-iteration token budget each policy works under.
BUDGETS = {"sarathi": 32}
#: Policies with Vidur's padded cap instead of a token budget (``rust/src/policies/vllm_v0.rs``).
PADDED = {"vllm-v0"}


@dataclass
class Model:
    """What the driver knows about one request."""

    prompt_len: int
    output_len: int | None  # None: the driver decides when it stops
    state: str = "waiting"
    computed: int = 0
    output: int = 0
    ever_admitted: bool = False


@dataclass
class World:
    requests: dict[int, Model] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    aborted: set[int] = field(default_factory=set)
    added: int = 0
    first_admissions: list[int] = field(default_factory=list)
    all_exact: bool = True


def make_scheduler(policy: str) -> Scheduler:
    return Scheduler(
        policy,
        num_blocks=NUM_BLOCKS,
        block_size=BLOCK_SIZE,
        watermark=0.0,
        max_num_seqs=MAX_NUM_SEQS,
        max_num_batched_tokens=MAX_TOKENS,
        policy_options=OPTIONS.get(policy),
        d0=D0,
        d1=D1,
        types=TYPES,
        output_lengths=[5, 12, 3, 20],
        arrival_rate=sum(t[2] for t in TYPES),
    )


def machine_for(policy: str) -> type[RuleBasedStateMachine]:
    class PolicyMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.s = make_scheduler(policy)
            self.w = World()
            self.now = 0.0
            self.next_id = 0

        # ------------------------------------------------------------------------------------------ rules
        @rule(
            prompt=st.integers(1, 40),
            output=st.integers(1, 30),
            known=st.booleans(),
            exact_hint=st.booleans(),
            type_id=st.sampled_from([None, 0, 1]),
            gap=st.sampled_from([0.0, 0.001, 0.05, 0.5]),
        )
        def add(self, prompt: int, output: int, known: bool, exact_hint: bool, type_id: int | None, gap: float) -> None:
            if prompt + output > USABLE_TOKENS:
                return
            self.now += gap
            rid = self.next_id
            self.next_id += 1
            hint = output if exact_hint else max(1, output // 2)
            if not (known and exact_hint):
                self.w.all_exact = False
            self.s.add_request(
                rid,
                prompt,
                output if known else None,
                output_len_hint=hint,
                type_id=type_id,
                arrival=self.now,
            )
            self.w.requests[rid] = Model(prompt, output if known else None)
            self.w.added += 1

        @rule(finish_some=st.booleans())
        def step(self, finish_some: bool) -> None:
            self.do_step(finish_some)
            self.requests_match_the_model()

        @precondition(lambda self: bool(self.w.requests))
        @rule(data=st.data())
        def abort(self, data: st.DataObject) -> None:
            rid = data.draw(st.sampled_from(sorted(self.w.requests)))
            before = self.s.num_used_blocks
            held = self.s.get_request(rid)["num_blocks"]
            assert isinstance(held, int)
            self.s.abort_request(rid)
            assert self.s.num_used_blocks == before - held, "abort must free exactly the request's blocks"
            del self.w.requests[rid]
            self.w.aborted.add(rid)

        @rule()
        def abort_unknown(self) -> None:
            try:
                self.s.abort_request(10**12)
            except fluidsched.UnknownRequestError:
                pass
            else:
                raise AssertionError("aborting an unknown id must raise UnknownRequestError")

        # ------------------------------------------------------------------------------------------ helpers
        def do_step(self, finish_some: bool) -> bool:
            """One schedule + complete_step; returns whether anything was computed."""
            step = self.s.schedule(self.now)
            w = self.w
            tokens = sum(n for _, n, _ in step.scheduled)
            budget = BUDGETS.get(policy, MAX_TOKENS)
            if policy in PADDED:
                prefills = [n for _, n, prefill in step.scheduled if prefill]
                if step.admitted:
                    assert len(prefills) == len(step.scheduled) == len(step.admitted), "decode in an admitting step"
                    assert len(prefills) == 1 or len(prefills) * max(prefills) <= budget, f"padded cap: {prefills}"
                else:
                    assert not prefills, f"prefill without admission: {step.scheduled}"
            elif policy != "mc-sf":  # MC-SF may run one whole prefill past the budget (documented)
                assert tokens <= budget, f"{tokens} tokens > budget {budget}"
            for rid in step.preempted:
                m = w.requests[rid]
                assert m.state == "running", f"preempted {rid} was {m.state}"
                m.state, m.computed = "waiting", 0
            if policy == "orca" or (policy in ("mc-sf", "wait") and w.all_exact):
                assert not step.preempted, f"{policy} preempted {step.preempted}"
            for rid in step.admitted:
                m = w.requests[rid]
                assert m.state == "waiting"
                m.state = "running"
                if not m.ever_admitted:
                    m.ever_admitted = True
                    w.first_admissions.append(rid)
            for rid, n, _ in step.scheduled:
                m = w.requests[rid]
                assert m.state == "running", f"scheduled {rid} while {m.state}"
                owed = m.prompt_len + m.output - m.computed
                assert 1 <= n <= owed, f"{n} tokens scheduled, {owed} owed"
            # The driver finishes the running requests of unknown length that have some output.
            stop = [
                rid
                for rid, m in w.requests.items()
                if finish_some and m.output_len is None and m.state == "running" and m.output >= 1
            ]
            out = self.s.complete_step(stop)
            emitted = dict(out.emitted)
            for rid, n, _ in step.scheduled:
                m = w.requests[rid]
                m.computed += n
                if m.computed == m.prompt_len + m.output:
                    m.output += 1
                    assert emitted.get(rid) == m.output, f"{rid}: emitted {emitted.get(rid)}, model {m.output}"
            assert len(emitted) == sum(1 for rid in emitted if rid in w.requests)
            expected_finished = {rid for rid in stop} | {
                rid for rid, m in w.requests.items() if m.output_len is not None and m.output >= m.output_len
            }
            assert set(out.finished) == expected_finished, (out.finished, expected_finished)
            for rid in out.finished:
                assert rid not in w.finished, f"{rid} finished twice"
                assert rid not in w.aborted, f"{rid} finished after it was aborted"
                del w.requests[rid]
                w.finished.add(rid)
            self.now += D0 + D1 * tokens
            return bool(step.scheduled)

        # ------------------------------------------------------------------------------------------ invariants
        @invariant()
        def counts_match_the_model(self) -> None:
            s, w = self.s, self.w
            self.s.check_invariants()
            assert s.num_used_blocks <= NUM_BLOCKS
            assert s.num_free_blocks + s.num_used_blocks == NUM_BLOCKS
            assert s.num_unfinished == len(w.requests)
            assert len(w.requests) + len(w.finished) + len(w.aborted) == w.added, "a request was lost"
            assert s.num_running == sum(m.state == "running" for m in w.requests.values())
            assert s.num_waiting == sum(m.state == "waiting" for m in w.requests.values())
            if policy in FCFS:
                assert w.first_admissions == sorted(w.first_admissions), "first admissions out of arrival order"

        def requests_match_the_model(self) -> None:
            """Per request: state, computed and output tokens, blocks held (checked after every step)."""
            s, w = self.s, self.w
            for rid, m in w.requests.items():
                r = s.get_request(rid)
                assert r["state"] == m.state
                assert (r["num_computed_tokens"], r["num_output_tokens"]) == (m.computed, m.output)
                need = math.ceil(m.computed / BLOCK_SIZE)
                blocks = r["num_blocks"]
                assert isinstance(blocks, int)
                if m.state == "waiting":
                    assert blocks == 0
                else:
                    # Orca reserves ahead; Sarathi allocates a whole prompt at admission (Vidur's accounting).
                    assert blocks >= need if policy in ("orca", "sarathi") else blocks == need

        def teardown(self) -> None:
            # Liveness: drain without new arrivals; every request must finish in a bounded number of steps (the
            # driver stops requests of unknown length once they have produced a token).
            bound = 200 + 4 * sum(m.prompt_len + (m.output_len or 30) for m in self.w.requests.values())
            steps = 0
            while self.w.requests:
                steps += 1
                assert steps <= bound, f"{len(self.w.requests)} requests still held after {bound} steps"
                if not self.do_step(finish_some=True):
                    wake = self.s.next_wakeup()
                    if wake is not None and wake > self.now:
                        self.now = wake
                self.counts_match_the_model()
            self.requests_match_the_model()
            assert self.s.num_used_blocks == 0

    PolicyMachine.__name__ = f"Machine_{policy.replace('-', '_')}"
    return PolicyMachine


# One TestCase per policy, named so that `pytest -k vllm` and the hypothesis statistics show the policy.
for _name in POLICY_NAMES:
    globals()[f"TestMachine_{_name.replace('-', '_')}"] = machine_for(_name).TestCase
