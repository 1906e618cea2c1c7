"""The experiment suite behind ``bench/RESULTS.md``: every policy from light load into overload on the WAIT paper's
setups, with ``fluidsched.sweep``. One command regenerates every CSV, every plot and the tables of RESULTS.md::

    python bench/experiments/run_all.py            # or: make experiments   (about a minute on 2 cores)
    python bench/experiments/run_all.py --only 1,6 # some experiments

Each experiment writes ``bench/experiments/results/<name>.csv`` and ``<name>/*.png``; the tables between the
GENERATED markers of ``bench/RESULTS.md`` are rewritten from the CSVs (the prose around them is not).
Same seeds, same numbers: the whole suite is deterministic.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fluidsched

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RESULTS_MD = HERE.parent / "RESULTS.md"

ALL = ["vllm", "vllm-v0", "wait", "nested-wait", "sarathi", "mc-sf", "sglang", "orca"]
UNKNOWN_LENGTHS = [p for p in ALL if p != "wait"]
LOADS = [0.5, 0.7, 0.9, 1.0, 1.1, 1.3]
TWO = [(50, 156, 167.0), (100, 171, 31.0)]
TEN = [(60, 50 * (k + 1), float(w)) for k, w in enumerate((23, 11, 8, 7, 6, 4, 3, 2, 1, 1))]


@dataclass
class Experiment:
    """One sweep of the suite."""

    key: str
    name: str
    title: str
    workloads: Any
    policies: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    loads: list[float] = field(default_factory=lambda: list(LOADS))
    num_requests: int = 20_000
    seeds: list[int] = field(default_factory=lambda: [0, 1])


def experiments() -> list[Experiment]:
    """The suite (issue 10's list, in its order)."""
    memory = {"max_num_seqs": 4096}
    suite = [
        Experiment(
            "1", "two-types", "Known lengths, two types (the WAIT authors' first setup), memory binding",
            {"two-types": TWO}, ALL, memory,
        ),
        Experiment(
            "2", "ten-types", "Ten types: prompt 60, outputs 50-500, weights 23:11:8:7:6:4:3:2:1:1, memory binding",
            {"ten-types": TEN}, ALL, memory,
        ),
        Experiment(
            "3", "lmsys", "LMSYS-Chat-1M sample, unknown lengths, vLLM's default max_num_seqs 256",
            {"lmsys": "lmsys"}, UNKNOWN_LENGTHS,
        ),
        Experiment(
            "4", "azure", "Azure 2023 conversations with their own arrival pattern, time-scaled",
            {"azure": "azure"}, UNKNOWN_LENGTHS, num_requests=5000,
        ),
    ]  # fmt: skip
    for cap in (110, 128, 164):
        title = f"Two types with the paper's matched concurrency cap max_num_seqs {cap}"
        suite.append(Experiment("5", f"caps-{cap}", title, {"two-types": TWO}, ALL, {"max_num_seqs": cap}))
    # Heavy traffic: the arrival rate, the KV capacity and 1/d1 all multiplied by k together.
    for k in (1, 4, 16):
        settings = {"time_model": "linear", "d0": 0.01, "d1": 8e-5 / k, "kv_capacity": 118_784 * k}
        suite.append(
            Experiment(
                "6",
                f"scaling-x{k}",
                f"Heavy traffic: lambda, KV and 1/d1 all x{k} (linear time model)",
                {f"two-types-x{k}": [(p, o, r * k) for p, o, r in TWO]},
                ["vllm", "wait", "nested-wait", "sarathi"],
                {**settings, "max_num_seqs": 1 << 20},
                loads=[0.9, 1.0, 1.1, 1.3],
                num_requests=10_000 * k,
            )
        )
    return suite


def run(exp: Experiment, jobs: int) -> Any:
    out = RESULTS / f"{exp.name}.csv"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    rows = fluidsched.sweep(
        exp.workloads,
        exp.policies,
        loads=exp.loads,
        seeds=exp.seeds,
        num_requests=exp.num_requests,
        jobs=jobs,
        out=out,
        plot_dir=RESULTS / exp.name,
        **exp.settings,
    )
    print(f"[{exp.key}] {exp.name}: {len(rows)} runs in {time.perf_counter() - t0:.1f} s -> {out.name}", flush=True)
    return rows


def table(exp: Experiment, rows: Any) -> str:
    """Markdown: per load, each policy's throughput relative to vllm and to the fluid optimum at the arrival mix,
    p99 latency, and evictions per 1,000 requests."""
    groups: dict[tuple[str, float], list[Any]] = {}
    for r in rows:
        groups.setdefault((str(r["policy"]), round(float(r["load"]), 6)), []).append(r)

    def mean(policy: str, load: float, key: str) -> float:
        values = [float(r[key]) for r in groups[(policy, round(load, 6))]]
        return sum(values) / len(values)

    seeds = len(exp.seeds)
    lines = [
        f"**{exp.key}. {exp.title}** ({exp.num_requests:,} requests per run, mean of {seeds} seed"
        f"{'s' if seeds > 1 else ''}; plot: `experiments/results/{exp.name}/`; CSV: "
        f"`experiments/results/{exp.name}.csv`)",
        "",
        "| load | " + " | ".join(exp.policies) + " |",
        "|---" * (len(exp.policies) + 1) + "|",
    ]
    for load in exp.loads:
        base = mean("vllm", load, "throughput_tokens_per_s")
        cells = []
        for p in exp.policies:
            tput = mean(p, load, "throughput_tokens_per_s")
            fluid = mean(p, load, "fluid_mix_throughput_tokens_per_s")
            of_fluid = tput / fluid if fluid and math.isfinite(fluid) else math.nan
            evict = 1000 * mean(p, load, "num_preemptions") / max(1.0, mean(p, load, "num_requests"))
            p99 = mean(p, load, "latency_p99_s")
            cells.append(f"{tput / base:.3f} / {of_fluid:.2f} / {p99:.1f} s / {evict:.0f}")
        lines.append(f"| {load:.2f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Cells: throughput vs `vllm` / vs the fluid optimum at the arrival mix / p99 latency / evictions "
                 "per 1,000 requests.")  # fmt: skip
    return "\n".join(lines)


def rewrite_results(blocks: Sequence[str]) -> None:
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "<!-- BEGIN GENERATED -->\n<!-- END GENERATED -->\n"
    generated = "<!-- BEGIN GENERATED -->\n\n" + "\n\n".join(blocks) + "\n\n<!-- END GENERATED -->"
    text = re.sub(r"<!-- BEGIN GENERATED -->.*?<!-- END GENERATED -->", lambda _: generated, text, flags=re.S)
    RESULTS_MD.write_text(text)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--only", help="comma-separated experiment numbers (default: all)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    args = p.parse_args(argv)
    wanted = set(args.only.split(",")) if args.only else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    blocks = []
    t0 = time.perf_counter()
    for exp in experiments():
        if wanted is not None and exp.key not in wanted:
            from fluidsched.sweep_io import read_rows

            path = RESULTS / f"{exp.name}.csv"
            if not path.exists():
                continue
            rows = read_rows(path)
        else:
            rows = run(exp, args.jobs)
        blocks.append(table(exp, rows))
    rewrite_results(blocks)
    print(f"suite done in {time.perf_counter() - t0:.0f} s; tables written to {RESULTS_MD}", file=sys.stderr)


if __name__ == "__main__":
    main()
