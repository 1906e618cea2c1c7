//! The [`Policy`] trait: what decides each iteration's batch, and the typed options every policy is built from.
//!
//! A policy owns its waiting queue (FCFS deque, per-type queues, a length-sorted list: whatever it needs) and,
//! once per step, fills a [`Step`] through [`SchedulerState`]'s building blocks: admit, allocate, schedule,
//! preempt. The scheduler owns the request table, the running list and the block pool, and keeps the invariants
//! (no block owned twice, memory never above capacity) whatever the policy does.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::request::Slot;
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// A scheduling policy plugged into the [`crate::Scheduler`].
pub trait Policy: Send + fmt::Debug {
    /// Stable name (`vllm`, `wait`, ...).
    fn name(&self) -> &'static str;

    /// Whether the policy reads output lengths (clairvoyant). Drivers that know lengths pass them as hints only
    /// to such policies.
    fn needs_output_lengths(&self) -> bool {
        false
    }

    /// A new request arrived and is waiting (its state is `Waiting`).
    fn enqueue(&mut self, state: &SchedulerState, slot: Slot);

    /// Removes a waiting request (it was aborted). Returns false if the policy does not hold it.
    fn remove_waiting(&mut self, state: &SchedulerState, slot: Slot) -> bool;

    /// Number of requests in the policy's waiting queue(s).
    fn num_waiting(&self) -> usize;

    /// Builds this iteration's batch into `step` (already cleared; `state.now()` is the current time).
    fn schedule(&mut self, state: &mut SchedulerState, step: &mut Step);

    /// Called after the step's tokens were applied and finished requests removed (their slots are gone).
    fn on_step_complete(&mut self, _state: &SchedulerState, _step: &Step) {}

    /// A request is about to leave the scheduler (finished or aborted). A running one still holds its blocks; a
    /// waiting one was already taken out of the policy's queue.
    fn on_release(&mut self, _state: &SchedulerState, _slot: Slot) {}

    /// The earliest future time at which the policy would schedule even if nothing else happens (for example a
    /// liveness timeout). Drivers that idle until the next arrival must also wake up then.
    fn next_wakeup(&self, _state: &SchedulerState) -> Option<f64> {
        None
    }
}

/// One option value.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// A number (integers are carried as exact `f64`).
    Num(f64),
    /// A flag.
    Bool(bool),
    /// A word, for enumerated choices.
    Str(String),
    /// A list of numbers (for example explicit thresholds).
    List(Vec<f64>),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Num(x) => write!(f, "{x}"),
            OptionValue::Bool(b) => write!(f, "{b}"),
            OptionValue::Str(s) => write!(f, "{s:?}"),
            OptionValue::List(v) => write!(f, "{v:?}"),
        }
    }
}

/// Named options for a policy, consumed by typed getters; unknown names are reported by [`PolicyOptions::finish`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyOptions {
    policy: String,
    values: BTreeMap<String, OptionValue>,
}

impl PolicyOptions {
    /// Options for the policy called `policy`.
    pub fn new(policy: &str, values: impl IntoIterator<Item = (String, OptionValue)>) -> Self {
        // Accept both `max_wait` and `max-wait`.
        let values = values.into_iter().map(|(k, v)| (k.replace('-', "_"), v)).collect();
        PolicyOptions {
            policy: policy.to_string(),
            values,
        }
    }

    fn bad(&self, key: &str, want: &str, got: &OptionValue) -> Error {
        Error::config(format!(
            "policy {:?}: option {key} must be {want}, got {got}",
            self.policy
        ))
    }

    /// Takes a number option, or `default`.
    pub fn f64(&mut self, key: &str, default: f64) -> Result<f64> {
        match self.values.remove(key) {
            None => Ok(default),
            Some(OptionValue::Num(x)) if x.is_finite() => Ok(x),
            Some(v) => Err(self.bad(key, "a finite number", &v)),
        }
    }

    /// Takes an optional number option.
    pub fn opt_f64(&mut self, key: &str) -> Result<Option<f64>> {
        if self.values.contains_key(key) {
            self.f64(key, 0.0).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Takes a non-negative integer option, or `default`.
    pub fn u32(&mut self, key: &str, default: u32) -> Result<u32> {
        match self.values.remove(key) {
            None => Ok(default),
            Some(OptionValue::Num(x)) if x.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&x) => Ok(x as u32),
            Some(v) => Err(self.bad(key, "a non-negative integer", &v)),
        }
    }

    /// Takes a flag option, or `default`. Numbers 0/1 are accepted too.
    pub fn bool(&mut self, key: &str, default: bool) -> Result<bool> {
        match self.values.remove(key) {
            None => Ok(default),
            Some(OptionValue::Bool(b)) => Ok(b),
            Some(OptionValue::Num(x)) if x == 0.0 || x == 1.0 => Ok(x == 1.0),
            Some(OptionValue::Str(s)) if matches!(s.as_str(), "true" | "false") => Ok(s == "true"),
            Some(v) => Err(self.bad(key, "true or false", &v)),
        }
    }

    /// Takes a word option that must be one of `choices`, or `default`.
    pub fn choice(&mut self, key: &str, choices: &[&str], default: &str) -> Result<String> {
        match self.values.remove(key) {
            None => Ok(default.to_string()),
            Some(OptionValue::Str(s)) if choices.contains(&s.as_str()) => Ok(s),
            Some(v) => Err(self.bad(key, &format!("one of {choices:?}"), &v)),
        }
    }

    /// Takes an optional list-of-numbers option (a single number is a one-element list).
    pub fn list(&mut self, key: &str) -> Result<Option<Vec<f64>>> {
        match self.values.remove(key) {
            None => Ok(None),
            Some(OptionValue::List(v)) if v.iter().all(|x| x.is_finite()) => Ok(Some(v)),
            Some(OptionValue::Num(x)) if x.is_finite() => Ok(Some(vec![x])),
            Some(v) => Err(self.bad(key, "a list of finite numbers", &v)),
        }
    }

    /// Fails if any option was not consumed, naming it and the options the policy accepts.
    pub fn finish(self, accepted: &[&str]) -> Result<()> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(k) => Err(Error::config(format!(
                "policy {:?} has no option {k:?}; its options are: {}",
                self.policy,
                if accepted.is_empty() {
                    "(none)".to_string()
                } else {
                    accepted.join(", ")
                }
            ))),
        }
    }
}
