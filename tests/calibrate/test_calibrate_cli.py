"""``fluidsched calibrate`` end to end on CPU: a tiny config measured with the quick grid writes a preset that has
the agreed format, the config's numbers, the KV sizing and a finite fit error; its log matches the preset."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from torch_tier import require_torch

require_torch()
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import fluidsched  # noqa: E402
from cli_helpers import run_cli  # noqa: E402
from fluidsched.cli import main  # noqa: E402
from preset_schema import check_preset, preset_iteration_ms  # noqa: E402

TINY = {  # 2 layers, hidden 64, 4 heads on 2 KV heads (head_dim 16), vocabulary 256
    "model_type": "llama",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
}


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("calibrate")
    (d / "config.json").write_text(json.dumps(TINY))
    out, log = d / "tiny.json", d / "tiny.csv"
    args = ["calibrate", "--model-config", str(d / "config.json"), "--device", "cpu", "--quick", "--threads", "1"]
    args += ["--max-kv-tokens", "8200", "--out", str(out), "--log", str(log)]
    stdout, stderr = io.StringIO(), io.StringIO()  # a module-scoped fixture has no capsys
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(args)
    with log.open() as f:
        rows = list(csv.DictReader(f))
    return {
        "code": code,
        "out": stdout.getvalue(),
        "err": stderr.getvalue(),
        "preset": json.loads(out.read_text()),
        "rows": rows,
    }


def test_it_writes_a_preset_in_the_agreed_format(calibrated: dict[str, Any]) -> None:
    assert calibrated["code"] == 0, calibrated["err"]
    check_preset(calibrated["preset"])


def test_the_preset_describes_the_model_and_the_machine(calibrated: dict[str, Any]) -> None:
    p = calibrated["preset"]
    model = {k: v for k, v in p["model"].items() if k != "name"}
    assert model == {
        "num_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_kv_heads": 2,
        "head_dim": 16,
        "dtype": "fp32",
    }
    assert p["iteration"]["num_layers"] == 2
    assert p["name"].endswith("-fp32-cpu")
    assert "CPU" in p["description"]
    prov = p["provenance"]
    assert "calibrate" in prov["tool"]
    assert prov["fluidsched"] == fluidsched.__version__
    assert prov["torch"] == str(torch.__version__)
    assert prov["transformers"] == transformers.__version__
    assert prov["grid"]["batch_sizes"] == [1, 4, 16, 64]
    assert prov["grid"]["num_points"] == len(calibrated["rows"])
    assert len(prov["created"]) == 10
    assert prov["device"] == p["device"]["name"]


def test_kv_capacity_is_whole_blocks_under_the_cap(calibrated: dict[str, Any]) -> None:
    kv = calibrated["preset"]["kv_cache"]
    assert kv["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 4  # K and V, 2 layers, 2 KV heads, head_dim 16, fp32
    assert kv["block_size"] == 16
    assert kv["num_blocks"] == 8200 // 16
    assert "MemAvailable" in kv["how"]
    assert "--max-kv-tokens 8,200" in kv["how"]


def test_the_fit_error_is_reported_and_matches_the_log(calibrated: dict[str, Any]) -> None:
    fit, rows = calibrated["preset"]["fit"], calibrated["rows"]
    real = [r for r in rows if r["region"] != "linear"]
    assert fit["num_points"] == len(real)
    for region in ("decode", "prefill", "mixed"):
        errors = [abs(float(r["error_percent"])) for r in real if r["region"] == region]
        assert errors, region
        assert fit["regions"][region] == pytest.approx(sum(errors) / len(errors), abs=0.002)
    assert fit["mape_percent"] >= 0
    out = calibrated["out"]
    assert "fit error (MAPE)" in out
    assert "decode" in out
    assert "mixed" in out
    assert "written to" in out


def test_the_log_holds_every_measurement_and_the_presets_prediction(calibrated: dict[str, Any]) -> None:
    preset, rows = calibrated["preset"], calibrated["rows"]
    assert {r["region"] for r in rows} == {"linear", "decode", "prefill", "mixed"}
    for r in rows:
        lo, mid, hi = float(r["min_ms"]), float(r["median_ms"]), float(r["max_ms"])
        assert 0 < lo <= mid <= hi
        assert int(r["repeats"]) == 5
        if r["region"] == "linear":
            continue
        chunk, ctx = int(r["prefill_chunk"]), int(r["prefill_context"])
        decodes = [int(r["decode_context"])] * int(r["num_decode_seqs"])
        want = preset_iteration_ms(preset, prefill=[(chunk, ctx)] if chunk else [], decode_contexts=decodes)
        assert float(r["predicted_ms"]) == pytest.approx(want, rel=1e-5)


def test_builtin_shape_in_bf16_with_a_custom_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    args = ["calibrate", "--model-config", "tiny-llama", "--device", "cpu", "--dtype", "bf16", "--threads", "1"]
    args += ["--batch-sizes", "1,3", "--prompt-lens", "8,24", "--kv-lens", "8,40", "--repeats", "1", "--warmup", "0"]
    code, stdout, err = run_cli(capsys, *args, "--max-kv-tokens", "1000", "--name", "mine", "-q", "--out", str(out))
    assert code == 0, err
    assert err == ""  # -q: no progress lines
    p = json.loads(out.read_text())
    check_preset(p)
    assert p["name"] == "mine"
    assert p["model"]["dtype"] == "bf16"
    assert p["kv_cache"]["kv_bytes_per_token"] == 256
    assert p["provenance"]["grid"]["prompt_lens"] == [8, 24]
    assert p["iteration"]["linear_ops_ms"][-1][0] == 24 + 3  # the largest token count: a 24-chunk + 3 decodes
    assert "preset 'mine' written to" in stdout


def test_cuda_requested_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli(
        capsys, "calibrate", "--model-config", "tiny-llama", "--device", "cuda", "--out", str(tmp_path / "p.json")
    )
    assert code == 2
    assert "no CUDA device" in err
    assert err.count("\n") == 1
