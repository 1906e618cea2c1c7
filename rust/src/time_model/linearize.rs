//! The fluid model's linear views of a profiled time model, fitted once when the model is built.
//!
//! * [`fit_tokens_only`]: `d0 + d1 · num_tokens`, the relative-error least-squares line over a fixed set of
//!   steady-state batch shapes (the fit `tools/fit_time_model.py` used to generate as constants), rounded to four
//!   significant digits;
//! * [`fit_attention_model`]: `d0 + d1 · num_tokens + d2 · Σ decode context`, the same kind of fit with the
//!   decode-attention term.
//!
//! Both take the model as a function from a batch shape to seconds.

use super::BatchShape;

/// Decode contexts of the tokens-only fit set: 100, 200, ..., 2000 tokens.
const DECODE_CONTEXTS: std::ops::RangeInclusive<u32> = 1..=20;
/// Prefill chunk sizes of the mixed shapes of the tokens-only fit set.
const PREFILL_CHUNKS: [u32; 5] = [128, 256, 512, 1024, 2048];
/// Decode batch sizes sharing an iteration with a prefill chunk in the tokens-only fit set.
const MIXED_DECODES: [u32; 10] = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256];

/// A batch of one prefill chunk (`chunk` tokens, empty cache; none when 0) and `num_decodes` decodes at `context`.
fn shape(chunk: u32, num_decodes: u32, context: u32) -> BatchShape {
    let mut s = BatchShape::default();
    if chunk > 0 {
        s.add_prefill(chunk, 0);
    }
    for _ in 0..num_decodes {
        s.add_decode(context);
    }
    s
}

/// `(d0, d1)` in seconds and seconds per token: the relative-error least-squares line `d0 + d1 · num_tokens` of
/// `seconds` over the steady-state shapes whose KV fits `kv_capacity` tokens, rounded to 4 significant digits.
///
/// The shapes: pure decode, 1–256 requests at every context from 100 to 2,000 in steps of 100; mixed, one
/// prefill chunk of 128–2,048 tokens with 0–256 decodes at those contexts (see `docs/time-model.md`).
pub(crate) fn fit_tokens_only(seconds: &dyn Fn(&BatchShape) -> f64, kv_capacity: u64) -> (f64, f64) {
    let fits = |s: &BatchShape| u64::from(s.num_tokens) + s.decode_context_sum <= kv_capacity;
    let mut points: Vec<(f64, f64)> = Vec::new();
    for ctx in DECODE_CONTEXTS.map(|k| 100 * k) {
        for b in 1..=256 {
            let s = shape(0, b, ctx);
            if fits(&s) {
                points.push((f64::from(s.num_tokens), seconds(&s)));
            }
        }
    }
    for chunk in PREFILL_CHUNKS {
        for ctx in DECODE_CONTEXTS.map(|k| 100 * k) {
            for b in MIXED_DECODES {
                if b == 0 && ctx != 100 {
                    continue; // the pure prefill, once per chunk size
                }
                let s = shape(chunk, b, ctx);
                if fits(&s) {
                    points.push((f64::from(s.num_tokens), seconds(&s)));
                }
            }
        }
    }
    // Minimise Σ ((d0 + d1·x − y) / y)² by the normal equations, with x scaled to at most 1 for conditioning.
    let scale = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1.0);
    let (mut a00, mut a01, mut a11, mut b0, mut b1) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x, y) in &points {
        let (r0, r1) = (1.0 / y, x / scale / y);
        a00 += r0 * r0;
        a01 += r0 * r1;
        a11 += r1 * r1;
        b0 += r0;
        b1 += r1;
    }
    let det = a00 * a11 - a01 * a01;
    let d0 = (b0 * a11 - a01 * b1) / det;
    let d1 = (a00 * b1 - a01 * b0) / det / scale;
    (four_digits(d0), four_digits(d1))
}

/// `x` rounded to 4 significant digits (the precision the linearization is quoted and stored with).
fn four_digits(x: f64) -> f64 {
    format!("{x:.3e}").parse().unwrap_or(x)
}

/// Relative-error least squares of `seconds` on `d0 + d1 · tokens + d2 · kv_read` over decode batches of 8–256
/// requests with mean contexts of 64–2,048 tokens, alone or sharing the iteration with a prefill chunk of 128 or
/// 512 tokens (see [`super::TimeModel::attention_linearization`]).
pub(crate) fn fit_attention_model(seconds: &dyn Fn(&BatchShape) -> f64) -> (f64, f64, f64) {
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
                let t = seconds(&shape);
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
