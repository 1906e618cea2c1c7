//! Vidur's vLLM replica scheduler (the "vLLM" baseline of the WAIT paper, Ao et al., arXiv 2504.11320): separate
//! prefill-only and decode-only iterations, FCFS admission under a padded token cap and a batch-size cap.
//!
//! Source: `microsoft/vidur`, `vidur/scheduler/replica_scheduler/vllm_replica_scheduler.py`
//! (`VLLMReplicaScheduler._get_next_batch`, `_can_allocate_request`, `_allocate_request`) and
//! `base_replica_scheduler.py`; summarised in `shared/reference/simulator-notes.md` §1.4 and
//! `shared/reference/wait-paper-digest.md` §5.8. The authors' fork runs it unchanged.
//!
//! Each step is one of two kinds:
//! 1. **Prefill-only iteration**, whenever at least one waiting request can be admitted. Waiting requests are
//!    admitted FCFS from the head of the queue (a preempted request is back at the head), each with its whole
//!    (re)prefill (prompt plus the tokens it had generated; never chunked), while all of these hold, and
//!    admission stops at the first request that fails one (head-of-line blocking):
//!    - **memory**: its prefill's blocks, `⌈tokens / block_size⌉`, plus the watermark `⌊watermark ×
//!      num_blocks⌋` fit in the free blocks (Vidur: `num_total − num_allocated − required ≥ watermark_blocks`);
//!    - **padded token cap**: `k × max(prefill tokens of the k requests in the batch) ≤ max_tokens_in_batch`
//!      with the candidate counted (Vidur: `len(new_num_tokens) × max(new_num_tokens)`);
//!    - **batch-size cap**: fewer than `batch_size_cap` requests hold KV blocks (running, including those
//!      admitted in this step; Vidur: `len(self._allocation_map) == self._max_batch_size`).
//!
//!    The admitted prefills are the whole batch: running requests do not decode in that iteration (they pause).
//! 2. **Decode-only iteration**, when nothing can be admitted: every running request gets one token, oldest
//!    first. When one cannot get its next KV block, the latest-arrived running request not yet in this batch is
//!    preempted by recompute (its blocks freed, back at the head of the queue, later victims in front of earlier
//!    ones so the queue stays in arrival order), until the block can be had; if no other request is left, the
//!    request itself is preempted (Vidur: `_preempted_requests.pop(-1)` after sorting by `arrived_at`, then
//!    `restart()` and `[victim] + request_queue`). Nothing is admitted in a decode iteration, preemption or not.
//!
//! Block accounting is Vidur's: `⌈prefill / block_size⌉` blocks at admission, then one block whenever a decode
//! crosses a block boundary; a decode ignores the watermark.
//!
//! Order: FCFS admission with preempted requests requeued at the head keeps the running list (admission
//! order) in arrival order and every running request older than every waiting one, when requests are added in
//! arrival order (the simulator does). So "oldest first" and "latest-arrived victim" are the running list's
//! order and its newest entry, which is what [`serve_running`] walks and evicts; `rust/tests/vllm_v0.rs`
//! checks this against a reference that sorts by arrival.
//!
//! Where this differs from Vidur, and why:
//! - **Batch-size cap**: `batch_size_cap` defaults to the scheduler's `max_num_seqs`, which always bounds it
//!   (the scheduler's invariant); a larger option value is clipped to `max_num_seqs`. Vidur's default is 128
//!   (`--max-num-seqs 128` reproduces it).
//! - **Prefills longer than `max_tokens_in_batch`** run alone in their own prefill-only iteration (the first
//!   request of a batch is exempt from the padded cap). Vidur would never admit one (its trace loader trims
//!   requests to `max_tokens` = 4096, so it never meets one); fluidsched keeps long prompts, and stalling forever
//!   is not a baseline.
//! - **Decode block check**: Vidur preempts while fewer than one block is free, even for a decode that needs no
//!   new block (`_can_allocate_request` for a running request: `num_total − num_allocated ≥ 1`); here a victim
//!   is taken only when the decode truly needs a block that is not free ([`serve_running`], vLLM's own rule).
//!   The two differ only when the pool is exactly full.
//! - The engine's `max_num_batched_tokens` and `enable_chunked_prefill` are ignored (Vidur's vLLM has neither:
//!   the padded cap replaces the token budget and prefills are never chunked). A decode iteration has no token
//!   limit beyond the batch-size cap.
//! - Not modelled: pipeline stages (`num_stages > 1`, Vidur's micro-batches of `batch_size_cap / num_stages`).
//!
//! Options (defaults): `max_tokens_in_batch` = 4096 (Vidur's), `batch_size_cap` = `max_num_seqs`.

use crate::batch::{AddResult, MemoryRule, serve_running, try_admit};
use crate::error::{Error, Result};
use crate::policies::fcfs_queue::{FcfsQueue, fcfs_queue_methods};
use crate::policy::{Policy, PolicyOptions};
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// Vidur's vLLM scheduler: prefill-only iterations under a padded token cap, else decode-only iterations.
#[derive(Debug, Clone)]
pub struct VllmV0Policy {
    waiting: FcfsQueue,
    max_tokens_in_batch: u32,
    batch_size_cap: Option<u32>,
}

impl VllmV0Policy {
    /// Options accepted by [`VllmV0Policy::from_options`].
    pub const OPTIONS: &'static [&'static str] = &["max_tokens_in_batch", "batch_size_cap"];

    /// Default padded token cap of a prefill-only iteration (Vidur's `max_tokens_in_batch`).
    pub const DEFAULT_MAX_TOKENS_IN_BATCH: u32 = 4096;

    /// A policy with the given padded token cap (>= 1) and batch-size cap (None: the scheduler's `max_num_seqs`;
    /// a value is clipped to `max_num_seqs` and to at least 1).
    pub fn new(max_tokens_in_batch: u32, batch_size_cap: Option<u32>) -> Self {
        VllmV0Policy {
            waiting: FcfsQueue::default(),
            max_tokens_in_batch: max_tokens_in_batch.max(1),
            batch_size_cap: batch_size_cap.map(|c| c.max(1)),
        }
    }

    /// Builds the policy from its options.
    pub fn from_options(mut options: PolicyOptions) -> Result<Self> {
        let max_tokens_in_batch = options.u32("max_tokens_in_batch", Self::DEFAULT_MAX_TOKENS_IN_BATCH)?;
        if max_tokens_in_batch == 0 {
            return Err(Error::config("policy \"vllm-v0\": max_tokens_in_batch must be >= 1"));
        }
        let batch_size_cap = match options.opt_f64("batch_size_cap")? {
            None => None,
            Some(x) if x.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&x) => Some(x as u32),
            Some(x) => {
                return Err(Error::config(format!(
                    "policy \"vllm-v0\": batch_size_cap must be an integer >= 1, got {x}"
                )));
            }
        };
        options.finish(Self::OPTIONS)?;
        Ok(VllmV0Policy::new(max_tokens_in_batch, batch_size_cap))
    }

    /// The padded token cap of a prefill-only iteration.
    pub fn max_tokens_in_batch(&self) -> u32 {
        self.max_tokens_in_batch
    }

    /// The batch-size cap in force under `state`'s limits: the option clipped to `max_num_seqs`, or
    /// `max_num_seqs`.
    pub fn batch_size_cap(&self, state: &SchedulerState) -> u32 {
        let seqs = state.config().max_num_seqs;
        self.batch_size_cap.map_or(seqs, |c| c.min(seqs))
    }

    /// Whether a prefill-only batch of `k` requests whose longest prefill is `longest` tokens respects the padded
    /// cap `k × longest ≤ max_tokens_in_batch`; a batch of one always does (see the module docs).
    pub fn padded_fits(&self, k: u32, longest: u32) -> bool {
        k <= 1 || u64::from(k) * u64::from(longest) <= u64::from(self.max_tokens_in_batch)
    }

    /// The prefill-only iteration: FCFS admission of whole (re)prefills under the memory rule (whole prefill
    /// plus watermark), the padded token cap and the batch-size cap, stopping at the first request that fails.
    /// Returns how many were admitted.
    fn admit_prefills(&mut self, state: &mut SchedulerState, step: &mut Step) -> u32 {
        let cap = self.batch_size_cap(state) as usize;
        let rule = MemoryRule::WholePrefill { allocate_whole: false };
        // The padded cap bounds the batch's tokens (a lone prefill is at most `MAX_REQUEST_TOKENS`), so this
        // budget is never the binding limit.
        let mut budget = u32::MAX;
        let (mut k, mut longest) = (0u32, 0u32);
        while let Some(slot) = self.waiting.front() {
            let owed = state.request(slot).num_owed_tokens();
            if state.running().len() >= cap || !self.padded_fits(k + 1, longest.max(owed)) {
                break;
            }
            if try_admit(state, step, slot, &mut budget, rule, |owed, _| Some(owed)) != AddResult::Admitted {
                break;
            }
            self.waiting.pop_front();
            k += 1;
            longest = longest.max(owed);
        }
        k
    }

    /// The decode-only iteration: one token for every running request, oldest first, preempting the newest
    /// (latest-arrived) running request by recompute while a block is missing ([`serve_running`]); victims go
    /// back to the head of the queue.
    fn decode_all(&mut self, state: &mut SchedulerState, step: &mut Step) {
        let waiting = &mut self.waiting;
        // Every running request finished its whole prefill in its admission iteration, so it owes one token.
        serve_running(state, step, u32::MAX, |r, _| Some(r.num_owed_tokens()), |_, victim| waiting.push_front(victim));
    }
}

impl Policy for VllmV0Policy {
    fn name(&self) -> &'static str {
        "vllm-v0"
    }

    fcfs_queue_methods!();

    fn schedule(&mut self, state: &mut SchedulerState, step: &mut Step) {
        if self.admit_prefills(state, step) == 0 {
            self.decode_all(state, step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::OptionValue;
    use crate::request::NewRequest;
    use crate::{Scheduler, SchedulerConfig};

    fn cfg(num_blocks: u32, max_num_seqs: u32) -> SchedulerConfig {
        SchedulerConfig {
            block_size: 4,
            num_blocks,
            watermark: 0.0,
            max_num_seqs,
            max_num_batched_tokens: 16,
            enable_chunked_prefill: true,
        }
    }

    fn sched(cfg: SchedulerConfig, policy: VllmV0Policy) -> Scheduler {
        Scheduler::new(cfg, Box::new(policy)).unwrap()
    }

    fn add(s: &mut Scheduler, id: u64, prompt: u32, output: u32) {
        let r = NewRequest {
            id,
            prompt_len: prompt,
            output_len: Some(output),
            output_len_hint: None,
            type_id: None,
            arrival: id as f64,
        };
        s.add_request(r).unwrap();
    }

    /// `(id, tokens)` of the next step, which is then completed.
    fn step(s: &mut Scheduler) -> (Vec<(u64, u32)>, Vec<u64>) {
        let st = s.schedule(0.0).unwrap();
        let out = (st.scheduled.iter().map(|r| (r.id, r.num_tokens)).collect(), st.preempted.clone());
        s.complete_step(&[]).unwrap();
        out
    }

    #[test]
    fn prefill_only_iterations_pause_decodes() {
        let mut s = sched(cfg(100, 8), VllmV0Policy::new(4096, None));
        add(&mut s, 0, 10, 5);
        assert_eq!(step(&mut s).0, vec![(0, 10)]);
        assert_eq!(step(&mut s).0, vec![(0, 1)]);
        add(&mut s, 1, 30, 5);
        // The new prompt runs alone (larger than the engine's 16-token budget: that budget is ignored, and the
        // prefill is not chunked); request 0 pauses.
        assert_eq!(step(&mut s).0, vec![(1, 30)]);
        assert_eq!(step(&mut s).0, vec![(0, 1), (1, 1)]);
    }

    #[test]
    fn padded_cap_counts_batch_size_times_longest_prompt() {
        let mut s = sched(cfg(1000, 16), VllmV0Policy::new(100, None));
        // 3 × 30 = 90 fits; a 4th 30-token prompt (120) does not.
        for id in 0..4 {
            add(&mut s, id, 30, 2);
        }
        assert_eq!(step(&mut s).0, vec![(0, 30), (1, 30), (2, 30)]);
        // Request 3 comes next, alone, and the decodes wait.
        assert_eq!(step(&mut s).0, vec![(3, 30)]);
        // A short prompt behind a long one: 2 × 60 = 120 > 100 although 60 + 5 tokens would fit.
        add(&mut s, 4, 60, 1);
        add(&mut s, 5, 5, 1);
        assert_eq!(step(&mut s).0, vec![(4, 60)]);
        assert_eq!(step(&mut s).0, vec![(5, 5)]);
    }

    #[test]
    fn a_prompt_above_the_padded_cap_runs_alone() {
        let mut s = sched(cfg(1000, 16), VllmV0Policy::new(50, None));
        add(&mut s, 0, 200, 1);
        add(&mut s, 1, 1, 1);
        assert_eq!(step(&mut s).0, vec![(0, 200)]);
        assert_eq!(step(&mut s).0, vec![(1, 1)]);
    }

    #[test]
    fn batch_size_cap_is_the_option_clipped_to_max_num_seqs() {
        let mut s = sched(cfg(1000, 4), VllmV0Policy::new(4096, Some(2)));
        for id in 0..3 {
            add(&mut s, id, 4, 3);
        }
        assert_eq!(step(&mut s).0, vec![(0, 4), (1, 4)]);
        assert_eq!(step(&mut s).0, vec![(0, 1), (1, 1)]);
        let mut s = sched(cfg(1000, 2), VllmV0Policy::new(4096, Some(128)));
        for id in 0..3 {
            add(&mut s, id, 4, 3);
        }
        assert_eq!(step(&mut s).0, vec![(0, 4), (1, 4)]);
    }

    #[test]
    fn memory_keeps_the_watermark_and_blocks_the_head() {
        // 10 blocks of 4 tokens, watermark 1 block.
        let c = SchedulerConfig { watermark: 0.1, ..cfg(10, 8) };
        let mut s = sched(c, VllmV0Policy::new(4096, None));
        add(&mut s, 0, 19, 10); // 5 blocks
        add(&mut s, 1, 15, 10); // 4 blocks: 5 + 4 + 1 watermark = 10, fits
        add(&mut s, 2, 1, 3); // 1 block: no longer fits above the watermark
        assert_eq!(step(&mut s).0, vec![(0, 19), (1, 15)]);
        // Request 2 waits (head-of-line) and the running requests decode within the blocks they hold.
        assert_eq!(step(&mut s).0, vec![(0, 1), (1, 1)]);
        assert_eq!(s.num_free_blocks(), 1);
        // Both need a new block: request 0 takes the watermark block (decodes ignore it), request 1 finds none
        // and, being the newest, preempts itself.
        assert_eq!(step(&mut s), (vec![(0, 1)], vec![1]));
        assert_eq!(s.num_free_blocks(), 4);
        // The head is request 1 (17 tokens to recompute: 5 blocks + 1 watermark > 4 free), which blocks request 2:
        // a decode iteration.
        assert_eq!(step(&mut s).0, vec![(0, 1)]);
    }

    #[test]
    fn decode_shortage_preempts_the_newest_and_admits_nothing() {
        // 6 blocks of 4 tokens: two 12-token prompts take 3 blocks each; the first decode needs a 4th.
        let mut s = sched(cfg(6, 8), VllmV0Policy::new(4096, None));
        add(&mut s, 0, 12, 4);
        add(&mut s, 1, 12, 4);
        assert_eq!(step(&mut s).0, vec![(0, 12), (1, 12)]);
        // Request 0 needs a block: request 1 (newest) is evicted; nothing is admitted in this decode iteration.
        let (scheduled, preempted) = step(&mut s);
        assert_eq!((scheduled, preempted), (vec![(0, 1)], vec![1]));
        // Request 1 is back at the head: its 13 tokens need 4 blocks; 2 are free, so request 0 decodes.
        assert_eq!(step(&mut s).0, vec![(0, 1)]);
        assert_eq!(s.request(1).unwrap().num_preemptions, 1);
    }

    #[test]
    fn options() {
        let build = |v: Vec<(&str, OptionValue)>| {
            VllmV0Policy::from_options(PolicyOptions::new("vllm-v0", v.into_iter().map(|(k, v)| (k.to_string(), v))))
        };
        let p = build(vec![]).unwrap();
        assert_eq!((p.max_tokens_in_batch(), p.batch_size_cap), (4096, None));
        let p =
            build(vec![("batch-size-cap", OptionValue::Num(128.0)), ("max_tokens_in_batch", OptionValue::Num(8.0))])
                .unwrap();
        assert_eq!((p.max_tokens_in_batch(), p.batch_size_cap), (8, Some(128)));
        for bad in [0.0, 1.5, -1.0, 1e20] {
            assert!(
                build(vec![("batch_size_cap", OptionValue::Num(bad))])
                    .unwrap_err()
                    .to_string()
                    .contains("batch_size_cap")
            );
        }
        assert!(build(vec![("max_tokens_in_batch", OptionValue::Num(0.0))]).is_err());
        assert!(build(vec![("chunk_size", OptionValue::Num(8.0))]).is_err());
    }

    #[test]
    fn padded_fits_rule() {
        let p = VllmV0Policy::new(4096, None);
        assert!(p.padded_fits(1, 10_000));
        assert!(p.padded_fits(4, 1024));
        assert!(!p.padded_fits(4, 1025));
        assert!(p.padded_fits(128, 32));
        assert!(!p.padded_fits(u32::MAX, u32::MAX));
    }
}
