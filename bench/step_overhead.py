"""Cost of one scheduling step through Python: ``schedule()`` + ``complete_step()`` + reading what they decided.

Run with ``python bench/step_overhead.py`` (after ``make build-dev``; about 20 s), or ``--quick`` for a smoke run.

For every policy in ``POLICY_NAMES`` and every size (64, 256, 512 running x 1,000, 10,000 waiting) a
:class:`fluidsched.Scheduler` is held in steady state: ``max_num_seqs`` is the running size, memory never binds,
each request has a random prompt (16-80 tokens) and output length (1-255 tokens, given to the scheduler, so it
finishes requests itself), and every finished request is replaced by a new waiting one, so the waiting queue keeps
its size and the policy refills the running set. The clock advances by a linear time model per step.

"mean run" is the running-set size sampled after every timed block.
Each timed step is ``schedule(now)``, ``complete_step()``, ``outcome.finished`` (needed to replace requests) and
one ``add_request`` per finished request, then, depending on the column:

- ``bare``: nothing more;
- ``+read``: the step's decisions as Python objects: ``step.scheduled``, ``step.preempted``, ``step.admitted``
  and ``outcome.emitted`` (each read once);
- ``+arrays``: the same decisions as numpy arrays: ``step.request_ids``, ``step.num_tokens``, ``step.is_prefill``,
  ``outcome.request_ids``, ``outcome.num_output_tokens`` (plus ``preempted`` and ``admitted``).

The denominator is a plain pure-Python vLLM-style step (:class:`PyVllmScheduler` below: running requests first,
then FCFS admission, chunked prefill, block accounting with a watermark, recompute preemption of the newest
request) driven the same way in the same run; its decisions are Python lists already. Columns are medians over
interleaved repeats (every scheduler and column once, then again), in microseconds per step; ``read/py`` and
``arr/py`` are the ``+read`` and ``+arrays`` figures over the pure-Python step's. The target, at most 10 us per
step read through Python at 256 running, is judged for both ways of reading (``met/missed``: tuples/arrays).
On a build without the array views (before they were added) the ``+arrays`` columns print ``nan``.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import fluidsched
from fluidsched import POLICY_NAMES

BLOCK_SIZE = 16
MAX_NUM_BATCHED_TOKENS = 8192
PROMPT_LENS = (16, 80)
OUTPUT_LENS = (1, 255)
D0, D1 = 0.01, 1e-4  # seconds per step, seconds per batched token
TARGET_US = 10.0
#: A build from before the array views still runs the other columns, for before/after comparisons.
HAS_ARRAYS = hasattr(fluidsched.Step, "request_ids")
TARGET_RUNNING = 256
#: Per-request reservations sized to this workload's longest request (the engine's ``max_model_len`` here), so
#: that the reserving policies can hold the whole running set, as the others do.
#: Sarathi's and vLLM v0's own token budgets are set to the shared one, as in ``tests/test_policies_step_api.py``.
POLICY_OPTIONS: dict[str, dict[str, bool | int | float | str | Sequence[float]]] = {
    "sarathi": {"token_budget": MAX_NUM_BATCHED_TOKENS},
    "vllm-v0": {"max_tokens_in_batch": MAX_NUM_BATCHED_TOKENS},
    "orca": {"max_tokens": PROMPT_LENS[1] + OUTPUT_LENS[1]},
    "sglang": {"max_new_tokens": OUTPUT_LENS[1]},
}


@dataclass
class PyRequest:
    """A request of the pure-Python scheduler."""

    request_id: int
    prompt_len: int
    output_len: int
    num_computed_tokens: int = 0
    num_output_tokens: int = 0
    num_blocks: int = 0


class PyVllmScheduler:
    """A small vLLM-style scheduler in plain Python: the ratio's denominator."""

    def __init__(self, *, num_blocks: int, max_num_seqs: int, watermark_blocks: int) -> None:
        self.num_free_blocks = num_blocks
        self.max_num_seqs = max_num_seqs
        self.watermark_blocks = watermark_blocks
        self.waiting: deque[PyRequest] = deque()
        self.running: list[PyRequest] = []
        self.pending: list[tuple[PyRequest, int]] = []

    @property
    def num_waiting(self) -> int:
        """Requests waiting for admission."""
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        """Requests admitted and not finished."""
        return len(self.running)

    def add_request(self, request_id: int, prompt_len: int, output_len: int) -> None:
        """Queues a new request."""
        self.waiting.append(PyRequest(request_id, prompt_len, output_len))

    def _blocks_needed(self, req: PyRequest, num_tokens: int) -> int:
        total = req.num_computed_tokens + num_tokens
        return max(0, -(-total // BLOCK_SIZE) - req.num_blocks)

    def _preempt(self, req: PyRequest) -> None:
        self.num_free_blocks += req.num_blocks
        req.num_blocks = 0
        req.num_computed_tokens = 0
        self.waiting.appendleft(req)

    def schedule(self) -> tuple[list[tuple[int, int, bool]], list[int], list[int]]:
        """The next batch: ``(scheduled, preempted, admitted)``."""
        budget = MAX_NUM_BATCHED_TOKENS
        scheduled: list[tuple[int, int, bool]] = []
        preempted: list[int] = []
        admitted: list[int] = []
        self.pending = []
        kept: list[PyRequest] = []
        while self.running:
            req = self.running.pop(0)
            target = req.prompt_len + req.num_output_tokens
            num_tokens = min(target - req.num_computed_tokens, budget)
            if num_tokens <= 0:
                kept.append(req)
                continue
            need = self._blocks_needed(req, num_tokens)
            while need > self.num_free_blocks and self.running:
                victim = self.running.pop()
                self._preempt(victim)
                preempted.append(victim.request_id)
            if need > self.num_free_blocks:
                self._preempt(req)
                preempted.append(req.request_id)
                continue
            self.num_free_blocks -= need
            req.num_blocks += need
            budget -= num_tokens
            scheduled.append((req.request_id, num_tokens, req.num_computed_tokens < req.prompt_len))
            self.pending.append((req, num_tokens))
            kept.append(req)
        self.running = kept
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs and not preempted:
            req = self.waiting[0]
            num_tokens = min(req.prompt_len + req.num_output_tokens - req.num_computed_tokens, budget)
            need = self._blocks_needed(req, num_tokens)
            if self.num_free_blocks - need < self.watermark_blocks:
                break
            self.waiting.popleft()
            self.num_free_blocks -= need
            req.num_blocks += need
            budget -= num_tokens
            scheduled.append((req.request_id, num_tokens, True))
            admitted.append(req.request_id)
            self.pending.append((req, num_tokens))
            self.running.append(req)
        return scheduled, preempted, admitted

    def complete_step(self) -> tuple[list[tuple[int, int]], list[int]]:
        """Applies the pending step: ``(emitted, finished)``."""
        emitted: list[tuple[int, int]] = []
        finished: list[int] = []
        for req, num_tokens in self.pending:
            req.num_computed_tokens += num_tokens
            if req.num_computed_tokens >= req.prompt_len + req.num_output_tokens:
                req.num_output_tokens += 1
                emitted.append((req.request_id, req.num_output_tokens))
                if req.num_output_tokens == req.output_len:
                    finished.append(req.request_id)
        if finished:
            done = set(finished)
            for req in self.running:
                if req.request_id in done:
                    self.num_free_blocks += req.num_blocks
                    req.num_blocks = 0
            self.running = [req for req in self.running if req.request_id not in done]
        self.pending = []
        return emitted, finished


class Bench:
    """One scheduler at one size, in steady state, with its timed step variants."""

    def __init__(self, policy: str, running: int, waiting: int, seed: int) -> None:
        self.policy = policy
        self.waiting = waiting
        self.rng = random.Random(seed)
        self.next_id = 0
        self.now = 0.0
        num_blocks = running * 32 + 1024  # ceil((80 + 255) / 16) = 21 blocks per request at most: never binds
        if policy == "python":
            self.py = PyVllmScheduler(num_blocks=num_blocks, max_num_seqs=running, watermark_blocks=num_blocks // 100)
        else:
            rate = running / ((sum(OUTPUT_LENS) / 2) * (D0 + D1 * running))
            self.s = fluidsched.Scheduler(
                policy,
                num_blocks=num_blocks,
                block_size=BLOCK_SIZE,
                max_num_seqs=running,
                max_num_batched_tokens=MAX_NUM_BATCHED_TOKENS,
                d0=D0,
                d1=D1,
                types=[(sum(PROMPT_LENS) // 2, sum(OUTPUT_LENS) // 2, rate)],
                output_lengths=[random.Random(seed + 1).randint(*OUTPUT_LENS) for _ in range(1000)],
                arrival_rate=rate,
                policy_options=POLICY_OPTIONS.get(policy),
            )
            self.hints = self.s.needs_output_lengths
        self.add(waiting + running)
        warm_up = self.step_python if policy == "python" else self.step_bare
        for _ in range(64):  # fill the running set
            warm_up()
        self.running_sum = 0
        self.num_steps = 0

    def add(self, n: int) -> None:
        """Adds ``n`` new waiting requests."""
        for _ in range(n):
            prompt, output = self.rng.randint(*PROMPT_LENS), self.rng.randint(*OUTPUT_LENS)
            if self.policy == "python":
                self.py.add_request(self.next_id, prompt, output)
            else:
                hint = output if self.hints else None
                self.s.add_request(self.next_id, prompt, output, output_len_hint=hint, type_id=0, arrival=self.now)
            self.next_id += 1

    def step_python(self) -> None:
        """One pure-Python step."""
        scheduled, _, _ = self.py.schedule()
        _, finished = self.py.complete_step()
        self.now += D0 + D1 * sum(n for _, n, _ in scheduled)
        self.add(len(finished))

    def step_bare(self) -> None:
        """``schedule`` + ``complete_step``, replacing finished requests."""
        step = self.s.schedule(self.now)
        outcome = self.s.complete_step()
        self.now += D0 + D1 * step.num_batched_tokens
        self.add(len(outcome.finished))

    def step_read(self) -> None:
        """As :meth:`step_bare`, reading the decisions as Python objects."""
        step = self.s.schedule(self.now)
        outcome = self.s.complete_step()
        _ = step.scheduled, step.preempted, step.admitted, outcome.emitted
        self.now += D0 + D1 * step.num_batched_tokens
        self.add(len(outcome.finished))

    def step_arrays(self) -> None:
        """As :meth:`step_bare`, reading the decisions as numpy arrays."""
        step = self.s.schedule(self.now)
        outcome = self.s.complete_step()
        _ = step.request_ids, step.num_tokens, step.is_prefill, step.preempted, step.admitted
        _ = outcome.request_ids, outcome.num_output_tokens
        self.now += D0 + D1 * step.num_batched_tokens
        self.add(len(outcome.finished))

    def variants(self) -> dict[str, Callable[[], None]]:
        """The timed step of each column."""
        if self.policy == "python":
            return {"python": self.step_python}
        variants = {"bare": self.step_bare, "+read": self.step_read}
        if HAS_ARRAYS:
            variants["+arrays"] = self.step_arrays
        return variants

    def time_steps(self, step: Callable[[], None], num_steps: int) -> float:
        """Mean microseconds per step over ``num_steps`` steps."""
        t0 = time.perf_counter_ns()
        for _ in range(num_steps):
            step()
        elapsed = time.perf_counter_ns() - t0
        sched = self.py if self.policy == "python" else self.s
        assert sched.num_waiting >= self.waiting - 1, f"{self.policy}: the waiting queue drained"
        self.running_sum += sched.num_running
        self.num_steps += 1
        return elapsed / num_steps / 1000


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", action="append", choices=POLICY_NAMES, help="policies (default: all)")
    p.add_argument("--steps", type=int, default=1000, help="timed steps per repeat and column")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smoke run: one small size, 20 steps, 1 repeat")
    args = p.parse_args(argv)
    sizes = [(r, w) for r in (64, 256, 512) for w in (1000, 10000)]
    if args.quick:
        sizes, args.steps, args.repeats = [(16, 100)], 20, 1
    policies = list(args.policy or POLICY_NAMES)
    print(
        f"fluidsched {fluidsched.__version__}, Python {platform.python_version()}, {platform.machine()}; "
        f"{args.steps} steps x {args.repeats} repeats per column; us per step (median over repeats)"
    )
    header = f"{'policy':>12} {'running':>8} {'waiting':>8} {'mean run':>9} {'bare':>7} {'+read':>7} {'+arrays':>8}"
    print(f"{header} {'python':>8} {'read/py':>8} {'arr/py':>7} {'<=10us read/arr':>16}")
    for running, waiting in sizes:
        benches = [Bench(policy, running, waiting, seed=1) for policy in [*policies, "python"]]
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(max(args.repeats, 1)):
            for bench in benches:
                for name, step in bench.variants().items():
                    times.setdefault((bench.policy, name), []).append(bench.time_steps(step, args.steps))
        med = {key: statistics.median(values) for key, values in times.items()}
        python_us = med[("python", "python")]
        for bench in benches[:-1]:
            read = med[(bench.policy, "+read")]
            arrays = med.get((bench.policy, "+arrays"), float("nan"))
            target = ""
            if running == TARGET_RUNNING:
                target = "/".join("met" if us <= TARGET_US else "missed" for us in (read, arrays) if us == us)
            print(
                f"{bench.policy:>12} {running:>8,} {waiting:>8,} {bench.running_sum / bench.num_steps:>9.1f} "
                f"{med[(bench.policy, 'bare')]:>7.2f} {read:>7.2f} {arrays:>8.2f} {python_us:>8.2f} "
                f"{read / python_us:>8.3f} {arrays / python_us:>7.3f} {target:>16}"
            )


if __name__ == "__main__":
    main()
