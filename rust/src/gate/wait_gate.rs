//! [`WaitGate`]: WAIT's admission decision, free of memory and of any engine.
//!
//! The gate holds one FIFO queue per request type (a key and the arrival time of each waiting request), the
//! per-type thresholds, the admission rule and the liveness deadline. Given the time it says how many requests
//! of each type may start now ([`WaitGate::cohort_sizes`]) and in which order the types go
//! ([`WaitGate::admission_order`]). It never sees a block: the simulator's [`crate::policies::WaitPolicy`]
//! (keys are scheduler slots) and the engine-facing [`super::AdmissionController`] (keys are request ids) both
//! call it, and each applies its own memory checks to the candidates it names.

use std::collections::VecDeque;

use crate::error::{Error, Result, check_positive};

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

/// WAIT's per-type queues and thresholds: the admission decision.
#[derive(Debug, Clone)]
pub struct WaitGate<K> {
    thresholds: Vec<u32>,
    admission: AdmissionRule,
    max_wait: f64,
    /// `queues[j]`: waiting requests of type j, oldest first, with their arrival times.
    queues: Vec<VecDeque<(K, f64)>>,
    num_waiting: usize,
}

impl<K: Copy + PartialEq> WaitGate<K> {
    /// A gate with thresholds `n_j >= 1`, an admission rule and a liveness deadline `max_wait > 0` seconds.
    pub fn new(thresholds: Vec<u32>, admission: AdmissionRule, max_wait: f64) -> Result<Self> {
        if thresholds.is_empty() || thresholds.contains(&0) {
            return Err(Error::config("wait: thresholds must be a non-empty list of integers >= 1"));
        }
        check_positive("wait: max_wait", max_wait)?;
        let queues = vec![VecDeque::new(); thresholds.len()];
        Ok(WaitGate { thresholds, admission, max_wait, queues, num_waiting: 0 })
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

    /// A new arrival of type `j` (at the back of its queue).
    pub fn push_back(&mut self, j: usize, key: K, arrival: f64) {
        self.queues[j].push_back((key, arrival));
        self.num_waiting += 1;
    }

    /// A request of type `j` put back at the head of its queue (preempted, or skipped by the engine).
    pub fn push_front(&mut self, j: usize, key: K, arrival: f64) {
        self.queues[j].push_front((key, arrival));
        self.num_waiting += 1;
    }

    /// Removes `key` from type `j`'s queue (aborted, finished while waiting); false if it is not there.
    pub fn remove(&mut self, j: usize, key: K) -> bool {
        match self.queues[j].iter().position(|&(k, _)| k == key) {
            Some(pos) => {
                self.queues[j].remove(pos);
                self.num_waiting -= 1;
                true
            }
            None => false,
        }
    }

    /// The head of type `j`'s queue.
    pub fn front(&self, j: usize) -> Option<K> {
        self.queues[j].front().map(|&(k, _)| k)
    }

    /// The first `n` requests of type `j`, oldest first.
    pub fn head(&self, j: usize, n: usize) -> impl Iterator<Item = K> + '_ {
        self.queues[j].iter().take(n).map(|&(k, _)| k)
    }

    /// Takes the head of type `j`'s queue (it was admitted).
    pub fn pop_front(&mut self, j: usize) -> Option<K> {
        let k = self.queues[j].pop_front().map(|(k, _)| k);
        self.num_waiting -= usize::from(k.is_some());
        k
    }

    /// Whether type j's oldest request reached its deadline (the same expression as [`Self::next_wakeup`]).
    pub fn is_due(&self, j: usize, now: f64) -> bool {
        self.queues[j].front().is_some_and(|&(_, arrival)| arrival + self.max_wait <= now)
    }

    /// How many requests of each type may start at `now`, before capacity limits: a ready type (queue at its
    /// threshold) admits a cohort of `n_j` under the admission rule; a due type (its oldest waited `max_wait`)
    /// admits what it has, up to `n_j`.
    pub fn cohort_sizes(&self, now: f64, sizes: &mut Vec<usize>) {
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
        order.sort_by(|&a, &b| self.queues[a][0].1.total_cmp(&self.queues[b][0].1));
    }

    /// The earliest future deadline of a queue head, so that an idle driver wakes up for it.
    pub fn next_wakeup(&self, now: f64) -> Option<f64> {
        self.queues
            .iter()
            .filter_map(|q| q.front())
            .map(|&(_, arrival)| arrival + self.max_wait)
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

    #[test]
    fn rejects_zero_thresholds() {
        assert!(WaitGate::<u64>::new(vec![1, 0], AdmissionRule::PerType, 1.0).is_err());
        assert!(WaitGate::<u64>::new(vec![1], AdmissionRule::PerType, 0.0).is_err());
    }
}
