"""Timing real iterations of a random-weight model (torch and transformers: the ``fluidsched[calibrate]`` extra).

The model is built with ``AutoModelForCausalLM.from_config`` (random weights, no download). Its modules
(embedding, RMSNorms, q/k/v/o projections, rotary tables, MLP, LM head) are then driven by
:class:`IterationRunner`, a loop that is shaped like a vLLM iteration rather than a Hugging Face ``forward``:

- the linear operators run once over all the iteration's tokens packed together (prefill chunk + decodes);
- attention runs per group with PyTorch's ``scaled_dot_product_attention``: the prefill chunk against its
  sequence's cached keys, the decodes as one batch against theirs;
- each layer's KV cache is a preallocated tensor: the new tokens' keys and values are written in place, nothing is
  concatenated or copied (vLLM writes into its paged cache the same way);
- the LM head runs on the last token of each sequence only.

torch and transformers are imported inside the functions, so importing this module needs neither.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluidsched.calibrate_fit import Measurement
from fluidsched.calibrate_shapes import BatchPoint, ModelShape
from fluidsched.errors import FluidschedError, InvalidConfigError

__all__ = [
    "IterationInputs",
    "IterationRunner",
    "MissingExtraError",
    "build_model",
    "device_description",
    "import_torch",
    "measure_points",
]

TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class MissingExtraError(FluidschedError, ImportError):
    """torch or transformers is missing: ``pip install 'fluidsched[calibrate]'``."""


def import_torch() -> tuple[Any, Any]:
    """``(torch, transformers)``, or :class:`MissingExtraError` naming the extra that provides them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch
            import transformers
    except ImportError as e:
        raise MissingExtraError(
            f"fluidsched calibrate needs torch and transformers ({e.name or e} is missing): "
            "pip install 'fluidsched[calibrate]'"
        ) from None
    return torch, transformers


def build_model(shape: ModelShape, device: str, dtype: str, seed: int) -> Any:
    """The model of ``shape`` with random weights (seeded), on ``device`` in ``dtype``, in eval mode."""
    torch, transformers = import_torch()
    torch.manual_seed(seed)
    config_dict = {k: v for k, v in shape.config.items() if k not in ("torch_dtype", "dtype", "_name_or_path")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = transformers.AutoConfig.for_model(**config_dict)
        with torch.device(device):
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, TORCH_DTYPES[dtype]))
    return model.eval()


def _cat_neg(x: Any, half: int) -> Any:
    """``rotate_half`` of the rotary embedding: ``[-x2, x1]`` for ``x = [x1, x2]``."""
    import torch

    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


@dataclass
class IterationInputs:
    """Everything one iteration reads, allocated before it is timed (tensors on the model's device)."""

    point: BatchPoint
    input_ids: Any  # [n] token ids: the prefill chunk's, then one per decoding sequence
    positions: Any  # [n]
    last_index: Any  # [num sequences] the token whose logits are computed
    prefill_cache: list[tuple[Any, Any]]  # per layer (K, V): [1, kv heads, >= context + chunk, head_dim]
    decode_cache: list[tuple[Any, Any]]  # per layer (K, V): [b, kv heads, >= context + 1, head_dim]
    prefill_mask: Any  # lower-right causal mask [group x chunk, context + chunk] when the context is not empty


class IterationRunner:
    """Runs iterations of a Llama-style ``*ForCausalLM`` the way vLLM batches them (see the module docstring)."""

    def __init__(self, model: Any, shape: ModelShape) -> None:
        inner = getattr(model, "model", None)
        needed = ("embed_tokens", "layers", "norm", "rotary_emb")
        if inner is None or not all(hasattr(inner, n) for n in needed) or not hasattr(model, "lm_head"):
            raise InvalidConfigError(f"{type(model).__name__} is not a Llama-style decoder this tool can drive")
        self.model = model
        self.shape = shape
        self.embed = inner.embed_tokens
        self.layers = list(inner.layers)
        self.norm = inner.norm
        self.rotary = inner.rotary_emb
        self.lm_head = model.lm_head
        self.group = shape.num_attention_heads // shape.num_kv_heads
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype

    def new_cache(self, batch: int, length: int) -> list[tuple[Any, Any]]:
        """Random (K, V) per layer for ``batch`` sequences of ``length`` slots."""
        import torch

        size = (batch, self.shape.num_kv_heads, length, self.shape.head_dim)
        return [
            (
                torch.randn(size, device=self.device, dtype=self.dtype),
                torch.randn(size, device=self.device, dtype=self.dtype),
            )
            for _ in self.layers
        ]

    def prepare(self, point: BatchPoint, generator: Any | None = None) -> IterationInputs:
        """Random token ids and KV caches for ``point`` (a ``linear`` point is one sequence of its tokens)."""
        import torch

        c, kv, b, kvd = point.prefill_chunk, point.prefill_context, point.num_decode_seqs, point.decode_context
        n = point.num_tokens
        ids = torch.randint(0, self.shape.vocab_size, (n,), generator=generator).to(self.device)
        pos = torch.cat([torch.arange(kv, kv + c), torch.full((b,), kvd)]).to(self.device)
        linear = point.region == "linear"
        last = [n - 1] if linear else ([c - 1] if c else []) + list(range(c, n))
        mask = None
        if c and kv and not linear:
            causal = torch.ones(c, kv + c, dtype=torch.bool).tril(diagonal=kv)
            mask = causal.repeat(self.group, 1).to(self.device)
        return IterationInputs(
            point=point,
            input_ids=ids,
            positions=pos,
            last_index=torch.tensor(last, device=self.device),
            prefill_cache=self.new_cache(1, kv + c) if c and not linear else [],
            decode_cache=self.new_cache(b, kvd + 1) if b else [],
            prefill_mask=mask,
        )

    def _attend(self, q: Any, k: Any, v: Any, layer: int, inp: IterationInputs) -> Any:
        """Attention of the packed ``q`` [n, heads, d] per group; writes ``k``, ``v`` into the caches."""
        import torch
        from torch.nn.functional import scaled_dot_product_attention as sdpa

        p = inp.point
        c, kv, b, kvd = p.prefill_chunk, p.prefill_context, p.num_decode_seqs, p.decode_context
        g, hkv, d = self.group, self.shape.num_kv_heads, self.shape.head_dim
        outs = []
        if c:
            kc, vc = inp.prefill_cache[layer]
            kc[0, :, kv : kv + c].copy_(k[:c].transpose(0, 1))
            vc[0, :, kv : kv + c].copy_(v[:c].transpose(0, 1))
            keys, values = kc[:, :, : kv + c], vc[:, :, : kv + c]
            if kv == 0:
                qp = q[:c].transpose(0, 1).unsqueeze(0)  # [1, heads, c, d]
                o = sdpa(qp, keys, values, is_causal=True, enable_gqa=g > 1)
                outs.append(o[0].transpose(0, 1))
            else:  # the group's query heads stacked along the sequence, so K/V need no repeat (no GQA kernel)
                qp = q[:c].reshape(c, hkv, g, d).permute(1, 2, 0, 3).reshape(1, hkv, g * c, d)
                o = sdpa(qp, keys, values, attn_mask=inp.prefill_mask)
                outs.append(o.reshape(hkv, g, c, d).permute(2, 0, 1, 3).reshape(c, hkv * g, d))
        if b:
            kd, vd = inp.decode_cache[layer]
            kd[:, :, kvd].copy_(k[c:])
            vd[:, :, kvd].copy_(v[c:])
            qd = q[c:].reshape(b, hkv, g, d)  # each KV head's query heads as g queries
            o = sdpa(qd, kd[:, :, : kvd + 1], vd[:, :, : kvd + 1])
            outs.append(o.reshape(b, hkv * g, d))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def run(self, inp: IterationInputs, *, with_layers: bool = True) -> Any:
        """One iteration; returns the logits of each sequence's last token. ``with_layers=False`` runs only what
        is outside the decoder layers; a ``linear`` point skips the attention kernels (q goes to o_proj)."""
        n = inp.point.num_tokens
        heads, hkv, d = self.shape.num_attention_heads, self.shape.num_kv_heads, self.shape.head_dim
        h = self.embed(inp.input_ids)
        cos, sin = self.rotary(h.unsqueeze(0), inp.positions.unsqueeze(0))
        cos, sin = cos[0].unsqueeze(1), sin[0].unsqueeze(1)  # [n, 1, d]
        attention = inp.point.region != "linear"
        for i, layer in enumerate(self.layers if with_layers else []):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(n, heads, d)
            k = attn.k_proj(x).view(n, hkv, d)
            v = attn.v_proj(x).view(n, hkv, d)
            if hasattr(attn, "q_norm"):
                q, k = attn.q_norm(q), attn.k_norm(k)
            q = q * cos + _cat_neg(q, d // 2) * sin
            k = k * cos + _cat_neg(k, d // 2) * sin
            o = self._attend(q, k, v, i, inp) if attention else q
            h = h + attn.o_proj(o.reshape(n, heads * d))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return self.lm_head(self.norm(h[inp.last_index]))


class _Timer:
    """Milliseconds of a callable: CUDA events on a GPU (after a synchronize), ``time.perf_counter`` on CPU."""

    def __init__(self, torch: Any, device: str) -> None:
        self.torch, self.cuda = torch, device == "cuda"

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.cuda:
            self.torch.cuda.synchronize()
            start, end = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3


def _statistic(sorted_times: list[float], statistic: str) -> float:
    """The median (the mean of the middle two for an even count) or the minimum of ``sorted_times``."""
    if statistic == "min":
        return sorted_times[0]
    n = len(sorted_times)
    return sorted_times[n // 2] if n % 2 else (sorted_times[n // 2 - 1] + sorted_times[n // 2]) / 2


@dataclass
class MeasureResult:
    """The measurements, and the largest activation memory seen on a GPU (bytes above weights and inputs)."""

    measurements: list[Measurement]
    activation_peak_bytes: int | None


def measure_points(
    runner: IterationRunner,
    points: list[BatchPoint],
    *,
    warmup: int,
    repeats: int,
    seed: int,
    statistic: str = "median",
    progress: Callable[[int, int, Measurement], None] | None = None,
) -> MeasureResult:
    """Times every point (``warmup`` untimed runs, then the median, or the minimum, of ``repeats``), with and
    without its decoder layers. Points run in a seeded random order, so that a drift of the machine's speed (other
    processes, clocks, heat) spreads over all regions instead of biasing the last ones; the result keeps the order
    of ``points``."""
    torch, _ = import_torch()
    device = runner.device.type
    timer = _Timer(torch, device)
    gen = torch.Generator().manual_seed(seed)
    peak: int | None = 0 if device == "cuda" else None
    order = torch.randperm(len(points), generator=gen).tolist()
    out: dict[int, Measurement] = {}
    with torch.inference_mode():
        for done, index in enumerate(order, start=1):
            point = points[index]
            inp = runner.prepare(point, gen)
            if device == "cuda":
                torch.cuda.synchronize()
                before = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            for _ in range(warmup):
                runner.run(inp)
            full = sorted(timer(functools.partial(runner.run, inp)) for _ in range(repeats))
            if peak is not None:
                peak = max(peak, torch.cuda.max_memory_allocated() - before)
            for _ in range(warmup):
                runner.run(inp, with_layers=False)
            outside_run = functools.partial(runner.run, inp, with_layers=False)
            outside = sorted(timer(outside_run) for _ in range(repeats))
            m = Measurement(
                point=point,
                ms=_statistic(full, statistic),
                min_ms=full[0],
                max_ms=full[-1],
                outside_ms=_statistic(outside, statistic),
                repeats=repeats,
            )
            out[index] = m
            del inp
            if progress is not None:
                progress(done, len(points), m)
    return MeasureResult([out[i] for i in range(len(points))], peak)


def _read_proc(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        return None
    return None


def meminfo_bytes(key: str) -> int | None:
    """A ``/proc/meminfo`` field (``MemTotal``, ``MemAvailable``) in bytes, or None where there is none."""
    value = _read_proc("/proc/meminfo", key)
    if value is None:
        return None
    return int(value.split()[0]) * 1024


def device_description(torch: Any, device: str) -> tuple[str, int]:
    """(name, total memory bytes) of the device: the GPU's, or the CPU model and the machine's RAM."""
    if device == "cuda":
        index = torch.cuda.current_device()
        return str(torch.cuda.get_device_name(index)), int(torch.cuda.mem_get_info(index)[1])
    import os

    cpu = _read_proc("/proc/cpuinfo", "model name") or "CPU"
    threads = torch.get_num_threads()
    total = meminfo_bytes("MemTotal") or int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return f"{cpu} ({threads} threads)", total
