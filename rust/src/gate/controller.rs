//! [`AdmissionController`]: a policy's admission decision for an engine that owns its own memory.
//!
//! The engine (vLLM, through `fluidsched.vllm`) keeps its budgets, KV cache manager, prefix cache and
//! preemption; it tells the controller what happens to each request (added, admitted, put back at the head of
//! the queue, emitted tokens, finished) and asks once per step, with an [`AdmissionView`], which waiting
//! requests may start and which paused ones resume ([`Decision`]). The decision is the same [`WaitGate`] /
//! [`SegmentGate`] code the simulator's policies call; nothing here holds a block.
//!
//! Bookkeeping is incremental: every call is O(1) amortised in the number of requests, except the decision,
//! which is O(types + segments + what it admits) and, when WAIT's memory guard must do its exact check,
//! O(running · log running).
//!
//! Measured iteration times correct the time model: [`AdmissionController::observe_iteration`] keeps a moving
//! average of measured / predicted duration, and when it drifts more than 10 % from the correction in use the
//! thresholds are re-planned with `d0` and `d1` scaled by it (WAIT with fluid thresholds, Nested WAIT).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::fluid::{FluidModel, fluid_thresholds};
use crate::gate::{Entry, PAUSED, SegmentGate, WaitGate};
use crate::policies::kv_profile::{GuardPass, GuardVerdict, KvProfile, Projection};
use crate::policies::wait::{DEFAULT_HEADROOM, type_of};
use crate::policies::{NestedWaitPolicy, PolicyContext, WaitPolicy};
use crate::policy::PolicyOptions;

/// What the engine tells the controller once per step: a compact view of its state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionView {
    /// Seconds, on the clock the request arrival times use.
    pub now: f64,
    /// Requests running (paused ones included).
    pub num_running: u32,
    /// Free KV blocks.
    pub num_free_blocks: u32,
    /// Most requests running at once.
    pub max_num_seqs: u32,
    /// The previous step computed nothing (for Nested WAIT's deadlock breaker).
    pub stalled: bool,
}

/// The controller's answer for one step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Every waiting request may start (the pass-through policy): the engine's own rule decides alone.
    pub admit_all: bool,
    /// Waiting request ids that may start now, in order (the engine may still stop earlier on its own limits).
    pub admit: Vec<u64>,
    /// Paused request ids that resume now (Nested WAIT).
    pub resume: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    type_j: usize,
    arrival: f64,
    prompt_len: u32,
    hint: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Running {
    waiting: Waiting,
    /// Nested WAIT: segment tag (see [`PAUSED`]).
    tag: u32,
    /// WAIT's guard: projected tokens at admission (its final size is fixed from then on).
    projection: Projection,
    /// Output tokens emitted so far (reported through `on_outputs`).
    out: u32,
}

#[derive(Debug, Clone)]
enum Kind {
    AdmitAll,
    Wait { gate: WaitGate<u64>, type_output_lens: Vec<u32>, memory_guard: bool, replan: Option<WaitReplan> },
    Nested { gate: SegmentGate<u64>, base: (f64, f64) },
}

/// What WAIT needs to re-plan fluid thresholds for a corrected time model.
#[derive(Debug, Clone)]
struct WaitReplan {
    ctx: PolicyContext,
    headroom: f64,
}

/// A policy's admission decision, keyed by the engine's request ids (see the module documentation).
#[derive(Debug, Clone)]
pub struct AdmissionController {
    policy: &'static str,
    kind: Kind,
    waiting: HashMap<u64, Waiting>,
    running: HashMap<u64, Running>,
    /// Σ final blocks of the running requests (WAIT's quick guard bound).
    final_blocks: u64,
    block_size: u32,
    /// Blocks above the watermark (`ctx.config`'s): the capacity WAIT's guard plans with.
    usable_blocks: u32,
    /// The time model in use (planned `d0`, `d1`) and the correction applied to it.
    d0: f64,
    d1: f64,
    correction: f64,
    measured_ratio: Option<f64>,
    sizes: Vec<usize>,
    order: Vec<usize>,
    profile: KvProfile,
    decision: Decision,
}

/// Weight of the newest measurement in the measured / predicted iteration-time average.
const ITERATION_EWMA: f64 = 0.05;

/// Relative drift of the measured / predicted ratio that triggers a re-plan.
const RETIME_DRIFT: f64 = 0.1;

impl AdmissionController {
    /// Policies an engine can drive: `vllm` (admit all: the engine's own rule), `wait`, `nested-wait`.
    pub const POLICIES: &'static [&'static str] = &["vllm", "wait", "nested-wait"];

    /// The controller for `policy`, built from its options and what the run knows (the engine's limits in
    /// `ctx.config`, types and rates, length samples, the linear time model), exactly as a simulation builds it.
    pub fn new(policy: &str, options: PolicyOptions, ctx: &PolicyContext) -> Result<Self> {
        let (name, kind) = match policy {
            "vllm" => {
                options.finish(&[])?;
                ("vllm", Kind::AdmitAll)
            }
            "wait" => {
                let headroom = options.clone().f64("headroom", DEFAULT_HEADROOM)?;
                let p = WaitPolicy::from_options(options, ctx)?;
                let c = p.config();
                let gate = WaitGate::new(c.thresholds.clone(), c.admission, c.max_wait)?
                    .with_tracking(c.tracking, &c.rates)?;
                let replan = p.plan().map(|_| WaitReplan { ctx: ctx.clone(), headroom });
                let kind = Kind::Wait {
                    gate,
                    type_output_lens: c.type_output_lens.clone(),
                    memory_guard: c.memory_guard,
                    replan,
                };
                ("wait", kind)
            }
            "nested-wait" => {
                let p = NestedWaitPolicy::from_options(options, ctx)?;
                ("nested-wait", Kind::Nested { gate: p.gate().rekeyed(), base: (ctx.d0, ctx.d1) })
            }
            _ => {
                return Err(Error::config(format!(
                    "an engine can drive the policies {}, not {policy:?}",
                    Self::POLICIES.join(", ")
                )));
            }
        };
        Ok(AdmissionController {
            policy: name,
            kind,
            waiting: HashMap::new(),
            running: HashMap::new(),
            final_blocks: 0,
            block_size: ctx.config.block_size,
            usable_blocks: ctx.config.usable_blocks(),
            d0: ctx.d0,
            d1: ctx.d1,
            correction: 1.0,
            measured_ratio: None,
            sizes: Vec::new(),
            order: Vec::new(),
            profile: KvProfile::default(),
            decision: Decision::default(),
        })
    }

    /// The policy's name.
    pub fn policy(&self) -> &'static str {
        self.policy
    }

    /// Requests waiting to start (segment 1's entry for Nested WAIT).
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Requests started and not finished (paused ones included).
    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    /// Requests paused at a segment boundary.
    pub fn num_paused(&self) -> usize {
        match &self.kind {
            Kind::Nested { gate, .. } => gate.num_paused(),
            _ => 0,
        }
    }

    /// Current per-type (WAIT) or per-segment (Nested WAIT) thresholds; empty for the pass-through.
    pub fn thresholds(&self) -> Vec<u32> {
        match &self.kind {
            Kind::AdmitAll => Vec::new(),
            Kind::Wait { gate, .. } => gate.thresholds().to_vec(),
            Kind::Nested { gate, .. } => gate.plan().thresholds.clone(),
        }
    }

    /// The correction applied to the time model (measured / predicted iteration time; 1 until re-planned).
    pub fn time_correction(&self) -> f64 {
        self.correction
    }

    /// A new waiting request. `output_len_hint` is the known or predicted output length (WAIT files the request
    /// under the type nearest it, and its memory guard projects with it); `type_id` a type label, if known.
    pub fn add_request(
        &mut self,
        id: u64,
        arrival: f64,
        prompt_len: u32,
        output_len_hint: Option<u32>,
        type_id: Option<u32>,
    ) -> Result<()> {
        if self.waiting.contains_key(&id) || self.running.contains_key(&id) {
            return Err(Error::DuplicateRequest(id));
        }
        if !arrival.is_finite() {
            return Err(Error::InvalidRequest { id, reason: format!("arrival time must be finite, got {arrival}") });
        }
        if prompt_len == 0 || output_len_hint == Some(0) {
            return Err(Error::InvalidRequest { id, reason: "prompt and output lengths must be >= 1".into() });
        }
        let type_j = match &mut self.kind {
            Kind::AdmitAll => 0,
            Kind::Wait { gate, type_output_lens, .. } => {
                let j = type_of(gate.num_types(), type_output_lens, type_id, output_len_hint);
                gate.push_back(j, id, arrival);
                j
            }
            Kind::Nested { gate, .. } => {
                gate.arrive(id, arrival);
                0
            }
        };
        self.waiting.insert(id, Waiting { type_j, arrival, prompt_len, hint: output_len_hint });
        Ok(())
    }

    /// The engine started waiting request `id`, which has already emitted `num_output_tokens` (a resumed
    /// preempted request keeps its output).
    pub fn on_admitted(&mut self, id: u64, num_output_tokens: u32) -> Result<()> {
        let w = self.waiting.remove(&id).ok_or(Error::UnknownRequest(id))?;
        let mut tag = 0;
        match &mut self.kind {
            Kind::AdmitAll => {}
            Kind::Wait { gate, .. } => {
                gate.remove(w.type_j, id);
                gate.admitted(w.type_j);
            }
            Kind::Nested { gate, .. } => {
                tag = gate.segment_of(num_output_tokens);
                gate.take_waiting(id, tag);
            }
        }
        let remaining = w.hint.map_or(1, |d| d.saturating_sub(num_output_tokens)).max(1);
        let projection = Projection { base: w.prompt_len + num_output_tokens - 1, steps: remaining };
        self.final_blocks += projection.final_blocks(self.block_size);
        self.running.insert(id, Running { waiting: w, tag, projection, out: num_output_tokens });
        Ok(())
    }

    /// The engine put request `id` back at the head of the waiting queue (preempted, or skipped this step).
    pub fn requeue(&mut self, id: u64) -> Result<()> {
        let r = self.leave_running(id).ok_or(Error::UnknownRequest(id))?;
        let w = r.waiting;
        match &mut self.kind {
            Kind::AdmitAll => {}
            Kind::Wait { gate, .. } => {
                // Skipped by the engine (or preempted): it gets its unit of credit back.
                gate.refund(w.type_j);
                gate.push_front(w.type_j, id, w.arrival);
            }
            Kind::Nested { gate, .. } => gate.requeue_front(id, w.arrival),
        }
        self.waiting.insert(id, w);
        Ok(())
    }

    /// Request `id` finished or was aborted, wherever it was. Returns false if the controller did not hold it.
    pub fn finish(&mut self, id: u64) -> bool {
        if let Some(w) = self.waiting.remove(&id) {
            match &mut self.kind {
                Kind::AdmitAll => {}
                Kind::Wait { gate, .. } => {
                    gate.remove(w.type_j, id);
                }
                Kind::Nested { gate, .. } => {
                    gate.remove_waiting(id);
                }
            }
            return true;
        }
        self.leave_running(id).is_some()
    }

    fn leave_running(&mut self, id: u64) -> Option<Running> {
        let r = self.running.remove(&id)?;
        self.final_blocks -= r.projection.final_blocks(self.block_size);
        if let Kind::Nested { gate, .. } = &mut self.kind {
            gate.leave(id, r.tag);
        }
        Some(r)
    }

    /// Whether the policy reads output progress ([`Self::on_outputs`]): Nested WAIT (to pause at segment
    /// boundaries) and WAIT with its memory guard (to project each running request from where it is).
    pub fn wants_outputs(&self) -> bool {
        match &self.kind {
            Kind::AdmitAll => false,
            Kind::Wait { memory_guard, .. } => *memory_guard,
            Kind::Nested { .. } => true,
        }
    }

    /// Running request `ids[i]` has emitted `num_output_tokens[i]` tokens by time `now`. Returns the ids that
    /// just finished their segment and must pause (Nested WAIT; always empty otherwise). Unknown ids are
    /// ignored (requests the engine started before the controller knew them).
    pub fn on_outputs(&mut self, ids: &[u64], num_output_tokens: &[u32], now: f64) -> Vec<u64> {
        let mut paused = Vec::new();
        for (&id, &out) in ids.iter().zip(num_output_tokens) {
            let Some(r) = self.running.get_mut(&id) else { continue };
            r.out = out;
            if let Kind::Nested { gate, .. } = &mut self.kind {
                let tag = gate.pause_tag(id, r.tag, out, now);
                if tag != r.tag && tag & PAUSED != 0 {
                    paused.push(id);
                }
                r.tag = tag;
            }
        }
        paused
    }

    /// Whether running request `id` is paused at a segment boundary.
    pub fn is_paused(&self, id: u64) -> bool {
        self.running.get(&id).is_some_and(|r| r.tag & PAUSED != 0)
    }

    /// One measured iteration: `seconds` for `num_tokens` tokens. Re-plans the thresholds when the average ratio
    /// of measured to predicted time drifts (see the module documentation). Returns true if it re-planned.
    pub fn observe_iteration(&mut self, seconds: f64, num_tokens: u32) -> bool {
        let predicted = self.d0 + self.d1 * f64::from(num_tokens);
        if !(seconds.is_finite() && seconds > 0.0 && predicted > 0.0) {
            return false;
        }
        let ratio = seconds / predicted;
        let avg = match self.measured_ratio {
            Some(m) => (1.0 - ITERATION_EWMA) * m + ITERATION_EWMA * ratio,
            None => ratio,
        };
        self.measured_ratio = Some(avg);
        if (avg / self.correction - 1.0).abs() <= RETIME_DRIFT {
            return false;
        }
        let replanned = match &mut self.kind {
            Kind::AdmitAll => false,
            Kind::Wait { gate, replan: Some(rp), .. } => {
                let cfg = &rp.ctx.config;
                let model =
                    FluidModel::new(rp.ctx.types.clone(), self.d0 * avg, self.d1 * avg, cfg.usable_tokens() as f64)
                        .and_then(|m| m.with_block_size(cfg.block_size));
                match model.and_then(|m| fluid_thresholds(&m, f64::from(cfg.max_num_seqs), rp.headroom)) {
                    Ok(plan) => gate.set_thresholds(plan.thresholds).is_ok(),
                    Err(_) => false,
                }
            }
            Kind::Wait { replan: None, .. } => false,
            Kind::Nested { gate, base } => gate.retime(base.0 * avg, base.1 * avg),
        };
        if replanned {
            self.correction = avg;
        }
        replanned
    }

    /// The earliest future time a deadline lets a waiting or paused request in, so an idle engine wakes up.
    pub fn next_wakeup(&self, now: f64) -> Option<f64> {
        match &self.kind {
            Kind::AdmitAll => None,
            Kind::Wait { gate, .. } => gate.next_wakeup(now),
            Kind::Nested { gate, .. } => gate.next_wakeup(now),
        }
    }

    /// This step's decision. Paused requests it resumes count as resumed from now on.
    pub fn decide(&mut self, view: &AdmissionView) -> &Decision {
        // Whether the previous decision let requests in (their prefills were cut if that step came out empty).
        let admitted_before = !self.decision.admit.is_empty();
        self.decision.admit.clear();
        self.decision.resume.clear();
        self.decision.admit_all = matches!(self.kind, Kind::AdmitAll);
        let room = view.max_num_seqs.saturating_sub(view.num_running) as usize;
        match &self.kind {
            Kind::AdmitAll => {}
            Kind::Wait { .. } => self.decide_wait(view, room),
            Kind::Nested { .. } => self.decide_nested(view, room, admitted_before),
        }
        &self.decision
    }

    fn decide_wait(&mut self, view: &AdmissionView, room: usize) {
        let (mut sizes, mut order) = (std::mem::take(&mut self.sizes), std::mem::take(&mut self.order));
        if let Kind::Wait { gate, .. } = &mut self.kind {
            gate.cohort_sizes(view.now, &mut sizes);
        }
        let Kind::Wait { gate, memory_guard, .. } = &self.kind else { return };
        let memory_guard = *memory_guard;
        gate.admission_order(&sizes, &mut order);
        let capacity = u64::from(self.usable_blocks);
        let mut pass = GuardPass::new();
        let mut admit = std::mem::take(&mut self.decision.admit);
        'types: for &j in &order {
            for id in gate.head(j, sizes[j]) {
                if admit.len() >= room {
                    break 'types;
                }
                if memory_guard {
                    let w = &self.waiting[&id];
                    let p = Projection { base: w.prompt_len - 1, steps: w.hint.unwrap_or(1).max(1) };
                    let running = &self.running;
                    let verdict = pass.check(
                        &mut self.profile,
                        p,
                        self.block_size,
                        capacity,
                        || self.final_blocks,
                        false,
                        |profile| {
                            profile.clear(self.block_size);
                            for r in running.values() {
                                // The simulator's projection: `num_tokens − 1` now, growing to the known end.
                                let w = &r.waiting;
                                let steps = w.hint.map_or(1, |d| d.saturating_sub(r.out)).max(1);
                                profile.push(Projection { base: w.prompt_len + r.out - 1, steps });
                            }
                            profile.rebuild();
                        },
                    );
                    if verdict != GuardVerdict::Fits {
                        break 'types;
                    }
                }
                admit.push(id);
            }
        }
        self.decision.admit = admit;
        self.sizes = sizes;
        self.order = order;
    }

    fn decide_nested(&mut self, view: &AdmissionView, room: usize, admitted_before: bool) {
        let Kind::Nested { gate, .. } = &mut self.kind else { return };
        let used = f64::from(self.usable_blocks.saturating_sub(view.num_free_blocks)) * f64::from(self.block_size);
        gate.begin_step(view.now, used);
        for s in 0..gate.num_segments() {
            let count = match gate.entry_decision(s, view.now) {
                Entry::Skip | Entry::Pass => continue,
                Entry::Stop => break,
                Entry::Let(count) => count,
            };
            if s == 0 {
                self.decision.admit.extend(gate.head_waiting(count.min(room)));
            } else {
                for _ in 0..count {
                    let Some((id, tag)) = gate.resume(s) else { break };
                    if let Some(r) = self.running.get_mut(&id) {
                        r.tag = tag;
                    }
                    self.decision.resume.push(id);
                }
            }
        }
        // Deadlock breaker (the simulator's step 4, in the engine's terms): the previous decision let requests in
        // but the step computed nothing, every running request is paused and this decision resumes none: a cache
        // full of paused requests keeps the entry out until a deadline. Resume the longest-paused one now.
        let active = self.running.len() - gate.num_paused();
        let cut = view.stalled && admitted_before && !self.decision.admit.is_empty();
        if cut && active == 0 && self.decision.resume.is_empty() && gate.num_paused() > 0 {
            if let Some(s) = gate.longest_paused() {
                if let Some((id, tag)) = gate.resume(s) {
                    if let Some(r) = self.running.get_mut(&id) {
                        r.tag = tag;
                    }
                    self.decision.resume.push(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::OptionValue;
    use crate::scheduler::SchedulerConfig;

    fn ctx() -> PolicyContext {
        PolicyContext {
            config: SchedulerConfig { num_blocks: 1000, block_size: 16, ..SchedulerConfig::default() },
            d0: 0.01,
            d1: 1e-4,
            ..PolicyContext::default()
        }
    }

    fn view(now: f64) -> AdmissionView {
        AdmissionView { now, num_running: 0, num_free_blocks: 1000, max_num_seqs: 256, stalled: false }
    }

    #[test]
    fn wait_admits_a_cohort_at_its_threshold() {
        let opts = PolicyOptions::new("wait", [("thresholds".to_string(), OptionValue::List(vec![3.0]))]);
        let mut c = AdmissionController::new("wait", opts, &ctx()).unwrap();
        c.add_request(1, 0.0, 10, Some(5), None).unwrap();
        c.add_request(2, 0.1, 10, Some(5), None).unwrap();
        assert!(c.decide(&view(0.2)).admit.is_empty());
        c.add_request(3, 0.2, 10, Some(5), None).unwrap();
        assert_eq!(c.decide(&view(0.2)).admit, vec![1, 2, 3]);
        c.on_admitted(1, 0).unwrap();
        c.requeue(1).unwrap();
        assert_eq!(c.num_waiting(), 3);
        assert!(c.finish(2));
        assert!(!c.finish(2));
        assert_eq!(c.add_request(3, 0.0, 1, None, None), Err(Error::DuplicateRequest(3)));
        assert_eq!(c.on_admitted(9, 0), Err(Error::UnknownRequest(9)));
    }

    #[test]
    fn pass_through_admits_all() {
        let mut c = AdmissionController::new("vllm", PolicyOptions::new("vllm", []), &ctx()).unwrap();
        c.add_request(1, 0.0, 10, None, None).unwrap();
        assert!(c.decide(&view(0.0)).admit_all);
        assert!(AdmissionController::new("orca", PolicyOptions::new("orca", []), &ctx()).is_err());
    }
}
