//! The first-come-first-served waiting queue shared by vLLM, Sarathi-Serve, SGLang and Orca, and the macro that
//! implements their identical [`Policy`](crate::policy::Policy) queue methods on top of it.

use crate::keyed_deque::KeyedDeque;
use crate::policies::vllm::schedule_running;
use crate::request::Slot;
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// Waiting requests in admission order: new arrivals at the back, preempted requests back at the front. Removing
/// a request from anywhere (aborted, or finished while waiting) is O(1): no scan of the queue.
#[derive(Debug, Clone, Default)]
pub struct FcfsQueue(KeyedDeque<Slot, ()>);

impl FcfsQueue {
    /// Serves the running requests by vLLM's rule ([`schedule_running`]) within `budget` tokens, putting the
    /// requests it preempts back at the front of this queue (oldest first). Returns the budget left and whether
    /// anything was preempted.
    pub fn serve_running(&mut self, state: &mut SchedulerState, step: &mut Step, budget: u32) -> (u32, bool) {
        schedule_running(state, step, budget, |slot| self.push_front(slot))
    }

    /// Removes `slot` wherever it is (an aborted request), in O(1); false if it is not queued.
    pub fn remove_slot(&mut self, slot: Slot) -> bool {
        self.0.remove(&slot).is_some()
    }

    /// A new arrival, at the back.
    pub fn push_back(&mut self, slot: Slot) {
        self.0.push_back(slot, ());
    }

    /// A preempted request, back at the front.
    pub fn push_front(&mut self, slot: Slot) {
        self.0.push_front(slot, ());
    }

    /// The head of the queue.
    pub fn front(&self) -> Option<Slot> {
        self.0.front().map(|(slot, ())| slot)
    }

    /// Takes the head of the queue.
    pub fn pop_front(&mut self) -> Option<Slot> {
        self.0.pop_front().map(|(slot, ())| slot)
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The waiting requests, front to back.
    pub fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        self.0.iter().map(|(slot, ())| slot)
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
        [3, 1, 4, 2, 5].into_iter().for_each(|s| q.push_back(s));
        q.push_front(7);
        assert!(q.remove_slot(4));
        assert!(!q.remove_slot(9));
        assert!(!q.remove_slot(4));
        assert_eq!(q.iter().collect::<Vec<_>>(), vec![7, 3, 1, 2, 5]);
        assert_eq!(q.pop_front(), Some(7));
        assert_eq!((q.front(), q.len()), (Some(3), 4));
    }
}
