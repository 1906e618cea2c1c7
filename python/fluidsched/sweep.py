"""``fluidsched.sweep``: many simulations over a grid of workloads x policies x rates (or loads) x seeds.

Runs go to local worker processes (``jobs``) or a Ray cluster (``ray_address``); each is a pure function of its
coordinates, so the same grid gives the same numbers on any backend and any number of jobs. Rows are appended to
``out`` as runs finish, a rerun with ``resume=True`` skips the rows already there, and the final file is in grid
order. The command line (``fluidsched sweep``) is :func:`add_parser` / :func:`run_command` here.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fluidsched._core import POLICY_NAMES, Workload
from fluidsched.data import BUNDLED_TRACES, bundled_trace
from fluidsched.errors import InvalidConfigError
from fluidsched.progress import ProgressBar
from fluidsched.simulate import OptionValue, load_workload, simulate
from fluidsched.sweep_grid import GridPoint, PolicyVariant, RunTask, WorkloadSource, expand_grid, task_arrays
from fluidsched.sweep_io import RowWriter, read_rows, row_key, to_frame, to_records, write_final
from fluidsched.sweep_run import run_local, run_ray

__all__ = ["WorkloadSpec", "run_sweep", "sweep"]

#: A workload of :func:`sweep`: a bundled trace name (``"azure"``, ``"lmsys"``), a trace path, a
#: :class:`Workload`, or a typed mix ``[(prompt_len, output_len, rate), ...]``.
WorkloadSpec = str | os.PathLike[str] | Workload | Sequence[tuple[int, int, float]]
#: A policy of :func:`sweep`: a name, ``"name:key=value:..."``, or ``(name, {option: value})``.
PolicySpec = str | tuple[str, Mapping[str, OptionValue]]

#: ``simulate()`` arguments a sweep sets per run itself; every other one passes through.
_PER_RUN = frozenset({"workload", "policy", "policy_options", "seed", "rate", "num_requests", "progress"})


def sweep(
    workloads: WorkloadSpec | Sequence[WorkloadSpec] | Mapping[str, WorkloadSpec],
    policies: PolicySpec | Sequence[PolicySpec] = tuple(POLICY_NAMES),
    *,
    rates: Sequence[float] | None = None,
    loads: Sequence[float] | None = None,
    seeds: Sequence[int] = (0,),
    policy_options: Mapping[str, Mapping[str, OptionValue]] | None = None,
    num_requests: int | None = None,
    arrival: str = "poisson",
    cv: float = 1.0,
    words_to_tokens: float = 1.0,
    jobs: int | None = None,
    ray_address: str | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    plot_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    as_frame: bool = False,
    **simulate_options: Any,
) -> Any:
    """Simulates every combination of ``workloads`` x ``policies`` x ``rates`` (or ``loads``) x ``seeds`` and
    returns one row per run, in grid order: a numpy record array, or a pandas DataFrame with ``as_frame=True``.

    ``policies`` are names or variants ``(name, {option: value})`` / ``"name:key=value:key=value"``;
    ``policy_options`` adds options to every variant of a policy (``{"wait": {"token_budget": 512}}``).
    ``loads`` are fractions of the largest stable arrival rate of each workload's mix (``fluidsched plan``'s
    ``max_rate_per_s``; a typed mix's rates are then weights); without ``rates`` or ``loads``, traces keep their
    own arrival times. ``num_requests``, ``arrival``, ``cv`` and ``words_to_tokens`` shape every workload as in
    :func:`load_workload`; every other keyword (``kv_capacity``, ``max_num_seqs``, ``time_model``, ...) passes
    through to :func:`simulate`.

    ``jobs`` worker processes run the grid (default: one per core); ``ray_address`` (``"auto"``, ``"local"`` or
    an address) runs it on Ray instead. ``out`` (CSV, or Parquet for ``.parquet`` with pyarrow) gets each row as
    it finishes and the whole grid, sorted, at the end; an existing ``out`` is an error unless ``resume=True``,
    which keeps its rows and runs only the missing ones. ``plot_dir`` gets PNG plots (needs matplotlib).
    """
    unknown = sorted(set(simulate_options) - _simulate_parameters())
    if unknown:
        raise InvalidConfigError(f"sweep: unknown simulate option(s) {', '.join(unknown)}")
    per_run = sorted(set(simulate_options) & _PER_RUN)
    if per_run:
        raise InvalidConfigError(f"sweep sets {', '.join(per_run)} per run; use the grid arguments instead")
    sources = _workload_sources(workloads, num_requests, arrival, cv, words_to_tokens)
    variants = policy_variants(policies, policy_options or {})
    rows = run_sweep(
        sources,
        variants,
        rates=rates,
        loads=loads,
        seeds=seeds,
        sim_kwargs=simulate_options,
        settings_id=settings_digest(
            simulate_options, num_requests=num_requests, arrival=arrival, cv=cv, words_to_tokens=words_to_tokens
        ),
        jobs=jobs,
        ray_address=ray_address,
        out=Path(out) if out is not None else None,
        resume=resume,
        plot_dir=Path(plot_dir) if plot_dir is not None else None,
        progress=progress,
    )
    return to_frame(rows) if as_frame else to_records(rows)


def _simulate_parameters() -> set[str]:
    import inspect

    return set(inspect.signature(simulate).parameters)


def settings_digest(sim_kwargs: Mapping[str, Any], **workload_settings: Any) -> str:
    """A short digest of the settings every run of a sweep shares (the ``settings_id`` column): ``simulate()``'s
    settings, defaults filled in, and how workloads are read. The command line and the API give the same one."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(simulate).parameters.items() if name not in _PER_RUN}
    settings = {**defaults, **sim_kwargs, **workload_settings}
    text = repr(sorted((k, v) for k, v in settings.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def policy_variants(
    policies: PolicySpec | Sequence[PolicySpec], fixed: Mapping[str, Mapping[str, OptionValue]]
) -> list[PolicyVariant]:
    """The policy variants of a grid: each spec with the fixed options of its policy added."""
    from fluidsched.cli import _parse_option

    specs: list[PolicySpec] = [policies] if isinstance(policies, (str, tuple)) else list(policies)
    for name in fixed:
        if name not in POLICY_NAMES:
            raise InvalidConfigError(f"policy options given for unknown policy {name!r}")
    variants = []
    for spec in specs:
        if isinstance(spec, str):
            name, *pairs = spec.split(":")
            options: dict[str, OptionValue] = {}
            for pair in pairs:
                try:
                    key, value = _parse_option(pair)
                except Exception as e:  # argparse.ArgumentTypeError
                    raise InvalidConfigError(f"policy {spec!r}: {e}") from None
                options[key] = value
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], Mapping):
            name, options = spec[0], dict(spec[1])
        else:
            raise InvalidConfigError(f"a policy is a name or (name, {{option: value}}), got {spec!r:.80}")
        variants.append(PolicyVariant.make(name, {**dict(fixed.get(name, {})), **options}))
    missing = sorted(set(fixed) - {v.policy for v in variants})
    if missing:
        raise InvalidConfigError(f"policy options given for {', '.join(missing)}, which the sweep does not run")
    return variants


def _workload_sources(
    workloads: WorkloadSpec | Sequence[WorkloadSpec] | Mapping[str, WorkloadSpec],
    num_requests: int | None,
    arrival: str,
    cv: float,
    words_to_tokens: float,
) -> list[WorkloadSource]:
    named: list[tuple[str | None, Any]]
    if isinstance(workloads, Mapping):
        named = list(workloads.items())
    elif isinstance(workloads, (str, os.PathLike, Workload)) or _is_type_mix(workloads):
        named = [(None, workloads)]
    elif isinstance(workloads, Sequence):
        named = [(None, w) for w in workloads]
    else:
        raise InvalidConfigError(f"not a workload: {workloads!r:.80}")
    sources: list[WorkloadSource] = []
    for name, spec in named:
        if isinstance(spec, Workload):
            fixed = spec

            def build_fixed(rate: float | None, seed: int, wl: Workload = fixed) -> Workload:
                return load_workload(wl, rate=rate, num_requests=num_requests)

            sources.append(WorkloadSource(name or f"workload{len(sources)}", build_fixed))
        elif isinstance(spec, (str, os.PathLike)):
            path = bundled_trace(spec) if isinstance(spec, str) and spec in BUNDLED_TRACES else Path(spec)
            if not path.is_file():
                raise InvalidConfigError(
                    f"workload {str(spec)!r} is neither a bundled trace ({', '.join(BUNDLED_TRACES)}) nor a file"
                )

            def build_trace(rate: float | None, seed: int, p: Path = path) -> Workload:
                return load_workload(
                    p, rate=rate, num_requests=num_requests, arrival=arrival, cv=cv, seed=seed,
                    words_to_tokens=words_to_tokens,
                )  # fmt: skip

            default = spec if isinstance(spec, str) and spec in BUNDLED_TRACES else path.stem
            sources.append(WorkloadSource(name or default, build_trace))
        elif _is_type_mix(spec):
            mix = tuple((int(p), int(o), float(r)) for p, o, r in spec)
            sources.append(typed_source(name or mix_name(mix), mix, num_requests))
        else:
            raise InvalidConfigError(f"not a workload: {spec!r:.80}")
    return sources


def _is_type_mix(spec: object) -> bool:
    return (
        isinstance(spec, Sequence)
        and not isinstance(spec, str)
        and len(spec) > 0
        and all(isinstance(t, tuple) and len(t) == 3 for t in spec)
    )


def mix_name(mix: Sequence[tuple[int, int, float]]) -> str:
    """The default name of a typed mix: ``types(50:156:167,100:171:31)``."""
    return "types(" + ",".join(f"{p}:{o}:{r:g}" for p, o, r in mix) + ")"


def typed_source(name: str, mix: tuple[tuple[int, int, float], ...], num_requests: int | None) -> WorkloadSource:
    """A synthetic typed workload (``num_requests`` of them, default 10,000), rescaled to the run's rate."""

    def build(rate: float | None, seed: int) -> Workload:
        wl = Workload.from_types(list(mix), num_requests or 10_000, seed=seed)
        return wl.rescaled_to_rate(rate) if rate is not None else wl

    return WorkloadSource(name, build, mix)


def run_sweep(
    sources: Sequence[WorkloadSource],
    variants: Sequence[PolicyVariant],
    *,
    rates: Sequence[float] | None,
    loads: Sequence[float] | None,
    seeds: Sequence[int],
    sim_kwargs: Mapping[str, Any],
    settings_id: str,
    jobs: int | None = None,
    ray_address: str | None = None,
    out: Path | None = None,
    resume: bool = False,
    plot_dir: Path | None = None,
    progress: bool = False,
    log_lines: bool = False,
) -> list[dict[str, Any]]:
    """Runs a grid of prepared workload sources and policy variants; the engine of :func:`sweep` and
    ``fluidsched sweep``. Returns the rows in grid order (rows of ``out`` outside this grid follow them)."""
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise InvalidConfigError(f"jobs must be a positive integer, got {jobs!r}")
    partial = _check_out(out, resume)
    plan_kwargs = _plan_kwargs(sim_kwargs)
    points, workloads = expand_grid(sources, variants, rates=rates, loads=loads, seeds=seeds, plan_kwargs=plan_kwargs)
    _preflight(points, workloads, sim_kwargs)
    if plot_dir is not None:
        from fluidsched.sweep_plot import require_matplotlib

        require_matplotlib()

    def coords(p: GridPoint) -> dict[str, Any]:
        return {**p.coordinates(), "settings_id": settings_id}

    earlier = _earlier_rows(out, partial) if resume else []
    done_keys = {row_key(r) for r in earlier}
    todo = [p for p in points if row_key(coords(p)) not in done_keys]
    tasks = [
        RunTask(
            p.index,
            *task_arrays(workloads[(p.workload, p.rate, p.seed)]),
            policy=p.variant.policy,
            options=dict(p.variant.options),
            seed=p.seed,
            sim_kwargs=dict(sim_kwargs),
        )
        for p in todo
    ]
    finished: dict[int, dict[str, Any]] = {}
    writer = RowWriter(partial) if partial is not None else None
    bar = ProgressBar(
        len(points), desc="sweep", unit="run", enabled=progress, initial=len(points) - len(todo), log_lines=log_lines
    )
    start = time.perf_counter()

    def on_result(index: int, summary: dict[str, float]) -> None:
        row = {**coords(points[index]), **summary}
        finished[index] = row
        if writer is not None:
            writer.write(row)
        bar.update()
        bar.log(_progress_line(bar.done, len(points), row, time.perf_counter() - start))

    try:
        if ray_address is not None:
            run_ray(tasks, ray_address, on_result)
        else:
            run_local(tasks, jobs or os.cpu_count() or 1, on_result)
    except KeyboardInterrupt:
        if out is not None and progress:
            print(
                f"sweep interrupted: {len(finished)} new run(s) kept in {partial}; rerun with --resume to finish",
                file=sys.stderr,
            )
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    by_key = {row_key(r): r for r in earlier}
    rows = [finished[p.index] if p.index in finished else by_key.pop(row_key(coords(p))) for p in points]
    rows += list(by_key.values())
    if out is not None:
        write_final(out, rows)
        if partial is not None and partial != out:
            partial.unlink(missing_ok=True)
    if plot_dir is not None:
        from fluidsched.sweep_plot import plot_sweep

        plot_sweep(rows[: len(points)], plot_dir, sim_kwargs)
    return rows


def _progress_line(done: int, total: int, row: Mapping[str, Any], elapsed: float) -> str:
    where = f"load {row['load']:.3g}" if row["load"] == row["load"] else f"rate {row['rate']:.4g}"
    options = f" [{row['options']}]" if row["options"] else ""
    return (
        f"[{done}/{total} {elapsed:.0f}s] {row['workload']} {row['policy']}{options} {where} seed {row['seed']}: "
        f"{row['throughput_tokens_per_s']:.1f} tok/s, latency p99 {row['latency_p99_s']:.2f} s"
    )


def _check_out(out: Path | None, resume: bool) -> Path | None:
    """The file rows are appended to while the sweep runs (a ``.partial.csv`` beside a Parquet ``out``)."""
    if out is None:
        if resume:
            raise InvalidConfigError("resume needs an output file (out=... / --out)")
        return None
    if out.is_dir():
        raise InvalidConfigError(f"--out {out}: is a directory; give a file name")
    if not out.parent.is_dir():
        raise InvalidConfigError(f"--out {out}: directory {str(out.parent)!r} does not exist")
    partial = out.with_name(out.name + ".partial.csv") if out.suffix == ".parquet" else out
    if out.suffix == ".parquet":
        from fluidsched.sweep_io import _pyarrow_parquet

        _pyarrow_parquet(out)
    if not resume and (out.exists() or partial.exists()):
        raise InvalidConfigError(f"--out {out} exists: pass --resume to finish it, or remove it to start over")
    return partial


def _earlier_rows(out: Path | None, partial: Path | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in dict.fromkeys(p for p in (out, partial) if p is not None):
        if path.exists():
            rows += read_rows(path)
    unique = {row_key(r): r for r in rows}  # a row can be in both the Parquet file and the partial CSV
    return list(unique.values())


def _plan_kwargs(sim_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The simulate settings that the fluid model (``plan``) also takes."""
    import inspect

    from fluidsched.plan import plan

    accepted = set(inspect.signature(plan).parameters) - {"workload", "types"}
    return {k: v for k, v in sim_kwargs.items() if k in accepted}


def _preflight(
    points: Sequence[GridPoint], workloads: Mapping[tuple[str, float, int], Workload], sim_kwargs: Mapping[str, Any]
) -> None:
    """Checks every policy variant and setting once, on a one-request run, so a bad option fails here with a
    clear message instead of in every worker."""
    seen = set()
    for p in points:
        if p.variant in seen:
            continue
        seen.add(p.variant)
        wl = workloads[(p.workload, p.rate, p.seed)].truncated(1)
        simulate(wl, p.variant.policy, policy_options=dict(p.variant.options) or None, seed=p.seed, **sim_kwargs)
