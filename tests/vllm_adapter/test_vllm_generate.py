"""(f) End to end: ``LLM.generate()`` on CPU with the adapter as ``scheduler_cls``, on a tiny random-weight Llama
written at test time (no download), for WAIT and Nested WAIT, against the stock scheduler's output."""

from __future__ import annotations

from typing import Any

import harness as h
import pytest

h.require_vllm()
pytestmark = pytest.mark.vllm

h.import_vllm_quietly()

from fluidsched.vllm import FluidschedScheduler  # noqa: E402

NUM_PROMPTS = 12
MAX_TOKENS = 10

SETTINGS: dict[str, dict[str, Any]] = {
    "wait": {"policy": "wait", "types": [[8, MAX_TOKENS, 50.0]], "options": {"max_wait": 0.05}},
    "nested-wait": {
        "policy": "nested-wait",
        "types": [[8, MAX_TOKENS, 50.0]],
        "options": {"segments": [4], "max_wait": 0.05},
    },
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return h.write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def generate(model: str, scheduler_cls: Any, additional_config: dict[str, Any] | None) -> tuple[Any, list[str]]:
    from vllm import SamplingParams

    extra = {"additional_config": additional_config} if additional_config is not None else {}
    llm = h.make_llm(model, scheduler_cls=scheduler_cls, **extra)
    params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, ignore_eos=True)
    with h.quiet_warnings():
        outputs = llm.generate([h.tiny_prompt(i) for i in range(NUM_PROMPTS)], params, use_tqdm=False)
    return llm, [o.outputs[0].text for o in outputs]


@pytest.fixture(scope="module")
def stock_texts(tiny_model: str) -> list[str]:
    llm, texts = generate(tiny_model, None, None)
    del llm
    return texts


@pytest.mark.parametrize("policy", ["wait", "nested-wait"])
def test_generate_with_the_adapter(tiny_model: str, stock_texts: list[str], policy: str) -> None:
    llm, texts = generate(tiny_model, "fluidsched.vllm.make_scheduler", {"fluidsched": SETTINGS[policy]})
    scheduler = h.llm_scheduler(llm)
    assert isinstance(scheduler, FluidschedScheduler)
    assert scheduler.controller.policy == policy
    # Every request ran to its full length, and greedy decoding gives the stock scheduler's text: the adapter
    # changed when requests ran, not what they computed.
    assert len(texts) == NUM_PROMPTS
    assert texts == stock_texts
    assert scheduler.controller.num_waiting == scheduler.controller.num_running == 0
    assert h.kv_free_blocks(scheduler) == h.kv_total_usable_blocks(scheduler)
