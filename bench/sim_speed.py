"""Simulator speed: simulated requests per wall-second, per policy, on the bundled Azure sample.

Run with ``python bench/sim_speed.py`` (after ``make build-dev``). Prints one line per policy and run; the
figure of merit is the median over repeats. The trace is replayed at its own arrival times (about 4.9 req/s for
the first 5,000 requests) and, with ``--rate``, at a rescaled rate.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import fluidsched
from fluidsched import POLICY_NAMES, bundled_trace, load_workload, simulate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", action="append", choices=POLICY_NAMES, help="policies (default: all)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rate", type=float, default=None, help="rescale arrivals to this many req/s")
    args = p.parse_args()
    workload = load_workload(bundled_trace("azure"), rate=args.rate)
    print(
        f"fluidsched {fluidsched.__version__}, Python {platform.python_version()}, {platform.machine()}; "
        f"{len(workload)} requests from {bundled_trace('azure').name}, "
        f"rate {workload.mean_rate:.2f} req/s, Llama-2-7B/A100 time model, 118,784 KV tokens"
    )
    print(f"{'policy':>12} {'median req/wall-s':>18} {'min':>10} {'max':>10} {'sim wall s':>11} {'iterations':>11}")
    for policy in args.policy or POLICY_NAMES:
        rates = []
        iterations = 0
        wall = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = simulate(workload, policy)
            elapsed = time.perf_counter() - t0
            s = result.summary()
            rates.append(s["num_finished"] / elapsed)
            wall.append(s["wall_time_s"])
            iterations = int(s["num_iterations"])
        print(
            f"{policy:>12} {statistics.median(rates):>18,.0f} {min(rates):>10,.0f} {max(rates):>10,.0f} "
            f"{statistics.median(wall):>11.4f} {iterations:>11,}"
        )


if __name__ == "__main__":
    main()
