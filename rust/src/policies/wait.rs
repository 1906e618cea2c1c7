//! WAIT (Waiting for Accumulated Inference Threshold), for known output lengths.
//!
//! Each request type j has a waiting queue and a threshold `n_j`. Each step:
//! 1. Every running request gets its next tokens (work conserving: in-flight requests decode even when no type
//!    is ready). If a KV block cannot be had (the time model or lengths were wrong), the newest running request
//!    is preempted by recompute, as in vLLM, and put back at the head of its type's queue; the scheduler counts
//!    it as a preemption. No admission happens in a step that preempted.
//! 2. Admission (the paper's flowchart): a type whose queue holds at least `n_j` requests admits a cohort of
//!    `n_j` (oldest first). Variants: `any-ready` (the authors' `modified_booking_limit`: when any type is
//!    ready, every type admits up to `n_j`) and `all-ready` (`booking_limit`: only when every type is ready).
//! 3. Liveness: a type whose oldest waiting request has waited `max_wait` seconds admits what it has (up to
//!    `n_j`), so trailing requests never wait forever and every run drains; [`Policy::next_wakeup`] returns
//!    that deadline so an idle simulator wakes up for it.
//!
//! Admission never exceeds the KV capacity (whole prefill above the watermark), `max_num_seqs` or the token
//! budget. A cohort that does not fit whole is admitted in part (its oldest members, until the first one that
//! does not fit); the rest stay at the head of the queue and count toward the next cohort.
//!
//! Memory guard (`memory_guard`, default on): WAIT knows output lengths, so it also admits a request only if the
//! projected KV peak of the running requests plus the cohort so far plus this request, each growing one token per
//! step until its known last token, stays within the blocks above the watermark (the check MC-SF uses,
//! [`super::kv_profile`]). Thresholds from the fluid model keep the batch at the equilibrium; the guard makes the
//! "no eviction" property hold even when the linear time model behind the thresholds is off (with the profiled
//! Llama-2-7B model, iterations with long contexts run slower than the linear fit, so more requests pile up than
//! the fluid model planned for). With exact lengths and the guard on, WAIT never preempts; with wrong lengths it
//! may, and each preemption is counted. `memory_guard=false` gives the admission rule alone.
//!
//! With `stall`, the authors' behaviour: in-flight requests run only in steps that admit something (or when
//! nothing waits).
//!
//! A request whose `type_id` is missing or out of range is given the type whose output length is nearest its
//! output-length hint (ties: the shorter type); without a hint, or without known type lengths, the last type.

use crate::batch::{AddResult, MemoryRule, serve_running, step_budget, try_admit_with};
use crate::error::{Error, Result};
use crate::fluid::{FluidModel, ThresholdPlan, fluid_thresholds, reference_thresholds};
pub use crate::gate::AdmissionRule;
use crate::gate::{CohortTracking, WaitGate};
use crate::policies::PolicyContext;
use crate::policies::kv_profile::{GuardPass, GuardVerdict, KvProfile, ProfileTracker, Projection};
use crate::policy::{Policy, PolicyOptions};
use crate::request::{Request, Slot};
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// Everything WAIT runs on, once thresholds are chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitConfig {
    /// Threshold `n_j` of each type (>= 1).
    pub thresholds: Vec<u32>,
    /// Output length of each type, used to place requests without a valid `type_id` (may be empty).
    pub type_output_lens: Vec<u32>,
    /// Admission rule.
    pub admission: AdmissionRule,
    /// The authors' stalling: no decode in steps that admit nothing while requests wait.
    pub stall: bool,
    /// Liveness: seconds after which a type's partial cohort is admitted.
    pub max_wait: f64,
    /// Admit only while the projected KV peak (known lengths) fits above the watermark.
    pub memory_guard: bool,
    /// Cohort sizing beyond the paper's rule (credit, online rates, backlog drain).
    pub tracking: CohortTracking,
    /// Planned arrival rate of each type (may be empty: unknown).
    pub rates: Vec<f64>,
    /// A per-step token budget with chunked prefill (Sarathi-Serve's batching) instead of the engine's
    /// `max_num_batched_tokens`: WAIT decides who starts, the budget how their prompts are batched.
    pub token_budget: Option<u32>,
}

/// The WAIT policy.
#[derive(Debug, Clone)]
pub struct WaitPolicy {
    config: WaitConfig,
    plan: Option<ThresholdPlan>,
    /// The admission decision: per-type queues of slots, thresholds, rule, deadline.
    gate: WaitGate<Slot>,
    victims: Vec<Slot>,
    profile: KvProfile,
    /// The running requests' projection, kept across steps (loaded into `profile` for an exact check).
    tracker: ProfileTracker,
    /// Bumped whenever the running set changes (admission, finish, abort, preemption).
    version: u64,
    /// Steps scheduled so far.
    steps: u64,
    /// `(version, step)` of the latest exact memory-guard rejection.
    guard_blocked: Option<(u64, u64)>,
    /// Reused per-step buffers (cohort size per type; types in admission order): no allocation per step.
    sizes: Vec<usize>,
    order: Vec<usize>,
}

/// After an exact memory-guard rejection, steps during which an unchanged running set is not re-checked.
const GUARD_RECHECK_STEPS: u64 = 8;

/// Default relative margin of the target iteration time above the stability bound.
pub const DEFAULT_HEADROOM: f64 = 1.0;

/// Default liveness deadline, in multiples of the slowest cohort interval `max_j n_j / λ_j`.
pub const MAX_WAIT_INTERVALS: f64 = 20.0;

impl WaitPolicy {
    /// Options accepted by [`WaitPolicy::from_options`].
    pub const OPTIONS: &'static [&'static str] = &[
        "thresholds",
        "total_limit",
        "admission",
        "stall",
        "max_wait",
        "headroom",
        "memory_guard",
        "credit",
        "rate_estimation",
        "ewma_alpha",
        "backlog",
        "token_budget",
    ];

    /// A policy from explicit settings.
    pub fn new(config: WaitConfig) -> Result<Self> {
        let gate = WaitGate::new(config.thresholds.clone(), config.admission, config.max_wait)?
            .with_tracking(config.tracking, &config.rates)?;
        if !config.type_output_lens.is_empty() && config.type_output_lens.len() != config.thresholds.len() {
            return Err(Error::config("wait: type_output_lens must have one entry per threshold"));
        }
        Ok(WaitPolicy {
            config,
            plan: None,
            gate,
            victims: Vec::new(),
            profile: KvProfile::default(),
            tracker: ProfileTracker::default(),
            version: 0,
            steps: 0,
            guard_blocked: None,
            sizes: Vec::new(),
            order: Vec::new(),
        })
    }

    /// Builds the policy from its options and what the run knows. Thresholds come from, in order: the
    /// `thresholds` list, the authors' rule from `total_limit`, or the fluid model (needs types with rates and
    /// `d0 > 0`).
    pub fn from_options(mut options: PolicyOptions, ctx: &PolicyContext) -> Result<Self> {
        let explicit = options.list("thresholds")?;
        let total_limit = options.opt_f64("total_limit")?;
        let admission = AdmissionRule::parse(&options.choice("admission", AdmissionRule::NAMES, "per-type")?)?;
        let stall = options.bool("stall", false)?;
        let max_wait = options.opt_f64("max_wait")?;
        let headroom = options.f64("headroom", DEFAULT_HEADROOM)?;
        let memory_guard = options.bool("memory_guard", true)?;
        let d = CohortTracking::DEFAULT;
        let credit = options.bool("credit", d.credit)?;
        let rate_estimation = options.bool("rate_estimation", d.rate_estimation.is_some())?;
        let alpha = options.f64("ewma_alpha", d.rate_estimation.unwrap_or(0.05))?;
        let backlog = options.f64("backlog", d.backlog)?;
        let token_budget = token_budget_option(&mut options, "wait")?;
        options.finish(Self::OPTIONS)?;
        let tracking = CohortTracking { credit, rate_estimation: rate_estimation.then_some(alpha), backlog };
        let types = &ctx.types;
        let mut plan = None;
        let thresholds: Vec<u32> = match (explicit, total_limit) {
            (Some(_), Some(_)) => return Err(Error::config("wait: pass either thresholds or total_limit, not both")),
            (Some(list), None) => {
                if !types.is_empty() && list.len() != types.len() {
                    return Err(Error::config(format!(
                        "wait: {} thresholds given for {} request types",
                        list.len(),
                        types.len()
                    )));
                }
                if list.iter().any(|&x| x < 1.0 || x.fract() != 0.0 || x > f64::from(u32::MAX)) {
                    return Err(Error::config("wait: thresholds must be integers >= 1"));
                }
                list.iter().map(|&x| x as u32).collect()
            }
            (None, Some(l)) => reference_thresholds(types, l).map_err(|e| {
                Error::config(format!("wait: total_limit needs the request types with their rates ({e})"))
            })?,
            (None, None) => {
                if types.is_empty() || ctx.d0 <= 0.0 {
                    return Err(Error::config(
                        "wait: fluid thresholds need request types with arrival rates and the time model (d0 > 0, d1); \
                         pass them, or give thresholds=[n_1, ...] or total_limit=L",
                    ));
                }
                let cfg = &ctx.config;
                let usable = cfg.usable_tokens() as f64;
                let model = FluidModel::new(types.clone(), ctx.d0, ctx.d1, usable)?.with_block_size(cfg.block_size)?;
                let p = fluid_thresholds(&model, f64::from(cfg.max_num_seqs), headroom)?;
                let n = p.thresholds.clone();
                plan = Some(p);
                n
            }
        };
        let max_wait = match max_wait {
            Some(w) => w,
            None => default_max_wait(&thresholds, types.iter().map(|t| t.rate)),
        };
        let config = WaitConfig {
            thresholds,
            type_output_lens: types.iter().map(|t| t.output_len).collect(),
            admission,
            stall,
            max_wait,
            memory_guard,
            tracking,
            rates: types.iter().map(|t| t.rate).collect(),
            token_budget,
        };
        let mut policy = WaitPolicy::new(config)?;
        policy.plan = plan;
        Ok(policy)
    }

    /// The settings in use.
    pub fn config(&self) -> &WaitConfig {
        &self.config
    }

    /// The fluid plan the thresholds came from (None for explicit or reference thresholds).
    pub fn plan(&self) -> Option<&ThresholdPlan> {
        self.plan.as_ref()
    }

    /// The type WAIT files a request under (see the module documentation).
    pub fn type_of(&self, r: &Request) -> usize {
        type_of(self.config.thresholds.len(), &self.config.type_output_lens, r.type_id, r.output_len_hint)
    }

    /// The admission decision (per-type queues, thresholds, deadline).
    pub fn gate(&self) -> &WaitGate<Slot> {
        &self.gate
    }

    /// Admits up to `sizes[j]` of each type, oldest queue heads first; stops at the first request that does not
    /// fit (KV above the watermark, `max_num_seqs`, token budget, memory guard).
    fn admit(&mut self, state: &mut SchedulerState, step: &mut Step, sizes: &[usize], mut budget: u32) {
        let mut order = std::mem::take(&mut self.order);
        self.gate.admission_order(sizes, &mut order);
        let (_, chunk) = step_budget(state, self.config.token_budget);
        let rule = MemoryRule::WholePrefill { allocate_whole: false };
        // The running requests' projection is built lazily: only once a candidate passes the cheaper checks, and
        // only if the quick bound (every request at its final size at once) does not already settle it.
        let mut pass = GuardPass::new();
        'types: for &j in &order {
            for _ in 0..sizes[j] {
                let Some(slot) = self.gate.front(j) else { break };
                let guard = self.config.memory_guard;
                let added = try_admit_with(state, step, slot, &mut budget, rule, chunk, |st| {
                    !guard || self.guard_admits(st, slot, &mut pass)
                });
                if added != AddResult::Admitted {
                    break 'types;
                }
                self.gate.pop_front(j);
                self.gate.admitted(j);
                self.version += 1;
            }
        }
        self.order = order;
    }

    /// The memory guard for candidate `slot` ([`GuardPass`]), with a short backoff: after an exact rejection, an
    /// unchanged running set is not re-checked for a few steps (being more conservative is always memory-safe).
    fn guard_admits(&mut self, state: &SchedulerState, slot: Slot, pass: &mut GuardPass) -> bool {
        let bs = state.pool().block_size();
        let skip_exact =
            self.guard_blocked.is_some_and(|(v, at)| v == self.version && self.steps < at + GUARD_RECHECK_STEPS);
        let (tracker, steps) = (&mut self.tracker, self.steps);
        let verdict = pass.check(
            &mut self.profile,
            projection(state.request(slot)),
            bs,
            u64::from(state.pool().usable_blocks()),
            || state.running().iter().map(|&r| projection(state.request(r)).final_blocks(bs)).sum(),
            skip_exact,
            |profile| {
                let items = state.running().iter().map(|&r| (r, projection(state.request(r))));
                tracker.load(bs, steps, items, profile);
            },
        );
        if verdict == GuardVerdict::Exceeds {
            self.guard_blocked = Some((self.version, self.steps));
        }
        verdict == GuardVerdict::Fits
    }
}

/// The type WAIT files a request under: its `type_id` when valid, else the type whose output length is nearest
/// its output-length hint (ties: the shorter type); without a hint, or without known type lengths, the last type.
pub fn type_of(num_types: usize, type_output_lens: &[u32], type_id: Option<u32>, hint: Option<u32>) -> usize {
    if let Some(t) = type_id.filter(|&t| (t as usize) < num_types) {
        return t as usize;
    }
    match hint {
        Some(hint) if !type_output_lens.is_empty() => (0..num_types)
            .min_by_key(|&j| (type_output_lens[j].abs_diff(hint), type_output_lens[j]))
            .unwrap_or(num_types - 1),
        _ => num_types - 1,
    }
}

/// A request's projected KV growth for the memory guard: `num_tokens − 1 + τ` tokens for its remaining known
/// output (at least one more step; without a hint, one step).
fn projection(r: &Request) -> Projection {
    let remaining = r.output_len_hint.map_or(1, |d| d.saturating_sub(r.num_output_tokens)).max(1);
    Projection { base: r.num_tokens() - 1, steps: remaining }
}

/// The `token_budget` option (an integer >= 1), shared by WAIT and Nested WAIT.
pub(crate) fn token_budget_option(options: &mut PolicyOptions, policy: &str) -> Result<Option<u32>> {
    match options.opt_f64("token_budget")? {
        None => Ok(None),
        Some(b) if b >= 1.0 && b.fract() == 0.0 && b <= f64::from(u32::MAX) => Ok(Some(b as u32)),
        Some(b) => Err(Error::config(format!("{policy}: token_budget must be an integer >= 1, got {b}"))),
    }
}

/// `MAX_WAIT_INTERVALS × max_j n_j / λ_j` over the types with `n_j ≥ 2` (the others never wait), or 1 s when
/// no such type has a known rate.
pub(crate) fn default_max_wait(thresholds: &[u32], rates: impl Iterator<Item = f64>) -> f64 {
    let interval = thresholds
        .iter()
        .zip(rates)
        .filter(|&(&n, r)| n >= 2 && r > 0.0)
        .map(|(&n, r)| f64::from(n) / r)
        .fold(0.0, f64::max);
    if interval > 0.0 { MAX_WAIT_INTERVALS * interval } else { 1.0 }
}

impl Policy for WaitPolicy {
    fn name(&self) -> &'static str {
        "wait"
    }

    fn needs_output_lengths(&self) -> bool {
        true
    }

    fn enqueue(&mut self, state: &SchedulerState, slot: Slot) {
        let r = state.request(slot);
        self.gate.push_back(self.type_of(r), slot, r.arrival);
    }

    fn remove_waiting(&mut self, state: &SchedulerState, slot: Slot) -> bool {
        self.gate.remove(self.type_of(state.request(slot)), slot)
    }

    fn num_waiting(&self) -> usize {
        self.gate.num_waiting()
    }

    fn schedule(&mut self, state: &mut SchedulerState, step: &mut Step) {
        self.steps += 1;
        let mut sizes = std::mem::take(&mut self.sizes);
        self.gate.cohort_sizes(state.now(), &mut sizes);
        let admitting = sizes.iter().any(|&c| c > 0);
        if self.config.stall && !admitting && self.gate.num_waiting() > 0 {
            self.sizes = sizes;
            return;
        }
        let mut victims = std::mem::take(&mut self.victims);
        victims.clear();
        let (budget, chunk) = step_budget(state, self.config.token_budget);
        let (budget, preempted) = serve_running(
            state,
            step,
            budget,
            |r, left| chunk(r.num_owed_tokens(), left),
            |_, slot| victims.push(slot),
        );
        // Victims come newest first: pushing each to the front leaves the oldest at the head.
        if !victims.is_empty() {
            self.version += 1;
        }
        for &slot in &victims {
            let r = state.request(slot);
            self.gate.push_front(self.type_of(r), slot, r.arrival);
        }
        self.victims = victims;
        if !preempted && admitting {
            self.admit(state, step, &sizes, budget);
        }
        self.sizes = sizes;
    }

    fn on_release(&mut self, _state: &SchedulerState, _slot: Slot) {
        self.version += 1;
    }

    fn next_wakeup(&self, state: &SchedulerState) -> Option<f64> {
        self.gate.next_wakeup(state.now())
    }
}
