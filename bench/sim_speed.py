"""Simulator speed: simulated requests per wall-second, per policy, on the bundled Azure sample.

Run with ``python bench/sim_speed.py`` (after ``make build-dev``). Prints one line per policy; the figure of merit
is the median over repeats, and the last column is that median relative to ``vllm``'s in the same run (the goal:
every policy at 0.5 or more). Repeats are interleaved (every policy once, then again), so that a change in the
machine's load during the run affects every policy alike. The trace is replayed at its own arrival times (about
4.9 req/s for the first 5,000 requests) and, with ``--rate``, at a rescaled rate.

``--scaling`` instead checks that no policy is quadratic: an overloaded synthetic workload (three types, arrivals
far above what the cache sustains, so the waiting queue grows all run long) of N and then 2N requests, every
policy plus ``mc-sf -o on_infeasible=skip``, and the ratio of wall times (about 2 when the cost is linear in the
run's length, 4 when quadratic).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import fluidsched
from fluidsched import POLICY_NAMES, bundled_trace, load_workload, simulate
from fluidsched.simulate import OptionValue


def scaling(n: int, policies: list[str], repeats: int) -> None:
    """Wall time of N and 2N overloaded requests per policy, and their ratio."""
    types = [(128, 256, 30.0), (512, 64, 10.0), (1024, 512, 5.0)]
    cases: list[tuple[str, dict[str, OptionValue]]] = [(p, {}) for p in policies]
    if "mc-sf" in policies:
        cases.append(("mc-sf", {"on_infeasible": "skip"}))
    print(f"overloaded mix {types} (prompt, output, req/s), Llama-2-7B/A100 time model; median of {repeats}")
    print(f"{'policy':>24} {f'{n:,} req s':>12} {f'{2 * n:,} req s':>12} {'ratio':>6}")
    for policy, options in cases:
        times = []
        for size in (n, 2 * n):
            workload = fluidsched.Workload.from_types(types, size, seed=1)
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                simulate(workload, policy, policy_options=options)
                runs.append(time.perf_counter() - t0)
            times.append(statistics.median(runs))
        label = policy + "".join(f" {k}={v}" for k, v in options.items())
        print(f"{label:>24} {times[0]:>12.3f} {times[1]:>12.3f} {times[1] / times[0]:>6.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", action="append", choices=POLICY_NAMES, help="policies (default: all)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rate", type=float, default=None, help="rescale arrivals to this many req/s")
    p.add_argument("--scaling", type=int, metavar="N", help="time N and 2N overloaded requests instead (see above)")
    args = p.parse_args()
    if args.scaling:
        scaling(args.scaling, args.policy or list(POLICY_NAMES), max(args.repeats, 1))
        return
    workload = load_workload(bundled_trace("azure"), rate=args.rate)
    print(
        f"fluidsched {fluidsched.__version__}, Python {platform.python_version()}, {platform.machine()}; "
        f"{len(workload)} requests from {bundled_trace('azure').name}, "
        f"rate {workload.mean_rate:.2f} req/s, Llama-2-7B/A100 time model, 118,784 KV tokens"
    )
    policies = list(args.policy or POLICY_NAMES)
    reference = "vllm"
    if reference not in policies:
        policies.insert(0, reference)
    rates: dict[str, list[float]] = {policy: [] for policy in policies}
    wall: dict[str, list[float]] = {policy: [] for policy in policies}
    iterations: dict[str, int] = {}
    for _ in range(max(args.repeats, 1)):
        for policy in policies:
            t0 = time.perf_counter()
            result = simulate(workload, policy)
            elapsed = time.perf_counter() - t0
            s = result.summary()
            rates[policy].append(s["num_finished"] / elapsed)
            wall[policy].append(s["wall_time_s"])
            iterations[policy] = int(s["num_iterations"])
    base = statistics.median(rates[reference])
    print(
        f"{'policy':>12} {'median req/wall-s':>18} {'min':>10} {'max':>10} {'sim wall s':>11} {'iterations':>11} "
        f"{'vs vllm':>8}"
    )
    for policy in policies:
        median = statistics.median(rates[policy])
        print(
            f"{policy:>12} {median:>18,.0f} {min(rates[policy]):>10,.0f} {max(rates[policy]):>10,.0f} "
            f"{statistics.median(wall[policy]):>11.4f} {iterations[policy]:>11,} {median / base:>8.2f}"
        )


if __name__ == "__main__":
    main()
