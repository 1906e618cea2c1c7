"""The simulator front end: :func:`simulate`, :func:`load_workload` and :class:`SimResult`."""

from __future__ import annotations

import csv
import functools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from fluidsched._core import MAX_NUM_BLOCKS, POLICY_NAMES, Simulation, Workload
from fluidsched.errors import InvalidConfigError
from fluidsched.presets import (
    DEFAULT_KV_CAPACITY,
    DEFAULT_TIME_MODEL,
    TimeModelArg,
    default_kv_capacity,
    time_model_name,
)
from fluidsched.progress import ProgressBar

__all__ = [
    "DEFAULT_KV_CAPACITY",
    "DEFAULT_OVER_LENGTH",
    "OVER_LENGTH_MODES",
    "SUMMARY_KEYS",
    "OptionValue",
    "SimResult",
    "load_workload",
    "simulate",
]

#: Keys of :meth:`SimResult.summary`, in order (also the keys of ``fluidsched simulate --json``).
SUMMARY_KEYS: tuple[str, ...] = (
    "num_requests",
    "num_finished",
    "num_rejected",
    "throughput_tokens_per_s",
    "requests_per_s",
    "latency_mean_s",
    "latency_p50_s",
    "latency_p90_s",
    "latency_p99_s",
    "ttft_mean_s",
    "ttft_p50_s",
    "ttft_p90_s",
    "ttft_p99_s",
    "tbt_p50_s",
    "tbt_p99_s",
    "kv_usage_mean_fraction",
    "kv_usage_max_fraction",
    "num_preemptions",
    "num_iterations",
    "mean_iteration_time_s",
    "mean_batch_size",
    "busy_fraction",
    "simulated_span_s",
    "wall_time_s",
)

#: What ``over_length`` may be: what happens to a request whose prompt + output exceeds ``max_model_len``.
OVER_LENGTH_MODES: tuple[str, ...] = ("reject", "trim", "keep")
#: The default ``over_length``: trim the prompt, as Vidur does (``docs/simulator.md``, "Model length").
DEFAULT_OVER_LENGTH = "trim"

OptionValue = Union[bool, int, float, str, list[float]]  # noqa: UP007 (a runtime alias; Python 3.10 needs Union)
PathLike = Union[str, "os.PathLike[str]"]

_ITERATIONS_PER_CHUNK = 20_000


def load_workload(
    source: Workload | PathLike,
    *,
    rate: float | None = None,
    num_requests: int | None = None,
    arrival: str = "poisson",
    cv: float = 1.0,
    seed: int = 0,
    words_to_tokens: float = 1.0,
    trace_model: str | None = None,
    trace_log_type: str | None = None,
    columns: Mapping[str, str] | str | None = None,
) -> Workload:
    """Returns ``source`` as a :class:`Workload`, reading it if it is a path.

    The trace format is detected from the file's content (``docs/simulator.md``, "Trace formats"): CSV in the
    Vidur, Azure 2023, BurstGPT or LMSYS layouts, or Mooncake JSON lines. ``columns`` reads any other CSV or
    JSON-lines file by naming its columns: ``{"arrival": ..., "prompt": ..., "output": ..., "unit": "ms"}``
    (``arrival`` and ``unit`` optional; ``unit`` is ``s``, ``ms`` or ``us``, default ``s``), or the same as a
    string ``"arrival=COL,prompt=COL,output=COL,unit=ms"``. ``trace_model`` (e.g. ``"GPT-4"``) and
    ``trace_log_type`` (``"conversation"`` or ``"api"``) keep only the BurstGPT rows of that ``Model`` /
    ``Log Type``.

    Timed traces keep their arrival times (rescaled to ``rate`` req/s if given, truncated to ``num_requests``);
    length-only traces need ``rate`` and get seeded Poisson (or ``arrival="gamma"`` with ``cv``) arrivals. The
    bundled LMSYS sample holds word counts: it is read as words and scaled by ``words_to_tokens``.
    """
    if isinstance(source, Workload):
        trace_only = {"trace_model": trace_model, "trace_log_type": trace_log_type, "columns": columns}
        given = [name for name, value in trace_only.items() if value is not None]
        if given:
            raise InvalidConfigError(f"{', '.join(given)} apply only when reading a trace file, not to a Workload")
        workload = source
        if num_requests is not None:
            workload = workload.truncated(num_requests)
        if rate is not None:
            workload = workload.rescaled_to_rate(rate)
        return workload
    path = Path(source)
    words = path.name.startswith("lmsys")
    return Workload.from_trace(
        path,
        rate=rate,
        num_requests=num_requests,
        arrival=arrival,
        cv=cv,
        seed=seed,
        words_to_tokens=words_to_tokens,
        lengths_are_words=words,
        trace_model=trace_model,
        trace_log_type=trace_log_type,
        columns=dict(columns) if isinstance(columns, Mapping) else columns,
    )


def kv_capacity_blocks(kv_capacity: int, block_size: int) -> int:
    """Whole blocks of ``block_size`` tokens in ``kv_capacity`` tokens, or ``InvalidConfigError`` naming the bad
    value (not a positive int, less than one block, or more than ``MAX_NUM_BLOCKS`` blocks)."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size <= 0:
        raise InvalidConfigError(f"block_size must be a positive integer, got {block_size!r}")
    if isinstance(kv_capacity, bool) or not isinstance(kv_capacity, int) or kv_capacity <= 0:
        raise InvalidConfigError(f"kv_capacity must be a positive integer number of tokens, got {kv_capacity!r}")
    num_blocks = kv_capacity // block_size
    if num_blocks == 0:
        raise InvalidConfigError(f"kv_capacity {kv_capacity} holds no block of {block_size} tokens")
    if num_blocks > MAX_NUM_BLOCKS:
        raise InvalidConfigError(
            f"kv_capacity {kv_capacity} is too large: at most {MAX_NUM_BLOCKS} blocks of {block_size} tokens"
        )
    return num_blocks


def _array(entry: tuple[bytes, str]) -> npt.NDArray[Any]:
    data, dtype = entry
    array: npt.NDArray[Any] = np.frombuffer(data, dtype=np.dtype(dtype)).copy()
    return array


class SimResult:
    """The outcome of one simulation: summary metrics, per-request arrays and the per-iteration log.

    Per-request arrays are indexed by the request's position in the workload (arrival order). The iteration log
    and the time-between-tokens sample are converted on first access. A request rejected by ``max_model_len``
    (``rejected[i]``) has NaN event times, latency and TTFT, its own lengths and no preemptions; a trimmed one
    (``trimmed[i]``) has the lengths it was served with in ``prompt_len`` and ``output_len``.
    """

    def __init__(self, sim: Simulation, num_blocks: int) -> None:
        self._sim = sim
        self.policy: str = sim.policy
        #: KV blocks in the simulated cache (``iterations["used_blocks"] / num_blocks`` is the usage fraction).
        self.num_blocks = num_blocks
        self._summary = sim.summary()
        records = sim.records()
        self.arrival: npt.NDArray[np.float64] = _array(records["arrival"])
        self.first_scheduled: npt.NDArray[np.float64] = _array(records["first_scheduled"])
        self.first_token: npt.NDArray[np.float64] = _array(records["first_token"])
        self.finish: npt.NDArray[np.float64] = _array(records["finish"])
        self.prompt_len: npt.NDArray[np.uint32] = _array(records["prompt_len"])
        self.output_len: npt.NDArray[np.uint32] = _array(records["output_len"])
        self.num_preemptions: npt.NDArray[np.uint32] = _array(records["num_preemptions"])
        #: Requests dropped because they can never fit the KV cache (``drop_oversize=True``; also ``rejected``).
        self.num_dropped: int = sim.num_dropped
        #: Rejected by ``max_model_len`` (``over_length="reject"``) or dropped as oversize: never served.
        self.rejected: npt.NDArray[np.bool_] = _array(records["rejected"])
        #: Served with lengths trimmed to ``max_model_len`` (``over_length="trim"``).
        self.trimmed: npt.NDArray[np.bool_] = _array(records["trimmed"])

    @functools.cached_property
    def iterations(self) -> dict[str, npt.NDArray[Any]]:
        """Per-iteration log: ``start``, ``duration`` (s), ``num_tokens``, ``num_seqs``, ``used_blocks``."""
        return {k: _array(v) for k, v in self._sim.iterations().items()}

    @functools.cached_property
    def time_between_tokens(self) -> npt.NDArray[np.float64]:
        """Gaps between consecutive output tokens of each request, seconds (a sample; order unspecified)."""
        return np.frombuffer(self._sim.time_between_tokens(), dtype=np.float64)

    @property
    def latency(self) -> npt.NDArray[np.float64]:
        """End-to-end latency per request (finish - arrival), seconds; NaN for a rejected request."""
        return self.finish - self.arrival

    @property
    def ttft(self) -> npt.NDArray[np.float64]:
        """Time to first token per request (first token - arrival), seconds; NaN for a rejected request."""
        return self.first_token - self.arrival

    def summary(self) -> dict[str, float]:
        """Aggregate metrics (see :data:`SUMMARY_KEYS`); counts are ints."""
        return dict(self._summary)

    def to_csv(self, path: PathLike) -> None:
        """Writes one row per request: id, arrival, lengths, event times, latency, TTFT, preemptions, and 0/1
        flags for rejected and trimmed (``max_model_len``). A rejected request's times are ``nan``."""
        columns: dict[str, npt.NDArray[Any]] = {
            "request_id": np.arange(len(self.arrival)),
            "arrival_s": self.arrival,
            "prompt_len": self.prompt_len,
            "output_len": self.output_len,
            "first_scheduled_s": self.first_scheduled,
            "first_token_s": self.first_token,
            "finish_s": self.finish,
            "latency_s": self.latency,
            "ttft_s": self.ttft,
            "num_preemptions": self.num_preemptions,
            "rejected": self.rejected.astype(np.uint8),
            "trimmed": self.trimmed.astype(np.uint8),
        }
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in zip(*(c.tolist() for c in columns.values()), strict=True):
                writer.writerow([repr(x) if isinstance(x, float) else x for x in row])

    def __repr__(self) -> str:
        s = self._summary
        return (
            f"SimResult(policy={self.policy!r}, requests={s['num_requests']}, "
            f"throughput={s['throughput_tokens_per_s']:.1f} tok/s, latency_mean={s['latency_mean_s']:.3f} s)"
        )


def simulate(
    workload: Workload | PathLike,
    policy: str = "vllm",
    *,
    policy_options: Mapping[str, OptionValue] | None = None,
    time_model: TimeModelArg = DEFAULT_TIME_MODEL,
    d0: float | None = None,
    d1: float | None = None,
    kv_capacity: int | None = None,
    block_size: int = 16,
    watermark: float = 0.01,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int = 8192,
    enable_chunked_prefill: bool = True,
    seed: int = 0,
    length_error: float = 0.0,
    max_model_len: int | None = None,
    over_length: str = DEFAULT_OVER_LENGTH,
    rate: float | None = None,
    num_requests: int | None = None,
    drop_oversize: bool = False,
    progress: bool = False,
) -> SimResult:
    """Simulates ``workload`` (a :class:`Workload` or a trace path) under ``policy`` until every request finishes.

    ``time_model`` is a profiled preset, by name (:func:`~fluidsched.list_presets`; default ``"llama2-7b-a100"``)
    or as the path of a preset JSON file, or ``"linear"`` with ``d0`` (s) and ``d1`` (s/token).
    ``kv_capacity`` is in tokens (default: the preset's own, 118,784 for ``linear``) and is rounded down to whole
    blocks of ``block_size``. ``rate`` and
    ``num_requests`` rescale and truncate the workload (``rate`` is required for length-only traces). ``seed``
    drives synthetic arrivals and predicted lengths: the same seed and inputs give bit-identical results.
    ``length_error`` perturbs the output lengths shown to clairvoyant policies.

    ``max_model_len`` (tokens, at least 2; default ``None``: unlimited) is the model's maximum sequence length;
    a request whose prompt + output exceeds it is, by ``over_length``: ``"trim"`` (default, Vidur's behaviour)
    served with its prompt cut to ``max_model_len - output`` (output cut to ``max_model_len - 1`` and prompt to 1
    if the output alone does not fit); ``"reject"`` (a vLLM server's answer) not served, counted in
    ``num_rejected`` and left out of every other metric; ``"keep"`` served unchanged. Bad values raise
    :class:`~fluidsched.InvalidConfigError` naming the option.

    A request that can never fit the KV cache makes the run fail with :class:`~fluidsched.InvalidRequestError`
    (saying how many there are); ``drop_oversize=True`` drops them instead, counted in ``num_rejected`` and in
    :attr:`SimResult.num_dropped`.

    The GIL is released while the Rust core runs; ``progress=True`` draws a progress bar (rate, ETA) on stderr for
    runs longer than a second, when stderr is a terminal.
    """
    if not isinstance(policy, str):
        raise InvalidConfigError(f"policy must be a policy name (one of {', '.join(POLICY_NAMES)}), got {policy!r}")
    time_model = time_model_name(time_model)
    if kv_capacity is None:
        kv_capacity = default_kv_capacity(time_model)
    num_blocks = kv_capacity_blocks(kv_capacity, block_size)
    for name, value in (("rate", rate), ("length_error", length_error), ("d0", d0), ("d1", d1)):
        if value is not None and not math.isfinite(value):
            raise InvalidConfigError(f"{name} must be finite, got {value!r}")
    wl = load_workload(workload, rate=rate, num_requests=num_requests, seed=seed)
    sim = Simulation(
        wl,
        policy,
        policy_options=dict(policy_options) if policy_options else None,
        time_model=time_model,
        d0=d0,
        d1=d1,
        num_blocks=num_blocks,
        block_size=block_size,
        watermark=watermark,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        enable_chunked_prefill=enable_chunked_prefill,
        seed=seed,
        length_error=length_error,
        max_model_len=max_model_len,
        over_length=over_length,
        drop_oversize=drop_oversize,
    )
    with ProgressBar(sim.progress()[1], desc=policy, unit="req", enabled=progress, delay=1.0) as bar:
        while not sim.run_for(_ITERATIONS_PER_CHUNK):
            bar.update_to(sim.progress()[0])
    return SimResult(sim, num_blocks)
