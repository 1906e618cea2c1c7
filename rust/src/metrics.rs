//! Per-request records and the aggregate metrics of a simulation run.

/// What happened to each request, indexed by its position in the workload. Times are seconds; a request that
/// never reached an event has NaN there: in a completed run, only a request rejected by the model length limit
/// (`rejected`), which has NaN for every event and so NaN latency and TTFT.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestRecords {
    /// Arrival time.
    pub arrival: Vec<f64>,
    /// Start of the first iteration that computed any of its tokens.
    pub first_scheduled: Vec<f64>,
    /// End of the iteration that emitted its first output token.
    pub first_token: Vec<f64>,
    /// End of the iteration that emitted its last output token.
    pub finish: Vec<f64>,
    /// Prompt tokens served (after trimming to the model length; a rejected request's own).
    pub prompt_len: Vec<u32>,
    /// Output tokens served (after trimming to the model length; a rejected request's own).
    pub output_len: Vec<u32>,
    /// Times preempted (evicted and recomputed).
    pub num_preemptions: Vec<u32>,
    /// Rejected by the model length limit: never served.
    pub rejected: Vec<bool>,
    /// Served with lengths trimmed to the model length limit.
    pub trimmed: Vec<bool>,
}

impl RequestRecords {
    /// Records for `n` requests with every time NaN.
    pub fn with_len(n: usize) -> Self {
        RequestRecords {
            arrival: vec![f64::NAN; n],
            first_scheduled: vec![f64::NAN; n],
            first_token: vec![f64::NAN; n],
            finish: vec![f64::NAN; n],
            prompt_len: vec![0; n],
            output_len: vec![0; n],
            num_preemptions: vec![0; n],
            rejected: vec![false; n],
            trimmed: vec![false; n],
        }
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.arrival.len()
    }

    /// True when there are no requests.
    pub fn is_empty(&self) -> bool {
        self.arrival.is_empty()
    }
}

/// Aggregates over iterations, accumulated as the simulation runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IterationStats {
    /// Iterations executed.
    pub num_iterations: u64,
    /// Σ iteration durations (busy time), seconds.
    pub busy_time: f64,
    /// Σ duration × KV blocks in use during the iteration.
    pub kv_block_seconds: f64,
    /// Most KV blocks in use during any iteration.
    pub max_used_blocks: u32,
    /// Σ requests per iteration.
    pub sum_batch_size: u64,
    /// Σ tokens per iteration.
    pub sum_batch_tokens: u64,
}

/// The summary of a run: the metrics `fluidsched simulate --json` prints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Requests in the workload.
    pub num_requests: u64,
    /// Requests that finished (all of them but the rejected ones, in a completed run).
    pub num_finished: u64,
    /// Requests rejected by the model length limit (never served; not in any other metric).
    pub num_rejected: u64,
    /// Output tokens per second of simulated span.
    pub throughput_tokens_per_s: f64,
    /// Finished requests per second of simulated span.
    pub requests_per_s: f64,
    /// End-to-end latency (finish − arrival): mean.
    pub latency_mean_s: f64,
    /// Latency median.
    pub latency_p50_s: f64,
    /// Latency 90th percentile.
    pub latency_p90_s: f64,
    /// Latency 99th percentile.
    pub latency_p99_s: f64,
    /// Time to first token (first token − arrival): mean.
    pub ttft_mean_s: f64,
    /// TTFT median.
    pub ttft_p50_s: f64,
    /// TTFT 90th percentile.
    pub ttft_p90_s: f64,
    /// TTFT 99th percentile.
    pub ttft_p99_s: f64,
    /// Time between consecutive output tokens of a request: median.
    pub tbt_p50_s: f64,
    /// Time between tokens, 99th percentile.
    pub tbt_p99_s: f64,
    /// Time-weighted mean fraction of KV blocks in use while busy.
    pub kv_usage_mean_fraction: f64,
    /// Largest fraction of KV blocks in use.
    pub kv_usage_max_fraction: f64,
    /// Preemptions (evictions) over all requests.
    pub num_preemptions: u64,
    /// Iterations executed.
    pub num_iterations: u64,
    /// Mean iteration time, seconds.
    pub mean_iteration_time_s: f64,
    /// Mean requests per iteration.
    pub mean_batch_size: f64,
    /// Busy time / simulated span.
    pub busy_fraction: f64,
    /// From the first arrival of a served request to the last finish, seconds.
    pub simulated_span_s: f64,
    /// Wall-clock seconds the simulation took.
    pub wall_time_s: f64,
}

impl Summary {
    /// `(name, value)` pairs in a stable order; the names are the JSON keys.
    pub fn fields(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("num_requests", self.num_requests as f64),
            ("num_finished", self.num_finished as f64),
            ("num_rejected", self.num_rejected as f64),
            ("throughput_tokens_per_s", self.throughput_tokens_per_s),
            ("requests_per_s", self.requests_per_s),
            ("latency_mean_s", self.latency_mean_s),
            ("latency_p50_s", self.latency_p50_s),
            ("latency_p90_s", self.latency_p90_s),
            ("latency_p99_s", self.latency_p99_s),
            ("ttft_mean_s", self.ttft_mean_s),
            ("ttft_p50_s", self.ttft_p50_s),
            ("ttft_p90_s", self.ttft_p90_s),
            ("ttft_p99_s", self.ttft_p99_s),
            ("tbt_p50_s", self.tbt_p50_s),
            ("tbt_p99_s", self.tbt_p99_s),
            ("kv_usage_mean_fraction", self.kv_usage_mean_fraction),
            ("kv_usage_max_fraction", self.kv_usage_max_fraction),
            ("num_preemptions", self.num_preemptions as f64),
            ("num_iterations", self.num_iterations as f64),
            ("mean_iteration_time_s", self.mean_iteration_time_s),
            ("mean_batch_size", self.mean_batch_size),
            ("busy_fraction", self.busy_fraction),
            ("simulated_span_s", self.simulated_span_s),
            ("wall_time_s", self.wall_time_s),
        ]
    }

    /// Computes the summary from a run's records. Rejected requests count only in `num_requests` and
    /// `num_rejected`: the span starts at the first served arrival, and they have no latency, TTFT or tokens.
    pub fn compute(
        records: &RequestRecords,
        tbt: &mut [(f64, u64)],
        it: &IterationStats,
        num_blocks: u32,
        wall_time_s: f64,
    ) -> Summary {
        let n = records.len();
        let finished: Vec<usize> = (0..n).filter(|&i| records.finish[i].is_finite()).collect();
        let mut latency: Vec<f64> = finished.iter().map(|&i| records.finish[i] - records.arrival[i]).collect();
        let mut ttft: Vec<f64> = finished.iter().map(|&i| records.first_token[i] - records.arrival[i]).collect();
        let first_arrival = (0..n)
            .filter(|&i| !records.rejected.get(i).copied().unwrap_or(false))
            .map(|i| records.arrival[i])
            .fold(f64::INFINITY, f64::min);
        let last_finish = finished.iter().map(|&i| records.finish[i]).fold(f64::NEG_INFINITY, f64::max);
        let span = if finished.is_empty() { 0.0 } else { last_finish - first_arrival };
        let tokens: u64 = finished.iter().map(|&i| u64::from(records.output_len[i])).sum();
        let per_s = |x: f64| if span > 0.0 { x / span } else { 0.0 };
        let iters = it.num_iterations as f64;
        let tbt_pct = weighted_percentiles(tbt, &[50.0, 99.0]);
        Summary {
            num_requests: n as u64,
            num_finished: finished.len() as u64,
            num_rejected: records.rejected.iter().filter(|&&r| r).count() as u64,
            throughput_tokens_per_s: per_s(tokens as f64),
            requests_per_s: per_s(finished.len() as f64),
            latency_mean_s: mean(&latency),
            latency_p50_s: percentile(&mut latency, 50.0),
            latency_p90_s: percentile(&mut latency, 90.0),
            latency_p99_s: percentile(&mut latency, 99.0),
            ttft_mean_s: mean(&ttft),
            ttft_p50_s: percentile(&mut ttft, 50.0),
            ttft_p90_s: percentile(&mut ttft, 90.0),
            ttft_p99_s: percentile(&mut ttft, 99.0),
            tbt_p50_s: tbt_pct[0],
            tbt_p99_s: tbt_pct[1],
            kv_usage_mean_fraction: if it.busy_time > 0.0 {
                it.kv_block_seconds / it.busy_time / f64::from(num_blocks)
            } else {
                0.0
            },
            kv_usage_max_fraction: f64::from(it.max_used_blocks) / f64::from(num_blocks),
            num_preemptions: records.num_preemptions.iter().map(|&p| u64::from(p)).sum(),
            num_iterations: it.num_iterations,
            mean_iteration_time_s: if iters > 0.0 { it.busy_time / iters } else { 0.0 },
            mean_batch_size: if iters > 0.0 { it.sum_batch_size as f64 / iters } else { 0.0 },
            busy_fraction: if span > 0.0 { (it.busy_time / span).min(1.0) } else { 0.0 },
            simulated_span_s: span,
            wall_time_s,
        }
    }
}

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() { f64::NAN } else { xs.iter().sum::<f64>() / xs.len() as f64 }
}

/// The `q`-th percentile (0–100) with linear interpolation between order statistics (NumPy's default);
/// NaN for an empty slice. Reorders `xs`.
pub fn percentile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 100.0) / 100.0 * (xs.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (_, &mut lo_v, rest) = xs.select_nth_unstable_by(lo, f64::total_cmp);
    if hi == lo {
        return lo_v;
    }
    // The next order statistic is the minimum of the upper part.
    let hi_v = rest.iter().copied().fold(f64::INFINITY, f64::min);
    lo_v + (hi_v - lo_v) * (pos - lo as f64)
}

/// Several percentiles at once, `qs` in increasing order (same definition as [`percentile`]). Each selection
/// works on the part of `xs` above the previous one, so k percentiles cost about one selection pass over `xs`.
pub fn percentiles(xs: &mut [f64], qs: &[f64]) -> Vec<f64> {
    debug_assert!(qs.windows(2).all(|w| w[0] <= w[1]), "percentiles must be increasing");
    if xs.is_empty() {
        return vec![f64::NAN; qs.len()];
    }
    let n = xs.len();
    let mut out = Vec::with_capacity(qs.len());
    let mut base = 0; // xs[base..] holds the order statistics from rank `base` upward
    for &q in qs {
        let pos = q.clamp(0.0, 100.0) / 100.0 * (n - 1) as f64;
        let lo = (pos.floor() as usize).max(base);
        let tail = &mut xs[base..];
        let (_, &mut lo_v, rest) = tail.select_nth_unstable_by(lo - base, f64::total_cmp);
        let value = if pos.ceil() as usize == lo {
            lo_v
        } else {
            let hi_v = rest.iter().copied().fold(f64::INFINITY, f64::min);
            lo_v + (hi_v - lo_v) * (pos - lo as f64)
        };
        out.push(value);
        base = lo;
    }
    out
}

/// Percentiles of a sample given as `(value, count)` pairs, with the same definition as [`percentile`] applied to
/// the sample with each value repeated `count` times. Sorts `samples` by value.
pub fn weighted_percentiles(samples: &mut [(f64, u64)], qs: &[f64]) -> Vec<f64> {
    let n: u64 = samples.iter().map(|&(_, c)| c).sum();
    if n == 0 {
        return vec![f64::NAN; qs.len()];
    }
    samples.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    // The value of the order statistic of rank r (0-based).
    let at_rank = |r: u64| {
        let mut seen = 0u64;
        for &(v, c) in samples.iter() {
            seen += c;
            if r < seen {
                return v;
            }
        }
        samples[samples.len() - 1].0
    };
    qs.iter()
        .map(|&q| {
            let pos = q.clamp(0.0, 100.0) / 100.0 * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as u64, pos.ceil() as u64);
            let lo_v = at_rank(lo);
            if hi == lo { lo_v } else { lo_v + (at_rank(hi) - lo_v) * (pos - lo as f64) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&mut v, 50.0), 2.5);
        assert_eq!(percentile(&mut v, 0.0), 1.0);
        assert_eq!(percentile(&mut v, 100.0), 4.0);
        assert!((percentile(&mut v, 99.0) - 3.97).abs() < 1e-12);
        assert!(percentile(&mut [], 50.0).is_nan());
    }

    #[test]
    fn weighted_percentiles_equal_expanded_percentiles() {
        let mut pairs = vec![(0.5, 3u64), (0.1, 1), (0.9, 2), (0.3, 4), (0.1, 2)];
        let mut expanded: Vec<f64> = pairs.iter().flat_map(|&(v, c)| std::iter::repeat_n(v, c as usize)).collect();
        for q in [0.0, 1.0, 33.0, 50.0, 90.0, 99.0, 100.0] {
            assert_eq!(weighted_percentiles(&mut pairs, &[q])[0], percentile(&mut expanded, q), "q = {q}");
        }
        assert!(weighted_percentiles(&mut [], &[50.0])[0].is_nan());
    }

    #[test]
    fn percentiles_agree_with_percentile() {
        let data: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1009) as f64 * 0.5).collect();
        let qs = [0.0, 10.0, 50.0, 50.0, 90.5, 99.0, 100.0];
        let many = percentiles(&mut data.clone(), &qs);
        for (q, got) in qs.iter().zip(many) {
            assert_eq!(got, percentile(&mut data.clone(), *q), "q = {q}");
        }
    }
}
