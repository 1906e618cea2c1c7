//! [`WaitGate`]: WAIT's admission decision, free of memory and of any engine.
//!
//! The gate holds one FIFO queue per request type (a key and the arrival time of each waiting request), the
//! per-type thresholds, the admission rule and the liveness deadline. Given the time it says how many requests
//! of each type may start now ([`WaitGate::cohort_sizes`]) and in which order the types go
//! ([`WaitGate::admission_order`]). It never sees a block: the simulator's [`crate::policies::WaitPolicy`]
//! (keys are scheduler slots) and the engine-facing [`super::AdmissionController`] (keys are request ids) both
//! call it, and each applies its own memory checks to the candidates it names.

use std::hash::Hash;

use crate::error::{Error, Result, check_positive};
use crate::keyed_deque::KeyedDeque;

/// When types are admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionRule {
    /// Each type admits a cohort when its own queue reaches its threshold (the paper's flowchart).
    PerType,
    /// When any type is ready, every type admits up to its threshold (authors' `modified_booking_limit`).
    AnyReady,
    /// Only when every type is ready does any type admit (authors' `booking_limit`).
    AllReady,
}

impl AdmissionRule {
    /// Option spellings, in enum order.
    pub const NAMES: &'static [&'static str] = &["per-type", "any-ready", "all-ready"];

    /// Parses an option spelling.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "per-type" => Ok(AdmissionRule::PerType),
            "any-ready" => Ok(AdmissionRule::AnyReady),
            "all-ready" => Ok(AdmissionRule::AllReady),
            _ => Err(Error::config(format!("admission must be one of {:?}, got {name:?}", Self::NAMES))),
        }
    }
}

/// How WAIT sizes cohorts beyond the paper's threshold rule (`docs/wait.md` §3.3). [`CohortTracking::PAPER`]
/// turns every mechanism off: the paper's rule alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CohortTracking {
    /// Carry fractional admission credit `λ_j·Δt` between decisions (Δt: the measured time since the last
    /// decision, so the real iteration time, not the planned one); a type admits at least `⌊credit⌋`.
    pub credit: bool,
    /// Weight of the per-type moving average of inter-arrival gaps that estimates `λ_j` online (None: the
    /// planned rates).
    pub rate_estimation: Option<f64>,
    /// A queue longer than `backlog` cohorts is let in whole (capacity and memory guard permitting): a growing
    /// queue raises admission. 0 disables it.
    pub backlog: f64,
}

impl CohortTracking {
    /// The paper's rule alone: no credit, planned rates, no backlog drain.
    pub const PAPER: CohortTracking = CohortTracking { credit: false, rate_estimation: None, backlog: 0.0 };

    /// fluidsched's defaults: credit and online rates (weight 0.05); no backlog drain (measured: where memory
    /// binds, draining a backlog up to the memory guard loses 2–3 % throughput against the fluid rate).
    pub const DEFAULT: CohortTracking = CohortTracking { credit: true, rate_estimation: Some(0.05), backlog: 0.0 };
}

/// WAIT's per-type queues and thresholds: the admission decision.
#[derive(Debug, Clone)]
pub struct WaitGate<K> {
    thresholds: Vec<u32>,
    admission: AdmissionRule,
    max_wait: f64,
    /// `queues[j]`: waiting requests of type j, oldest first, with their arrival times (removable by key in O(1)).
    queues: Vec<KeyedDeque<K, f64>>,
    num_waiting: usize,
    tracking: CohortTracking,
    /// Planned arrival rate of each type (0: unknown).
    planned_rates: Vec<f64>,
    /// Per type: moving average of inter-arrival gaps, and the latest arrival.
    mean_gap: Vec<Option<f64>>,
    last_arrival: Vec<Option<f64>>,
    /// Per type: admission credit carried between decisions.
    credit: Vec<f64>,
    last_decision: Option<f64>,
}

impl<K: Copy + Eq + Hash> WaitGate<K> {
    /// A gate with thresholds `n_j >= 1`, an admission rule and a liveness deadline `max_wait > 0` seconds.
    pub fn new(thresholds: Vec<u32>, admission: AdmissionRule, max_wait: f64) -> Result<Self> {
        if thresholds.is_empty() || thresholds.contains(&0) {
            return Err(Error::config("wait: thresholds must be a non-empty list of integers >= 1"));
        }
        check_positive("wait: max_wait", max_wait)?;
        let m = thresholds.len();
        Ok(WaitGate {
            thresholds,
            admission,
            max_wait,
            queues: (0..m).map(|_| KeyedDeque::new()).collect(),
            num_waiting: 0,
            tracking: CohortTracking::PAPER,
            planned_rates: vec![0.0; m],
            mean_gap: vec![None; m],
            last_arrival: vec![None; m],
            credit: vec![0.0; m],
            last_decision: None,
        })
    }

    /// The gate with cohort tracking: `rates` are the planned arrival rates per type (empty or 0: unknown; the
    /// credit of such a type starts once online estimation has seen two of its arrivals).
    pub fn with_tracking(mut self, tracking: CohortTracking, rates: &[f64]) -> Result<Self> {
        if let Some(alpha) = tracking.rate_estimation.filter(|a| !(*a > 0.0 && *a <= 1.0)) {
            return Err(Error::config(format!("wait: ewma_alpha must be in (0, 1], got {alpha}")));
        }
        if !(tracking.backlog.is_finite() && tracking.backlog >= 0.0) {
            return Err(Error::config(format!("wait: backlog must be a number >= 0, got {}", tracking.backlog)));
        }
        if !rates.is_empty() && rates.len() != self.thresholds.len() {
            return Err(Error::config("wait: one planned rate per type"));
        }
        for (j, &r) in rates.iter().enumerate() {
            self.planned_rates[j] = if r.is_finite() && r > 0.0 { r } else { 0.0 };
            self.mean_gap[j] = (self.planned_rates[j] > 0.0).then(|| 1.0 / self.planned_rates[j]);
        }
        self.tracking = tracking;
        Ok(self)
    }

    /// The cohort tracking in use.
    pub fn tracking(&self) -> CohortTracking {
        self.tracking
    }

    /// The arrival rate of type `j` the credit uses: the online estimate, else the planned rate (0: unknown).
    pub fn rate(&self, j: usize) -> f64 {
        match (self.tracking.rate_estimation, self.mean_gap[j]) {
            (Some(_), Some(gap)) if gap > 0.0 => 1.0 / gap,
            _ => self.planned_rates[j],
        }
    }

    /// The per-type thresholds.
    pub fn thresholds(&self) -> &[u32] {
        &self.thresholds
    }

    /// Replaces the thresholds (for example re-planned for a measured iteration time); one per type, each >= 1.
    pub fn set_thresholds(&mut self, thresholds: Vec<u32>) -> Result<()> {
        if thresholds.len() != self.thresholds.len() || thresholds.contains(&0) {
            return Err(Error::config("wait: thresholds must be one integer >= 1 per type"));
        }
        self.thresholds = thresholds;
        Ok(())
    }

    /// The liveness deadline, seconds.
    pub fn max_wait(&self) -> f64 {
        self.max_wait
    }

    /// Number of types.
    pub fn num_types(&self) -> usize {
        self.thresholds.len()
    }

    /// Requests waiting, all types.
    pub fn num_waiting(&self) -> usize {
        self.num_waiting
    }

    /// Requests of type `j` waiting.
    pub fn queue_len(&self, j: usize) -> usize {
        self.queues[j].len()
    }

    /// A new arrival of type `j` (at the back of its queue); updates the type's rate estimate.
    pub fn push_back(&mut self, j: usize, key: K, arrival: f64) {
        self.queues[j].push_back(key, arrival);
        self.num_waiting += 1;
        if let Some(alpha) = self.tracking.rate_estimation {
            if let Some(last) = self.last_arrival[j] {
                let gap = (arrival - last).max(0.0);
                self.mean_gap[j] = Some(match self.mean_gap[j] {
                    Some(m) => (1.0 - alpha) * m + alpha * gap,
                    None => gap,
                });
            }
            self.last_arrival[j] = Some(self.last_arrival[j].map_or(arrival, |l| l.max(arrival)));
        }
    }

    /// A request of type `j` the engine took but put back (skipped it this step): its unit of credit returns.
    pub fn refund(&mut self, j: usize) {
        if self.tracking.credit {
            self.credit[j] += 1.0;
        }
    }

    /// A request of type `j` was admitted: it spends one unit of the type's credit.
    pub fn admitted(&mut self, j: usize) {
        self.credit[j] = (self.credit[j] - 1.0).max(0.0);
    }

    /// A request of type `j` put back at the head of its queue (preempted, or skipped by the engine).
    pub fn push_front(&mut self, j: usize, key: K, arrival: f64) {
        self.queues[j].push_front(key, arrival);
        self.num_waiting += 1;
    }

    /// Removes `key` from type `j`'s queue (aborted, finished while waiting), in O(1); false if it is not there.
    pub fn remove(&mut self, j: usize, key: K) -> bool {
        let removed = self.queues[j].remove(&key).is_some();
        self.num_waiting -= usize::from(removed);
        removed
    }

    /// The head of type `j`'s queue.
    pub fn front(&self, j: usize) -> Option<K> {
        self.queues[j].front().map(|(k, _)| k)
    }

    /// The first `n` requests of type `j`, oldest first.
    pub fn head(&self, j: usize, n: usize) -> impl Iterator<Item = K> + '_ {
        self.queues[j].iter().take(n).map(|(k, _)| k)
    }

    /// Takes the head of type `j`'s queue (it was admitted).
    pub fn pop_front(&mut self, j: usize) -> Option<K> {
        let k = self.queues[j].pop_front().map(|(k, _)| k);
        self.num_waiting -= usize::from(k.is_some());
        k
    }

    /// When a request that arrived at `arrival` is due: `arrival + max_wait`, clamped to the largest finite time so
    /// that a huge `max_wait` cannot make a deadline that never comes (and a driver that waits for it a jump to
    /// infinity).
    fn deadline(&self, arrival: f64) -> f64 {
        (arrival + self.max_wait).min(f64::MAX)
    }

    /// Whether type j's oldest request reached its deadline (the same expression as [`Self::next_wakeup`]).
    pub fn is_due(&self, j: usize, now: f64) -> bool {
        self.queues[j].front().is_some_and(|(_, arrival)| self.deadline(arrival) <= now)
    }

    /// How many requests of each type may start at `now`, before capacity limits: a ready type (queue at its
    /// threshold) admits a cohort of `n_j` under the admission rule; a due type (its oldest waited `max_wait`)
    /// admits what it has, up to `n_j`. With cohort tracking, a type also admits `⌊credit⌋` (the credit grows by
    /// `λ_j·Δt` since the last decision, capped at one cohort or one step's arrivals, plus one), and a backlogged
    /// queue is let in whole.
    pub fn cohort_sizes(&mut self, now: f64, sizes: &mut Vec<usize>) {
        self.paper_cohort_sizes(now, sizes);
        let dt = self.last_decision.map_or(0.0, |t| (now - t).clamp(0.0, self.max_wait));
        self.last_decision = Some(now);
        let t = self.tracking;
        if !t.credit && t.backlog == 0.0 {
            return;
        }
        for (j, size) in sizes.iter_mut().enumerate() {
            let queued = self.queues[j].len();
            let n = f64::from(self.thresholds[j]);
            let per_step = self.rate(j) * dt;
            if t.credit {
                let cap = n.max(per_step) + 1.0;
                self.credit[j] = (self.credit[j] + per_step).min(cap);
                *size = (*size).max((self.credit[j].floor() as usize).min(queued));
            }
            if t.backlog > 0.0 && queued as f64 > t.backlog * n.max(per_step) {
                *size = queued;
            }
        }
    }

    /// The paper's rule alone (see [`Self::cohort_sizes`]).
    fn paper_cohort_sizes(&self, now: f64, sizes: &mut Vec<usize>) {
        let n = &self.thresholds;
        let ready = |j: usize| self.queues[j].len() >= n[j] as usize;
        let any_ready = (0..n.len()).any(ready);
        let all_ready = (0..n.len()).all(ready);
        let up_to = |j: usize| self.queues[j].len().min(n[j] as usize);
        sizes.clear();
        sizes.extend((0..n.len()).map(|j| {
            let by_rule = match self.admission {
                AdmissionRule::PerType if ready(j) => n[j] as usize,
                AdmissionRule::AnyReady if any_ready => up_to(j),
                AdmissionRule::AllReady if all_ready => n[j] as usize,
                _ => 0,
            };
            if self.is_due(j, now) { by_rule.max(up_to(j)) } else { by_rule }
        }));
    }

    /// The types with a non-empty cohort, ordered by the arrival of their queue heads (oldest first).
    pub fn admission_order(&self, sizes: &[usize], order: &mut Vec<usize>) {
        order.clear();
        order.extend((0..sizes.len()).filter(|&j| sizes[j] > 0));
        let head_arrival = |j: usize| self.queues[j].front().map_or(f64::INFINITY, |(_, arrival)| arrival);
        order.sort_by(|&a, &b| head_arrival(a).total_cmp(&head_arrival(b)));
    }

    /// The earliest future deadline of a queue head, so that an idle driver wakes up for it.
    pub fn next_wakeup(&self, now: f64) -> Option<f64> {
        self.queues
            .iter()
            .filter_map(KeyedDeque::front)
            .map(|(_, arrival)| self.deadline(arrival))
            .filter(|&t| t > now)
            .min_by(f64::total_cmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_type_cohorts_and_deadline() {
        let mut g: WaitGate<u64> = WaitGate::new(vec![2, 3], AdmissionRule::PerType, 10.0).unwrap();
        g.push_back(0, 1, 0.0);
        g.push_back(1, 2, 0.5);
        g.push_back(1, 3, 0.6);
        let mut sizes = Vec::new();
        g.cohort_sizes(1.0, &mut sizes);
        assert_eq!(sizes, vec![0, 0]);
        g.push_back(0, 4, 1.0);
        g.cohort_sizes(1.0, &mut sizes);
        assert_eq!(sizes, vec![2, 0]);
        // Type 1's head is due at 10.5: it admits what it has.
        g.cohort_sizes(10.5, &mut sizes);
        assert_eq!(sizes, vec![2, 2]);
        assert_eq!(g.next_wakeup(1.0), Some(10.0));
        let mut order = Vec::new();
        g.admission_order(&sizes, &mut order);
        assert_eq!(order, vec![0, 1]);
        assert!(g.remove(1, 2));
        assert!(!g.remove(1, 2));
        assert_eq!(g.num_waiting(), 3);
        assert_eq!(g.head(0, 5).collect::<Vec<_>>(), vec![1, 4]);
    }

    fn tracked(backlog: f64, estimation: Option<f64>) -> CohortTracking {
        CohortTracking { credit: true, rate_estimation: estimation, backlog }
    }

    #[test]
    fn credit_carries_fractions_between_decisions() {
        // λ = 2.5/s, n = 1, a decision every second: the fluid admits 2.5 per decision, the paper's rule only 1.
        let mut g: WaitGate<u64> = WaitGate::new(vec![1], AdmissionRule::PerType, 100.0)
            .unwrap()
            .with_tracking(tracked(0.0, None), &[2.5])
            .unwrap();
        (0..100).for_each(|k| g.push_back(0, k, 0.0));
        let mut sizes = Vec::new();
        let mut admitted = Vec::new();
        for step in 0..6 {
            g.cohort_sizes(f64::from(step), &mut sizes);
            admitted.push(sizes[0]);
            for _ in 0..sizes[0] {
                g.pop_front(0);
                g.admitted(0);
            }
        }
        // First decision: no time has passed, the rule admits 1; then 2.5 per second, fractions carried over.
        assert_eq!(admitted, vec![1, 2, 3, 2, 3, 2]);
    }

    #[test]
    fn credit_is_capped_and_never_lowers_the_rule() {
        let mut g: WaitGate<u64> = WaitGate::new(vec![4], AdmissionRule::PerType, 100.0)
            .unwrap()
            .with_tracking(tracked(0.0, None), &[0.1])
            .unwrap();
        let mut sizes = Vec::new();
        g.cohort_sizes(0.0, &mut sizes);
        // A long idle gap (clamped to max_wait) saturates the credit at one cohort plus one, not 10 s of arrivals.
        g.cohort_sizes(1e6, &mut sizes);
        (0..20).for_each(|k| g.push_back(0, k, 1e6));
        g.cohort_sizes(1e6, &mut sizes);
        assert_eq!(sizes, vec![5]);
        // The threshold rule still admits a full cohort when the credit is low.
        let mut p: WaitGate<u64> = WaitGate::new(vec![4], AdmissionRule::PerType, 100.0).unwrap();
        (0..20).for_each(|k| p.push_back(0, k, 0.0));
        p.cohort_sizes(0.0, &mut sizes);
        assert_eq!(sizes, vec![4]);
    }

    #[test]
    fn a_backlog_is_let_in_whole() {
        let mut g: WaitGate<u64> = WaitGate::new(vec![3], AdmissionRule::PerType, 100.0)
            .unwrap()
            .with_tracking(tracked(2.0, None), &[])
            .unwrap();
        (0..6).for_each(|k| g.push_back(0, k, 0.0));
        let mut sizes = Vec::new();
        g.cohort_sizes(0.0, &mut sizes);
        assert_eq!(sizes, vec![3], "6 queued = 2 cohorts: not yet a backlog");
        g.push_back(0, 6, 0.0);
        g.cohort_sizes(0.0, &mut sizes);
        assert_eq!(sizes, vec![7]);
    }

    #[test]
    fn rates_are_estimated_online() {
        let mut g: WaitGate<u64> = WaitGate::new(vec![1, 1], AdmissionRule::PerType, 1.0)
            .unwrap()
            .with_tracking(tracked(0.0, Some(0.2)), &[1.0, 0.0])
            .unwrap();
        assert_eq!(g.rate(0), 1.0);
        assert_eq!(g.rate(1), 0.0);
        for k in 0..200 {
            g.push_back(0, k, f64::from(k as u32) * 0.1);
            g.push_back(1, k, f64::from(k as u32) * 0.5);
        }
        assert!((g.rate(0) - 10.0).abs() < 0.1, "{}", g.rate(0));
        assert!((g.rate(1) - 2.0).abs() < 0.01, "{}", g.rate(1));
        assert!(
            WaitGate::<u64>::new(vec![1], AdmissionRule::PerType, 1.0)
                .unwrap()
                .with_tracking(tracked(0.0, Some(0.0)), &[])
                .is_err()
        );
        assert!(
            WaitGate::<u64>::new(vec![1], AdmissionRule::PerType, 1.0)
                .unwrap()
                .with_tracking(tracked(-1.0, None), &[])
                .is_err()
        );
    }

    #[test]
    fn rejects_zero_thresholds() {
        assert!(WaitGate::<u64>::new(vec![1, 0], AdmissionRule::PerType, 1.0).is_err());
        assert!(WaitGate::<u64>::new(vec![1], AdmissionRule::PerType, 0.0).is_err());
    }
}
