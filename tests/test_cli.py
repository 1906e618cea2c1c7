"""The ``fluidsched`` command line, in process (``fluidsched.cli.main``) and once as the installed console script."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fluidsched
from cli_helpers import run_cli
from fluidsched import POLICY_NAMES, Workload, simulate
from fluidsched.cli import build_parser
from fluidsched.demo import DEMO_RATE, SCENARIOS

#: Keys ``simulate --json`` must print (a subset of SUMMARY_KEYS, plus the policy).
REQUIRED_KEYS = (
    "num_requests",
    "num_finished",
    "num_rejected",
    "throughput_tokens_per_s",
    "requests_per_s",
    "latency_mean_s",
    "latency_p50_s",
    "latency_p99_s",
    "ttft_mean_s",
    "ttft_p99_s",
    "tbt_p50_s",
    "tbt_p99_s",
    "kv_usage_max_fraction",
    "num_preemptions",
    "mean_iteration_time_s",
    "busy_fraction",
    "simulated_span_s",
    "wall_time_s",
)


def json_summary(out: str) -> dict[str, Any]:
    summary = json.loads(out)  # exactly one JSON object, nothing else on stdout
    assert isinstance(summary, dict)
    return summary


def same_metrics(cli: dict[str, Any], api: dict[str, float]) -> None:
    """The CLI's JSON equals the API's summary (NaN printed as null), wall time aside."""
    for key, value in api.items():
        if key == "wall_time_s":
            continue
        if isinstance(value, float) and math.isnan(value):
            assert cli[key] is None, key
        else:
            assert cli[key] == value, key


def test_simulate_azure_json(capsys: pytest.CaptureFixture[str], azure_trace: Path) -> None:
    code, out, _ = run_cli(
        capsys, "simulate", "--policy", "vllm", "--trace", str(azure_trace), "--num-requests", "500", "--json"
    )
    assert code == 0
    summary = json_summary(out)
    assert set(REQUIRED_KEYS) <= set(summary)
    assert set(summary) == {"policy", *fluidsched.SUMMARY_KEYS}
    assert summary["policy"] == "vllm"
    assert summary["num_requests"] == summary["num_finished"] == 500
    assert summary["wall_time_s"] > 0
    same_metrics(summary, simulate(azure_trace, "vllm", num_requests=500).summary())


def test_simulate_typed_workload_with_linear_time_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "simulate",
        "--type",
        "64:32:5",
        "--type",
        "128:16:2",
        "--num-requests",
        "300",
        "--time-model",
        "linear",
        "--d0",
        "0.005",
        "--d1",
        "0.0001",
        "--json",
    )
    assert code == 0
    summary = json_summary(out)
    assert summary["num_requests"] == summary["num_finished"] == 300
    workload = Workload.from_types([(64, 32, 5.0), (128, 16, 2.0)], 300, seed=0)
    api = simulate(workload, "vllm", time_model="linear", d0=0.005, d1=0.0001)
    same_metrics(summary, api.summary())
    # Every iteration takes d0 + d1 * tokens >= d0.
    assert summary["mean_iteration_time_s"] > 0.005


def test_simulate_passes_policy_options(capsys: pytest.CaptureFixture[str], azure_trace: Path) -> None:
    policy = "sarathi" if "sarathi" in POLICY_NAMES else "vllm"
    options = {"token_budget": 64} if policy == "sarathi" else {}
    flags = [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]
    code, out, _ = run_cli(
        capsys, "simulate", "--policy", policy, "--trace", str(azure_trace), "--num-requests", "200", "--json", *flags
    )
    assert code == 0
    api = simulate(azure_trace, policy, num_requests=200, policy_options=options)
    same_metrics(json_summary(out), api.summary())


def test_simulate_writes_records_and_a_readable_summary(
    capsys: pytest.CaptureFixture[str], azure_trace: Path, tmp_path: Path
) -> None:
    path = tmp_path / "records.csv"
    code, out, _ = run_cli(
        capsys, "simulate", "--trace", str(azure_trace), "--num-requests", "250", "--out", str(path), "-q"
    )
    assert code == 0
    assert "vllm" in out
    assert "250 / 250" in out  # requests finished
    assert f"per-request records written to {path}" in out
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 250
    assert [int(row["request_id"]) for row in rows] == list(range(250))
    assert all(float(row["finish_s"]) >= float(row["arrival_s"]) for row in rows)
    workload = fluidsched.load_workload(azure_trace, num_requests=250)
    assert [int(row["prompt_len"]) for row in rows] == workload.prompt_len


def subcommands() -> list[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("no subcommands")


def test_subcommands_include_simulate_and_demo() -> None:
    assert {"simulate", "demo"} <= set(subcommands())


@pytest.mark.parametrize("command", [[], *([c] for c in subcommands())], ids=lambda c: " ".join(c) or "top")
def test_help_exits_zero(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, err = run_cli(capsys, *command, "--help")
    assert code == 0
    assert out.startswith("usage: fluidsched")
    assert " ".join(["fluidsched", *command]) in out
    assert err == ""


def test_simulate_help_lists_policies_and_their_options(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(capsys, "simulate", "--help")
    for policy, options in fluidsched.POLICY_OPTIONS.items():
        assert policy in out
        for option in options:
            assert option in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"fluidsched {fluidsched.__version__}"


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fluidsched: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_linear_time_model_needs_d0(capsys: pytest.CaptureFixture[str], azure_trace: Path) -> None:
    code, out, err = run_cli(capsys, "simulate", "--trace", str(azure_trace), "--time-model", "linear", "--d1", "1e-4")
    assert_one_line_error(code, err, "--time-model linear needs --d0")
    assert out == ""


def test_nonexistent_trace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    code, out, err = run_cli(capsys, "simulate", "--trace", str(missing), "--json")
    assert_one_line_error(code, err, "cannot read", str(missing))
    assert out == ""


def test_length_only_trace_needs_rate(capsys: pytest.CaptureFixture[str], lmsys_trace: Path) -> None:
    code, _, err = run_cli(capsys, "simulate", "--trace", str(lmsys_trace))
    assert_one_line_error(code, err, "no arrival times", "--rate")
    code, out, _ = run_cli(
        capsys, "simulate", "--trace", str(lmsys_trace), "--rate", "4", "--num-requests", "100", "--json"
    )
    assert code == 0
    assert json_summary(out)["num_finished"] == 100


def test_missing_workload(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "simulate")
    assert_one_line_error(code, err, "--trace FILE", "--type")


def test_malformed_trace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,12,x\n")
    code, _, err = run_cli(capsys, "simulate", "--trace", str(path))
    assert_one_line_error(code, err, str(path), 'column "GeneratedTokens"', 'not a number: found "x"')


def test_unknown_policy_option(capsys: pytest.CaptureFixture[str], azure_trace: Path) -> None:
    code, _, err = run_cli(capsys, "simulate", "--trace", str(azure_trace), "-o", "bogus=1")
    assert_one_line_error(code, err, '"bogus"')


def test_request_larger_than_the_cache(capsys: pytest.CaptureFixture[str], azure_trace: Path) -> None:
    code, _, err = run_cli(capsys, "simulate", "--trace", str(azure_trace), "--kv-capacity", "256", "-q")
    assert_one_line_error(code, err, "invalid request", "kv_capacity")


def test_unknown_policy_is_rejected_by_the_parser(capsys: pytest.CaptureFixture[str], azure_trace: Path) -> None:
    code, out, err = run_cli(capsys, "simulate", "--policy", "nope", "--trace", str(azure_trace))
    assert code == 2
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert "error:" in last
    assert "'nope'" in last
    for policy in POLICY_NAMES:
        assert policy in last


@pytest.mark.parametrize(
    "args",
    [["--type", "0:5:1"], ["--type", "5:5"], ["--type", "5:5:nan"], ["--num-requests", "0"], ["--rate", "-1"]],
    ids=["zero prompt", "missing rate", "NaN rate", "zero requests", "negative rate"],
)
def test_bad_values_are_rejected_by_the_parser(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = run_cli(capsys, "simulate", *args)
    assert code == 2
    assert out == ""
    assert "error:" in err.strip().splitlines()[-1]


def test_demo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "demo", "--num-requests", "300", "--out-dir", str(tmp_path), "--quiet")
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    table = {line.split()[0]: line for line in lines if line.strip() and line.split()[0] in POLICY_NAMES}
    assert sorted(table) == sorted(POLICY_NAMES)
    assert f"{len(POLICY_NAMES)} policies x 300 requests" in out
    png = tmp_path / "fluidsched-demo.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_demo_json_matches_the_api(capsys: pytest.CaptureFixture[str], tmp_path: Path, azure_trace: Path) -> None:
    code, out, _ = run_cli(
        capsys,
        *("demo", "--scenario", "azure", "--num-requests", "200", "--policy", "vllm", "--json", "-q"),
        *("--out-dir", str(tmp_path)),
    )
    assert code == 0
    (row,) = json.loads(out)
    assert row["policy"] == "vllm"
    rate = SCENARIOS["azure"].rate
    same_metrics(row, simulate(azure_trace, "vllm", rate=rate, num_requests=200).summary())


def test_demo_paper_scenario_is_the_two_type_mix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(
        capsys, "demo", "--num-requests", "400", "--policy", "wait", "--json", "-q", "--out-dir", str(tmp_path)
    )
    assert code == 0
    (row,) = json.loads(out)
    types = [(50, 156, DEMO_RATE * 167 / 198), (100, 171, DEMO_RATE * 31 / 198)]
    expected = simulate(Workload.from_types(types, 400, seed=1), "wait", max_num_seqs=4096).summary()
    same_metrics(row, expected)


def test_plan_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "plan", "--type", "64:32:5", "--type", "128:16:2", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(fluidsched.PLAN_KEYS) <= set(result)
    assert result["types"] == [[64, 32, 5.0], [128, 16, 2.0]]
    assert result["stable"] is (result["rho"] < 1)


def console_script() -> str:
    found = shutil.which("fluidsched") or str(Path(sys.executable).parent / "fluidsched")
    assert os.access(found, os.X_OK), found
    return found


def test_console_script(azure_trace: Path) -> None:
    proc = subprocess.run(
        [
            console_script(),
            "simulate",
            "--policy",
            "vllm",
            "--trace",
            str(azure_trace),
            "--num-requests",
            "500",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json_summary(proc.stdout)
    assert set(REQUIRED_KEYS) <= set(summary)
    assert summary["num_requests"] == summary["num_finished"] == 500
    same_metrics(summary, simulate(azure_trace, "vllm", num_requests=500).summary())


def test_console_script_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [console_script(), "simulate", "--trace", str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line_error(proc.returncode, proc.stderr, "cannot read")
    assert "Traceback" not in proc.stderr


OUT_OF_RANGE = [["--seed", "-1"], ["--kv-capacity", str(2**40)], ["--max-num-seqs", str(2**33)]]
OUT_OF_RANGE_IDS = ["negative seed", "huge kv capacity", "huge max-num-seqs"]


@pytest.mark.parametrize("args", OUT_OF_RANGE, ids=OUT_OF_RANGE_IDS)
def test_out_of_range_values_exit_2(capsys: pytest.CaptureFixture[str], azure_trace: Path, args: list[str]) -> None:
    code, out, err = run_cli(capsys, "simulate", "--trace", str(azure_trace), "--num-requests", "20", "-q", *args)
    assert_one_line_error(code, err, args[1])
    assert out == ""


# ----------------------------------------------------------------------------- regressions for bugs fixed


@pytest.mark.parametrize("args", [OUT_OF_RANGE[0], OUT_OF_RANGE[2]], ids=[OUT_OF_RANGE_IDS[0], OUT_OF_RANGE_IDS[2]])
def test_out_of_range_error_names_the_option(
    capsys: pytest.CaptureFixture[str], azure_trace: Path, args: list[str]
) -> None:
    code, _, err = run_cli(capsys, "simulate", "--trace", str(azure_trace), "--num-requests", "20", "-q", *args)
    assert_one_line_error(code, err)
    assert args[0] in err or args[0].lstrip("-").replace("-", "_") in err  # --max-num-seqs or max_num_seqs


def test_unknown_policy_error_is_one_line(capsys: pytest.CaptureFixture[str], azure_trace: Path) -> None:
    code, _, err = run_cli(capsys, "simulate", "--policy", "nope", "--trace", str(azure_trace))
    assert_one_line_error(code, err, "nope")
