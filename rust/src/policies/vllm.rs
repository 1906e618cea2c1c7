//! vLLM's default scheduler (v1), as a policy: running requests first, then FCFS admission.
//!
//! Each step:
//! 1. Running requests, in admission order, get the tokens they owe (one for a decode; the rest of a prefill,
//!    cut to the remaining token budget when chunked prefill is on). When one cannot get a KV block, the most
//!    recently admitted running request is preempted by recompute and put back at the head of the waiting
//!    queue, until the allocation succeeds or the request preempted itself.
//! 2. Only if nothing was preempted, waiting requests are admitted from the head of the queue while the whole
//!    (re)prefill fits in free blocks above the watermark, `max_num_seqs` and the token budget
//!    (`max_num_batched_tokens`) allow. Admission stops at the first request that does not fit (head-of-line
//!    blocking), as in vLLM.
//!
//! Source: `vllm/v1/core/sched/scheduler.py` (0.32), summarised in `shared/reference/vllm-integration.md` §1.4.
//! Not modelled: prefix caching, speculative decoding, `long_prefill_token_threshold`.

use crate::batch::{AddResult, MemoryRule, engine_chunk, serve_running, try_admit};
use crate::error::Result;
use crate::policies::fcfs_queue::{FcfsQueue, fcfs_queue_methods};
use crate::policy::{Policy, PolicyOptions};
use crate::request::Slot;
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// vLLM's default FCFS policy with recompute preemption.
#[derive(Debug, Default, Clone)]
pub struct VllmPolicy {
    waiting: FcfsQueue,
}

impl VllmPolicy {
    /// Options accepted by [`VllmPolicy::from_options`] (none beyond the shared scheduler limits).
    pub const OPTIONS: &'static [&'static str] = &[];

    /// A new policy with an empty queue.
    pub fn new() -> Self {
        VllmPolicy::default()
    }

    /// Builds the policy from its options.
    pub fn from_options(options: PolicyOptions) -> Result<Self> {
        options.finish(Self::OPTIONS)?;
        Ok(VllmPolicy::new())
    }
}

/// Schedules every running request in admission order under the engine's chunking rule, preempting the newest
/// running requests (by recompute) when KV blocks run out ([`serve_running`]). Preempted requests are handed to
/// `requeue` newest first. Returns the token budget left and whether anything was preempted. Shared by
/// vLLM-like policies.
pub fn schedule_running(
    state: &mut SchedulerState,
    step: &mut Step,
    budget: u32,
    mut requeue: impl FnMut(Slot),
) -> (u32, bool) {
    let chunk = engine_chunk(state);
    serve_running(state, step, budget, |r, budget| chunk(r.num_owed_tokens(), budget), |_, slot| requeue(slot))
}

/// Admits waiting requests from the front of `queue` (FCFS) while they fit: the whole (re)prefill above the
/// watermark, `max_num_seqs`, and the token budget. Returns the budget left.
pub fn admit_fcfs(state: &mut SchedulerState, step: &mut Step, queue: &mut FcfsQueue, mut budget: u32) -> u32 {
    let chunk = engine_chunk(state);
    let rule = MemoryRule::WholePrefill { allocate_whole: false };
    while let Some(slot) = queue.front() {
        if try_admit(state, step, slot, &mut budget, rule, chunk) != AddResult::Admitted {
            break;
        }
        queue.pop_front();
    }
    budget
}

impl Policy for VllmPolicy {
    fn name(&self) -> &'static str {
        "vllm"
    }

    fcfs_queue_methods!();

    fn schedule(&mut self, state: &mut SchedulerState, step: &mut Step) {
        let budget = state.config().max_num_batched_tokens;
        let (budget, preempted) = self.waiting.serve_running(state, step, budget);
        if !preempted {
            admit_fcfs(state, step, &mut self.waiting, budget);
        }
    }
}
