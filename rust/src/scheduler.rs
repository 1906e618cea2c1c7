//! The [`Scheduler`]: request table, running list and KV block pool behind a step API that any driver calls
//! once per model iteration (`add_request`, `schedule`, `complete_step`, `abort_request`).

use std::collections::HashMap;

use crate::block_pool::BlockPool;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::request::{MAX_REQUEST_TOKENS, NewRequest, Request, RequestState, Slot};
use crate::step::{ScheduledRequest, Step, StepOutcome};

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
        BlockPool::new(self.num_blocks, self.block_size, self.watermark)?;
        if self.max_num_seqs == 0 {
            return Err(Error::config("max_num_seqs must be >= 1"));
        }
        if self.max_num_batched_tokens == 0 {
            return Err(Error::config("max_num_batched_tokens must be >= 1"));
        }
        Ok(())
    }

    /// KV capacity in tokens.
    pub fn kv_capacity_tokens(&self) -> u64 {
        u64::from(self.num_blocks) * u64::from(self.block_size)
    }
}

/// The state a policy works on: requests, the running list, the block pool, and the building blocks of a step.
#[derive(Debug)]
pub struct SchedulerState {
    config: SchedulerConfig,
    pool: BlockPool,
    requests: Vec<Request>,
    free_slots: Vec<Slot>,
    index: HashMap<u64, Slot>,
    running: Vec<Slot>,
    admit_counter: u64,
    now: f64,
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

/// A policy plus the KV block bookkeeping, driven one model iteration at a time.
///
/// Call order: any number of [`Scheduler::add_request`] / [`Scheduler::abort_request`], then
/// [`Scheduler::schedule`] followed by exactly one [`Scheduler::complete_step`], and again.
#[derive(Debug)]
pub struct Scheduler {
    state: SchedulerState,
    policy: Box<dyn Policy>,
    step: Step,
    outcome: StepOutcome,
    finished_slots: Vec<Slot>,
    step_pending: bool,
}

impl Scheduler {
    /// A scheduler running `policy` under `config`.
    pub fn new(config: SchedulerConfig, policy: Box<dyn Policy>) -> Result<Self> {
        config.validate()?;
        let pool = BlockPool::new(config.num_blocks, config.block_size, config.watermark)?;
        let state = SchedulerState {
            config,
            pool,
            requests: Vec::new(),
            free_slots: Vec::new(),
            index: HashMap::new(),
            running: Vec::new(),
            admit_counter: 0,
            now: 0.0,
        };
        Ok(Scheduler {
            state,
            policy,
            step: Step::default(),
            outcome: StepOutcome::default(),
            finished_slots: Vec::new(),
            step_pending: false,
        })
    }

    /// The policy's name.
    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    /// Whether the policy reads output lengths.
    pub fn policy_needs_output_lengths(&self) -> bool {
        self.policy.needs_output_lengths()
    }

    /// The state policies work on (read-only).
    pub fn state(&self) -> &SchedulerState {
        &self.state
    }

    /// Adds a waiting request. Fails on a duplicate id, a zero prompt, a zero output length, or a request that
    /// could never fit in the KV cache (its prompt plus known output, above the watermark).
    pub fn add_request(&mut self, new: NewRequest) -> Result<()> {
        let invalid = |reason: String| Error::InvalidRequest { id: new.id, reason };
        if self.state.index.contains_key(&new.id) {
            return Err(Error::DuplicateRequest(new.id));
        }
        if new.prompt_len == 0 {
            return Err(invalid("prompt_len must be >= 1".into()));
        }
        if new.output_len == Some(0) || new.output_len_hint == Some(0) {
            return Err(invalid("output length must be >= 1".into()));
        }
        if !new.arrival.is_finite() {
            return Err(invalid(format!("arrival time must be finite, got {}", new.arrival)));
        }
        let max_tokens = u64::from(new.prompt_len) + u64::from(new.output_len.unwrap_or(1));
        let usable = u64::from(self.state.pool.num_blocks() - self.state.pool.watermark_blocks());
        let usable_tokens = usable * u64::from(self.state.pool.block_size());
        if max_tokens > MAX_REQUEST_TOKENS {
            return Err(invalid(format!(
                "needs up to {max_tokens} tokens of KV cache; a request may hold at most {MAX_REQUEST_TOKENS} tokens"
            )));
        }
        if max_tokens > usable_tokens {
            return Err(invalid(format!(
                "needs up to {max_tokens} tokens of KV cache but only {usable_tokens} are usable \
                 ({} blocks of {} tokens above the watermark)",
                usable,
                self.state.pool.block_size()
            )));
        }
        let request = Request::new(&new);
        let slot = match self.state.free_slots.pop() {
            Some(slot) => {
                // Keep the old block table's capacity: no allocation when slots are recycled.
                let mut blocks = std::mem::take(&mut self.state.requests[slot as usize].blocks);
                blocks.clear();
                self.state.requests[slot as usize] = Request { blocks, ..request };
                slot
            }
            None => {
                self.state.requests.push(request);
                (self.state.requests.len() - 1) as Slot
            }
        };
        self.state.index.insert(new.id, slot);
        self.policy.enqueue(&self.state, slot);
        Ok(())
    }

    /// Builds the next iteration's batch at time `now`.
    pub fn schedule(&mut self, now: f64) -> Result<&Step> {
        if self.step_pending {
            return Err(Error::InvalidState("schedule called twice without complete_step".into()));
        }
        if !now.is_finite() {
            return Err(Error::config(format!("now must be finite, got {now}")));
        }
        self.state.now = now;
        self.step.clear();
        self.step.now = now;
        self.policy.schedule(&mut self.state, &mut self.step);
        self.step_pending = true;
        Ok(&self.step)
    }

    /// The latest step built by [`Scheduler::schedule`].
    pub fn last_step(&self) -> &Step {
        &self.step
    }

    /// Applies the pending step: advances every scheduled request, emits tokens, finishes requests that reached
    /// their output length or whose ids are in `finished` (the driver saw them stop), and frees their blocks.
    pub fn complete_step(&mut self, finished: &[u64]) -> Result<&StepOutcome> {
        if !self.step_pending {
            return Err(Error::InvalidState("complete_step called without a pending schedule".into()));
        }
        for &id in finished {
            if !self.state.index.contains_key(&id) {
                return Err(Error::UnknownRequest(id));
            }
        }
        self.step_pending = false;
        self.outcome.clear();
        self.finished_slots.clear();
        for s in &self.step.scheduled {
            let r = &mut self.state.requests[s.slot as usize];
            r.num_computed_tokens += s.num_tokens;
            if r.num_computed_tokens == r.num_tokens() {
                r.num_output_tokens += 1;
                self.outcome.emitted.push((r.id, r.num_output_tokens));
                if r.reached_output_len() {
                    r.state = RequestState::Finished;
                    self.finished_slots.push(s.slot);
                }
            }
        }
        for &id in finished {
            let slot = self.state.index[&id];
            match self.state.requests[slot as usize].state {
                RequestState::Finished => continue, // also reached its length this step
                RequestState::Waiting => {
                    self.policy.remove_waiting(&self.state, slot);
                }
                RequestState::Running => {}
            }
            self.state.requests[slot as usize].state = RequestState::Finished;
            self.finished_slots.push(slot);
        }
        if !self.finished_slots.is_empty() {
            self.release_finished();
        }
        self.policy.on_step_complete(&self.state, &self.step);
        Ok(&self.outcome)
    }

    /// Frees the blocks and slots of the requests in `finished_slots`.
    fn release_finished(&mut self) {
        let st = &mut self.state;
        for &slot in &self.finished_slots {
            self.policy.on_release(st, slot);
        }
        let requests = &st.requests;
        st.running.retain(|&s| requests[s as usize].state != RequestState::Finished);
        for &slot in &self.finished_slots {
            let r = &mut st.requests[slot as usize];
            st.pool.free_all(&mut r.blocks);
            st.index.remove(&r.id);
            st.free_slots.push(slot);
            self.outcome.finished.push(r.id);
        }
    }

    /// Removes request `id` wherever it is, freeing its blocks. Not allowed between `schedule` and
    /// `complete_step`.
    pub fn abort_request(&mut self, id: u64) -> Result<()> {
        if self.step_pending {
            return Err(Error::InvalidState("abort_request between schedule and complete_step".into()));
        }
        let slot = *self.state.index.get(&id).ok_or(Error::UnknownRequest(id))?;
        let st = &mut self.state;
        match st.requests[slot as usize].state {
            RequestState::Waiting => {
                self.policy.remove_waiting(st, slot);
            }
            RequestState::Running => {
                self.policy.on_release(st, slot);
                if let Some(pos) = st.running.iter().position(|&s| s == slot) {
                    st.running.remove(pos);
                }
            }
            RequestState::Finished => {}
        }
        let r = &mut st.requests[slot as usize];
        st.pool.free_all(&mut r.blocks);
        r.state = RequestState::Finished;
        st.index.remove(&id);
        st.free_slots.push(slot);
        Ok(())
    }

    /// Requests waiting for admission.
    pub fn num_waiting(&self) -> usize {
        self.policy.num_waiting()
    }

    /// Requests admitted and not finished.
    pub fn num_running(&self) -> usize {
        self.state.running.len()
    }

    /// Requests held (waiting + running).
    pub fn num_unfinished(&self) -> usize {
        self.state.index.len()
    }

    /// Free KV blocks.
    pub fn num_free_blocks(&self) -> u32 {
        self.state.pool.num_free()
    }

    /// KV blocks in use.
    pub fn num_used_blocks(&self) -> u32 {
        self.state.pool.num_used()
    }

    /// A copy of request `id` as the scheduler sees it.
    pub fn request(&self, id: u64) -> Result<&Request> {
        let slot = *self.state.index.get(&id).ok_or(Error::UnknownRequest(id))?;
        Ok(&self.state.requests[slot as usize])
    }

    /// The policy's next wake-up time (see [`Policy::next_wakeup`]).
    pub fn next_wakeup(&self) -> Option<f64> {
        self.policy.next_wakeup(&self.state)
    }

    /// Verifies every invariant (block ownership, counts, states, limits) and that the policy's waiting count
    /// matches the requests in the waiting state.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.state.check_invariants()?;
        let waiting = self.state.index.len() - self.state.running.len();
        if waiting != self.policy.num_waiting() {
            return Err(format!("{waiting} requests are waiting but the policy queues {}", self.policy.num_waiting()));
        }
        Ok(())
    }
}
