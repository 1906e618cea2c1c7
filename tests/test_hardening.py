"""Issue 11, hardening round two: inputs that aborted the process, silently wrong results, unnamed errors, Ctrl-C.

The cases that used to abort (or allocate tens of GB) run in a child process under an address-space limit, so a
regression fails its test instead of taking the suite (or the machine) down.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fluidsched
from fluidsched import (
    FluidschedError,
    InvalidArgumentTypeError,
    InvalidConfigError,
    InvalidRequestError,
    InvalidTraceError,
    Workload,
    simulate,
)
from fluidsched.cli import main

#: Address-space limit of the child processes: far below what the old code tried to allocate (16 GB and up).
MEMORY_LIMIT = 2 << 30
FLUIDSCHED = [sys.executable, "-c", "import sys; from fluidsched.cli import main; sys.exit(main())"]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs `args` in a child with at most MEMORY_LIMIT bytes of address space."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory, check=False)


def run_python_limited(code: str) -> subprocess.CompletedProcess[str]:
    return run_limited([sys.executable, "-c", textwrap.dedent(code)])


# --- Must never abort the process or allocate in proportion to a value -------------------------------------------


@pytest.mark.parametrize("n", [2**32, 2**40, 2**63 - 1])
def test_huge_request_count_is_a_named_error(n: int) -> None:
    proc = run_python_limited(
        f"""
        import fluidsched
        try:
            fluidsched.Workload.from_types([(128, 256, 4.0)], {n})
        except fluidsched.InvalidConfigError as e:
            print("OK", e)
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("OK"), proc.stdout
    assert "num_requests" in proc.stdout, proc.stdout
    assert "panicked" not in proc.stderr
    assert "capacity overflow" not in proc.stdout


def test_huge_num_requests_on_the_cli_is_one_line() -> None:
    proc = run_limited([*FLUIDSCHED, "simulate", "--type", "10:10:1", "--num-requests", "4294967296", "-q"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "num_requests" in proc.stderr, proc.stderr


@pytest.mark.parametrize("policy", ["vllm", "wait", "nested-wait", "mc-sf"])
def test_huge_type_id_does_not_size_tables(policy: str) -> None:
    proc = run_python_limited(
        f"""
        import fluidsched
        wl = fluidsched.Workload.from_requests(
            [0.0, 1.0, 2.0, 3.0], [10, 20, 10, 20], [5, 6, 5, 6], type_id=[2**32 - 1, 7, 2**32 - 1, 7]
        )
        r = fluidsched.simulate(wl, {policy!r}, time_model="linear", d0=0.005, d1=1e-4, kv_capacity=10_000)
        print("OK", r.summary()["num_finished"])
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["OK", "4"], proc.stdout


def test_one_based_and_sparse_type_ids_plan_with_their_own_rates() -> None:
    wl = Workload.from_requests([0.0, 0.5, 1.0, 1.5], [10, 20, 10, 20], [5, 6, 5, 6], type_id=[1, 3, 1, 3])
    r = simulate(wl, "wait", time_model="linear", d0=0.005, d1=1e-4, kv_capacity=10_000)
    assert r.summary()["num_finished"] == 4


def test_nested_wait_plan_with_one_very_long_output() -> None:
    proc = run_limited(
        [*FLUIDSCHED, "plan", "--type", "1:2000000000:1", "--block-size", "65536", "--kv-capacity", "4294967296"],
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Nested WAIT thresholds" in proc.stdout


# --- Must not be silently wrong ----------------------------------------------------------------------------------


@pytest.mark.parametrize("start", [1e12, 1.7e15])
def test_absolute_vidur_timestamps_are_shifted_with_a_warning(tmp_path: Path, start: float) -> None:
    path = tmp_path / "vidur.csv"
    rows = "".join(f"{start + 2 * i:.1f},100,50\n" for i in range(20))
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + rows)
    wl = Workload.from_trace(path)
    assert wl.arrival[0] == 0.0
    assert wl.arrival[-1] == pytest.approx(38.0)
    assert any("shifted" in w for w in wl.warnings), wl.warnings
    s = simulate(wl, "vllm").summary()
    assert s["latency_mean_s"] > 0
    assert s["ttft_mean_s"] > 0
    assert s["throughput_tokens_per_s"] > 0


def test_empty_workloads_are_rejected_like_empty_traces(tmp_path: Path) -> None:
    with pytest.raises(InvalidTraceError, match="no requests"):
        Workload.from_requests([], [], [])
    with pytest.raises(InvalidTraceError, match="no requests"):
        Workload.from_requests(np.array([]), np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InvalidTraceError):
        Workload.from_trace(empty)


# --- Must give a clear, named error ------------------------------------------------------------------------------


def test_numpy_integers_are_accepted_wherever_ints_are() -> None:
    wl = Workload.from_requests(
        np.array([0.0, 1.0, 2.0]), np.array([10, 20, 30]), np.array([5, 6, 7], dtype=np.uint32), type_id=np.arange(3)
    )
    assert wl.prompt_len == [10, 20, 30]
    assert wl.type_id == [0, 1, 2]
    assert (
        len(Workload.from_types([(np.int64(10), np.int32(20), np.float64(1.0))], np.int64(50), seed=np.uint8(3))) == 50
    )
    r = simulate(
        wl, "vllm", seed=np.int64(2), max_num_seqs=np.int16(4), policy_options={"watermark": 0.01} if False else None
    )
    assert r.summary()["num_finished"] == 3
    s = fluidsched.Scheduler("vllm", num_blocks=np.int64(100), block_size=np.int32(16))
    s.add_request(np.uint64(1), prompt_len=np.int32(5), output_len=np.int64(2))
    assert s.schedule().scheduled == ((1, 5, True),)
    s2 = fluidsched.Scheduler("sarathi", policy_options={"token_budget": np.int64(256)})
    assert s2.policy == "sarathi"


@pytest.mark.parametrize("bad", [[1.5, 2.0], [True, 2], [None, 1], ["3", 1], [np.float64(3.0), 1]])
def test_non_integer_lengths_raise_a_fluidsched_error(bad: list[object]) -> None:
    with pytest.raises(InvalidArgumentTypeError, match=r"^prompt_len: expected an int") as info:
        Workload.from_requests([0.0, 1.0], bad, [1, 1])  # type: ignore[arg-type]
    assert info.value.argument == "prompt_len"
    assert not getattr(info.value, "__notes__", [])  # folded into the message, not repeated as a note
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, InvalidConfigError)


def test_policy_none_is_a_named_error() -> None:
    wl = Workload.from_requests([0.0], [10], [5])
    with pytest.raises(InvalidConfigError, match="policy"):
        simulate(wl, None)  # type: ignore[arg-type]


def test_out_is_checked_before_simulating(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["simulate", "--type", "10:10:1", "--num-requests", "20", "-q"]
    for out, why in [(tmp_path / "missing" / "r.csv", "does not exist"), (tmp_path, "is a directory")]:
        start = time.perf_counter()
        assert main([*base, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert why in err, err
        assert "--out" in err, err
        assert time.perf_counter() - start < 5


def test_json_into_a_closed_pipe_is_one_line() -> None:
    cmd = " ".join(FLUIDSCHED[:2]) + ' "' + FLUIDSCHED[2] + '"'
    proc = subprocess.run(
        f"{cmd} plan --type 10:10:1 --json | head -c 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") <= 1, proc.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_on_stdout_is_one_line() -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [*FLUIDSCHED, "plan", "--type", "10:10:1", "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "No space left" in proc.stderr


@pytest.mark.parametrize("policy", ["wait", "nested-wait"])
@pytest.mark.parametrize("arrivals", [[0.0], [0.0, 0.0, 0.0, 0.0]])
def test_wait_runs_a_single_request_or_a_batch(policy: str, arrivals: list[float]) -> None:
    n = len(arrivals)
    wl = Workload.from_requests(arrivals, [10] * n, [5] * n)
    assert simulate(wl, policy).summary()["num_finished"] == n


def test_trace_errors_quote_a_bounded_excerpt(tmp_path: Path) -> None:
    # Bare CR line ends are line ends (RFC 4180): a CR-only file reads row by row, and a bad row names its line.
    rows = "".join(f"\r{i},10,5" for i in range(20000))
    cr_only = tmp_path / "cr.csv"
    cr_only.write_text("arrived_at,num_prefill_tokens,num_decode_tokens" + rows, newline="")
    assert len(Workload.from_trace(cr_only)) == 20000
    cr_only.write_text("arrived_at,num_prefill_tokens,num_decode_tokens" + rows + "\r20000,x,5", newline="")
    with pytest.raises(InvalidTraceError, match='line 20002, column "num_prefill_tokens"'):
        Workload.from_trace(cr_only)
    header = tmp_path / "header.csv"
    header.write_text("x" * 5_000_000 + ",y\n1,2\n")
    huge_row = tmp_path / "row.csv"
    huge_row.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + "1," * 20000 + "\n")
    for path in (cr_only, header, huge_row):
        with pytest.raises(InvalidTraceError) as info:
            Workload.from_trace(path)
        assert len(str(info.value)) < 2000


def test_oversize_requests_are_counted_and_can_be_dropped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    wl = Workload.from_requests([0.0, 1.0, 2.0, 3.0], [10, 5000, 20, 9000], [5, 5, 5, 5])
    with pytest.raises(InvalidRequestError, match=r"2 of the 4 requests.*drop_oversize"):
        simulate(wl, "vllm", kv_capacity=1000)
    r = simulate(wl, "vllm", kv_capacity=1000, drop_oversize=True)
    assert r.num_dropped == 2
    assert r.summary()["num_rejected"] == 2
    assert r.summary()["num_finished"] == 2
    assert list(r.rejected) == [False, True, False, True]
    trace = tmp_path / "t.csv"
    trace.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,5\n1,5000,5\n2,20,5\n")
    assert main(["simulate", "--trace", str(trace), "--kv-capacity", "1000", "-q"]) == 2
    assert "--drop-oversize" in capsys.readouterr().err
    assert main(["simulate", "--trace", str(trace), "--kv-capacity", "1000", "-q", "--drop-oversize"]) == 0
    assert "dropped 1 request" in capsys.readouterr().err


# --- Ctrl-C and long calls ---------------------------------------------------------------------------------------


def test_run_for_honours_ctrl_c_within_about_a_second() -> None:
    wl = Workload.from_types([(64, 512, 50.0)], 200_000, seed=1)
    sim = fluidsched._core.Simulation(wl, "vllm", num_blocks=4096)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            sim.run_for()
    finally:
        timer.cancel()
    assert time.perf_counter() - start < 2.0
    settled, total = sim.progress()
    assert settled < total
    assert sim.run_for(10) in (False, True)  # still usable after the interrupt


def test_fluidsched_errors_root() -> None:
    assert issubclass(InvalidArgumentTypeError, FluidschedError)


def test_scheduler_nested_wait_plans_from_length_samples() -> None:
    s = fluidsched.Scheduler(
        "nested-wait",
        num_blocks=1000,
        d0=0.005,
        d1=1e-4,
        arrival_rate=2.0,
        output_lengths=[50, 100, 200],
        prompt_lengths=np.array([10, 20, 30]),
    )
    s.add_request(1, prompt_len=10)
    assert s.policy == "nested-wait"


def test_plan_types_must_be_triples() -> None:
    with pytest.raises(fluidsched.InvalidConfigError, match=r"types\[0\] must be \(prompt_len, output_len, rate\)"):
        fluidsched.plan(types=[(128, 256)])  # type: ignore[list-item]
    with pytest.raises(fluidsched.InvalidConfigError, match=r"types\[1\]"):
        fluidsched.plan(types=[(128, 256, 1.0), "128:256:1"])  # type: ignore[list-item]


@pytest.mark.parametrize("policy", ["wait", "nested-wait"])
def test_a_huge_max_wait_still_lets_every_request_run(policy: str) -> None:
    # arrival + max_wait used to overflow to infinity: a deadline that never came, a request that never ran.
    workload = fluidsched.Workload.from_types([(16, 8, 1.0)], 3, seed=1)
    options: dict[str, object] = {"max_wait": 1e308, "credit": False}
    if policy == "wait":
        options["thresholds"] = [5]
    result = fluidsched.simulate(workload, policy, policy_options=options)  # type: ignore[arg-type]
    assert result.summary()["num_finished"] == 3
    assert np.isfinite(result.latency).all()
