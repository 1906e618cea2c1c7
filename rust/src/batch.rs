//! Batch building, written once: the pieces every policy's step is made of.
//!
//! A policy says only what is specific to it (which running requests are skipped, how many tokens each gets,
//! which waiting request is next, what memory an admission must find); the loops, the chunking rule, the
//! watermark and the preempt-until-it-fits rule live here. Modelled on vLLM's `Scheduler.schedule` (running
//! loop, then waiting loop), SGLang's `PrefillAdder` / `AddReqResult` and Vidur's `BaseReplicaScheduler`.
//!
//! - [`usable_blocks`]: the blocks above the watermark, the capacity every planner and guard works with.
//! - [`prefill_chunk`]: how many tokens a (re)prefill computes this step under a token budget.
//! - [`serve_running`]: the running phase, in admission order, preempting the newest running request (by
//!   recompute) until an allocation succeeds.
//! - [`try_admit`]: one admission, checked against the token budget, `max_num_seqs` and a [`MemoryRule`], and
//!   carried out (admit, allocate, schedule) only if every check passes; [`AddResult`] says which check failed.

use crate::request::{Request, Slot};
use crate::state::SchedulerState;
use crate::step::Step;

/// Blocks above the watermark: `num_blocks − ⌊watermark × num_blocks⌋` (vLLM keeps the watermark free for
/// admissions; every capacity a planner or a guard uses is this one).
#[inline]
pub fn usable_blocks(num_blocks: u32, watermark: f64) -> u32 {
    num_blocks - watermark_blocks(num_blocks, watermark)
}

/// Blocks kept free at admission: `⌊watermark × num_blocks⌋`.
#[inline]
pub fn watermark_blocks(num_blocks: u32, watermark: f64) -> u32 {
    (watermark * f64::from(num_blocks)).floor() as u32
}

/// Tokens a (re)prefill owing `owed` computes in a step with `budget` tokens left, or None if it must wait for
/// a later step. With chunking the prefill is cut to the budget; without, it runs whole, except one longer than
/// the whole per-step budget `max_tokens`, which is chunked anyway rather than stalled forever.
#[inline]
pub fn prefill_chunk(owed: u32, budget: u32, chunked: bool, max_tokens: u32) -> Option<u32> {
    let n = if chunked || owed > max_tokens { owed.min(budget) } else { owed };
    (n >= 1 && n <= budget).then_some(n)
}

/// The running phase shared by every policy: walks the running requests in admission order while budget is
/// left; `tokens_for(request, budget)` says how many tokens each gets (None: skip it this step). When a request
/// cannot get its blocks, the newest running request is preempted by recompute and handed to `on_preempt`,
/// until the allocation succeeds or the request preempted itself (then the phase stops). Returns the budget
/// left and whether anything was preempted.
pub fn serve_running(
    state: &mut SchedulerState,
    step: &mut Step,
    mut budget: u32,
    mut tokens_for: impl FnMut(&Request, u32) -> Option<u32>,
    mut on_preempt: impl FnMut(&SchedulerState, Slot),
) -> (u32, bool) {
    let mut preempted = false;
    let mut i = 0;
    while i < state.running().len() && budget > 0 {
        let slot = state.running()[i];
        let Some(n) = tokens_for(state.request(slot), budget) else {
            i += 1;
            continue;
        };
        let mut scheduled = false;
        loop {
            if state.try_schedule(slot, n, step) {
                scheduled = true;
                break;
            }
            // Victims come from the end of the running list, so they were never scheduled in this step.
            let Some(&victim) = state.running().last() else { break };
            state.preempt(victim, step);
            on_preempt(state, victim);
            preempted = true;
            if victim == slot {
                break;
            }
        }
        if !scheduled {
            break;
        }
        budget -= n;
        i += 1;
    }
    (budget, preempted)
}

/// What memory an admission must find free, and what it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryRule {
    /// The whole (re)prefill must fit in free blocks above the watermark (vLLM's `scheduler_reserve_full_isl`);
    /// blocks for the step's chunk are allocated (`allocate_whole`: for the whole prefill at once, as Vidur's
    /// Sarathi does).
    WholePrefill {
        /// Allocate the whole prefill at admission rather than the step's chunk.
        allocate_whole: bool,
    },
    /// The whole (re)prefill must fit in free blocks, watermark ignored (SGLang); the chunk is allocated.
    WholePrefillNoWatermark,
    /// A reservation of this many tokens in total must fit in free blocks and is held from admission (Orca).
    Reserve(u32),
}

/// Why [`try_admit`] did (not) admit a request (SGLang's `AddReqResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddResult {
    /// Admitted, allocated and scheduled.
    Admitted,
    /// The token budget is spent, or the prefill does not fit what is left of it.
    NoBudget,
    /// `max_num_seqs` requests already run.
    NoSeqSlot,
    /// The memory rule failed.
    NoMemory,
    /// The policy's own check ([`try_admit_with`]) refused it.
    Refused,
}

/// Admits waiting request `slot` (already at the head of the policy's queue) if the token budget, `max_num_seqs`
/// and `rule` allow: moves it to the running list, allocates its blocks and schedules the step's chunk (cut by
/// `chunk`, the policy's chunking rule, given the tokens owed and the budget left). The caller removes it from
/// its queue on [`AddResult::Admitted`]; nothing changes otherwise.
pub fn try_admit(
    state: &mut SchedulerState,
    step: &mut Step,
    slot: Slot,
    budget: &mut u32,
    rule: MemoryRule,
    chunk: impl FnOnce(u32, u32) -> Option<u32>,
) -> AddResult {
    try_admit_with(state, step, slot, budget, rule, chunk, |_| true)
}

/// [`try_admit`] with a policy-specific check (WAIT's memory guard, SGLang's reservation) that runs only once
/// the shared checks pass, and before anything changes; false refuses the request ([`AddResult::Refused`]).
pub fn try_admit_with(
    state: &mut SchedulerState,
    step: &mut Step,
    slot: Slot,
    budget: &mut u32,
    rule: MemoryRule,
    chunk: impl FnOnce(u32, u32) -> Option<u32>,
    admissible: impl FnOnce(&SchedulerState) -> bool,
) -> AddResult {
    if *budget == 0 {
        return AddResult::NoBudget;
    }
    if state.running().len() >= state.config().max_num_seqs as usize {
        return AddResult::NoSeqSlot;
    }
    let owed = state.request(slot).num_owed_tokens();
    let Some(n) = chunk(owed, *budget) else { return AddResult::NoBudget };
    let fits = match rule {
        MemoryRule::WholePrefill { .. } => state.fits_for_admission(slot, owed),
        MemoryRule::WholePrefillNoWatermark => state.blocks_needed(slot, owed) <= state.pool().num_free(),
        MemoryRule::Reserve(tokens) => state.blocks_needed(slot, tokens) <= state.pool().num_free(),
    };
    if !fits {
        return AddResult::NoMemory;
    }
    if !admissible(state) {
        return AddResult::Refused;
    }
    state.admit(slot, step);
    let ok = match rule {
        MemoryRule::WholePrefill { allocate_whole: true } => state.allocate(slot, owed),
        MemoryRule::Reserve(tokens) => state.reserve(slot, tokens),
        _ => state.allocate(slot, n),
    };
    debug_assert!(ok, "admission checked the memory rule");
    state.schedule(slot, n, step);
    *budget -= n;
    AddResult::Admitted
}

/// The step's token budget and chunking rule: the engine's (`max_num_batched_tokens`, `enable_chunked_prefill`),
/// or, given a policy's own `token_budget`, that budget with chunked prefill (Sarathi-Serve's stall-free
/// batching under a per-step token budget).
pub fn step_budget(
    state: &SchedulerState,
    token_budget: Option<u32>,
) -> (u32, impl Fn(u32, u32) -> Option<u32> + Copy + use<>) {
    let cfg = *state.config();
    let (budget, chunked) = match token_budget {
        Some(b) => (b, true),
        None => (cfg.max_num_batched_tokens, cfg.enable_chunked_prefill),
    };
    (budget, move |owed, left| prefill_chunk(owed, left, chunked, budget))
}

/// The engine's chunking rule ([`step_budget`] without a policy budget), as a closure for [`serve_running`] and
/// [`try_admit`].
pub fn engine_chunk(state: &SchedulerState) -> impl Fn(u32, u32) -> Option<u32> + Copy + use<> {
    step_budget(state, None).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_blocks_floors_the_watermark() {
        assert_eq!(usable_blocks(7424, 0.01), 7424 - 74);
        assert_eq!(usable_blocks(99, 0.01), 99);
        assert_eq!(usable_blocks(100, 0.0), 100);
    }

    #[test]
    fn chunk_rule() {
        // Chunked: cut to the budget.
        assert_eq!(prefill_chunk(300, 100, true, 8192), Some(100));
        // Unchunked: whole, or wait.
        assert_eq!(prefill_chunk(300, 100, false, 8192), None);
        assert_eq!(prefill_chunk(300, 300, false, 8192), Some(300));
        // Longer than the whole budget: chunked anyway.
        assert_eq!(prefill_chunk(9000, 8192, false, 8192), Some(8192));
        // Nothing left.
        assert_eq!(prefill_chunk(5, 0, true, 8192), None);
    }
}
