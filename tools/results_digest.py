"""Fingerprint simulation results, to check that a refactor leaves them bit-identical.

Runs every policy (``fluidsched.POLICY_NAMES``) on a fixed set of workloads and configurations and writes, per run,
a SHA-256 digest of every per-request array (plus the iteration log and the time-between-tokens sample) and the
summary dict::

    python tools/results_digest.py --out before.json          # on the old build
    python tools/results_digest.py --out after.json           # on the new build
    python tools/results_digest.py --compare before.json after.json

``--compare`` prints IDENTICAL or DIFFERENT per run (with the summary keys and arrays that differ) and exits 1 if
any run differs or is missing from either file. ``summary["wall_time_s"]`` is left out: it is the only
non-deterministic value. Uses only numpy and fluidsched's public API.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import fluidsched

#: Linear time model used for the synthetic runs (the WAIT tests' Llama-2-7B fit, ``docs/wait.md`` section 7).
D0 = 0.0066
D1 = 7.4e-5
#: Summary keys that are not simulation results (wall-clock time) and are not recorded.
VOLATILE_SUMMARY_KEYS = frozenset({"wall_time_s"})
#: Summary keys added after digest files were first written, with the value every run here has: a file without
#: the key compares equal to one with this value (``num_rejected`` needs ``max_model_len``, which no run sets).
ADDED_SUMMARY_KEYS: dict[str, Any] = {"num_rejected": 0}
#: Requests in each synthetic workload.
SYNTHETIC_REQUESTS = 10_000

JsonValue = Any
Summary = dict[str, JsonValue]


@dataclass(frozen=True)
class Run:
    """One simulation: a named workload, a policy, and keyword arguments for :func:`fluidsched.simulate`."""

    name: str
    workload: str
    policy: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def two_type(rate: float) -> fluidsched.Workload:
    """The two-type mix (prompt 50 / output 156 and prompt 100 / output 171, 167:31) at ``rate`` req/s."""
    types = [(50, 156, 167 / 198 * rate), (100, 171, 31 / 198 * rate)]
    return fluidsched.Workload.from_types(types, SYNTHETIC_REQUESTS, seed=0)


def trace(name: str, rate: float | None = None) -> fluidsched.Workload:
    """A bundled trace, at its own arrival times or rescaled (length-only traces get seeded Poisson arrivals)."""
    return fluidsched.load_workload(fluidsched.bundled_trace(name), rate=rate, seed=0)


#: Workload name -> builder. Built once each, on first use.
WORKLOADS: dict[str, Callable[[], fluidsched.Workload]] = {
    "azure-native": lambda: trace("azure"),
    "azure-r2": lambda: trace("azure", 2.0),
    "azure-r6": lambda: trace("azure", 6.0),
    "lmsys-r20": lambda: trace("lmsys", 20.0),
    "lmsys-r45": lambda: trace("lmsys", 45.0),
    "lmsys-r64": lambda: trace("lmsys", 64.0),
    "twotype-r30": lambda: two_type(30.0),
    "twotype-r55": lambda: two_type(55.0),
    "twotype-r40": lambda: two_type(40.0),
    "twotype-r70": lambda: two_type(70.0),
}

LINEAR: dict[str, Any] = {"time_model": "linear", "d0": D0, "d1": D1}


def build_runs() -> list[Run]:
    """Every run, in a fixed order. Names are ``workload/policy[/variant]``."""
    policies: Sequence[str] = fluidsched.POLICY_NAMES
    runs: list[Run] = []

    def every_policy(workload: str, variant: str = "", **kwargs: Any) -> None:
        for policy in policies:
            name = f"{workload}/{policy}" + (f"/{variant}" if variant else "")
            runs.append(Run(name, workload, policy, kwargs))

    # (a) Azure at its own arrival times, and rescaled to 2 and 6 req/s (profiled Llama-2-7B/A100 model).
    for w in ("azure-native", "azure-r2", "azure-r6"):
        every_policy(w)
    # (b) LMSYS (20,000 requests, words as tokens, seeded Poisson arrivals).
    for w in ("lmsys-r20", "lmsys-r45"):
        every_policy(w)
    # (c) The synthetic two-type mix with the linear time model (fluid max rate about 58 req/s).
    for w in ("twotype-r30", "twotype-r55"):
        every_policy(w, **LINEAR)
    # (d) Batch-size cap and KV capacity. max_num_seqs defaults to 256: explicit 256 and 2048 (docs/wait.md's
    # Nested WAIT setting) on LMSYS at 64 req/s, and a binding cap of 32; then small KV caches that preempt.
    every_policy("lmsys-r64", "seqs256", max_num_seqs=256)
    every_policy("lmsys-r64", "seqs2048", max_num_seqs=2048)
    every_policy("azure-r6", "seqs32", max_num_seqs=32)
    every_policy("azure-r2", "kv16k", kv_capacity=16_384)
    every_policy("twotype-r40", "kv8k", kv_capacity=8_192, **LINEAR)
    every_policy("lmsys-r45", "seqs2048", max_num_seqs=2048)
    every_policy("twotype-r70", "seqs2048", max_num_seqs=2048, **LINEAR)
    # (e) Non-default paths: no chunked prefill, wrong predicted lengths, and each policy's options.
    every_policy("azure-r6", "nochunk", enable_chunked_prefill=False)
    every_policy("azure-r6", "lenerr", length_error=0.5, seed=3)
    option_variants: list[tuple[str, str, dict[str, Any]]] = [
        ("wait", "any-ready", {"admission": "any-ready"}),
        ("wait", "all-ready", {"admission": "all-ready"}),
        ("wait", "stall", {"stall": True}),
        ("wait", "noguard", {"memory_guard": False}),
        ("wait", "headroom0.25", {"headroom": 0.25}),
        ("nested-wait", "strict", {"strict_break": True}),
        ("nested-wait", "seg4", {"num_segments": 4}),
        ("nested-wait", "rate-est", {"rate_estimation": True}),
        ("sarathi", "budget1024", {"token_budget": 1024}),
        ("sarathi", "chunked-prefill-off", {"chunked_prefill": False}),
        ("mc-sf", "skip", {"on_infeasible": "skip"}),
        ("sglang", "hints", {"use_output_hints": True}),
        ("orca", "oracle", {"reserve": "oracle"}),
    ]
    # Where the options change the outcome: queues that build up (LMSYS at 45 req/s and the two-type mix above its
    # fluid capacity, with the batch cap raised so that thresholds and memory bind), and Azure's own bursts.
    option_workloads: list[tuple[str, str, dict[str, Any]]] = [
        ("azure-native", "", {}),
        ("lmsys-r45", "/seqs2048", {"max_num_seqs": 2048}),
        ("twotype-r70", "/seqs2048", {"max_num_seqs": 2048, **LINEAR}),
    ]
    for policy, variant, options in option_variants:
        if policy not in policies:
            continue
        for w, suffix, extra in option_workloads:
            runs.append(Run(f"{w}/{policy}/{variant}{suffix}", w, policy, {"policy_options": options, **extra}))
    noguard = {"policy_options": {"memory_guard": False}, "kv_capacity": 8_192, **LINEAR}
    runs.append(Run("twotype-r40/wait/kv8k-noguard", "twotype-r40", "wait", noguard))
    total_limit = {"policy_options": {"total_limit": 2000}, **LINEAR}
    runs.append(Run("twotype-r55/wait/total-limit", "twotype-r55", "wait", total_limit))
    names = [r.name for r in runs]
    if len(names) != len(set(names)):
        raise RuntimeError("duplicate run names")
    return runs


def _le_bytes(array: npt.NDArray[Any]) -> bytes:
    """The array's raw bytes, little-endian and contiguous (the same on every machine)."""
    a = np.ascontiguousarray(array)
    return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def result_arrays(result: fluidsched.SimResult) -> dict[str, npt.NDArray[Any]]:
    """Every array of ``result``: per-request records, derived latency/TTFT, the iteration log and the sorted
    time-between-tokens sample (its order is unspecified, so it is compared as a multiset)."""
    arrays: dict[str, npt.NDArray[Any]] = {
        "arrival": result.arrival,
        "first_scheduled": result.first_scheduled,
        "first_token": result.first_token,
        "finish": result.finish,
        "prompt_len": result.prompt_len,
        "output_len": result.output_len,
        "num_preemptions": result.num_preemptions,
        "latency": result.latency,
        "ttft": result.ttft,
    }
    for key, value in sorted(result.iterations.items()):
        arrays[f"iterations.{key}"] = value
    arrays["time_between_tokens_sorted"] = np.sort(result.time_between_tokens)
    return arrays


def _json_number(value: Any) -> JsonValue:
    """Summary values as JSON: ints and finite floats as they are, non-finite floats as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # 'nan', 'inf', '-inf'
    return value


def digest_run(result: fluidsched.SimResult) -> dict[str, JsonValue]:
    """``{"digest": sha256 over all arrays, "arrays": {name: sha256}, "summary": {...}}`` for one result."""
    total = hashlib.sha256()
    per_array: dict[str, str] = {}
    for name, array in result_arrays(result).items():
        data = _le_bytes(array)
        header = f"{name}|{array.dtype.newbyteorder('<').str}|{array.shape}|".encode()
        total.update(header)
        total.update(data)
        per_array[name] = hashlib.sha256(header + data).hexdigest()
    summary = {k: _json_number(v) for k, v in result.summary().items() if k not in VOLATILE_SUMMARY_KEYS}
    summary["policy"] = result.policy
    return {"digest": total.hexdigest(), "arrays": per_array, "summary": summary}


def produce(out: Path, only: str | None) -> int:
    runs = [r for r in build_runs() if only is None or only in r.name]

    @functools.cache
    def workload(name: str) -> fluidsched.Workload:
        return WORKLOADS[name]()

    results: dict[str, dict[str, JsonValue]] = {}
    start = time.perf_counter()
    for i, run in enumerate(runs, 1):
        t = time.perf_counter()
        result = fluidsched.simulate(workload(run.workload), run.policy, **run.kwargs)
        entry = digest_run(result)
        results[run.name] = entry
        s = entry["summary"]
        print(
            f"[{i:3d}/{len(runs)}] {run.name:<40} {time.perf_counter() - t:6.2f} s  "
            f"finished {s['num_finished']}/{s['num_requests']}  preemptions {s['num_preemptions']}  "
            f"{entry['digest'][:16]}",
            file=sys.stderr,
        )
    meta = {"fluidsched_version": fluidsched.__version__, "numpy_version": np.__version__}
    out.write_text(json.dumps({"_meta": meta, **results}, indent=1, sort_keys=False) + "\n")
    print(f"{len(runs)} runs in {time.perf_counter() - start:.1f} s; written to {out}", file=sys.stderr)
    return 0


def _load(path: Path) -> dict[str, dict[str, JsonValue]]:
    data: dict[str, dict[str, JsonValue]] = json.loads(path.read_text())
    data.pop("_meta", None)
    return data


def compare(path_a: Path, path_b: Path) -> int:
    a, b = _load(path_a), _load(path_b)
    differing = 0
    for name in list(a) + [n for n in b if n not in a]:
        if name not in a or name not in b:
            print(f"DIFFERENT  {name}: only in {path_a if name in a else path_b}")
            differing += 1
            continue
        ra, rb = a[name], b[name]
        sa, sb = {**ADDED_SUMMARY_KEYS, **ra["summary"]}, {**ADDED_SUMMARY_KEYS, **rb["summary"]}
        if ra["digest"] == rb["digest"] and sa == sb:
            print(f"IDENTICAL  {name}")
            continue
        differing += 1
        keys = [k for k in dict.fromkeys([*sa, *sb]) if sa.get(k) != sb.get(k)]
        arrays_a, arrays_b = ra.get("arrays", {}), rb.get("arrays", {})
        arrays = [k for k in dict.fromkeys([*arrays_a, *arrays_b]) if arrays_a.get(k) != arrays_b.get(k)]
        detail = ", ".join(f"{k}: {sa.get(k)!r} -> {sb.get(k)!r}" for k in keys) or "summary equal"
        print(f"DIFFERENT  {name}: {detail}; arrays differ: {', '.join(arrays) or 'none'}")
    print(f"{len(set(a) | set(b)) - differing} identical, {differing} different")
    return 1 if differing else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, metavar="JSON", help="run every case and write the digests here")
    mode.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"), help="compare two digest files")
    mode.add_argument("--list", action="store_true", help="list the run names and exit")
    parser.add_argument("--only", metavar="SUBSTRING", help="with --out: only runs whose name contains this")
    args = parser.parse_args(argv)
    if args.list:
        for run in build_runs():
            print(run.name)
        return 0
    if args.compare:
        return compare(*args.compare)
    return produce(args.out, args.only)


if __name__ == "__main__":
    sys.exit(main())
