//! The first-come-first-served waiting queue shared by vLLM, Sarathi-Serve, SGLang and Orca, and the macro that
//! implements their identical [`Policy`](crate::policy::Policy) queue methods on top of it.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};

use crate::policies::vllm::schedule_running;
use crate::request::Slot;
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// Waiting requests in admission order: new arrivals at the back, preempted requests back at the front.
#[derive(Debug, Clone, Default)]
pub struct FcfsQueue(VecDeque<Slot>);

impl FcfsQueue {
    /// Serves the running requests by vLLM's rule ([`schedule_running`]) within `budget` tokens, putting the
    /// requests it preempts back at the front of this queue (oldest first). Returns the budget left and whether
    /// anything was preempted.
    pub fn serve_running(&mut self, state: &mut SchedulerState, step: &mut Step, budget: u32) -> (u32, bool) {
        schedule_running(state, step, budget, |slot| self.0.push_front(slot))
    }

    /// Removes `slot` wherever it is (an aborted request); false if it is not queued.
    pub fn remove_slot(&mut self, slot: Slot) -> bool {
        match self.0.iter().position(|&s| s == slot) {
            Some(pos) => self.0.remove(pos).is_some(),
            None => false,
        }
    }
}

impl Deref for FcfsQueue {
    type Target = VecDeque<Slot>;

    fn deref(&self) -> &VecDeque<Slot> {
        &self.0
    }
}

impl DerefMut for FcfsQueue {
    fn deref_mut(&mut self) -> &mut VecDeque<Slot> {
        &mut self.0
    }
}

/// Implements `enqueue`, `remove_waiting` and `num_waiting` for a policy whose `waiting` field is an
/// [`FcfsQueue`]. Use inside `impl Policy for ...`.
macro_rules! fcfs_queue_methods {
    () => {
        fn enqueue(&mut self, _state: &$crate::scheduler::SchedulerState, slot: $crate::request::Slot) {
            self.waiting.push_back(slot);
        }

        fn remove_waiting(&mut self, _state: &$crate::scheduler::SchedulerState, slot: $crate::request::Slot) -> bool {
            self.waiting.remove_slot(slot)
        }

        fn num_waiting(&self) -> usize {
            self.waiting.len()
        }
    };
}

pub(crate) use fcfs_queue_methods;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_slot_keeps_order() {
        let mut q = FcfsQueue::default();
        q.extend([3, 1, 4, 1, 5]);
        assert!(q.remove_slot(4));
        assert!(!q.remove_slot(9));
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), vec![3, 1, 1, 5]);
    }
}
