//! Per-step rules checked by the `fuzz_ops` harness: token budget, FCFS first admission, no preemption, and
//! WAIT / Nested WAIT thresholds (no admission below the threshold except by the liveness deadline, or when
//! capacity cut a ready cohort: the same expression as `wait_props.rs`).

use std::collections::{HashMap, HashSet};

use fluidsched_core::Scheduler;
use fluidsched_core::policies::WaitPolicy;
use fluidsched_core::request::RequestState;
use fluidsched_core::step::Step;
use proptest::prelude::*;

/// When preemption is forbidden.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoPreempt {
    /// Never checked.
    Unchecked,
    /// Forbidden outright (Orca with `max_tokens` reservations covering the whole cache).
    Always,
    /// Forbidden while every request added so far carried its exact length as hint (MC-SF, Orca `oracle`).
    IfExactHints,
}

/// The threshold rule of WAIT (per type) or Nested WAIT (segment 1's entry).
#[derive(Debug, Clone)]
pub enum Threshold {
    /// WAIT: the policy (for `type_of`), its thresholds and deadline.
    Wait(Box<WaitPolicy>, f64),
    /// Nested WAIT: `n_1` and the deadline.
    Nested(u32, f64),
}

/// The rules one policy must keep, and the driver-side state they need.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Most tokens in one step, if bounded.
    pub budget: Option<u32>,
    /// First admissions must follow arrival order.
    pub fcfs: bool,
    /// When preemption is forbidden.
    pub no_preempt: NoPreempt,
    /// Threshold rule, if any.
    pub threshold: Option<Threshold>,
    all_exact: bool,
    seq: HashMap<u64, u64>,
    arrival: HashMap<u64, f64>,
    first_admitted: HashSet<u64>,
    last_first: Option<u64>,
    /// Aborts of waiting and running requests seen (coverage).
    pub aborts: [usize; 2],
}

/// What the rules need from the state before a step: waiting `(id, arrival, group)` and running ids.
#[derive(Debug, Default)]
pub struct Pre {
    waiting: Vec<(u64, f64, usize)>,
    running: HashSet<u64>,
}

impl Rules {
    /// Rules with the given checks.
    pub fn new(budget: Option<u32>, fcfs: bool, no_preempt: NoPreempt, threshold: Option<Threshold>) -> Self {
        Rules {
            budget,
            fcfs,
            no_preempt,
            threshold,
            all_exact: true,
            seq: HashMap::new(),
            arrival: HashMap::new(),
            first_admitted: HashSet::new(),
            last_first: None,
            aborts: [0; 2],
        }
    }

    /// A request is about to be added; `exact` when its hint is its true length.
    pub fn on_add(&mut self, exact: bool) {
        self.all_exact &= exact;
    }

    /// A request was added.
    pub fn on_added(&mut self, sched: &Scheduler, id: u64) {
        let n = self.seq.len() as u64;
        self.seq.insert(id, n);
        self.arrival.insert(id, sched.request(id).map_or(f64::NAN, |r| r.arrival));
    }

    /// A request is about to be aborted.
    pub fn on_abort(&mut self, _sched: &Scheduler, _id: u64, running: bool) {
        self.aborts[usize::from(running)] += 1;
    }

    fn group(&self, sched: &Scheduler, id: u64) -> usize {
        match (&self.threshold, sched.request(id)) {
            (Some(Threshold::Wait(p, _)), Ok(r)) => p.type_of(r),
            _ => 0,
        }
    }

    /// Records what the checks need before `schedule`.
    pub fn before_step(&self, sched: &Scheduler, held: &[u64], _now: f64) -> Pre {
        let mut pre = Pre::default();
        for &id in held {
            match sched.request(id).map(|r| r.state) {
                Ok(RequestState::Waiting) => pre.waiting.push((id, self.arrival[&id], self.group(sched, id))),
                Ok(RequestState::Running) => {
                    pre.running.insert(id);
                }
                _ => {}
            }
        }
        pre
    }

    /// Checks one step against the policy's rules.
    pub fn check_step(&mut self, sched: &Scheduler, step: &Step, pre: &Pre, now: f64) -> Result<(), TestCaseError> {
        for id in &step.admitted {
            prop_assert!(pre.waiting.iter().any(|w| w.0 == *id), "admitted {id} was not waiting");
        }
        for id in &step.preempted {
            prop_assert!(pre.running.contains(id), "preempted {id} was not running");
        }
        if let Some(b) = self.budget {
            prop_assert!(step.num_batched_tokens() <= b, "{} tokens > budget {b}", step.num_batched_tokens());
        }
        let forbid = match self.no_preempt {
            NoPreempt::Unchecked => false,
            NoPreempt::Always => true,
            NoPreempt::IfExactHints => self.all_exact,
        };
        prop_assert!(!forbid || step.preempted.is_empty(), "preempted {:?}", step.preempted);
        if self.fcfs {
            for &id in &step.admitted {
                if self.first_admitted.insert(id) {
                    let s = self.seq[&id];
                    prop_assert!(self.last_first.is_none_or(|l| s > l), "first admission of {id} out of arrival order");
                    self.last_first = Some(s);
                }
            }
        }
        let (groups, max_wait) = match &self.threshold {
            None => return Ok(()),
            Some(Threshold::Wait(p, w)) => (p.config().thresholds.clone(), *w),
            Some(Threshold::Nested(n1, w)) => (vec![*n1], *w),
        };
        for (g, &th) in groups.iter().enumerate() {
            let waiting: Vec<&(u64, f64, usize)> = pre.waiting.iter().filter(|w| w.2 == g).collect();
            let before = waiting.len();
            let oldest = waiting.iter().map(|w| w.1).fold(f64::INFINITY, f64::min);
            let k = step.admitted.iter().filter(|id| waiting.iter().any(|w| w.0 == **id)).count();
            let th = th as usize;
            prop_assert!(k <= th, "group {g}: admitted {k} > threshold {th}");
            let due = oldest + max_wait <= now;
            prop_assert!(
                k == 0 || k >= th || due || before >= th,
                "group {g}: admitted {k} < threshold {th} with {before} waiting, oldest waited {}",
                now - oldest
            );
        }
        let _ = sched;
        Ok(())
    }
}
