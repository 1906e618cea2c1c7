//! Batch (iteration) time models: how long one model iteration takes for a given batch shape.
//!
//! Two kinds: the paper's [`TimeModel::Linear`] `d0 + d1 × num_tokens`, and [`TimeModel::Profiled`], a
//! Vidur-style model read from a preset file (JSON, see [`preset`]): per layer, linear operators looked up in a
//! profiled table at the batch's token count, plus closed-form decode and prefill attention, times the number of
//! layers. fluidsched ships presets for Llama-2-7B, Llama-3-8B, Phi-2, InternLM-20B and CodeLlama-34B on A100,
//! H100 and A40 ([`preset::SHIPPED`]); `--time-model PATH.json` reads any other. Provenance, fit errors and caveats: `docs/time-model.md`.

mod linearize;
pub mod preset;
mod profiled;

use std::sync::Arc;

pub use profiled::{ProfiledModel, ProfiledSpec};

use crate::error::{Error, Result, check_non_negative};

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
    /// A profiled model from a preset (shipped or read from a file); shared, so cloning is cheap.
    Profiled(Arc<ProfiledModel>),
}

impl TimeModel {
    /// The preset used when none is named (Llama-2-7B on one A100-80GB).
    pub const DEFAULT_PRESET: &'static str = "llama2-7b-a100";

    /// The names [`TimeModel::from_name`] accepts besides a file path: `linear` and the shipped presets.
    pub fn names() -> Vec<&'static str> {
        std::iter::once("linear").chain(preset::SHIPPED.iter().map(|(n, _)| *n)).collect()
    }

    /// The model called `name`: `linear` (needs both `d0` and `d1`, seconds and seconds per token), a shipped
    /// preset's name, or the path of a preset file (ends in `.json` or contains a path separator). A preset takes
    /// neither `d0` nor `d1`.
    pub fn from_name(name: &str, d0: Option<f64>, d1: Option<f64>) -> Result<Self> {
        if name == "linear" {
            return match (d0, d1) {
                (Some(d0), Some(d1)) => Self::linear(d0, d1),
                (None, None) => Err(Error::config("time model `linear` needs d0 and d1 (seconds, seconds per token)")),
                (None, Some(_)) => Err(Error::config("time model `linear` needs d0 (seconds) as well as d1")),
                (Some(_), None) => Err(Error::config("time model `linear` needs d1 (seconds per token) as well as d0")),
            };
        }
        let model = Self::preset(name)?;
        if d0.is_some() || d1.is_some() {
            return Err(Error::config(format!(
                "time model `{name}` is a profiled preset and takes no d0/d1; use `linear` for custom constants"
            )));
        }
        Ok(model)
    }

    /// The profiled model of a shipped preset (by name) or of a preset file (by path; see [`Self::from_name`]).
    pub fn preset(name_or_path: &str) -> Result<Self> {
        if name_or_path == "linear" {
            return Err(Error::config("`linear` is not a preset: it is `d0 + d1 × num_tokens` with your d0 and d1"));
        }
        if let Some(model) = preset::shipped(name_or_path) {
            return Ok(TimeModel::Profiled(Arc::new(model?)));
        }
        if name_or_path.ends_with(".json") || name_or_path.contains(['/', std::path::MAIN_SEPARATOR]) {
            return Ok(TimeModel::Profiled(Arc::new(preset::read_file(name_or_path)?)));
        }
        Err(Error::config(format!(
            "unknown time model `{name_or_path}`; valid names: {}, or the path of a preset .json file",
            Self::names().join(", ")
        )))
    }

    /// The default preset's model ([`Self::DEFAULT_PRESET`]).
    pub fn default_preset() -> Self {
        // The shipped presets are checked by the tests, so this cannot fail.
        Self::preset(Self::DEFAULT_PRESET).expect("the default preset is valid")
    }

    /// A validated linear model.
    pub fn linear(d0: f64, d1: f64) -> Result<Self> {
        check_non_negative("d0", d0)?;
        check_non_negative("d1", d1)?;
        if d0 == 0.0 && d1 == 0.0 {
            return Err(Error::config("d0 and d1 cannot both be 0: iterations would take no time"));
        }
        Ok(TimeModel::Linear { d0, d1 })
    }

    /// Seconds one iteration of this shape takes. An empty batch takes 0.
    #[inline]
    pub fn iteration_time(&self, shape: &BatchShape) -> f64 {
        if shape.is_empty() {
            return 0.0;
        }
        match self {
            TimeModel::Linear { d0, d1 } => d0 + d1 * f64::from(shape.num_tokens),
            TimeModel::Profiled(m) => m.seconds(shape),
        }
    }

    /// The best linear approximation `(d0, d1)` of this model, used by the fluid model: exact for `linear`; for a
    /// preset, the relative-error least-squares line over steady-state decode and mixed batches that fit the
    /// preset's KV cache, rounded to 4 significant digits (see `docs/time-model.md`).
    pub fn linearization(&self) -> (f64, f64) {
        match self {
            TimeModel::Linear { d0, d1 } => (*d0, *d1),
            TimeModel::Profiled(m) => m.linearization(),
        }
    }

    /// The fluid model's iteration time with the attention term, `(d0, d1, d2)` in
    /// `T ≈ d0 + d1 · tokens + d2 · (KV tokens the decodes read)`: exact for `linear` (`d2 = 0`); for a profiled
    /// preset, the relative-error least-squares fit of the preset over decode batches of 8–256 requests with mean
    /// contexts of 64–2,048 tokens, alone or sharing the iteration with a prefill chunk of 128 or 512 tokens (the
    /// shapes continuous batching runs in steady state). Unlike [`Self::linearization`], the cost of long
    /// contexts is not folded into `d1`, so the fluid model sees that long requests slow every iteration.
    pub fn attention_linearization(&self) -> (f64, f64, f64) {
        match self {
            TimeModel::Linear { d0, d1 } => (*d0, *d1, 0.0),
            TimeModel::Profiled(m) => m.attention_linearization(),
        }
    }

    /// KV capacity (tokens) of the preset's deployment; `None` for `linear`.
    pub fn kv_capacity_tokens(&self) -> Option<u64> {
        match self {
            TimeModel::Linear { .. } => None,
            TimeModel::Profiled(m) => Some(m.kv_capacity_tokens()),
        }
    }

    /// Short stable name (`linear`, or the preset's `name`).
    pub fn name(&self) -> &str {
        match self {
            TimeModel::Linear { .. } => "linear",
            TimeModel::Profiled(m) => m.name(),
        }
    }
}

#[cfg(test)]
mod tests;
