"""``fluidsched calibrate``: measure a time-model preset on your own hardware.

Builds a model from a Hugging Face config with random weights, times real prefill, decode and mixed iterations
over a grid of batch shapes (:mod:`fluidsched.calibrate_measure`), fits the preset's time model to them
(:mod:`fluidsched.calibrate_fit`) and writes a ``fluidsched-time-model/1`` JSON preset with the KV capacity the
device's memory allows. torch and transformers come from the ``fluidsched[calibrate]`` extra, imported only when
the command runs. See docs/calibrate.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fluidsched.calibrate_fit import FitErrors, Measurement, TimeModelFit
from fluidsched.calibrate_shapes import (
    BUILTIN_CONFIGS,
    DEFAULT_GRID,
    DTYPE_BYTES,
    QUICK_GRID,
    BatchPoint,
    Grid,
    ModelShape,
)

__all__ = ["PRESET_FORMAT", "add_parser", "build_preset", "read_log", "run_calibrate", "write_log"]

#: The ``format`` key of the preset files this command writes.
PRESET_FORMAT = "fluidsched-time-model/1"

_EPILOG = """\
what it does:
  Builds the model of --model-config with random weights (no download), times real iterations over a grid
  of batch shapes (linear operators alone; decode batches of b sequences on kv cached tokens each; prefill
  chunks on 0 or more cached tokens; mixed: one chunk plus decodes), fits the per-layer time model of a
  fluidsched-time-model/1 preset by relative-error least squares, and writes it with the KV capacity the
  device's memory leaves for that model. The iteration is shaped like vLLM's (linear operators on all tokens
  packed, attention per group with PyTorch SDPA on a preallocated cache, LM head on the last token of each
  sequence), but has no paged attention, no CUDA graphs and no fused kernels: expect it to be slower than vLLM
  on small decode batches. The fit error (MAPE per region) is how far the preset is from these measurements.

built-in shapes for --model-config (public configs' shapes, random weights):
  {builtins}

examples:
  fluidsched calibrate --model-config tiny-llama --device cpu --quick --out tiny-cpu.json
  fluidsched calibrate --model-config llama2-7b --dtype bf16 --out llama2-7b-mygpu.json --log llama2-7b-mygpu.csv
  fluidsched calibrate --model-config path/to/config.json --device cuda --out my-model.json
  fluidsched calibrate --model-config llama2-7b --num-layers 4 --device cpu --quick --prompt-lens 16,64 \\
      --kv-lens 64,256 --batch-sizes 1,4,16 --max-kv-tokens 65536 --out cpu-4-layers.json
  fluidsched simulate --time-model my-model.json --trace trace.csv   # use the preset

needs: pip install 'fluidsched[calibrate]' (torch and transformers)"""


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def add_parser(sub: Any) -> None:
    """Registers the ``calibrate`` subcommand."""
    from fluidsched.cli import _count, _int_in, _positive_int, _seed

    p = sub.add_parser(
        "calibrate",
        help="measure a time-model preset on this GPU or CPU (fluidsched[calibrate])",
        description="Measure the iteration time of a model on this machine and write a time-model preset "
        "(fluidsched-time-model/1 JSON) for simulate and plan.",
        epilog=_EPILOG.format(builtins=", ".join(BUILTIN_CONFIGS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m = p.add_argument_group("model and device")
    m.add_argument(
        "--model-config",
        required=True,
        metavar="CONFIG",
        help="a Hugging Face config.json (or a directory holding one), or a built-in shape name (below)",
    )
    m.add_argument("--num-layers", type=_positive_int, metavar="N", help="use N layers instead of the config's")
    m.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="default: cuda if available")
    m.add_argument(
        "--dtype", choices=tuple(DTYPE_BYTES), help="weights and KV cache (default: bf16 on cuda, fp32 on cpu)"
    )
    m.add_argument("--seed", type=_seed, default=0, help="seed of the random weights and inputs (default 0)")
    g = p.add_argument_group("grid", "Lists are comma-separated; each replaces that list of the default grid.")
    g.add_argument("--quick", action="store_true", help="a small grid (about 40 points): a first look or a smoke test")
    g.add_argument("--batch-sizes", type=_int_list, metavar="LIST", help="decode batch sizes (default 1,2,...,256)")
    g.add_argument("--prompt-lens", type=_int_list, metavar="LIST", help="prefill chunk sizes (default 32,...,4096)")
    g.add_argument("--kv-lens", type=_int_list, metavar="LIST", help="cached tokens per sequence (default 128..4096)")
    g.add_argument("--warmup", type=_int_in(0, 100), default=2, metavar="N", help="untimed runs (default 2)")
    g.add_argument("--repeats", type=_int_in(1, 1000), default=5, metavar="N", help="timed runs (default 5)")
    g.add_argument(
        "--statistic",
        choices=("median", "min"),
        default="median",
        help="what a point's time is, of its timed runs (default median; min resists other processes on a busy CPU)",
    )
    g.add_argument("--threads", type=_positive_int, metavar="N", help="CPU: torch threads (default: torch's choice)")
    k = p.add_argument_group("KV cache")
    k.add_argument("--block-size", type=_count, default=16, metavar="N", help="tokens per KV block (default 16)")
    k.add_argument(
        "--gpu-memory-utilization",
        type=_fraction,
        default=0.9,
        metavar="F",
        help="fraction of device memory (of available RAM on CPU) for weights, activations and KV (default 0.9)",
    )
    k.add_argument("--max-kv-tokens", type=_positive_int, metavar="N", help="cap the KV capacity at N tokens")
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, metavar="PRESET.json", help="where to write the preset")
    o.add_argument("--name", help="the preset's name (default: shape-dtype-device, e.g. llama2-7b-bf16-cpu)")
    o.add_argument("--log", metavar="FILE.csv", help="write every measurement (and its fitted value) as CSV")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run_calibrate)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def _grid(args: argparse.Namespace) -> Grid:
    base = QUICK_GRID if args.quick else DEFAULT_GRID
    return Grid(
        batch_sizes=args.batch_sizes or base.batch_sizes,
        prompt_lens=args.prompt_lens or base.prompt_lens,
        kv_lens=args.kv_lens or base.kv_lens,
    )


def _round(x: float) -> float:
    """Six significant digits (monotone, so a non-decreasing table stays so)."""
    return float(f"{x:.6g}")


def rounded(fit: TimeModelFit) -> TimeModelFit:
    """``fit`` with every number at six significant digits: what the preset file holds."""
    return TimeModelFit(
        num_layers=fit.num_layers,
        overhead_ms=_round(fit.overhead_ms),
        token_step=fit.token_step,
        linear_ops_ms=tuple((n, _round(v)) for n, v in fit.linear_ops_ms),
        linear_ops_extrapolation_ms_per_token=_round(fit.linear_ops_extrapolation_ms_per_token),
        decode_attention_ms=(
            _round(fit.decode_attention_ms[0]),
            _round(fit.decode_attention_ms[1]),
            _round(fit.decode_attention_ms[2]),
        ),
        prefill_attention_ms=(
            _round(fit.prefill_attention_ms[0]),
            _round(fit.prefill_attention_ms[1]),
            _round(fit.prefill_attention_ms[2]),
            _round(fit.prefill_attention_ms[3]),
        ),
    )


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 3)


def build_preset(
    *,
    name: str,
    description: str,
    shape: ModelShape,
    dtype: str,
    device: dict[str, Any],
    kv_cache: dict[str, Any],
    fit: TimeModelFit,
    errors: FitErrors,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """The preset as a JSON-ready dict, with exactly the keys of the ``fluidsched-time-model/1`` format."""
    return {
        "format": PRESET_FORMAT,
        "name": name,
        "description": description,
        "model": {
            "name": shape.name,
            "num_layers": shape.num_layers,
            "hidden_size": shape.hidden_size,
            "num_attention_heads": shape.num_attention_heads,
            "num_kv_heads": shape.num_kv_heads,
            "head_dim": shape.head_dim,
            "dtype": dtype,
        },
        "device": device,
        "kv_cache": kv_cache,
        "iteration": {
            "num_layers": fit.num_layers,
            "overhead_ms": fit.overhead_ms,
            "token_step": fit.token_step,
            "linear_ops_ms": [[n, v] for n, v in fit.linear_ops_ms],
            "linear_ops_extrapolation_ms_per_token": fit.linear_ops_extrapolation_ms_per_token,
            "decode_attention_ms": list(fit.decode_attention_ms),
            "prefill_attention_ms": list(fit.prefill_attention_ms),
        },
        "fit": {
            "mape_percent": _finite_or_none(errors.mape_percent),
            "regions": {r: _finite_or_none(v) for r, v in errors.regions.items()},
            "num_points": errors.num_points,
        },
        "provenance": provenance,
    }


def write_log(path: str, measurements: Sequence[Measurement], fit: TimeModelFit) -> None:
    """Every measurement as one CSV row, with the preset's prediction and its error."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "region",
                "num_tokens",
                "prefill_chunk",
                "prefill_context",
                "num_decode_seqs",
                "decode_context",
                "median_ms",
                "min_ms",
                "max_ms",
                "outside_layers_ms",
                "repeats",
                "predicted_ms",
                "error_percent",
            ]
        )
        for m in measurements:
            p = m.point
            if p.region == "linear":  # the table alone, on top of this point's own outside-the-layers time
                predicted = m.outside_ms + fit.num_layers * fit.linear_ops(p.num_tokens)
            else:
                predicted = fit.predict_ms(p)
            error = (predicted - m.ms) / m.ms * 100 if m.ms > 0 else math.nan
            row = [p.region, p.num_tokens, p.prefill_chunk, p.prefill_context, p.num_decode_seqs, p.decode_context]
            times = [m.ms, m.min_ms, m.max_ms, m.outside_ms]
            w.writerow([*row, *(f"{t:.6g}" for t in times), m.repeats, f"{predicted:.6g}", f"{error:.3f}"])


def read_log(path: str) -> list[Measurement]:
    """The measurements of a ``--log`` CSV file (what :func:`write_log` wrote)."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            point = BatchPoint(
                region=row["region"],
                prefill_chunk=int(row["prefill_chunk"]),
                prefill_context=int(row["prefill_context"]),
                num_decode_seqs=int(row["num_decode_seqs"]),
                decode_context=int(row["decode_context"]),
            )
            times = [float(row[k]) for k in ("median_ms", "min_ms", "max_ms", "outside_layers_ms")]
            out.append(Measurement(point, times[0], times[1], times[2], times[3], int(row["repeats"])))
    return out


def run_calibrate(args: argparse.Namespace) -> int:
    """The ``calibrate`` command: measure, fit, write the preset (and the log); print a summary."""
    from fluidsched.calibrate_run import calibrate

    return calibrate(args, _grid(args))


def format_summary(rows: Sequence[tuple[str, str]]) -> str:
    """Aligned ``name  value`` lines."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def today() -> str:
    """The date, ISO format (UTC), for the preset's provenance."""
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


_NUMBER_LIST = re.compile(r"\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]")


def write_preset(path: str, preset: dict[str, Any]) -> None:
    """``preset`` as indented JSON with each list of numbers on one line (``[16, 0.287]``), and a final newline."""
    text = json.dumps(preset, indent=2)
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    Path(path).write_text(text + "\n", encoding="utf-8")


def progress_line(done: int, total: int, m: Measurement) -> None:
    """One progress line on stderr."""
    print(f"[{done:>4}/{total}] {m.point.label():<34} {m.ms:10.3f} ms", file=sys.stderr, flush=True)
