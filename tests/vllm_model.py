"""A small pure-Python model of the step API under the ``vllm`` policy, used as an oracle by the stateful tests.

It is written from the documented semantics (``rust/src/policies/vllm.rs``, ``rust/src/scheduler.rs``,
``rust/src/request.rs``), not from the Rust code paths, and tracks exactly what the scheduler should report:

- a request holds ``prompt_len + num_output_tokens`` known tokens, ``computed`` of which have KV in the cache; a
  step that brings ``computed`` up to the known tokens emits one output token (so the prefill emits the first);
- KV is allocated in blocks of ``block_size`` tokens, enough for ``computed + n`` before ``n`` tokens are computed;
- each step, running requests (admission order) get what they owe: one token for a decode, the rest of a prefill
  cut to the token budget with chunked prefill (without it: whole, or skipped this step when it does not fit in
  the budget left, unless longer than the whole budget). When a block is missing, the most recently admitted
  running request is preempted by recompute (blocks freed, progress reset) and pushed to the *head* of the waiting
  queue, until the allocation succeeds or the request preempted itself;
- only in a step that preempted nothing, waiting requests are admitted from the head of the queue while the token
  budget is not spent, fewer than ``max_num_seqs`` run, and the whole (re)prefill fits in the free blocks above
  the watermark; admission stops at the first request that does not fit.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import fluidsched

#: Largest ``prompt_len + max(output_len, 1)`` the scheduler accepts (``u32::MAX / 2``).
MAX_REQUEST_TOKENS = (2**32 - 1) // 2


@dataclass
class ModelRequest:
    """One request as the model tracks it."""

    rid: int
    prompt_len: int
    output_len: int | None
    arrival_seq: int
    state: str = "waiting"
    computed: int = 0
    output: int = 0
    preemptions: int = 0
    blocks: int = 0

    @property
    def num_tokens(self) -> int:
        return self.prompt_len + self.output

    @property
    def owed(self) -> int:
        return self.num_tokens - self.computed

    @property
    def is_prefill(self) -> bool:
        return self.output == 0 or self.owed > 1


@dataclass
class ModelStep:
    """What the model expects ``schedule`` to return."""

    scheduled: list[tuple[int, int, bool]] = field(default_factory=list)
    preempted: list[int] = field(default_factory=list)
    admitted: list[int] = field(default_factory=list)
    #: Whether a running request found no block even after preempting every newer one, and preempted itself.
    self_preempted: bool = False

    @property
    def num_batched_tokens(self) -> int:
        return sum(n for _, n, _ in self.scheduled)

    @property
    def num_prefill_tokens(self) -> int:
        return sum(n for _, n, prefill in self.scheduled if prefill)

    @property
    def num_decode_seqs(self) -> int:
        return sum(1 for _, _, prefill in self.scheduled if not prefill)


class VllmModel:
    """The oracle. Method names mirror the step API."""

    def __init__(
        self,
        *,
        num_blocks: int,
        block_size: int,
        watermark: float,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        enable_chunked_prefill: bool,
    ) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.watermark_blocks = math.floor(watermark * num_blocks)
        self.max_num_seqs = max_num_seqs
        self.max_tokens = max_num_batched_tokens
        self.chunked = enable_chunked_prefill
        self.free = num_blocks
        self.requests: dict[int, ModelRequest] = {}
        self.waiting: deque[int] = deque()
        self.running: list[int] = []
        self.pending: ModelStep | None = None
        self._arrivals = 0

    # ----------------------------------------------------------------------------------------------- helpers
    @property
    def usable_tokens(self) -> int:
        """Most tokens one request may ever need: the blocks above the watermark."""
        return (self.num_blocks - self.watermark_blocks) * self.block_size

    @property
    def used_blocks(self) -> int:
        return self.num_blocks - self.free

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def blocks_needed(self, r: ModelRequest, n: int) -> int:
        return max(0, self.blocks_for(r.computed + n) - r.blocks)

    def _allocate(self, r: ModelRequest, n: int) -> bool:
        need = self.blocks_needed(r, n)
        if need > self.free:
            return False
        self.free -= need
        r.blocks += need
        return True

    def _release(self, r: ModelRequest) -> None:
        self.free += r.blocks
        r.blocks = 0

    # --------------------------------------------------------------------------------------------- step API
    def add_error(self, rid: int, prompt_len: int, output_len: int | None) -> type[fluidsched.FluidschedError] | None:
        """The exception class ``add_request`` should raise, or None if the request is accepted."""
        if rid in self.requests:
            return fluidsched.DuplicateRequestError
        if prompt_len < 1 or output_len == 0:
            return fluidsched.InvalidRequestError
        max_tokens = prompt_len + (1 if output_len is None else output_len)
        if max_tokens > self.usable_tokens or max_tokens > MAX_REQUEST_TOKENS:
            return fluidsched.InvalidRequestError
        return None

    def add(self, rid: int, prompt_len: int, output_len: int | None) -> None:
        assert self.add_error(rid, prompt_len, output_len) is None
        self._arrivals += 1
        self.requests[rid] = ModelRequest(rid, prompt_len, output_len, arrival_seq=self._arrivals)
        self.waiting.append(rid)

    def schedule(self) -> ModelStep:
        assert self.pending is None
        step = ModelStep()
        budget = self.max_tokens
        i = 0
        while i < len(self.running) and budget > 0:
            r = self.requests[self.running[i]]
            owed = r.owed
            n = min(owed, budget) if self.chunked or owed > self.max_tokens else owed
            if n > budget:  # unchunked prefill that does not fit the budget left: sits this step out
                i += 1
                continue
            scheduled = False
            while True:
                if self._allocate(r, n):
                    scheduled = True
                    break
                victim = self.requests[self.running.pop()]  # the newest running request
                self._release(victim)
                victim.state = "waiting"
                victim.computed = 0
                victim.preemptions += 1
                self.waiting.appendleft(victim.rid)
                step.preempted.append(victim.rid)
                if victim is r:
                    step.self_preempted = True
                    break
            if not scheduled:
                break
            step.scheduled.append((r.rid, n, r.is_prefill))
            budget -= n
            i += 1
        if not step.preempted:
            while self.waiting:
                if budget == 0 or len(self.running) >= self.max_num_seqs:
                    break
                r = self.requests[self.waiting[0]]
                owed = r.owed
                n = min(owed, budget) if self.chunked or owed > self.max_tokens else owed
                if n > budget or self.blocks_needed(r, owed) + self.watermark_blocks > self.free:
                    break
                self.waiting.popleft()
                r.state = "running"
                self.running.append(r.rid)
                step.admitted.append(r.rid)
                ok = self._allocate(r, n)
                assert ok
                step.scheduled.append((r.rid, n, r.is_prefill))
                budget -= n
        self.pending = step
        return step

    def complete(self, finished: list[int]) -> tuple[list[tuple[int, int]], list[int]]:
        """Applies the pending step; returns ``(emitted, finished)`` as ``complete_step`` should."""
        step = self.pending
        assert step is not None
        assert all(rid in self.requests for rid in finished)
        self.pending = None
        emitted: list[tuple[int, int]] = []
        done: list[int] = []
        for rid, n, _ in step.scheduled:
            r = self.requests[rid]
            r.computed += n
            if r.computed == r.num_tokens:
                r.output += 1
                emitted.append((rid, r.output))
                if r.output_len is not None and r.output >= r.output_len:
                    done.append(rid)
        for rid in finished:
            if rid not in done:
                done.append(rid)
        for rid in done:
            self._remove(rid)
        return emitted, done

    def abort(self, rid: int) -> None:
        assert self.pending is None
        self._remove(rid)

    def _remove(self, rid: int) -> None:
        r = self.requests.pop(rid)
        if r.state == "waiting":
            self.waiting.remove(rid)
        else:
            self.running.remove(rid)
        self._release(r)
