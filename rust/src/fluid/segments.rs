//! Nested WAIT's plan: segments of the decode horizon, per-segment thresholds and the KV safety buffer.
//!
//! Segments. Boundaries `b_1 < … < b_{S−1}` cut the iterations of a request into segments `(b_{s−1}, b_s]`
//! (`b_0 = 0`); the last segment is open-ended. A request that has done `b_s` iterations and is not finished
//! pauses (keeping its KV) until it is let into segment s+1.
//!
//! Fluid (output lengths D random, prompt lengths l independent of D, total arrival rate λ). The flow into
//! segment s is `Λ_s = λ P(D > b_{s−1})`; with target iteration time T, each stage of segment s holds
//! `Λ_s T` entrants, of which those with `D ≥ k` are alive at stage k. Memory at stage k per entrant is
//! `X_k = 1[D ≥ k] (l + k − 1 + w)`, `w = (block − 1)/2` the mean block-rounding waste. So
//!
//! - mean memory `A T`, `A = λ Σ_k P(D ≥ k) (l̄ + k − 1 + w) + (1 + h) Σ_{s≥2} Λ_s (l̄ + b_{s−1} − 1 + w)`
//!   (the second term: one cohort, with the entry slack, paused at every boundary);
//! - variance `V T`, `V = Σ_s Λ_s Σ_{k∈s} [q_k Var(l) + q_k (1 − q_k) (l̄ + k − 1 + w)²]`, `q_k = P(D ≥ k | D >
//!   b_{s−1})`: at any time each stage holds a different cohort, so the stages' memories are independent sums
//!   of independent requests.
//!
//! Safety buffer: `Δ = z √(V T)` with `z = √(2 ln(1/δ))`, the sub-Gaussian (Chernoff) tail bound `P(X − E X >
//! z σ) ≤ exp(−z²/2) = δ`. Thresholds are sized so that `A T + Δ ≤ M`; solving for `u = √T`: `A u² + z √V u −
//! M = 0`. Δ grows like `√(M log(1/δ))`: the logarithmic overhead of the paper's abstract.
//!
//! Thresholds: the target T is chosen as in WAIT (`min(T*(1 + h), T_upper)`), segment 1's threshold is `n_1 =
//! max(1, ceil(λ T))`, and later segments get `n_s = max(1, round(n_1 P(D > b_{s−1})))`, the survivors of one
//! segment-1 cohort (fluid mass ∝ the rate that survives to the segment). Later entries are readiness
//! thresholds: once ready, the policy lets the whole boundary queue in (see the policy), which keeps boundary
//! queues stable under the flowchart's break rule. The memory plan counts `(1 + h) Λ_s T` paused requests per
//! boundary. Optional per-segment occupancy caps (the authors' `seg_total_limit`) are `max(1, ceil(n_s c_s))`,
//! `c_s` the segment's stage count: never 0.

use crate::error::{Error, Result, check_non_negative, check_positive};
use crate::workload::RequestType;

/// A distribution of output lengths (as weighted points) and the mean and variance of prompt lengths.
#[derive(Debug, Clone, PartialEq)]
pub struct LengthDistribution {
    /// `(output length, weight)` sorted by length; weights sum to 1.
    pub outputs: Vec<(u32, f64)>,
    /// Mean prompt length.
    pub prompt_mean: f64,
    /// Variance of the prompt length.
    pub prompt_var: f64,
}

impl LengthDistribution {
    /// From samples of output and prompt lengths (not necessarily paired). Zeros are read as 1.
    pub fn from_samples(outputs: &[u32], prompts: &[u32]) -> Result<Self> {
        if outputs.is_empty() || prompts.is_empty() {
            return Err(Error::config("length distribution: the output and prompt samples must not be empty"));
        }
        let mut sorted: Vec<u32> = outputs.iter().map(|&d| d.max(1)).collect();
        sorted.sort_unstable();
        let w = 1.0 / sorted.len() as f64;
        let mut points: Vec<(u32, f64)> = Vec::new();
        for d in sorted {
            match points.last_mut() {
                Some(p) if p.0 == d => p.1 += w,
                _ => points.push((d, w)),
            }
        }
        let n = prompts.len() as f64;
        let mean = prompts.iter().map(|&l| f64::from(l.max(1))).sum::<f64>() / n;
        let var = prompts.iter().map(|&l| (f64::from(l.max(1)) - mean).powi(2)).sum::<f64>() / n;
        Ok(LengthDistribution { outputs: points, prompt_mean: mean, prompt_var: var })
    }

    /// From request types, each weighted by its arrival rate.
    pub fn from_types(types: &[RequestType]) -> Result<Self> {
        if types.is_empty() {
            return Err(Error::config("length distribution: no request types"));
        }
        let mut total = 0.0;
        for (j, t) in types.iter().enumerate() {
            total += check_positive(&format!("types[{j}].rate"), t.rate)?;
        }
        let mut points: Vec<(u32, f64)> = types.iter().map(|t| (t.output_len.max(1), t.rate / total)).collect();
        points.sort_by_key(|p| p.0);
        let mean = types.iter().map(|t| t.rate / total * f64::from(t.prompt_len)).sum::<f64>();
        let var = types.iter().map(|t| t.rate / total * (f64::from(t.prompt_len) - mean).powi(2)).sum::<f64>();
        Ok(LengthDistribution { outputs: points, prompt_mean: mean.max(1.0), prompt_var: var })
    }

    /// Longest output length with positive weight.
    pub fn max_output(&self) -> u32 {
        self.outputs.last().map_or(1, |p| p.0)
    }

    /// Mean output length.
    pub fn mean_output(&self) -> f64 {
        self.outputs.iter().map(|&(d, w)| f64::from(d) * w).sum()
    }

    /// `P(D ≥ k)` for every `k`, as a step function stored per distinct length (memory and time bounded by the
    /// number of distinct lengths, never by a length's value).
    pub fn survival(&self) -> Survival {
        let mut suffix = vec![0.0; self.outputs.len() + 1];
        for (i, &(_, w)) in self.outputs.iter().enumerate().rev() {
            suffix[i] = w + suffix[i + 1];
        }
        Survival { lengths: self.outputs.iter().map(|p| p.0).collect(), suffix }
    }
}

/// The survival function `k ↦ P(D ≥ k)` of a [`LengthDistribution`] (see [`LengthDistribution::survival`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Survival {
    /// Distinct output lengths, ascending.
    lengths: Vec<u32>,
    /// `suffix[i]`: total weight of `lengths[i..]`; one more entry (0) at the end.
    suffix: Vec<f64>,
}

impl Survival {
    /// `P(D ≥ k)`.
    pub fn at(&self, k: u64) -> f64 {
        self.suffix[self.lengths.partition_point(|&d| u64::from(d) < k)]
    }
}

/// Boundaries at the `i / num_segments` quantiles of the output length (`i = 1..num_segments−1`): the smallest
/// length whose cumulative weight reaches the quantile. Duplicates and boundaries at or beyond the longest
/// length are dropped, so fewer segments may result.
pub fn quantile_boundaries(dist: &LengthDistribution, num_segments: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for i in 1..num_segments {
        let q = f64::from(i) / f64::from(num_segments);
        let mut cum = 0.0;
        for &(d, w) in &dist.outputs {
            cum += w;
            if cum >= q - 1e-12 {
                if d < dist.max_output() && out.last() != Some(&d) {
                    out.push(d);
                }
                break;
            }
        }
    }
    out
}

/// What [`plan_segments`] needs besides the length distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentPlanInput {
    /// Segment boundaries in iterations (sorted, distinct, >= 1; those at or beyond the longest length are
    /// dropped).
    pub boundaries: Vec<u32>,
    /// Total arrival rate λ, requests per second.
    pub total_rate: f64,
    /// Iteration time fixed cost, seconds.
    pub d0: f64,
    /// Iteration time per token, seconds.
    pub d1: f64,
    /// Usable KV capacity M, tokens.
    pub capacity_tokens: f64,
    /// KV block size, tokens.
    pub block_size: u32,
    /// Overflow probability target δ of the safety buffer, in (0, 1).
    pub delta: f64,
    /// Relative margin above the stability bound, also the entry slack of later segments.
    pub headroom: f64,
    /// Most requests in flight (paused ones included).
    pub max_concurrency: f64,
}

/// Nested WAIT's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentPlan {
    /// Boundaries used (segment s ends at `boundaries[s]`; the last segment is open-ended).
    pub boundaries: Vec<u32>,
    /// Flow into each segment, `Λ_s`, requests per second.
    pub entry_rates: Vec<f64>,
    /// Entry threshold of each segment (>= 1).
    pub thresholds: Vec<u32>,
    /// Occupancy cap of each segment (used only with per-segment caps; >= 1).
    pub caps: Vec<u32>,
    /// Target iteration time T, seconds.
    pub target_iteration_time: f64,
    /// Stability bound `T*`, seconds (infinite when `ρ ≥ 1`).
    pub stability_bound: f64,
    /// Memory/concurrency bound on T, seconds.
    pub upper_bound: f64,
    /// True when the bounds cross: the demand cannot be served.
    pub overloaded: bool,
    /// Safety buffer Δ, tokens.
    pub buffer_tokens: f64,
    /// Planned peak memory `A T + Δ`, tokens.
    pub planned_memory: f64,
    /// The tail factor z.
    pub z: f64,
}

/// Computes the plan (formulas in the module documentation).
pub fn plan_segments(dist: &LengthDistribution, input: &SegmentPlanInput) -> Result<SegmentPlan> {
    let lambda = check_positive("nested-wait: arrival rate", input.total_rate)?;
    check_positive("nested-wait: d0", input.d0)?;
    check_non_negative("nested-wait: d1", input.d1)?;
    let capacity = check_positive("nested-wait: KV capacity", input.capacity_tokens)?;
    check_non_negative("nested-wait: headroom", input.headroom)?;
    check_positive("nested-wait: max concurrency", input.max_concurrency)?;
    if !(input.delta > 0.0 && input.delta < 1.0) {
        return Err(Error::config(format!("nested-wait: delta must be in (0, 1), got {}", input.delta)));
    }
    let max_len = dist.max_output();
    let mut boundaries: Vec<u32> = input.boundaries.iter().copied().filter(|&b| b >= 1 && b < max_len).collect();
    boundaries.sort_unstable();
    boundaries.dedup();
    let surv = dist.survival();
    let starts: Vec<u32> = std::iter::once(0).chain(boundaries.iter().copied()).collect();
    let enter_prob: Vec<f64> = starts.iter().map(|&b| surv.at(u64::from(b) + 1)).collect();
    let entry_rates: Vec<f64> = enter_prob.iter().map(|p| lambda * p).collect();
    let slack = 1.0 + input.headroom;
    let waste = (f64::from(input.block_size.max(1)) - 1.0) / 2.0;
    let (l_mean, l_var) = (dist.prompt_mean, dist.prompt_var);
    let (mut a, mut v) = (0.0, 0.0);
    // Σ over decode stages k = 1..=max_len, taken in runs where both P(D ≥ k) and the segment are constant (runs
    // end at each distinct length and each boundary), so the cost is bounded by the number of distinct lengths
    // and boundaries, never by the longest length. Within a run, with m(k) = c + k:
    // Σ m = n·A + n(n−1)/2 and Σ m² = n·A² + 2A·n(n−1)/2 + (n−1)n(2n−1)/6, where A = m(lo), n the run length.
    let mut ends: Vec<u32> = dist.outputs.iter().map(|p| p.0).chain(boundaries.iter().copied()).collect();
    ends.sort_unstable();
    ends.dedup();
    let c = l_mean - 1.0 + waste;
    let mut lo: u64 = 1;
    for &end in &ends {
        let end = u64::from(end);
        if end < lo {
            continue;
        }
        let seg = boundaries.partition_point(|&b| u64::from(b) < lo);
        let (p_k, p_enter) = (surv.at(lo), enter_prob[seg]);
        if p_k <= 0.0 {
            break;
        }
        let n = (end - lo + 1) as f64;
        let first = c + lo as f64;
        let sum_j = n * (n - 1.0) / 2.0;
        let sum_j2 = (n - 1.0) * n * (2.0 * n - 1.0) / 6.0;
        let sum_m = n * first + sum_j;
        let sum_m2 = n * first * first + 2.0 * first * sum_j + sum_j2;
        let q = p_k / p_enter;
        a += lambda * p_k * sum_m;
        v += entry_rates[seg] * (q * l_var * n + q * (1.0 - q) * sum_m2);
        lo = end + 1;
    }
    for (s, &b) in starts.iter().enumerate().skip(1) {
        a += slack * entry_rates[s] * (l_mean + f64::from(b) - 1.0 + waste);
    }
    let z = (2.0 * (1.0 / input.delta).ln()).sqrt();
    let u = (-z * v.sqrt() + (z * z * v + 4.0 * a * capacity).sqrt()) / (2.0 * a);
    let t_mem = u * u;
    let concurrency_per_t = lambda * dist.mean_output() + slack * entry_rates.iter().skip(1).sum::<f64>();
    let upper = t_mem.min(input.max_concurrency / concurrency_per_t);
    let rho = input.d1 * lambda * (l_mean + dist.mean_output() - 1.0);
    let lower = if rho < 1.0 { input.d0 / (1.0 - rho) } else { f64::INFINITY };
    let overloaded = lower.partial_cmp(&upper) != Some(std::cmp::Ordering::Less);
    let target = if overloaded { upper } else { (lower * (1.0 + input.headroom)).min(upper) };
    let first = lambda * target;
    let n1 = if overloaded { first.floor() } else { first.ceil() }.clamp(1.0, f64::from(u32::MAX / 2));
    let thresholds: Vec<u32> = enter_prob
        .iter()
        .enumerate()
        .map(|(s, p)| if s == 0 { n1 as u32 } else { ((n1 * p).round() as u32).max(1) })
        .collect();
    let caps = thresholds
        .iter()
        .enumerate()
        .map(|(s, &n)| {
            let end = boundaries.get(s).copied().unwrap_or(max_len);
            let stages = f64::from(end.saturating_sub(starts[s]).max(1));
            (f64::from(n) * stages).ceil().min(f64::from(u32::MAX / 2)) as u32
        })
        .collect();
    let buffer = z * (v * target).sqrt();
    Ok(SegmentPlan {
        boundaries,
        entry_rates,
        thresholds,
        caps,
        target_iteration_time: target,
        stability_bound: lower,
        upper_bound: upper,
        overloaded,
        buffer_tokens: buffer,
        planned_memory: a * target + buffer,
        z,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survival_and_quantiles() {
        let d = LengthDistribution::from_samples(&[1, 2, 2, 4, 0, 10, 10, 10], &[5]).unwrap();
        let s = d.survival();
        assert_eq!(s.at(0), 1.0);
        assert_eq!(s.at(1), 1.0);
        assert_eq!(s.at(3), 0.5);
        assert_eq!(s.at(10), 0.375);
        assert_eq!(s.at(11), 0.0);
        assert_eq!(s.at(u64::MAX), 0.0);
        assert_eq!(quantile_boundaries(&d, 4), vec![1, 2]); // the 3/4 quantile is the maximum: dropped
    }

    #[test]
    fn the_plan_fits_memory_with_its_buffer() {
        let outputs: Vec<u32> = (1..=400).collect();
        let d = LengthDistribution::from_samples(&outputs, &[30, 40]).unwrap();
        let input = SegmentPlanInput {
            boundaries: vec![100, 200, 300],
            total_rate: 60.0,
            d0: 0.0066,
            d1: 7.4e-5,
            capacity_tokens: 100_000.0,
            block_size: 16,
            delta: 1e-3,
            headroom: 0.25,
            max_concurrency: 1e9,
        };
        let p = plan_segments(&d, &input).unwrap();
        assert!(p.planned_memory <= 100_000.0 * (1.0 + 1e-9), "{p:?}");
        assert!(p.buffer_tokens > 0.0 && p.thresholds.iter().all(|&n| n >= 1));
        assert_eq!(p.thresholds.len(), 4);
    }
}
