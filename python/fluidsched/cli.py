"""The ``fluidsched`` command line: ``simulate``, ``plan``, ``sweep``, ``demo``, ``options`` and ``calibrate``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from fluidsched import __version__
from fluidsched._core import POLICY_NAMES, POLICY_OPTIONS, Workload
from fluidsched.errors import FluidschedError, InvalidConfigError, InvalidTraceError
from fluidsched.presets import DEFAULT_TIME_MODEL, list_presets
from fluidsched.simulate import (
    DEFAULT_KV_CAPACITY,
    DEFAULT_OVER_LENGTH,
    OVER_LENGTH_MODES,
    OptionValue,
    SimResult,
    load_workload,
    simulate,
)

__all__ = ["build_parser", "main", "simulate_kwargs"]


def _parse_type(text: str) -> tuple[int, int, float]:
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected PROMPT:OUTPUT:RATE (e.g. 128:256:2.5), got {text!r}")
    try:
        prompt, output, rate = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        msg = f"PROMPT and OUTPUT must be integers and RATE a number, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if prompt < 1 or output < 1 or not (math.isfinite(rate) and rate > 0):
        raise argparse.ArgumentTypeError(f"need PROMPT >= 1, OUTPUT >= 1 and RATE > 0, got {text!r}")
    return prompt, output, rate


def _parse_option(text: str) -> tuple[str, OptionValue]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    value: OptionValue
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    elif "," in raw:
        try:
            value = [float(x) for x in raw.split(",") if x]
        except ValueError:
            raise argparse.ArgumentTypeError(f"list option {key} must hold numbers, got {raw!r}") from None
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
    return key, value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line: ``fluidsched: error: ...`` (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"fluidsched: error: {message} (see '{self.prog} --help')\n")


class _TopLevelHelp(argparse.RawDescriptionHelpFormatter):
    """Keeps each command's summary on its name's line: argparse measures command names without their indent, so a
    name longer than the longest option (``calibrate``) would otherwise push its summary to the next line."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        names = [len(str(a.metavar or a.dest)) for a in getattr(action, "_choices_actions", [])]
        if names:
            self._action_max_length = max(self._action_max_length, max(names) + self._current_indent + 2)


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type for integers in ``[low, high]`` (the range of the Rust field behind the option)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}")
        return value

    return parse


U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
_count = _int_in(1, U32_MAX)
_seed = _int_in(0, U64_MAX)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def add_workload_options(p: argparse.ArgumentParser) -> None:
    """Workload, time-model and capacity options shared by ``simulate`` and ``plan``."""
    w = p.add_argument_group("workload")
    src = w.add_mutually_exclusive_group()
    src.add_argument(
        "--trace",
        metavar="FILE",
        help="trace file, format detected from its content: CSV (Vidur, Azure 2023, BurstGPT, LMSYS) or Mooncake "
        "JSON lines; any other layout with --columns",
    )
    src.add_argument(
        "--type",
        dest="types",
        metavar="PROMPT:OUTPUT:RATE",
        action="append",
        type=_parse_type,
        help="synthetic request type (repeatable): prompt tokens, output tokens, arrivals per second",
    )
    w.add_argument(
        "--num-requests",
        type=_int_in(1, 2**63 - 1),
        metavar="N",
        help="requests to simulate (default: whole trace; 10000 for --type)",
    )
    w.add_argument(
        "--rate",
        type=_positive_float,
        metavar="R",
        help="rescale arrivals to R requests/s (required for length-only traces)",
    )
    w.add_argument(
        "--arrival",
        choices=("poisson", "gamma"),
        default="poisson",
        help="arrival process for length-only traces (default: poisson)",
    )
    w.add_argument("--cv", type=_positive_float, default=1.0, help="coefficient of variation of gamma gaps")
    w.add_argument(
        "--words-to-tokens",
        type=_positive_float,
        default=1.0,
        metavar="F",
        help="tokens per word for word-count traces such as LMSYS (default 1.0: use words as tokens)",
    )
    w.add_argument(
        "--columns",
        metavar="SPEC",
        help="read a trace of any other layout from these columns (CSV header names or JSON keys): "
        "arrival=COL,prompt=COL,output=COL[,unit=s|ms|us]; without arrival= it is length-only and needs --rate",
    )
    w.add_argument(
        "--trace-model",
        metavar="NAME",
        help="BurstGPT traces: keep only the rows of this Model (e.g. ChatGPT, GPT-4)",
    )
    w.add_argument(
        "--trace-log-type",
        choices=("conversation", "api"),
        help="BurstGPT traces: keep only conversation or API log rows (Log Type)",
    )
    w.add_argument("--seed", type=_seed, default=0, help="seed for synthetic arrivals and predictions (default 0)")
    m = p.add_argument_group("model and memory")
    m.add_argument(
        "--time-model",
        default=DEFAULT_TIME_MODEL,
        metavar="NAME|FILE.json",
        help=f"iteration-time model: a profiled preset ({', '.join(list_presets())}), a preset JSON file, or "
        f"linear with --d0 and --d1 (default: {DEFAULT_TIME_MODEL})",
    )
    m.add_argument("--d0", type=_non_negative_float, metavar="SEC", help="linear model: seconds per iteration")
    m.add_argument("--d1", type=_non_negative_float, metavar="SEC", help="linear model: seconds per token")
    m.add_argument(
        "--kv-capacity",
        type=_positive_int,
        metavar="TOKENS",
        help=f"KV-cache capacity in tokens (default: the preset's, {DEFAULT_KV_CAPACITY:,} for {DEFAULT_TIME_MODEL} "
        "and linear)",
    )
    m.add_argument("--block-size", type=_count, default=16, metavar="N", help="tokens per KV block")


def _workload_from_args(args: argparse.Namespace) -> Workload:
    trace_flags = {
        "--columns": args.columns,
        "--trace-model": args.trace_model,
        "--trace-log-type": args.trace_log_type,
    }
    given = [flag for flag, value in trace_flags.items() if value is not None]
    if given and not args.trace:
        raise InvalidConfigError(f"{', '.join(given)} apply only with --trace FILE")
    if args.types:
        n = args.num_requests or 10_000
        wl = Workload.from_types(args.types, n, seed=args.seed)
        return wl.rescaled_to_rate(args.rate) if args.rate else wl
    if not args.trace:
        raise InvalidConfigError("give a workload: --trace FILE, or --type PROMPT:OUTPUT:RATE (repeatable)")
    return load_workload(
        args.trace,
        rate=args.rate,
        num_requests=args.num_requests,
        arrival=args.arrival,
        cv=args.cv,
        seed=args.seed,
        words_to_tokens=args.words_to_tokens,
        trace_model=args.trace_model,
        trace_log_type=args.trace_log_type,
        columns=args.columns,
    )


def _time_model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if args.time_model == "linear" and (args.d0 is None or args.d1 is None):
        raise InvalidConfigError("--time-model linear needs --d0 SEC and --d1 SEC")
    if args.time_model != "linear" and (args.d0 is not None or args.d1 is not None):
        raise InvalidConfigError(f"--d0/--d1 apply only to --time-model linear, not {args.time_model}")
    return {"time_model": args.time_model, "d0": args.d0, "d1": args.d1}


def _model_len_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if args.over_length is not None and args.max_model_len is None:
        raise InvalidConfigError("--over-length applies only with --max-model-len N")
    return {"max_model_len": args.max_model_len, "over_length": args.over_length or DEFAULT_OVER_LENGTH}


def _length_limit_row(result: SimResult, args: argparse.Namespace) -> tuple[str, str] | None:
    """The ``model length`` row of the summary table: what ``--max-model-len`` did, if it was given."""
    if args.max_model_len is None:
        return None
    mode = args.over_length or DEFAULT_OVER_LENGTH
    counts = f"{int(result.rejected.sum())} rejected, {int(result.trimmed.sum())} trimmed"
    return "model length", f"{args.max_model_len} tokens, over-length requests: {mode} ({counts})"


def _format_summary(policy: str, s: dict[str, float], extra: Sequence[tuple[str, str]] = ()) -> str:
    finished = f"{int(s['num_finished'])} / {int(s['num_requests'])}"
    if s["num_rejected"]:
        finished += f" ({int(s['num_rejected'])} rejected: over the model length)"
    rows = [
        ("policy", policy),
        ("requests finished", finished),
        *extra,
        ("throughput", f"{s['throughput_tokens_per_s']:.1f} output tokens/s, {s['requests_per_s']:.3f} req/s"),
        (
            "latency mean / p50 / p99",
            f"{s['latency_mean_s']:.3f} / {s['latency_p50_s']:.3f} / {s['latency_p99_s']:.3f} s",
        ),
        ("TTFT mean / p50 / p99", f"{s['ttft_mean_s']:.3f} / {s['ttft_p50_s']:.3f} / {s['ttft_p99_s']:.3f} s"),
        ("time between tokens p50 / p99", f"{s['tbt_p50_s'] * 1e3:.2f} / {s['tbt_p99_s'] * 1e3:.2f} ms"),
        ("KV usage mean / max", f"{s['kv_usage_mean_fraction']:.1%} / {s['kv_usage_max_fraction']:.1%}"),
        ("preemptions", f"{int(s['num_preemptions'])}"),
        (
            "iterations",
            f"{int(s['num_iterations'])}, mean {s['mean_iteration_time_s'] * 1e3:.2f} ms, "
            f"mean batch {s['mean_batch_size']:.1f}",
        ),
        ("busy fraction", f"{s['busy_fraction']:.1%}"),
        ("simulated span", f"{s['simulated_span_s']:.1f} s (wall {s['wall_time_s']:.3f} s)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


class OutputError(Exception):
    """An output file or stream that cannot be written (reported as one line, exit status 1)."""


def _check_out_path(path: str) -> None:
    """Fails before any simulation when ``--out`` could not be written: a directory, or a missing or
    read-only parent directory."""
    target = Path(path)
    if target.is_dir():
        raise InvalidConfigError(f"--out {path}: is a directory; give a file name")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidConfigError(f"--out {path}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise InvalidConfigError(f"--out {path}: not writable")


def simulate_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``simulate()``'s settings from the ``simulate`` options, less the workload, policy, seed and progress (also
    used by ``fluidsched sweep``, which passes them to every run)."""
    return {
        "kv_capacity": args.kv_capacity,
        "block_size": args.block_size,
        "watermark": args.watermark,
        "max_num_seqs": args.max_num_seqs,
        "max_num_batched_tokens": args.max_num_batched_tokens,
        "enable_chunked_prefill": not args.no_chunked_prefill,
        "length_error": args.length_error,
        "drop_oversize": args.drop_oversize,
        **_model_len_kwargs(args),
        **_time_model_kwargs(args),
    }


def _cmd_simulate(args: argparse.Namespace) -> int:
    if args.out:
        _check_out_path(args.out)
    workload = _workload_from_args(args)
    for warning in workload.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    result = simulate(
        workload,
        args.policy,
        policy_options=dict(args.options or []),
        seed=args.seed,
        progress=not args.quiet,
        **simulate_kwargs(args),
    )
    if result.num_dropped:
        print(
            f"warning: dropped {result.num_dropped} request(s) that can never fit the KV cache "
            "(--drop-oversize; counted in num_rejected)",
            file=sys.stderr,
        )
    if args.out:
        try:
            result.to_csv(args.out)
        except OSError as e:
            raise OutputError(f"cannot write --out {args.out}: {e.strerror or e}") from e
    if args.json:
        summary = {"policy": result.policy, **result.summary()}
        print(json.dumps(jsonable(summary), indent=2))
    else:
        row = _length_limit_row(result, args)
        print(_format_summary(result.policy, result.summary(), [row] if row else []))
        if args.out:
            print(f"per-request records written to {args.out}")
    return 0


def jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with non-finite floats replaced by ``None`` (strict JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _cmd_plan(args: argparse.Namespace) -> int:
    from fluidsched.plan import plan

    if args.types:
        result = plan(
            types=args.types,
            kv_capacity=args.kv_capacity,
            block_size=args.block_size,
            max_num_seqs=args.max_num_seqs,
            wait_options=dict(args.wait_options or []),
            nested_options=dict(args.nested_options or []),
            **_time_model_kwargs(args),
        )
    else:
        workload = _workload_from_args(args)
        result = plan(
            workload,
            kv_capacity=args.kv_capacity,
            block_size=args.block_size,
            max_num_seqs=args.max_num_seqs,
            wait_options=dict(args.wait_options or []),
            nested_options=dict(args.nested_options or []),
            **_time_model_kwargs(args),
        )
    if args.json:
        print(json.dumps(jsonable(result), indent=2))
        return 0
    optimal = result["optimal"]
    rows = [
        ("types (prompt:output:rate)", ", ".join(f"{p}:{o}:{r:.4g}" for p, o, r in result["types"])),
        ("time model (thresholds)", f"d0 = {result['d0']:.4g} s, d1 = {result['d1']:.4g} s/token"),
        (
            "time model (fluid)",
            "the profiled preset itself, at the fluid's mean iteration (linearised: d0 = {:.4g} s, d1 = {:.4g} "
            "s/token, d2 = {:.4g} s per KV token read)".format(*result["fluid_time_model"])
            if result["fluid_exact_time"]
            else "d0 = {:.4g} s, d1 = {:.4g} s/token, d2 = {:.4g} s per KV token read".format(
                *result["fluid_time_model"]
            ),
        ),
        ("KV capacity (above watermark)", f"{result['capacity_tokens']:,.0f} tokens"),
        (
            "load rho (linearised)" if result["fluid_exact_time"] else "load rho",
            f"{result['rho']:.4f} ("
            + (
                "stable"
                if result["stable"]
                else "UNSTABLE: no batch serves this load"
                if result["fluid_exact_time"]
                else "UNSTABLE: rho >= 1"
            )
            + ")",
        ),
        ("iteration time T*", f"{result['iteration_time_s'] * 1e3:.3f} ms"),
        ("batch size N*", f"{result['batch_size']:.1f} requests"),
        (
            "memory M*",
            f"{result['memory_required_tokens']:,.0f} tokens "
            f"({'fits' if result['memory_feasible'] else 'DOES NOT FIT'})",
        ),
        (
            "fluid throughput",
            f"{result['throughput_tokens_per_s']:.1f} output tokens/s "
            f"(demand {result['demand_throughput_tokens_per_s']:.1f})",
        ),
        (
            "fluid optimum",
            f"{optimal['throughput_tokens_per_s']:.1f} tokens/s at batch {optimal['batch_size']:.1f}"
            + (f" (limited by {result['binding_constraint']})" if result["binding_constraint"] else " (demand served)"),
        ),
        (
            "at the arrival mix",
            f"{result['mix_throughput_tokens_per_s']:.1f} tokens/s (what a policy that drops no type can reach)",
        ),
        (
            "max sustainable rate",
            f"{result['max_rate_per_s']:.3f} requests/s (same mix; limited by {result['max_rate_binding']})",
        ),
        ("WAIT thresholds", " ".join(str(n) for n in result["wait_thresholds"])),
        ("Nested WAIT segments", " ".join(str(b) for b in result["nested_segments"]) or "(one segment)"),
        ("Nested WAIT thresholds", " ".join(str(n) for n in result["nested_wait_thresholds"])),
        ("Nested WAIT safety buffer", f"{result['nested_buffer_tokens']:,.0f} tokens"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fluidsched`` command."""
    parser = _Parser(
        prog="fluidsched",
        description="Fluid-guided, memory-aware scheduling for LLM inference: simulate policies on real traces.",
        epilog="examples:\n"
        "  fluidsched simulate --policy wait --type 128:256:4 --type 512:64:1 --num-requests 2000\n"
        "  fluidsched plan --type 128:256:4 --type 512:64:1\n"
        "  fluidsched options wait\n\n"
        "'fluidsched COMMAND --help' describes each command.",
        formatter_class=_TopLevelHelp,
    )
    parser.add_argument("--version", action="version", version=f"fluidsched {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    epilog = "policy options (-o KEY=VALUE):\n" + "\n".join(
        f"  {name:<12} {', '.join(opts) if opts else '(none)'}" for name, opts in POLICY_OPTIONS.items()
    )
    epilog += "\n\n'fluidsched options POLICY' describes each option and its default."
    sim = sub.add_parser(
        "simulate",
        help="simulate one policy on a trace or synthetic workload",
        description="Simulate one policy until every request finishes; print the metrics.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("--policy", default="vllm", choices=POLICY_NAMES, help="scheduling policy (default: vllm)")
    sim.add_argument(
        "-o",
        "--option",
        dest="options",
        action="append",
        type=_parse_option,
        metavar="KEY=VALUE",
        help="policy option (repeatable), e.g. -o token_budget=512; lists as 1,2,3",
    )
    add_workload_options(sim)
    lim = sim.add_argument_group("scheduler limits (vLLM names)")
    lim.add_argument("--max-num-seqs", type=_count, default=256, help="most running requests (default 256)")
    lim.add_argument(
        "--max-num-batched-tokens", type=_count, default=8192, help="most tokens per iteration (default 8192)"
    )
    lim.add_argument("--no-chunked-prefill", action="store_true", help="run every prefill in one iteration")
    lim.add_argument(
        "--watermark",
        type=_non_negative_float,
        default=0.01,
        help="fraction of KV blocks kept free at admission (default 0.01)",
    )
    lim.add_argument(
        "--length-error",
        type=_non_negative_float,
        default=0.0,
        metavar="E",
        help="relative error of output lengths shown to clairvoyant policies (default 0: exact)",
    )
    ml = sim.add_argument_group(
        "model length",
        "A request whose prompt + output exceeds --max-model-len is trimmed (the default: Vidur trims\n"
        "over-length trace rows), rejected (a vLLM server answers it with an error; counted in num_rejected\n"
        "and left out of every other metric) or kept (--over-length).",
    )
    ml.add_argument(
        "--max-model-len",
        type=_int_in(2, U32_MAX),
        metavar="N",
        help="most prompt + output tokens per request (default: unlimited)",
    )
    ml.add_argument(
        "--over-length",
        choices=OVER_LENGTH_MODES,
        help="what happens to a request above --max-model-len: reject (not served), trim (prompt cut to N - "
        "output; output cut to N - 1 and prompt to 1 if the output alone does not fit) or keep (run unchanged); "
        f"default: {DEFAULT_OVER_LENGTH}",
    )
    ml.add_argument(
        "--drop-oversize",
        action="store_true",
        help="drop requests that can never fit the KV cache (counted in num_rejected, with a warning) instead of "
        "refusing the run",
    )
    out = sim.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    out.add_argument(
        "--out", metavar="FILE", help="write per-request records to this CSV file (checked before simulating)"
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=_cmd_simulate)

    pl = sub.add_parser(
        "plan",
        help="fluid model: load, equilibrium, memory, max rate and WAIT thresholds",
        description="Solve the fluid model for a workload and print rho, T*, N*, M*, the fluid "
        "throughput, the largest sustainable arrival rate and the thresholds WAIT and "
        "Nested WAIT would use.",
    )
    add_workload_options(pl)
    pl.add_argument("--max-num-seqs", type=_count, default=256, help="most running requests (default 256)")
    pl.add_argument(
        "--wait-option",
        dest="wait_options",
        action="append",
        type=_parse_option,
        metavar="KEY=VALUE",
        help="WAIT option (repeatable), as for simulate --policy wait -o",
    )
    pl.add_argument(
        "--nested-option",
        dest="nested_options",
        action="append",
        type=_parse_option,
        metavar="KEY=VALUE",
        help="Nested WAIT option (repeatable)",
    )
    pl.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    pl.set_defaults(func=_cmd_plan)

    from fluidsched import calibrate, demo  # each pulls in its optional packages lazily

    demo.add_parser(sub)
    from fluidsched import option_table

    option_table.add_parser(sub)
    calibrate.add_parser(sub)
    from fluidsched.sweep_cli import add_parser as add_sweep_parser

    add_sweep_parser(sub)
    return parser


def _silence_stdout() -> None:
    """Points stdout at /dev/null so the interpreter's final flush of unwritable output raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fluidsched`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # surface a closed pipe or a full disk here, not at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
        print("fluidsched: error: output closed before it was all written (broken pipe)", file=sys.stderr)
        return 1
    except OutputError as e:
        print(f"fluidsched: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if e.errno is None or e.filename is not None:
            raise
        _silence_stdout()
        print(f"fluidsched: error: cannot write the output: {e.strerror or e}", file=sys.stderr)
        return 1
    except (InvalidConfigError, InvalidTraceError, ValueError) as e:
        print(f"fluidsched: error: {e}", file=sys.stderr)
        return 2
    except FluidschedError as e:
        print(f"fluidsched: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fluidsched: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
