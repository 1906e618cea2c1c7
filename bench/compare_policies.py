"""Compare policies on a bundled trace at several loads; prints a Markdown table per load.

Examples::

    python bench/compare_policies.py --trace azure --rate 2 --rate 4.5 --rate 6
    python bench/compare_policies.py --trace lmsys --rate 45 --policy vllm --policy wait --policy nested-wait \
        --max-num-seqs 1024
"""

from __future__ import annotations

import argparse

import fluidsched
from fluidsched import POLICY_NAMES, bundled_trace, load_workload, simulate

COLUMNS = (
    ("throughput_tokens_per_s", "tok/s", 1.0, "{:.0f}"),
    ("latency_mean_s", "lat mean (s)", 1.0, "{:.2f}"),
    ("latency_p99_s", "lat p99 (s)", 1.0, "{:.2f}"),
    ("ttft_mean_s", "TTFT mean (s)", 1.0, "{:.2f}"),
    ("ttft_p99_s", "TTFT p99 (s)", 1.0, "{:.2f}"),
    ("tbt_p99_s", "TBT p99 (ms)", 1e3, "{:.1f}"),
    ("kv_usage_max_fraction", "KV max", 100.0, "{:.0f}%"),
    ("num_preemptions", "preemptions", 1.0, "{:.0f}"),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trace", choices=("azure", "lmsys"), default="azure")
    p.add_argument("--rate", type=float, action="append", required=True, help="arrival rate, req/s (repeatable)")
    p.add_argument("--policy", action="append", choices=POLICY_NAMES, help="policies (default: all)")
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--num-requests", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(
        f"fluidsched {fluidsched.__version__}; trace {bundled_trace(args.trace).name}; Llama-2-7B/A100 time model, "
        f"118,784 KV tokens, max_num_seqs {args.max_num_seqs}, seed {args.seed}"
    )
    for rate in args.rate:
        workload = load_workload(bundled_trace(args.trace), rate=rate, num_requests=args.num_requests, seed=args.seed)
        print(f"\n### {len(workload)} requests at {rate:g} req/s\n")
        print("| policy | " + " | ".join(title for _, title, _, _ in COLUMNS) + " |")
        print("|---" * (len(COLUMNS) + 1) + "|")
        for policy in args.policy or POLICY_NAMES:
            s = simulate(workload, policy, max_num_seqs=args.max_num_seqs, seed=args.seed).summary()
            assert s["num_finished"] == s["num_requests"]
            cells = [fmt.format(s[key] * scale) for key, _, scale, fmt in COLUMNS]
            print(f"| {policy} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
