"""The iteration calibrate times computes the model's real outputs: its logits equal the Hugging Face forward's for
prefill, chunked prefill on cached tokens, decode and mixed batches (fp32, tiny random models, CPU)."""

from __future__ import annotations

from typing import Any

import pytest
from torch_tier import require_torch

require_torch()
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fluidsched.calibrate_measure import IterationRunner, build_model  # noqa: E402
from fluidsched.calibrate_shapes import BatchPoint, load_model_shape  # noqa: E402

TINY_QWEN2 = {
    "model_type": "qwen2",  # biases on q/k/v, 6 query heads on 2 KV heads
    "vocab_size": 128,
    "hidden_size": 96,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-qwen2"])
def runner(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> IterationRunner:
    if request.param == "tiny-qwen2":
        import json

        path = tmp_path_factory.mktemp("qwen2") / "config.json"
        path.write_text(json.dumps(TINY_QWEN2))
        shape = load_model_shape(str(path))
    else:
        shape = load_model_shape(request.param)
    return IterationRunner(build_model(shape, "cpu", "fp32", seed=3), shape)


def reference(runner: IterationRunner, ids: Any) -> Any:
    """Logits at every position of ``ids`` [batch, len] from the Hugging Face forward."""
    with torch.inference_mode():
        return runner.model(ids).logits


def run(runner: IterationRunner, point: BatchPoint, ids: Any, **caches: Any) -> Any:
    inp = runner.prepare(point)
    inp.input_ids = ids
    for name, cache in caches.items():
        setattr(inp, name, cache)
    with torch.inference_mode():
        return runner.run(inp)


def test_prefill_chunked_prefill_and_decode_give_the_model_logits(runner: IterationRunner) -> None:
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(0, runner.shape.vocab_size, (25,), generator=gen)
    ref = reference(runner, seq[None])[0]
    cache = runner.new_cache(1, 25)
    first = run(runner, BatchPoint("prefill", prefill_chunk=15), seq[:15], prefill_cache=cache)
    torch.testing.assert_close(first[0], ref[14], rtol=1e-4, atol=1e-5)
    second = run(runner, BatchPoint("prefill", prefill_chunk=9, prefill_context=15), seq[15:24], prefill_cache=cache)
    torch.testing.assert_close(second[0], ref[23], rtol=1e-4, atol=1e-5)
    step = run(runner, BatchPoint("decode", num_decode_seqs=1, decode_context=24), seq[24:], decode_cache=cache)
    torch.testing.assert_close(step[0], ref[24], rtol=1e-4, atol=1e-5)


def test_a_mixed_batch_gives_each_sequence_its_logits(runner: IterationRunner) -> None:
    gen = torch.Generator().manual_seed(1)
    vocab = runner.shape.vocab_size
    decoding = torch.randint(0, vocab, (3, 11), generator=gen)  # 3 sequences: 10 cached tokens + 1 new
    prompt = torch.randint(0, vocab, (12,), generator=gen)  # a fresh 12-token prefill chunk
    ref_decode = reference(runner, decoding)[:, -1]
    ref_prompt = reference(runner, prompt[None])[0, -1]
    decode_cache = runner.new_cache(3, 11)
    for i in range(3):  # fill the decoders' caches with their first 10 tokens
        one = [(k[i : i + 1], v[i : i + 1]) for k, v in decode_cache]
        run(runner, BatchPoint("prefill", prefill_chunk=10), decoding[i, :10], prefill_cache=one)
    point = BatchPoint("mixed", prefill_chunk=12, num_decode_seqs=3, decode_context=10)
    ids = torch.cat([prompt, decoding[:, 10]])
    logits = run(runner, point, ids, prefill_cache=runner.new_cache(1, 12), decode_cache=decode_cache)
    assert logits.shape == (4, vocab)
    torch.testing.assert_close(logits[0], ref_prompt, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits[1:], ref_decode, rtol=1e-4, atol=1e-5)


def test_linear_points_skip_attention_but_keep_the_shapes(runner: IterationRunner) -> None:
    point = BatchPoint("linear", prefill_chunk=7)
    inp = runner.prepare(point)
    assert inp.prefill_cache == []
    assert inp.decode_cache == []
    with torch.inference_mode():
        assert runner.run(inp).shape == (1, runner.shape.vocab_size)
        assert runner.run(inp, with_layers=False).shape == (1, runner.shape.vocab_size)
