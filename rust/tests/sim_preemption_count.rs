//! Regression: preemptions made in a step that schedules nothing are still counted in the simulator's records.

use fluidsched_core::policies::fcfs_queue::FcfsQueue;
use fluidsched_core::policies::vllm::{admit_fcfs, schedule_running};
use fluidsched_core::policy::Policy;
use fluidsched_core::request::Slot;
use fluidsched_core::scheduler::SchedulerState;
use fluidsched_core::step::Step;
use fluidsched_core::{RequestSpec, SimConfig, Simulator, Workload};

/// vLLM-like, except that its second step preempts every running request and schedules nothing.
#[derive(Debug, Default)]
struct PreemptOnce {
    waiting: FcfsQueue,
    calls: u32,
}

impl Policy for PreemptOnce {
    fn name(&self) -> &'static str {
        "preempt-once"
    }
    fn enqueue(&mut self, _state: &SchedulerState, slot: Slot) {
        self.waiting.push_back(slot);
    }
    fn remove_waiting(&mut self, _state: &SchedulerState, slot: Slot) -> bool {
        self.waiting.remove_slot(slot)
    }
    fn num_waiting(&self) -> usize {
        self.waiting.len()
    }
    fn schedule(&mut self, state: &mut SchedulerState, step: &mut Step) {
        self.calls += 1;
        if self.calls == 2 {
            while let Some(&slot) = state.running().last() {
                state.preempt(slot, step);
                self.waiting.push_front(slot);
            }
            return;
        }
        let budget = state.config().max_num_batched_tokens;
        let waiting = &mut self.waiting;
        let (budget, preempted) = schedule_running(state, step, budget, |s| waiting.push_front(s));
        if !preempted {
            admit_fcfs(state, step, &mut self.waiting, budget);
        }
    }
}

#[test]
fn preemptions_in_an_empty_step_are_recorded() {
    let w = Workload {
        requests: vec![RequestSpec { id: 0, arrival: 0.0, prompt_len: 10, output_len: 5, type_id: None }],
        warnings: vec![],
    };
    let mut sim = Simulator::new(&w, Box::new(PreemptOnce::default()), &SimConfig::default()).unwrap();
    sim.run().unwrap();
    assert_eq!(sim.records().num_preemptions[0], 1);
    assert_eq!(sim.summary().num_preemptions, 1);
}
