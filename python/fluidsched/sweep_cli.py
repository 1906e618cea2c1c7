"""``fluidsched sweep``: the command line of :func:`fluidsched.sweep` (registered by ``fluidsched.cli``).

Every ``simulate`` option that is not a grid axis (time model, KV capacity, scheduler limits, model length, trace
reading, ...) is taken over from the ``simulate`` subcommand's own parser, so both accept and check the same
settings and each run of the grid is what ``fluidsched simulate`` would run with them.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fluidsched._core import POLICY_NAMES, POLICY_OPTIONS, Workload
from fluidsched.data import BUNDLED_TRACES, bundled_trace
from fluidsched.errors import InvalidConfigError
from fluidsched.simulate import OptionValue
from fluidsched.sweep import mix_name, policy_variants, run_sweep, settings_digest
from fluidsched.sweep_grid import WorkloadSource

__all__ = ["add_parser", "run_command"]

#: ``simulate`` options that are axes of the grid (or its own output) in a sweep; every other one is taken over.
_NOT_TAKEN_OVER = frozenset({"help", "policy", "options", "trace", "types", "rate", "seed", "json", "out", "quiet"})
EXAMPLES = """\
examples:
  # four policies on the bundled Azure trace at 50 %, 80 % and 100 % of the fluid model's largest stable rate
  fluidsched sweep --workload azure --num-requests 2000 --policy vllm vllm-v0 sarathi nested-wait \\
      --load 0.5,0.8,1.0 --out azure.csv --plot plots/

  # a typed mix (rates are weights under --load), two seeds, a WAIT variant with a smaller token budget
  fluidsched sweep --type 50:156:167 --type 100:171:31 --policy vllm wait wait:token_budget=512 \\
      --load 0.7,0.9,1.1 --seed 0,1 --num-requests 3000 --out mix.csv

  # arrival rates instead of loads, options for every run of a policy, on a Ray cluster
  fluidsched sweep --workload lmsys --rate 10,20,30 --policy sglang sarathi -o sarathi:token_budget=1024 \\
      --ray auto --out lmsys.csv

An interrupted sweep (Ctrl-C) keeps the runs it finished in --out; the same command with --resume runs the rest.
policies: """ + ", ".join(POLICY_NAMES)


def _number_list(kind: str, parse: type[float] | type[int]) -> Any:
    def parse_list(text: str) -> list[Any]:
        try:
            values = [parse(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind}, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind}, got {text!r}")
        return values

    return parse_list


def _policy_option(text: str) -> tuple[str, tuple[str, OptionValue]]:
    from fluidsched.cli import _parse_option

    policy, sep, pair = text.partition(":")
    if not sep or policy not in POLICY_OPTIONS:
        raise argparse.ArgumentTypeError(
            f"expected POLICY:KEY=VALUE with POLICY one of {', '.join(POLICY_NAMES)}, got {text!r}"
        )
    return policy, _parse_option(pair)


def add_parser(sub: Any) -> None:
    """Registers ``sweep`` next to ``simulate`` (whose non-grid options it takes over)."""
    from fluidsched.cli import _parse_type, _positive_int

    simulate_parser: argparse.ArgumentParser = sub.choices["simulate"]
    p = sub.add_parser(
        "sweep",
        help="simulate a grid of policies x rates or loads x seeds x workloads, in parallel; CSV and plots",
        description="Run every combination of workloads, policies (with options), arrival rates or loads, and\n"
        "seeds, on local processes or a Ray cluster. Rows (SimResult.summary() plus the grid's coordinates)\n"
        "go to --out as runs finish; plots to --plot. Every other simulate option applies to every run.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("grid")
    g.add_argument(
        "-w",
        "--workload",
        dest="workloads",
        action="append",
        metavar="NAME|FILE",
        help=f"a bundled trace ({', '.join(BUNDLED_TRACES)}) or a trace file (repeatable)",
    )
    g.add_argument(
        "--type",
        dest="types",
        action="append",
        type=_parse_type,
        metavar="PROMPT:OUTPUT:RATE",
        help="request type of one synthetic workload (repeatable; with --load the rates are weights)",
    )
    g.add_argument(
        "-p",
        "--policy",
        dest="policies",
        action="extend",
        nargs="+",
        metavar="POLICY[:KEY=VALUE...]",
        help="policies, each optionally with options (a variant): vllm wait:token_budget=512 (default: all)",
    )
    g.add_argument(
        "-o",
        "--policy-option",
        dest="policy_options",
        action="append",
        type=_policy_option,
        metavar="POLICY:KEY=VALUE",
        help="option for every variant of POLICY (repeatable), e.g. -o sarathi:token_budget=1024",
    )
    axis = g.add_mutually_exclusive_group()
    axis.add_argument("--rate", dest="rates", type=_number_list("numbers", float), metavar="R,R,...", help="req/s")
    axis.add_argument(
        "--load",
        dest="loads",
        type=_number_list("numbers", float),
        metavar="L,L,...",
        help="fractions of the largest stable rate for the workload's mix (fluidsched plan's max rate)",
    )
    g.add_argument(
        "--seed", dest="seeds", type=_number_list("integers", int), default=[0], metavar="S,S,...", help="(default 0)"
    )
    ex = p.add_argument_group("execution and output")
    ex.add_argument("-j", "--jobs", type=_positive_int, metavar="N", help="local worker processes (default: cores)")
    ex.add_argument("--ray", metavar="ADDRESS", help="run on Ray: auto, local, or the cluster's address")
    ex.add_argument("--out", metavar="FILE", help="results: CSV, or Parquet for *.parquet (needs pyarrow)")
    ex.add_argument("--resume", action="store_true", help="keep the rows already in --out and run the rest")
    ex.add_argument("--plot", "--plot-dir", dest="plot_dir", metavar="DIR", help="write PNG plots here")
    ex.add_argument("-q", "--quiet", action="store_true", help="no progress bar or progress lines")
    for group in simulate_parser._action_groups:
        actions = [a for a in group._group_actions if a.dest not in _NOT_TAKEN_OVER]
        if actions:
            target = p.add_argument_group(group.title, group.description)
            for action in actions:
                target._add_action(action)
    p.set_defaults(func=run_command)


def _sources(args: argparse.Namespace) -> list[WorkloadSource]:
    from fluidsched.cli import _workload_from_args

    def builder(trace: str | None, types: list[tuple[int, int, float]] | None) -> Any:
        def build(rate: float | None, seed: int) -> Workload:
            run_args = argparse.Namespace(**{**vars(args), "trace": trace, "types": types, "rate": rate, "seed": seed})
            return _workload_from_args(run_args)

        return build

    sources = []
    for spec in args.workloads or []:
        path = bundled_trace(spec) if spec in BUNDLED_TRACES else Path(spec)
        if not path.is_file():
            raise InvalidConfigError(
                f"--workload {spec}: neither a bundled trace ({', '.join(BUNDLED_TRACES)}) nor a file"
            )
        name = spec if spec in BUNDLED_TRACES else path.stem
        sources.append(WorkloadSource(name, builder(str(path), None)))
    if args.types:
        mix = tuple(args.types)
        sources.append(WorkloadSource(mix_name(mix), builder(None, list(mix)), mix))
    if not sources:
        raise InvalidConfigError("give a workload: --workload NAME|FILE (repeatable) and/or --type P:O:R (repeatable)")
    return sources


def run_command(args: argparse.Namespace) -> int:
    """``fluidsched sweep``: runs the grid, prints one line per run, writes --out and --plot."""
    from fluidsched.cli import simulate_kwargs

    sim_kwargs = simulate_kwargs(args)
    sources = _sources(args)
    fixed: dict[str, dict[str, OptionValue]] = {}
    for policy, (key, value) in args.policy_options or []:
        fixed.setdefault(policy, {})[key] = value
    variants = policy_variants(args.policies or list(POLICY_NAMES), fixed)
    plot_dir = Path(args.plot_dir) if args.plot_dir else None
    if plot_dir is not None:
        plot_dir.mkdir(parents=True, exist_ok=True)
    rows = run_sweep(
        sources,
        variants,
        rates=args.rates,
        loads=args.loads,
        seeds=args.seeds,
        sim_kwargs=sim_kwargs,
        settings_id=settings_digest(
            sim_kwargs,
            num_requests=args.num_requests,
            arrival=args.arrival,
            cv=args.cv,
            words_to_tokens=args.words_to_tokens,
        ),
        jobs=args.jobs,
        ray_address=args.ray,
        out=Path(args.out) if args.out else None,
        resume=args.resume,
        plot_dir=plot_dir,
        progress=not args.quiet,
        log_lines=not args.quiet,
    )
    print(format_table(rows))
    if args.out:
        print(f"{len(rows)} rows written to {args.out}", file=sys.stderr)
    if plot_dir is not None:
        print(f"plots written to {plot_dir}/", file=sys.stderr)
    return 0


_TABLE = (
    ("workload", "workload", "{}"),
    ("policy", "policy", "{}"),
    ("options", "options", "{}"),
    ("load", "load", "{:.3g}"),
    ("rate", "req/s", "{:.4g}"),
    ("seed", "seed", "{}"),
    ("throughput_tokens_per_s", "tok/s", "{:.1f}"),
    ("latency_mean_s", "lat mean s", "{:.3f}"),
    ("latency_p99_s", "lat p99 s", "{:.3f}"),
    ("ttft_mean_s", "TTFT mean s", "{:.3f}"),
    ("tbt_p99_s", "TBT p99 ms", "{:.1f}"),
    ("num_preemptions", "preempt", "{}"),
)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned text table (``options`` left out when no run has any)."""
    columns = [c for c in _TABLE if c[0] != "options" or any(r["options"] for r in rows)]
    header = [title for _, title, _ in columns]
    body = []
    for r in rows:
        cells = []
        for key, _, fmt in columns:
            value = r[key] * 1e3 if key == "tbt_p99_s" else r[key]
            cells.append("-" if isinstance(value, float) and math.isnan(value) else fmt.format(value))
        body.append(cells)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    lines = [
        "  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    ]
    for cells in body:
        lines.append(
            "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        )
    return "\n".join(lines)
