//! Nested WAIT, for unknown output lengths.
//!
//! The decode horizon is cut into segments (see [`crate::fluid::segments`]); a request is classified on the
//! fly: it enters segment 1 at admission, and when it has done `b_s` iterations without finishing it pauses —
//! staying in the running list with its KV blocks, not scheduled — until it is let into segment s+1. Short
//! requests finish and leave inside their segment. Output lengths are never read.
//!
//! Each step:
//! 1. Active requests that reached their segment's end pause (queued at the next segment's entry, FIFO).
//! 2. Every other running request gets its next tokens; when a KV block cannot be had, the newest running
//!    request (paused or not) is preempted by recompute, as in vLLM, and re-enters segment 1's queue at its
//!    head. No entry happens in a step that preempted.
//! 3. Entries, for s = 1, 2, … in order (the flowchart): an entry holding at least `n_s` requests is ready:
//!    segment 1 admits a cohort of `n_1`, a later segment lets its whole boundary queue in (a cohort of `n_s`
//!    would leave boundary queues critically loaded, since later segments get in only when segment 1 is
//!    ready); an empty entry is skipped; an entry holding fewer than `n_s` and not due (its oldest request has
//!    not waited `max_wait`) is not ready: segment 1's entry not ready stops every later segment this step
//!    (the flowchart's break); a later entry not ready is skipped, unless `strict_break`, the literal
//!    flowchart, where every not-ready entry stops all later ones. (Measured on the LMSYS sample at 50 req/s:
//!    the literal rule compounds, segment 3's entry was blocked whenever segment 1's or 2's held a partial
//!    queue, and 317 requests sat paused at one boundary for over 8 s, filling the cache.) A due entry lets in
//!    what it holds. With
//!    `per_stage_caps`, a segment also never holds more than its cap (the authors' occupancy cap, never 0).
//!    Segment 1 admissions never exceed the KV capacity (whole prefill above the watermark), `max_num_seqs` or
//!    the token budget; an entry cut by capacity does not stop later segments (their progress frees memory).
//! 4. If nothing could be scheduled although requests hold KV and a ready or due entry was cut by capacity,
//!    the longest-paused request resumes, recompute-preempting the newest other running request if it needs a
//!    block (so a cache full of paused requests cannot deadlock).
//!
//! Liveness and drain: [`Policy::next_wakeup`] returns the earliest entry deadline, so trailing requests are let
//! in after at most about `max_wait` per segment and every run ends with every request finished.
//!
//! With `rate_estimation`, an exponentially weighted mean of inter-arrival gaps (weight `ewma_alpha`) tracks
//! the arrival rate; when it drifts more than 10 % from the rate the plan was made for, the thresholds (and
//! caps) are recomputed for the new rate; the segments stay.

use std::collections::VecDeque;

use crate::error::{Error, Result, check_positive};
use crate::fluid::{LengthDistribution, SegmentPlan, SegmentPlanInput, plan_segments, quantile_boundaries};
use crate::policies::PolicyContext;
use crate::policy::{Policy, PolicyOptions};
use crate::request::Slot;
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// Marks a running request as paused at a segment boundary in its `policy_tag` (low bits: segment index).
const PAUSED: u32 = 1 << 31;

/// Relative drift of the estimated arrival rate that triggers a new plan.
const REPLAN_DRIFT: f64 = 0.1;

/// The Nested WAIT policy.
#[derive(Debug, Clone)]
pub struct NestedWaitPolicy {
    dist: LengthDistribution,
    input: SegmentPlanInput,
    plan: SegmentPlan,
    per_stage_caps: bool,
    strict_break: bool,
    max_wait: f64,
    rate_estimation: Option<f64>,
    mean_gap: f64,
    last_arrival: Option<f64>,
    /// Segment 1's entry: new arrivals and preempted requests.
    waiting: VecDeque<Slot>,
    /// `paused[s]`: requests (with their pause time) waiting to enter segment s (index 0 unused).
    paused: Vec<VecDeque<(Slot, f64)>>,
    scratch: Vec<Slot>,
    occupancy: Vec<u32>,
    /// Set when a ready or due entry was cut by KV capacity this step.
    entry_blocked: bool,
}

/// Default number of quantile segments.
pub const DEFAULT_NUM_SEGMENTS: u32 = 8;

/// Output lengths up to which Nested WAIT plans even when they exceed the cache (a length sample may describe
/// requests longer than a small test cache); beyond both, the length is refused.
const MAX_PLANNED_OUTPUT: u64 = 1 << 20;

impl NestedWaitPolicy {
    /// Options accepted by [`NestedWaitPolicy::from_options`].
    pub const OPTIONS: &'static [&'static str] = &[
        "segments",
        "num_segments",
        "delta",
        "per_stage_caps",
        "strict_break",
        "rate_estimation",
        "ewma_alpha",
        "max_wait",
        "headroom",
    ];

    /// Builds the policy from its options and what the run knows: the arrival rate (`arrival_rate`, or the
    /// types' rates), the length distribution (samples `output_lengths` and `prompt_lengths`, or the types) and
    /// the time model (`d0 > 0`, `d1`).
    pub fn from_options(mut options: PolicyOptions, ctx: &PolicyContext) -> Result<Self> {
        let segments = options.list("segments")?;
        let num_segments = options.u32("num_segments", DEFAULT_NUM_SEGMENTS)?;
        let delta = options.f64("delta", 1e-3)?;
        let per_stage_caps = options.bool("per_stage_caps", false)?;
        let strict_break = options.bool("strict_break", false)?;
        let rate_estimation = options.bool("rate_estimation", false)?;
        let alpha = options.f64("ewma_alpha", 0.02)?;
        let max_wait = options.opt_f64("max_wait")?;
        let headroom = options.f64("headroom", super::wait::DEFAULT_HEADROOM)?;
        options.finish(Self::OPTIONS)?;
        let rate = ctx.arrival_rate.or_else(|| (!ctx.types.is_empty()).then(|| ctx.types.iter().map(|t| t.rate).sum()));
        let Some(rate) = rate else {
            return Err(Error::config(
                "nested-wait needs the arrival rate: pass arrival_rate or request types with rates",
            ));
        };
        // The planner tabulates survival per output token (8 bytes each): refuse lengths that could never fit the
        // cache, beyond a table of MAX_PLANNED_OUTPUT entries, before sizing anything by them.
        let cfg = &ctx.config;
        let usable = u64::from(cfg.num_blocks - (cfg.watermark * f64::from(cfg.num_blocks)).floor() as u32)
            * u64::from(cfg.block_size);
        let longest = ctx.output_lengths.iter().copied().chain(ctx.types.iter().map(|t| t.output_len)).max();
        if let Some(longest) = longest.filter(|&l| u64::from(l) > usable.max(MAX_PLANNED_OUTPUT)) {
            return Err(Error::config(format!(
                "nested-wait: an output length of {longest} tokens can never fit the {usable} usable KV tokens"
            )));
        }
        let dist = if !ctx.output_lengths.is_empty() && !ctx.prompt_lengths.is_empty() {
            LengthDistribution::from_samples(&ctx.output_lengths, &ctx.prompt_lengths)?
        } else if !ctx.types.is_empty() {
            LengthDistribution::from_types(&ctx.types)?
        } else {
            return Err(Error::config(
                "nested-wait needs a length distribution: pass output_lengths and prompt_lengths samples, or types",
            ));
        };
        if ctx.d0 <= 0.0 {
            return Err(Error::config("nested-wait needs the time model: pass d0 > 0 and d1"));
        }
        if num_segments == 0 {
            return Err(Error::config("nested-wait: num_segments must be >= 1"));
        }
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(Error::config(format!("nested-wait: ewma_alpha must be in (0, 1], got {alpha}")));
        }
        let boundaries = match segments {
            Some(list) => {
                if list.iter().any(|&b| b < 1.0 || b.fract() != 0.0 || b > f64::from(u32::MAX)) {
                    return Err(Error::config("nested-wait: segments must be integer boundaries >= 1"));
                }
                list.iter().map(|&b| b as u32).collect()
            }
            None => quantile_boundaries(&dist, num_segments),
        };
        let cfg = &ctx.config;
        let usable = f64::from(cfg.num_blocks - (cfg.watermark * f64::from(cfg.num_blocks)).floor() as u32)
            * f64::from(cfg.block_size);
        let input = SegmentPlanInput {
            boundaries,
            total_rate: rate,
            d0: ctx.d0,
            d1: ctx.d1,
            capacity_tokens: usable,
            block_size: cfg.block_size,
            delta,
            headroom,
            max_concurrency: f64::from(cfg.max_num_seqs),
        };
        let plan = plan_segments(&dist, &input)?;
        let max_wait = match max_wait {
            Some(w) => check_positive("nested-wait: max_wait", w)?,
            None => super::wait::default_max_wait(&plan.thresholds, plan.entry_rates.iter().copied()),
        };
        let segments = plan.thresholds.len();
        Ok(NestedWaitPolicy {
            dist,
            input,
            plan,
            per_stage_caps,
            strict_break,
            max_wait,
            rate_estimation: rate_estimation.then_some(alpha),
            mean_gap: 1.0 / rate,
            last_arrival: None,
            waiting: VecDeque::new(),
            paused: vec![VecDeque::new(); segments],
            scratch: Vec::new(),
            occupancy: vec![0; segments],
            entry_blocked: false,
        })
    }

    /// The plan in use (segments, thresholds, caps, safety buffer).
    pub fn plan(&self) -> &SegmentPlan {
        &self.plan
    }

    /// The liveness deadline, seconds.
    pub fn max_wait(&self) -> f64 {
        self.max_wait
    }

    /// Requests paused at segment boundaries.
    pub fn num_paused(&self) -> usize {
        self.paused.iter().map(VecDeque::len).sum()
    }

    /// The segment a request that has emitted `out` tokens computes its next iteration in.
    fn segment_of(&self, out: u32) -> u32 {
        self.plan.boundaries.partition_point(|&b| b <= out) as u32
    }

    fn observe_arrival(&mut self, arrival: f64) {
        let Some(alpha) = self.rate_estimation else { return };
        if let Some(last) = self.last_arrival {
            let gap = (arrival - last).max(0.0);
            self.mean_gap = (1.0 - alpha) * self.mean_gap + alpha * gap;
            let estimate = 1.0 / self.mean_gap.max(1e-12);
            if (estimate / self.input.total_rate - 1.0).abs() > REPLAN_DRIFT {
                let input = SegmentPlanInput { total_rate: estimate, ..self.input.clone() };
                if let Ok(plan) = plan_segments(&self.dist, &input) {
                    self.plan = plan;
                    self.input = input;
                }
            }
        }
        self.last_arrival = Some(arrival.max(self.last_arrival.unwrap_or(arrival)));
    }

    /// Re-queues a preempted request at the head of segment 1's entry (dropping it from a boundary queue).
    fn requeue(&mut self, tag: u32, slot: Slot) {
        if tag & PAUSED != 0 {
            let q = &mut self.paused[(tag & !PAUSED) as usize];
            if let Some(pos) = q.iter().position(|&(s, _)| s == slot) {
                q.remove(pos);
            }
        }
        self.waiting.push_front(slot);
    }

    /// Pauses active requests that finished their segment; counts each segment's occupancy.
    fn pause_finished_segments(&mut self, state: &mut SchedulerState) {
        self.occupancy.iter_mut().for_each(|o| *o = 0);
        self.scratch.clear();
        self.scratch.extend_from_slice(state.running());
        let last = self.plan.boundaries.len() as u32;
        for &slot in &self.scratch {
            let r = state.request(slot);
            let tag = r.policy_tag;
            if tag & PAUSED == 0 && tag < last && r.num_output_tokens >= self.plan.boundaries[tag as usize] {
                state.set_policy_tag(slot, PAUSED | (tag + 1));
                self.paused[tag as usize + 1].push_back((slot, state.now()));
            } else if tag & PAUSED == 0 {
                self.occupancy[tag as usize] += 1;
            }
        }
    }

    /// Schedules the active (not paused) running requests; returns the budget left and whether it preempted.
    fn schedule_active(&mut self, state: &mut SchedulerState, step: &mut Step, mut budget: u32) -> (u32, bool) {
        let mut preempted = false;
        let mut i = 0;
        while i < state.running().len() && budget > 0 {
            let slot = state.running()[i];
            if state.request(slot).policy_tag & PAUSED != 0 {
                i += 1;
                continue;
            }
            let n = state.request(slot).num_owed_tokens().min(budget);
            let mut scheduled = false;
            loop {
                if state.allocate(slot, n) {
                    scheduled = true;
                    break;
                }
                let Some(&victim) = state.running().last() else { break };
                let tag = state.request(victim).policy_tag;
                if tag & PAUSED == 0 {
                    self.occupancy[tag as usize] -= 1;
                }
                state.preempt(victim, step);
                self.requeue(tag, victim);
                preempted = true;
                if victim == slot {
                    break;
                }
            }
            if !scheduled {
                break;
            }
            state.schedule(slot, n, step);
            budget -= n;
            i += 1;
        }
        (budget, preempted)
    }

    /// Lets requests into segment 1 from the waiting queue; returns false if capacity cut the cohort.
    fn enter_first(&mut self, state: &mut SchedulerState, step: &mut Step, count: usize, budget: &mut u32) -> bool {
        let cfg = *state.config();
        for _ in 0..count {
            let Some(&slot) = self.waiting.front() else { return true };
            if *budget == 0 || state.running().len() >= cfg.max_num_seqs as usize {
                return false;
            }
            let owed = state.request(slot).num_owed_tokens();
            let n =
                if cfg.enable_chunked_prefill || owed > cfg.max_num_batched_tokens { owed.min(*budget) } else { owed };
            if n > *budget || !state.fits_for_admission(slot, owed) {
                return false;
            }
            self.waiting.pop_front();
            let seg = self.segment_of(state.request(slot).num_output_tokens);
            state.set_policy_tag(slot, seg);
            self.occupancy[seg as usize] += 1;
            state.admit(slot, step);
            let ok = state.allocate(slot, n);
            debug_assert!(ok, "admission checked the whole prompt fits");
            state.schedule(slot, n, step);
            *budget -= n;
        }
        true
    }

    /// Resumes up to `count` paused requests into segment `s`; returns false if a block could not be had.
    fn enter_later(
        &mut self,
        state: &mut SchedulerState,
        step: &mut Step,
        s: usize,
        count: usize,
        budget: &mut u32,
    ) -> bool {
        for _ in 0..count {
            let Some(&(slot, _)) = self.paused[s].front() else {
                return true;
            };
            if *budget == 0 || !state.allocate(slot, 1) {
                return false;
            }
            self.paused[s].pop_front();
            state.set_policy_tag(slot, s as u32);
            self.occupancy[s] += 1;
            state.schedule(slot, 1, step);
            *budget -= 1;
        }
        true
    }

    /// The flowchart's entry loop (step 3 of the module documentation).
    fn enter_segments(&mut self, state: &mut SchedulerState, step: &mut Step, mut budget: u32) {
        let now = state.now();
        for s in 0..self.plan.thresholds.len() {
            let (len, oldest) = if s == 0 {
                (self.waiting.len(), self.waiting.front().map(|&slot| state.request(slot).arrival))
            } else {
                (self.paused[s].len(), self.paused[s].front().map(|&(_, t)| t))
            };
            let Some(oldest) = oldest else { continue };
            let n = self.plan.thresholds[s] as usize;
            // The same expression as `next_wakeup`, so a wake-up at the deadline always finds the entry due.
            let due = oldest + self.max_wait <= now;
            if len < n && !due {
                if s == 0 || self.strict_break {
                    break;
                }
                continue;
            }
            // Segment 1 admits a cohort of n_1; a later entry, once ready, lets its whole queue in.
            let mut count = if s == 0 { len.min(n) } else { len };
            if self.per_stage_caps {
                let room = self.plan.caps[s].saturating_sub(self.occupancy[s]) as usize;
                if room == 0 {
                    break;
                }
                count = count.min(room);
            }
            let whole = if s == 0 {
                self.enter_first(state, step, count, &mut budget)
            } else {
                self.enter_later(state, step, s, count, &mut budget)
            };
            self.entry_blocked |= !whole;
        }
    }

    /// Step 4: resumes the longest-paused request when nothing else can run.
    fn break_deadlock(&mut self, state: &mut SchedulerState, step: &mut Step) {
        if !step.is_empty() || state.running().is_empty() || !self.entry_blocked {
            return;
        }
        let oldest = (1..self.paused.len())
            .filter_map(|s| self.paused[s].front().map(|&(_, t)| (s, t)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((s, _)) = oldest else { return };
        let slot = self.paused[s][0].0;
        // Free a block by recompute-preempting the newest other running request if the cache is full.
        while !state.allocate(slot, 1) {
            let Some(&victim) = state.running().iter().rev().find(|&&v| v != slot) else {
                return;
            };
            let tag = state.request(victim).policy_tag;
            state.preempt(victim, step);
            self.requeue(tag, victim);
        }
        let mut budget = state.config().max_num_batched_tokens;
        self.enter_later(state, step, s, 1, &mut budget);
    }
}

impl Policy for NestedWaitPolicy {
    fn name(&self) -> &'static str {
        "nested-wait"
    }

    fn enqueue(&mut self, state: &SchedulerState, slot: Slot) {
        self.observe_arrival(state.request(slot).arrival);
        self.waiting.push_back(slot);
    }

    fn remove_waiting(&mut self, _state: &SchedulerState, slot: Slot) -> bool {
        match self.waiting.iter().position(|&s| s == slot) {
            Some(pos) => self.waiting.remove(pos).is_some(),
            None => false,
        }
    }

    fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    fn on_release(&mut self, state: &SchedulerState, slot: Slot) {
        // A running request aborted while paused leaves its boundary queue.
        let tag = state.request(slot).policy_tag;
        if tag & PAUSED != 0 {
            let q = &mut self.paused[(tag & !PAUSED) as usize];
            if let Some(pos) = q.iter().position(|&(s, _)| s == slot) {
                q.remove(pos);
            }
        }
    }

    fn schedule(&mut self, state: &mut SchedulerState, step: &mut Step) {
        self.pause_finished_segments(state);
        let budget = state.config().max_num_batched_tokens;
        self.entry_blocked = false;
        let (budget, preempted) = self.schedule_active(state, step, budget);
        if !preempted {
            self.enter_segments(state, step, budget);
        }
        self.break_deadlock(state, step);
    }

    fn next_wakeup(&self, state: &SchedulerState) -> Option<f64> {
        let first = self.waiting.front().map(|&s| state.request(s).arrival);
        let later = self.paused.iter().filter_map(|q| q.front().map(|&(_, t)| t));
        first
            .into_iter()
            .chain(later)
            .map(|t| t + self.max_wait)
            // Only future deadlines: a passed one is blocked by segment 1's entry, whose own deadline is pending.
            .filter(|&t| t > state.now())
            .min_by(f64::total_cmp)
    }
}
