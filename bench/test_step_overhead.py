"""Smoke test of ``bench/step_overhead.py``: its ``--quick`` run prints a row per policy with sane figures."""

from __future__ import annotations

import math

import pytest

import step_overhead
from fluidsched import POLICY_NAMES


def test_quick_run_prints_every_policy(capsys: pytest.CaptureFixture[str]) -> None:
    step_overhead.main(["--quick"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:7] == ["policy", "running", "waiting", "mean", "run", "bare", "+read"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert list(rows) == list(POLICY_NAMES)
    for policy, row in rows.items():
        running, waiting, mean_running = int(row[1]), int(row[2]), float(row[3])
        bare, read, arrays, python = (float(x) for x in row[4:8])
        assert (running, waiting) == (16, 100)
        assert 0 < mean_running <= running, policy
        assert bare > 0, policy
        assert python > 0, policy
        assert math.isfinite(read), policy
        assert math.isfinite(arrays), policy
        assert float(row[8]) == pytest.approx(read / python, rel=0.05, abs=1e-3)  # from rounded figures


def test_pure_python_scheduler_keeps_its_invariants() -> None:
    """The ratio's denominator is a real scheduler: blocks conserved, limits kept, requests finish in full."""
    num_blocks = 6  # 96 tokens for up to 4 requests of up to 64: decodes run out of blocks and preempt
    py = step_overhead.PyVllmScheduler(num_blocks=num_blocks, max_num_seqs=4, watermark_blocks=1)
    lengths = {rid: (14 + (7 * rid) % 30, 1 + (11 * rid) % 20) for rid in range(30)}
    for rid, (prompt, output) in lengths.items():
        py.add_request(rid, prompt, output)
    outputs = dict.fromkeys(lengths, 0)
    finished: list[int] = []
    num_preempted = 0
    for _ in range(2000):
        scheduled, preempted, admitted = py.schedule()
        assert len(py.running) <= 4
        assert sum(n for _, n, _ in scheduled) <= step_overhead.MAX_NUM_BATCHED_TOKENS
        assert not (preempted and admitted)
        num_preempted += len(preempted)
        emitted, done = py.complete_step()
        for rid, k in emitted:
            assert k == outputs[rid] + 1
            outputs[rid] = k
        finished += done
        assert py.num_free_blocks + sum(r.num_blocks for r in py.running) == num_blocks
        if not py.running and not py.waiting:
            break
    assert sorted(finished) == list(lengths)
    assert num_preempted > 0
    assert outputs == {rid: output for rid, (_, output) in lengths.items()}
