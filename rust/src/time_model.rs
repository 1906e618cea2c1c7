//! Batch (iteration) time models: how long one model iteration takes for a given batch shape.

use crate::error::{Result, check_non_negative};

/// The shape of one iteration's batch: everything a time model may look at.
///
/// Filled by the scheduler while it builds a step, without allocating. "Context" means tokens already in the
/// request's KV cache before this iteration.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct BatchShape {
    /// All tokens processed in the iteration (prefill chunk tokens + one per decoding request).
    pub num_tokens: u32,
    /// Tokens that belong to prefill chunks (including recompute after preemption).
    pub num_prefill_tokens: u32,
    /// Number of requests doing a prefill chunk this iteration.
    pub num_prefill_seqs: u32,
    /// Number of requests doing a one-token decode this iteration.
    pub num_decode_seqs: u32,
    /// Σ over decoding requests of their context length.
    pub decode_context_sum: u64,
    /// Σ over prefill chunks of chunk², for quadratic attention cost.
    pub prefill_chunk_sq_sum: f64,
    /// Σ over prefill chunks of chunk × context before the chunk.
    pub prefill_chunk_context_sum: f64,
    /// Σ over prefill chunks of the context before the chunk.
    pub prefill_context_sum: u64,
}

impl BatchShape {
    /// Records a prefill chunk of `chunk` tokens on top of `context` tokens already cached.
    #[inline]
    pub fn add_prefill(&mut self, chunk: u32, context: u32) {
        self.num_tokens += chunk;
        self.num_prefill_tokens += chunk;
        self.num_prefill_seqs += 1;
        let c = f64::from(chunk);
        self.prefill_chunk_sq_sum += c * c;
        self.prefill_chunk_context_sum += c * f64::from(context);
        self.prefill_context_sum += u64::from(context);
    }

    /// Records a one-token decode on top of `context` tokens already cached.
    #[inline]
    pub fn add_decode(&mut self, context: u32) {
        self.num_tokens += 1;
        self.num_decode_seqs += 1;
        self.decode_context_sum += u64::from(context);
    }

    /// True when the batch processes no token.
    pub fn is_empty(&self) -> bool {
        self.num_tokens == 0
    }
}

/// A model of iteration time as a function of the batch shape.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeModel {
    /// `d0 + d1 × num_tokens` seconds: the paper's linear model.
    Linear {
        /// Fixed cost per iteration, seconds.
        d0: f64,
        /// Cost per token in the iteration, seconds.
        d1: f64,
    },
    /// Llama-2-7B on one A100-80GB (TP=1), built from Vidur's profiling data; see `docs/time-model.md`.
    Llama2_7bA100,
}

impl TimeModel {
    /// A validated linear model.
    pub fn linear(d0: f64, d1: f64) -> Result<Self> {
        check_non_negative("d0", d0)?;
        check_non_negative("d1", d1)?;
        if d0 == 0.0 && d1 == 0.0 {
            return Err(crate::Error::config(
                "d0 and d1 cannot both be 0: iterations would take no time",
            ));
        }
        Ok(TimeModel::Linear { d0, d1 })
    }

    /// Seconds one iteration of this shape takes. An empty batch takes 0.
    pub fn iteration_time(&self, shape: &BatchShape) -> f64 {
        if shape.is_empty() {
            return 0.0;
        }
        match *self {
            TimeModel::Linear { d0, d1 } => d0 + d1 * f64::from(shape.num_tokens),
            TimeModel::Llama2_7bA100 => todo!("profiled preset"),
        }
    }

    /// The best linear approximation `(d0, d1)` of this model, used by the fluid model.
    pub fn linearization(&self) -> (f64, f64) {
        match *self {
            TimeModel::Linear { d0, d1 } => (d0, d1),
            TimeModel::Llama2_7bA100 => todo!("profiled preset"),
        }
    }

    /// Short stable name (`linear`, `llama2-7b-a100`).
    pub fn name(&self) -> &'static str {
        match self {
            TimeModel::Linear { .. } => "linear",
            TimeModel::Llama2_7bA100 => "llama2-7b-a100",
        }
    }
}
