//! Sarathi-Serve (Agrawal et al., "Taming Throughput-Latency Tradeoff in LLM Inference with Sarathi-Serve",
//! OSDI 2024, arXiv 2403.02310): chunked prefill under a per-iteration token budget, with stall-free batching.
//! Follows Vidur's `sarathi` replica scheduler (`shared/reference/simulator-notes.md` §1.4) and vLLM's chunked
//! prefill (`shared/reference/vllm-integration.md` §5.1).
//!
//! Each step, within `token_budget` tokens:
//! 1. **Decodes first**: every running request in its decode phase gets one token, in admission order. When one
//!    cannot get a KV block, the most recently admitted running request is preempted by recompute and put back
//!    at the head of the waiting queue, until the allocation succeeds or the request preempted itself (vLLM's
//!    rule). A decode is never skipped to make room for a prefill; decodes only wait when they alone exceed the
//!    budget, and then the step holds no prefill.
//! 2. **In-progress prefills**: running requests still in their (re)prefill get their next chunk, the owed
//!    tokens cut to the budget left, in admission order.
//! 3. **New prefills**, only if nothing was preempted in this step: waiting requests FCFS, admitted while the whole
//!    (re)prefill fits in free blocks above the watermark and `max_num_seqs` allows; the first that does not fit
//!    stops admission (head-of-line blocking, vLLM's rule). Each gets a chunk of at most the budget left.
//!
//! Decisions:
//! - `token_budget` **replaces** `max_num_batched_tokens` for this policy (that field is ignored), and
//!   `chunked_prefill` replaces `enable_chunked_prefill`: Sarathi's budget is vLLM's `max_num_batched_tokens`, so
//!   one knob is enough.
//! - Without chunking, a prefill runs whole, in a step whose budget left allows it; a prefill longer than the
//!   whole budget is chunked anyway (else it could never run), as in [`super::vllm`].
//! - Blocks for the whole (re)prefill are allocated at admission, as Vidur's `sarathi` does, so later chunks
//!   never allocate and only decodes can trigger preemption (vLLM checks that the whole prompt fits, then
//!   allocates chunk by chunk). Without chunking the two coincide: with an unlimited budget and
//!   `chunked_prefill = false` this policy makes exactly the steps of [`super::vllm::VllmPolicy`].
//!
//! Options (defaults): `token_budget` = 512 (the paper's and Vidur's `chunk_size`), `chunked_prefill` = true.
//! Not modelled: GEMM-tile alignment of the budget, pipeline parallelism, `long_prefill_token_threshold`.

use crate::batch::{AddResult, MemoryRule, prefill_chunk, serve_running, try_admit};
use crate::error::{Error, Result};
use crate::policies::fcfs_queue::{FcfsQueue, fcfs_queue_methods};
use crate::policy::{Policy, PolicyOptions};
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// Sarathi-Serve's stall-free chunked-prefill scheduling.
#[derive(Debug, Clone)]
pub struct SarathiPolicy {
    waiting: FcfsQueue,
    token_budget: u32,
    chunked_prefill: bool,
}

impl SarathiPolicy {
    /// Options accepted by [`SarathiPolicy::from_options`].
    pub const OPTIONS: &'static [&'static str] = &["token_budget", "chunked_prefill"];

    /// Default per-iteration token budget.
    pub const DEFAULT_TOKEN_BUDGET: u32 = 512;

    /// A policy with the given budget (>= 1) and chunking flag.
    pub fn new(token_budget: u32, chunked_prefill: bool) -> Self {
        SarathiPolicy { waiting: FcfsQueue::default(), token_budget: token_budget.max(1), chunked_prefill }
    }

    /// Builds the policy from its options.
    pub fn from_options(mut options: PolicyOptions) -> Result<Self> {
        let token_budget = options.u32("token_budget", Self::DEFAULT_TOKEN_BUDGET)?;
        if token_budget == 0 {
            return Err(Error::config("policy \"sarathi\": token_budget must be >= 1"));
        }
        let chunked_prefill = options.bool("chunked_prefill", true)?;
        options.finish(Self::OPTIONS)?;
        Ok(SarathiPolicy::new(token_budget, chunked_prefill))
    }

    /// The per-iteration token budget.
    pub fn token_budget(&self) -> u32 {
        self.token_budget
    }

    /// Tokens a prefill owing `owed` gets with `budget` left (None: not this step): [`prefill_chunk`] with this
    /// policy's budget and chunking flag.
    fn chunk(&self, owed: u32, budget: u32) -> Option<u32> {
        prefill_chunk(owed, budget, self.chunked_prefill, self.token_budget)
    }

    /// Phase 1: one token for every decoding request, preempting the newest when a block is missing. Returns the
    /// budget left and whether anything was preempted.
    fn schedule_decodes(&mut self, state: &mut SchedulerState, step: &mut Step, budget: u32) -> (u32, bool) {
        let waiting = &mut self.waiting;
        serve_running(
            state,
            step,
            budget,
            |r, _| (!r.is_prefill()).then_some(1),
            |_, victim| waiting.push_front(victim),
        )
    }

    /// Phase 2: the next chunk of every running prefill (their blocks were allocated at admission).
    fn schedule_prefill_chunks(&self, state: &mut SchedulerState, step: &mut Step, mut budget: u32) -> u32 {
        for i in 0..state.running().len() {
            if budget == 0 {
                break;
            }
            let slot = state.running()[i];
            let r = state.request(slot);
            if !r.is_prefill() {
                continue;
            }
            let Some(n) = self.chunk(r.num_owed_tokens(), budget) else { continue };
            if !state.allocate(slot, n) {
                continue;
            }
            state.schedule(slot, n, step);
            budget -= n;
        }
        budget
    }

    /// Phase 3: FCFS admission of new (or preempted) requests, whole prefill reserved, first chunk scheduled.
    fn admit(&mut self, state: &mut SchedulerState, step: &mut Step, mut budget: u32) {
        let rule = MemoryRule::WholePrefill { allocate_whole: true };
        while let Some(slot) = self.waiting.front() {
            if try_admit(state, step, slot, &mut budget, rule, |owed, left| self.chunk(owed, left))
                != AddResult::Admitted
            {
                break;
            }
            self.waiting.pop_front();
        }
    }
}

impl Policy for SarathiPolicy {
    fn name(&self) -> &'static str {
        "sarathi"
    }

    fcfs_queue_methods!();

    fn schedule(&mut self, state: &mut SchedulerState, step: &mut Step) {
        let (budget, preempted) = self.schedule_decodes(state, step, self.token_budget);
        let budget = self.schedule_prefill_chunks(state, step, budget);
        if !preempted {
            self.admit(state, step, budget);
        }
    }
}
