//! The [`Scheduler`]: request table, running list and KV block pool behind a step API that any driver calls
//! once per model iteration (`add_request`, `schedule`, `complete_step`, `abort_request`).

use std::collections::HashMap;

use crate::block_pool::BlockPool;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::request::{MAX_REQUEST_TOKENS, NewRequest, Request, RequestState, Slot};
use crate::step::{Step, StepOutcome};

pub use crate::state::{SchedulerConfig, SchedulerState};

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
        let usable = u64::from(self.state.pool.usable_blocks());
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
