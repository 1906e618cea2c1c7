"""Per-step overhead of the vLLM adapter (``fluidsched.vllm``) over stock vLLM 0.32.0, scheduler only, on CPU.

Run with the vLLM tier's environment (``tools/setup_vllm_env.sh``)::

    .venv-vllm/bin/python bench/vllm_overhead.py                  # sizes 64, 256, 512; 300 steps; 5 repeats
    .venv-vllm/bin/python bench/vllm_overhead.py --quick          # smoke run: size 16, 20 steps, 1 repeat

The setup is that of section 4.2 of the vLLM integration reference (vllm-integration.md): a real ``Scheduler``
built as ``EngineCore`` builds it (harness in ``tests/vllm_adapter``), one full-attention KV group of 200,000 blocks
of 16 tokens (memory never binds), prompts of 128 tokens, ``ignore_eos``, ``max_tokens`` 1800, a fake model runner
(one sampled token per request that finished prefill), no log stats. For each running size N (``max_num_seqs`` =
N), N requests are brought into decode, then 1,000 more are added to ``waiting``, where ``max_num_seqs`` blocks
them: every timed step is a pure decode step of N requests with a 1,000-request queue behind them.

Warm-up: one request arrives per step until N run (then steps continue until all N decode). Every variant thus
starts its timed window from the same state (Nested WAIT admits a cohort of one per step at these thresholds,
so an all-at-once warm-up would leave it with a different spread of output lengths, hence of block allocations
per step, than stock vLLM).

Variants, each a fresh scheduler per repeat, run interleaved (a, b, c, d, a, b, c, d, ...) in this process:

(a) ``stock``: ``vllm.v1.core.sched.scheduler.Scheduler``;
(b) ``vllm``: the adapter with the admit-all pass-through policy;
(c) ``wait``: the adapter with WAIT, one type ``[128, 1800, 5 req/s]``, fluid thresholds planned from it;
(d) ``nested-wait``: the adapter with Nested WAIT, the same type, segments at 64, 256 and 1024 output tokens (so
    requests cross segment boundaries during the window: paused in ``update_from_output()``, resumed by the next
    step's decision).

Measured iteration times are not fed back (``measure_iterations: false``): a fake step is ~1000x shorter than
the time model's, and re-planning would then be part of what is timed. Each timed step is
``schedule()`` (``perf_counter_ns`` around it), the fake runner output built right after it (not timed), then
``update_from_output()`` (timed). The script checks that every timed step schedules exactly N requests for one
token each, that N run and the whole queue still waits after every step, and that nothing finishes.

Reported: medians over all timed steps of all repeats, per variant (schedule, update, their per-step sum, p90
of the sum), the overhead of each adapter variant as a delta and as % of stock, and the range over repeats of
the paired per-repeat deltas (the same repeat's stock run is the pair; a range that straddles 0 means noise). A
CPU calibration (a 1e6-iteration Python ``for`` loop, in a function and at module level) is printed before and after.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "vllm_adapter"))

# mypy finds `harness` when it checks the whole tree (tests/ is in its files); alone, it cannot.
import harness as h  # type: ignore[import-not-found, unused-ignore]

BLOCK_SIZE = 16
NUM_BLOCKS = 200_000
PROMPT_LEN = 128
MAX_NUM_BATCHED_TOKENS = 8192
#: The request type WAIT and Nested WAIT plan with: (prompt, output, arrival rate req/s).
TYPES = [[PROMPT_LEN, 1800, 5.0]]
NESTED_SEGMENTS = [64, 256, 1024]

#: Adapter settings per variant; None is stock vLLM.
VARIANTS: dict[str, dict[str, Any] | None] = {
    "stock": None,
    "vllm": {"policy": "vllm", "measure_iterations": False},
    "wait": {"policy": "wait", "types": TYPES, "measure_iterations": False},
    "nested-wait": {
        "policy": "nested-wait",
        "types": TYPES,
        "measure_iterations": False,
        "options": {"segments": NESTED_SEGMENTS},
    },
}


@dataclass
class Samples:
    """Timed steps of one variant at one size: nanoseconds per step, and per-repeat medians of the sum."""

    schedule_ns: list[int] = field(default_factory=list)
    update_ns: list[int] = field(default_factory=list)
    repeat_sum_medians: list[float] = field(default_factory=list)
    thresholds: list[int] = field(default_factory=list)
    paused_seen: int = 0

    @property
    def sum_ns(self) -> list[int]:
        return [s + u for s, u in zip(self.schedule_ns, self.update_ns, strict=True)]


def _loop_in_function() -> None:
    for _ in range(1_000_000):
        pass


#: The same loop at module level: its counter is a global (a dict store per iteration), so it runs slower.
_LOOP_AT_MODULE_LEVEL = compile("for _ in range(1_000_000):\n    pass\n", "<calibration>", "exec")


def calibrate(repeats: int = 5) -> str:
    """Milliseconds for a 1e6-iteration Python ``for`` loop, inside a function and at module level (median over
    ``repeats``, then min)."""
    fn: list[float] = []
    module: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        _loop_in_function()
        t1 = time.perf_counter_ns()
        exec(_LOOP_AT_MODULE_LEVEL, {})
        t2 = time.perf_counter_ns()
        fn.append((t1 - t0) / 1e6)
        module.append((t2 - t1) / 1e6)
    return (
        f"1e6-iteration Python for loop: {statistics.median(fn):.1f} ms in a function (min {min(fn):.1f}), "
        f"{statistics.median(module):.1f} ms at module level (min {min(module):.1f})"
    )


def build(factory: Any, settings: dict[str, Any] | None, model_dir: str, size: int) -> Any:
    with h.quiet_warnings():
        return h.make_vllm_scheduler(
            factory,
            model_dir=model_dir,
            max_num_seqs=size,
            max_num_batched_tokens=MAX_NUM_BATCHED_TOKENS,
            num_blocks=NUM_BLOCKS,
            block_size=BLOCK_SIZE,
            additional_config=None if settings is None else {"fluidsched": settings},
        )


def step(sched: Any) -> tuple[Any, Any]:
    out = sched.schedule()
    return out, sched.update_from_output(out, h.fake_runner_output(out, scheduler=sched))


def warm_up(sched: Any, requests: Sequence[Any], size: int) -> int:
    """One arrival per step until ``size`` run, then steps until every one decodes; returns the steps taken."""
    pending = list(requests)
    for steps in range(1, 10 * size + 100):
        if pending:
            sched.add_request(pending.pop(0))
        step(sched)
        if not pending and len(sched.running) == size and all(r.num_output_tokens > 0 for r in sched.running):
            return steps
    raise RuntimeError(f"warm-up did not reach {size} decoding requests ({len(sched.running)} running)")


def check_step(out: Any, engine_outputs: Any, sched: Any, size: int, waiting: int, where: str) -> None:
    scheduled = out.num_scheduled_tokens
    ok = len(scheduled) == size and out.total_num_scheduled_tokens == size
    ok = ok and len(sched.running) == size and len(sched.waiting) == waiting and not out.preempted_req_ids
    finished = [o for eco in engine_outputs.values() for o in eco.outputs if o.finish_reason is not None]
    if not ok or finished:
        raise RuntimeError(
            f"{where}: not in steady state: {len(scheduled)} scheduled for {out.total_num_scheduled_tokens} "
            f"tokens, {len(sched.running)} running, {len(sched.waiting)} waiting, {len(finished)} finished, "
            f"preempted {sorted(out.preempted_req_ids or ())}"
        )


def run_once(
    factory: Any,
    settings: dict[str, Any] | None,
    model_dir: str,
    size: int,
    waiting: int,
    steps: int,
    max_tokens: int,
    tag: str,
    into: Samples,
) -> tuple[int, ...]:
    """One fresh scheduler: warm-up, queue, ``steps`` timed steps. Returns the output lengths at the start of the
    window (sorted), so that the caller can check every variant started from the same state."""
    sched = build(factory, settings, model_dir, size)
    requests = [h.make_request(f"{tag}-{i}", PROMPT_LEN, max_tokens, block_size=BLOCK_SIZE) for i in range(size)]
    warm_up(sched, requests, size)
    for i in range(waiting):
        sched.add_request(h.make_request(f"{tag}-w{i}", PROMPT_LEN, max_tokens, block_size=BLOCK_SIZE))
    start_state = tuple(sorted(r.num_output_tokens for r in sched.running))
    controller = getattr(sched, "controller", None)
    if controller is not None:
        into.thresholds = list(controller.thresholds)
    sched_ns: list[int] = []
    upd_ns: list[int] = []
    clock = time.perf_counter_ns
    fake: Callable[..., Any] = h.fake_runner_output
    gc.collect()
    for i in range(steps):
        t0 = clock()
        out = sched.schedule()
        t1 = clock()
        runner_out = fake(out, scheduler=sched)
        t2 = clock()
        engine_outputs = sched.update_from_output(out, runner_out)
        t3 = clock()
        sched_ns.append(t1 - t0)
        upd_ns.append(t3 - t2)
        check_step(out, engine_outputs, sched, size, waiting, f"{tag} step {i}")
        if controller is not None:
            into.paused_seen += int(controller.num_paused)
    into.schedule_ns += sched_ns
    into.update_ns += upd_ns
    into.repeat_sum_medians.append(statistics.median(s + u for s, u in zip(sched_ns, upd_ns, strict=True)))
    del sched, requests
    return start_state


def quantile(xs: Sequence[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(q * len(ys)))]


def us(ns: float) -> str:
    return f"{ns / 1e3:,.0f}"


def table(results: dict[int, dict[str, Samples]], waiting: int) -> list[str]:
    lines = [
        "| running (max_num_seqs) | waiting | variant | `schedule()` µs | `update_from_output()` µs | sum µs "
        "| sum p90 µs | Δ sum vs stock µs | Δ % of stock | Δ per repeat µs (min … max) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, by_variant in results.items():
        stock = by_variant["stock"]
        stock_sum = statistics.median(stock.sum_ns)
        for name, s in by_variant.items():
            total = statistics.median(s.sum_ns)
            cells = [
                f"{size} ({size})",
                str(waiting),
                f"**{name}**" if name == "stock" else name,
                us(statistics.median(s.schedule_ns)),
                us(statistics.median(s.update_ns)),
                us(total),
                us(quantile(s.sum_ns, 0.9)),
            ]
            if name == "stock":
                cells += ["-", "-", "-"]
            else:
                delta = total - stock_sum
                paired = [v - b for v, b in zip(s.repeat_sum_medians, stock.repeat_sum_medians, strict=True)]
                cells += [
                    f"{delta / 1e3:+,.1f}",
                    f"{100 * delta / stock_sum:+.1f} %",
                    f"{min(paired) / 1e3:+,.1f} … {max(paired) / 1e3:+,.1f}",
                ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512], help="running requests (= max_num_seqs)")
    p.add_argument("--steps", type=int, default=300, help="timed steps per run")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats of every variant")
    p.add_argument("--waiting", type=int, default=1000, help="requests queued behind the running ones")
    p.add_argument("--max-tokens", type=int, default=1800, help="max_tokens of every request (never reached)")
    p.add_argument("--quick", action="store_true", help="smoke run: sizes 16, 20 steps, 1 repeat")
    args = p.parse_args()
    if args.quick:
        args.sizes, args.steps, args.repeats = [16], 20, 1
    if min(args.sizes) < 1 or args.steps < 1 or args.repeats < 1 or args.waiting < 1:
        p.error("sizes, steps, repeats and waiting must be >= 1")
    # Warm-up admits one request per step, so the oldest has about `size` outputs when the window starts.
    if max(args.sizes) + args.steps + 10 >= args.max_tokens:
        p.error(f"--max-tokens {args.max_tokens} would let requests finish inside the window; raise it")

    h.import_vllm_quietly()
    vllm_mod = sys.modules["vllm"]
    scheduler_cls, _ = h.scheduler_classes()
    import fluidsched
    from fluidsched.vllm import make_scheduler

    factories: dict[str, Any] = {name: scheduler_cls if s is None else make_scheduler for name, s in VARIANTS.items()}
    calibration = calibrate()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"vLLM {vllm_mod.__version__}, fluidsched {fluidsched.__version__}, Python {platform.python_version()} "
        f"({platform.machine()}, {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})"
    )
    print(f"CPU calibration before: {calibration}")
    print(
        f"setup: {NUM_BLOCKS:,} blocks x {BLOCK_SIZE} tokens, prompts {PROMPT_LEN}, ignore_eos, max_tokens "
        f"{args.max_tokens}, max_num_batched_tokens {MAX_NUM_BATCHED_TOKENS}; {args.steps} timed steps x "
        f"{args.repeats} repeats per variant, variants interleaved; sizes {args.sizes}",
        flush=True,
    )

    started = time.perf_counter()
    results: dict[int, dict[str, Samples]] = {}
    with tempfile.TemporaryDirectory(prefix="fluidsched-bench-") as tmp:
        model_dir = h.write_stub_model_config(tmp)
        for size in args.sizes:
            by_variant = {name: Samples() for name in VARIANTS}
            results[size] = by_variant
            for rep in range(args.repeats):
                reference: tuple[int, ...] | None = None
                for name, settings in VARIANTS.items():
                    state = run_once(
                        factories[name],
                        settings,
                        model_dir,
                        size,
                        args.waiting,
                        args.steps,
                        args.max_tokens,
                        f"{name}-{size}-{rep}",
                        by_variant[name],
                    )
                    if reference is None:
                        reference = state
                    elif state != reference:
                        raise RuntimeError(f"{name} at {size} started its window from another state than stock")
                    gc.collect()
                sums = "  ".join(f"{n} {us(s.repeat_sum_medians[-1])}" for n, s in by_variant.items())
                print(f"  size {size} repeat {rep + 1}/{args.repeats}: median sum µs: {sums}", flush=True)

    wall = time.perf_counter() - started
    print(f"CPU calibration after: {calibrate()}; benchmark wall time {wall:.0f} s")
    print()
    print("\n".join(table(results, args.waiting)))
    print()
    for size, by_variant in results.items():
        notes = ", ".join(
            f"{name} thresholds {s.thresholds}"
            + (f" (paused requests seen at step ends: {s.paused_seen})" if name == "nested-wait" else "")
            for name, s in by_variant.items()
            if name not in ("stock", "vllm")
        )
        print(f"size {size}: {notes}")
    print(
        "Every timed step scheduled exactly N requests for one token each, with N running and the whole queue "
        "waiting after it; no request finished; every variant started from the same output lengths."
    )


if __name__ == "__main__":
    main()
