"""Type stubs for the Rust extension ``fluidsched._core`` (hand-written; checked by ``mypy.stubtest``)."""

from collections.abc import Sequence
from os import PathLike
from typing import Any, Final, final

import numpy as np
import numpy.typing as npt

#: An integer argument: a Python int or a numpy integer scalar.
_Int = int | np.integer[Any]
#: A sequence of integers: a list or tuple of them, or a numpy integer array.
_Ints = Sequence[_Int] | npt.NDArray[np.integer[Any]]
#: A sequence of floats: a list or tuple, or a numpy array.
_Floats = Sequence[float] | npt.NDArray[np.floating[Any]] | npt.NDArray[np.integer[Any]]

__all__ = [
    "MAX_NUM_BLOCKS",
    "POLICY_NAMES",
    "POLICY_OPTIONS",
    "PRESET_NAMES",
    "AdmissionController",
    "FluidModel",
    "Scheduler",
    "Simulation",
    "Step",
    "StepOutcome",
    "Workload",
    "__version__",
    "plan",
    "preset_info",
]

__version__: Final[str]
MAX_NUM_BLOCKS: Final[int]
POLICY_NAMES: Final[list[str]]
POLICY_OPTIONS: Final[dict[str, list[str]]]
PRESET_NAMES: Final[list[str]]

def preset_info(time_model: str) -> dict[str, Any]:
    """The checked preset ``time_model`` (a shipped preset's name or a preset file's path) as the numbers the
    simulator uses: ``name``, ``num_layers``, ``overhead_ms``, ``token_step``, ``num_table_points``,
    ``decode_attention_ms``, ``prefill_attention_ms``, ``block_size``, ``num_blocks``, ``kv_capacity_tokens``,
    ``linearization`` (``(d0, d1)``) and ``attention_linearization`` (``(d0, d1, d2)``)."""

@final
class FluidModel:
    """The paper's fluid model: types ``(prompt_len, output_len, rate)``, iteration time ``d0 + d1 * tokens``,
    KV capacity in tokens."""

    def __new__(
        cls, types: Sequence[tuple[int, int, float]], d0: float, d1: float, kv_capacity: float, *, block_size: int = ...
    ) -> FluidModel: ...
    def solve(self) -> dict[str, Any]:
        """The equilibrium (rho, stable, T*, stage mass, N*, M*, feasibility, throughput, memory-limited optimum)."""
    def max_rate(self) -> float:
        """Largest total arrival rate (same mix) that is stable and memory-feasible, requests per second."""

def plan(
    *,
    types: Sequence[tuple[int, int, float]] | None = None,
    workload: Workload | None = None,
    time_model: str = "llama2-7b-a100",
    d0: float | None = None,
    d1: float | None = None,
    num_blocks: int | None = None,
    block_size: int = ...,
    watermark: float = 0.01,
    max_num_seqs: int = ...,
    max_num_batched_tokens: int = ...,
    wait_options: dict[str, bool | int | float | str | Sequence[float]] | None = None,
    nested_options: dict[str, bool | int | float | str | Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Fluid analysis plus the WAIT / Nested WAIT thresholds, for explicit types or a workload."""

@final
class Step:
    """One iteration's batch (returned by ``Scheduler.schedule``).

    Every attribute is built on first access and the same object is returned on every later access: the
    per-request views are tuples, and ``request_ids``, ``num_tokens`` and ``is_prefill`` are read-only numpy
    arrays (``flags.writeable`` is False and cannot be set) aligned with ``scheduled``, for readers that take the
    whole batch at once (``np.asarray``, ``torch.from_numpy`` on a copy, ``.tolist()``).
    """

    @property
    def scheduled(self) -> tuple[tuple[int, int, bool], ...]:
        """``(request_id, num_tokens, is_prefill)`` for every request computed this step."""
    @property
    def preempted(self) -> tuple[int, ...]:
        """Ids preempted (KV freed, back to recompute) while building the step."""
    @property
    def admitted(self) -> tuple[int, ...]:
        """Ids admitted from the waiting queue in this step."""
    @property
    def request_ids(self) -> npt.NDArray[np.uint64]:
        """The scheduled requests' ids, in ``scheduled`` order (read-only)."""
    @property
    def num_tokens(self) -> npt.NDArray[np.uint32]:
        """Tokens computed per scheduled request, in ``scheduled`` order (read-only)."""
    @property
    def is_prefill(self) -> npt.NDArray[np.bool_]:
        """Whether each scheduled request is in its prefill, in ``scheduled`` order (read-only)."""
    @property
    def num_batched_tokens(self) -> int:
        """Tokens in the step."""
    @property
    def num_prefill_tokens(self) -> int:
        """Prefill tokens in the step."""
    @property
    def num_decode_seqs(self) -> int:
        """Requests decoding one token."""
    @property
    def now(self) -> float:
        """Time the step was scheduled at."""
    def __len__(self) -> int: ...

@final
class StepOutcome:
    """What ``complete_step`` did.

    As for :class:`Step`: built on first access, then the same object on every access; tuples, and read-only
    numpy arrays ``request_ids`` and ``num_output_tokens`` aligned with ``emitted``.
    """

    @property
    def emitted(self) -> tuple[tuple[int, int], ...]:
        """``(request_id, num_output_tokens)`` for each request that emitted a token."""
    @property
    def finished(self) -> tuple[int, ...]:
        """Ids that finished (their blocks are free)."""
    @property
    def request_ids(self) -> npt.NDArray[np.uint64]:
        """Ids of the requests that emitted a token, in ``emitted`` order (read-only)."""
    @property
    def num_output_tokens(self) -> npt.NDArray[np.uint32]:
        """Each emitting request's output tokens after this step, in ``emitted`` order (read-only)."""

@final
class AdmissionController:
    """A policy's admission decision for an engine that owns its memory (the vLLM adapter).

    Keyed by the engine's request ids (ints), updated incrementally (``add_request``, ``on_admitted``,
    ``requeue``, ``on_outputs``, ``finish``) and asked once per step (``decide``). Policies: ``vllm`` (admit all:
    the engine's own rule), ``wait``, ``nested-wait``. The thresholds are planned exactly as a simulation plans
    them, from the engine's limits (``num_blocks``, ``block_size``, ``max_num_seqs``, ...), the request types or
    length samples, and the time model (a preset name or file path, or ``"linear"`` with ``d0``/``d1``).
    """

    def __new__(
        cls,
        policy: str = "wait",
        *,
        num_blocks: int,
        block_size: int = ...,
        watermark: float = 0.0,
        max_num_seqs: int = ...,
        max_num_batched_tokens: int = ...,
        policy_options: dict[str, bool | int | float | str | Sequence[float]] | None = None,
        time_model: str = "llama2-7b-a100",
        d0: float | None = None,
        d1: float | None = None,
        types: Sequence[tuple[int, int, float]] | None = None,
        prompt_lengths: Sequence[int] | None = None,
        output_lengths: Sequence[int] | None = None,
        arrival_rate: float | None = None,
    ) -> AdmissionController: ...
    @property
    def policy(self) -> str:
        """Name of the policy."""
    @property
    def num_waiting(self) -> int:
        """Requests waiting to start."""
    @property
    def num_running(self) -> int:
        """Requests started and not finished (paused ones included)."""
    @property
    def num_paused(self) -> int:
        """Requests paused at a segment boundary (Nested WAIT)."""
    @property
    def thresholds(self) -> list[int]:
        """Per-type (WAIT) or per-segment (Nested WAIT) thresholds in use."""
    @property
    def time_correction(self) -> float:
        """Correction applied to the time model (measured / predicted iteration time; 1.0 until re-planned)."""
    def add_request(
        self,
        request_id: int,
        prompt_len: int,
        *,
        arrival: float,
        output_len_hint: int | None = None,
        type_id: int | None = None,
    ) -> None:
        """A new waiting request (``output_len_hint``: known or predicted output length)."""
    def on_admitted(self, request_id: int, num_output_tokens: int = ...) -> None:
        """The engine started waiting request ``request_id``."""
    def requeue(self, request_id: int) -> None:
        """The engine put ``request_id`` back at the head of its waiting queue (preempted or skipped)."""
    def finish(self, request_id: int) -> bool:
        """``request_id`` finished or was aborted; False if it was not held."""
    def on_outputs(self, request_ids: Sequence[int], num_output_tokens: Sequence[int], now: float) -> list[int]:
        """Output progress of running requests; returns the ids that must pause now (Nested WAIT)."""
    @property
    def wants_outputs(self) -> bool:
        """Whether the policy reads output progress: call ``on_outputs`` every step."""
    def is_paused(self, request_id: int) -> bool:
        """Whether ``request_id`` is paused at a segment boundary."""
    def observe_iteration(self, seconds: float, num_tokens: int) -> bool:
        """One measured iteration; True if the thresholds were re-planned for the corrected time model."""
    def next_wakeup(self, now: float) -> float | None:
        """The earliest future deadline that lets a waiting or paused request in."""
    def decide(
        self,
        *,
        now: float,
        num_running: int,
        num_free_blocks: int,
        max_num_seqs: int,
        stalled: bool = False,
    ) -> tuple[bool, list[int], list[int]]:
        """This step's decision: ``(admit_all, admit_ids, resume_ids)``; ``stalled``: the previous step computed
        nothing (Nested WAIT then resumes its longest-paused request rather than wait for a deadline)."""

@final
class Scheduler:
    """A policy plus KV block bookkeeping, driven once per model iteration.

    Call ``add_request`` any time, then ``schedule(now)`` followed by exactly one ``complete_step()``.
    Defaults (vLLM's names): ``num_blocks=7424``, ``block_size=16`` (Llama-2-7B on an A100-80GB),
    ``watermark=0.01``, ``max_num_seqs=256``, ``max_num_batched_tokens=8192``, chunked prefill on. Integer
    arguments out of range raise ``InvalidConfigError``.
    """

    def __new__(
        cls,
        policy: str = "vllm",
        *,
        num_blocks: int = ...,
        block_size: int = ...,
        watermark: float = 0.01,
        max_num_seqs: int = ...,
        max_num_batched_tokens: int = ...,
        enable_chunked_prefill: bool = True,
        policy_options: dict[str, bool | int | float | str | Sequence[float]] | None = None,
        d0: float = 0.0,
        d1: float = 0.0,
        types: Sequence[tuple[int, int, float]] | None = None,
        output_lengths: _Ints | None = None,
        arrival_rate: float | None = None,
        prompt_lengths: _Ints | None = None,
    ) -> Scheduler:
        """``output_lengths`` and ``prompt_lengths``: length samples Nested WAIT plans with (when no ``types``)."""
    @property
    def policy(self) -> str:
        """Name of the policy."""
    @property
    def needs_output_lengths(self) -> bool:
        """Whether the policy reads output lengths (pass ``output_len_hint`` for it)."""
    def add_request(
        self,
        request_id: int,
        prompt_len: int,
        output_len: int | None = None,
        *,
        output_len_hint: int | None = None,
        type_id: int | None = None,
        arrival: float = 0.0,
    ) -> None:
        """Adds a waiting request. ``output_len`` (if known) finishes it after that many output tokens."""
    def schedule(self, now: float = 0.0) -> Step:
        """Builds the next iteration's batch at time ``now`` (seconds)."""
    def complete_step(self, finished: Sequence[int] = ...) -> StepOutcome:
        """Applies the pending step; ``finished`` lists ids the driver saw stop."""
    def abort_request(self, request_id: int) -> None:
        """Removes a waiting or running request, freeing its blocks."""
    def get_request(self, request_id: int) -> dict[str, int | float | str | None]:
        """The scheduler's view of one request."""
    @property
    def num_waiting(self) -> int: ...
    @property
    def num_running(self) -> int: ...
    @property
    def num_unfinished(self) -> int: ...
    @property
    def num_free_blocks(self) -> int: ...
    @property
    def num_used_blocks(self) -> int: ...
    @property
    def num_blocks(self) -> int: ...
    @property
    def block_size(self) -> int: ...
    @property
    def watermark_blocks(self) -> int: ...
    @property
    def running_ids(self) -> list[int]:
        """Ids of the running requests, oldest admission first."""
    def next_wakeup(self) -> float | None:
        """The policy's next wake-up time, if it has one (a liveness deadline)."""
    def check_invariants(self) -> None:
        """Raises ``InternalError`` if any scheduler invariant is broken."""

@final
class Workload:
    """A list of requests sorted by arrival time."""

    @staticmethod
    def from_trace(
        path: str | PathLike[str],
        *,
        rate: float | None = None,
        num_requests: int | None = None,
        arrival: str = "poisson",
        cv: float = 1.0,
        seed: int = ...,
        words_to_tokens: float = 1.0,
        lengths_are_words: bool = False,
        trace_model: str | None = None,
        trace_log_type: str | None = None,
        columns: dict[str, str] | str | None = None,
    ) -> Workload:
        """Reads a trace file (format detected, or ``columns`` named); length-only traces need ``rate``."""
    @staticmethod
    def from_types(types: Sequence[tuple[_Int, _Int, float]], num_requests: _Int, *, seed: _Int = ...) -> Workload:
        """Synthetic typed workload from ``(prompt_len, output_len, rate)`` tuples."""
    @staticmethod
    def from_requests(
        arrival: _Floats,
        prompt_len: _Ints,
        output_len: _Ints,
        type_id: _Ints | None = None,
    ) -> Workload:
        """A workload from explicit per-request sequences or numpy arrays (arrivals sorted; at least one)."""
    def truncated(self, n: int) -> Workload:
        """The first ``n`` requests."""
    def rescaled_to_rate(self, rate: float) -> Workload:
        """The same requests with arrivals scaled to a mean rate of ``rate`` req/s."""
    def __len__(self) -> int: ...
    @property
    def arrival(self) -> list[float]: ...
    @property
    def prompt_len(self) -> list[int]: ...
    @property
    def output_len(self) -> list[int]: ...
    @property
    def type_id(self) -> list[int | None]: ...
    @property
    def warnings(self) -> list[str]: ...
    @property
    def mean_rate(self) -> float | None: ...

@final
class Simulation:
    """One workload under one policy; run it in chunks with ``run_for`` (the GIL is released)."""

    def __new__(
        cls,
        workload: Workload,
        policy: str = "vllm",
        *,
        policy_options: dict[str, bool | int | float | str | Sequence[float]] | None = None,
        time_model: str = "llama2-7b-a100",
        d0: float | None = None,
        d1: float | None = None,
        num_blocks: int | None = None,
        block_size: int = ...,
        watermark: float = 0.01,
        max_num_seqs: int = ...,
        max_num_batched_tokens: int = ...,
        enable_chunked_prefill: bool = True,
        seed: int = ...,
        length_error: float = 0.0,
        max_model_len: int | None = None,
        over_length: str = "trim",
        drop_oversize: bool = False,
    ) -> Simulation:
        """``time_model``: ``"linear"`` (with ``d0``, ``d1``), a shipped preset's name (``PRESET_NAMES``) or a preset
        file's path; ``num_blocks`` defaults to the preset's KV capacity in blocks of ``block_size`` (7,424 for
        ``linear``). ``max_model_len``: most prompt + output tokens per request (``None``: unlimited); ``over_length``:
        ``"reject"``, ``"trim"`` or ``"keep"`` a request above it. ``drop_oversize``: drop requests that can
        never fit the KV cache (counted as rejected) instead of refusing the workload."""
    def run_for(self, max_iterations: int = ...) -> bool:
        """Runs at most ``max_iterations`` iterations; True once every request has finished or was rejected.
        Checks for signals between chunks of about 50 ms: Ctrl-C raises ``KeyboardInterrupt`` promptly and the
        simulation can be resumed."""
    @property
    def num_dropped(self) -> int:
        """Requests dropped as oversize (``drop_oversize=True``); also counted as rejected."""
    def progress(self) -> tuple[int, int]:
        """``(settled, total)`` requests; settled: finished, or rejected by ``max_model_len``."""
    @property
    def now(self) -> float: ...
    def summary(self) -> dict[str, float]:
        """Summary metrics (the keys of ``fluidsched simulate --json``)."""
    def records(self) -> dict[str, tuple[bytes, str]]:
        """Per-request records as ``name -> (native-endian bytes, dtype)``; ``rejected`` and ``trimmed`` are bools."""
    def iterations(self) -> dict[str, tuple[bytes, str]]:
        """Per-iteration log as ``name -> (native-endian bytes, dtype)``."""
    def time_between_tokens(self) -> bytes:
        """Gaps between consecutive tokens of a request, float64 bytes."""
    @property
    def policy(self) -> str: ...
