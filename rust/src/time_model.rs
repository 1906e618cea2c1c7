//! Batch (iteration) time models: how long one model iteration takes for a given batch shape.
//!
//! Two models: the paper's [`TimeModel::Linear`] `d0 + d1 × num_tokens`, and [`TimeModel::Llama2_7bA100`], a
//! Vidur-style model of Llama-2-7B on one A100 built from Vidur's profiling data. The preset is, per layer,
//!
//! * linear operators (QKV/output projections, RoPE, MLP up/activation/down, the two RMSNorms, residual add):
//!   the sum of the TP=1 operator medians of Vidur's `mlp.csv`, looked up at the batch's token count rounded up
//!   to a multiple of 8, interpolated piecewise-linearly between profiled counts and extrapolated linearly past
//!   4096 tokens;
//! * decode attention `0.00598 + 0.001097·b + 8.772e-6·Σkv` ms over the `b` decoding requests (when `b > 0`);
//! * prefill attention `Σ 1.325e-4·c + 1.246e-7·c² + 1.080e-7·c·kv + 9.56e-6·kv` ms over the prefill chunks
//!   (`c` tokens on top of `kv` cached ones);
//!
//! times 32 layers. Not modelled: the embedding, LM head and sampler, CPU overhead (scheduling, input
//! preparation, detokenisation) and Vidur's rounding of the mean decode context to a multiple of 64. Provenance,
//! fit errors and caveats: `docs/time-model.md`; the numbers come from `tools/fit_time_model.py`.

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
    /// Llama-2-7B on one A100-80GB (TP=1), built from Vidur's profiling data; see `docs/time-model.md`.
    Llama2_7bA100,
}

impl TimeModel {
    /// The names [`TimeModel::from_name`] accepts.
    pub const NAMES: [&'static str; 2] = ["linear", "llama2-7b-a100"];

    /// The model called `name` (one of [`TimeModel::NAMES`]).
    ///
    /// `linear` needs both `d0` and `d1` (seconds, seconds per token); `llama2-7b-a100` takes neither.
    pub fn from_name(name: &str, d0: Option<f64>, d1: Option<f64>) -> Result<Self> {
        match name {
            "linear" => match (d0, d1) {
                (Some(d0), Some(d1)) => Self::linear(d0, d1),
                (None, None) => Err(Error::config("time model `linear` needs d0 and d1 (seconds, seconds per token)")),
                (None, Some(_)) => Err(Error::config("time model `linear` needs d0 (seconds) as well as d1")),
                (Some(_), None) => Err(Error::config("time model `linear` needs d1 (seconds per token) as well as d0")),
            },
            "llama2-7b-a100" => {
                if d0.is_some() || d1.is_some() {
                    Err(Error::config(
                        "time model `llama2-7b-a100` is a fixed profiled preset and takes no d0/d1; \
                         use `linear` for custom constants",
                    ))
                } else {
                    Ok(TimeModel::Llama2_7bA100)
                }
            }
            other => {
                Err(Error::config(format!("unknown time model `{other}`; valid names: {}", Self::NAMES.join(", "))))
            }
        }
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
    pub fn iteration_time(&self, shape: &BatchShape) -> f64 {
        if shape.is_empty() {
            return 0.0;
        }
        match *self {
            TimeModel::Linear { d0, d1 } => d0 + d1 * f64::from(shape.num_tokens),
            TimeModel::Llama2_7bA100 => llama2_7b_a100_seconds(shape),
        }
    }

    /// The best linear approximation `(d0, d1)` of this model, used by the fluid model.
    pub fn linearization(&self) -> (f64, f64) {
        match *self {
            TimeModel::Linear { d0, d1 } => (d0, d1),
            TimeModel::Llama2_7bA100 => (LLAMA2_7B_A100_D0, LLAMA2_7B_A100_D1),
        }
    }

    /// The fluid model's iteration time with the attention term, `(d0, d1, d2)` in
    /// `T ≈ d0 + d1 · tokens + d2 · (KV tokens the decodes read)`: exact for `linear` (`d2 = 0`); for a profiled
    /// preset, the relative-error least-squares fit of the preset over decode batches of 8–256 requests with mean
    /// contexts of 64–2,048 tokens, alone or sharing the iteration with a prefill chunk of 128 or 512 tokens (the
    /// shapes continuous batching runs in steady state). Unlike [`Self::linearization`], the cost of long
    /// contexts is not folded into `d1`, so the fluid model sees that long requests slow every iteration.
    pub fn attention_linearization(&self) -> (f64, f64, f64) {
        match *self {
            TimeModel::Linear { d0, d1 } => (d0, d1, 0.0),
            TimeModel::Llama2_7bA100 => fit_attention_model(self),
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

/// Relative-error least squares of `model` on `d0 + d1 · tokens + d2 · kv_read` over steady-state shapes (see
/// [`TimeModel::attention_linearization`]).
fn fit_attention_model(model: &TimeModel) -> (f64, f64, f64) {
    let mut ata = [[0.0f64; 3]; 3];
    let mut atb = [0.0f64; 3];
    for &b in &[8u32, 16, 32, 64, 128, 192, 256] {
        for &ctx in &[64u32, 256, 512, 1024, 2048] {
            for &prefill in &[0u32, 128, 512] {
                let mut shape = BatchShape::default();
                for _ in 0..b {
                    shape.add_decode(ctx);
                }
                if prefill > 0 {
                    shape.add_prefill(prefill, 0);
                }
                let t = model.iteration_time(&shape);
                let x = [1.0, f64::from(shape.num_tokens), shape.decode_context_sum as f64];
                let w = 1.0 / (t * t);
                for i in 0..3 {
                    for j in 0..3 {
                        ata[i][j] += w * x[i] * x[j];
                    }
                    atb[i] += w * x[i] * t;
                }
            }
        }
    }
    let [d0, d1, d2] = solve3(ata, atb);
    (d0, d1.max(0.0), d2.max(0.0))
}

/// Solves a 3×3 linear system by Cramer's rule (the normal equations above are well conditioned).
fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> [f64; 3] {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut m = a;
        for i in 0..3 {
            m[i][k] = b[i];
        }
        *o = det(m) / d;
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// The `llama2-7b-a100` preset.

/// KV-cache blocks of the `llama2-7b-a100` preset: Vidur's memory planner for Llama-2-7B on one A100-80GB
/// (90 % of 80 GB minus fp16 weights, `max_tokens` 4096), i.e. 118,784 KV tokens with [`LLAMA2_7B_A100_BLOCK_SIZE`].
pub const LLAMA2_7B_A100_NUM_BLOCKS: u32 = 7424;
/// Tokens per KV-cache block of the `llama2-7b-a100` preset (Vidur's and vLLM's default, 16).
pub const LLAMA2_7B_A100_BLOCK_SIZE: u32 = 16;

/// Transformer layers of Llama-2-7B.
const NUM_LAYERS: f64 = 32.0;
/// The batch's token count is rounded up to a multiple of this before the linear-operator lookup, as Vidur does.
const TOKEN_STEP: u32 = 8;

// BEGIN GENERATED by tools/fit_time_model.py: do not edit by hand.
/// Fixed cost per iteration (s) of the least-squares linearization of the `llama2-7b-a100` preset: see
/// `docs/time-model.md` (relative-error fit, MAPE 27.0 % on its fit set).
pub const LLAMA2_7B_A100_D0: f64 = 0.01433;
/// Cost per batch token (s) of the least-squares linearization of the `llama2-7b-a100` preset.
pub const LLAMA2_7B_A100_D1: f64 = 7.948e-5;
/// Decode attention per layer (ms) = `[0] + [1]·num_decode_seqs + [2]·decode_context_sum`, when any.
const DECODE_ATTN_MS: [f64; 3] = [0.00598, 0.001097, 8.772e-6];
/// Prefill attention per layer (ms) = `[0]·Σc + [1]·Σc² + [2]·Σc·kv + [3]·Σkv` over the chunks.
const PREFILL_ATTN_MS: [f64; 4] = [0.0001325, 1.246e-7, 1.08e-7, 9.56e-6];
/// Per-layer linear-operator ms per token beyond 4096 tokens (least-squares slope of the table on [2048, 4096]).
const LINEAR_OPS_EXTRAP_MS_PER_TOKEN: f64 = 0.0019417;
/// `(num_tokens, ms)`: per-layer linear-operator time (Σ of TP=1 operator medians, made non-decreasing).
#[rustfmt::skip]
const LINEAR_OPS_MS: [(u32, f64); 256] = [
    (8, 0.283), (16, 0.287), (24, 0.29), (32, 0.298), (40, 0.302667), (48, 0.302667),
    (56, 0.302667), (64, 0.303), (72, 0.355), (80, 0.358), (88, 0.366), (96, 0.368),
    (104, 0.373), (112, 0.38), (120, 0.381), (128, 0.3825), (136, 0.531), (144, 0.531),
    (152, 0.531), (160, 0.531), (168, 0.531), (176, 0.531), (184, 0.531), (192, 0.531),
    (200, 0.558), (208, 0.56), (216, 0.5605), (224, 0.5648), (232, 0.5648), (240, 0.5648),
    (248, 0.5648), (256, 0.5648), (264, 0.7005), (272, 0.7035), (280, 0.705667), (288, 0.705667),
    (296, 0.705667), (304, 0.710167), (312, 0.710167), (320, 0.710167), (328, 0.7105), (336, 0.711),
    (344, 0.721), (352, 0.721), (360, 0.730167), (368, 0.730167), (376, 0.730167), (384, 0.7365),
    (392, 0.938), (400, 0.943), (408, 0.96125), (416, 0.96125), (424, 0.9785), (432, 0.9835),
    (440, 0.9954), (448, 0.9954), (456, 0.9954), (464, 0.9954), (472, 0.9954), (480, 1.00225),
    (488, 1.00225), (496, 1.0085), (504, 1.0215), (512, 1.0425), (520, 1.1545), (528, 1.162),
    (536, 1.162), (544, 1.162), (552, 1.162), (560, 1.162), (568, 1.162), (576, 1.1635),
    (584, 1.221), (592, 1.275), (600, 1.275), (608, 1.275), (616, 1.275), (624, 1.275),
    (632, 1.275), (640, 1.2905), (648, 1.394), (656, 1.443833), (664, 1.443833), (672, 1.443833),
    (680, 1.444), (688, 1.44575), (696, 1.44575), (704, 1.456167), (712, 1.456167), (720, 1.456167),
    (728, 1.465), (736, 1.4758), (744, 1.4758), (752, 1.4758), (760, 1.4758), (768, 1.4758),
    (776, 1.716), (784, 1.733), (792, 1.73575), (800, 1.73575), (808, 1.79825), (816, 1.79825),
    (824, 1.811), (832, 1.811), (840, 1.8385), (848, 1.8434), (856, 1.8434), (864, 1.8434),
    (872, 1.8434), (880, 1.8434), (888, 1.845), (896, 1.8606), (904, 1.8606), (912, 1.8606),
    (920, 1.8606), (928, 1.8606), (936, 1.893), (944, 1.919167), (952, 1.919167), (960, 1.919167),
    (968, 2.1045), (976, 2.121), (984, 2.121), (992, 2.121), (1000, 2.121), (1008, 2.139167),
    (1016, 2.139167), (1024, 2.139167), (1040, 2.215), (1056, 2.215), (1072, 2.249833), (1088, 2.249833),
    (1104, 2.249833), (1120, 2.262), (1136, 2.262), (1152, 2.262), (1168, 2.463188), (1184, 2.463188),
    (1200, 2.463188), (1216, 2.463188), (1232, 2.463188), (1248, 2.463188), (1264, 2.463188), (1280, 2.463188),
    (1296, 2.666), (1312, 2.7405), (1328, 2.7405), (1344, 2.7405), (1360, 2.7405), (1376, 2.766833),
    (1392, 2.766833), (1408, 2.766833), (1424, 2.9615), (1440, 3.016), (1456, 3.016), (1472, 3.016),
    (1488, 3.016), (1504, 3.0405), (1520, 3.0405), (1536, 3.093), (1552, 3.199), (1568, 3.21),
    (1584, 3.2475), (1600, 3.275375), (1616, 3.275375), (1632, 3.275375), (1648, 3.275375), (1664, 3.3085),
    (1680, 3.482833), (1696, 3.482833), (1712, 3.482833), (1728, 3.54225), (1744, 3.54225), (1760, 3.63575),
    (1776, 3.63575), (1792, 3.658), (1808, 3.764167), (1824, 3.764167), (1840, 3.764167), (1856, 3.7885),
    (1872, 3.833), (1888, 3.8785), (1904, 3.8785), (1920, 3.9405), (1936, 3.9405), (1952, 3.98925),
    (1968, 3.98925), (1984, 4.034), (2000, 4.06), (2016, 4.116), (2032, 4.182875), (2048, 4.182875),
    (2080, 4.481), (2112, 4.528167), (2144, 4.528167), (2176, 4.528167), (2208, 4.6085), (2240, 4.665),
    (2272, 4.69025), (2304, 4.69025), (2336, 4.848333), (2368, 4.848333), (2400, 4.848333), (2432, 4.8655),
    (2464, 5.0295), (2496, 5.0295), (2528, 5.0295), (2560, 5.038), (2592, 5.44375), (2624, 5.44375),
    (2656, 5.4515), (2688, 5.4765), (2720, 5.62375), (2752, 5.62375), (2784, 5.64725), (2816, 5.64725),
    (2848, 5.934), (2880, 5.934), (2912, 5.934), (2944, 5.9915), (2976, 6.1255), (3008, 6.14),
    (3040, 6.146), (3072, 6.1535), (3104, 6.332), (3136, 6.3505), (3168, 6.3505), (3200, 6.444),
    (3232, 6.58975), (3264, 6.58975), (3296, 6.609), (3328, 6.6525), (3360, 6.857), (3392, 6.90425),
    (3424, 6.90425), (3456, 6.9705), (3488, 7.1295), (3520, 7.16575), (3552, 7.16575), (3584, 7.1985),
    (3616, 7.395333), (3648, 7.395333), (3680, 7.395333), (3712, 7.4935), (3744, 7.577), (3776, 7.577),
    (3808, 7.577), (3840, 7.613), (3872, 7.9635), (3904, 7.9635), (3936, 7.989), (3968, 7.989),
    (4000, 8.1055), (4032, 8.1055), (4064, 8.12525), (4096, 8.12525),
];
// END GENERATED by tools/fit_time_model.py.

/// Number of multiples of [`TOKEN_STEP`] the profiled table covers (8, 16, ..., 4096).
const DENSE_LEN: usize = 512;

/// Per-layer linear-operator ms at every multiple of [`TOKEN_STEP`] up to 4096, interpolated from
/// [`LINEAR_OPS_MS`] at compile time so that the lookup is one index.
static LINEAR_OPS_DENSE_MS: [f64; DENSE_LEN] = densify(&LINEAR_OPS_MS);

// Past the table the cost must keep growing, or a bigger batch could be faster.
const _: () = assert!(LINEAR_OPS_EXTRAP_MS_PER_TOKEN > 0.0, "the extrapolation slope must be positive");

/// Piecewise-linear interpolation of `table` at 8, 16, ..., 4096; profiled counts are copied exactly.
const fn densify(table: &[(u32, f64)]) -> [f64; DENSE_LEN] {
    assert!(table[0].0 == TOKEN_STEP, "the table must start at TOKEN_STEP tokens");
    assert!(table[table.len() - 1].0 == TOKEN_STEP * DENSE_LEN as u32, "the table must end at 4096 tokens");
    let mut out = [0.0; DENSE_LEN];
    let mut seg = 0; // table[seg].0 <= t, and t < table[seg + 1].0 unless seg is the last point
    let mut i = 0;
    while i < DENSE_LEN {
        let t = TOKEN_STEP * (i as u32 + 1);
        while seg + 1 < table.len() && table[seg + 1].0 <= t {
            seg += 1;
        }
        let (t0, ms0) = table[seg];
        out[i] = if t == t0 {
            ms0
        } else {
            let (t1, ms1) = table[seg + 1];
            ms0 + (ms1 - ms0) * (t - t0) as f64 / (t1 - t0) as f64
        };
        i += 1;
    }
    out
}

/// Per-layer linear-operator time (ms) of a batch of `num_tokens` tokens.
#[inline]
fn linear_ops_ms(num_tokens: u32) -> f64 {
    let steps = u64::from(num_tokens.max(1)).div_ceil(u64::from(TOKEN_STEP));
    match usize::try_from(steps) {
        Ok(s) if s <= DENSE_LEN => LINEAR_OPS_DENSE_MS[s - 1],
        _ => {
            let beyond = (steps - DENSE_LEN as u64) * u64::from(TOKEN_STEP);
            LINEAR_OPS_DENSE_MS[DENSE_LEN - 1] + beyond as f64 * LINEAR_OPS_EXTRAP_MS_PER_TOKEN
        }
    }
}

/// Per-layer attention time (ms) of the batch's decodes and prefill chunks.
#[inline]
fn attention_ms(shape: &BatchShape) -> f64 {
    let decode = if shape.num_decode_seqs > 0 {
        DECODE_ATTN_MS[0]
            + DECODE_ATTN_MS[1] * f64::from(shape.num_decode_seqs)
            + DECODE_ATTN_MS[2] * shape.decode_context_sum as f64
    } else {
        0.0
    };
    let prefill = PREFILL_ATTN_MS[0] * f64::from(shape.num_prefill_tokens)
        + PREFILL_ATTN_MS[1] * shape.prefill_chunk_sq_sum
        + PREFILL_ATTN_MS[2] * shape.prefill_chunk_context_sum
        + PREFILL_ATTN_MS[3] * shape.prefill_context_sum as f64;
    decode + prefill
}

/// Seconds of one non-empty iteration under the `llama2-7b-a100` preset.
#[inline]
fn llama2_7b_a100_seconds(shape: &BatchShape) -> f64 {
    NUM_LAYERS * (linear_ops_ms(shape.num_tokens) + attention_ms(shape)) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_batch(n: u32, context: u32) -> BatchShape {
        let mut s = BatchShape::default();
        for _ in 0..n {
            s.add_decode(context);
        }
        s
    }

    fn prefill_batch(chunk: u32, context: u32) -> BatchShape {
        let mut s = BatchShape::default();
        s.add_prefill(chunk, context);
        s
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    #[test]
    fn attention_fit_tracks_the_preset_on_decode_batches() {
        assert_eq!(TimeModel::Linear { d0: 0.01, d1: 1e-4 }.attention_linearization(), (0.01, 1e-4, 0.0));
        let m = TimeModel::Llama2_7bA100;
        let (d0, d1, d2) = m.attention_linearization();
        // d2 is close to the preset's own decode-attention slope: 32 layers × 8.772e-6 ms per cached token.
        assert!(close(d2, 32.0 * DECODE_ATTN_MS[2] * 1e-3, 0.25), "d2 = {d2}");
        assert!(d0 > 0.0 && d1 > 0.0);
        // Long contexts cost what the preset says, which a tokens-only line misses (its error grows with context).
        let (l0, l1) = m.linearization();
        let mut fit_err: f64 = 0.0;
        let mut line_err: f64 = 0.0;
        for &(b, ctx) in &[(32u32, 2048u32), (128, 1024), (256, 512), (64, 64)] {
            let s = decode_batch(b, ctx);
            let t = m.iteration_time(&s);
            let fit = d0 + d1 * f64::from(s.num_tokens) + d2 * s.decode_context_sum as f64;
            let line = l0 + l1 * f64::from(s.num_tokens);
            fit_err = fit_err.max((fit - t).abs() / t);
            line_err = line_err.max((line - t).abs() / t);
        }
        assert!(fit_err < 0.15 && fit_err < line_err, "fit {fit_err}, line {line_err}");
    }

    #[test]
    fn table_points_are_reproduced_exactly() {
        for &(t, ms) in &LINEAR_OPS_MS {
            assert_eq!(linear_ops_ms(t), ms, "at {t} tokens");
            // Every count that rounds up to a profiled one gets its value.
            assert_eq!(linear_ops_ms(t - TOKEN_STEP + 1), ms, "at {} tokens", t - TOKEN_STEP + 1);
        }
        // Spot values summed by hand from mlp.csv (TP=1 medians, emb excluded), where the raw data is monotone.
        assert_eq!(linear_ops_ms(8), 0.283);
        assert_eq!(linear_ops_ms(128), 0.3825);
        assert_eq!(linear_ops_ms(512), 1.0425);
        assert_eq!(linear_ops_ms(1), 0.283);
    }

    #[test]
    fn table_grid_matches_the_profile() {
        assert_eq!(LINEAR_OPS_MS.len(), 256);
        for w in LINEAR_OPS_MS.windows(2) {
            assert!(w[0].0 < w[1].0 && w[1].0 % TOKEN_STEP == 0);
            assert!(w[0].1 <= w[1].1, "table not non-decreasing at {}", w[1].0);
        }
    }

    #[test]
    fn interpolates_between_profiled_points() {
        // 1040 and 1056 are neighbours in the profile; 1048 lies halfway.
        let (lo, hi) = (linear_ops_ms(1040), linear_ops_ms(1056));
        assert!((linear_ops_ms(1048) - (lo + hi) / 2.0).abs() < 1e-12);
        // Past 4096: linear extrapolation.
        let last = linear_ops_ms(4096);
        assert!((linear_ops_ms(4096 + 800) - (last + 800.0 * LINEAR_OPS_EXTRAP_MS_PER_TOKEN)).abs() < 1e-12);
        assert!(linear_ops_ms(u32::MAX).is_finite());
    }

    #[test]
    fn monotone_in_num_tokens() {
        let m = TimeModel::Llama2_7bA100;
        let mut prev = 0.0;
        for t in 1..=10_000 {
            let ms = linear_ops_ms(t);
            assert!(ms >= prev, "linear ops decrease at {t} tokens");
            prev = ms;
        }
        let mut prev = 0.0;
        for c in 1..=8192 {
            let s = m.iteration_time(&prefill_batch(c, 0));
            assert!(s > 0.0 && s >= prev, "prefill time decreases at {c}");
            prev = s;
        }
        let mut prev = 0.0;
        for b in 1..=512 {
            let s = m.iteration_time(&decode_batch(b, 500));
            assert!(s >= prev, "decode time decreases at {b}");
            prev = s;
        }
    }

    #[test]
    fn sanity_numbers() {
        let m = TimeModel::Llama2_7bA100;
        let decode = m.iteration_time(&decode_batch(26, 1200));
        assert!(close(decode, 0.019, 0.2), "decode 26 × 1.2k = {decode} s");
        let prefill = m.iteration_time(&prefill_batch(1024, 0));
        assert!(close(prefill, 0.077, 0.2), "prefill 1024 = {prefill} s");
        // Decomposition: 32 layers × (linear ops + attention).
        let expected = 32.0 * (linear_ops_ms(26) + 0.00598 + 0.001097 * 26.0 + 8.772e-6 * 26.0 * 1200.0) / 1000.0;
        assert!((decode - expected).abs() < 1e-12);
        let expected = 32.0 * (linear_ops_ms(1024) + 1.325e-4 * 1024.0 + 1.246e-7 * 1024.0 * 1024.0) / 1000.0;
        assert!((prefill - expected).abs() < 1e-12);
    }

    #[test]
    fn prefill_terms_and_mixed_batches_add_up() {
        let m = TimeModel::Llama2_7bA100;
        let mut s = prefill_batch(512, 1000);
        s.add_prefill(256, 0);
        s.add_decode(300);
        s.add_decode(700);
        let attn = 1.325e-4 * 768.0
            + 1.246e-7 * (512.0 * 512.0 + 256.0 * 256.0)
            + 1.080e-7 * 512.0 * 1000.0
            + 9.56e-6 * 1000.0
            + 0.00598
            + 0.001097 * 2.0
            + 8.772e-6 * 1000.0;
        let expected = 32.0 * (linear_ops_ms(770) + attn) / 1000.0;
        assert!((m.iteration_time(&s) - expected).abs() < 1e-12);
    }

    #[test]
    fn linear_model_formula() {
        let m = TimeModel::linear(0.003, 0.00032).unwrap();
        let s = decode_batch(10, 4000);
        assert_eq!(m.iteration_time(&s), 0.003 + 0.00032 * 10.0);
        let mut s = prefill_batch(100, 0);
        for _ in 0..5 {
            s.add_decode(3000);
        }
        assert_eq!(m.iteration_time(&s), 0.003 + 0.00032 * 105.0);
        assert_eq!(m.linearization(), (0.003, 0.00032));
        assert_eq!(m.name(), "linear");
    }

    #[test]
    fn empty_batch_takes_no_time() {
        let empty = BatchShape::default();
        assert_eq!(TimeModel::Llama2_7bA100.iteration_time(&empty), 0.0);
        assert_eq!(TimeModel::linear(0.01, 0.0).unwrap().iteration_time(&empty), 0.0);
    }

    #[test]
    fn preset_linearization_and_capacity() {
        let m = TimeModel::Llama2_7bA100;
        let (d0, d1) = m.linearization();
        assert_eq!((d0, d1), (LLAMA2_7B_A100_D0, LLAMA2_7B_A100_D1));
        assert!(d0 > 0.0 && d1 > 0.0);
        // The line passes near the model for a mid-sized decode batch (64 requests at 500 context), and it
        // cannot follow the context: the same batch at 2k context is far slower.
        let mid = m.iteration_time(&decode_batch(64, 500));
        assert!(close(d0 + d1 * 64.0, mid, 0.2), "line {} vs model {mid}", d0 + d1 * 64.0);
        assert!(m.iteration_time(&decode_batch(64, 2000)) > 2.0 * (d0 + d1 * 64.0));
        assert_eq!(LLAMA2_7B_A100_NUM_BLOCKS * LLAMA2_7B_A100_BLOCK_SIZE, 118_784);
        assert_eq!(m.name(), "llama2-7b-a100");
    }

    #[test]
    fn from_name_builds_and_rejects() {
        assert_eq!(
            TimeModel::from_name("linear", Some(0.01), Some(1e-4)).unwrap(),
            TimeModel::Linear { d0: 0.01, d1: 1e-4 }
        );
        assert_eq!(TimeModel::from_name("llama2-7b-a100", None, None).unwrap(), TimeModel::Llama2_7bA100);
        for name in TimeModel::NAMES {
            let (d0, d1) = if name == "linear" { (Some(0.01), Some(1e-4)) } else { (None, None) };
            assert_eq!(TimeModel::from_name(name, d0, d1).unwrap().name(), name);
        }

        let msg = |r: Result<TimeModel>| match r {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        assert!(msg(TimeModel::from_name("linear", None, None)).contains("needs d0 and d1"));
        assert!(msg(TimeModel::from_name("linear", None, Some(1e-4))).contains("d0"));
        assert!(msg(TimeModel::from_name("linear", Some(0.01), None)).contains("d1"));
        assert!(msg(TimeModel::from_name("linear", Some(-1.0), Some(1e-4))).contains("d0"));
        assert!(msg(TimeModel::from_name("linear", Some(0.0), Some(0.0))).contains("both be 0"));
        assert!(msg(TimeModel::from_name("llama2-7b-a100", Some(0.01), None)).contains("takes no d0/d1"));
        assert!(msg(TimeModel::from_name("llama2-7b-a100", None, Some(1e-4))).contains("takes no d0/d1"));
        let unknown = msg(TimeModel::from_name("gpt-9", None, None));
        assert!(unknown.contains("gpt-9") && unknown.contains("linear") && unknown.contains("llama2-7b-a100"));
    }
}
