//! Requests as the scheduler tracks them.
//!
//! Token convention (vLLM's, and Vidur's): a request holds `num_tokens = prompt_len + num_output_tokens` known
//! tokens, of which `num_computed_tokens` have their KV in the cache. A step that brings `num_computed_tokens`
//! up to `num_tokens` emits one new output token. The prefill iteration therefore emits the first output token,
//! and an output of D tokens takes D iterations. Preemption is by recompute: the KV is dropped
//! (`num_computed_tokens = 0`) and the next prefill recomputes prompt and generated tokens together.

/// Index of a request in the scheduler's request table (reused after the request leaves).
pub type Slot = u32;

/// Most tokens (prompt plus output) one request may ever hold: half of `u32::MAX`, so that token counts and
/// sums of a count and a chunk stay far from `u32` overflow.
pub const MAX_REQUEST_TOKENS: u64 = (u32::MAX / 2) as u64;

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Not admitted, or preempted and back in the queue; holds no KV blocks.
    Waiting,
    /// Admitted; holds KV blocks. A running request may sit out a step (for example paused by Nested WAIT).
    Running,
    /// Done: produced all its output (or was finished by the driver); holds no blocks.
    Finished,
}

/// What a driver tells the scheduler about a new request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewRequest {
    /// Caller's id, unique among the requests the scheduler holds.
    pub id: u64,
    /// Prompt tokens (>= 1).
    pub prompt_len: u32,
    /// The true output length, if the driver knows it (the simulator does). The scheduler finishes the request
    /// after this many output tokens. Policies never see it.
    pub output_len: Option<u32>,
    /// What a policy may assume about the output length: the true length for clairvoyant policies, a
    /// prediction, or nothing.
    pub output_len_hint: Option<u32>,
    /// Optional request-type label (WAIT's types).
    pub type_id: Option<u32>,
    /// Arrival time, seconds.
    pub arrival: f64,
}

/// A request inside the scheduler.
#[derive(Debug, Clone)]
pub struct Request {
    /// Caller's id.
    pub id: u64,
    /// Prompt tokens.
    pub prompt_len: u32,
    /// True output length (hidden from policies; see [`NewRequest::output_len`]).
    pub(crate) output_len: Option<u32>,
    /// Output length a policy may use, if any.
    pub output_len_hint: Option<u32>,
    /// Type label.
    pub type_id: Option<u32>,
    /// Arrival time, seconds.
    pub arrival: f64,
    /// Life-cycle state.
    pub state: RequestState,
    /// Tokens whose KV is in the cache.
    pub num_computed_tokens: u32,
    /// Output tokens emitted so far.
    pub num_output_tokens: u32,
    /// Times this request was preempted (evicted) and sent back to recompute.
    pub num_preemptions: u32,
    /// Order of the latest admission (larger = admitted later).
    pub admitted_seq: u64,
    /// Scratch value a policy may use for its own bookkeeping (for example a segment index).
    pub policy_tag: u32,
    /// KV block ids held, in token order.
    pub(crate) blocks: Vec<u32>,
}

impl Request {
    pub(crate) fn new(r: &NewRequest) -> Self {
        Request {
            id: r.id,
            prompt_len: r.prompt_len,
            output_len: r.output_len,
            output_len_hint: r.output_len_hint,
            type_id: r.type_id,
            arrival: r.arrival,
            state: RequestState::Waiting,
            num_computed_tokens: 0,
            num_output_tokens: 0,
            num_preemptions: 0,
            admitted_seq: 0,
            policy_tag: 0,
            blocks: Vec::new(),
        }
    }

    /// Known tokens: prompt plus emitted output.
    #[inline]
    pub fn num_tokens(&self) -> u32 {
        self.prompt_len + self.num_output_tokens
    }

    /// Tokens that must still be computed before the next output token.
    #[inline]
    pub fn num_owed_tokens(&self) -> u32 {
        self.num_tokens() - self.num_computed_tokens
    }

    /// True while the next step for this request is a (re)prefill rather than a one-token decode.
    #[inline]
    pub fn is_prefill(&self) -> bool {
        self.num_output_tokens == 0 || self.num_owed_tokens() > 1
    }

    /// KV blocks held.
    #[inline]
    pub fn num_blocks(&self) -> u32 {
        self.blocks.len() as u32
    }

    /// Block ids held, in token order.
    pub fn blocks(&self) -> &[u32] {
        &self.blocks
    }

    /// Output tokens still to come, if the policy was told the output length.
    #[inline]
    pub fn remaining_output_hint(&self) -> Option<u32> {
        self.output_len_hint.map(|d| d.saturating_sub(self.num_output_tokens))
    }

    /// Whether the true output length has been reached.
    #[inline]
    pub(crate) fn reached_output_len(&self) -> bool {
        self.output_len.is_some_and(|d| self.num_output_tokens >= d)
    }
}
