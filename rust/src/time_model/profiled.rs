//! A profiled (Vidur-style) iteration-time model: per-layer linear operators from a table, closed-form decode
//! and prefill attention, times the layer count, plus a fixed overhead.
//!
//! Built from a preset file (see [`super::preset`] and `docs/time-model.md`). The linear-operator table is
//! densified once, at construction, onto every multiple of the token step it covers, so that a lookup is one
//! index; the fluid model's linearizations are computed once too.

use super::BatchShape;
use super::linearize::{fit_attention_model, fit_tokens_only};
use crate::error::{Error, Result};

/// Most entries of the densified linear-operator table (8 MB of `f64`): a table that would need more (tokens far
/// apart with a small token step) is refused.
pub const MAX_DENSE_ENTRIES: u64 = 1 << 20;

/// The iteration part of a preset, as numbers: everything [`ProfiledModel::new`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfiledSpec {
    /// Short name of the preset (`llama2-7b-a100`).
    pub name: String,
    /// Transformer layers: every per-layer time is multiplied by this.
    pub num_layers: u32,
    /// Fixed cost of a non-empty iteration, ms (not per layer).
    pub overhead_ms: f64,
    /// The batch's token count is rounded up to a multiple of this before the linear-operator lookup.
    pub token_step: u32,
    /// `(num_tokens, ms)` per layer: tokens strictly increasing, ms non-decreasing.
    pub linear_ops_ms: Vec<(u32, f64)>,
    /// Per-layer ms per token past the table's last point (> 0).
    pub linear_ops_extrapolation_ms_per_token: f64,
    /// Decode attention per layer, ms: `[0] + [1]·num_decode_seqs + [2]·decode_context_sum`, when any decodes.
    pub decode_attention_ms: [f64; 3],
    /// Prefill attention per layer, ms: `[0]·Σc + [1]·Σc² + [2]·Σc·kv + [3]·Σkv` over the prefill chunks.
    pub prefill_attention_ms: [f64; 4],
    /// Tokens per KV-cache block of the preset's deployment.
    pub block_size: u32,
    /// KV-cache blocks of the preset's deployment.
    pub num_blocks: u32,
}

/// A validated profiled model, ready for per-iteration lookups (shared behind an `Arc` by [`super::TimeModel`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfiledModel {
    spec: ProfiledSpec,
    /// Per-layer linear-operator ms at `token_step × (i + 1)`, for every multiple up to the table's last point
    /// (rounded up to a multiple of the step).
    dense_ms: Vec<f64>,
    /// `(d0, d1)` of [`super::TimeModel::linearization`].
    linearization: (f64, f64),
    /// `(d0, d1, d2)` of [`super::TimeModel::attention_linearization`].
    attention_linearization: (f64, f64, f64),
}

/// `Err(InvalidConfig)` naming the key, with the `reason`.
fn bad(key: &str, reason: impl std::fmt::Display) -> Error {
    Error::config(format!("key `{key}`: {reason}"))
}

fn check_coefficients(key: &str, values: &[f64]) -> Result<()> {
    for (i, &v) in values.iter().enumerate() {
        if !(v.is_finite() && v >= 0.0) {
            return Err(bad(&format!("{key}[{i}]"), format!("must be a finite number >= 0, got {v}")));
        }
    }
    Ok(())
}

impl ProfiledModel {
    /// Validates `spec` and builds the model; errors name the preset key at fault (`iteration.linear_ops_ms[3]`).
    pub fn new(spec: ProfiledSpec) -> Result<Self> {
        if spec.name.is_empty() {
            return Err(bad("name", "must not be empty"));
        }
        if spec.num_layers == 0 {
            return Err(bad("iteration.num_layers", "must be an integer >= 1, got 0"));
        }
        if spec.token_step == 0 {
            return Err(bad("iteration.token_step", "must be an integer >= 1, got 0"));
        }
        if spec.block_size == 0 {
            return Err(bad("kv_cache.block_size", "must be an integer >= 1, got 0"));
        }
        if spec.num_blocks == 0 {
            return Err(bad("kv_cache.num_blocks", "must be an integer >= 1, got 0"));
        }
        if spec.num_blocks > crate::block_pool::MAX_NUM_BLOCKS {
            let max = crate::block_pool::MAX_NUM_BLOCKS;
            return Err(bad("kv_cache.num_blocks", format!("must be at most {max}, got {}", spec.num_blocks)));
        }
        if !(spec.overhead_ms.is_finite() && spec.overhead_ms >= 0.0) {
            return Err(bad(
                "iteration.overhead_ms",
                format!("must be a finite number >= 0, got {}", spec.overhead_ms),
            ));
        }
        let slope = spec.linear_ops_extrapolation_ms_per_token;
        if !(slope.is_finite() && slope > 0.0) {
            let reason = format!("must be a finite number > 0 (a bigger batch cannot be faster), got {slope}");
            return Err(bad("iteration.linear_ops_extrapolation_ms_per_token", reason));
        }
        check_coefficients("iteration.decode_attention_ms", &spec.decode_attention_ms)?;
        check_coefficients("iteration.prefill_attention_ms", &spec.prefill_attention_ms)?;
        check_table(&spec.linear_ops_ms)?;
        if spec.overhead_ms == 0.0 && spec.linear_ops_ms[0].1 == 0.0 {
            let reason = "the first entry's ms and iteration.overhead_ms cannot both be 0: a one-token iteration \
                          would take no time";
            return Err(bad("iteration.linear_ops_ms[0]", reason));
        }
        let (last_tokens, _) = spec.linear_ops_ms[spec.linear_ops_ms.len() - 1];
        let entries = u64::from(last_tokens).div_ceil(u64::from(spec.token_step));
        if entries > MAX_DENSE_ENTRIES {
            let reason = format!(
                "covers {last_tokens} tokens in steps of iteration.token_step = {}: more than {MAX_DENSE_ENTRIES} \
                 lookup entries; use a larger token_step",
                spec.token_step
            );
            return Err(bad("iteration.linear_ops_ms", reason));
        }
        let dense_ms = densify(&spec.linear_ops_ms, spec.token_step, entries as usize, slope);
        let mut model =
            ProfiledModel { spec, dense_ms, linearization: (0.0, 0.0), attention_linearization: (0.0, 0.0, 0.0) };
        let seconds = |s: &BatchShape| model.seconds(s);
        let linearization = fit_tokens_only(&seconds, model.kv_capacity_tokens());
        let attention_linearization = fit_attention_model(&seconds);
        model.linearization = linearization;
        model.attention_linearization = attention_linearization;
        Ok(model)
    }

    /// The numbers the model was built from.
    pub fn spec(&self) -> &ProfiledSpec {
        &self.spec
    }

    /// Short name of the preset.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// KV capacity of the preset's deployment, tokens (`num_blocks × block_size`).
    pub fn kv_capacity_tokens(&self) -> u64 {
        u64::from(self.spec.num_blocks) * u64::from(self.spec.block_size)
    }

    /// `(d0, d1)`: the tokens-only linearization (see [`super::TimeModel::linearization`]).
    pub fn linearization(&self) -> (f64, f64) {
        self.linearization
    }

    /// `(d0, d1, d2)`: the linearization with the decode-attention term (see
    /// [`super::TimeModel::attention_linearization`]).
    pub fn attention_linearization(&self) -> (f64, f64, f64) {
        self.attention_linearization
    }

    /// Per-layer linear-operator time (ms) of a batch of `num_tokens` tokens.
    #[inline]
    pub fn linear_ops_ms(&self, num_tokens: u32) -> f64 {
        let step = u64::from(self.spec.token_step);
        let steps = u64::from(num_tokens.max(1)).div_ceil(step);
        match usize::try_from(steps) {
            Ok(s) if s <= self.dense_ms.len() => self.dense_ms[s - 1],
            _ => {
                let (last_tokens, last_ms) = self.spec.linear_ops_ms[self.spec.linear_ops_ms.len() - 1];
                let beyond = steps * step - u64::from(last_tokens);
                last_ms + beyond as f64 * self.spec.linear_ops_extrapolation_ms_per_token
            }
        }
    }

    /// Per-layer attention time (ms) of the batch's decodes and prefill chunks.
    #[inline]
    fn attention_ms(&self, shape: &BatchShape) -> f64 {
        let d = &self.spec.decode_attention_ms;
        let p = &self.spec.prefill_attention_ms;
        let decode = if shape.num_decode_seqs > 0 {
            d[0] + d[1] * f64::from(shape.num_decode_seqs) + d[2] * shape.decode_context_sum as f64
        } else {
            0.0
        };
        let prefill = p[0] * f64::from(shape.num_prefill_tokens)
            + p[1] * shape.prefill_chunk_sq_sum
            + p[2] * shape.prefill_chunk_context_sum
            + p[3] * shape.prefill_context_sum as f64;
        decode + prefill
    }

    /// Seconds of one non-empty iteration.
    #[inline]
    pub fn seconds(&self, shape: &BatchShape) -> f64 {
        let per_layer = self.linear_ops_ms(shape.num_tokens) + self.attention_ms(shape);
        let ms = f64::from(self.spec.num_layers) * per_layer;
        // Added only when present, so that a preset without overhead computes exactly `layers × per-layer`.
        if self.spec.overhead_ms > 0.0 { (self.spec.overhead_ms + ms) / 1000.0 } else { ms / 1000.0 }
    }
}

/// Checks the `(tokens, ms)` table: non-empty, tokens >= 1 and strictly increasing, ms finite, >= 0 and
/// non-decreasing.
fn check_table(table: &[(u32, f64)]) -> Result<()> {
    const KEY: &str = "iteration.linear_ops_ms";
    if table.is_empty() {
        return Err(bad(KEY, "must have at least one [tokens, ms] entry"));
    }
    for (i, &(tokens, ms)) in table.iter().enumerate() {
        let key = format!("{KEY}[{i}]");
        if tokens == 0 {
            return Err(bad(&key, "tokens must be >= 1, got 0"));
        }
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(bad(&key, format!("ms must be a finite number >= 0, got {ms}")));
        }
        if i > 0 {
            let (prev_tokens, prev_ms) = table[i - 1];
            if tokens <= prev_tokens {
                return Err(bad(&key, format!("tokens must be strictly increasing, got {tokens} after {prev_tokens}")));
            }
            if ms < prev_ms {
                let reason = format!(
                    "ms must be non-decreasing (a bigger batch cannot be faster), got {ms} at {tokens} tokens after \
                     {prev_ms} at {prev_tokens}"
                );
                return Err(bad(&key, reason));
            }
        }
    }
    Ok(())
}

/// The table at `step × (i + 1)` for `i < entries`: clamped to the first point below it, piecewise-linear between
/// points (a point's own count gets its value exactly), extrapolated with `slope` past the last point.
fn densify(table: &[(u32, f64)], step: u32, entries: usize, slope: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(entries);
    let mut seg = 0; // table[seg].0 <= t, and t < table[seg + 1].0 unless seg is the last point
    for i in 0..entries {
        let t = u64::from(step) * (i as u64 + 1);
        let (first_tokens, first_ms) = table[0];
        if t <= u64::from(first_tokens) {
            out.push(first_ms);
            continue;
        }
        while seg + 1 < table.len() && u64::from(table[seg + 1].0) <= t {
            seg += 1;
        }
        let (t0, ms0) = table[seg];
        out.push(if t == u64::from(t0) {
            ms0
        } else if seg + 1 < table.len() {
            let (t1, ms1) = table[seg + 1];
            ms0 + (ms1 - ms0) * (t - u64::from(t0)) as f64 / f64::from(t1 - t0)
        } else {
            ms0 + (t - u64::from(t0)) as f64 * slope
        });
    }
    out
}
