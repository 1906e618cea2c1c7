"""``fluidsched.sweep`` / ``fluidsched sweep``: the grid, parallel runs that equal serial ones, resuming, the
results file, plots, and clear errors for bad grids. (The Ray backend is tested in ``tests/ray_tier``.)"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fluidsched
from cli_helpers import run_cli
from fluidsched import SUMMARY_KEYS, InvalidConfigError, Workload, simulate
from fluidsched.sweep_io import COLUMNS, COORDINATE_COLUMNS

MIX = [(64, 32, 5.0), (128, 16, 2.0)]
SETTINGS: dict[str, Any] = {"time_model": "linear", "d0": 0.005, "d1": 1e-4, "kv_capacity": 4096}


def small_sweep(**kwargs: Any) -> Any:
    args: dict[str, Any] = {"rates": [3.0, 9.0], "seeds": [0, 1], "num_requests": 150, "jobs": 1, **SETTINGS}
    args.update(kwargs)
    return fluidsched.sweep(MIX, ["vllm", "wait"], **args)


def as_tuples(rows: Any) -> list[tuple[Any, ...]]:
    """Rows without the wall-clock column, comparable across runs."""
    names = [n for n in rows.dtype.names if n != "wall_time_s"]
    return [tuple(r[n] for n in names) for r in rows]


def test_grid_is_every_combination_in_order_and_each_row_is_a_simulation() -> None:
    rows = small_sweep()
    assert len(rows) == 2 * 2 * 2
    assert list(rows["policy"]) == ["vllm"] * 4 + ["wait"] * 4
    assert list(rows["rate"]) == [3.0, 3.0, 9.0, 9.0] * 2
    assert list(rows["seed"]) == [0, 1] * 4
    assert set(COORDINATE_COLUMNS) | set(SUMMARY_KEYS) <= set(rows.dtype.names)
    # A row is exactly the simulation of its coordinates: the mix drawn with that seed and its arrivals rescaled
    # to the rate, under those settings.
    r = rows[5]  # wait, rate 3, seed 1
    wl = Workload.from_types(MIX, 150, seed=1).rescaled_to_rate(3.0)
    direct = simulate(wl, "wait", seed=1, **SETTINGS).summary()
    for key in ("throughput_tokens_per_s", "latency_mean_s", "ttft_p99_s", "num_preemptions"):
        assert r[key] == direct[key], key


def test_parallel_jobs_give_the_serial_numbers() -> None:
    assert as_tuples(small_sweep(jobs=1)) == as_tuples(small_sweep(jobs=2))


def test_loads_are_fractions_of_plans_max_rate() -> None:
    rows = small_sweep(rates=None, loads=[0.5, 1.2], seeds=[0])
    limit = fluidsched.plan(types=MIX, max_num_seqs=256, **SETTINGS)["max_rate_per_s"]
    assert list(rows["load"][:2]) == [0.5, 1.2]
    assert rows["rate"][0] == pytest.approx(0.5 * limit)
    assert rows["rate"][1] == pytest.approx(1.2 * limit)
    assert rows["max_rate_per_s"][0] == pytest.approx(limit)


def test_results_file_has_every_summary_key_and_coordinate(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    rows = small_sweep(out=out)
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        written = list(reader)
    assert len(written) == len(rows)
    assert [float(w["throughput_tokens_per_s"]) for w in written] == list(rows["throughput_tokens_per_s"])


def test_resume_keeps_finished_rows_and_runs_only_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    small_sweep(out=out)
    with open(out, newline="") as f:
        header, *body = list(csv.reader(f))
    # An interrupted sweep: the header and three rows survived, and one kept row is marked so that re-running it
    # would be visible.
    kept = body[:3]
    kept[1][header.index("throughput_tokens_per_s")] = "12345.5"
    with open(out, "w", newline="") as f:
        csv.writer(f).writerows([header, *kept])
    with pytest.raises(InvalidConfigError, match="exists"):
        small_sweep(out=out)
    rows = small_sweep(out=out, resume=True)
    assert len(rows) == 8
    assert 12345.5 in set(rows["throughput_tokens_per_s"])  # the kept row was not run again
    fresh = small_sweep()
    differing = [i for i, (a, b) in enumerate(zip(as_tuples(rows), as_tuples(fresh), strict=True)) if a != b]
    assert len(differing) == 1


def test_plots_are_written(tmp_path: Path) -> None:
    small_sweep(rates=None, loads=[0.5, 0.9, 1.2], seeds=[0], plot_dir=tmp_path / "plots")
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert pngs
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"rates": [1.0], "loads": [0.5]}, "rate"),
        ({"rates": None, "loads": [-0.5]}, "load"),
        ({"rates": [math.nan]}, "rate"),
        ({"seeds": []}, "seed"),
        ({"jobs": 0}, "jobs"),
        ({"resume": True}, "out"),
        ({"rate": 3.0}, "rate"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
    ids=["rates and loads", "negative load", "NaN rate", "no seeds", "zero jobs", "resume without out",
         "per-run arg", "unknown setting"],
)  # fmt: skip
def test_bad_grids_are_named_errors(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidConfigError, match=fragment):
        small_sweep(**kwargs)


def test_bad_policies_are_named_errors() -> None:
    with pytest.raises(InvalidConfigError, match="fcfs"):
        fluidsched.sweep(MIX, ["fcfs"], rates=[1.0], num_requests=10, jobs=1, **SETTINGS)
    with pytest.raises(InvalidConfigError, match="token_budget"):
        fluidsched.sweep(MIX, ["sarathi:token_budget=-3"], rates=[1.0], num_requests=10, jobs=1, **SETTINGS)


def test_as_frame_needs_pandas_or_returns_a_frame() -> None:
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(InvalidConfigError, match="pandas"):
            small_sweep(as_frame=True)
    else:
        frame = small_sweep(as_frame=True)
        assert len(frame) == 8


def test_cli_sweep_writes_rows_and_prints_a_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "cli.csv"
    code, stdout, err = run_cli(
        capsys,
        *("sweep", "--type", "64:32:5", "--type", "128:16:2", "-p", "vllm", "wait", "--rate", "3,9"),
        *("--num-requests", "150", "-j", "1", "--out", str(out), "-q"),
        *("--time-model", "linear", "--d0", "0.005", "--d1", "1e-4", "--kv-capacity", "4096"),
    )
    assert code == 0, err
    assert "wait" in stdout
    with open(out, newline="") as f:
        cli_rows = list(csv.DictReader(f))
    api = small_sweep(seeds=[0])
    assert [float(r["latency_mean_s"]) for r in cli_rows] == list(api["latency_mean_s"])
    code, _, err = run_cli(capsys, "sweep", "--type", "64:32:5", "--rate", "3", "--out", str(out), "-q")
    assert code == 2
    assert "exists" in err.strip().splitlines()[-1]


def test_cli_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "sweep", "--help")
    assert code == 0
    assert "examples" in out.lower()
    assert "fluidsched sweep" in out


def test_records_are_numpy() -> None:
    rows = small_sweep(seeds=[0], rates=[3.0])
    assert isinstance(rows, np.recarray)
    assert rows.dtype["throughput_tokens_per_s"] == np.float64


def test_the_ray_backend_without_ray_names_the_extra() -> None:
    import importlib.util

    assert importlib.util.find_spec("ray") is None, "the core environment must not have Ray (it has a tier of its own)"
    with pytest.raises(InvalidConfigError, match=r"fluidsched\[ray\]"):
        small_sweep(ray_address="auto", seeds=[0], rates=[3.0])


def test_ctrl_c_keeps_the_finished_rows_and_resume_finishes(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r.csv"
    args = [
        sys.executable, "-m", "fluidsched.cli", "sweep", "--type", "64:32:5", "--type", "128:16:2", "-p", "vllm",
        "wait", "nested-wait", "--rate", "3,6,9", "--seed", "0,1,2,3,4,5,6,7", "--num-requests", "20000", "-j", "1",
        "--out", str(out), "-q", "--time-model", "linear", "--d0", "0.005", "--d1", "1e-4", "--kv-capacity", "4096",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    kept = len(out.read_text().splitlines()) - 1
    assert 2 <= kept < 72
    finished = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr
    assert len(out.read_text().splitlines()) - 1 == 72
