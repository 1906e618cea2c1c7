//! The state policies work on: the shared limits ([`SchedulerConfig`]) and [`SchedulerState`] (request table,
//! running list, block pool) with the building blocks of a step (admit, allocate, schedule, preempt).

use std::collections::HashMap;

use crate::block_pool::BlockPool;
use crate::error::{Error, Result};
use crate::request::{Request, RequestState, Slot};
use crate::step::{ScheduledRequest, Step};

/// Limits shared by every policy (vLLM's names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulerConfig {
    /// Tokens per KV block.
    pub block_size: u32,
    /// KV blocks in the cache.
    pub num_blocks: u32,
    /// Fraction of blocks kept free at admission (vLLM: 0.01).
    pub watermark: f64,
    /// Most requests running at once.
    pub max_num_seqs: u32,
    /// Most tokens in one iteration.
    pub max_num_batched_tokens: u32,
    /// Whether prefills may be split across iterations.
    pub enable_chunked_prefill: bool,
}

impl Default for SchedulerConfig {
    /// Llama-2-7B on an A100-80GB (7,424 blocks of 16 tokens), vLLM's defaults elsewhere.
    fn default() -> Self {
        SchedulerConfig {
            block_size: 16,
            num_blocks: 7424,
            watermark: 0.01,
            max_num_seqs: 256,
            max_num_batched_tokens: 8192,
            enable_chunked_prefill: true,
        }
    }
}

impl SchedulerConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        BlockPool::check_geometry(self.num_blocks, self.block_size, self.watermark)?;
        if self.max_num_seqs == 0 {
            return Err(Error::config("max_num_seqs must be >= 1"));
        }
        if self.max_num_batched_tokens == 0 {
            return Err(Error::config("max_num_batched_tokens must be >= 1"));
        }
        Ok(())
    }

    /// Blocks above the watermark (see [`crate::batch::usable_blocks`]).
    pub fn usable_blocks(&self) -> u32 {
        crate::batch::usable_blocks(self.num_blocks, self.watermark)
    }

    /// Tokens in the blocks above the watermark: the KV capacity planners and guards work with.
    pub fn usable_tokens(&self) -> u64 {
        u64::from(self.usable_blocks()) * u64::from(self.block_size)
    }

    /// KV capacity in tokens.
    pub fn kv_capacity_tokens(&self) -> u64 {
        u64::from(self.num_blocks) * u64::from(self.block_size)
    }
}

/// The state a policy works on: requests, the running list, the block pool, and the building blocks of a step.
#[derive(Debug)]
pub struct SchedulerState {
    pub(crate) config: SchedulerConfig,
    pub(crate) pool: BlockPool,
    pub(crate) requests: Vec<Request>,
    pub(crate) free_slots: Vec<Slot>,
    pub(crate) index: HashMap<u64, Slot>,
    pub(crate) running: Vec<Slot>,
    pub(crate) admit_counter: u64,
    pub(crate) now: f64,
}

impl SchedulerState {
    /// The shared limits.
    #[inline]
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The KV block pool.
    #[inline]
    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// Current time (set by the latest `schedule`).
    #[inline]
    pub fn now(&self) -> f64 {
        self.now
    }

    /// The request in `slot`.
    #[inline]
    pub fn request(&self, slot: Slot) -> &Request {
        &self.requests[slot as usize]
    }

    /// Mutable access to a request's policy scratch value.
    #[inline]
    pub fn set_policy_tag(&mut self, slot: Slot, tag: u32) {
        self.requests[slot as usize].policy_tag = tag;
    }

    /// Running requests, in admission order (oldest first).
    #[inline]
    pub fn running(&self) -> &[Slot] {
        &self.running
    }

    /// The slot of request `id`, if held.
    pub fn slot_of(&self, id: u64) -> Option<Slot> {
        self.index.get(&id).copied()
    }

    /// New blocks request `slot` needs to compute `n` more tokens.
    #[inline]
    pub fn blocks_needed(&self, slot: Slot, n: u32) -> u32 {
        let r = &self.requests[slot as usize];
        self.pool.blocks_for(r.num_computed_tokens + n).saturating_sub(r.num_blocks())
    }

    /// Whether a waiting request could be admitted holding `n` tokens, keeping the watermark free.
    #[inline]
    pub fn fits_for_admission(&self, slot: Slot, n: u32) -> bool {
        self.blocks_needed(slot, n) + self.pool.watermark_blocks() <= self.pool.num_free()
    }

    /// Allocates the blocks request `slot` needs to compute `n` more tokens (reserving up to
    /// `num_computed_tokens + n`). Returns false, changing nothing, if there are not enough free blocks.
    #[inline]
    pub fn allocate(&mut self, slot: Slot, n: u32) -> bool {
        let r = &self.requests[slot as usize];
        // Fast path (most decode steps): the tokens still fit in the blocks held; no division needed.
        if u64::from(r.num_computed_tokens) + u64::from(n)
            <= u64::from(r.num_blocks()) * u64::from(self.pool.block_size())
        {
            return true;
        }
        self.allocate_slow(slot, n)
    }

    #[cold]
    #[inline(never)]
    fn allocate_slow(&mut self, slot: Slot, n: u32) -> bool {
        let need = self.blocks_needed(slot, n);
        need == 0 || self.pool.allocate(slot, need, &mut self.requests[slot as usize].blocks)
    }

    /// Makes a request hold at least enough blocks for `total_tokens` tokens (Orca-style reservation).
    pub fn reserve(&mut self, slot: Slot, total_tokens: u32) -> bool {
        let have = self.requests[slot as usize].num_computed_tokens;
        self.allocate(slot, total_tokens.saturating_sub(have))
    }

    /// Moves a waiting request to the end of the running list and records the admission in `step`. The policy
    /// must already have removed it from its own queue.
    pub fn admit(&mut self, slot: Slot, step: &mut Step) {
        let r = &mut self.requests[slot as usize];
        debug_assert_eq!(r.state, RequestState::Waiting);
        r.state = RequestState::Running;
        self.admit_counter += 1;
        r.admitted_seq = self.admit_counter;
        step.admitted.push(r.id);
        self.running.push(slot);
    }

    /// Allocates what request `slot` needs for `n` more tokens and adds them to the step, in one pass (the hot
    /// path of every policy). Returns false, changing nothing, if the blocks cannot be had.
    #[inline(always)]
    pub fn try_schedule(&mut self, slot: Slot, n: u32, step: &mut Step) -> bool {
        let r = &self.requests[slot as usize];
        if u64::from(r.num_computed_tokens) + u64::from(n)
            > u64::from(r.num_blocks()) * u64::from(self.pool.block_size())
            && !self.allocate_slow(slot, n)
        {
            return false;
        }
        self.schedule(slot, n, step);
        true
    }

    /// Adds `n` tokens of request `slot` to the step. The blocks must already be allocated.
    #[inline(always)]
    pub fn schedule(&mut self, slot: Slot, n: u32, step: &mut Step) {
        let r = &self.requests[slot as usize];
        debug_assert!(n >= 1 && n <= r.num_owed_tokens(), "scheduling {n} tokens, owed {}", r.num_owed_tokens());
        debug_assert!(self.pool.blocks_for(r.num_computed_tokens + n) <= r.num_blocks());
        let is_prefill = r.is_prefill();
        let context = r.num_computed_tokens;
        if is_prefill {
            step.shape.add_prefill(n, context);
        } else {
            step.shape.add_decode(context);
        }
        step.scheduled.push(ScheduledRequest { id: r.id, slot, num_tokens: n, context, is_prefill });
    }

    /// Preempts running request `slot` by recompute: frees its blocks, resets its progress, removes it from the
    /// running list and records it in `step`. The policy must put it back into its own waiting queue.
    pub fn preempt(&mut self, slot: Slot, step: &mut Step) {
        if let Some(pos) = self.running.iter().rposition(|&s| s == slot) {
            self.running.remove(pos);
        }
        let r = &mut self.requests[slot as usize];
        debug_assert_eq!(r.state, RequestState::Running);
        self.pool.free_all(&mut r.blocks);
        r.state = RequestState::Waiting;
        r.num_computed_tokens = 0;
        r.num_preemptions += 1;
        step.preempted.push(r.id);
    }

    /// Whether the step already holds request `slot`.
    pub fn is_scheduled(step: &Step, slot: Slot) -> bool {
        step.scheduled.iter().any(|s| s.slot == slot)
    }

    /// Verifies the scheduler's invariants; returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.pool.check()?;
        let mut owned = 0u64;
        for (slot, r) in self.requests.iter().enumerate() {
            let live = self.index.get(&r.id) == Some(&(slot as Slot));
            if !live {
                continue;
            }
            for &b in &r.blocks {
                if self.pool.owner_of(b) != Some(slot as Slot) {
                    return Err(format!(
                        "request {} lists block {b} that the pool gives to {:?}",
                        r.id,
                        self.pool.owner_of(b)
                    ));
                }
            }
            owned += u64::from(r.num_blocks());
            match r.state {
                RequestState::Waiting if !r.blocks.is_empty() => {
                    return Err(format!("waiting request {} holds {} blocks", r.id, r.blocks.len()));
                }
                RequestState::Running if r.num_blocks() < self.pool.blocks_for(r.num_computed_tokens) => {
                    return Err(format!(
                        "request {} computed {} tokens in {} blocks",
                        r.id,
                        r.num_computed_tokens,
                        r.num_blocks()
                    ));
                }
                RequestState::Finished => return Err(format!("finished request {} still held", r.id)),
                _ => {}
            }
        }
        if owned != u64::from(self.pool.num_used()) {
            return Err(format!("requests hold {owned} blocks but the pool has {} in use", self.pool.num_used()));
        }
        let running_states = self.running.iter().all(|&s| self.requests[s as usize].state == RequestState::Running);
        let n_running =
            self.index.values().filter(|&&s| self.requests[s as usize].state == RequestState::Running).count();
        if !running_states || n_running != self.running.len() {
            return Err("running list and request states disagree".into());
        }
        if self.running.len() > self.config.max_num_seqs as usize {
            return Err(format!("{} running > max_num_seqs {}", self.running.len(), self.config.max_num_seqs));
        }
        Ok(())
    }
}
