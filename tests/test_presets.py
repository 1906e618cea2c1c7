"""Time-model presets: the shipped files, presets read from a path (Python API, CLI, plan, adapter), the checks
on bad files, and the pipeline that builds the shipped files."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import run_cli
from fluidsched import InvalidConfigError, Workload, list_presets, load_preset, plan, simulate
from fluidsched._core import preset_info
from fluidsched.adapter import AdapterSettings, EngineLimits, build_controller

REPO = Path(__file__).resolve().parent.parent
PRESETS = (
    "llama2-7b-a100",
    "llama2-7b-h100",
    "llama2-7b-a40",
    "llama3-8b-a100",
    "llama3-8b-h100",
    "phi-2-a100",
    "phi-2-h100",
    "phi-2-a40",
    "internlm-20b-a100",
    "internlm-20b-h100",
    "codellama-34b-a100",
    "codellama-34b-h100",
)


def workload() -> Workload:
    return Workload.from_types([(200, 100, 4.0), (1000, 50, 1.0)], 300, seed=3)


def summary(**kwargs: Any) -> dict[str, float]:
    s = simulate(workload(), "vllm", **kwargs).summary()
    s.pop("wall_time_s")
    return s


def write(tmp_path: Path, doc: Any, name: str = "preset.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_shipped_presets_are_the_data_files() -> None:
    assert list_presets() == sorted(PRESETS)
    files = sorted(p.stem for p in (REPO / "python" / "fluidsched" / "data" / "presets").glob("*.json"))
    assert files == sorted(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_every_shipped_preset_loads_simulates_and_plans(name: str) -> None:
    doc = load_preset(name)
    info = preset_info(name)
    assert doc["name"] == info["name"] == name
    assert doc["format"] == "fluidsched-time-model/1"
    kv, model = doc["kv_cache"], doc["model"]
    assert info["kv_capacity_tokens"] == kv["num_blocks"] * kv["block_size"]
    # K and V, fp16, for every layer and KV head.
    assert kv["kv_bytes_per_token"] == 2 * 2 * model["num_layers"] * model["num_kv_heads"] * model["head_dim"]
    assert doc["iteration"]["num_layers"] == model["num_layers"]
    assert "microsoft/vidur" in doc["provenance"]["source"]
    assert 0 < doc["fit"]["mape_percent"] < 5
    # The simulator's default capacity is the preset's.
    result = simulate(workload(), "vllm", time_model=name)
    assert result.num_blocks == kv["num_blocks"] * kv["block_size"] // 16
    assert result.summary()["num_finished"] == 300
    assert result.summary()["mean_iteration_time_s"] > 0
    fluid = plan(types=[(200, 100, 4.0), (1000, 50, 1.0)], time_model=name)
    # The planning line: the preset's linearization, its slope raised (never lowered) to pass through the full cache.
    d0, d1 = info["linearization"]
    assert fluid["d0"] == d0
    assert fluid["d1"] >= d1
    assert 0 < fluid["capacity_tokens"] <= info["kv_capacity_tokens"]
    assert fluid["stable"]


def test_shipped_presets_keep_their_kv_capacity() -> None:
    # The default preset keeps the capacity the simulator always had.
    assert preset_info("llama2-7b-a100")["kv_capacity_tokens"] == 118_784
    assert simulate(workload(), "vllm").num_blocks == 7424
    assert load_preset("llama3-8b-a100")["kv_cache"]["num_blocks"] == 30208


def test_h100_is_faster_than_a100_and_gqa_shrinks_kv_reads() -> None:
    a100, h100 = summary(time_model="llama2-7b-a100"), summary(time_model="llama2-7b-h100")
    assert h100["mean_iteration_time_s"] < a100["mean_iteration_time_s"]
    l2, l3 = preset_info("llama2-7b-a100"), preset_info("llama3-8b-a100")
    assert l3["decode_attention_ms"][2] == pytest.approx(l2["decode_attention_ms"][2] / 4, rel=1e-3)


def test_bigger_models_take_longer_and_derived_attention_follows_the_heads() -> None:
    # Same workload, same KV capacity: per-iteration time grows with the model on each GPU.
    for gpu in ("a100", "h100"):
        models = ("phi-2", "llama2-7b", "internlm-20b", "codellama-34b")
        times = [summary(time_model=f"{m}-{gpu}", kv_capacity=20_000)["mean_iteration_time_s"] for m in models]
        assert times == sorted(times), gpu
    assert (
        summary(time_model="phi-2-a40")["mean_iteration_time_s"]
        > summary(time_model="phi-2-a100")["mean_iteration_time_s"]
    )
    l2, l3 = preset_info("llama2-7b-a100"), preset_info("llama3-8b-a100")
    # InternLM-20B: 40 query and 40 KV heads of 128 against 32 and 32: x 1.25 on the per-head terms.
    internlm = preset_info("internlm-20b-a100")
    assert internlm["decode_attention_ms"][2] == pytest.approx(l2["decode_attention_ms"][2] * 1.25, rel=1e-3)
    assert internlm["prefill_attention_ms"][1] == pytest.approx(l2["prefill_attention_ms"][1] * 1.25, rel=1e-3)
    # CodeLlama-34B: 8 KV heads like Llama-3-8B, 64 query heads (twice as many).
    codellama = preset_info("codellama-34b-a100")
    assert codellama["decode_attention_ms"][2] == l3["decode_attention_ms"][2]
    assert codellama["prefill_attention_ms"][0] == pytest.approx(2 * l2["prefill_attention_ms"][0], rel=1e-3)
    # Phi-2: 32 heads of 80 against 32 of 128; the per-call intercept is kept.
    phi = preset_info("phi-2-a100")
    assert phi["decode_attention_ms"][0] == l2["decode_attention_ms"][0]
    assert phi["decode_attention_ms"][2] == pytest.approx(l2["decode_attention_ms"][2] * 0.625, rel=1e-3)
    # KV capacity (Vidur's memory planner): the bigger the weights, the less is left.
    capacity = {n: preset_info(n)["kv_capacity_tokens"] for n in PRESETS}
    assert capacity["phi-2-a100"] == 217_088
    assert capacity["internlm-20b-a100"] == 28_672
    assert capacity["codellama-34b-a100"] == capacity["codellama-34b-h100"] == 53_248
    assert capacity["phi-2-a40"] == 122_880


def test_linearization_computed_at_load_matches_the_pipeline() -> None:
    for name in PRESETS:
        lin = load_preset(name)["fit"]["linearization"]
        assert preset_info(name)["linearization"] == (lin["d0_s"], lin["d1_s_per_token"]), name
    assert preset_info("llama2-7b-a100")["linearization"] == (0.01433, 7.948e-5)


def test_preset_round_trip_through_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, load_preset("llama2-7b-a100"), "copy.json")
    by_name = summary(time_model="llama2-7b-a100")
    assert summary(time_model=str(path)) == by_name
    assert summary(time_model=path) == by_name  # a pathlib.Path works too
    assert load_preset(path) == load_preset("llama2-7b-a100")


def without_wall_time(out: str) -> dict[str, Any]:
    return {k: v for k, v in json.loads(out).items() if k != "wall_time_s"}


def test_cli_takes_a_preset_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, load_preset("llama3-8b-h100"))
    args = ("simulate", "--type", "200:100:4", "--num-requests", "200", "--json", "--quiet")
    code, by_name, _ = run_cli(capsys, *args, "--time-model", "llama3-8b-h100")
    assert code == 0
    code, by_path, _ = run_cli(capsys, *args, "--time-model", str(path))
    assert code == 0
    assert without_wall_time(by_path) == without_wall_time(by_name)
    code, plan_out, _ = run_cli(capsys, "plan", "--type", "200:100:4", "--json", "--time-model", str(path))
    assert code == 0
    assert json.loads(plan_out)["capacity_tokens"] > 400_000  # the preset's 483,328 tokens, less the watermark


def test_help_lists_the_shipped_presets(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "simulate", "--help")
    assert code == 0
    text = " ".join(out.split())
    for name in PRESETS:
        assert name in text


def test_plan_with_a_path_equals_plan_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, load_preset("llama3-8b-a100"))
    types = [(200, 100, 4.0), (1000, 50, 1.0)]
    by_name = plan(types=types, time_model="llama3-8b-a100")
    assert plan(types=types, time_model=str(path)) == by_name
    assert (by_name["d0"], by_name["d1"]) == preset_info("llama3-8b-a100")["linearization"]


def test_adapter_settings_take_a_preset_path(tmp_path: Path) -> None:
    path = write(tmp_path, load_preset("llama2-7b-h100"))
    settings = AdapterSettings.from_mapping({"policy": "wait", "time_model": str(path), "types": [[200, 100, 4.0]]})
    limits = EngineLimits(num_blocks=7000, block_size=16, max_num_seqs=256, max_num_batched_tokens=8192)
    assert build_controller(settings, limits).policy == "wait"
    with pytest.raises(InvalidConfigError, match=r"'time_model'.*missing\.json"):
        AdapterSettings.from_mapping({"time_model": str(tmp_path / "missing.json")})


def without(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node = doc
    for k in keys[:-1]:
        node = node[k]
    del node[keys[-1]]
    return doc


def changed(doc: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    edit(doc)
    return doc


def _non_monotone(d: dict[str, Any]) -> None:
    d["iteration"]["linear_ops_ms"][3][1] = 0.1


def _negative(d: dict[str, Any]) -> None:
    d["iteration"]["decode_attention_ms"][1] = -0.001


def _zero_slope(d: dict[str, Any]) -> None:
    d["iteration"]["linear_ops_extrapolation_ms_per_token"] = 0


def _zero_blocks(d: dict[str, Any]) -> None:
    d["kv_cache"]["num_blocks"] = 0


def _zero_layers(d: dict[str, Any]) -> None:
    d["iteration"]["num_layers"] = 0


def _repeated_tokens(d: dict[str, Any]) -> None:
    d["iteration"]["linear_ops_ms"][2][0] = 16


def _nan(d: dict[str, Any]) -> None:
    d["iteration"]["overhead_ms"] = "fast"


BAD: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("missing key", lambda d: without(d, "iteration", "overhead_ms"), "iteration.overhead_ms"),
    ("missing section", lambda d: without(d, "kv_cache"), "kv_cache"),
    ("non-monotone table", lambda d: changed(d, _non_monotone), r"iteration\.linear_ops_ms\[3\].*non-decreasing"),
    ("negative coefficient", lambda d: changed(d, _negative), r"iteration\.decode_attention_ms\[1\]"),
    ("zero slope", lambda d: changed(d, _zero_slope), "linear_ops_extrapolation_ms_per_token"),
    ("zero blocks", lambda d: changed(d, _zero_blocks), "kv_cache.num_blocks"),
    ("zero layers", lambda d: changed(d, _zero_layers), "iteration.num_layers"),
    ("repeated tokens", lambda d: changed(d, _repeated_tokens), r"linear_ops_ms\[2\].*strictly increasing"),
    ("wrong type", lambda d: changed(d, _nan), r"iteration\.overhead_ms.*must be a number"),
    ("wrong format", lambda d: {**d, "format": "other/2"}, "format"),
    ("not JSON", lambda d: "{ not json", "not valid JSON"),
]


@pytest.mark.parametrize(("label", "make", "key"), BAD, ids=[b[0] for b in BAD])
def test_bad_preset_files_name_the_file_and_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str, make: Callable[[dict[str, Any]], Any], key: str
) -> None:
    path = write(tmp_path, make(load_preset("llama2-7b-a100")), "bad.json")
    for call in (
        lambda: simulate(workload(), time_model=str(path)),
        lambda: plan(types=[(10, 10, 1.0)], time_model=str(path)),
        lambda: load_preset(path),
    ):
        with pytest.raises(InvalidConfigError, match=key) as info:
            call()
        assert str(path) in str(info.value), label
    code, _, err = run_cli(capsys, "simulate", "--type", "10:10:1", "--time-model", str(path))
    assert code != 0
    assert err.count("\n") == 1
    assert str(path) in err
    assert "Traceback" not in err


def test_unknown_names_and_missing_files() -> None:
    with pytest.raises(InvalidConfigError, match=r"gpt-9.*llama3-8b-h100.*\.json"):
        simulate(workload(), time_model="gpt-9")
    with pytest.raises(InvalidConfigError, match="cannot read time-model preset file"):
        simulate(workload(), time_model="/nonexistent/preset.json")
    with pytest.raises(InvalidConfigError, match="takes no d0/d1"):
        simulate(workload(), time_model="llama3-8b-a100", d0=0.01, d1=1e-4)


def test_schema_example_keys_are_enough(tmp_path: Path) -> None:
    """A file with exactly the keys of the agreed schema (what ``fluidsched calibrate`` writes) loads."""
    doc = {
        "format": "fluidsched-time-model/1",
        "name": "tiny",
        "description": "hand-written",
        "model": {},
        "device": {},
        "kv_cache": {"block_size": 16, "num_blocks": 100, "kv_bytes_per_token": 524288, "how": "by hand"},
        "iteration": {
            "num_layers": 2,
            "overhead_ms": 0.5,
            "token_step": 8,
            "linear_ops_ms": [[8, 0.283], [16, 0.287], [4096, 8.12525]],
            "linear_ops_extrapolation_ms_per_token": 0.0019417,
            "decode_attention_ms": [0.00598, 0.001097, 8.772e-6],
            "prefill_attention_ms": [0.0001325, 1.246e-7, 1.08e-7, 9.56e-6],
        },
        "fit": {"mape_percent": None, "regions": {"decode": None}, "num_points": None},
        "provenance": {"source": "test", "tool": "none", "created": "2026-12-04"},
    }
    info = preset_info(str(write(tmp_path, doc)))
    assert info["kv_capacity_tokens"] == 1600
    assert info["num_table_points"] == 3
    result = simulate(Workload.from_types([(20, 5, 1.0)], 5, seed=0), time_model=str(tmp_path / "preset.json"))
    assert result.num_blocks == 100


def test_pipeline_reproduces_the_shipped_presets() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "fit_time_model.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for name in PRESETS:
        assert f"{name}: " in proc.stdout, name
