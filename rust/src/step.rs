//! One iteration's schedule, as handed to the driver, and what came of it.

use crate::request::Slot;
use crate::time_model::BatchShape;

/// One request's share of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledRequest {
    /// Caller's request id.
    pub id: u64,
    /// Scheduler slot (valid until the next `complete_step`).
    pub slot: Slot,
    /// Tokens computed for this request in the step (a prefill chunk, or 1 for a decode).
    pub num_tokens: u32,
    /// Tokens already in the request's KV cache before the step.
    pub context: u32,
    /// Whether this is a (re)prefill chunk rather than a decode.
    pub is_prefill: bool,
}

/// The batch of one model iteration.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// Requests computed this step, running ones first then new admissions, each with its token count.
    pub scheduled: Vec<ScheduledRequest>,
    /// Ids of requests preempted (KV freed, sent back to recompute) while building this step.
    pub preempted: Vec<u64>,
    /// Ids of requests admitted from the waiting queue in this step.
    pub admitted: Vec<u64>,
    /// Aggregate shape of the batch, for time models.
    pub shape: BatchShape,
    /// The time the step was scheduled at.
    pub now: f64,
}

impl Step {
    /// Empties the step for reuse without freeing its buffers.
    pub fn clear(&mut self) {
        self.scheduled.clear();
        self.preempted.clear();
        self.admitted.clear();
        self.shape = BatchShape::default();
    }

    /// True when no token is computed in this step.
    pub fn is_empty(&self) -> bool {
        self.scheduled.is_empty()
    }

    /// Total tokens in the step.
    pub fn num_batched_tokens(&self) -> u32 {
        self.shape.num_tokens
    }
}

/// What `complete_step` did.
#[derive(Debug, Clone, Default)]
pub struct StepOutcome {
    /// `(id, num_output_tokens after the step)` for every request that emitted a token.
    pub emitted: Vec<(u64, u32)>,
    /// Ids of requests that finished in this step (blocks already freed).
    pub finished: Vec<u64>,
}

impl StepOutcome {
    /// Empties the outcome for reuse.
    pub fn clear(&mut self) {
        self.emitted.clear();
        self.finished.clear();
    }
}
