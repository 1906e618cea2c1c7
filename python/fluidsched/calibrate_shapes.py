"""What ``fluidsched calibrate`` measures, without torch: model shapes, the grid of batch shapes, KV memory.

- :class:`ModelShape` and :func:`load_model_shape`: a Hugging Face ``config.json`` (or a built-in shape name such
  as ``llama2-7b``) reduced to the numbers the time model and the KV cache depend on.
- :func:`kv_bytes_per_token` and :func:`kv_capacity_blocks`: KV memory as vLLM sizes it.
- :class:`BatchPoint` and :class:`Grid`: the iterations to time (linear operators alone, decode, prefill, mixed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluidsched.errors import InvalidConfigError

__all__ = [
    "BUILTIN_CONFIGS",
    "DEFAULT_GRID",
    "DTYPE_BYTES",
    "QUICK_GRID",
    "REGIONS",
    "SUPPORTED_MODEL_TYPES",
    "BatchPoint",
    "Grid",
    "ModelShape",
    "kv_bytes_per_token",
    "kv_capacity_blocks",
    "load_model_shape",
]

#: Bytes per element of each ``--dtype``.
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}

#: Model families whose decoder layers calibrate can drive (Llama-style: RMSNorm, q/k/v/o projections, rotary
#: embeddings, gated MLP).
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")

_LLAMA2_7B: dict[str, Any] = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
}

#: Built-in ``--model-config`` names: the public configs' shapes (weights are random anyway, so no download).
BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-llama": {
        "model_type": "llama",
        "vocab_size": 256,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
    },
    "llama2-7b": _LLAMA2_7B,
    "llama2-13b": {
        **_LLAMA2_7B,
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 40,
    },
    "llama3-8b": {
        **_LLAMA2_7B,
        "vocab_size": 128256,
        "intermediate_size": 14336,
        "num_key_value_heads": 8,
        "max_position_embeddings": 8192,
        "rope_theta": 500000.0,
    },
    "mistral-7b": {**_LLAMA2_7B, "model_type": "mistral", "intermediate_size": 14336, "num_key_value_heads": 8},
    "qwen2.5-7b": {
        "model_type": "qwen2",
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
    },
}

#: The four kinds of timed iteration: linear operators alone (attention skipped), and real iterations.
REGIONS = ("linear", "decode", "prefill", "mixed")


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only model that its iteration time and KV cache depend on."""

    name: str
    model_type: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    config: dict[str, Any]  # the Hugging Face config dict the model is built from


def _positive_int_field(config: dict[str, Any], key: str, where: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidConfigError(f"{where}: {key!r} must be a positive integer, got {value!r}")
    return value


def load_model_shape(spec: str, num_layers: int | None = None) -> ModelShape:
    """Reads ``spec`` (a built-in name, a ``config.json`` file or a directory holding one) as a :class:`ModelShape`.

    ``num_layers`` replaces the config's ``num_hidden_layers`` (to time a few layers of a large model).
    """
    if spec in BUILTIN_CONFIGS:
        config = dict(BUILTIN_CONFIGS[spec])
        name, where = spec, f"built-in shape {spec}"
    else:
        path = Path(spec)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            names = ", ".join(BUILTIN_CONFIGS)
            raise InvalidConfigError(
                f"--model-config {spec}: no such file, and not a built-in shape (built-ins: {names})"
            )
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidConfigError(f"--model-config {spec}: not a readable JSON config ({e})") from None
        if not isinstance(loaded, dict):
            raise InvalidConfigError(f"--model-config {spec}: expected a JSON object (a Hugging Face config.json)")
        config = loaded
        where = f"--model-config {spec}"
        name = str(config.get("_name_or_path") or path.parent.name or path.stem)
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        supported = ", ".join(SUPPORTED_MODEL_TYPES)
        raise InvalidConfigError(f"{where}: model_type {model_type!r} is not supported (supported: {supported})")
    if num_layers is not None:
        config["num_hidden_layers"] = num_layers
    layers = _positive_int_field(config, "num_hidden_layers", where)
    hidden = _positive_int_field(config, "hidden_size", where)
    heads = _positive_int_field(config, "num_attention_heads", where)
    kv_heads = _positive_int_field(config, "num_key_value_heads", where) if "num_key_value_heads" in config else heads
    head_dim = _positive_int_field(config, "head_dim", where) if config.get("head_dim") else hidden // heads
    if heads % kv_heads or (not config.get("head_dim") and hidden % heads):
        raise InvalidConfigError(f"{where}: heads ({heads}), KV heads ({kv_heads}) and hidden size do not divide")
    return ModelShape(
        name=name,
        model_type=str(model_type),
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=_positive_int_field(config, "vocab_size", where),
        max_position_embeddings=int(config.get("max_position_embeddings") or 2**31 - 1),
        config=config,
    )


def kv_bytes_per_token(shape: ModelShape, dtype: str) -> int:
    """KV-cache bytes one token takes in every layer: 2 (K and V) x layers x KV heads x head_dim x dtype bytes."""
    return 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * DTYPE_BYTES[dtype]


def kv_capacity_blocks(kv_bytes: float, bytes_per_token: int, block_size: int, max_tokens: int | None = None) -> int:
    """Whole KV blocks of ``block_size`` tokens that fit in ``kv_bytes`` (at most ``max_tokens`` tokens' worth).

    Raises :class:`InvalidConfigError` when not even one block fits.
    """
    tokens = math.floor(kv_bytes / bytes_per_token) if kv_bytes > 0 else 0
    if max_tokens is not None:
        tokens = min(tokens, max_tokens)
    blocks = tokens // block_size
    if blocks < 1:
        raise InvalidConfigError(
            f"no room for the KV cache: {kv_bytes / 2**30:.2f} GiB left after weights and activations, one block "
            f"needs {bytes_per_token * block_size / 2**20:.2f} MiB (raise --gpu-memory-utilization or --max-kv-tokens, "
            "or use fewer layers)"
        )
    return blocks


@dataclass(frozen=True)
class BatchPoint:
    """One iteration shape: a prefill chunk of ``prefill_chunk`` new tokens on ``prefill_context`` cached ones
    (when ``prefill_chunk > 0``) and ``num_decode_seqs`` one-token decodes, each on ``decode_context`` cached
    tokens. Region ``linear`` is ``prefill_chunk`` tokens through the linear operators only (no attention)."""

    region: str
    prefill_chunk: int = 0
    prefill_context: int = 0
    num_decode_seqs: int = 0
    decode_context: int = 0

    @property
    def num_tokens(self) -> int:
        """Tokens the linear operators process: the chunk plus one per decoding sequence."""
        return self.prefill_chunk + self.num_decode_seqs

    @property
    def cached_tokens(self) -> int:
        """KV slots the iteration reads (cached plus new tokens): what it needs in memory."""
        if self.region == "linear":
            return 0
        return self.prefill_context + self.prefill_chunk + self.num_decode_seqs * (self.decode_context + 1)

    @property
    def max_position(self) -> int:
        """The largest token position in the batch (must stay below the model's ``max_position_embeddings``)."""
        return max(self.prefill_context + self.prefill_chunk, self.decode_context + 1 if self.num_decode_seqs else 0)

    def label(self) -> str:
        """Short description for progress lines, e.g. ``decode b=16 kv=1024``."""
        if self.region == "linear":
            return f"linear n={self.prefill_chunk}"
        parts = []
        if self.prefill_chunk:
            parts.append(f"c={self.prefill_chunk} kv={self.prefill_context}")
        if self.num_decode_seqs:
            parts.append(f"b={self.num_decode_seqs} kv={self.decode_context}")
        return f"{self.region} " + " + ".join(parts)


def _linear_tokens(largest: int) -> list[int]:
    """1, 2, 4, ... up to ``largest``, with 1.5x points in between from 16 on (GEMM times have steps there)."""
    out: list[int] = []
    n = 1
    while n < largest:
        out.append(n)
        if n >= 16 and n * 3 // 2 < largest:
            out.append(n * 3 // 2)
        n *= 2
    out.append(largest)
    return sorted(set(out))


@dataclass(frozen=True)
class Grid:
    """The batch shapes to time: decode ``batch_sizes`` x ``kv_lens``; prefill ``prompt_lens`` x (0, the middle
    and the largest of ``kv_lens``); mixed: (the smallest and the middle prompt length) x (the batch sizes that fit: the
    one a quarter of the way up, the middle one and the largest) x (the middle KV length); linear operators alone
    at 1, 2, 4, ... tokens up to the largest token count."""

    batch_sizes: tuple[int, ...]
    prompt_lens: tuple[int, ...]
    kv_lens: tuple[int, ...]

    def points(self, max_cached_tokens: int | None = None, max_position: int | None = None) -> list[BatchPoint]:
        """Every point, minus those holding more than ``max_cached_tokens`` KV slots or positions past
        ``max_position``: linear first, then decode, prefill and mixed."""

        def fits(p: BatchPoint) -> bool:
            return (max_cached_tokens is None or p.cached_tokens <= max_cached_tokens) and (
                max_position is None or p.max_position <= max_position
            )

        bs, ps, ks = sorted(set(self.batch_sizes)), sorted(set(self.prompt_lens)), sorted(set(self.kv_lens))
        mid_k = ks[len(ks) // 2]
        pts = [BatchPoint("decode", num_decode_seqs=b, decode_context=k) for b in bs for k in ks]
        pts += [
            BatchPoint("prefill", prefill_chunk=c, prefill_context=k) for c in ps for k in sorted({0, mid_k, ks[-1]})
        ]
        for c in sorted({ps[0], ps[len(ps) // 2]}):
            mixed = [BatchPoint("mixed", prefill_chunk=c, num_decode_seqs=b, decode_context=mid_k) for b in bs]
            mixed = [p for p in mixed if fits(p)]
            if mixed:
                pts += [mixed[i] for i in sorted({len(mixed) // 4, len(mixed) // 2, len(mixed) - 1})]
        pts = [p for p in pts if fits(p)]
        largest = max((p.num_tokens for p in pts), default=1)
        return [BatchPoint("linear", prefill_chunk=n) for n in _linear_tokens(largest)] + pts

    def describe(self) -> dict[str, list[int]]:
        """The grid's lists, for the preset's provenance."""
        return {
            "batch_sizes": list(self.batch_sizes),
            "prompt_lens": list(self.prompt_lens),
            "kv_lens": list(self.kv_lens),
        }


#: ``--quick``: about 40 points, enough for a fit with every term (a smoke test, or a first look).
QUICK_GRID = Grid(batch_sizes=(1, 4, 16, 64), prompt_lens=(32, 128, 512), kv_lens=(64, 256, 1024))

#: The default grid: typical serving shapes of a 7B-13B model on one GPU (about 70 points fit an 80 GB GPU).
DEFAULT_GRID = Grid(
    batch_sizes=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    prompt_lens=(32, 64, 128, 256, 512, 1024, 2048, 4096),
    kv_lens=(128, 512, 1024, 2048, 4096),
)
