"""The option table (``fluidsched.options``), ``fluidsched options`` and help texts a wheel user can read.

The table cannot rot: it must name exactly the core's options (``POLICY_OPTIONS``), and every default it states
as a value must be the one the core applies (a run with ``-o name=DEFAULT``, typed as the table prints it, is
bit-identical to a run without the option). Defaults computed per run are listed in ``COMPUTED`` and checked
where a run can reproduce them.
"""

from __future__ import annotations

import argparse
import json
from functools import cache
from typing import Any

import numpy as np
import pytest

import fluidsched
from cli_helpers import run_cli
from fluidsched import POLICY_NAMES, POLICY_OPTIONS
from fluidsched.cli import _parse_option, build_parser
from fluidsched.option_table import format_options
from fluidsched.options import OPTION_DOCS, POLICY_SUMMARIES, OptionDoc, option_docs, options_json
from fluidsched.plan import plan
from fluidsched.simulate import OptionValue

#: Options whose default is not one value but computed per run (from the fluid plan, the workload or the
#: scheduler limits) or a feature left off. Changing this set means reviewing what the table says about them.
COMPUTED = {
    ("wait", "thresholds"),
    ("wait", "total_limit"),
    ("wait", "max_wait"),
    ("wait", "token_budget"),
    ("nested-wait", "segments"),
    ("nested-wait", "max_wait"),
    ("nested-wait", "token_budget"),
    ("vllm-v0", "batch_size_cap"),
}

TYPES = {"int", "number", "bool", "choice", "int list"}

# The brief's two-type mix at ten times its rates, on a 2,048-token cache: KV memory binds (vllm preempts), so
# options change the runs. At 5 and 2 req/s most options made no difference and a wrong default could pass.
MIX = [(64, 32, 50.0), (128, 16, 20.0)]
RUN: dict[str, Any] = {"time_model": "linear", "d0": 0.005, "d1": 1e-4, "kv_capacity": 2048}


@cache
def _workload() -> fluidsched.Workload:
    return fluidsched.Workload.from_types(MIX, 300, seed=0)


def _run(policy: str, options: dict[str, OptionValue], **overrides: Any) -> tuple[dict[str, float], bytes]:
    """The run's summary (without wall time) and per-request latencies, for bit-for-bit comparison."""
    result = fluidsched.simulate(_workload(), policy, policy_options=options, **{**RUN, **overrides})
    summary = result.summary()
    del summary["wall_time_s"]
    return summary, np.asarray(result.latency).tobytes()


@cache
def _default_run(policy: str) -> tuple[dict[str, float], bytes]:
    return _run(policy, {})


# --- the table names exactly the core's options ---------------------------------------------------------------


def test_every_core_option_has_an_entry_and_no_entry_is_made_up() -> None:
    assert list(OPTION_DOCS) == list(POLICY_NAMES)
    assert list(POLICY_SUMMARIES) == list(POLICY_NAMES)
    for policy in POLICY_NAMES:
        documented = [d.name for d in OPTION_DOCS[policy]]
        assert len(documented) == len(set(documented)), f"{policy}: an option documented twice"
        assert set(documented) == set(POLICY_OPTIONS[policy]), policy
        assert [d.name for d in option_docs(policy)] == list(POLICY_OPTIONS[policy])  # the core's order


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_entries_are_well_formed(policy: str) -> None:
    for d in OPTION_DOCS[policy]:
        assert d.type in TYPES, (policy, d.name)
        assert d.description.endswith("."), (policy, d.name)
        assert d.default_text, (policy, d.name)
        assert bool(d.choices) == (d.type == "choice"), (policy, d.name)
        if d.default is None:
            continue
        expected: tuple[type, ...] = {"int": (int,), "number": (int, float), "bool": (bool,), "choice": (str,)}[d.type]
        assert isinstance(d.default, expected), (policy, d.name)
        assert d.type == "bool" or not isinstance(d.default, bool), (policy, d.name)
        if d.choices:
            assert d.default in d.choices


def test_the_options_without_a_value_default_are_exactly_the_computed_ones() -> None:
    unchecked = {(p, d.name) for p in POLICY_NAMES for d in OPTION_DOCS[p] if d.default is None}
    assert unchecked == COMPUTED


def test_an_option_the_core_adds_shows_as_undocumented_rather_than_vanishing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(POLICY_OPTIONS, "orca", [*POLICY_OPTIONS["orca"], "new_knob"])
    docs = option_docs("orca")
    assert [d.name for d in docs] == ["reserve", "max_tokens", "new_knob"]
    assert docs[-1].description == "(not documented yet)"


# --- every stated default is the core's ------------------------------------------------------------------------

# A larger cache and slower iterations: the fluid plan gives thresholds above 1 here.
PLANNED: dict[str, Any] = {"d0": 0.02, "kv_capacity": 16384}

# For each option with a value default: (other options, run settings, another value) such that the other value
# changes the run, so a wrong documented default would make the comparison fail. {} / {}: the plain run.
CONTEXTS: dict[tuple[str, str], tuple[dict[str, OptionValue], dict[str, Any], OptionValue]] = {
    ("wait", "admission"): ({}, {}, "all-ready"),
    ("wait", "stall"): ({"thresholds": [4, 2]}, {}, True),
    ("wait", "headroom"): ({}, {"d0": 0.02, "kv_capacity": 65536}, 0.2),
    ("wait", "memory_guard"): ({}, {}, False),
    ("wait", "credit"): ({}, {}, False),
    ("wait", "rate_estimation"): ({}, {}, False),
    ("wait", "ewma_alpha"): ({}, {}, 0.5),
    ("wait", "backlog"): ({}, {}, 2.0),
    ("nested-wait", "num_segments"): ({}, {}, 1),
    ("nested-wait", "delta"): ({}, PLANNED, 1e-3),
    ("nested-wait", "per_stage_caps"): ({}, {"kv_capacity": 4096}, True),
    ("nested-wait", "strict_break"): ({"segments": [2, 4, 8, 16]}, PLANNED, True),
    ("nested-wait", "rate_estimation"): ({}, {}, True),
    ("nested-wait", "ewma_alpha"): ({"rate_estimation": True}, {}, 0.5),
    ("nested-wait", "credit"): ({}, {}, False),
    ("nested-wait", "headroom"): ({}, PLANNED, 3.0),
    ("sarathi", "token_budget"): ({}, {}, 64),
    ("sarathi", "chunked_prefill"): ({}, {}, False),
    ("mc-sf", "on_infeasible"): ({}, {}, "skip"),
    ("sglang", "init_new_token_ratio"): ({"use_output_hints": True}, {}, 0.3),
    ("sglang", "min_new_token_ratio_factor"): ({"use_output_hints": True}, {}, 0.5),
    ("sglang", "decay_steps"): ({"use_output_hints": True}, {}, 20),
    ("sglang", "clip_max_new_tokens"): ({}, {}, 512),
    ("sglang", "max_new_tokens"): ({}, {}, 512),
    ("sglang", "retract_decode_steps"): ({"init_new_token_ratio": 0.01, "max_new_tokens": 32}, {}, 2),
    ("sglang", "use_output_hints"): ({}, {}, True),
    ("orca", "reserve"): ({}, {}, "oracle"),
    ("orca", "max_tokens"): ({}, {}, 512),
    ("vllm-v0", "max_tokens_in_batch"): ({}, {}, 512),
}
#: The simulator gives MC-SF every output length, so this default is checked through the step API instead.
STEP_API_CHECKED = {("mc-sf", "default_output_len")}

VALUE_DEFAULT_DOCS = [(p, d) for p in POLICY_NAMES for d in OPTION_DOCS[p] if d.default is not None]
VALUE_DEFAULTS = [pytest.param(p, d, id=f"{p}-{d.name}") for p, d in VALUE_DEFAULT_DOCS]


def test_every_value_default_has_a_run_that_tells_it_apart() -> None:
    assert {(p, d.name) for p, d in VALUE_DEFAULT_DOCS} == set(CONTEXTS) | STEP_API_CHECKED


@pytest.mark.parametrize(("policy", "doc"), VALUE_DEFAULTS)
def test_the_documented_default_is_what_the_core_uses(policy: str, doc: OptionDoc) -> None:
    key, value = _parse_option(f"{doc.name}={doc.default_text}")  # typed as the table prints it
    assert (key, value, type(value)) == (doc.name, doc.default, type(doc.default))
    assert _run(policy, {key: value}) == _default_run(policy)
    if (policy, key) in CONTEXTS:
        others, settings, _ = CONTEXTS[policy, key]
        assert _run(policy, {**others, key: value}, **settings) == _run(policy, others, **settings)


@pytest.mark.parametrize(("policy", "name"), list(CONTEXTS), ids=[f"{p}-{n}" for p, n in CONTEXTS])
def test_another_value_changes_the_run(policy: str, name: str) -> None:
    others, settings, other_value = CONTEXTS[policy, name]
    assert other_value != next(d.default for d in OPTION_DOCS[policy] if d.name == name)
    assert _run(policy, {**others, name: other_value}, **settings) != _run(policy, others, **settings)


def _mc_sf_admission_order(options: dict[str, Any]) -> list[int]:
    """MC-SF admits one request at a time (max_num_seqs 1), shortest known output first, ties in arrival order.
    Requests 0 and 2 are known to emit 256 tokens; request 1, between them, has no known length, so its place
    tells the length MC-SF assumed for it: [0, 1, 2] exactly when that is 256."""
    sched = fluidsched.Scheduler("mc-sf", num_blocks=64, max_num_seqs=1, policy_options=options)
    for request_id, hint in [(0, 256), (1, None), (2, 256)]:
        sched.add_request(request_id, 8, 2, output_len_hint=hint)
    order: list[int] = []
    for _ in range(20):
        order += sched.schedule().admitted
        sched.complete_step()
    return order


def test_mc_sf_default_output_len_is_the_length_of_a_request_without_one() -> None:
    (doc,) = [d for d in OPTION_DOCS["mc-sf"] if d.name == "default_output_len"]
    assert _mc_sf_admission_order({}) == [0, 1, 2]
    assert _mc_sf_admission_order(dict([_parse_option(f"default_output_len={doc.default_text}")])) == [0, 1, 2]
    assert isinstance(doc.default, int)
    assert _mc_sf_admission_order({"default_output_len": doc.default - 1}) == [1, 0, 2]
    assert _mc_sf_admission_order({"default_output_len": doc.default + 1}) == [0, 2, 1]


def test_wait_thresholds_and_max_wait_default_to_the_fluid_plan() -> None:
    p = plan(_workload(), **{**RUN, **PLANNED})
    thresholds, rates = p["wait_thresholds"], [t[2] for t in p["types"]]
    assert max(thresholds) > 1  # else the check below proves little
    # max_wait: 20 x the slowest cohort interval n_j / rate_j over types with n_j >= 2 (1 s if none).
    max_wait = 20.0 * max(n / r for n, r in zip(thresholds, rates, strict=True) if n >= 2)
    default = _run("wait", {}, **PLANNED)
    assert _run("wait", {"thresholds": [float(n) for n in thresholds]}, **PLANNED) == default
    assert _run("wait", {"max_wait": max_wait}, **PLANNED) == default
    assert _run("wait", {"thresholds": [1.0] * len(thresholds)}, **PLANNED) != default
    assert _run("wait", {"max_wait": max_wait / 50}, **PLANNED) != default


def test_nested_wait_segments_default_to_the_planned_quantiles() -> None:
    segments = plan(_workload(), **{**RUN, **PLANNED})["nested_segments"]
    default = _run("nested-wait", {}, **PLANNED)
    assert _run("nested-wait", {"segments": [float(b) for b in segments]}, **PLANNED) == default
    assert _run("nested-wait", {"segments": [4.0]}, **PLANNED) != default


def test_vllm_v0_batch_size_cap_defaults_to_max_num_seqs() -> None:
    default = _run("vllm-v0", {}, max_num_seqs=8)
    assert _run("vllm-v0", {"batch_size_cap": 8}, max_num_seqs=8) == default
    assert _run("vllm-v0", {"batch_size_cap": 4}, max_num_seqs=8) != default


# --- fluidsched options ------------------------------------------------------------------------------------------


def test_options_prints_every_policy_and_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "options")
    assert (code, err) == (0, "")
    blocks = out.rstrip("\n").split("\n\n")
    assert len(blocks) == len(POLICY_NAMES)
    for policy, block in zip(POLICY_NAMES, blocks, strict=True):
        assert block.startswith(f"{policy}: {POLICY_SUMMARIES[policy].split()[0]}")
        for d in OPTION_DOCS[policy]:
            (row,) = [line for line in block.splitlines() if line.startswith(f"  {d.name} ")]
            assert " ".join(row.split()[1:]).startswith(f"{d.type} {d.default_text} ")
        if not OPTION_DOCS[policy]:
            assert "(no options)" in block


@pytest.mark.parametrize("width", [50, 80, 140])
def test_the_table_wraps_to_the_terminal(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    text = format_options(width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    # Every word of every description is there, whatever the width.
    words = text.split()
    for docs in OPTION_DOCS.values():
        for d in docs:
            assert " ".join(d.description.split()) in " ".join(words)
    monkeypatch.setenv("COLUMNS", str(width))
    assert format_options() == text


def test_options_json_for_one_policy(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "options", "wait", "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert list(data) == ["wait"]
    assert data == options_json(["wait"])
    options = {o["name"]: o for o in data["wait"]["options"]}
    assert list(options) == list(POLICY_OPTIONS["wait"])
    assert options["admission"]["default"] == "per-type"
    assert options["admission"]["choices"] == ["per-type", "any-ready", "all-ready"]
    assert options["headroom"]["default"] == 1.0
    assert options["thresholds"]["default"] is None
    assert options["thresholds"]["default_text"] == "fluid plan"


def test_options_keeps_the_order_given_and_drops_repeats(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "options", "orca", "vllm", "orca", "--json")
    assert code == 0
    assert list(json.loads(out)) == ["orca", "vllm"]
    assert json.loads(out)["vllm"]["options"] == []


def test_an_unknown_policy_is_one_line_naming_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "options", "wait", "fcfs")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert err.startswith("fluidsched: error: unknown policy 'fcfs'")
    assert all(p in err for p in POLICY_NAMES)


# --- help texts a wheel user can read ---------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_no_help_text_points_at_docs() -> None:
    parser = build_parser()
    for name, sub in {"": parser, **_subparsers(parser)}.items():
        assert "docs/" not in sub.format_help(), f"fluidsched {name} --help"


def test_simulate_help_lists_options_and_points_at_the_options_command() -> None:
    text = " ".join(_subparsers(build_parser())["simulate"].format_help().split())
    for policy, names in POLICY_OPTIONS.items():
        assert f"{policy} {', '.join(names) if names else '(none)'}" in text
    assert text.endswith("'fluidsched options POLICY' describes each option and its default.")


def test_top_level_help_summarises_every_command_and_its_examples_parse(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    parser = build_parser()
    for name in _subparsers(parser):
        assert any(line.split()[:1] == [name] and len(line.split()) > 1 for line in out.splitlines()), name
    examples = [line.split()[1:] for line in out.splitlines() if line.startswith("  fluidsched ")]
    assert len(examples) >= 2
    for argv in examples:
        parser.parse_args(argv)  # a usage error would exit


def test_the_top_level_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(capsys, "--help")
    for line in out.splitlines():
        if line.startswith("  fluidsched "):
            code, _, err = run_cli(capsys, *line.split()[1:], *(["-q"] if " simulate " in line else []))
            assert code == 0, (line, err)
