"""``fluidsched sweep`` on Ray: a local single-node cluster started by the test gives the local backend's rows,
bit for bit (each run is a pure function of its coordinates), through the API and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fluidsched
from fluidsched import InvalidConfigError

# The tier's environment has Ray; FLUIDSCHED_REQUIRE_RAY=1 (set by `make test-ray`) turns its absence into an
# error instead of a skip.
if os.environ.get("FLUIDSCHED_REQUIRE_RAY") == "1":
    import ray
else:
    ray = pytest.importorskip("ray", reason="Ray is not installed (make test-ray builds its environment)")

MIX = [(64, 32, 5.0), (128, 16, 2.0)]
SETTINGS: dict[str, Any] = {"time_model": "linear", "d0": 0.005, "d1": 1e-4, "kv_capacity": 4096}
GRID: dict[str, Any] = {"rates": [3.0, 9.0], "seeds": [0, 1], "num_requests": 150, **SETTINGS}


def comparable(rows: Any) -> list[tuple[Any, ...]]:
    names = [n for n in rows.dtype.names if n != "wall_time_s"]
    return [tuple(r[n] for n in names) for r in rows]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local single-node Ray cluster (2 CPUs) started by this process; its GCS address, which the CLI test's
    child process connects to. (``ray start --head`` in a child process advertised an address the machine could
    not reach itself, so every connection timed out; ``ray.init`` here does not, and shutting it down ends
    exactly the processes it started.)"""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def test_ray_rows_equal_local_rows(cluster: str) -> None:
    local = fluidsched.sweep(MIX, ["vllm", "wait", "sarathi:token_budget=256"], jobs=2, **GRID)
    remote = fluidsched.sweep(MIX, ["vllm", "wait", "sarathi:token_budget=256"], ray_address=cluster, **GRID)
    assert len(remote) == 12
    assert comparable(remote) == comparable(local)


def test_ray_cli_with_resume_and_parquet(cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    args = [
        *("-m", "fluidsched.cli", "sweep", "--type", "64:32:5", "--type", "128:16:2", "-p", "vllm", "wait"),
        *("--rate", "3,9", "--seed", "0,1", "--num-requests", "150", "--ray", cluster, "--out", str(out), "-q"),
        *("--time-model", "linear", "--d0", "0.005", "--d1", "1e-4", "--kv-capacity", "4096"),
    ]
    run = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    import pandas as pd

    frame = pd.read_parquet(out)
    local = fluidsched.sweep(MIX, ["vllm", "wait"], jobs=1, as_frame=True, **GRID)
    assert list(frame["latency_mean_s"]) == list(local["latency_mean_s"])
    again = subprocess.run([sys.executable, *args, "--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(pd.read_parquet(out)) == 8


def test_unreachable_cluster_is_a_named_error() -> None:
    with pytest.raises(InvalidConfigError, match="Ray"):
        fluidsched.sweep(MIX, ["vllm"], ray_address="127.0.0.1:1", **{**GRID, "rates": [3.0], "seeds": [0]})
