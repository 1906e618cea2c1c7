"""WAIT and Nested WAIT inside vLLM (0.32.0) through ``scheduler_cls``.

Use the factory :func:`make_scheduler` (it picks the plain or the async scheduler the way vLLM would)::

    vllm serve MODEL --scheduler-cls fluidsched.vllm.make_scheduler \\
        --additional-config '{"fluidsched": {"policy": "nested-wait", "length_sample": "lmsys", "arrival_rate": 5}}'

    LLM(model=..., scheduler_cls="fluidsched.vllm.make_scheduler",
        additional_config={"fluidsched": {"policy": "wait", "types": [[128, 256, 4.0], [512, 64, 1.0]]}})

What changes and what does not:

- vLLM keeps its budgets (``max_num_seqs``, ``max_num_batched_tokens``), its KV cache manager and prefix cache,
  chunked prefill and its preemption. The adapter changes only *who may start* each step: ``self.waiting`` is a
  gated FCFS queue that, while ``schedule()`` runs, shows vLLM only the requests the policy admits, in the policy's
  order. vLLM's own checks still apply to them (a request the policy admits can still wait for memory).
- Nested WAIT also pauses running requests that finish a segment of the decode horizon, keeping their KV blocks
  (``Request.next_decode_eligible_step``), and resumes them when their segment's entry is let in.
- The decision is fluidsched's Rust :class:`~fluidsched.AdmissionController`, the same code the simulator runs.
  It is told incrementally what happens to each request (added, started, put back, outputs, finished) and asked
  once per step with a compact view (time, running count, free blocks, limits); no vLLM object crosses into Rust.
- Liveness: a waiting or paused request is let in at the latest ``max_wait`` seconds after it started waiting
  (a policy option; the default is 20 cohort intervals). While the policy holds requests and nothing runs, vLLM's
  engine loop keeps calling ``schedule()`` (an empty step each time) until a threshold or a deadline is met.
- Thresholds are planned with the engine's real numbers: KV capacity = (``num_gpu_blocks`` - 1) x ``block_size``,
  ``max_num_seqs``, ``max_num_batched_tokens``, the scheduler's ``watermark``, and the time model named in the
  settings; measured step durations correct the time model at run time.

Settings come from ``vllm_config.additional_config["fluidsched"]`` (see :mod:`fluidsched.adapter` for every key);
an unknown key or a bad value fails at start-up with :class:`~fluidsched.InvalidConfigError` naming it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from fluidsched._core import AdmissionController
from fluidsched.adapter import AdapterSettings, EngineLimits, build_controller
from fluidsched.errors import FluidschedError, InvalidConfigError

try:
    import vllm
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.request_queue import FCFSRequestQueue
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.request import Request, RequestStatus
except ImportError as e:  # pragma: no cover - exercised only without vLLM
    raise ImportError(
        "fluidsched.vllm needs vLLM 0.32.0 (pip install 'fluidsched[vllm]'; see the README's vLLM section)"
    ) from e

__all__ = [
    "SUPPORTED_VLLM_VERSIONS",
    "FluidschedAsyncScheduler",
    "FluidschedScheduler",
    "GatedWaitingQueue",
    "make_scheduler",
]

#: vLLM versions the adapter is written and tested against (it reaches into scheduler internals).
SUPPORTED_VLLM_VERSIONS: tuple[str, ...] = ("0.32.0",)

#: `next_decode_eligible_step` of a paused request: never reached.
_PAUSED_STEP = 1 << 62

#: Gaps between two steps longer than this are idle time, not an iteration.
_MAX_ITERATION_S = 5.0

#: Largest output-length hint or type label taken from a request (larger ones are ignored).
_MAX_HINT = 1 << 30

_log = logging.getLogger(__name__)


def _small_int(value: object) -> int | None:
    """``value`` if it is an int in ``[0, 2**30]`` (not a bool), else None: request fields come from API clients."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_HINT:
        return value
    return None


class GatedWaitingQueue(FCFSRequestQueue):  # type: ignore[misc]
    """vLLM's FCFS waiting queue that, while a step is scheduled, shows only the requests the policy admits.

    Outside ``schedule()`` (and for the admit-all policy) it is exactly ``FCFSRequestQueue``: length, iteration
    and order stay truthful for vLLM's counts, metrics and liveness checks. Every change is reported to the
    scheduler's controller.
    """

    def __init__(self, owner: _FluidschedMixin) -> None:
        super().__init__()
        self._owner = owner
        #: While gated: the admitted requests not yet popped, in the policy's order. None: not gated.
        self._allowed: deque[Request] | None = None
        #: Requests popped while gated but still in the deque (removed in one pass when the gate closes, so a
        #: step admitting k of n waiting costs O(n + k), not O(k n)).
        self._taken: set[Request] = set()

    def open_gate(self, allowed: Iterable[Request] | None) -> None:
        """Gates the queue to ``allowed`` (None: ungated) until :meth:`close_gate`."""
        self._allowed = None if allowed is None else deque(allowed)

    def close_gate(self) -> None:
        """Ends the step: the queue is plain FCFS again."""
        self._allowed = None
        self._compact()

    def _compact(self) -> None:
        """Drops the requests popped while gated from the deque, in one pass."""
        if self._taken:
            taken = self._taken
            kept: list[Request] = [r for r in super().__iter__() if r not in taken]
            self.clear()
            self.extend(kept)
            taken.clear()

    def add_request(self, request: Request) -> None:
        self._owner._on_waiting(request)
        self.append(request)

    def pop_request(self) -> Request:
        if self._allowed is None:
            request: Request = self.popleft()
        else:
            request = self._allowed.popleft()
            if deque.__len__(self) and self[0] is request:
                self.popleft()
            else:
                self._taken.add(request)
        self._owner._on_popped(request)
        return request

    def peek_request(self) -> Request:
        if self._allowed is None:
            return super().peek_request()
        if not self._allowed:
            raise IndexError("peek from an empty queue")
        return self._allowed[0]

    def prepend_request(self, request: Request) -> None:
        self._owner._on_requeued(request)
        if request in self._taken:
            self._taken.discard(request)  # still in the deque (gated order does not use the deque's)
        else:
            self.appendleft(request)

    def prepend_requests(self, requests: Iterable[Request]) -> None:
        requests = list(requests)
        for request in requests:
            self._owner._on_requeued(request)
        fresh = [r for r in requests if r not in self._taken]
        self._taken.difference_update(requests)
        self.extendleft(fresh)

    def remove_request(self, request: Request) -> None:
        self._owner._on_removed(request)
        if request in self._taken:
            self._taken.discard(request)
        self.remove(request)

    def remove_requests(self, requests: Iterable[Request]) -> None:
        requests = list(requests)
        for request in requests:
            self._owner._on_removed(request)
        self._taken.difference_update(requests)
        self._compact()
        super().remove_requests(requests)

    def __len__(self) -> int:
        return deque.__len__(self) - len(self._taken)

    def __iter__(self) -> Any:
        taken = self._taken
        return (r for r in super().__iter__() if r not in taken) if taken else super().__iter__()

    def __bool__(self) -> bool:
        if self._allowed is None:
            return len(self) > 0
        return len(self._allowed) > 0


class _FluidschedMixin:
    """The adapter's behaviour, mixed into vLLM's ``Scheduler`` or ``AsyncScheduler``."""

    #: The clock request arrival times use (vLLM stamps ``Request.arrival_time`` with ``time.time()``).
    clock: Callable[[], float] = time.time

    # Attributes of vLLM's Scheduler used below (declared for readers and type checkers).
    waiting: Any
    running: list[Request]
    requests: dict[str, Request]
    kv_cache_manager: Any
    kv_cache_config: Any
    vllm_config: Any
    max_num_running_reqs: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        vllm_config: Any = self.vllm_config
        additional = getattr(vllm_config, "additional_config", None) or {}
        self.fluidsched_settings = AdapterSettings.from_mapping(additional.get("fluidsched"))
        scheduler_config = vllm_config.scheduler_config
        if str(getattr(scheduler_config, "policy", "fcfs")) != "fcfs":
            raise InvalidConfigError(
                f"fluidsched.vllm orders the waiting queue itself; it runs with vLLM's scheduling policy 'fcfs', "
                f"not {scheduler_config.policy!r} (drop --scheduling-policy)"
            )
        # Block 0 is vLLM's null block: requests can hold the other num_blocks - 1.
        num_blocks = int(self.kv_cache_config.num_blocks) - 1
        self.fluidsched_limits = EngineLimits(
            num_blocks=num_blocks,
            block_size=int(getattr(self, "block_size", kwargs.get("block_size", 16))),
            max_num_seqs=int(self.max_num_running_reqs),
            max_num_batched_tokens=int(scheduler_config.max_num_batched_tokens),
            watermark=float(getattr(scheduler_config, "watermark", 0.0) or 0.0),
        )
        self.controller: AdmissionController = build_controller(self.fluidsched_settings, self.fluidsched_limits)
        self._int_ids: dict[str, int] = {}
        self._by_int: dict[int, Request] = {}
        self._next_int = 0
        self._last_step: tuple[float, int] | None = None
        self._stalled = False
        self._wants_outputs = self.controller.wants_outputs
        if len(self.waiting):
            raise RuntimeError("fluidsched: vLLM's waiting queue is not empty at start-up")
        self.waiting = GatedWaitingQueue(self)

    # -- bookkeeping hooks (called by the gated queue and by the overrides below) --

    def _on_waiting(self, request: Request) -> None:
        # Runs inside vLLM's add_request: it must never raise (request fields come from API clients), so bad
        # hints are ignored and anything the controller refuses is logged and left to vLLM's own rule.
        old = self._int_ids.pop(request.request_id, None)
        if old is not None:  # the same id again (vLLM re-queues a resumable request): forget the old entry
            self._by_int.pop(old, None)
            self.controller.finish(old)
        rid = self._next_int
        self._next_int += 1
        extra = getattr(request.sampling_params, "extra_args", None)
        extra = extra if isinstance(extra, dict) else {}
        hint = _small_int(extra.get("fluidsched_output_len"))
        if hint is None and self.fluidsched_settings.output_len_hint == "max_tokens":
            hint = _small_int(getattr(request, "max_tokens", None))
        arrival = getattr(request, "arrival_time", None)
        if not isinstance(arrival, (int, float)) or not math.isfinite(arrival):
            arrival = self.clock()
        try:
            self.controller.add_request(
                rid,
                max(1, min(int(request.num_prompt_tokens), _MAX_HINT)),
                arrival=float(arrival),
                output_len_hint=max(1, hint) if hint is not None else None,
                type_id=_small_int(extra.get("fluidsched_type")),
            )
        except FluidschedError as e:
            _log.warning("fluidsched: request %s is left to vLLM's own rule: %s", request.request_id, e)
            return
        self._int_ids[request.request_id] = rid
        self._by_int[rid] = request

    def _on_popped(self, request: Request) -> None:
        rid = self._int_ids.get(request.request_id)
        if rid is not None:
            self.controller.on_admitted(rid, request.num_output_tokens)

    def _on_requeued(self, request: Request) -> None:
        # A paused request that vLLM preempted must not stay paused once it runs again.
        request.next_decode_eligible_step = 0
        rid = self._int_ids.get(request.request_id)
        if rid is None:
            # Started outside the gated queue (vLLM drains KV-holding requests first): new to the policy.
            self._on_waiting(request)
        else:
            self.controller.requeue(rid)

    def _on_removed(self, request: Request) -> None:
        rid = self._int_ids.pop(request.request_id, None)
        if rid is not None:
            self._by_int.pop(rid, None)
            self.controller.finish(rid)

    # -- vLLM's scheduler interface --

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        """vLLM's ``schedule()`` with the waiting queue gated to this step's admissions."""
        now = self.clock()
        if self._last_step is not None and self.fluidsched_settings.measure_iterations:
            started, tokens = self._last_step
            if 0.0 < now - started <= _MAX_ITERATION_S:
                self.controller.observe_iteration(now - started, tokens)
        admit_all, admit, resume = self.controller.decide(
            now=now,
            num_running=len(self.running),
            num_free_blocks=self.kv_cache_manager.block_pool.get_num_free_blocks(),
            max_num_seqs=self.max_num_running_reqs,
            stalled=self._stalled,
        )
        for rid in resume:
            paused = self._by_int.get(rid)
            if paused is not None:
                paused.next_decode_eligible_step = 0
        if admit_all:
            self.waiting.open_gate(None)
        else:
            by_int = self._by_int
            self.waiting.open_gate(
                by_int[rid] for rid in admit if rid in by_int and by_int[rid].status != RequestStatus.RUNNING
            )
        try:
            output = super().schedule(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.waiting.close_gate()
        tokens = int(output.total_num_scheduled_tokens)
        self._last_step = (now, tokens) if tokens else None
        self._stalled = tokens == 0
        return output

    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        """vLLM's ``update_from_output()``, then output progress for the policy: Nested WAIT pauses requests that
        finished their segment; WAIT's memory guard projects each running request from where it is."""
        result = super().update_from_output(scheduler_output, model_runner_output)  # type: ignore[misc]
        if self._wants_outputs:
            ids: list[int] = []
            outs: list[int] = []
            requests = self.requests
            int_ids = self._int_ids
            for req_id in scheduler_output.num_scheduled_tokens:
                request = requests.get(req_id)
                if request is not None and request.status == RequestStatus.RUNNING:
                    rid = int_ids.get(req_id)
                    if rid is not None:
                        ids.append(rid)
                        outs.append(request.num_output_tokens)
            for rid in self.controller.on_outputs(ids, outs, self.clock()):
                self._by_int[rid].next_decode_eligible_step = _PAUSED_STEP
        return result

    def _free_request(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        self._on_removed(request)
        return super()._free_request(request, *args, **kwargs)  # type: ignore[misc]


class FluidschedScheduler(_FluidschedMixin, Scheduler):  # type: ignore[misc]
    """vLLM's ``Scheduler`` with fluidsched's admission (no async scheduling)."""


class FluidschedAsyncScheduler(_FluidschedMixin, AsyncScheduler):  # type: ignore[misc]
    """vLLM's ``AsyncScheduler`` with fluidsched's admission."""


def make_scheduler(**kwargs: Any) -> FluidschedScheduler | FluidschedAsyncScheduler:
    """Factory for ``scheduler_cls``: the async variant when ``scheduler_config.async_scheduling`` is on, as vLLM
    itself would choose."""
    async_scheduling = bool(getattr(kwargs["vllm_config"].scheduler_config, "async_scheduling", False))
    version = str(getattr(vllm, "__version__", "unknown"))
    if version.split("+")[0] not in SUPPORTED_VLLM_VERSIONS:
        import warnings

        warnings.warn(
            f"fluidsched.vllm is tested with vLLM {', '.join(SUPPORTED_VLLM_VERSIONS)}, not {version}",
            RuntimeWarning,
            stacklevel=2,
        )
    if async_scheduling:
        return FluidschedAsyncScheduler(**kwargs)
    return FluidschedScheduler(**kwargs)
