"""A small, offline harness for driving vLLM 0.32.0's v1 scheduler by hand on a CPU-only machine.

Written for this project (not derived from vLLM's test suite). It builds a real ``VllmConfig`` from a
config-only local model directory, instantiates a scheduler class exactly the way vLLM's ``EngineCore`` does,
makes ``Request`` objects, fakes the model runner's output, and drives ``schedule()`` /
``update_from_output()`` for a number of steps. It also writes a tiny random-weight Llama (with a word-level
tokenizer) for end-to-end ``vllm.LLM(...)`` runs on CPU.

Importing this module sets, *before* vLLM is imported by anything here: ``VLLM_TARGET_DEVICE=cpu``,
``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``, and a temporary ``HF_HOME`` and ``VLLM_CACHE_ROOT``
(removed at interpreter exit), so nothing is downloaded and nothing is written under ``~/.cache``. vLLM,
torch and transformers are imported lazily, inside the functions. ``pytest.importorskip("vllm")`` before
importing this module is fine: ``import vllm`` only loads torch and ``vllm.envs`` (which reads the
environment lazily). Import this module before anything imports ``transformers`` or ``huggingface_hub``:
``huggingface_hub`` reads ``HF_HOME`` and ``HF_HUB_OFFLINE`` once, at import time (with the local model
directories used here nothing is fetched either way, but the cache would then be the user's).

Import it as ``import harness`` from a test module in ``tests/vllm_adapter/`` (pytest's default "prepend" import mode
puts that folder on ``sys.path``). Never add an ``__init__.py`` to ``tests/vllm_adapter/``: pytest would then put
``tests/`` on ``sys.path`` and ``import vllm`` would find this folder instead of the real vLLM package.

Typical use::

    import harness as h
    from vllm.v1.core.sched.scheduler import Scheduler

    model_dir = h.write_stub_model_config(tmp_path)
    sched = h.make_vllm_scheduler(Scheduler, model_dir=model_dir, num_blocks=200)
    reqs = {0: [h.make_request("a", 40, 8, block_size=16)], 3: [h.make_request("b", 20, 4, block_size=16)]}
    result = h.run_steps(sched, reqs, max_steps=100)
    assert result.finished == {"a", "b"}
    assert h.kv_free_blocks(sched) == h.kv_total_usable_blocks(sched)
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import json
import os
import shutil
import sys
import tempfile
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------------------------
# Environment: must be in place before vLLM / transformers / huggingface_hub read it.
# --------------------------------------------------------------------------------------------------------------

_SCRATCH = tempfile.mkdtemp(prefix="fluidsched-vllm-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)

os.environ["VLLM_TARGET_DEVICE"] = "cpu"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = os.path.join(_SCRATCH, "hf_home")
os.environ["VLLM_CACHE_ROOT"] = os.path.join(_SCRATCH, "vllm_cache")
# No usage-stats reporting thread, no telemetry attempts.
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Small CPU KV cache for end-to-end runs (GiB); harmless for the scheduler-only helpers.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

#: The vLLM version this harness was written against (the adapter pins the same one).
VLLM_VERSION = "0.32.0"

#: Token id the fake model runner samples for ordinary steps.
FAKE_TOKEN_ID = 7
#: End-of-sequence token id: set on requests made with ``ignore_eos=False``, sampled for ids in ``eos_for``.
EOS_TOKEN_ID = 2
#: Vocabulary of the stub model config (prompt token ids are drawn below it).
STUB_VOCAB_SIZE = 32_000


def _imp(name: str) -> Any:
    """Import a module lazily, silencing the import-time warnings of torch/vLLM.

    Typed ``Any`` so that mypy needs no vLLM/torch stubs. The project's pytest configuration turns warnings
    into errors, and importing vLLM's scheduler triggers third-party ``DeprecationWarning``s (e.g. torch's
    ``torch.jit.script_method``): once a module is imported here, later imports of it are silent.
    """
    module = sys.modules.get(name)
    if module is not None:
        return module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def require_vllm() -> None:
    """Skips the calling test module when vLLM is not installed, or fails it under ``FLUIDSCHED_REQUIRE_VLLM=1``
    (what ``make test-vllm`` and CI set), so that the vLLM tier can never pass by skipping."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("vllm") is not None:
        return
    if os.environ.get("FLUIDSCHED_REQUIRE_VLLM") == "1":
        raise RuntimeError("FLUIDSCHED_REQUIRE_VLLM=1 but vLLM is not importable in this environment")
    pytest.skip("vLLM is not installed (make test-vllm builds its tier)", allow_module_level=True)


def import_vllm_quietly() -> None:
    """Import the vLLM modules this harness and the adapter use, with import-time warnings silenced.

    Call it (or any harness function) before a test module's own ``from vllm... import ...`` lines when
    warnings are errors.
    """
    for name in (
        "vllm",
        "vllm.config",
        "vllm.sampling_params",
        "vllm.v1.request",
        "vllm.v1.outputs",
        "vllm.v1.kv_cache_interface",
        "vllm.v1.core.kv_cache_utils",
        "vllm.v1.structured_output",
        "vllm.v1.core.sched.request_queue",
        "vllm.v1.core.sched.scheduler",
        "vllm.v1.core.sched.async_scheduler",
    ):
        _imp(name)


def scheduler_classes() -> tuple[Any, Any]:
    """vLLM's ``(Scheduler, AsyncScheduler)``, imported quietly."""
    return (
        _imp("vllm.v1.core.sched.scheduler").Scheduler,
        _imp("vllm.v1.core.sched.async_scheduler").AsyncScheduler,
    )


# --------------------------------------------------------------------------------------------------------------
# Model directories (no download)
# --------------------------------------------------------------------------------------------------------------


def write_stub_model_config(root: str | os.PathLike[str], *, max_position_embeddings: int = 131_072) -> str:
    """Write a config-only Llama model directory under ``root`` and return its path.

    It holds ``config.json`` only (no weights, no tokenizer): enough for ``ModelConfig(model=<dir>,
    skip_tokenizer_init=True)``, which is all the scheduler needs. ``max_position_embeddings`` is large so that
    ``max_model_len`` (set to ``max(max_num_batched_tokens, 8192)`` by :func:`make_vllm_scheduler`) fits.
    """
    transformers = _imp("transformers")
    path = Path(root) / "stub-llama-config"
    config = transformers.LlamaConfig(
        vocab_size=STUB_VOCAB_SIZE,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=1,
        eos_token_id=EOS_TOKEN_ID,
        pad_token_id=0,
    )
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(path)
    return str(path)


#: Words of the tiny model's tokenizer vocabulary (after the four special tokens).
_TINY_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def write_tiny_llama(
    directory: str | os.PathLike[str],
    *,
    vocab_size: int = 512,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    max_position_embeddings: int = 2048,
    seed: int = 0,
) -> str:
    """Write a tiny random-weight Llama with a word-level tokenizer to ``directory``; return its path.

    2 layers, hidden 128, 2 heads (head_dim 64: the CPU attention kernel rejects head_dim 16), vocabulary 512:
    ``<pad>``=0, ``<s>``=1, ``</s>``=2, ``<unk>``=3, then the words ``w4`` ... ``w511``. Built locally with
    transformers + tokenizers (no download), saved as safetensors (about 0.6 MB) plus a
    ``PreTrainedTokenizerFast``. Usable as ``vllm.LLM(model=dir, block_size=32, enforce_eager=True,
    dtype="float32")`` on CPU (with ``VLLM_CPU_KVCACHE_SPACE`` small, e.g. 1). Prompts are whitespace-separated
    words such as ``"w10 w11 w12"``; see :func:`tiny_prompt`.
    """
    torch = _imp("torch")
    transformers = _imp("transformers")
    tokenizers = _imp("tokenizers")

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)

    vocab = {tok: i for i, tok in enumerate(_TINY_SPECIALS)}
    for i in range(len(_TINY_SPECIALS), vocab_size):
        vocab[f"w{i}"] = i
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=max_position_embeddings,
    )
    fast.save_pretrained(path)

    config = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(path, safe_serialization=True)
    # A generation config without sampling defaults keeps vLLM's defaults (greedy when temperature=0).
    (path / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}), encoding="utf-8"
    )
    return str(path)


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Silence Python warnings inside the block (not thread-safe, like ``warnings.catch_warnings``).

    The project's pytest configuration turns warnings into errors; vLLM/torch emit third-party
    ``DeprecationWarning``/``FutureWarning``s while building an engine (e.g. ``torch.distributed.reduce_op``).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def make_llm(model_dir: str, *, scheduler_cls: Any = None, **kwargs: Any) -> Any:
    """Build ``vllm.LLM`` for a CPU run of the tiny model, in-process, with warnings silenced.

    Sets ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (the engine core, hence the scheduler, lives in this process:
    ``llm.llm_engine.engine_core.engine_core.scheduler``; see :func:`llm_scheduler`) unless already set.
    Defaults: ``block_size=32`` (the CPU attention backend needs a multiple of 32), ``enforce_eager=True``,
    ``dtype="float32"``, ``max_model_len=512``, ``max_num_seqs=8``, ``max_num_batched_tokens=256``,
    ``seed=0``; ``kwargs`` override them. ``scheduler_cls`` is a class or a dotted path. Call ``generate()``
    inside :func:`quiet_warnings` too when warnings are errors.
    """
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    options: dict[str, Any] = {
        "block_size": 32,
        "enforce_eager": True,
        "dtype": "float32",
        "max_model_len": 512,
        "max_num_seqs": 8,
        "max_num_batched_tokens": 256,
        "seed": 0,
    }
    options.update(kwargs)
    if scheduler_cls is not None:
        options["scheduler_cls"] = scheduler_cls
    with quiet_warnings():
        llm_cls = _imp("vllm").LLM
        return llm_cls(model=model_dir, **options)


def llm_scheduler(llm: Any) -> Any:
    """The scheduler object of an in-process ``LLM`` (``VLLM_ENABLE_V1_MULTIPROCESSING=0``)."""
    return llm.llm_engine.engine_core.engine_core.scheduler


def tiny_prompt(i: int, length: int = 8, vocab_size: int = 512) -> str:
    """A prompt of ``length`` known words for the tiny model, different for each ``i``."""
    first = len(_TINY_SPECIALS)
    span = vocab_size - first
    return " ".join(f"w{first + (i * 7 + j) % span}" for j in range(length))


# --------------------------------------------------------------------------------------------------------------
# Scheduler construction
# --------------------------------------------------------------------------------------------------------------


def make_vllm_config(
    *,
    model_dir: str,
    max_num_seqs: int = 16,
    max_num_batched_tokens: int = 8192,
    num_blocks: int = 10_000,
    block_size: int = 16,
    enable_prefix_caching: bool = False,
    async_scheduling: bool = False,
    additional_config: Mapping[str, Any] | None = None,
    enable_chunked_prefill: bool = True,
    long_prefill_token_threshold: int = 0,
    max_model_len: int | None = None,
    policy: str = "fcfs",
    scheduler_cls: Any = None,
) -> Any:
    """Build a ``VllmConfig`` for scheduler-level tests (no model is loaded, no device is touched)."""
    config_mod = _imp("vllm.config")
    if max_model_len is None:
        max_model_len = max(max_num_batched_tokens, 8192)
    model_config = config_mod.ModelConfig(
        model=model_dir,
        tokenizer=model_dir,
        skip_tokenizer_init=True,
        dtype="float32",
        seed=42,
        max_model_len=max_model_len,
    )
    scheduler_config = config_mod.SchedulerConfig(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        max_model_len=max_model_len,
        long_prefill_token_threshold=long_prefill_token_threshold,
        enable_chunked_prefill=enable_chunked_prefill,
        async_scheduling=async_scheduling,
        is_encoder_decoder=model_config.is_encoder_decoder,
        policy=policy,
        # The config field takes a class or a dotted path; a factory function is only called, not recorded.
        scheduler_cls=scheduler_cls if isinstance(scheduler_cls, (type, str)) else None,
    )
    cache_config = config_mod.CacheConfig(
        block_size=block_size,
        gpu_memory_utilization=0.9,
        cache_dtype="auto",
        enable_prefix_caching=enable_prefix_caching,
    )
    vllm_config = config_mod.VllmConfig(
        model_config=model_config,
        cache_config=cache_config,
        scheduler_config=scheduler_config,
        additional_config=dict(additional_config or {}),
    )
    # The CPU platform's check_and_update_config forces async_scheduling off (vllm/platforms/cpu.py); put the
    # requested value back, as a GPU engine would have it (the adapter's factory reads it).
    vllm_config.scheduler_config.async_scheduling = async_scheduling
    # What EngineCore._initialize_kv_caches does after profiling: publish the block count.
    vllm_config.cache_config.num_gpu_blocks = num_blocks
    return vllm_config


def make_kv_cache_config(*, num_blocks: int, block_size: int) -> Any:
    """A one-group ``KVCacheConfig`` (full attention, one layer, no tensors): the scheduler's view of the cache."""
    torch = _imp("torch")
    kvi = _imp("vllm.v1.kv_cache_interface")
    spec = kvi.FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=1, dtype=torch.float32)
    return kvi.KVCacheConfig(
        num_blocks=num_blocks,
        kv_cache_tensors=[],
        kv_cache_groups=[kvi.KVCacheGroupSpec(layer_names=["layer"], kv_cache_spec=spec)],
    )


def make_vllm_scheduler(
    scheduler_cls: Any,
    *,
    model_dir: str,
    max_num_seqs: int = 16,
    max_num_batched_tokens: int = 8192,
    num_blocks: int = 10_000,
    block_size: int = 16,
    enable_prefix_caching: bool = False,
    async_scheduling: bool = False,
    additional_config: Mapping[str, Any] | None = None,
    enable_chunked_prefill: bool = True,
    long_prefill_token_threshold: int = 0,
    max_model_len: int | None = None,
    policy: str = "fcfs",
    log_stats: bool = False,
    include_finished_set: bool = False,
) -> Any:
    """Instantiate ``scheduler_cls`` (a class or factory) the way vLLM 0.32.0's ``EngineCore.__init__`` does.

    ``num_blocks`` counts the null block (block 0), so ``num_blocks - 1`` blocks are usable.
    ``additional_config`` ends up in ``scheduler.vllm_config.additional_config``. ``async_scheduling`` is
    recorded in ``scheduler_config.async_scheduling`` (restored after the CPU platform hook turned it off;
    vLLM's own ``get_scheduler_cls()`` would pick ``AsyncScheduler`` from it, here the class is the caller's
    choice: pass ``AsyncScheduler`` with ``async_scheduling=True``). ``scheduler_config.scheduler_cls`` is set
    to ``scheduler_cls`` when it is a class, so the config reads like the engine's; a factory function works
    too (it is called with the same keywords).
    """
    vllm_config = make_vllm_config(
        model_dir=model_dir,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        num_blocks=num_blocks,
        block_size=block_size,
        enable_prefix_caching=enable_prefix_caching,
        async_scheduling=async_scheduling,
        additional_config=additional_config,
        enable_chunked_prefill=enable_chunked_prefill,
        long_prefill_token_threshold=long_prefill_token_threshold,
        max_model_len=max_model_len,
        policy=policy,
        scheduler_cls=scheduler_cls,
    )
    kv_cache_config = make_kv_cache_config(num_blocks=num_blocks, block_size=block_size)
    kv_utils = _imp("vllm.v1.core.kv_cache_utils")
    scheduler_block_size, hash_block_size = kv_utils.resolve_kv_cache_block_sizes(kv_cache_config, vllm_config)
    kv_cache_config.hash_block_size = hash_block_size
    som = _imp("vllm.v1.structured_output")
    structured_output_manager = som.StructuredOutputManager(vllm_config)
    # Same keywords as vllm/v1/engine/core.py (EngineCore.__init__, 0.32.0).
    return scheduler_cls(
        vllm_config=vllm_config,
        kv_cache_config=kv_cache_config,
        structured_output_manager=structured_output_manager,
        include_finished_set=include_finished_set,
        log_stats=log_stats,
        block_size=scheduler_block_size,
        hash_block_size=hash_block_size,
    )


# --------------------------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------------------------

_BLOCK_HASHERS: dict[int, Any] = {}
#: Requests made by :func:`make_request`, for :func:`fake_runner_output` without a scheduler.
_LIVE_REQUESTS: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def _block_hasher(block_size: int) -> Any:
    hasher = _BLOCK_HASHERS.get(block_size)
    if hasher is None:
        kv_utils = _imp("vllm.v1.core.kv_cache_utils")
        hashing = _imp("vllm.utils.hashing")
        hash_fn = hashing.get_hash_fn_by_name("sha256")
        kv_utils.init_none_hash(hash_fn)
        hasher = kv_utils.get_request_block_hasher(block_size, hash_fn)
        _BLOCK_HASHERS[block_size] = hasher
    return hasher


def default_prompt_token_ids(req_id: str, prompt_len: int) -> list[int]:
    """Deterministic prompt tokens that differ between request ids (so no accidental prefix-cache hits)."""
    base = int.from_bytes(hashlib.sha256(req_id.encode()).digest()[:4], "little")
    span = STUB_VOCAB_SIZE - 10
    return [10 + (base + j) % span for j in range(prompt_len)]


def make_request(
    req_id: str,
    prompt_len: int,
    max_tokens: int,
    *,
    arrival_time: float | None = None,
    block_size: int,
    ignore_eos: bool = True,
    prompt_token_ids: Sequence[int] | None = None,
    priority: int = 0,
) -> Any:
    """Build a vLLM ``Request`` with a sha256 block hasher (so prefix caching works).

    ``prompt_token_ids`` overrides the default per-id tokens (pass shared prefixes to test prefix caching).
    With ``ignore_eos=False`` the request stops when it samples :data:`EOS_TOKEN_ID` (see ``eos_for`` in
    :func:`fake_runner_output`). ``arrival_time`` defaults to ``time.time()`` (vLLM's own default).
    ``block_size`` must be the scheduler's ``hash_block_size`` (equal to ``block_size`` here).
    """
    sampling_params_mod = _imp("vllm.sampling_params")
    request_mod = _imp("vllm.v1.request")
    tokens = list(prompt_token_ids) if prompt_token_ids is not None else default_prompt_token_ids(req_id, prompt_len)
    if len(tokens) != prompt_len:
        raise ValueError(f"prompt_token_ids has {len(tokens)} tokens, prompt_len is {prompt_len}")
    sampling_params = sampling_params_mod.SamplingParams(max_tokens=max_tokens, ignore_eos=ignore_eos)
    # What the engine's input processor does with the model's generation config (sets eos unless ignore_eos).
    sampling_params.update_from_generation_config({}, eos_token_id=EOS_TOKEN_ID)
    request = request_mod.Request(
        request_id=req_id,
        prompt_token_ids=tokens,
        sampling_params=sampling_params,
        pooling_params=None,
        arrival_time=arrival_time,
        priority=priority,
        block_hasher=_block_hasher(block_size),
    )
    _LIVE_REQUESTS[req_id] = request
    return request


# --------------------------------------------------------------------------------------------------------------
# Fake model runner
# --------------------------------------------------------------------------------------------------------------


def prefill_done_ids(scheduler_output: Any, scheduler: Any = None) -> list[str]:
    """Ids scheduled in ``scheduler_output`` whose step samples a token (prefill complete, or decode).

    Must be called right after ``schedule()`` returned ``scheduler_output`` and before the next ``schedule()``:
    it reads ``Request.is_prefill_chunk``, which ``_update_after_schedule`` sets for the step just scheduled
    (``num_computed_tokens < num_tokens + num_output_placeholders``, so it is also right under async
    scheduling).
    """
    done: list[str] = []
    for req_id in scheduler_output.num_scheduled_tokens:
        request = scheduler.requests.get(req_id) if scheduler is not None else _LIVE_REQUESTS.get(req_id)
        if request is None:
            raise KeyError(f"unknown request {req_id!r}: pass scheduler=")
        if not request.is_prefill_chunk:
            done.append(req_id)
    return done


def fake_runner_output(
    scheduler_output: Any,
    *,
    eos_for: Iterable[str] = frozenset(),
    scheduler: Any = None,
    token_id: int = FAKE_TOKEN_ID,
) -> Any:
    """A ``ModelRunnerOutput`` for ``scheduler_output``: one sampled token per request whose prefill finished
    in that step (or that decoded), ``[]`` for requests still mid-prefill.

    Requests in ``eos_for`` sample :data:`EOS_TOKEN_ID` instead (they stop if made with ``ignore_eos=False``).
    Pass ``scheduler=`` for an exact lookup of request state; without it the requests must come from
    :func:`make_request`. Build it right after ``schedule()`` (see :func:`prefill_done_ids`).
    """
    outputs_mod = _imp("vllm.v1.outputs")
    eos = frozenset(eos_for)
    done = set(prefill_done_ids(scheduler_output, scheduler))
    req_ids = list(scheduler_output.num_scheduled_tokens)
    sampled = [([EOS_TOKEN_ID if rid in eos else token_id] if rid in done else []) for rid in req_ids]
    return outputs_mod.ModelRunnerOutput(
        req_ids=req_ids,
        req_id_to_index={rid: i for i, rid in enumerate(req_ids)},
        sampled_token_ids=sampled,
        logprobs=None,
        prompt_logprobs_dict={},
        pooler_output=[],
    )


# --------------------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------------------


@dataclass
class StepTrace:
    """One scheduling step: what ``schedule()`` returned, and the queue/KV state right after it."""

    step: int
    num_scheduled_tokens: dict[str, int]
    num_running: int
    num_waiting: int
    free_blocks: int
    preempted: set[str] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)


@dataclass
class RunResult:
    """What :func:`run_steps` saw."""

    trace: list[StepTrace]
    finished: set[str]
    finish_reasons: dict[str, str]
    steps: int

    @property
    def scheduled(self) -> list[dict[str, int]]:
        """Per step, ``dict(num_scheduled_tokens)``."""
        return [t.num_scheduled_tokens for t in self.trace]


def _collect_finished(engine_outputs: Mapping[int, Any], into: dict[str, str]) -> set[str]:
    done: set[str] = set()
    for eco in engine_outputs.values():
        for out in eco.outputs:
            if out.finish_reason is not None:
                into[out.request_id] = str(out.finish_reason)
                done.add(out.request_id)
    return done


def run_steps(
    scheduler: Any,
    requests_by_step: Mapping[int, Sequence[Any]],
    max_steps: int,
    *,
    eos_at: Mapping[str, int] | None = None,
    overlap: bool = False,
    stop_when_idle: bool = True,
) -> RunResult:
    """Drive ``scheduler`` for up to ``max_steps`` steps.

    Before step ``s`` (0-based) the requests in ``requests_by_step[s]`` are added. Each step calls
    ``schedule()``, builds the fake output right away, and feeds it to ``update_from_output()``. ``eos_at``
    maps a request id to the number of output tokens after which it samples EOS (only stops requests made
    with ``ignore_eos=False``).

    ``overlap=True`` mimics the engine's batch queue under async scheduling (``EngineCore.step_with_batch_queue``,
    depth 2): step ``s+1`` is scheduled *before* step ``s``'s output is applied; use it with ``AsyncScheduler``
    (a plain ``Scheduler`` would schedule nothing for requests whose output is still in flight). With
    ``overlap=False`` (lockstep, like ``EngineCore.step``) both scheduler kinds work.

    Stops early when no request is left, no arrival is pending and ``stop_when_idle``. Returns the per-step
    trace and the ids of finished requests (from ``EngineCoreOutput.finish_reason``).
    """
    eos_at = dict(eos_at or {})
    last_arrival = max(requests_by_step, default=-1)
    trace: list[StepTrace] = []
    finished: set[str] = set()
    reasons: dict[str, str] = {}
    pending: list[tuple[Any, Any, StepTrace]] = []  # (scheduler_output, runner_output, trace entry), oldest first

    def eos_ids(sched_out: Any) -> set[str]:
        ids: set[str] = set()
        for rid in sched_out.num_scheduled_tokens:
            req = scheduler.requests.get(rid)
            if req is None or rid not in eos_at:
                continue
            # Ordinal of the token this step samples: outputs applied + outputs in flight (async placeholders,
            # this step's included), at least this one.
            if req.num_output_tokens + max(req.num_output_placeholders, 1) >= eos_at[rid]:
                ids.add(rid)
        return ids

    def apply(sched_out: Any, runner_out: Any, entry: StepTrace) -> None:
        engine_outputs = scheduler.update_from_output(sched_out, runner_out)
        done = _collect_finished(engine_outputs, reasons)
        entry.finished |= done
        finished.update(done)

    for step in range(max_steps):
        for req in requests_by_step.get(step, ()):
            scheduler.add_request(req)
        sched_out = scheduler.schedule()
        runner_out = fake_runner_output(sched_out, eos_for=eos_ids(sched_out), scheduler=scheduler)
        running, waiting = scheduler.get_request_counts()
        entry = StepTrace(
            step=step,
            num_scheduled_tokens=dict(sched_out.num_scheduled_tokens),
            num_running=running,
            num_waiting=waiting,
            free_blocks=kv_free_blocks(scheduler),
            preempted=set(sched_out.preempted_req_ids or ()),
        )
        trace.append(entry)
        pending.append((sched_out, runner_out, entry))
        while len(pending) > (1 if overlap else 0):
            apply(*pending.pop(0))
        if stop_when_idle and step >= last_arrival and not scheduler.has_requests():
            while pending:
                apply(*pending.pop(0))
            if not scheduler.has_requests():
                break
    while pending:
        apply(*pending.pop(0))
    return RunResult(trace=trace, finished=finished, finish_reasons=reasons, steps=len(trace))


# --------------------------------------------------------------------------------------------------------------
# KV accounting
# --------------------------------------------------------------------------------------------------------------


def kv_free_blocks(scheduler: Any) -> int:
    """Free blocks in the scheduler's block pool (cached-but-unreferenced prefix blocks count as free)."""
    return int(scheduler.kv_cache_manager.block_pool.get_num_free_blocks())


def kv_total_usable_blocks(scheduler: Any) -> int:
    """All blocks the pool can hand out: ``num_gpu_blocks - 1`` (block 0 is the reserved null block)."""
    return int(scheduler.kv_cache_manager.block_pool.num_gpu_blocks) - 1


def kv_used_blocks(scheduler: Any) -> int:
    """Blocks currently referenced by some request."""
    return kv_total_usable_blocks(scheduler) - kv_free_blocks(scheduler)


__all__ = [
    "EOS_TOKEN_ID",
    "FAKE_TOKEN_ID",
    "VLLM_VERSION",
    "RunResult",
    "StepTrace",
    "default_prompt_token_ids",
    "fake_runner_output",
    "import_vllm_quietly",
    "kv_free_blocks",
    "kv_total_usable_blocks",
    "kv_used_blocks",
    "llm_scheduler",
    "make_kv_cache_config",
    "make_llm",
    "make_request",
    "make_vllm_config",
    "make_vllm_scheduler",
    "prefill_done_ids",
    "quiet_warnings",
    "run_steps",
    "scheduler_classes",
    "tiny_prompt",
    "write_stub_model_config",
    "write_tiny_llama",
]
