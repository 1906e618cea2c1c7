"""``fluidsched demo``: every policy on the bundled Azure trace at a load where KV memory binds."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from fluidsched._core import POLICY_NAMES
from fluidsched.data import bundled_trace
from fluidsched.simulate import SimResult, load_workload, simulate

__all__ = ["DEMO_RATE", "add_parser", "run_demo"]

#: Arrival rate of the demo (req/s). A Llama-2-7B / A100 replica saturates near 5 req/s on the Azure conversation
#: sample (prompts average ~1,150 tokens): at this rate the 118,784-token KV cache binds and the policies
#: differ.
DEMO_RATE = 5.0

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


def _plot(results: list[SimResult], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return False
    fig, (ax_kv, ax_lat) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        it = r.iterations
        if len(it["start"]):
            ax_kv.plot(it["start"], it["used_blocks"] / max(1, r.num_blocks), lw=0.6, label=r.policy)
        lat = np.sort(r.latency)
        ax_lat.plot(lat, np.arange(1, len(lat) + 1) / len(lat), label=r.policy)
    ax_kv.set(xlabel="simulated time (s)", ylabel="KV cache in use (fraction)", title="KV usage")
    ax_lat.set(xlabel="end-to-end latency (s)", ylabel="fraction of requests", title="latency CDF", xscale="log")
    for ax in (ax_kv, ax_lat):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def run_demo(
    rate: float = DEMO_RATE,
    num_requests: int | None = None,
    policies: list[str] | None = None,
    out_dir: Path = Path("."),
    as_json: bool = False,
    quiet: bool = False,
) -> list[SimResult]:
    """Runs every policy (or ``policies``) on the bundled Azure trace at ``rate`` req/s and reports them."""
    trace = bundled_trace("azure")
    workload = load_workload(trace, rate=rate, num_requests=num_requests)
    names = policies or list(POLICY_NAMES)
    if not quiet:
        print(
            f"fluidsched demo: {len(workload)} requests from {trace.name} at {rate:g} req/s, Llama-2-7B on "
            f"A100-80GB (118,784 KV tokens)",
            file=sys.stderr,
        )
    results = []
    t0 = time.perf_counter()
    for name in names:
        results.append(simulate(workload, name, progress=not quiet))
    elapsed = time.perf_counter() - t0
    if as_json:
        from fluidsched.cli import jsonable

        print(json.dumps([jsonable({"policy": r.policy, **r.summary()}) for r in results], indent=2))
    else:
        print(_table(results))
        print(f"\n{len(names)} policies x {len(workload)} requests simulated in {elapsed:.2f} s wall time")
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "fluidsched-demo.png"
    title = f"{len(workload)} Azure conversation requests at {rate:g} req/s, Llama-2-7B / A100 (118,784 KV tokens)"
    if _plot(results, png, title):
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
    )
    return 0


def add_parser(sub: Any) -> None:
    """Registers the ``demo`` subcommand."""
    from fluidsched.cli import _positive_float, _positive_int

    p = sub.add_parser(
        "demo",
        help="compare every policy on the bundled Azure trace (table + PNG plot)",
        description="Run every available policy on the bundled Azure 2023 conversation sample at a "
        "load where KV memory binds; print a comparison table and write a PNG plot.",
    )
    p.add_argument("--rate", type=_positive_float, default=DEMO_RATE, help=f"arrival rate, req/s (default {DEMO_RATE})")
    p.add_argument("--num-requests", type=_positive_int, metavar="N", help="use only the first N requests")
    p.add_argument("--policy", action="append", choices=POLICY_NAMES, help="run only these policies (repeatable)")
    p.add_argument("--out-dir", default=".", metavar="DIR", help="where to write fluidsched-demo.png (default: .)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_demo)
