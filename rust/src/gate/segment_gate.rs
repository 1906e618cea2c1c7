//! [`SegmentGate`]: Nested WAIT's decision, free of memory and of any engine.
//!
//! The gate holds the segment plan (boundaries, per-segment thresholds and caps), segment 1's entry queue (new
//! arrivals and preempted requests), the boundary queues of requests paused between segments, each segment's
//! occupancy, and the online arrival-rate estimate that re-plans the thresholds. For each segment in turn it
//! says whether its entry is let in now, and how many ([`SegmentGate::entry_decision`]); it says when a request
//! pauses ([`SegmentGate::pause_tag`]). The simulator's [`crate::policies::NestedWaitPolicy`] (keys are
//! scheduler slots) and the engine-facing [`super::AdmissionController`] (keys are request ids) both call it.
//!
//! A request's segment travels as a `u32` tag: the low bits are the segment index, [`PAUSED`] marks a request
//! that finished its segment and waits at the next one's entry.

use std::hash::Hash;

use crate::keyed_deque::KeyedDeque;

use crate::fluid::{LengthDistribution, SegmentPlan, SegmentPlanInput, plan_segments};

/// Marks a running request as paused at a segment boundary in its tag (low bits: the segment it waits for).
pub const PAUSED: u32 = 1 << 31;

/// Relative drift of the estimated arrival rate that triggers a new plan.
const REPLAN_DRIFT: f64 = 0.1;

/// Segment 1's credit stops once KV in use plus the safety buffer passes this fraction of the capacity.
/// Measured on the two-type mix with memory binding (`max_num_seqs` 4096): 1.0 let the credit fill the cache
/// (1,470 preemptions at ρ = 1.2); 0.9 keeps the paper rule's zero preemptions at ρ = 1.1–1.2 and loses no
/// throughput where `max_num_seqs` binds instead.
const CREDIT_ROOM: f64 = 0.9;

/// What one segment's entry does this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Nothing waits there: go on to the next segment.
    Skip,
    /// Not ready and not due: segment 1's entry (or any entry under `strict_break`) stops every later one.
    Stop,
    /// Not ready and not due: a later entry is passed over.
    Pass,
    /// Let up to this many in (segment 1: a cohort of `n_1`; later segments: the whole boundary queue), capped
    /// by the segment's room under `per_stage_caps`.
    Let(usize),
}

/// Nested WAIT's queues, plan and occupancy: the decision.
#[derive(Debug, Clone)]
pub struct SegmentGate<K> {
    dist: LengthDistribution,
    input: SegmentPlanInput,
    plan: SegmentPlan,
    per_stage_caps: bool,
    strict_break: bool,
    max_wait: f64,
    rate_estimation: Option<f64>,
    mean_gap: f64,
    last_arrival: Option<f64>,
    /// Segment 1's entry: keys with their arrival times.
    entry: KeyedDeque<K, f64>,
    /// Admission credit of segment 1's entry (see [`SegmentGateOptions::credit`]).
    credit: Option<f64>,
    last_decision: Option<f64>,
    /// `paused[s]`: keys (with their pause time) waiting to enter segment s (index 0 unused).
    paused: Vec<KeyedDeque<K, f64>>,
    occupancy: Vec<u32>,
}

/// How a [`SegmentGate`] behaves beyond its plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentGateOptions {
    /// A segment never holds more than its cap (the authors' occupancy cap).
    pub per_stage_caps: bool,
    /// The literal flowchart: any entry not ready stops every later one.
    pub strict_break: bool,
    /// Liveness deadline, seconds.
    pub max_wait: f64,
    /// Weight of the arrival-gap moving average when estimating the rate online (None: the planned rate).
    pub rate_estimation: Option<f64>,
    /// Segment 1's entry also admits `⌊credit⌋`, where the credit grows by `λ·Δt` per decision (Δt: the measured
    /// time since the previous one), as WAIT's does: admission keeps up with arrivals when `n_1` is rounded.
    pub credit: bool,
}

impl<K: Copy + Eq + Hash> SegmentGate<K> {
    /// A gate over `plan`, made from `input` and `dist` (kept to re-plan when the arrival rate drifts).
    pub fn new(dist: LengthDistribution, input: SegmentPlanInput, plan: SegmentPlan, opts: SegmentGateOptions) -> Self {
        let segments = plan.thresholds.len();
        SegmentGate {
            mean_gap: 1.0 / input.total_rate,
            dist,
            input,
            plan,
            per_stage_caps: opts.per_stage_caps,
            strict_break: opts.strict_break,
            max_wait: opts.max_wait,
            rate_estimation: opts.rate_estimation,
            last_arrival: None,
            entry: KeyedDeque::default(),
            credit: opts.credit.then_some(0.0),
            last_decision: None,
            paused: (0..segments).map(|_| KeyedDeque::new()).collect(),
            occupancy: vec![0; segments],
        }
    }

    /// An empty gate with this gate's plan, options and rate estimate, keyed by `K2` (for example request ids
    /// instead of scheduler slots).
    pub fn rekeyed<K2: Copy + PartialEq>(&self) -> SegmentGate<K2> {
        SegmentGate {
            dist: self.dist.clone(),
            input: self.input.clone(),
            plan: self.plan.clone(),
            per_stage_caps: self.per_stage_caps,
            strict_break: self.strict_break,
            max_wait: self.max_wait,
            rate_estimation: self.rate_estimation,
            mean_gap: self.mean_gap,
            last_arrival: self.last_arrival,
            entry: KeyedDeque::default(),
            credit: self.credit.map(|_| 0.0),
            last_decision: None,
            paused: (0..self.paused.len()).map(|_| KeyedDeque::default()).collect(),
            occupancy: vec![0; self.occupancy.len()],
        }
    }

    /// The planner's input in use (rate, time model, capacity).
    pub fn input(&self) -> &SegmentPlanInput {
        &self.input
    }

    /// Re-plans the thresholds (and caps) for the time model `d0 + d1 × tokens` (for example the planned one
    /// corrected by measured iteration times); the segments stay. Returns false, changing nothing, if the
    /// planner rejects it.
    pub fn retime(&mut self, d0: f64, d1: f64) -> bool {
        let input = SegmentPlanInput { d0, d1, ..self.input.clone() };
        match plan_segments(&self.dist, &input) {
            Ok(plan) if plan.thresholds.len() == self.plan.thresholds.len() => {
                self.plan = plan;
                self.input = input;
                true
            }
            _ => false,
        }
    }

    /// The plan in use (segments, thresholds, caps, safety buffer).
    pub fn plan(&self) -> &SegmentPlan {
        &self.plan
    }

    /// The liveness deadline, seconds.
    pub fn max_wait(&self) -> f64 {
        self.max_wait
    }

    /// Number of segments.
    pub fn num_segments(&self) -> usize {
        self.plan.thresholds.len()
    }

    /// Requests waiting at segment 1's entry.
    pub fn num_waiting(&self) -> usize {
        self.entry.len()
    }

    /// Requests paused at segment boundaries.
    pub fn num_paused(&self) -> usize {
        self.paused.iter().map(KeyedDeque::len).sum()
    }

    /// The segment a request that has emitted `out` tokens computes its next iteration in.
    pub fn segment_of(&self, out: u32) -> u32 {
        self.plan.boundaries.partition_point(|&b| b <= out) as u32
    }

    /// A new arrival at segment 1's entry (updates the rate estimate, and re-plans if it drifted).
    pub fn arrive(&mut self, key: K, arrival: f64) {
        self.observe_arrival(arrival);
        self.entry.push_back(key, arrival);
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

    /// Removes `key` from segment 1's entry (aborted or finished while waiting), in O(1); false if it is not there.
    pub fn remove_waiting(&mut self, key: K) -> bool {
        self.entry.remove(&key).is_some()
    }

    /// The head of segment 1's entry.
    pub fn front_waiting(&self) -> Option<K> {
        self.entry.front().map(|(k, _)| k)
    }

    /// The first `n` keys at segment 1's entry.
    pub fn head_waiting(&self, n: usize) -> impl Iterator<Item = K> + '_ {
        self.entry.iter().take(n).map(|(k, _)| k)
    }

    /// The head of segment `s`'s boundary queue.
    pub fn front_paused(&self, s: usize) -> Option<K> {
        self.paused[s].front().map(|(k, _)| k)
    }

    /// The arrival rate segment 1's credit uses: the online estimate when on, else the planned rate.
    pub fn rate(&self) -> f64 {
        match self.rate_estimation {
            Some(_) if self.mean_gap > 0.0 => 1.0 / self.mean_gap,
            _ => self.input.total_rate,
        }
    }

    /// Starts a step's decision at `now`, with `used_tokens` of KV in use: segment 1's credit grows by `λ·Δt`
    /// (capped at `max(n_1, λ·Δt) + 1`) while the KV in use plus the plan's safety buffer stays under 90 % of
    /// the capacity; once it does not, the credit is dropped and the paper's threshold rule alone admits (lengths are unknown, so the
    /// buffer is the only memory protection).
    pub fn begin_step(&mut self, now: f64, used_tokens: f64) {
        let dt = self.last_decision.map_or(0.0, |t| (now - t).clamp(0.0, self.max_wait));
        self.last_decision = Some(now);
        let n1 = f64::from(self.plan.thresholds[0]);
        let per_step = self.rate() * dt;
        let cap = n1.max(per_step) + 1.0;
        let room = used_tokens + self.plan.buffer_tokens <= CREDIT_ROOM * self.input.capacity_tokens;
        if let Some(c) = self.credit.as_mut() {
            *c = if room { (*c + per_step).min(cap) } else { 0.0 };
        }
    }

    fn spend_credit(&mut self) {
        if let Some(c) = self.credit.as_mut() {
            *c = (*c - 1.0).max(0.0);
        }
    }

    /// Admits the head of segment 1's entry into segment `seg` (a preempted request keeps its progress, so it
    /// may re-enter a later segment); returns its tag.
    pub fn enter_first(&mut self, seg: u32) -> Option<(K, u32)> {
        let (k, _) = self.entry.pop_front()?;
        self.occupancy[seg as usize] += 1;
        self.spend_credit();
        Some((k, seg))
    }

    /// Admits `key` (wherever it waits at segment 1's entry, normally its head) into segment `seg`; false if it
    /// does not wait there.
    pub fn take_waiting(&mut self, key: K, seg: u32) -> bool {
        if !self.remove_waiting(key) {
            return false;
        }
        self.occupancy[seg as usize] += 1;
        self.spend_credit();
        true
    }

    /// Resumes the head of segment `s`'s boundary queue; returns it with its new tag.
    pub fn resume(&mut self, s: usize) -> Option<(K, u32)> {
        let (k, _) = self.paused[s].pop_front()?;
        self.occupancy[s] += 1;
        Some((k, s as u32))
    }

    /// The tag a running request carrying `tag` takes after emitting `out` tokens: paused at the next entry if
    /// it just finished its segment (and then queued there at `now`), else unchanged.
    pub fn pause_tag(&mut self, key: K, tag: u32, out: u32, now: f64) -> u32 {
        let last = self.plan.boundaries.len() as u32;
        if tag & PAUSED == 0 && tag < last && out >= self.plan.boundaries[tag as usize] {
            self.occupancy[tag as usize] -= 1;
            self.paused[tag as usize + 1].push_back(key, now);
            PAUSED | (tag + 1)
        } else {
            tag
        }
    }

    /// A running request carrying `tag` leaves (finished, aborted or preempted): it stops counting in its
    /// segment, or leaves its boundary queue.
    pub fn leave(&mut self, key: K, tag: u32) {
        if tag & PAUSED != 0 {
            self.paused[(tag & !PAUSED) as usize].remove(&key);
        } else if let Some(o) = self.occupancy.get_mut(tag as usize) {
            *o = o.saturating_sub(1);
        }
    }

    /// A preempted request re-queued at the head of segment 1's entry.
    pub fn requeue_front(&mut self, key: K, arrival: f64) {
        self.entry.push_front(key, arrival);
    }

    /// What segment `s`'s entry does at `now` (call for s = 0, 1, … in order, stopping at [`Entry::Stop`]).
    pub fn entry_decision(&self, s: usize, now: f64) -> Entry {
        let (len, oldest) = if s == 0 {
            (self.entry.len(), self.entry.front().map(|(_, t)| t))
        } else {
            (self.paused[s].len(), self.paused[s].front().map(|(_, t)| t))
        };
        let Some(oldest) = oldest else { return Entry::Skip };
        let n = self.plan.thresholds[s] as usize;
        // The same expression as `next_wakeup`, so a wake-up at the deadline always finds the entry due.
        let due = self.deadline(oldest) <= now;
        let credit = if s == 0 { self.credit.map_or(0, |c| (c.floor() as usize).min(len)) } else { 0 };
        if len < n && !due && credit == 0 {
            return if s == 0 || self.strict_break { Entry::Stop } else { Entry::Pass };
        }
        // Segment 1 admits a cohort of n_1 (or its credit, if larger); a later entry, once ready, lets its whole
        // queue in.
        let ready = len >= n || due;
        let mut count = if s == 0 { (if ready { len.min(n) } else { 0 }).max(credit) } else { len };
        if self.per_stage_caps {
            let room = self.plan.caps[s].saturating_sub(self.occupancy[s]) as usize;
            if room == 0 {
                return Entry::Stop;
            }
            count = count.min(room);
        }
        Entry::Let(count)
    }

    /// When an entry whose oldest request started waiting at `t` is due: `t + max_wait`, clamped to the largest
    /// finite time (a huge `max_wait` must not make a deadline that never comes).
    fn deadline(&self, t: f64) -> f64 {
        (t + self.max_wait).min(f64::MAX)
    }

    /// The boundary queue whose head has been paused longest (segment index), for deadlock breaking.
    pub fn longest_paused(&self) -> Option<usize> {
        (1..self.paused.len())
            .filter_map(|s| self.paused[s].front().map(|(_, t)| (s, t)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s)
    }

    /// The earliest future entry deadline, so that an idle driver wakes up for it.
    pub fn next_wakeup(&self, now: f64) -> Option<f64> {
        let first = self.entry.front().map(|(_, t)| t);
        let later = self.paused.iter().filter_map(|q| q.front().map(|(_, t)| t));
        first
            .into_iter()
            .chain(later)
            .map(|t| self.deadline(t))
            // Only future deadlines: a passed one is blocked by segment 1's entry, whose own deadline is pending.
            .filter(|&t| t > now)
            .min_by(f64::total_cmp)
    }
}
