//! SGLang-style conservative admission: its `PrefillAdder` reservation with the adaptive `new_token_ratio`, as
//! described in `shared/reference/vllm-integration.md` §5.2 (SGLang `python/sglang/srt/managers/scheduler.py`,
//! `schedule_policy.py`; SGLang: Zheng et al., NeurIPS 2024, arXiv 2312.07104).
//!
//! Each request has an output budget `max_new`: its hint when the driver gives one, else the `max_new_tokens`
//! option (SGLang knows a request's `max_new_tokens`, not its true length). Its remaining budget is
//! `rem = max(max_new − generated, 1)`, clipped to `clip_max_new_tokens` where SGLang clips.
//!
//! Each step:
//! 1. Running requests are served as in vLLM ([`super::vllm::schedule_running`]: admission order, decodes and
//!    prefill chunks under `max_num_batched_tokens`). When one cannot get a block, the newest running request is
//!    *retracted* (preempted by recompute, put back at the head of the queue) until it can; the ratio is then
//!    reset upward to `min(1, (Σ generated + retract_decode_steps × n) / Σ max_new)` over the n requests still
//!    running (SGLang's `retract_decode` estimate), never below its current value, and nothing is admitted.
//! 2. Otherwise waiting requests are admitted FCFS (SGLang's default `fcfs` policy, head-of-line blocking). With
//!    `avail = free_blocks × block_size` and, for each running request, `reserve = uncovered known tokens +
//!    new_token_ratio × min(rem, clip)`, the head is admitted if
//!    `owed + min(rem, clip) < avail − Σ reserve − Σ (cost of those admitted this step)` (SGLang's strict test),
//!    its whole (re)prefill fits the free blocks, `max_num_seqs` and the token budget allow (vLLM's chunking
//!    rule). When nothing runs, the head is admitted if its prefill fits (liveness: its budget could exceed the
//!    whole cache).
//! 3. After a step without retraction, the ratio decays by `(init − min) / decay_steps`, down to
//!    `min = init × min_new_token_ratio_factor`.
//!
//! Options (defaults, SGLang's): `init_new_token_ratio` = 0.7, `min_new_token_ratio_factor` = 0.14,
//! `decay_steps` = 600, `clip_max_new_tokens` = 4096, `retract_decode_steps` = 20; ours: `max_new_tokens` = 4096
//! (the budget of requests without a hint: no user cap, i.e. the clip), `use_output_hints` = false (when true,
//! the policy asks the driver for output lengths and uses them as each request's `max_new_tokens`: a
//! user who sets tight caps).
//!
//! Not modelled: the radix (prefix) cache and `lpm` ordering, separate prefill and decode batches (here they share
//! a step, as with SGLang's `--enable-mixed-chunk`), `schedule_conservativeness` (fold it into
//! `init_new_token_ratio`), and SGLang's choice of retraction victim (fewest output tokens; here the newest).

use super::token_ratio::TokenRatio;
use crate::batch::{AddResult, MemoryRule, engine_chunk, try_admit_with};
use crate::error::{Error, Result};
use crate::policies::fcfs_queue::{FcfsQueue, fcfs_queue_methods};
use crate::policy::{Policy, PolicyOptions};
use crate::request::Request;
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// SGLang's conservative admission with an adaptive new-token ratio.
#[derive(Debug, Clone)]
pub struct SglangPolicy {
    waiting: FcfsQueue,
    ratio: TokenRatio,
    clip_max_new_tokens: u32,
    max_new_tokens: u32,
    retract_decode_steps: u32,
    use_output_hints: bool,
}

impl SglangPolicy {
    /// Options accepted by [`SglangPolicy::from_options`].
    pub const OPTIONS: &'static [&'static str] = &[
        "init_new_token_ratio",
        "min_new_token_ratio_factor",
        "decay_steps",
        "clip_max_new_tokens",
        "max_new_tokens",
        "retract_decode_steps",
        "use_output_hints",
    ];

    /// Builds the policy from its options.
    pub fn from_options(mut options: PolicyOptions) -> Result<Self> {
        let init = options.f64("init_new_token_ratio", 0.7)?;
        let factor = options.f64("min_new_token_ratio_factor", 0.14)?;
        let decay_steps = options.u32("decay_steps", 600)?;
        let clip_max_new_tokens = options.u32("clip_max_new_tokens", 4096)?;
        let max_new_tokens = options.u32("max_new_tokens", 4096)?;
        let retract_decode_steps = options.u32("retract_decode_steps", 20)?;
        let use_output_hints = options.bool("use_output_hints", false)?;
        options.finish(Self::OPTIONS)?;
        let bad = |m: &str| Err(Error::config(format!("policy \"sglang\": {m}")));
        if clip_max_new_tokens == 0 || max_new_tokens == 0 {
            return bad("clip_max_new_tokens and max_new_tokens must be >= 1");
        }
        let ratio = TokenRatio::new(init, factor, decay_steps)?;
        Ok(SglangPolicy {
            waiting: FcfsQueue::default(),
            ratio,
            clip_max_new_tokens,
            max_new_tokens,
            retract_decode_steps,
            use_output_hints,
        })
    }

    /// The current `new_token_ratio`.
    pub fn new_token_ratio(&self) -> f64 {
        self.ratio.value()
    }

    /// The request's output budget: its hint, else `max_new_tokens`.
    fn max_new(&self, r: &Request) -> u32 {
        r.output_len_hint.unwrap_or(self.max_new_tokens)
    }

    /// Remaining output budget, clipped: `min(max(max_new − generated, 1), clip)`.
    fn clipped_rem(&self, r: &Request) -> u32 {
        self.max_new(r).saturating_sub(r.num_output_tokens).max(1).min(self.clip_max_new_tokens)
    }

    /// SGLang's post-retraction estimate over the requests still running.
    fn retract_estimate(&self, state: &SchedulerState) -> f64 {
        let (mut decoded, mut max_new) = (0.0, 0.0);
        for &slot in state.running() {
            let r = state.request(slot);
            decoded += f64::from(r.num_output_tokens);
            max_new += f64::from(self.max_new(r));
        }
        let n = state.running().len() as f64;
        if max_new == 0.0 { 1.0 } else { ((decoded + f64::from(self.retract_decode_steps) * n) / max_new).min(1.0) }
    }

    /// FCFS admission under the reservation rule.
    fn admit(&mut self, state: &mut SchedulerState, step: &mut Step, mut budget: u32) {
        let cfg = *state.config();
        let bs = f64::from(cfg.block_size);
        let ratio = self.ratio.value();
        let mut reserved = 0.0;
        for &slot in state.running() {
            let r = state.request(slot);
            let uncovered = r.num_tokens().saturating_sub(r.num_blocks() * cfg.block_size);
            reserved += f64::from(uncovered) + ratio * f64::from(self.clipped_rem(r));
        }
        let mut rem_tokens = f64::from(state.pool().num_free()) * bs - reserved;
        let chunk = engine_chunk(state);
        while let Some(slot) = self.waiting.front() {
            let r = state.request(slot);
            let cost = f64::from(r.num_owed_tokens()) + f64::from(self.clipped_rem(r));
            // The reservation rule, on top of the shared checks (budget, max_num_seqs, the prefill fits).
            let reserved_ok = |st: &SchedulerState| cost < rem_tokens || st.running().is_empty();
            if try_admit_with(state, step, slot, &mut budget, MemoryRule::WholePrefillNoWatermark, chunk, reserved_ok)
                != AddResult::Admitted
            {
                break;
            }
            self.waiting.pop_front();
            rem_tokens -= cost;
        }
    }
}

impl Policy for SglangPolicy {
    fn name(&self) -> &'static str {
        "sglang"
    }

    fn needs_output_lengths(&self) -> bool {
        self.use_output_hints
    }

    fcfs_queue_methods!();

    fn schedule(&mut self, state: &mut SchedulerState, step: &mut Step) {
        let budget = state.config().max_num_batched_tokens;
        let (budget, retracted) = self.waiting.serve_running(state, step, budget);
        if retracted {
            let estimate = self.retract_estimate(state);
            self.ratio.on_retract(estimate);
            return;
        }
        self.admit(state, step, budget);
        if !step.is_empty() {
            self.ratio.decay();
        }
    }
}
