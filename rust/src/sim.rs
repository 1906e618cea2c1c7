//! The discrete-event simulator: replays a [`Workload`] through a [`Scheduler`], one model iteration at a time,
//! with iteration times from a [`TimeModel`].
//!
//! Time advances in two ways only: by an iteration's duration, or, when the scheduler has nothing to run, by a
//! jump to the next arrival (or the policy's wake-up time). Requests that arrive during an iteration join at its
//! end, as in Vidur. The run ends when every request has finished; no request is ever dropped, except those a
//! model length limit rejects up front ([`ModelLen`] with [`OverLength::Reject`](crate::workload::OverLength)),
//! which never reach the scheduler.

use std::time::Instant;

use crate::error::{Error, Result, check_non_negative};
use crate::metrics::{IterationStats, RequestRecords, Summary};
use crate::policy::Policy;
use crate::request::{MAX_REQUEST_TOKENS, NewRequest};
use crate::rng::Rng;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::time_model::TimeModel;
use crate::workload::{LengthOutcome, ModelLen, RequestSpec, ServedWorkload, Workload};

/// How a simulation is set up (besides the workload and the policy).
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Shared scheduler limits (KV capacity, block size, budgets).
    pub scheduler: SchedulerConfig,
    /// Iteration-time model.
    pub time_model: TimeModel,
    /// Seed for the simulator's own randomness (predicted output lengths).
    pub seed: u64,
    /// Relative error of the output lengths shown to clairvoyant policies: each hint is the true length times a
    /// factor drawn uniformly from `[1 − e, 1 + e]`, rounded, at least 1. `0` gives exact lengths.
    pub length_error: f64,
    /// The model's maximum sequence length and what happens to longer requests (default: no limit).
    pub model_len: ModelLen,
    /// Drop (instead of refusing the whole run for) served requests that can never fit the KV cache; they are
    /// counted as rejected ([`Simulator::num_dropped`] says how many). Default: false.
    pub drop_oversize: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            scheduler: SchedulerConfig::default(),
            time_model: TimeModel::Linear { d0: 0.003, d1: 0.00032 },
            seed: 0,
            length_error: 0.0,
            model_len: ModelLen::default(),
            drop_oversize: false,
        }
    }
}

/// One iteration as logged (for plots): start time, duration, tokens, requests, KV blocks in use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IterationRecord {
    /// Start of the iteration, seconds.
    pub start: f64,
    /// Duration, seconds.
    pub duration: f64,
    /// Tokens computed.
    pub num_tokens: u32,
    /// Requests in the batch.
    pub num_seqs: u32,
    /// KV blocks in use during the iteration.
    pub used_blocks: u32,
}

/// A simulation in progress (or done).
#[derive(Debug)]
pub struct Simulator {
    scheduler: Scheduler,
    time_model: TimeModel,
    /// The served requests (after the model length limit), in arrival order.
    specs: Vec<RequestSpec>,
    /// For each served request, its position in the workload: its scheduler id and its index in the records.
    positions: Vec<usize>,
    hints: Vec<Option<u32>>,
    next_arrival: usize,
    now: f64,
    records: RequestRecords,
    last_token: Vec<f64>,
    /// Time between tokens as weighted samples `(gap, count)`: most tokens follow their request's previous
    /// token by exactly one iteration, so one entry per iteration covers them all.
    tbt: Vec<(f64, u64)>,
    stats: IterationStats,
    log: Vec<IterationRecord>,
    num_finished: usize,
    /// Requests in the workload, served or not.
    num_requests: usize,
    /// Requests rejected by the model length limit or dropped as oversize.
    num_rejected: usize,
    /// Requests dropped because they can never fit the KV cache ([`SimConfig::drop_oversize`]).
    num_dropped: usize,
    empty_streak: u32,
    wall_time_s: f64,
    summary: Option<Summary>,
}

impl Simulator {
    /// Prepares a run of `workload` under `policy`. Fails if the configuration is invalid or a served request
    /// could never fit in the KV cache. The policy should be built from the served requests
    /// ([`served_workload`]'s `workload`): rejected requests never reach it, trimmed ones reach it trimmed.
    pub fn new(workload: &Workload, policy: Box<dyn Policy>, config: &SimConfig) -> Result<Self> {
        let served = served_workload(workload, config)?;
        let scheduler = Scheduler::new(config.scheduler, policy)?;
        let ServedWorkload { workload: served_wl, positions, outcomes } = served;
        let specs = served_wl.requests;
        let n = workload.requests.len();
        let mut records = RequestRecords::with_len(n);
        for (i, (r, &outcome)) in workload.requests.iter().zip(&outcomes).enumerate() {
            // Rejected requests keep their own lengths; served ones are overwritten below with theirs.
            records.arrival[i] = r.arrival;
            records.prompt_len[i] = r.prompt_len;
            records.output_len[i] = r.output_len;
            records.rejected[i] = outcome == LengthOutcome::Rejected;
            records.trimmed[i] = outcome == LengthOutcome::Trimmed;
        }
        let num_rejected = records.rejected.iter().filter(|&&r| r).count();
        let num_dropped = if config.drop_oversize {
            let by_length = config.model_len.apply(workload)?.outcomes;
            let by_length = by_length.iter().filter(|&&o| o == LengthOutcome::Rejected).count();
            num_rejected - by_length
        } else {
            0
        };
        let mut rng = Rng::new(config.seed);
        let mut hints = Vec::with_capacity(specs.len());
        for (s, &i) in specs.iter().zip(&positions) {
            records.prompt_len[i] = s.prompt_len;
            records.output_len[i] = s.output_len;
            let hint = if !scheduler.policy_needs_output_lengths() {
                None
            } else if config.length_error == 0.0 {
                Some(s.output_len)
            } else {
                let f = 1.0 + config.length_error * (2.0 * rng.next_f64() - 1.0);
                Some(((f64::from(s.output_len) * f).round() as u32).max(1))
            };
            hints.push(hint);
        }
        Ok(Simulator {
            scheduler,
            time_model: config.time_model.clone(),
            specs,
            positions,
            hints,
            next_arrival: 0,
            now: 0.0,
            records,
            last_token: vec![f64::NAN; n],
            tbt: Vec::new(),
            stats: IterationStats::default(),
            log: Vec::new(),
            num_finished: 0,
            num_requests: n,
            num_rejected,
            num_dropped,
            empty_streak: 0,
            wall_time_s: 0.0,
            summary: None,
        })
    }

    /// Runs to completion.
    pub fn run(&mut self) -> Result<()> {
        while !self.run_for(u64::MAX)? {}
        Ok(())
    }

    /// Runs at most `max_iterations` iterations; returns true once every request has finished.
    pub fn run_for(&mut self, max_iterations: u64) -> Result<bool> {
        let start = Instant::now();
        let result = self.run_inner(max_iterations);
        self.wall_time_s += start.elapsed().as_secs_f64();
        result
    }

    fn admit_arrivals(&mut self) -> Result<()> {
        while let Some(s) = self.specs.get(self.next_arrival) {
            if s.arrival > self.now {
                break;
            }
            let i = self.next_arrival;
            self.scheduler.add_request(NewRequest {
                id: self.positions[i] as u64,
                prompt_len: s.prompt_len,
                output_len: Some(s.output_len),
                output_len_hint: self.hints[i],
                type_id: s.type_id,
                arrival: s.arrival,
            })?;
            self.next_arrival += 1;
        }
        Ok(())
    }

    fn run_inner(&mut self, max_iterations: u64) -> Result<bool> {
        let mut done_iterations = 0u64;
        loop {
            if self.is_done() {
                return Ok(true);
            }
            if done_iterations >= max_iterations {
                return Ok(false);
            }
            self.admit_arrivals()?;
            let next_arrival = self.specs.get(self.next_arrival).map(|s| s.arrival);
            if self.scheduler.num_unfinished() == 0 {
                // Idle until the next arrival (one must exist, since not done).
                self.now = next_arrival.unwrap_or(self.now).max(self.now);
                continue;
            }
            let step_start = self.now;
            self.scheduler.schedule(step_start)?;
            let step = self.scheduler.last_step();
            // Count preemptions before the empty-step early exit: a step that preempted every running request
            // (the last one preempting itself) schedules nothing, and its preemptions must still be recorded.
            for &id in &step.preempted {
                self.records.num_preemptions[id as usize] += 1;
            }
            if step.is_empty() {
                let preempted = !step.preempted.is_empty();
                self.scheduler.complete_step(&[])?;
                self.empty_streak += 1;
                let wake = self.scheduler.next_wakeup().filter(|&t| t > self.now);
                let next = match (next_arrival, wake) {
                    (Some(a), Some(w)) => Some(a.min(w)),
                    (a, w) => a.or(w),
                };
                if preempted && self.empty_streak <= 2 {
                    continue; // retry at the same time after a self-preemption
                }
                match next {
                    Some(t) => self.now = t.max(self.now),
                    None => {
                        return Err(Error::Stalled(format!(
                            "policy {:?} scheduled nothing at t={:.6}s with {} waiting and {} running requests, \
                             no arrival left and no wake-up time",
                            self.scheduler.policy_name(),
                            self.now,
                            self.scheduler.num_waiting(),
                            self.scheduler.num_running()
                        )));
                    }
                }
                continue;
            }
            self.empty_streak = 0;
            let duration = self.time_model.iteration_time(&step.shape);
            let used = self.scheduler.num_used_blocks();
            // A request is first scheduled in the step that first admits it.
            for &id in &step.admitted {
                let i = id as usize;
                if self.records.first_scheduled[i].is_nan() {
                    self.records.first_scheduled[i] = step_start;
                }
            }
            self.stats.num_iterations += 1;
            self.stats.busy_time += duration;
            self.stats.kv_block_seconds += duration * f64::from(used);
            self.stats.max_used_blocks = self.stats.max_used_blocks.max(used);
            self.stats.sum_batch_size += step.scheduled.len() as u64;
            self.stats.sum_batch_tokens += u64::from(step.shape.num_tokens);
            self.log.push(IterationRecord {
                start: step_start,
                duration,
                num_tokens: step.shape.num_tokens,
                num_seqs: step.scheduled.len() as u32,
                used_blocks: used,
            });
            self.now = step_start + duration;
            let now = self.now;
            let outcome = self.scheduler.complete_step(&[])?;
            // Requests whose previous token came at the end of the previous iteration all share one gap.
            let consecutive_gap = now - step_start;
            let mut consecutive = 0u64;
            for &(id, k) in &outcome.emitted {
                let i = id as usize;
                if k == 1 {
                    self.records.first_token[i] = now;
                } else {
                    let last = self.last_token[i];
                    if last == step_start {
                        consecutive += 1;
                    } else {
                        self.tbt.push((now - last, 1));
                    }
                }
                self.last_token[i] = now;
            }
            if consecutive > 0 {
                self.tbt.push((consecutive_gap, consecutive));
            }
            for &id in &outcome.finished {
                self.records.finish[id as usize] = now;
            }
            self.num_finished += outcome.finished.len();
            done_iterations += 1;
        }
    }

    /// True once every request of the workload has finished or was rejected by the model length limit.
    pub fn is_done(&self) -> bool {
        self.num_finished + self.num_rejected == self.num_requests
    }

    /// `(settled, total)` requests, where settled means finished or rejected by the model length limit.
    pub fn progress(&self) -> (usize, usize) {
        (self.num_finished + self.num_rejected, self.num_requests)
    }

    /// Requests dropped before the run because they could never fit the KV cache (with
    /// [`SimConfig::drop_oversize`]); they are also counted as rejected.
    pub fn num_dropped(&self) -> usize {
        self.num_dropped
    }

    /// Current simulated time, seconds.
    pub fn now(&self) -> f64 {
        self.now
    }

    /// The scheduler being driven.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Per-request records so far.
    pub fn records(&self) -> &RequestRecords {
        &self.records
    }

    /// Every iteration so far.
    pub fn iteration_log(&self) -> &[IterationRecord] {
        &self.log
    }

    /// Gaps between consecutive tokens of the same request, seconds, one per token after each request's first:
    /// the time-between-tokens distribution, in no particular order. Built on demand (one entry per token).
    pub fn time_between_tokens(&self) -> Vec<f64> {
        let n: u64 = self.tbt.iter().map(|&(_, c)| c).sum();
        let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        for &(gap, count) in &self.tbt {
            out.extend(std::iter::repeat_n(gap, count as usize));
        }
        out
    }

    /// The summary metrics so far (normally called once the run is done; then it is computed once and cached).
    pub fn summary(&mut self) -> Summary {
        if let Some(s) = &self.summary {
            return s.clone();
        }
        let num_blocks = self.scheduler.state().config().num_blocks;
        let s = Summary::compute(&self.records, &mut self.tbt, &self.stats, num_blocks, self.wall_time_s);
        if self.is_done() {
            self.summary = Some(s.clone());
        }
        s
    }
}

/// The requests a simulation of `workload` under `config` serves, validated: the simulation's own settings
/// (scheduler limits, `length_error`, the model length), every request of `workload` (arrivals sorted, finite
/// and non-negative, lengths at least 1), then the model length limit ([`ModelLen::apply`]: over-length requests
/// rejected, trimmed or kept), and every served request small enough for the KV cache
/// ([`validate_workload`]). Run it before building a policy and build the policy's context
/// ([`policy_context`]) from the served `workload`, so that the policy plans with what it will be given.
pub fn served_workload(workload: &Workload, config: &SimConfig) -> Result<ServedWorkload> {
    config.scheduler.validate()?;
    check_non_negative("length_error", config.length_error)?;
    if config.length_error >= 1.0 {
        return Err(Error::config(format!("length_error must be < 1, got {}", config.length_error)));
    }
    config.model_len.validate()?;
    if workload.requests.is_empty() {
        return Err(Error::trace("the workload has no requests; at least one is needed"));
    }
    check_requests(workload)?;
    let mut served = config.model_len.apply(workload)?;
    densify_type_ids(&mut served.workload);
    if config.drop_oversize {
        let usable = config.scheduler.usable_tokens();
        let ServedWorkload { workload: w, positions, outcomes } = &mut served;
        let mut keep = 0;
        for i in 0..w.requests.len() {
            let r = w.requests[i];
            if oversize(&r, usable).is_some() {
                outcomes[positions[i]] = LengthOutcome::Rejected;
            } else {
                w.requests[keep] = r;
                positions[keep] = positions[i];
                keep += 1;
            }
        }
        w.requests.truncate(keep);
        positions.truncate(keep);
    }
    validate_workload(&served.workload, &config.scheduler)?;
    Ok(served)
}

/// Why `r` can never be served with `usable` tokens of KV cache, if it cannot.
fn oversize(r: &RequestSpec, usable: u64) -> Option<String> {
    let need = u64::from(r.prompt_len) + u64::from(r.output_len);
    let (p, o) = (r.prompt_len, r.output_len);
    if need > MAX_REQUEST_TOKENS {
        Some(format!(
            "needs {need} tokens of KV cache (prompt {p} + output {o}); a request may hold at most \
             {MAX_REQUEST_TOKENS} tokens"
        ))
    } else if need > usable {
        Some(format!(
            "needs {need} tokens of KV cache (prompt {p} + output {o}) but the cache holds only {usable} usable \
             tokens"
        ))
    } else {
        None
    }
}

/// The distinct `type_id` labels of `workload`, sorted.
fn distinct_type_ids(workload: &Workload) -> Vec<u32> {
    let mut labels: Vec<u32> = workload.requests.iter().filter_map(|r| r.type_id).collect();
    labels.sort_unstable();
    labels.dedup();
    labels
}

/// The rank of `label` among `labels` (sorted, distinct).
fn dense_type_id(labels: &[u32], label: u32) -> usize {
    labels.binary_search(&label).unwrap_or_else(|i| i)
}

/// Replaces each `type_id` by its rank among the distinct labels present (type ids are labels: 1-based, sparse
/// or huge ones such as `u32::MAX` become `0..k`), the indices [`policy_context`] gives the types it derives, so
/// a policy's per-type tables are sized by the number of types, never by a label's value.
fn densify_type_ids(workload: &mut Workload) {
    let labels = distinct_type_ids(workload);
    if labels.last().is_none_or(|&m| m as usize + 1 == labels.len()) {
        return; // already 0..k
    }
    for r in &mut workload.requests {
        if let Some(t) = r.type_id.as_mut() {
            *t = dense_type_id(&labels, *t) as u32;
        }
    }
}

/// Checks that `workload` can be simulated under `config`: arrivals sorted, finite and non-negative, lengths
/// at least 1, and every request small enough to fit the KV cache above the watermark. Run it before building a
/// policy from the workload, so an impossible request is reported before any policy sizes tables by it.
pub fn validate_workload(workload: &Workload, config: &SchedulerConfig) -> Result<()> {
    config.validate()?;
    check_requests(workload)?;
    let usable_tokens = config.usable_tokens();
    let mut bad = workload.requests.iter().filter_map(|r| oversize(r, usable_tokens).map(|why| (r.id, why)));
    if let Some((id, why)) = bad.next() {
        let others = bad.count();
        let others = match others {
            0 => "it is the only such request".to_string(),
            k => format!("{} of the {} requests can never fit", k + 1, workload.requests.len()),
        };
        return Err(Error::InvalidRequest {
            id,
            reason: format!(
                "{why}; {others}; raise kv_capacity, set max_model_len, or drop them (drop_oversize=True, \
                 --drop-oversize)"
            ),
        });
    }
    Ok(())
}

/// The checks on every request of a workload that do not depend on the KV cache: arrivals sorted, finite and
/// non-negative, lengths at least 1.
fn check_requests(workload: &Workload) -> Result<()> {
    let specs = &workload.requests;
    for w in specs.windows(2) {
        if w[1].arrival < w[0].arrival {
            return Err(Error::trace(format!(
                "workload arrivals must be sorted: request {} at {} comes after request {} at {}",
                w[1].id, w[1].arrival, w[0].id, w[0].arrival
            )));
        }
    }
    for s in specs {
        if !(s.arrival.is_finite() && s.arrival >= 0.0) {
            return Err(Error::trace(format!("request {}: arrival must be finite and >= 0, got {}", s.id, s.arrival)));
        }
        if s.prompt_len == 0 || s.output_len == 0 {
            return Err(Error::trace(format!("request {}: prompt and output lengths must be >= 1", s.id)));
        }
    }
    Ok(())
}

/// The time span a batch workload (one request, or all arriving at one instant) is planned over, seconds.
pub const BATCH_SPAN_S: f64 = 1.0;

/// Number of request types derived from an untyped trace for WAIT (quantile bins of the output length).
pub const TRACE_TYPE_BINS: usize = 8;

/// What a policy may know about a workload before it runs: the linearised time model, per-type means and rates
/// (for typed workloads), the observed length samples and the mean arrival rate.
///
/// Types: when every request carries a `type_id`, type j (the j-th distinct label in increasing order, which is
/// the label itself after [`served_workload`] renumbered them) gets the mean prompt and output lengths of its requests
/// (rounded) and the rate `count_j / span`, where span is the time from the first to the last arrival. Otherwise
/// (a trace) the types are derived by quantile-binning the output lengths into [`TRACE_TYPE_BINS`] bins
/// ([`crate::fluid::types_from_lengths`]).
pub fn policy_context(
    workload: &Workload,
    config: crate::scheduler::SchedulerConfig,
    time_model: &TimeModel,
) -> crate::policies::PolicyContext {
    let reqs = &workload.requests;
    // A batch (one request, or all at one instant) has no arrival rate: it is planned as if its requests arrived
    // over BATCH_SPAN_S, so WAIT and Nested WAIT get finite thresholds (and max_wait deadlines) and still run it.
    let (span, arrival_rate) = match (reqs.first(), reqs.last()) {
        (Some(a), Some(b)) if b.arrival > a.arrival => {
            let span = b.arrival - a.arrival;
            (Some(span), Some((reqs.len() - 1) as f64 / span))
        }
        (Some(_), Some(_)) => (Some(BATCH_SPAN_S), Some(reqs.len() as f64 / BATCH_SPAN_S)),
        _ => (None, None),
    };
    let mut types = Vec::new();
    if let Some(span) = span.filter(|_| reqs.iter().all(|r| r.type_id.is_some())) {
        // Sized by the distinct labels present, never by their values (a label may be any u32).
        let labels = distinct_type_ids(workload);
        let mut sums = vec![(0u64, 0u64, 0u64); labels.len()];
        for r in reqs {
            let e = &mut sums[dense_type_id(&labels, r.type_id.unwrap_or(0))];
            e.0 += 1;
            e.1 += u64::from(r.prompt_len);
            e.2 += u64::from(r.output_len);
        }
        types = sums
            .iter()
            .map(|&(n, p, o)| {
                let avg = |x: u64| if n == 0 { 1 } else { ((x as f64 / n as f64).round() as u32).max(1) };
                crate::workload::RequestType { prompt_len: avg(p), output_len: avg(o), rate: n as f64 / span }
            })
            .collect();
    } else if let Some(rate) = arrival_rate {
        let prompts: Vec<u32> = reqs.iter().map(|r| r.prompt_len).collect();
        let outputs: Vec<u32> = reqs.iter().map(|r| r.output_len).collect();
        types = crate::fluid::types_from_lengths(&prompts, &outputs, rate, TRACE_TYPE_BINS).unwrap_or_default();
    }
    let (d0, d1) = crate::fluid::exact_time::planning_line(time_model, &types, &config);
    crate::policies::PolicyContext {
        config,
        d0,
        d1,
        types,
        prompt_lengths: reqs.iter().map(|r| r.prompt_len).collect(),
        output_lengths: reqs.iter().map(|r| r.output_len).collect(),
        arrival_rate,
    }
}
