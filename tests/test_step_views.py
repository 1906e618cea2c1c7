"""The read views of :class:`fluidsched.Step` and :class:`fluidsched.StepOutcome`.

Every view is built once, on first access, and the same object is returned afterwards: tuples for the per-request
views (``scheduled``, ``preempted``, ``admitted``, ``emitted``, ``finished``) and read-only numpy arrays for the
columns (``request_ids``, ``num_tokens``, ``is_prefill``; ``request_ids``, ``num_output_tokens``). On random step
sequences of every policy, read in a random order and possibly only after later steps have run, the arrays hold
exactly the tuples' columns, and nothing a reader does to them can change what the scheduler decided.
"""

from __future__ import annotations

import gc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluidsched
from fluidsched import POLICY_NAMES

TYPES = [(8, 6, 2.0), (24, 12, 1.0)]
STEP_VIEWS = ("scheduled", "preempted", "admitted", "request_ids", "num_tokens", "is_prefill")
OUTCOME_VIEWS = ("emitted", "finished", "request_ids", "num_output_tokens")


def make_scheduler(policy: str, num_blocks: int) -> fluidsched.Scheduler:
    """A small scheduler of ``policy`` (``max_num_seqs`` 6, 32 tokens per step, blocks of 4 tokens)."""
    return fluidsched.Scheduler(
        policy,
        num_blocks=num_blocks,
        block_size=4,
        watermark=0.0,
        max_num_seqs=6,
        max_num_batched_tokens=32,
        d0=0.01,
        d1=1e-3,
        types=TYPES,
        output_lengths=[6, 12],
        arrival_rate=3.0,
    )


def check_step(step: fluidsched.Step, order: list[str]) -> None:
    """Reads ``step``'s views in ``order``, then checks them against each other."""
    first = {name: getattr(step, name) for name in order}
    for name in STEP_VIEWS:
        again = getattr(step, name)
        assert again is first.setdefault(name, again), f"step.{name} rebuilt on a second access"
        assert getattr(step, name) is again, f"step.{name} rebuilt on a second access"
    scheduled = step.scheduled
    assert isinstance(scheduled, tuple)
    assert all(isinstance(row, tuple) and len(row) == 3 for row in scheduled)
    assert isinstance(step.preempted, tuple)
    assert isinstance(step.admitted, tuple)
    assert len(step) == len(scheduled)
    check_array(step.request_ids, np.uint64, [rid for rid, _, _ in scheduled])
    check_array(step.num_tokens, np.uint32, [n for _, n, _ in scheduled])
    check_array(step.is_prefill, np.bool_, [prefill for _, _, prefill in scheduled])
    assert all(type(rid) is int and type(n) is int and type(p) is bool for rid, n, p in scheduled)
    assert step.num_batched_tokens == sum(n for _, n, _ in scheduled)
    assert step.num_prefill_tokens == sum(n for _, n, p in scheduled if p)


def check_outcome(outcome: fluidsched.StepOutcome, order: list[str]) -> None:
    """Reads ``outcome``'s views in ``order``, then checks them against each other."""
    first = {name: getattr(outcome, name) for name in order}
    for name in OUTCOME_VIEWS:
        again = getattr(outcome, name)
        assert again is first.setdefault(name, again), f"outcome.{name} rebuilt on a second access"
        assert getattr(outcome, name) is again, f"outcome.{name} rebuilt on a second access"
    assert isinstance(outcome.emitted, tuple)
    assert isinstance(outcome.finished, tuple)
    check_array(outcome.request_ids, np.uint64, [rid for rid, _ in outcome.emitted])
    check_array(outcome.num_output_tokens, np.uint32, [k for _, k in outcome.emitted])


def check_array(array: Any, dtype: type[np.generic], expected: list[Any]) -> None:
    """``array`` is a read-only contiguous 1-d array of ``dtype`` holding ``expected``."""
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.dtype(dtype)
    assert array.shape == (len(expected),)
    assert array.flags.c_contiguous
    assert not array.flags.writeable
    assert array.tolist() == expected


@st.composite
def orders(draw: st.DrawFn, names: tuple[str, ...]) -> list[str]:
    """A random non-empty subset of ``names`` in a random order: the views a reader touches first."""
    return draw(st.permutations(names))[: draw(st.integers(1, len(names)))]


@given(
    policy=st.sampled_from(POLICY_NAMES),
    num_blocks=st.integers(12, 40),
    ops=st.lists(
        st.tuples(
            st.integers(0, 2),  # new requests before the step
            st.sampled_from([0, 1]),  # type
            st.booleans(),  # finish the first scheduled request through `finished`
            st.booleans(),  # read the step's views only after the next step
            orders(STEP_VIEWS),
            orders(OUTCOME_VIEWS),
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_views_agree_on_random_step_sequences(policy: str, num_blocks: int, ops: list[Any]) -> None:
    s = make_scheduler(policy, num_blocks)
    next_id = 2**63 - 10  # ids above 2**63 need the arrays' uint64
    now = 0.0
    late: list[tuple[fluidsched.Step, list[str], tuple[Any, ...]]] = []
    for num_new, type_id, finish_first, read_late, step_order, outcome_order in ops:
        for _ in range(num_new):
            prompt, output, _ = TYPES[type_id]
            s.add_request(next_id, prompt, output, output_len_hint=output, type_id=type_id, arrival=now)
            next_id += 1
        step = s.schedule(now)
        if read_late:
            # Kept for later: the tuple is read now, the rest only after more steps have run.
            late.append((step, step_order, step.scheduled))
        else:
            check_step(step, step_order)
        finished = [row[0] for row in step.scheduled[:1]] if finish_first else []
        outcome = s.complete_step(finished)
        check_outcome(outcome, outcome_order)
        assert set(finished) <= set(outcome.finished)
        now += 0.01 + 1e-3 * step.num_batched_tokens
    s.check_invariants()
    for step, order, scheduled in late:
        check_step(step, order)
        assert step.scheduled is scheduled


def test_arrays_cannot_be_written() -> None:
    s = fluidsched.Scheduler("vllm", num_blocks=64, block_size=4)
    s.add_request(1, 5, 2)
    s.add_request(2, 3, 2)
    step = s.schedule()
    outcome = s.complete_step()
    for array in (step.request_ids, step.num_tokens, step.is_prefill, outcome.request_ids, outcome.num_output_tokens):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0
        with pytest.raises(ValueError, match="WRITEABLE"):
            array.flags.writeable = True
    # A copy is the caller's to change; the step's view is untouched.
    ids = step.request_ids.copy()
    ids[0] = 99
    assert step.request_ids.tolist() == [1, 2]
    assert step.scheduled == ((1, 5, True), (2, 3, True))
    with pytest.raises(AttributeError):
        step.scheduled = ()  # type: ignore[misc]


def test_views_outlive_their_step_and_the_scheduler() -> None:
    s = fluidsched.Scheduler("vllm", num_blocks=64, block_size=4)
    s.add_request(7, 4, 1)
    step = s.schedule()
    outcome = s.complete_step()
    ids, tokens, emitted_ids = step.request_ids, step.num_tokens, outcome.request_ids
    del step, outcome, s
    gc.collect()
    assert (ids.tolist(), tokens.tolist(), emitted_ids.tolist()) == ([7], [4], [7])


def test_empty_step_has_empty_views() -> None:
    s = fluidsched.Scheduler("vllm", num_blocks=64, block_size=4)
    step = s.schedule()
    outcome = s.complete_step()
    check_step(step, list(STEP_VIEWS))
    check_outcome(outcome, list(OUTCOME_VIEWS))
    for view in (step.scheduled, step.preempted, step.admitted, outcome.emitted, outcome.finished):
        assert view == ()
    assert bool(outcome)  # a StepOutcome stays truthy when nothing was emitted


def test_threads_reading_one_step_get_one_object() -> None:
    s = fluidsched.Scheduler("vllm", num_blocks=256, block_size=4)
    for rid in range(32):
        s.add_request(rid, 3, 4)
    steps = []
    for _ in range(20):
        steps.append(s.schedule())
        s.complete_step()
    names = ("scheduled", "request_ids", "num_tokens", "is_prefill", "admitted")
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(lambda _: [id(getattr(step, n)) for step in steps for n in names], range(8)))
    assert all(ids == seen[0] for ids in seen)
