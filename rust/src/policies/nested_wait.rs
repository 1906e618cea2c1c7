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

use crate::batch::{AddResult, MemoryRule, serve_running, step_budget, try_admit};
use crate::error::{Error, Result, check_positive};
use crate::fluid::{LengthDistribution, SegmentPlan, SegmentPlanInput, plan_segments, quantile_boundaries};
use crate::gate::{Entry, PAUSED, SegmentGate, SegmentGateOptions};
use crate::policies::PolicyContext;
use crate::policy::{Policy, PolicyOptions};
use crate::request::Slot;
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// The Nested WAIT policy.
#[derive(Debug, Clone)]
pub struct NestedWaitPolicy {
    /// The decision: plan, entry and boundary queues of slots, occupancy, rate estimate.
    gate: SegmentGate<Slot>,
    scratch: Vec<Slot>,
    /// Set when a ready or due entry was cut by KV capacity this step.
    entry_blocked: bool,
    /// A per-step token budget with chunked prefill instead of the engine's `max_num_batched_tokens`.
    token_budget: Option<u32>,
}

/// Default overflow probability δ of the safety buffer `z·√(V·T)`, `z = √(2 ln 1/δ)`. The paper's scale, 10⁻³,
/// still evicted at critical load (two-type mix at ρ = 1.0 with memory binding: 893 preemptions in 20,000
/// requests; LMSYS at 50 req/s: 48); 10⁻⁹ (a buffer 1.7× as large) evicted none in the same runs and cost at
/// most 0.6 % throughput (ten-type mix in overload). `-o delta=0.001` restores the paper's scale.
pub const DEFAULT_DELTA: f64 = 1e-9;

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
        "credit",
        "token_budget",
        "max_wait",
        "headroom",
    ];

    /// Builds the policy from its options and what the run knows: the arrival rate (`arrival_rate`, or the
    /// types' rates), the length distribution (samples `output_lengths` and `prompt_lengths`, or the types) and
    /// the time model (`d0 > 0`, `d1`).
    pub fn from_options(mut options: PolicyOptions, ctx: &PolicyContext) -> Result<Self> {
        let segments = options.list("segments")?;
        let num_segments = options.u32("num_segments", DEFAULT_NUM_SEGMENTS)?;
        let delta = options.f64("delta", DEFAULT_DELTA)?;
        let per_stage_caps = options.bool("per_stage_caps", false)?;
        let strict_break = options.bool("strict_break", false)?;
        let rate_estimation = options.bool("rate_estimation", false)?;
        let credit = options.bool("credit", true)?;
        let token_budget = super::wait::token_budget_option(&mut options, "nested-wait")?;
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
        let usable = cfg.usable_tokens();
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
        let usable = cfg.usable_tokens() as f64;
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
        let opts = SegmentGateOptions {
            per_stage_caps,
            strict_break,
            max_wait,
            rate_estimation: rate_estimation.then_some(alpha),
            credit,
        };
        Ok(NestedWaitPolicy {
            gate: SegmentGate::new(dist, input, plan, opts),
            scratch: Vec::new(),
            entry_blocked: false,
            token_budget,
        })
    }

    /// The plan in use (segments, thresholds, caps, safety buffer).
    pub fn plan(&self) -> &SegmentPlan {
        self.gate.plan()
    }

    /// The liveness deadline, seconds.
    pub fn max_wait(&self) -> f64 {
        self.gate.max_wait()
    }

    /// Requests paused at segment boundaries.
    pub fn num_paused(&self) -> usize {
        self.gate.num_paused()
    }

    /// The decision (plan, queues, occupancy).
    pub fn gate(&self) -> &SegmentGate<Slot> {
        &self.gate
    }

    /// A preempted request leaves its segment (or boundary queue) and re-queues at the head of segment 1's entry.
    fn requeue(&mut self, state: &SchedulerState, slot: Slot) {
        let r = state.request(slot);
        self.gate.leave(slot, r.policy_tag);
        self.gate.requeue_front(slot, r.arrival);
    }

    /// Pauses active requests that finished their segment, in running order.
    fn pause_finished_segments(&mut self, state: &mut SchedulerState) {
        self.scratch.clear();
        self.scratch.extend_from_slice(state.running());
        for &slot in &self.scratch {
            let r = state.request(slot);
            let tag = self.gate.pause_tag(slot, r.policy_tag, r.num_output_tokens, state.now());
            state.set_policy_tag(slot, tag);
        }
    }

    /// Schedules the active (not paused) running requests; returns the budget left and whether it preempted.
    fn schedule_active(&mut self, state: &mut SchedulerState, step: &mut Step, budget: u32) -> (u32, bool) {
        serve_running(
            state,
            step,
            budget,
            |r, budget| (r.policy_tag & PAUSED == 0).then(|| r.num_owed_tokens().min(budget)),
            |state, victim| self.requeue(state, victim),
        )
    }

    /// Lets up to `count` requests into segment 1 from the waiting queue; returns false if capacity cut the cohort.
    fn enter_first(&mut self, state: &mut SchedulerState, step: &mut Step, count: usize, budget: &mut u32) -> bool {
        let (_, chunk) = step_budget(state, self.token_budget);
        let rule = MemoryRule::WholePrefill { allocate_whole: false };
        for _ in 0..count {
            let Some(slot) = self.gate.front_waiting() else { return true };
            // The segment is set before admission: a preempted request keeps its progress.
            let seg = self.gate.segment_of(state.request(slot).num_output_tokens);
            if try_admit(state, step, slot, budget, rule, chunk) != AddResult::Admitted {
                return false;
            }
            self.gate.enter_first(seg);
            state.set_policy_tag(slot, seg);
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
            let Some(slot) = self.gate.front_paused(s) else { return true };
            if *budget == 0 || !state.allocate(slot, 1) {
                return false;
            }
            if let Some((_, tag)) = self.gate.resume(s) {
                state.set_policy_tag(slot, tag);
            }
            state.schedule(slot, 1, step);
            *budget -= 1;
        }
        true
    }

    /// The flowchart's entry loop (step 3 of the module documentation).
    fn enter_segments(&mut self, state: &mut SchedulerState, step: &mut Step, mut budget: u32) {
        let now = state.now();
        let used = f64::from(state.pool().num_used()) * f64::from(state.pool().block_size());
        self.gate.begin_step(now, used);
        for s in 0..self.gate.num_segments() {
            let count = match self.gate.entry_decision(s, now) {
                Entry::Skip | Entry::Pass => continue,
                Entry::Stop => break,
                Entry::Let(count) => count,
            };
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
        let Some(s) = self.gate.longest_paused() else { return };
        let Some(slot) = self.gate.front_paused(s) else { return };
        // Free a block by recompute-preempting the newest other running request if the cache is full.
        while !state.allocate(slot, 1) {
            let Some(&victim) = state.running().iter().rev().find(|&&v| v != slot) else {
                return;
            };
            state.preempt(victim, step);
            self.requeue(state, victim);
        }
        let (mut budget, _) = step_budget(state, self.token_budget);
        self.enter_later(state, step, s, 1, &mut budget);
    }
}

impl Policy for NestedWaitPolicy {
    fn name(&self) -> &'static str {
        "nested-wait"
    }

    fn enqueue(&mut self, state: &SchedulerState, slot: Slot) {
        self.gate.arrive(slot, state.request(slot).arrival);
    }

    fn remove_waiting(&mut self, _state: &SchedulerState, slot: Slot) -> bool {
        self.gate.remove_waiting(slot)
    }

    fn num_waiting(&self) -> usize {
        self.gate.num_waiting()
    }

    fn on_release(&mut self, state: &SchedulerState, slot: Slot) {
        // A running request leaves its segment (or its boundary queue, if paused).
        self.gate.leave(slot, state.request(slot).policy_tag);
    }

    fn schedule(&mut self, state: &mut SchedulerState, step: &mut Step) {
        self.pause_finished_segments(state);
        let (budget, _) = step_budget(state, self.token_budget);
        self.entry_blocked = false;
        let (budget, preempted) = self.schedule_active(state, step, budget);
        if !preempted {
            self.enter_segments(state, step, budget);
        }
        self.break_deadlock(state, step);
    }

    fn next_wakeup(&self, state: &SchedulerState) -> Option<f64> {
        self.gate.next_wakeup(state.now())
    }
}
