"""``fluidsched demo``: every policy on a workload where KV memory binds, as a table and one PNG.

Two scenarios. ``paper`` (the default) is the WAIT authors' first setup: two request types (prompt/output
50/156 and 100/171 tokens, arrival rates in the ratio 167:31) on the Llama-2-7B / A100 preset with no
concurrency cap (``max_num_seqs`` 4096), so the 118,784-token KV cache is what binds. At 40 req/s the cache is
full: greedy admission (``vllm``, ``vllm-v0``) overfills it and evicts thousands of requests, while WAIT's
fluid-guided thresholds keep it just below full and evict none. ``azure`` replays the bundled Azure 2023
conversation sample at 5 req/s, where long prompts make the load compute-bound and chunked prefill (``sarathi``)
is what matters.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluidsched._core import POLICY_NAMES, Workload
from fluidsched.data import bundled_trace
from fluidsched.plan import plan
from fluidsched.simulate import DEFAULT_KV_CAPACITY, SimResult, load_workload, simulate

__all__ = ["DEMO_RATE", "SCENARIOS", "Scenario", "add_parser", "run_demo"]


@dataclass(frozen=True)
class Scenario:
    """A demo setup: what runs, and the sentence that says so on the plot."""

    #: Name on the command line.
    name: str
    #: Default arrival rate (req/s).
    rate: float
    #: Default number of requests.
    num_requests: int
    #: ``max_num_seqs`` of every run.
    max_num_seqs: int
    #: One line for ``--help``.
    summary: str


#: The demo's setups (see the module documentation).
SCENARIOS = {
    "paper": Scenario(
        "paper",
        rate=40.0,
        num_requests=20_000,
        max_num_seqs=4096,
        summary="two request types (the WAIT authors' setup), KV memory binds: the paper's point",
    ),
    "azure": Scenario(
        "azure",
        rate=5.0,
        num_requests=5_000,
        max_num_seqs=256,
        summary="the bundled Azure 2023 conversation sample, vLLM's default max_num_seqs 256",
    ),
}

#: Arrival rate (req/s) of the default scenario: just above ``plan``'s fluid limit for its mix (38.4 req/s), so
#: the KV cache is full and greedy admission evicts.
DEMO_RATE = SCENARIOS["paper"].rate

#: The paper scenario's request types: (prompt_len, output_len, rate weight).
_PAPER_TYPES = ((50, 156, 167.0), (100, 171, 31.0))


def _workload(scenario: Scenario, rate: float, num_requests: int) -> tuple[Workload, str]:
    """The scenario's workload and a caption line describing it."""
    if scenario.name == "azure":
        workload = load_workload(bundled_trace("azure"), rate=rate, num_requests=num_requests)
        return workload, f"{len(workload):,} Azure 2023 conversation requests at {rate:g} req/s"
    weight = sum(w for _, _, w in _PAPER_TYPES)
    types = [(p, o, rate * w / weight) for p, o, w in _PAPER_TYPES]
    limit = plan(types=types, max_num_seqs=scenario.max_num_seqs)["max_rate_per_s"]
    workload = Workload.from_types(types, num_requests, seed=1)
    caption = (
        f"{len(workload):,} requests of two types (prompt/output 50/156 and 100/171 tokens, rates 167:31) at "
        f"{rate:g} req/s = {rate / limit:.2f} of plan's fluid limit ({limit:.1f} req/s)"
    )
    return workload, caption


_COLUMNS = (
    ("policy", "policy", "{}"),
    ("throughput_tokens_per_s", "tok/s", "{:.0f}"),
    ("latency_mean_s", "lat mean s", "{:.2f}"),
    ("latency_p99_s", "lat p99 s", "{:.2f}"),
    ("ttft_mean_s", "TTFT mean s", "{:.2f}"),
    ("ttft_p99_s", "TTFT p99 s", "{:.2f}"),
    ("tbt_p99_s", "TBT p99 ms", "{:.1f}"),
    ("kv_usage_max_fraction", "KV max", "{:.0%}"),
    ("num_preemptions", "preempt", "{}"),
    ("wall_time_s", "wall s", "{:.2f}"),
)


def _table(results: list[SimResult]) -> str:
    header = [title for _, title, _ in _COLUMNS]
    rows = []
    for r in results:
        s: dict[str, Any] = {"policy": r.policy, **r.summary()}
        row = []
        for key, _, fmt in _COLUMNS:
            value = s[key] * 1e3 if key == "tbt_p99_s" else s[key]
            row.append(fmt.format(value))
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


# One colour, marker and line style per policy, fixed by name so every demo plot reads the same.
_STYLE = {
    "vllm": ("#1f77b4", "o", "-"),
    "wait": ("#d62728", "s", "-"),
    "nested-wait": ("#ff7f0e", "D", "--"),
    "sarathi": ("#2ca02c", "^", "-."),
    "mc-sf": ("#9467bd", "v", ":"),
    "sglang": ("#8c564b", "P", "--"),
    "orca": ("#7f7f7f", "X", ":"),
    "vllm-v0": ("#17becf", "*", "-."),
}


def _plot(results: list[SimResult], path: Path, caption: str) -> bool:
    """Throughput and evictions, latency percentiles, and KV usage over time (one small panel per policy)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return False
    n = len(results)
    cols = max(2, min(4, n))
    rows = (n + cols - 1) // cols
    fig = plt.figure(figsize=(13, 4.2 + 2.1 * rows))
    grid = fig.add_gridspec(1 + rows, cols, height_ratios=[2.0] + [1.0] * rows, hspace=0.55, wspace=0.25)
    names = [r.policy for r in results]
    colours = [_STYLE.get(name, ("#333333", "o", "-"))[0] for name in names]
    y = np.arange(n)

    ax_tp = fig.add_subplot(grid[0, : cols // 2])
    tput = np.array([r.summary()["throughput_tokens_per_s"] for r in results])
    ax_tp.barh(y, tput, color=colours)
    for i, r in enumerate(results):
        per_k = 1000 * r.summary()["num_preemptions"] / max(1, r.summary()["num_requests"])
        ax_tp.text(tput[i], i, f" {tput[i]:,.0f}  ({per_k:.0f} evictions / 1k req)", va="center", fontsize=8)
    ax_tp.set(yticks=y, yticklabels=names, xlabel="throughput (output tokens / s)", title="throughput, evictions")
    ax_tp.set_xlim(0, tput.max() * 1.75)
    ax_tp.invert_yaxis()

    ax_lat = fig.add_subplot(grid[0, cols // 2 :], sharey=ax_tp)
    for i, r in enumerate(results):
        p50, p99 = np.percentile(r.latency, [50, 99])
        ax_lat.plot([p50, p99], [i, i], color=colours[i], lw=2)
        ax_lat.plot(p50, i, "o", color=colours[i])
        ax_lat.plot(p99, i, "|", color=colours[i], ms=12, mew=2)
        ax_lat.plot(r.latency.mean(), i, "x", color="black", ms=6)
    ax_lat.set(xscale="log", xlabel="end-to-end latency (s): o p50, x mean, | p99", title="latency (same rows)")
    ax_lat.tick_params(labelleft=False)
    for ax in (ax_tp, ax_lat):
        ax.grid(axis="x", alpha=0.3)

    for i, r in enumerate(results):
        ax = fig.add_subplot(grid[1 + i // cols, i % cols])
        it = r.iterations
        ax.axhline(100, color="black", lw=0.6, ls=":", zorder=0)
        if len(it["start"]):
            ax.plot(it["start"], 100 * it["used_blocks"] / max(1, r.num_blocks), lw=0.7, color=colours[i])
            ax.set_xlim(0, float(it["start"][-1]))
        ax.set_ylim(0, 105)
        ax.set_title(f"{r.policy}: KV in use (%)", fontsize=9)
        ax.tick_params(labelsize=7)
        if i // cols == rows - 1:
            ax.set_xlabel("simulated time (s)", fontsize=8)
    fig.suptitle("fluidsched demo: " + caption, fontsize=10, wrap=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def run_demo(
    rate: float | None = None,
    num_requests: int | None = None,
    policies: list[str] | None = None,
    out_dir: Path = Path("."),
    as_json: bool = False,
    quiet: bool = False,
    scenario: str = "paper",
) -> list[SimResult]:
    """Runs every policy (or ``policies``) on ``scenario`` (see :data:`SCENARIOS`) and reports them.

    ``rate`` (req/s) and ``num_requests`` default to the scenario's own.
    """
    setup = SCENARIOS[scenario]
    rate = setup.rate if rate is None else rate
    workload, caption = _workload(setup, rate, setup.num_requests if num_requests is None else num_requests)
    machine = (
        f"Llama-2-7B / A100-80GB preset ({DEFAULT_KV_CAPACITY:,} KV tokens, block 16), "
        f"max_num_seqs {setup.max_num_seqs}"
    )
    caption = f"{caption};\n{machine}"
    names = policies or list(POLICY_NAMES)
    if not quiet:
        print(f"fluidsched demo ({scenario}): {caption}", file=sys.stderr)
    results = []
    t0 = time.perf_counter()
    for name in names:
        results.append(simulate(workload, name, max_num_seqs=setup.max_num_seqs, progress=not quiet))
    elapsed = time.perf_counter() - t0
    if as_json:
        from fluidsched.cli import jsonable

        print(json.dumps([jsonable({"policy": r.policy, **r.summary()}) for r in results], indent=2))
    else:
        print(_table(results))
        print(f"\n{len(names)} policies x {len(workload)} requests simulated in {elapsed:.2f} s wall time")
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "fluidsched-demo.png"
    if _plot(results, png, caption):
        if not quiet:
            print(f"plot written to {png}", file=sys.stderr)
    elif not quiet:
        print("plot skipped: install matplotlib (pip install 'fluidsched[plot]') for the PNG", file=sys.stderr)
    return results


def _cmd_demo(args: argparse.Namespace) -> int:
    run_demo(
        rate=args.rate,
        num_requests=args.num_requests,
        policies=args.policy,
        out_dir=Path(args.out_dir),
        as_json=args.json,
        quiet=args.quiet,
        scenario=args.scenario,
    )
    return 0


def add_parser(sub: Any) -> None:
    """Registers the ``demo`` subcommand."""
    from fluidsched.cli import _positive_float, _positive_int

    scenarios = "\n".join(
        f"  {s.name:<6} {s.summary} (default {s.rate:g} req/s, {s.num_requests:,} requests)" for s in SCENARIOS.values()
    )
    p = sub.add_parser(
        "demo",
        help="compare every policy where KV memory binds (table + PNG plot)",
        description="Run every policy on a workload where KV memory binds; print a comparison table and write "
        "fluidsched-demo.png (throughput and evictions, latency percentiles, KV usage over time per policy).",
        epilog=f"scenarios:\n{scenarios}\n\nexamples:\n  fluidsched demo\n  fluidsched demo --scenario azure"
        " --rate 4\n  fluidsched demo --policy vllm --policy wait --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="paper", help="what to run (default: paper)")
    p.add_argument("--rate", type=_positive_float, help="arrival rate, req/s (default: the scenario's)")
    p.add_argument(
        "--num-requests", type=_positive_int, metavar="N", help="number of requests (default: the scenario's)"
    )
    p.add_argument("--policy", action="append", choices=POLICY_NAMES, help="run only these policies (repeatable)")
    p.add_argument("--out-dir", default=".", metavar="DIR", help="where to write fluidsched-demo.png (default: .)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_demo)
