//! Orca-style reservation (Yu et al., "Orca: A Distributed Serving System for Transformer-Based Generative
//! Models", OSDI 2022), following Vidur's `orca` replica scheduler (`shared/reference/simulator-notes.md` §1.4):
//! iteration-level batching where each request reserves its maximum KV footprint at admission, so running
//! requests never run out of blocks and are never preempted.
//!
//! Each step:
//! 1. Running requests are served as in vLLM ([`super::vllm::schedule_running`]: admission order, the
//!    config's `max_num_batched_tokens` and `enable_chunked_prefill`). Their blocks are already reserved, so no
//!    allocation can fail, unless a request outgrows its reservation (only possible when its true length exceeds
//!    `max_tokens`, or a hint under-predicts with `reserve = "oracle"`); then blocks are allocated on demand and,
//!    if none is left, the newest running request is preempted by recompute as in vLLM. With reservations that
//!    cover the true lengths, this never happens.
//! 2. Waiting requests are admitted FCFS (head-of-line blocking) while `max_num_seqs`, the token budget (vLLM's
//!    chunking rule) and the free blocks allow the whole reservation. The watermark does not apply: a reservation
//!    is already the request's worst case.
//!
//! The reservation, in tokens, is `clamp(want, known tokens, usable)` where `usable = (num_blocks −
//! watermark_blocks) × block_size` (every request fits that, so a lone request is always admitted) and `want` is:
//! - `reserve = "max_tokens"` (default): the `max_tokens` option, the model's maximum sequence length (prompt +
//!   output), default 4096 as in Vidur (Llama-2's context; it makes Vidur's Llama-2-7B/A100 cache hold 29
//!   requests). Not clairvoyant.
//! - `reserve = "oracle"`: prompt + hinted output − 1 (the exact peak: the last output token's KV is never
//!   stored). Clairvoyant: the policy asks the driver for output lengths. Requests without a hint fall back to
//!   `max_tokens`.
//!
//! Not modelled: Orca's selective batching and pipelining across workers.

use crate::batch::{AddResult, MemoryRule, engine_chunk, try_admit};
use crate::error::{Error, Result};
use crate::policies::fcfs_queue::{FcfsQueue, fcfs_queue_methods};
use crate::policy::{Policy, PolicyOptions};
use crate::request::Slot;
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// Orca-style full reservation at admission.
#[derive(Debug, Clone)]
pub struct OrcaPolicy {
    waiting: FcfsQueue,
    oracle: bool,
    max_tokens: u32,
}

impl OrcaPolicy {
    /// Options accepted by [`OrcaPolicy::from_options`].
    pub const OPTIONS: &'static [&'static str] = &["reserve", "max_tokens"];

    /// Default maximum sequence length reserved per request.
    pub const DEFAULT_MAX_TOKENS: u32 = 4096;

    /// A policy reserving `max_tokens` per request, or the oracle length when `oracle` is set.
    pub fn new(oracle: bool, max_tokens: u32) -> Self {
        OrcaPolicy { waiting: FcfsQueue::default(), oracle, max_tokens: max_tokens.max(1) }
    }

    /// Builds the policy from its options.
    pub fn from_options(mut options: PolicyOptions) -> Result<Self> {
        let reserve = options.choice("reserve", &["max_tokens", "oracle"], "max_tokens")?;
        let max_tokens = options.u32("max_tokens", Self::DEFAULT_MAX_TOKENS)?;
        if max_tokens == 0 {
            return Err(Error::config("policy \"orca\": max_tokens must be >= 1"));
        }
        options.finish(Self::OPTIONS)?;
        Ok(OrcaPolicy::new(reserve == "oracle", max_tokens))
    }

    /// Tokens reserved for request `slot` (see the module docs).
    pub fn reservation(&self, state: &SchedulerState, slot: Slot) -> u32 {
        let r = state.request(slot);
        let pool = state.pool();
        let usable = pool.usable_blocks().saturating_mul(pool.block_size());
        let want = match r.output_len_hint {
            Some(hint) if self.oracle => r.prompt_len.saturating_add(hint - 1),
            _ => self.max_tokens,
        };
        want.min(usable).max(r.num_tokens())
    }

    /// FCFS admission: the whole reservation must fit in free blocks.
    fn admit(&mut self, state: &mut SchedulerState, step: &mut Step, mut budget: u32) {
        let chunk = engine_chunk(state);
        while let Some(slot) = self.waiting.front() {
            let rule = MemoryRule::Reserve(self.reservation(state, slot));
            if try_admit(state, step, slot, &mut budget, rule, chunk) != AddResult::Admitted {
                break;
            }
            self.waiting.pop_front();
        }
    }
}

impl Policy for OrcaPolicy {
    fn name(&self) -> &'static str {
        "orca"
    }

    fn needs_output_lengths(&self) -> bool {
        self.oracle
    }

    fcfs_queue_methods!();

    fn schedule(&mut self, state: &mut SchedulerState, step: &mut Step) {
        let budget = state.config().max_num_batched_tokens;
        let (budget, preempted) = self.waiting.serve_running(state, step, budget);
        if !preempted {
            self.admit(state, step, budget);
        }
    }
}
