"""PNG plots of a sweep: per workload, throughput, latency, TTFT and time between tokens against load (or rate),
one line per policy variant, with the fluid model's throughput and stability limit drawn in. Needs matplotlib."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fluidsched._core import POLICY_NAMES
from fluidsched.errors import InvalidConfigError

__all__ = ["plot_sweep", "require_matplotlib"]

_PANELS = (
    ("throughput_tokens_per_s", "throughput (output tokens/s)", 1.0),
    ("latency_mean_s", "mean latency (s)", 1.0),
    ("latency_p99_s", "p99 latency (s)", 1.0),
    ("ttft_mean_s", "mean time to first token (s)", 1.0),
    ("tbt_p99_s", "p99 time between tokens (ms)", 1e3),
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
_LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))


def require_matplotlib() -> None:
    """Raises a clear error when matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InvalidConfigError("plots need matplotlib: pip install 'fluidsched[plot]'") from None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "workload"


def _styles(labels: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """A colour, marker and line style per (policy, options): a policy keeps its look across plots."""
    import matplotlib

    colours = list(getattr(matplotlib.colormaps["tab10"], "colors", ())) + list(
        getattr(matplotlib.colormaps["Dark2"], "colors", ())
    )
    styles = {}
    extra = len(POLICY_NAMES)
    seen_policies: set[str] = set()
    for policy, options in labels:
        if policy in POLICY_NAMES and policy not in seen_policies:
            i = POLICY_NAMES.index(policy)
        else:
            i, extra = extra, extra + 1
        seen_policies.add(policy)
        styles[(policy, options)] = {
            "color": colours[i % len(colours)],
            "marker": _MARKERS[i % len(_MARKERS)],
            "linestyle": _LINESTYLES[i % len(_LINESTYLES)],
        }
    return styles


def plot_sweep(rows: Sequence[Mapping[str, Any]], out_dir: Path, sim_kwargs: Mapping[str, Any]) -> list[Path]:
    """Writes ``sweep-<workload>.png`` per workload of ``rows`` into ``out_dir``; returns the paths."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for workload in dict.fromkeys(r["workload"] for r in rows):
        subset = [r for r in rows if r["workload"] == workload]
        path = out_dir / f"sweep-{_slug(workload)}.png"
        _plot_workload(subset, path, workload, sim_kwargs)
        paths.append(path)
    return paths


def _plot_workload(rows: Sequence[Mapping[str, Any]], path: Path, workload: str, sim_kwargs: Mapping[str, Any]) -> None:
    import matplotlib.pyplot as plt

    by_load = all(math.isfinite(r["load"]) for r in rows)
    xkey = "load" if by_load else "rate"
    labels = list(dict.fromkeys((r["policy"], r["options"]) for r in rows))
    styles = _styles(labels)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.6))
    flat = axes.ravel()
    handles: list[Any] = []
    for ax, (key, title, scale) in zip(flat, _PANELS, strict=False):
        for label in labels:
            mine = [r for r in rows if (r["policy"], r["options"]) == label]
            xs = sorted({r[xkey] for r in mine})
            ys = [[r[key] * scale for r in mine if r[xkey] == x] for x in xs]
            mean = np.array([np.mean(y) for y in ys])
            name = f"{label[0]} [{label[1]}]" if label[1] else label[0]
            (line,) = ax.plot(xs, mean, label=name, lw=1.6, ms=5, **styles[label])
            if any(len(y) > 1 for y in ys):
                ax.fill_between(xs, [min(y) for y in ys], [max(y) for y in ys], color=line.get_color(), alpha=0.12)
            if key == _PANELS[0][0]:
                handles.append(line)
        _decorate(ax, rows, key, title, xkey, by_load)
        if key == _PANELS[0][0]:
            fluid = _fluid_line(rows, xkey)
            if fluid is not None:
                (fl,) = ax.plot(*fluid, color="black", lw=1.2, ls=(0, (2, 2)), label="fluid optimum (plan)")
                handles.append(fl)
    legend_ax = flat[len(_PANELS)]
    legend_ax.axis("off")
    legend_ax.legend(handles=handles, loc="center", fontsize=10, frameon=False, title="policy", title_fontsize=11)
    fig.suptitle(f"fluidsched sweep: {workload}", fontsize=14)
    fig.text(0.5, 0.012, _caption(rows, sim_kwargs, by_load), ha="center", va="bottom", fontsize=9, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _decorate(ax: Any, rows: Sequence[Mapping[str, Any]], key: str, title: str, xkey: str, by_load: bool) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("load (fraction of the fluid model's max rate)" if by_load else "arrival rate (req/s)")
    ax.grid(alpha=0.3)
    values = [r[key] for r in rows if math.isfinite(r[key]) and r[key] > 0]
    if key != "throughput_tokens_per_s" and values and max(values) / min(values) > 30:
        ax.set_yscale("log")
    max_rates = {r["max_rate_per_s"] for r in rows if math.isfinite(r["max_rate_per_s"])}
    if len(max_rates) == 1:
        limit = 1.0 if by_load else max_rates.pop()
        ax.axvline(limit, color="grey", lw=1.0, ls=":")
        if key == "throughput_tokens_per_s":
            ax.annotate(
                "stability limit",
                xy=(limit, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=8,
                color="dimgrey",
            )


def _fluid_line(rows: Sequence[Mapping[str, Any]], xkey: str) -> tuple[list[float], list[float]] | None:
    points = {r[xkey]: r["fluid_throughput_tokens_per_s"] for r in rows}
    xs = sorted(x for x, y in points.items() if math.isfinite(y))
    return (xs, [points[x] for x in xs]) if xs else None


def _caption(rows: Sequence[Mapping[str, Any]], sim: Mapping[str, Any], by_load: bool) -> str:
    model = str(sim.get("time_model") or "llama2-7b-a100")
    if sim.get("d0") is not None:
        model += f" (d0 {sim['d0']:g} s, d1 {sim['d1']:g} s/token)"
    requests = sorted({int(r["num_requests"]) for r in rows})
    seeds = sorted({int(r["seed"]) for r in rows})
    from fluidsched.presets import default_kv_capacity

    kv = sim.get("kv_capacity")
    if kv is None:
        kv = default_kv_capacity(sim.get("time_model") or "llama2-7b-a100")
    max_rates = sorted({r["max_rate_per_s"] for r in rows if math.isfinite(r["max_rate_per_s"])})
    parts = [
        f"time model {model}",
        f"KV capacity {kv:,} tokens (block {sim.get('block_size', 16)})",
        f"max_num_seqs {sim.get('max_num_seqs', 256)}, "
        f"max_num_batched_tokens {sim.get('max_num_batched_tokens', 8192)}",
        f"{'/'.join(f'{n:,}' for n in requests)} requests per run",
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
        + (" (line: mean, band: min to max)" if len(seeds) > 1 else ""),
    ]
    if max_rates:
        rates = "/".join(f"{m:.3g}" for m in max_rates)
        parts.append(f"fluid max rate {rates} req/s" + (" = load 1" if by_load else ""))
    return "; ".join(parts)
