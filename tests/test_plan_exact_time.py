"""``plan`` under a profiled preset prices the fluid with the preset itself (``fluid/exact_time.rs``): its
largest sustainable rate and its equilibrium agree on feasibility, and any preset file (a calibrated one too)
plans and simulates."""

from __future__ import annotations

from pathlib import Path

import pytest

import fluidsched

REPO = Path(__file__).resolve().parent.parent
TWO_TYPES = [(50, 156, 167.0), (100, 171, 31.0)]


def scaled(types: list[tuple[int, int, float]], total: float) -> list[tuple[int, int, float]]:
    weight = sum(r for _, _, r in types)
    return [(p, o, total * r / weight) for p, o, r in types]


def test_linear_plans_stay_linear() -> None:
    p = fluidsched.plan(types=TWO_TYPES, time_model="linear", d0=0.01, d1=8e-5)
    assert p["fluid_exact_time"] is False
    assert tuple(p["fluid_time_model"]) == (0.01, 8e-5, 0.0)


@pytest.mark.parametrize("max_num_seqs", [256, 4096])
@pytest.mark.parametrize("preset", ["llama2-7b-a100", "llama3-8b-h100"])
def test_the_largest_rate_is_where_the_equilibrium_stops_fitting(preset: str, max_num_seqs: int) -> None:
    base = fluidsched.plan(types=TWO_TYPES, time_model=preset, max_num_seqs=max_num_seqs)
    assert base["fluid_exact_time"] is True
    rate = base["max_rate_per_s"]
    below = fluidsched.plan(types=scaled(TWO_TYPES, 0.99 * rate), time_model=preset, max_num_seqs=max_num_seqs)
    above = fluidsched.plan(types=scaled(TWO_TYPES, 1.01 * rate), time_model=preset, max_num_seqs=max_num_seqs)
    assert below["limits_feasible"]
    assert below["binding_constraint"] is None
    assert not above["limits_feasible"]
    assert above["binding_constraint"] == base["max_rate_binding"]
    # Overloaded, the mix is served at the largest rate: throughput = rate x mean output.
    mean_output = sum(o * r for _, o, r in TWO_TYPES) / sum(r for _, _, r in TWO_TYPES)
    assert above["throughput_tokens_per_s"] == pytest.approx(rate * mean_output, rel=1e-6)


def test_the_preset_prices_a_full_cache_above_its_linearisation() -> None:
    # The linearisation fits decode batches of up to 256 requests; a memory-full batch of ~800 costs more, so
    # the linear closed form promises a larger rate than the preset delivers.
    exact = fluidsched.plan(types=TWO_TYPES, max_num_seqs=4096)
    d0, d1, _ = exact["fluid_time_model"]
    linear = fluidsched.plan(types=TWO_TYPES, max_num_seqs=4096, time_model="linear", d0=d0, d1=d1)
    assert exact["max_rate_per_s"] < linear["max_rate_per_s"]


@pytest.mark.parametrize("name", ["tiny-llama-fp32-cpu.json", "llama2-7b-4-layers-bf16-cpu.json"])
def test_a_calibrated_preset_plans_and_simulates(name: str) -> None:
    path = REPO / "bench" / "calibration" / "cpu-example" / name
    p = fluidsched.plan(types=[(128, 64, 0.5)], time_model=str(path))
    assert p["fluid_exact_time"] is True
    assert p["max_rate_per_s"] > 0
    wl = fluidsched.Workload.from_types([(128, 64, 0.5 * p["max_rate_per_s"])], 200, seed=3)
    s = fluidsched.simulate(wl, "wait", time_model=str(path)).summary()
    assert s["num_finished"] == 200
