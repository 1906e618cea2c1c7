//! Aborting waiting requests never scans a policy's waiting queue: cancelling W waiting requests costs O(W) in
//! all (it cost O(W²) when each abort searched the queue). No timing assertion: 200,000 aborts per policy, newest
//! first (the worst order for a front-to-back search), would take minutes with the old queues; the speed itself
//! is measured by `bench/sim_speed.py` and the criterion bench.

mod common;

use common::{context, new_request};
use fluidsched_core::policies::{POLICY_NAMES, build_policy};
use fluidsched_core::policy::PolicyOptions;
use fluidsched_core::workload::RequestType;
use fluidsched_core::{Scheduler, SchedulerConfig};

const W: u64 = 200_000;

#[test]
fn aborting_many_waiting_requests_is_linear_in_total() {
    let cfg = SchedulerConfig::default();
    let types = [
        RequestType { prompt_len: 64, output_len: 16, rate: 2.0 },
        RequestType { prompt_len: 128, output_len: 256, rate: 1.0 },
    ];
    let ctx = context(cfg, &types, &[]);
    for &name in POLICY_NAMES {
        let policy = build_policy(name, PolicyOptions::new(name, []), &ctx).expect("policy builds");
        let mut sched = Scheduler::new(cfg, policy).expect("scheduler builds");
        for id in 0..W {
            let (prompt, out) = if id % 3 == 0 { (128, 256) } else { (64, 16) };
            let mut r = new_request(id, prompt, Some(out), Some(out), id as f64 * 1e-3);
            r.type_id = Some(u32::from(id % 3 == 0));
            sched.add_request(r).expect("request fits");
        }
        assert_eq!(sched.num_waiting() as u64, W, "{name}");
        // Every other request from the back, then the rest from the middle outwards.
        for id in (0..W).rev().step_by(2) {
            sched.abort_request(id).expect("waiting request aborts");
        }
        assert_eq!(sched.num_waiting() as u64, W / 2, "{name}");
        let mut rest: Vec<u64> = (0..W).step_by(2).collect();
        rest.sort_by_key(|&id| id.abs_diff(W / 2));
        for id in rest {
            sched.abort_request(id).expect("waiting request aborts");
        }
        assert_eq!(sched.num_waiting(), 0, "{name}");
        assert!(sched.abort_request(0).is_err(), "{name}: already gone");
    }
}
