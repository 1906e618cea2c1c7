"""Compare time-model presets: iteration times they predict for typical batches, and (with --log) how well each
predicts a calibration's measurements. Needs only numpy (no torch).

Examples::

    python bench/calibration/compare_presets.py python/fluidsched/data/presets/llama2-7b-a100.json my-gpu.json
    python bench/calibration/compare_presets.py llama2-7b-a100.json my-gpu.json --log my-gpu.csv
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fluidsched.calibrate import read_log
from fluidsched.calibrate_fit import FIT_REGIONS, TimeModelFit, fit_errors
from fluidsched.calibrate_shapes import BatchPoint

#: Typical batches: small and large decode batches at short and long contexts, prefill chunks, mixed steps.
SHAPES = (
    BatchPoint("decode", num_decode_seqs=1, decode_context=512),
    BatchPoint("decode", num_decode_seqs=8, decode_context=1024),
    BatchPoint("decode", num_decode_seqs=26, decode_context=1200),
    BatchPoint("decode", num_decode_seqs=64, decode_context=1024),
    BatchPoint("decode", num_decode_seqs=128, decode_context=512),
    BatchPoint("prefill", prefill_chunk=128),
    BatchPoint("prefill", prefill_chunk=512),
    BatchPoint("prefill", prefill_chunk=1024),
    BatchPoint("prefill", prefill_chunk=512, prefill_context=1536),
    BatchPoint("mixed", prefill_chunk=256, num_decode_seqs=32, decode_context=1024),
    BatchPoint("mixed", prefill_chunk=512, num_decode_seqs=64, decode_context=512),
)


def load(path: str) -> tuple[str, TimeModelFit]:
    """(name, time model) of a preset file."""
    preset: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return str(preset.get("name", Path(path).stem)), TimeModelFit.from_preset(preset)


def prediction_table(presets: Sequence[tuple[str, TimeModelFit]]) -> str:
    """A Markdown table of predicted iteration times (ms) per shape, with each preset's ratio to the first."""
    names = [n for n, _ in presets]
    header = ["batch", *(f"{n} (ms)" for n in names), *(f"{n} / {names[0]}" for n in names[1:])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for shape in SHAPES:
        times = [fit.predict_ms(shape) for _, fit in presets]
        ratios = [f"{t / times[0]:.2f}" for t in times[1:]]
        lines.append("| " + " | ".join([shape.label(), *(f"{t:.2f}" for t in times), *ratios]) + " |")
    return "\n".join(lines)


def error_table(presets: Sequence[tuple[str, TimeModelFit]], log: str) -> str:
    """A Markdown table of each preset's MAPE against the measurements in ``log`` (per region)."""
    measured = read_log(log)
    lines = ["| preset | all | " + " | ".join(FIT_REGIONS) + " |", "|---|---|" + "---|" * len(FIT_REGIONS)]
    for name, fit in presets:
        e = fit_errors(fit, measured)
        regions = [("n/a" if v is None else f"{v:.1f} %") for v in e.regions.values()]
        lines.append(f"| {name} | {e.mape_percent:.1f} % | " + " | ".join(regions) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Prints the comparison."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("presets", nargs="+", metavar="PRESET.json", help="presets to compare (the first is the base)")
    p.add_argument("--log", metavar="FILE.csv", help="a calibrate --log: report each preset's error against it")
    args = p.parse_args(argv)
    presets = [load(path) for path in args.presets]
    print(prediction_table(presets))
    if args.log:
        print(f"\nerror against the measurements in {args.log} (MAPE):\n")
        print(error_table(presets, args.log))


if __name__ == "__main__":
    main()
