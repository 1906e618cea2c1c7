//! The driver behind `fuzz_ops.rs`: applies one [`Op`] at a time to a [`Scheduler`], keeps its own model of
//! every request's life cycle, and checks the common invariants and each policy's own rule after every op.

use std::collections::{HashMap, HashSet};

use fluidsched_core::request::RequestState;
use fluidsched_core::step::Step;
use fluidsched_core::{Error, Scheduler};
use proptest::prelude::*;

use crate::common::{D0, D1, new_request, snapshot};
use crate::rules::Rules;

/// What the driver knows its request's hint to be.
#[derive(Debug, Clone, Copy)]
pub enum Hint {
    /// The planned length (the oracle).
    Exact,
    /// No hint.
    Missing,
    /// The planned length times a factor.
    Scaled(f64),
}

/// One operation on the scheduler.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// A new request; `known`: the scheduler is told the output length, else the driver finishes it.
    Add { prompt: u32, len: u32, known: bool, hint: Hint, type_id: Option<u32>, gap: u32 },
    /// A request the scheduler must reject (`kind` picks the defect); nothing may change.
    AddBad { kind: u8 },
    /// `schedule` + `complete_step`; `early` finishes some running unknown-length requests; `misuse` also tries
    /// the calls that are illegal while a step is pending.
    Step { early: u8, misuse: bool },
    /// Aborts a held request (waiting or running), picked by index.
    Abort { pick: usize },
    /// Aborts an id the scheduler does not hold (never added, or already gone).
    AbortUnknown { pick: usize },
    /// Adds a request with an id already held.
    AddDuplicate { pick: usize },
    /// `complete_step` without a pending `schedule`.
    CompleteWithoutSchedule,
}

/// Where a request is, as the driver sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Life {
    Held,
    Finished,
    Aborted,
}

#[derive(Debug, Clone)]
struct Tracked {
    life: Life,
    prompt: u32,
    len: u32,
    known: bool,
    emitted: u32,
    early: bool,
}

/// The driver: scheduler, clock, and the life cycle of every id it used.
pub struct Harness {
    pub sched: Scheduler,
    pub now: f64,
    pub rules: Rules,
    ids: HashMap<u64, Tracked>,
    /// Held ids, in the order they were added.
    pub held: Vec<u64>,
    gone: Vec<u64>,
    next_id: u64,
    usable: u32,
}

impl Harness {
    /// A driver starting ids at `first_id`.
    pub fn new(sched: Scheduler, rules: Rules, first_id: u64, usable: u32) -> Self {
        Harness {
            sched,
            now: 0.0,
            rules,
            ids: HashMap::new(),
            held: Vec::new(),
            gone: Vec::new(),
            next_id: first_id,
            usable,
        }
    }

    fn advance(&mut self, to: f64) -> Result<(), TestCaseError> {
        prop_assert!(to >= self.now, "time would go backwards: {} -> {to}", self.now);
        self.now = to;
        Ok(())
    }

    /// Applies one op and checks the common invariants.
    pub fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Add { prompt, len, known, hint, type_id, gap } => self.add(prompt, len, known, hint, type_id, gap)?,
            Op::AddBad { kind } => self.add_bad(kind)?,
            Op::Step { early, misuse } => {
                let step = self.step(early, misuse)?;
                let next = if step.is_empty() {
                    self.now + D0
                } else {
                    self.now + D0 + D1 * f64::from(step.num_batched_tokens())
                };
                self.advance(next)?;
            }
            Op::Abort { pick } => self.abort(pick)?,
            Op::AbortUnknown { pick } => {
                let id = if self.gone.is_empty() || pick % 2 == 0 {
                    u64::MAX - pick as u64 % 7
                } else {
                    self.gone[pick % self.gone.len()]
                };
                if !self.ids.get(&id).is_some_and(|t| t.life == Life::Held) {
                    let before = snapshot(&self.sched, &self.held);
                    prop_assert_eq!(self.sched.abort_request(id), Err(Error::UnknownRequest(id)));
                    prop_assert_eq!(before, snapshot(&self.sched, &self.held));
                }
            }
            Op::AddDuplicate { pick } => {
                if let Some(&id) = self.held.get(pick % self.held.len().max(1)) {
                    let before = snapshot(&self.sched, &self.held);
                    let r = new_request(id, 1, Some(1), Some(1), self.now);
                    prop_assert_eq!(self.sched.add_request(r), Err(Error::DuplicateRequest(id)));
                    prop_assert_eq!(before, snapshot(&self.sched, &self.held));
                }
            }
            Op::CompleteWithoutSchedule => {
                let before = snapshot(&self.sched, &self.held);
                prop_assert!(matches!(self.sched.complete_step(&[]), Err(Error::InvalidState(_))));
                prop_assert_eq!(before, snapshot(&self.sched, &self.held));
            }
        }
        self.check_common()
    }

    fn check_common(&self) -> Result<(), TestCaseError> {
        if let Err(e) = self.sched.check_invariants() {
            return Err(TestCaseError::fail(format!("invariant broken at t={}: {e}", self.now)));
        }
        let cfg = self.sched.state().config();
        prop_assert!(self.sched.num_used_blocks() <= cfg.num_blocks);
        prop_assert_eq!(self.sched.num_unfinished(), self.held.len());
        prop_assert_eq!(self.sched.num_waiting() + self.sched.num_running(), self.held.len());
        if let Some(w) = self.sched.next_wakeup() {
            // Wake-ups are after the time of the latest `schedule` (the driver's clock may be ahead of it).
            let last = self.sched.state().now();
            prop_assert!(w > last && w.is_finite(), "wake-up {w} not after the latest schedule at {last}");
        }
        Ok(())
    }

    fn add(
        &mut self,
        prompt: u32,
        len: u32,
        known: bool,
        hint: Hint,
        type_id: Option<u32>,
        gap: u32,
    ) -> Result<(), TestCaseError> {
        self.advance(self.now + 0.01 * f64::from(gap))?;
        let (prompt, len) = crate::common::fit(prompt, len, self.usable);
        let hint = match hint {
            Hint::Exact => Some(len),
            Hint::Missing => None,
            Hint::Scaled(f) => Some(((f64::from(len) * f).round() as u32).max(1)),
        };
        self.rules.on_add(matches!(hint, Some(h) if h == len));
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut r = new_request(id, prompt, known.then_some(len), hint, self.now);
        r.type_id = type_id;
        self.sched.add_request(r).map_err(|e| TestCaseError::fail(format!("add {id}: {e}")))?;
        self.ids.insert(id, Tracked { life: Life::Held, prompt, len, known, emitted: 0, early: false });
        self.held.push(id);
        self.rules.on_added(&self.sched, id);
        Ok(())
    }

    fn add_bad(&mut self, kind: u8) -> Result<(), TestCaseError> {
        let id = self.next_id;
        let u = self.usable;
        let r = match kind % 6 {
            0 => new_request(id, u, Some(1), None, self.now),
            1 => new_request(id, 0, Some(1), None, self.now),
            2 => new_request(id, 1, Some(0), None, self.now),
            3 => new_request(id, 1, Some(1), Some(0), self.now),
            4 => new_request(id, 1, Some(1), None, f64::NAN),
            _ => new_request(id, u32::MAX, Some(u32::MAX), Some(u32::MAX), self.now),
        };
        let before = snapshot(&self.sched, &self.held);
        let got = self.sched.add_request(r);
        prop_assert!(
            matches!(&got, Err(Error::InvalidRequest { id: i, reason }) if *i == id && !reason.is_empty()),
            "{got:?}"
        );
        prop_assert_eq!(before, snapshot(&self.sched, &self.held));
        Ok(())
    }

    fn abort(&mut self, pick: usize) -> Result<(), TestCaseError> {
        let Some(&id) = self.held.get(pick % self.held.len().max(1)) else { return Ok(()) };
        let r = self.sched.request(id).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (blocks, running) = (r.blocks().len() as u32, r.state == RequestState::Running);
        let used = self.sched.num_used_blocks();
        self.rules.on_abort(&self.sched, id, running);
        prop_assert_eq!(self.sched.abort_request(id), Ok(()));
        prop_assert_eq!(self.sched.num_used_blocks(), used - blocks, "abort of {} must free its {} blocks", id, blocks);
        prop_assert_eq!(self.sched.request(id).err(), Some(Error::UnknownRequest(id)));
        self.retire(id, Life::Aborted);
        Ok(())
    }

    fn retire(&mut self, id: u64, life: Life) {
        if let Some(t) = self.ids.get_mut(&id) {
            t.life = life;
        }
        self.held.retain(|&h| h != id);
        self.gone.push(id);
    }

    /// One `schedule` + `complete_step` at the current time; returns the step.
    pub fn step(&mut self, early: u8, misuse: bool) -> Result<Step, TestCaseError> {
        let pre = self.rules.before_step(&self.sched, &self.held, self.now);
        let step = match self.sched.schedule(self.now) {
            Ok(s) => s.clone(),
            Err(e) => return Err(TestCaseError::fail(format!("schedule: {e}"))),
        };
        prop_assert_eq!(step.now, self.now);
        if misuse {
            self.misuse(&step)?;
        }
        self.rules.check_step(&self.sched, &step, &pre, self.now)?;
        let mut seen = HashSet::new();
        for s in &step.scheduled {
            prop_assert!(seen.insert(s.id), "request {} scheduled twice in one step", s.id);
            prop_assert!(self.ids.get(&s.id).is_some_and(|t| t.life == Life::Held), "scheduled unknown id {}", s.id);
        }
        // The driver finishes unknown-length requests when they emit their planned last token, and some early.
        let mut finished = Vec::new();
        for s in &step.scheduled {
            let t = &self.ids[&s.id];
            let r = self.sched.request(s.id).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if !t.known && s.context + s.num_tokens == r.num_tokens() && r.num_output_tokens + 1 >= t.len {
                finished.push(s.id);
            }
        }
        let candidates: Vec<u64> = self
            .held
            .iter()
            .copied()
            .filter(|id| !self.ids[id].known && self.sched.request(*id).is_ok_and(|r| r.state == RequestState::Running))
            .collect();
        for (i, id) in candidates.into_iter().enumerate().take(8) {
            if early >> i & 1 == 1 && !finished.contains(&id) {
                finished.push(id);
                self.ids.get_mut(&id).expect("tracked").early = true;
            }
        }
        let out = match self.sched.complete_step(&finished) {
            Ok(o) => o.clone(),
            Err(e) => return Err(TestCaseError::fail(format!("complete_step: {e}"))),
        };
        for &(id, k) in &out.emitted {
            let t = self.ids.get_mut(&id).expect("emitted by a tracked request");
            prop_assert_eq!(t.life, Life::Held);
            prop_assert_eq!(k, t.emitted + 1, "request {} emitted token {} after {}", id, k, t.emitted);
            t.emitted = k;
            prop_assert!(k <= t.len, "request {} emitted {} > its length {}", id, k, t.len);
        }
        for id in &finished {
            prop_assert!(out.finished.contains(id), "driver-finished {id} not reported");
        }
        for &id in &out.finished {
            let t = &self.ids[&id];
            prop_assert_eq!(t.life, Life::Held, "request {} finished twice or after abort", id);
            prop_assert!(
                t.early || t.emitted == t.len,
                "request {} finished after {} of {} tokens",
                id,
                t.emitted,
                t.len
            );
            self.retire(id, Life::Finished);
        }
        Ok(step)
    }

    /// Calls that are illegal while a step is pending: each fails and changes nothing.
    fn misuse(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let before = snapshot(&self.sched, &self.held);
        prop_assert!(matches!(self.sched.schedule(self.now), Err(Error::InvalidState(_))));
        if let Some(&id) = self.held.first() {
            prop_assert!(matches!(self.sched.abort_request(id), Err(Error::InvalidState(_))));
        }
        let unknown = u64::MAX - 100;
        if !self.ids.contains_key(&unknown) {
            prop_assert_eq!(self.sched.complete_step(&[unknown]).err(), Some(Error::UnknownRequest(unknown)));
        }
        prop_assert_eq!(before, snapshot(&self.sched, &self.held));
        prop_assert_eq!(&self.sched.last_step().scheduled, &step.scheduled);
        Ok(())
    }

    /// Steps with no new arrivals until every held request finished, jumping to the policy's wake-up time when
    /// a step is empty. Fails if that takes more than a bound linear in the work left, or if it stalls.
    pub fn drain(&mut self) -> Result<(), TestCaseError> {
        let work: u64 = self.held.iter().map(|id| u64::from(self.ids[id].prompt + self.ids[id].len)).sum();
        let bound = 10_000 + 50 * work;
        let (mut steps, mut empty_retries) = (0u64, 0);
        while !self.held.is_empty() {
            steps += 1;
            prop_assert!(steps <= bound, "not drained after {bound} steps: {} held", self.held.len());
            let step = self.step(0, false)?;
            self.check_common()?;
            if !step.is_empty() {
                empty_retries = 0;
                self.advance(self.now + D0 + D1 * f64::from(step.num_batched_tokens()))?;
            } else if !step.preempted.is_empty() && empty_retries < 3 {
                empty_retries += 1;
            } else {
                match self.sched.next_wakeup() {
                    Some(w) if w > self.now => self.advance(w)?,
                    _ => {
                        return Err(TestCaseError::fail(format!(
                            "stalled at t={}: {} waiting, {} running, no wake-up",
                            self.now,
                            self.sched.num_waiting(),
                            self.sched.num_running()
                        )));
                    }
                }
            }
        }
        prop_assert_eq!(self.sched.num_used_blocks(), 0, "blocks leaked after drain");
        prop_assert_eq!(self.sched.num_unfinished(), 0);
        for (id, t) in &self.ids {
            prop_assert!(t.life != Life::Held, "request {id} never finished");
        }
        Ok(())
    }
}
