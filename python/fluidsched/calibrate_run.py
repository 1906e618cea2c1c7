"""The ``calibrate`` command's run: device and memory, measuring, fitting, writing (imports torch lazily)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from fluidsched import __version__
from fluidsched.calibrate import (
    _slug,
    build_preset,
    format_summary,
    progress_line,
    rounded,
    today,
    write_log,
    write_preset,
)
from fluidsched.calibrate_fit import fit_errors, fit_time_model
from fluidsched.calibrate_measure import (
    IterationRunner,
    build_model,
    device_description,
    import_torch,
    measure_points,
    meminfo_bytes,
)
from fluidsched.calibrate_shapes import (
    BUILTIN_CONFIGS,
    Grid,
    ModelShape,
    kv_bytes_per_token,
    kv_capacity_blocks,
    load_model_shape,
)
from fluidsched.errors import InvalidConfigError

__all__ = ["calibrate"]


def _log(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


GIB = 2**30

#: Fraction of the free memory (after the weights) that the grid's test KV caches may take.
GRID_MEMORY_FRACTION = 0.5


def _resolve_device(torch: Any, requested: str, dtype: str | None) -> tuple[str, str]:
    """(device, dtype) for ``--device``/``--dtype``; rejects a missing GPU and fp16 on CPU."""
    cuda = torch is not None and bool(torch.cuda.is_available())
    device = ("cuda" if cuda else "cpu") if requested == "auto" else requested
    if device == "cuda" and not cuda:
        raise InvalidConfigError("--device cuda: no CUDA device is visible to torch (use --device cpu)")
    dtype = dtype or ("bf16" if device == "cuda" else "fp32")
    if device == "cpu" and dtype == "fp16":
        raise InvalidConfigError(
            "--dtype fp16 on CPU: PyTorch's CPU fp16 kernels are emulated on most CPUs, so the times would say "
            "nothing about fp16 serving; use fp32 or bf16 on CPU, fp16 on a GPU"
        )
    return device, dtype


def _parameter_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _kv_capacity(
    args: argparse.Namespace,
    device: str,
    total: int,
    in_use_before: int,
    weights: int,
    activation_peak: int | None,
    available_after_build: int | None,
    bytes_per_token: int,
    dtype: str,
) -> tuple[int, str]:
    util = args.gpu_memory_utilization
    cap = f"; capped at --max-kv-tokens {args.max_kv_tokens:,}" if args.max_kv_tokens else ""
    if device == "cuda":
        peak = activation_peak or 0
        kv_bytes = total * util - weights - peak - in_use_before
        how = (
            f"{util:.0%} of {total / GIB:.1f} GiB device memory, minus {weights / GIB:.2f} GiB {dtype} weights, "
            f"{peak / GIB:.2f} GiB activation peak (largest measured batch) and {in_use_before / GIB:.2f} GiB in "
            f"use before the model loaded (CUDA context, other processes), as vLLM budgets it{cap}"
        )
    else:
        avail = available_after_build or 0
        kv_bytes = avail * util
        how = (
            f"CPU: {util:.0%} of the {avail / GIB:.1f} GiB MemAvailable (/proc/meminfo) after building the model "
            f"({weights / GIB:.2f} GiB {dtype} weights); activation peak not measured{cap}"
        )
    blocks = kv_capacity_blocks(kv_bytes, bytes_per_token, args.block_size, args.max_kv_tokens)
    return blocks, how


def _default_name(shape: ModelShape, args: argparse.Namespace, dtype: str, device: str, device_name: str) -> str:
    """``shape[-N-layers]-dtype-device``, e.g. ``llama2-7b-bf16-a100-sxm4-80gb`` or ``llama2-7b-4-layers-bf16-cpu``."""
    spec = args.model_config
    base = spec if spec in BUILTIN_CONFIGS else shape.name.rstrip("/").split("/")[-1]
    if args.num_layers:
        base += f"-{shape.num_layers}-layers"
    where = "cpu" if device == "cpu" else device_name.removeprefix("NVIDIA ")
    return _slug(f"{base}-{dtype}-{where}")


def calibrate(args: argparse.Namespace, grid: Grid) -> int:
    """Runs the whole calibration for the parsed ``args`` over ``grid``; returns the exit status."""
    from fluidsched.cli import _check_out_path

    shape = load_model_shape(args.model_config, args.num_layers)
    _check_out_path(args.out)
    if args.log:
        _check_out_path(args.log)
    if args.device == "cpu" and args.dtype == "fp16":  # before the (slow) torch import
        _resolve_device(None, "cpu", "fp16")
    torch, transformers = import_torch()
    device, dtype = _resolve_device(torch, args.device, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    device_name, total = device_description(torch, device)
    in_use_before = total - int(torch.cuda.mem_get_info()[0]) if device == "cuda" else 0

    t0 = time.perf_counter()
    model = build_model(shape, device, dtype, args.seed)
    weights = _parameter_bytes(model)
    _log(
        args,
        f"fluidsched calibrate: {shape.name}, {shape.num_layers} layers, hidden {shape.hidden_size}, "
        f"{shape.num_attention_heads} heads ({shape.num_kv_heads} KV), head_dim {shape.head_dim}; {dtype} on "
        f"{device_name}; {weights / GIB:.2f} GiB random weights built in {time.perf_counter() - t0:.1f} s",
    )
    per_token = kv_bytes_per_token(shape, dtype)
    free = int(torch.cuda.mem_get_info()[0]) if device == "cuda" else meminfo_bytes("MemAvailable") or 0
    available_after_build = None if device == "cuda" else free
    limit = math.floor(free * GRID_MEMORY_FRACTION / per_token)
    if args.max_kv_tokens:
        limit = min(limit, args.max_kv_tokens)
    points = grid.points(max_cached_tokens=limit, max_position=shape.max_position_embeddings)
    skipped = len(grid.points()) - len(points)
    _log(
        args,
        f"measuring {len(points)} iteration shapes (warmup {args.warmup}, repeats {args.repeats})"
        + (f"; {skipped} left out: more than {limit:,} KV tokens or past the model's positions" if skipped else ""),
    )
    runner = IterationRunner(model, shape)
    t1 = time.perf_counter()
    result = measure_points(
        runner,
        points,
        warmup=args.warmup,
        repeats=args.repeats,
        seed=args.seed,
        statistic=args.statistic,
        progress=None if args.quiet else progress_line,
    )
    measure_s = time.perf_counter() - t1
    measurements = result.measurements
    if not any(m.point.region != "linear" for m in measurements):
        raise InvalidConfigError("no iteration of the grid fits in memory: use smaller --kv-lens or --batch-sizes")
    fit = rounded(fit_time_model(measurements, shape.num_layers))
    errors = fit_errors(fit, measurements)
    blocks, how = _kv_capacity(
        args,
        device,
        total,
        in_use_before,
        weights,
        result.activation_peak_bytes,
        available_after_build,
        per_token,
        dtype,
    )
    name = args.name or _default_name(shape, args, dtype, device, device_name)
    cpu_note = " CPU measurement: not a GPU serving preset." if device == "cpu" else ""
    description = (
        f"{shape.name} shape ({shape.num_layers} layers, random weights), {dtype}, one {device_name}: measured by "
        f"fluidsched calibrate (PyTorch SDPA, no paged attention, no CUDA graphs).{cpu_note}"
    )
    provenance = {
        "source": f"measured with fluidsched calibrate on {device_name}",
        "tool": f"fluidsched calibrate {__version__}",
        "created": today(),
        "fluidsched": __version__,
        "torch": str(torch.__version__),
        "transformers": str(transformers.__version__),
        "device": device_name,
        "model_config": args.model_config,
        "grid": {
            **grid.describe(),
            "num_points": len(measurements),
            "warmup": args.warmup,
            "repeats": args.repeats,
            "statistic": args.statistic,
        },
        "seed": args.seed,
        "measure_seconds": round(measure_s, 1),
    }
    preset = build_preset(
        name=name,
        description=description,
        shape=shape,
        dtype=dtype,
        device={"name": device_name, "memory_bytes": total},
        kv_cache={"block_size": args.block_size, "num_blocks": blocks, "kv_bytes_per_token": per_token, "how": how},
        fit=fit,
        errors=errors,
        provenance=provenance,
    )
    write_preset(args.out, preset)
    if args.log:
        write_log(args.log, measurements, fit)
    print(_summary(shape, fit, errors, blocks, args.block_size, per_token, len(measurements), measure_s))
    print(f"preset {name!r} written to {args.out}")
    if args.log:
        print(f"measurements written to {args.log}")
    return 0


def _summary(
    shape: ModelShape,
    fit: Any,
    errors: Any,
    blocks: int,
    block_size: int,
    per_token: int,
    num_points: int,
    seconds: float,
) -> str:
    table = fit.linear_ops_ms
    picks = [table[0], table[len(table) // 2], table[-1]]
    linear = ", ".join(f"{n} tok {v:.4g} ms" for n, v in picks)
    c0, c1, c2 = fit.decode_attention_ms
    p0, p1, p2, p3 = fit.prefill_attention_ms

    def pct(x: float | None) -> str:
        return "n/a" if x is None or not math.isfinite(x) else f"{x:.1f} %"

    regions = ", ".join(f"{r} {pct(v)}" for r, v in errors.regions.items())
    rows = [
        ("measured", f"{num_points} iteration shapes in {seconds:.1f} s"),
        ("overhead (whole model)", f"{fit.overhead_ms:.4g} ms per iteration"),
        (
            "linear ops (per layer)",
            f"{linear} ({len(table)} points, then +{fit.linear_ops_extrapolation_ms_per_token:.4g} ms/token; "
            f"monotone smoothing {pct(errors.linear_mape_percent)})",
        ),
        ("decode attention (per layer)", f"{c0:.4g} + {c1:.4g}*b + {c2:.4g}*sum(kv) ms"),
        (
            "prefill attention (per layer)",
            f"{p0:.4g}*sum(c) + {p1:.4g}*sum(c^2) + {p2:.4g}*sum(c*kv) + {p3:.4g}*sum(kv) ms",
        ),
        (
            "fit error (MAPE)",
            f"{pct(errors.mape_percent)} over {errors.num_points} iterations "
            f"(max {pct(errors.max_percent)}): {regions}",
        ),
        ("KV cache", f"{blocks:,} blocks x {block_size} = {blocks * block_size:,} tokens ({per_token:,} bytes/token)"),
    ]
    return format_summary(rows)
