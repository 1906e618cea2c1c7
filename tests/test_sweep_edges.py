"""Edges of ``fluidsched sweep`` that ``test_sweep.py`` does not cover: the grid as a property, a results file cut
short mid-row, the settings digest shared by the CLI and the API, parallel Ctrl-C leaving no worker behind,
fixed options and workload specs that are errors, and the progress bar's three modes."""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluidsched
import fluidsched.sweep_run as sweep_run
from cli_helpers import run_cli
from fluidsched import FluidschedError
from fluidsched.progress import ProgressBar
from fluidsched.sweep import typed_source
from fluidsched.sweep_grid import PolicyVariant, expand_grid
from fluidsched.sweep_io import read_rows

MIX = [(50, 156, 167.0), (100, 171, 31.0)]


@given(
    loads=st.lists(st.sampled_from([0.3, 0.6, 0.9, 1.2]), min_size=1, max_size=3, unique=True),
    seeds=st.lists(st.integers(0, 50), min_size=1, max_size=3, unique=True),
    policies=st.lists(st.sampled_from(fluidsched.POLICY_NAMES), min_size=1, max_size=3, unique=True),
)
def test_grid_is_the_full_product_in_nested_order(loads: list[float], seeds: list[int], policies: list[str]) -> None:
    variants = [PolicyVariant.make(p) for p in policies]
    points, workloads = expand_grid(
        [typed_source("mix", tuple(MIX), 20)], variants, rates=None, loads=loads, seeds=seeds, plan_kwargs={}
    )
    assert [(p.variant.policy, p.load, p.seed) for p in points] == [
        (v, load, s) for v in policies for load in loads for s in seeds
    ]
    assert [p.index for p in points] == list(range(len(points)))
    assert len(workloads) == len(loads) * len(seeds)
    for p in points:
        assert p.rate == pytest.approx(p.load * p.max_rate_per_s, rel=1e-12)


def test_resume_after_a_row_cut_short_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grid: dict[str, Any] = {"rates": [10.0, 30.0], "seeds": [0, 1], "num_requests": 150, "jobs": 1}
    out = tmp_path / "r.csv"
    full = fluidsched.sweep(MIX, ["vllm", "orca"], out=out, **grid)
    lines = out.read_text().splitlines()
    # Rows 5, 1 and 4 of the grid survived, in completion order; row 2 was cut short (no line end, a float cut).
    out.write_text("\n".join([lines[0], lines[6], lines[2], lines[5]]) + "\n" + lines[3][:-3])
    ran: list[int] = []
    real = sweep_run.run_task

    def counting(task: Any) -> Any:
        ran.append(task.index)
        return real(task)

    monkeypatch.setattr(sweep_run, "run_task", counting)
    resumed = fluidsched.sweep(MIX, ["vllm", "orca"], out=out, resume=True, **grid)
    assert sorted(ran) == [0, 2, 3, 6, 7]  # the cut row is run again, not read as a truncated number
    names = [n for n in full.dtype.names if n != "wall_time_s"]
    assert [tuple(r[n] for n in names) for r in resumed] == [tuple(r[n] for n in names) for r in full]
    assert len(read_rows(out)) == 8


def test_cli_and_api_share_the_settings_id(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    code, _, err = run_cli(
        capsys, "sweep", "--type", "50:156:167", "--type", "100:171:31", "-p", "vllm", "--rate", "10",
        "--num-requests", "100", "--max-num-seqs", "64", "--out", str(out), "-q",
    )  # fmt: skip
    assert code == 0, err
    with open(out, newline="") as f:
        cli_id = next(csv.DictReader(f))["settings_id"]
    api = fluidsched.sweep(MIX, "vllm", rates=[10.0], num_requests=100, jobs=1, max_num_seqs=64)
    assert api["settings_id"][0] == cli_id
    other = fluidsched.sweep(MIX, "vllm", rates=[10.0], num_requests=100, jobs=1, max_num_seqs=65)
    assert other["settings_id"][0] != cli_id
    # so the API can resume what the CLI started
    rows = fluidsched.sweep(MIX, ["vllm", "sarathi"], rates=[10.0], num_requests=100, jobs=1, max_num_seqs=64,
                            out=out, resume=True)  # fmt: skip
    assert list(rows["policy"]) == ["vllm", "sarathi"]


@pytest.mark.parametrize(
    ("workloads", "policies", "kwargs", "match"),
    [
        (MIX, "vllm", {"policy_options": {"wait": {"token_budget": 1}}}, "which the sweep does not run"),
        (MIX, ["vllm", "wait"], {"policy_options": {"wait": {"token_budget": 256}, "orca": {}}}, "orca"),
        (42, "vllm", {}, "not a workload"),
    ],
)
def test_more_bad_grids(workloads: Any, policies: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(FluidschedError, match=match):
        fluidsched.sweep(workloads, policies, rates=[10.0], num_requests=50, jobs=1, **kwargs)


def test_parallel_ctrl_c_leaves_no_worker_behind(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    cmd = [
        sys.executable, "-m", "fluidsched.cli", "sweep", "--workload", "azure", "--num-requests", "1500",
        "--policy", "vllm", "sarathi", "orca", "--load", "0.8,1.0,1.2,1.4", "--seed", "0,1,2", "-j", "2",
        "--out", str(out), "-q",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.05)
    children = _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    rows = read_rows(out)
    assert 2 <= len(rows) < 36
    assert all(r["num_finished"] == 1500 for r in rows)
    if sys.platform == "linux":
        assert children, "the sweep ran on worker processes"
        gone = time.monotonic() + 10
        while time.monotonic() < gone and any(Path(f"/proc/{c}").exists() for c in children):
            time.sleep(0.05)
        assert not any(Path(f"/proc/{c}").exists() for c in children)


def _children(pid: int) -> list[str]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.read_text().split() if path.exists() else []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_lines_elsewhere_and_quiet() -> None:
    tty = _Terminal()
    with ProgressBar(4, desc="sweep", unit="run", stream=tty, log_lines=True) as bar:
        assert bar.draws_bar
        bar.update()
        bar.log("not printed under a bar")
    assert "run/s" in tty.getvalue() or "s/run" in tty.getvalue()
    assert "not printed" not in tty.getvalue()
    pipe = io.StringIO()
    with ProgressBar(4, desc="sweep", unit="run", stream=pipe, log_lines=True) as bar:
        bar.update()
        bar.log("one line per run")
    assert pipe.getvalue() == "one line per run\n"
    quiet = io.StringIO()
    with ProgressBar(4, desc="sweep", unit="run", stream=quiet, log_lines=False) as bar:
        bar.update()
        bar.log("nothing")
    assert quiet.getvalue() == ""
