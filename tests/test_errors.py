"""The bad-input table: every case raises its own ``fluidsched`` exception class (a ``FluidschedError``, also the
matching built-in) with a message that names the problem; and no input makes a Rust panic surface in Python."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluidsched
from fluidsched import (
    POLICY_NAMES,
    POLICY_OPTIONS,
    DuplicateRequestError,
    FluidschedError,
    InternalError,
    InvalidConfigError,
    InvalidRequestError,
    InvalidStateError,
    InvalidTraceError,
    Scheduler,
    UnknownRequestError,
    Workload,
    simulate,
)

Call = Callable[[], object]


def check_raises(call: Call, cls: type[FluidschedError], *fragments: str) -> FluidschedError:
    """Runs ``call``; it must raise exactly ``cls`` (a FluidschedError) with every fragment in the message."""
    with pytest.raises(cls) as info:
        call()
    error = info.value
    assert type(error) is cls, f"expected {cls.__name__}, got {type(error).__name__}: {error}"
    assert isinstance(error, FluidschedError)
    message = str(error)
    assert "\n" not in message.strip()
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return error


def small_workload() -> Workload:
    return Workload.from_types([(10, 10, 1.0)], 5, seed=1)


def with_request(s: Scheduler, rid: int) -> Scheduler:
    s.add_request(rid, 1)
    return s


def started(s: Scheduler) -> Scheduler:
    """``s`` with a pending step."""
    s.add_request(1, 4)
    s.schedule()
    return s


def nan() -> float:
    return math.nan


# (id, call, exception class, message fragments)
CASES: list[tuple[str, Call, type[FluidschedError], tuple[str, ...]]] = [
    # -------------------------------------------------------------------------------------- scheduler config
    ("num_blocks=0", lambda: Scheduler(num_blocks=0), InvalidConfigError, ("num_blocks must be >= 1",)),
    (
        "num_blocks=u32::MAX",
        lambda: Scheduler(num_blocks=2**32 - 1),
        InvalidConfigError,
        ("num_blocks must be at most", "4294967295"),
    ),
    (
        "num_blocks=2**32-2 (a 32 GiB pool)",
        lambda: Scheduler(num_blocks=2**32 - 2),
        InvalidConfigError,
        ("num_blocks must be at most", "larger block_size"),
    ),
    ("block_size=0", lambda: Scheduler(block_size=0), InvalidConfigError, ("block_size must be >= 1",)),
    ("watermark=NaN", lambda: Scheduler(watermark=nan()), InvalidConfigError, ("watermark", "NaN")),
    ("watermark=1", lambda: Scheduler(watermark=1.0), InvalidConfigError, ("watermark must be a fraction in [0, 1)",)),
    ("watermark<0", lambda: Scheduler(watermark=-0.1), InvalidConfigError, ("watermark", "-0.1")),
    ("max_num_seqs=0", lambda: Scheduler(max_num_seqs=0), InvalidConfigError, ("max_num_seqs must be >= 1",)),
    (
        "max_num_batched_tokens=0",
        lambda: Scheduler(max_num_batched_tokens=0),
        InvalidConfigError,
        ("max_num_batched_tokens must be >= 1",),
    ),
    ("unknown policy", lambda: Scheduler("nope"), InvalidConfigError, ('unknown policy "nope"', *POLICY_NAMES)),
    (
        "unknown option",
        lambda: Scheduler("vllm", policy_options={"bogus": 1}),
        InvalidConfigError,
        ('policy "vllm" has no option "bogus"',),
    ),
    ("schedule(now=NaN)", lambda: Scheduler().schedule(now=nan()), InvalidConfigError, ("now must be finite",)),
    ("schedule(now=inf)", lambda: Scheduler().schedule(now=math.inf), InvalidConfigError, ("now must be finite",)),
    # ------------------------------------------------------------------------------------------- requests
    (
        "prompt_len=0",
        lambda: Scheduler().add_request(3, 0),
        InvalidRequestError,
        ("request 3", "prompt_len must be >= 1"),
    ),
    (
        "output_len=0",
        lambda: Scheduler().add_request(3, 5, 0),
        InvalidRequestError,
        ("request 3", "output length must be >= 1"),
    ),
    (
        "output_len_hint=0",
        lambda: Scheduler().add_request(3, 5, output_len_hint=0),
        InvalidRequestError,
        ("output length must be >= 1",),
    ),
    (
        "arrival=NaN",
        lambda: Scheduler().add_request(3, 5, arrival=nan()),
        InvalidRequestError,
        ("arrival time must be finite",),
    ),
    (
        "arrival=inf",
        lambda: Scheduler().add_request(3, 5, arrival=math.inf),
        InvalidRequestError,
        ("arrival time must be finite",),
    ),
    (
        "request larger than the cache",
        lambda: Scheduler(num_blocks=10, block_size=4, watermark=0.0).add_request(3, 40),
        InvalidRequestError,
        ("request 3", "needs up to 41 tokens", "only 40 are usable"),
    ),
    (
        "request larger than the cache above the watermark",
        lambda: Scheduler(num_blocks=10, block_size=4, watermark=0.2).add_request(3, 30, 3),
        InvalidRequestError,
        ("needs up to 33 tokens", "only 32 are usable", "above the watermark"),
    ),
    (
        "prompt_len=2**31",
        lambda: Scheduler(num_blocks=2**20, block_size=2**12).add_request(3, 2**31),
        InvalidRequestError,
        ("request 3", "2147483649"),
    ),
    (
        "output_len=u32::MAX",
        lambda: Scheduler().add_request(3, 1, 2**32 - 1),
        InvalidRequestError,
        ("request 3", "4294967296"),
    ),
    (
        "duplicate id",
        lambda: with_request(Scheduler(), 7).add_request(7, 1),
        DuplicateRequestError,
        ("duplicate request id 7",),
    ),
    ("abort unknown id", lambda: Scheduler().abort_request(99), UnknownRequestError, ("unknown request id 99",)),
    ("get unknown id", lambda: Scheduler().get_request(99), UnknownRequestError, ("unknown request id 99",)),
    (
        "complete_step(finished=[unknown])",
        lambda: started(Scheduler()).complete_step(finished=[99]),
        UnknownRequestError,
        ("unknown request id 99",),
    ),
    (
        "schedule twice",
        lambda: started(Scheduler()).schedule(),
        InvalidStateError,
        ("schedule called twice without complete_step",),
    ),
    (
        "complete_step without schedule",
        lambda: Scheduler().complete_step(),
        InvalidStateError,
        ("complete_step called without a pending schedule",),
    ),
    (
        "abort while a step is pending",
        lambda: started(Scheduler()).abort_request(1),
        InvalidStateError,
        ("abort_request between schedule and complete_step",),
    ),
    # ------------------------------------------------------------------------------------------- simulate
    ("rate=0", lambda: simulate(small_workload(), rate=0.0), InvalidConfigError, ("rate", "> 0")),
    ("rate<0", lambda: simulate(small_workload(), rate=-2.0), InvalidConfigError, ("rate", "-2")),
    ("rate=NaN", lambda: simulate(small_workload(), rate=nan()), InvalidConfigError, ("rate must be finite", "nan")),
    ("rate=inf", lambda: simulate(small_workload(), rate=math.inf), InvalidConfigError, ("rate must be finite",)),
    ("kv_capacity=0", lambda: simulate(small_workload(), kv_capacity=0), InvalidConfigError, ("kv_capacity", "0")),
    ("kv_capacity<0", lambda: simulate(small_workload(), kv_capacity=-16), InvalidConfigError, ("kv_capacity",)),
    (
        "kv_capacity float",
        lambda: simulate(small_workload(), kv_capacity=1e5),  # type: ignore[arg-type]
        InvalidConfigError,
        ("kv_capacity must be a positive integer",),
    ),
    (
        "kv_capacity below one block",
        lambda: simulate(small_workload(), kv_capacity=8, block_size=16),
        InvalidConfigError,
        ("kv_capacity 8 holds no block of 16 tokens",),
    ),
    ("block_size=0", lambda: simulate(small_workload(), block_size=0), InvalidConfigError, ("block_size",)),
    (
        "capacity smaller than one request",
        lambda: simulate(small_workload(), kv_capacity=16, block_size=1),
        InvalidRequestError,
        ("invalid request 0", "needs 20 tokens", "prompt 10 + output 10", "16 usable tokens", "kv_capacity"),
    ),
    (
        "huge lengths",
        lambda: simulate(Workload.from_types([(2**31, 2**31, 1.0)], 3)),
        InvalidRequestError,
        ("needs 4294967296 tokens",),
    ),
    ("max_num_seqs=0", lambda: simulate(small_workload(), max_num_seqs=0), InvalidConfigError, ("max_num_seqs",)),
    ("unknown policy (simulate)", lambda: simulate(small_workload(), "fifo"), InvalidConfigError, ('"fifo"',)),
    (
        "linear time model without d0/d1",
        lambda: simulate(small_workload(), time_model="linear"),
        InvalidConfigError,
        ("linear", "d0", "d1"),
    ),
    (
        "linear time model without d1",
        lambda: simulate(small_workload(), time_model="linear", d0=0.01),
        InvalidConfigError,
        ("needs d1",),
    ),
    (
        "d0=NaN",
        lambda: simulate(small_workload(), time_model="linear", d0=nan(), d1=0.0),
        InvalidConfigError,
        ("d0 must be finite",),
    ),
    (
        "d0<0",
        lambda: simulate(small_workload(), time_model="linear", d0=-1.0, d1=0.0),
        InvalidConfigError,
        ("d0 must be a finite number >= 0",),
    ),
    (
        "d0=d1=0",
        lambda: simulate(small_workload(), time_model="linear", d0=0.0, d1=0.0),
        InvalidConfigError,
        ("d0 and d1 cannot both be 0",),
    ),
    (
        "d0 with the profiled model",
        lambda: simulate(small_workload(), d0=0.01),
        InvalidConfigError,
        ("llama2-7b-a100", "takes no d0/d1"),
    ),
    (
        "unknown time model",
        lambda: simulate(small_workload(), time_model="gpt-9"),
        InvalidConfigError,
        ("unknown time model", "gpt-9", "linear", "llama2-7b-a100"),
    ),
    (
        "length_error=1",
        lambda: simulate(small_workload(), length_error=1.0),
        InvalidConfigError,
        ("length_error must be < 1",),
    ),
    (
        "length_error<0",
        lambda: simulate(small_workload(), length_error=-0.1),
        InvalidConfigError,
        ("length_error", ">= 0"),
    ),
    (
        "length_error=NaN",
        lambda: simulate(small_workload(), length_error=nan()),
        InvalidConfigError,
        ("length_error must be finite",),
    ),
    # ------------------------------------------------------------------------------------------- workloads
    (
        "type with prompt 0",
        lambda: Workload.from_types([(0, 5, 1.0)], 3),
        InvalidConfigError,
        ("request type 0 has prompt_len 0",),
    ),
    (
        "type with output 0",
        lambda: Workload.from_types([(5, 5, 1.0), (5, 0, 1.0)], 3),
        InvalidConfigError,
        ("request type 1", "output_len 0"),
    ),
    ("type rate=0", lambda: Workload.from_types([(5, 5, 0.0)], 3), InvalidConfigError, ("rate of request type 0",)),
    ("type rate=NaN", lambda: Workload.from_types([(5, 5, nan())], 3), InvalidConfigError, ("rate", "NaN")),
    ("type rate=inf", lambda: Workload.from_types([(5, 5, math.inf)], 3), InvalidConfigError, ("rate", "inf")),
    ("type rate<0", lambda: Workload.from_types([(5, 5, -1.0)], 3), InvalidConfigError, ("rate", "-1")),
    (
        "total rate overflows",
        lambda: Workload.from_types([(5, 5, 1e308), (5, 5, 1e308)], 3),
        InvalidConfigError,
        ("total arrival rate",),
    ),
    ("no types", lambda: Workload.from_types([], 3), InvalidConfigError, ("at least one request type",)),
    (
        "num_requests=0",
        lambda: Workload.from_types([(5, 5, 1.0)], 0),
        InvalidConfigError,
        ("num_requests must be >= 1",),
    ),
    (
        "ragged columns",
        lambda: Workload.from_requests([0.0, 1.0], [1], [1, 1]),
        InvalidTraceError,
        ("must have the same length",),
    ),
    (
        "unsorted arrivals",
        lambda: Workload.from_requests([1.0, 0.5], [1, 1], [1, 1]),
        InvalidTraceError,
        ("request index 1", "not sorted"),
    ),
    (
        "NaN arrival",
        lambda: Workload.from_requests([0.0, nan()], [1, 1], [1, 1]),
        InvalidRequestError,
        ("request 1", "arrival time NaN"),
    ),
    (
        "negative arrival",
        lambda: Workload.from_requests([-1.0], [1], [1]),
        InvalidRequestError,
        ("arrival time -1",),
    ),
    ("zero prompt", lambda: Workload.from_requests([0.0], [0], [1]), InvalidRequestError, ("prompt_len is 0",)),
    ("zero output", lambda: Workload.from_requests([0.0], [1], [0]), InvalidRequestError, ("output_len is 0",)),
    (
        "rescale one request",
        lambda: Workload.from_requests([0.0], [1], [1]).rescaled_to_rate(2.0),
        InvalidConfigError,
        ("at least 2 are needed",),
    ),
    (
        "rescale simultaneous arrivals",
        lambda: Workload.from_requests([1.0, 1.0], [1, 1], [1, 1]).rescaled_to_rate(2.0),
        InvalidConfigError,
        ("same time",),
    ),
    ("rescale to NaN", lambda: small_workload().rescaled_to_rate(nan()), InvalidConfigError, ("rate", "NaN")),
    ("truncate to 0", lambda: small_workload().truncated(0), InvalidConfigError, ("n must be >= 1",)),
]


@pytest.mark.parametrize(("call", "cls", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(call: Call, cls: type[FluidschedError], fragments: tuple[str, ...]) -> None:
    check_raises(call, cls, *fragments)


def test_error_classes_derive_from_the_matching_builtins() -> None:
    for cls, builtin in (
        (InvalidConfigError, ValueError),
        (InvalidRequestError, ValueError),
        (InvalidTraceError, ValueError),
        (DuplicateRequestError, ValueError),
        (UnknownRequestError, KeyError),
        (InvalidStateError, RuntimeError),
        (fluidsched.StalledError, RuntimeError),
        (InternalError, RuntimeError),
    ):
        assert issubclass(cls, FluidschedError)
        assert issubclass(cls, builtin)
    # KeyError quotes its argument; UnknownRequestError keeps the message plain.
    error = check_raises(lambda: Scheduler().abort_request(5), UnknownRequestError)
    assert str(error) == "unknown request id 5"


def test_failed_calls_change_nothing() -> None:
    s = Scheduler(num_blocks=8, block_size=2, watermark=0.0)
    s.add_request(1, 3, 2)
    s.schedule()
    # An unknown id in `finished` is rejected before anything is applied: the step stays pending.
    check_raises(lambda: s.complete_step(finished=[1, 42]), UnknownRequestError, "42")
    check_raises(lambda: s.abort_request(1), InvalidStateError)
    assert s.get_request(1)["num_computed_tokens"] == 0
    assert s.complete_step().emitted == ((1, 1),)
    check_raises(lambda: s.add_request(1, 2), DuplicateRequestError, "duplicate request id 1")
    check_raises(lambda: s.add_request(2, 17), InvalidRequestError, "request 2")
    assert (s.num_waiting, s.num_running, s.num_used_blocks) == (0, 1, 2)
    check_raises(lambda: s.get_request(2), UnknownRequestError)
    s.check_invariants()


# -------------------------------------------------------------------------------------------- policy options


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_unknown_option_names_the_accepted_ones(policy: str) -> None:
    error = check_raises(
        lambda: simulate(small_workload(), policy, policy_options={"no_such_option": 1}),
        InvalidConfigError,
        f'policy "{policy}" has no option "no_such_option"',
    )
    accepted = POLICY_OPTIONS[policy]
    for option in accepted:
        assert option in str(error)
    if not accepted:
        assert "(none)" in str(error)


OPTIONS = [(policy, option) for policy, options in POLICY_OPTIONS.items() for option in options]


@pytest.mark.parametrize(("policy", "option"), OPTIONS, ids=[f"{p}-{o}" for p, o in OPTIONS])
def test_option_of_the_wrong_type(policy: str, option: str) -> None:
    # No option takes this word: numbers, flags, lists and enumerations all reject it, naming the option.
    check_raises(
        lambda: simulate(small_workload(), policy, policy_options={option: "not-a-valid-value"}),
        InvalidConfigError,
        f'policy "{policy}": option {option} must be',
        "not-a-valid-value",
    )


# --------------------------------------------------------------------------------------------- trace files

AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
VIDUR = "arrived_at,num_prefill_tokens,num_decode_tokens\n"

TRACES: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "missing column",
        "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.6805900,374\n",
        ('missing required column "GeneratedTokens"', "line 1"),
    ),
    (
        "text in a numeric column",
        AZURE + "2023-11-16 18:15:46.68,abc,44\n",
        ('not a number: found "abc"', 'line 2, column "ContextTokens"'),
    ),
    ("empty file", "", ("the trace is empty",)),
    ("blank file", "\n\n  \n", ("the trace is empty",)),
    ("header only", AZURE, ("has a header but no data rows",)),
    (
        "unsorted timestamps",
        VIDUR + "0.0,10,10\n2.0,10,10\n1.0,10,10\n",
        ("line 4", "timestamps go backwards", "sorted"),
    ),
    (
        "unsorted Azure timestamps",
        AZURE + "2023-11-16 18:15:47,1,1\n2023-11-16 18:15:46,1,1\n",
        ("line 3", "timestamps go backwards"),
    ),
    (
        "negative length",
        VIDUR + "0.0,10,10\n1.0,-10,10\n",
        ('negative value: found "-10"', 'line 3, column "num_prefill_tokens"'),
    ),
    ("negative arrival", VIDUR + "-1.0,10,10\n", ('negative value: found "-1.0"', "arrival times must be >= 0")),
    ("NaN length", VIDUR + "0.0,nan,10\n", ('not a finite number: found "nan"',)),
    ("fractional length", VIDUR + "0.0,1.5,10\n", ('fractional token count: found "1.5"',)),
    ("huge length", VIDUR + "0.0,99999999999,10\n", ('value too large: found "99999999999"', "4294967295")),
    (
        "unrecognised header",
        "hello,world\n1,2\n",
        ("unrecognised header", "hello, world", "TIMESTAMP,ContextTokens,GeneratedTokens"),
    ),
    ("short row", VIDUR + "0.0,10\n", ("line 2", "wrong number of fields: expected 3")),
    ("blank line between rows", VIDUR + "0.0,1,1\n\n1.0,1,1\n", ("line 3", "blank line between rows")),
    (
        "duplicate column",
        "arrived_at,num_prefill_tokens,num_decode_tokens,arrived_at\n0,1,1,0\n",
        ('column "arrived_at" appears twice',),
    ),
    ("bad timestamp", AZURE + "2023-13-16 18:15:46,1,1\n", ("unparseable timestamp", "month 13")),
    ("empty cell", VIDUR + "0.0,,10\n", ("empty value",)),
]


@pytest.mark.parametrize(("text", "fragments"), [t[1:] for t in TRACES], ids=[t[0] for t in TRACES])
def test_malformed_trace(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    # Errors name the file, both through the workload reader and through simulate().
    check_raises(lambda: Workload.from_trace(path), InvalidTraceError, str(path), *fragments)
    check_raises(lambda: simulate(path, "vllm", rate=1.0), InvalidTraceError, str(path), *fragments)


def test_length_only_trace_needs_a_rate(tmp_path: Path, lmsys_trace: Path) -> None:
    path = tmp_path / "lengths.csv"
    path.write_text("num_prefill_tokens,num_decode_tokens\n10,10\n20,5\n")
    for trace in (path, lmsys_trace):

        def run(trace: Path = trace) -> object:
            return simulate(trace)

        check_raises(run, InvalidConfigError, str(trace), "no arrival times", "rate=")
    assert len(Workload.from_trace(path, rate=1.0)) == 2


def test_unreadable_traces(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    check_raises(lambda: simulate(missing), InvalidTraceError, "cannot read", str(missing))
    check_raises(lambda: fluidsched.load_workload(missing), InvalidTraceError, "cannot read", str(missing))
    check_raises(lambda: Workload.from_trace(tmp_path), InvalidTraceError, "cannot read", str(tmp_path))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    check_raises(lambda: Workload.from_trace(binary), InvalidTraceError, "cannot read", "UTF-8")


def test_bad_trace_reading_options(lmsys_trace: Path) -> None:
    check_raises(
        lambda: Workload.from_trace(lmsys_trace, rate=1.0, words_to_tokens=0.0), InvalidConfigError, "words_to_tokens"
    )
    check_raises(
        lambda: Workload.from_trace(lmsys_trace, rate=1.0, words_to_tokens=nan()), InvalidConfigError, "words_to_tokens"
    )
    check_raises(lambda: Workload.from_trace(lmsys_trace, rate=1.0, arrival="weibull"), InvalidConfigError, '"weibull"')
    check_raises(lambda: Workload.from_trace(lmsys_trace, rate=1.0, arrival="gamma", cv=0.0), InvalidConfigError, "cv")
    check_raises(lambda: simulate(lmsys_trace, rate=1.0, num_requests=0), InvalidConfigError, "num_requests")


def test_bundled_trace_names() -> None:
    with pytest.raises(ValueError, match="unknown bundled trace 'nope'"):
        fluidsched.bundled_trace("nope")


# --------------------------------------------------------------------------------------------- no panics

ADVERSARIAL_U32 = [0, 1, 2, 3, 2**15, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]


@given(
    policy=st.sampled_from(POLICY_NAMES),
    block_size=st.sampled_from(ADVERSARIAL_U32),
    num_blocks=st.sampled_from([0, 1, 2, 3, 64, 2**16, 2**26 + 1, 2**32 - 1]),
    max_num_seqs=st.sampled_from(ADVERSARIAL_U32),
    max_num_batched_tokens=st.sampled_from(ADVERSARIAL_U32),
    watermark=st.sampled_from([0.0, 0.01, 0.5, 0.999999, 1.0, -0.0, math.nan]),
    requests=st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2**63, 2**64 - 1]),
            st.sampled_from(ADVERSARIAL_U32),
            st.one_of(st.none(), st.sampled_from(ADVERSARIAL_U32)),
        ),
        max_size=4,
    ),
    steps=st.integers(0, 3),
)
def test_adversarial_step_api_inputs_never_panic(
    policy: str,
    block_size: int,
    num_blocks: int,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    watermark: float,
    requests: list[tuple[int, int, int | None]],
    steps: int,
) -> None:
    """Extreme but representable values either work or raise a FluidschedError; never a panic or InternalError."""

    def attempt(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except InternalError as e:
            pytest.fail(f"InternalError (a caught Rust panic): {e}")
        except FluidschedError:
            return None
        except BaseException as e:  # pyo3_runtime.PanicException derives from BaseException
            pytest.fail(f"{type(e).__module__}.{type(e).__name__}: {e}")

    s = attempt(
        Scheduler,
        policy,
        num_blocks=num_blocks,
        block_size=block_size,
        watermark=watermark,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        d0=0.01,
        d1=1e-4,
        types=[(100, 100, 1.0)],
        arrival_rate=1.0,
    )
    if s is None:
        return
    for rid, prompt_len, output_len in requests:
        attempt(s.add_request, rid, prompt_len, output_len, output_len_hint=output_len, type_id=0)
    for _ in range(steps):
        step = attempt(s.schedule, now=1.0)
        attempt(s.complete_step)
        if step is not None:
            assert step.num_batched_tokens == sum(n for _, n, _ in step.scheduled)
        s.check_invariants()


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_extreme_lengths_simulate_or_fail_cleanly(policy: str) -> None:
    # 2**30-token prompts in a 2**31-token cache with an unbounded budget: runs, no overflow.
    workload = Workload.from_types([(2**30, 1, 1.0), (1, 2**10, 1.0)], 3, seed=1)
    result = simulate(
        workload,
        policy,
        kv_capacity=2**20 * 2**11,
        block_size=2**11,
        max_num_batched_tokens=2**31,
        time_model="linear",
        d0=1e-3,
        d1=1e-9,
    )
    assert result.summary()["num_finished"] == 3


# ---------------------------------------------------------------------------- out-of-range and extreme values


def started_scheduler() -> Scheduler:
    return started(Scheduler())


# (id, call, the argument the error note names)
RANGE_CASES: list[tuple[str, Call, str]] = [
    ("negative prompt_len", lambda: Scheduler().add_request(1, -5), "prompt_len"),
    ("negative output_len", lambda: Scheduler().add_request(1, 5, -1), "output_len"),
    ("negative output_len_hint", lambda: Scheduler().add_request(1, 5, output_len_hint=-1), "output_len_hint"),
    ("negative type_id", lambda: Scheduler().add_request(1, 5, type_id=-1), "type_id"),
    ("prompt_len=2**32", lambda: Scheduler().add_request(1, 2**32), "prompt_len"),
    ("negative id", lambda: Scheduler().add_request(-1, 5), "request_id"),
    ("id=2**64", lambda: Scheduler().add_request(2**64, 5), "request_id"),
    ("abort negative id", lambda: Scheduler().abort_request(-1), "request_id"),
    ("finished=[negative id]", lambda: started_scheduler().complete_step(finished=[-1]), "finished"),
    ("num_blocks=2**32", lambda: Scheduler(num_blocks=2**32), "num_blocks"),
    ("negative max_num_seqs", lambda: Scheduler(max_num_seqs=-1), "max_num_seqs"),
    ("negative type length", lambda: Workload.from_types([(-5, 10, 1.0)], 3), "types"),
    ("negative num_requests", lambda: Workload.from_types([(5, 10, 1.0)], -3), "num_requests"),
    ("negative length", lambda: Workload.from_requests([0.0], [-1], [1]), "prompt_len"),
    ("truncate to -1", lambda: small_workload().truncated(-1), "n"),
    ("negative seed", lambda: simulate(small_workload(), seed=-1), "seed"),
    ("max_num_seqs=2**33", lambda: simulate(small_workload(), max_num_seqs=2**33), "max_num_seqs"),
]


@pytest.mark.parametrize(("call", "argument"), [c[1:] for c in RANGE_CASES], ids=[c[0] for c in RANGE_CASES])
def test_integers_out_of_range(call: Call, argument: str) -> None:
    error = check_raises(call, InvalidConfigError, "expected an integer from 0 to")
    # The message names the argument (PyO3's "while processing" note is folded into it).
    assert error.argument == argument
    assert str(error).startswith(f"{argument}: expected an integer from 0 to")


def test_get_request_with_a_negative_id() -> None:
    # Every other call taking a request id raises InvalidConfigError (see test_integers_out_of_range).
    error = check_raises(lambda: Scheduler().get_request(-1), InvalidConfigError, "expected an integer from 0 to")
    assert str(error).startswith("request_id: ")


def test_huge_kv_capacity() -> None:
    check_raises(lambda: simulate(small_workload(), kv_capacity=2**40), InvalidConfigError, "kv_capacity", "too large")


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda: simulate(small_workload(), rate=1e-320), ("target rate", "too small")),
        (lambda: small_workload().rescaled_to_rate(1e-320), ("target rate", "too small")),
        (lambda: Workload.from_types([(1, 1, 5e-324)], 5), ("arrival rate", "too small")),
    ],
    ids=["simulate", "rescaled_to_rate", "from_types"],
)
def test_rate_so_small_that_arrivals_overflow(call: Call, fragments: tuple[str, ...]) -> None:
    # A finite, positive rate whose arrival times would overflow to infinity is refused where it is given.
    check_raises(call, InvalidConfigError, *fragments)


@pytest.mark.parametrize(
    ("option", "value"),
    [("headroom", {"a": 1}), ("thresholds", [1, "two"]), ("max_wait", None)],
    ids=["dict", "list with a word", "None"],
)
def test_option_of_an_unsupported_python_type(option: str, value: object) -> None:
    check_raises(
        lambda: simulate(small_workload(), "wait", policy_options={option: value}),  # type: ignore[dict-item]
        InvalidConfigError,
        f'policy option "{option}"',
    )


def peak_rss_kib_to_reject_a_huge_request(policy: str) -> int:
    """Peak RSS of a fresh interpreter that simulates one request of 2**25 output tokens (which cannot fit the
    default cache) under ``policy`` and gets InvalidRequestError."""
    code = (
        "import resource, fluidsched\n"
        "w = fluidsched.Workload.from_types([(1, 2**25, 1.0)], 2)\n"
        "try:\n"
        f"    fluidsched.simulate(w, {policy!r})\n"
        "except fluidsched.InvalidRequestError:\n"
        "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True, text=True)
    return int(out.stdout)


def test_oversized_request_is_rejected_before_any_policy_allocates_for_it() -> None:
    # Regression: nested-wait built its output-length table (one f64 per token up to the longest output) before
    # the simulator checked that requests fit: 2**25 tokens cost ~256 MiB, a 4e9-token trace row aborted.
    baseline = peak_rss_kib_to_reject_a_huge_request("vllm")
    for policy in POLICY_NAMES:
        peak = peak_rss_kib_to_reject_a_huge_request(policy)
        assert peak - baseline < 64 * 1024, f"{policy}: {(peak - baseline) / 1024:.0f} MiB more than vllm"


def peak_rss_kib_of(code: str) -> int:
    script = f"import resource, fluidsched\n{code}\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    out = subprocess.run([sys.executable, "-c", script], check=True, timeout=120, capture_output=True, text=True)
    return int(out.stdout.splitlines()[-1])


def test_plan_refuses_an_output_longer_than_the_cache_without_sizing_tables_by_it() -> None:
    # Regression: plan() used to build Nested WAIT's survival table (one f64 per output token) before checking the
    # length: ~256 MiB for 2**25 tokens, ~16 GiB for 2**31. Now the length is refused first, in a fresh process whose
    # peak memory stays flat.
    plan = "fluidsched.plan(types=[(100, {}, 1.0)], time_model='linear', d0=0.005, d1=1e-4)"
    check_raises(
        lambda: fluidsched.plan(types=[(100, 2**25, 1.0)], time_model="linear", d0=0.005, d1=1e-4),
        InvalidConfigError,
        "output length",
        str(2**25),
    )
    small = peak_rss_kib_of(plan.format(2**10))
    large = peak_rss_kib_of("try:\n    " + plan.format(2**31) + "\nexcept fluidsched.InvalidConfigError:\n    pass")
    assert large - small < 64 * 1024, f"{(large - small) / 1024:.0f} MiB more for a longer output"
