"""What every policy option does: its type, its default and its meaning (printed by ``fluidsched options``).

The option names come from the Rust core (``fluidsched._core.POLICY_OPTIONS``, the list the policies accept);
this module adds what a user needs to set them, written from the policies' option parsing in
``rust/src/policies/*.rs`` (developers: ``docs/wait.md`` and ``docs/baselines.md`` derive each rule).
``tests/test_options_help.py`` checks that the table names exactly the core's options and that every concrete
default is the one the core applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fluidsched._core import POLICY_NAMES, POLICY_OPTIONS
from fluidsched.errors import InvalidConfigError
from fluidsched.simulate import OptionValue

__all__ = ["OPTION_DOCS", "POLICY_SUMMARIES", "OptionDoc", "checked_policies", "option_docs", "options_json"]


@dataclass(frozen=True)
class OptionDoc:
    """One policy option: how to write it (``-o name=VALUE``), its default and what it does."""

    name: str
    #: ``int``, ``number``, ``bool``, ``choice`` (one of :attr:`choices`) or ``int list`` (``-o name=1,2,3``).
    type: str
    #: The value the policy uses when the option is not given, or ``None`` when that is computed per run (from
    #: the fluid plan or the scheduler limits) or the feature is off; :attr:`default_text` then says which.
    default: OptionValue | None
    description: str
    choices: tuple[str, ...] = ()
    #: How the default reads in the table; for a concrete default, what ``-o name=TEXT`` parses back to it.
    default_text: str = ""

    def __post_init__(self) -> None:
        if not self.default_text:
            object.__setattr__(self, "default_text", _value_text(self.default))


def _value_text(value: OptionValue | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(repr(x) for x in value)
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


_TOKEN_BUDGET = (
    "Per-step token cap with chunked prefill (Sarathi-Serve's batching) in place of --max-num-batched-tokens: the "
    "policy decides who starts, the budget how their prompts are cut. Unset: the engine's limits."
)
_HEADROOM = (
    "Target iteration time T = T* x (1 + headroom) (T*: the fluid equilibrium), capped by the KV and max_num_seqs "
    "bounds; thresholds are about rate x T. Larger: bigger cohorts, more slack near full load."
)

#: One line per policy: what it is.
POLICY_SUMMARIES: dict[str, str] = {
    "vllm": "vLLM v1's default scheduler: running requests first, FCFS admission, recompute preemption.",
    "wait": "WAIT (known output lengths): each request type admits cohorts sized by the fluid model.",
    "nested-wait": "Nested WAIT (unknown lengths): the decode horizon is cut into segments, each with a threshold, "
    "under a KV safety buffer.",
    "sarathi": "Sarathi-Serve: chunked prefill under a per-iteration token budget, decodes first.",
    "mc-sf": "MC-SF (known lengths): shortest output first, admitted while the projected KV peak fits.",
    "sglang": "SGLang-style admission: reserves a decaying new_token_ratio of each running request's output budget.",
    "orca": "Orca-style: each request reserves its maximum KV footprint at admission, so none is preempted.",
    "vllm-v0": "Vidur's vLLM scheduler (the WAIT paper's baseline): prefill-only iterations under a padded token "
    "cap, else decode-only.",
}

#: Every policy's documented options (tests/test_options_help.py keeps this equal to the core's list).
OPTION_DOCS: dict[str, tuple[OptionDoc, ...]] = {
    "vllm": (),
    "wait": (
        OptionDoc(
            "thresholds",
            "int list",
            None,
            "Cohort size n_j of each request type (one integer >= 1 per type, e.g. 4,2). Not with total_limit.",
            default_text="fluid plan",
        ),
        OptionDoc(
            "total_limit",
            "number",
            None,
            "The authors' rule instead of the fluid plan, from a total limit L: n_j = int(max(L x rate_j / sum_i "
            "rate_i x (out_i + 1), 1)). Not with thresholds; needs the types' rates.",
            default_text="unset",
        ),
        OptionDoc(
            "admission",
            "choice",
            "per-type",
            "per-type: a type admits a cohort of n_j once n_j of it wait; any-ready: when any type is ready, every "
            "type admits up to n_j; all-ready: only when every type is ready.",
            choices=("per-type", "any-ready", "all-ready"),
        ),
        OptionDoc(
            "stall",
            "bool",
            False,
            "true: running requests decode only in steps that admit something or when nothing waits (the authors' "
            "code); false: they decode every step.",
        ),
        OptionDoc(
            "max_wait",
            "number",
            None,
            "Seconds after which a type's oldest waiting request makes it admit what it holds (up to n_j). Default: "
            "20 x max n_j / rate_j over types with n_j >= 2, else 1 s.",
            default_text="computed",
        ),
        OptionDoc("headroom", "number", 1.0, _HEADROOM),
        OptionDoc(
            "memory_guard",
            "bool",
            True,
            "Admit a request only while the projected KV peak (known lengths) fits above the watermark, so exact "
            "lengths never preempt; false: the admission rule alone.",
        ),
        OptionDoc(
            "credit",
            "bool",
            True,
            "Each decision adds rate_j x (time since the last one) to type j's credit and the type admits at least "
            "its whole credit; false: the paper's rule alone.",
        ),
        OptionDoc(
            "rate_estimation",
            "bool",
            True,
            "Estimate each type's arrival rate online (moving average of its inter-arrival gaps, weight ewma_alpha) "
            "instead of using the planned rates.",
        ),
        OptionDoc(
            "ewma_alpha",
            "number",
            0.05,
            "Weight of the newest inter-arrival gap in the rate estimate, in (0, 1] (with rate_estimation).",
        ),
        OptionDoc(
            "backlog",
            "number",
            0,
            "A queue longer than this many cohorts is let in whole (KV and memory guard permitting); 0: off.",
        ),
        OptionDoc("token_budget", "int", None, _TOKEN_BUDGET, default_text="unset"),
    ),
    "nested-wait": (
        OptionDoc(
            "segments",
            "int list",
            None,
            "Segment boundaries in decode iterations (e.g. 50,100,200): a request that ran b_s iterations pauses, "
            "keeping its KV, until segment s+1 lets it in. Default: quantiles (num_segments).",
            default_text="computed",
        ),
        OptionDoc(
            "num_segments",
            "int",
            8,
            "Number of output-length quantile segments when segments is not given (boundaries at or past the "
            "longest length are dropped).",
        ),
        OptionDoc(
            "delta",
            "number",
            1e-9,
            "Overflow probability of the KV safety buffer z sqrt(V T), z = sqrt(2 ln(1/delta)). 0.001 is the "
            "paper's scale: a thinner buffer that may preempt at full load.",
        ),
        OptionDoc(
            "per_stage_caps",
            "bool",
            False,
            "Also cap each segment's occupancy at max(1, ceil(n_s x its iteration count)) (the authors' cap).",
        ),
        OptionDoc(
            "strict_break",
            "bool",
            False,
            "true: every entry that is not ready stops all later entries this step (the literal flowchart); "
            "false: only segment 1's entry does.",
        ),
        OptionDoc(
            "rate_estimation",
            "bool",
            False,
            "Estimate the arrival rate online (weight ewma_alpha); when it drifts over 10% from the planned rate, "
            "thresholds and caps are recomputed (segments stay).",
        ),
        OptionDoc(
            "ewma_alpha",
            "number",
            0.02,
            "Weight of the newest inter-arrival gap in the rate estimate, in (0, 1] (with rate_estimation).",
        ),
        OptionDoc(
            "credit",
            "bool",
            True,
            "Segment 1 admits at least the arrivals accrued since the last decision (rate x elapsed time) while KV "
            "in use plus the safety buffer stays under 90% of capacity; false: the paper's rule.",
        ),
        OptionDoc("token_budget", "int", None, _TOKEN_BUDGET, default_text="unset"),
        OptionDoc(
            "max_wait",
            "number",
            None,
            "Seconds (> 0) after which a segment entry whose oldest request waited lets in what it holds. Default: "
            "20 x max n_s / rate_s over segments with n_s >= 2, else 1 s.",
            default_text="computed",
        ),
        OptionDoc("headroom", "number", 1.0, _HEADROOM),
    ),
    "sarathi": (
        OptionDoc(
            "token_budget",
            "int",
            512,
            "Most tokens per iteration: decodes first, then prefill chunks. Replaces --max-num-batched-tokens for "
            "this policy.",
        ),
        OptionDoc(
            "chunked_prefill",
            "bool",
            True,
            "Cut prefills to the budget left; false: a prefill runs whole (one longer than the budget is still "
            "chunked). Replaces --no-chunked-prefill for this policy.",
        ),
    ),
    "mc-sf": (
        OptionDoc(
            "on_infeasible",
            "choice",
            "stop",
            "stop: admission ends at the first candidate (shortest output first) whose projected KV peak does not "
            "fit; skip: the next, longer one is tried.",
            choices=("stop", "skip"),
        ),
        OptionDoc(
            "default_output_len",
            "int",
            256,
            "Output length assumed for a request without a known length (>= 1; the simulator always knows it).",
        ),
    ),
    "sglang": (
        OptionDoc(
            "init_new_token_ratio",
            "number",
            0.7,
            "Starting new_token_ratio: the share of each running request's remaining output budget kept free in KV "
            "when admitting.",
        ),
        OptionDoc(
            "min_new_token_ratio_factor",
            "number",
            0.14,
            "The ratio decays to init_new_token_ratio x this factor.",
        ),
        OptionDoc(
            "decay_steps",
            "int",
            600,
            "Steps without retraction over which the ratio decays from its start to its minimum.",
        ),
        OptionDoc(
            "clip_max_new_tokens",
            "int",
            4096,
            "Remaining output budget counted per request is clipped to this (>= 1).",
        ),
        OptionDoc(
            "max_new_tokens",
            "int",
            4096,
            "Output budget of each request unless use_output_hints (SGLang's max_new_tokens; >= 1).",
        ),
        OptionDoc(
            "retract_decode_steps",
            "int",
            20,
            "After a retraction (preemption) the ratio becomes (tokens generated + this x requests running) / "
            "their total budget, never lower than before.",
        ),
        OptionDoc(
            "use_output_hints",
            "bool",
            False,
            "true: each request's known output length is its max_new_tokens (a user who sets tight caps).",
        ),
    ),
    "orca": (
        OptionDoc(
            "reserve",
            "choice",
            "max_tokens",
            "max_tokens: each request reserves max_tokens KV tokens at admission; oracle: prompt + known output - 1, "
            "its exact peak (clairvoyant).",
            choices=("max_tokens", "oracle"),
        ),
        OptionDoc(
            "max_tokens",
            "int",
            4096,
            "Tokens reserved per request with reserve=max_tokens (the model's longest sequence; >= 1), clamped to "
            "the usable cache.",
        ),
    ),
    "vllm-v0": (
        OptionDoc(
            "max_tokens_in_batch",
            "int",
            4096,
            "Padded token cap of a prefill-only iteration: prefills x the longest of them <= this (a longer prefill "
            "runs alone).",
        ),
        OptionDoc(
            "batch_size_cap",
            "int",
            None,
            "Most requests holding KV at once (>= 1), clipped to --max-num-seqs. Default: --max-num-seqs (Vidur's "
            "own default is 128).",
            default_text="max_num_seqs",
        ),
    ),
}


def option_docs(policy: str) -> tuple[OptionDoc, ...]:
    """The documented options of ``policy``, in the core's order; an unknown policy raises
    :class:`~fluidsched.InvalidConfigError` naming the known ones."""
    checked_policies([policy])
    by_name = {d.name: d for d in OPTION_DOCS.get(policy, ())}
    missing = OptionDoc("?", "?", None, "(not documented yet)", default_text="?")
    return tuple(by_name.get(name, replace(missing, name=name)) for name in POLICY_OPTIONS[policy])


def checked_policies(policies: Iterable[str]) -> list[str]:
    """``policies`` without repeats (every policy when empty); an unknown one raises
    :class:`~fluidsched.InvalidConfigError` naming the known ones."""
    chosen = list(dict.fromkeys(policies)) or list(POLICY_NAMES)
    unknown = [p for p in chosen if p not in POLICY_NAMES]
    if unknown:
        raise InvalidConfigError(f"unknown policy {unknown[0]!r}; known policies: {', '.join(POLICY_NAMES)}")
    return chosen


def options_json(policies: Sequence[str] = ()) -> dict[str, Any]:
    """``{policy: {"summary": ..., "options": [{name, type, default, default_text, choices, description}]}}`` for
    ``policies`` (all when empty); ``default`` is ``None`` where it is computed per run."""
    return {
        p: {
            "summary": POLICY_SUMMARIES[p],
            "options": [
                {
                    "name": d.name,
                    "type": d.type,
                    "default": d.default,
                    "default_text": d.default_text,
                    "choices": list(d.choices),
                    "description": d.description,
                }
                for d in option_docs(p)
            ],
        }
        for p in checked_policies(policies)
    }
