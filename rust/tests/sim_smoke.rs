//! End-to-end checks of the simulator with the vLLM policy on a generated workload.

mod common;

use common::poisson_workload;
use fluidsched_core::policies::VllmPolicy;
use fluidsched_core::{RequestSpec, SchedulerConfig, SimConfig, Simulator, TimeModel, Workload};

fn config(num_blocks: u32) -> SimConfig {
    SimConfig {
        scheduler: SchedulerConfig { num_blocks, ..SchedulerConfig::default() },
        time_model: TimeModel::Linear { d0: 0.005, d1: 0.0001 },
        ..SimConfig::default()
    }
}

#[test]
fn every_request_finishes_and_memory_binds() {
    let w = poisson_workload(3000, 40.0, 7);
    let mut sim = Simulator::new(&w, Box::new(VllmPolicy::new()), &config(1500)).unwrap();
    sim.run().unwrap();
    let s = sim.summary();
    assert_eq!(s.num_finished, 3000);
    assert!(s.kv_usage_max_fraction <= 1.0);
    assert!(s.num_preemptions > 0, "a 24k-token cache under this load must preempt: {s:?}");
    let r = sim.records();
    for i in 0..r.len() {
        assert!(r.arrival[i] <= r.first_scheduled[i]);
        assert!(r.first_scheduled[i] < r.first_token[i]);
        assert!(r.first_token[i] <= r.finish[i]);
    }
    assert_eq!(sim.scheduler().num_used_blocks(), 0, "all blocks returned");
}

#[test]
fn same_seed_same_results() {
    let w = poisson_workload(500, 30.0, 3);
    let run = || {
        let mut sim = Simulator::new(&w, Box::new(VllmPolicy::new()), &config(800)).unwrap();
        sim.run().unwrap();
        (sim.records().clone(), sim.time_between_tokens().to_vec())
    };
    let (a, ta) = run();
    let (b, tb) = run();
    assert_eq!(
        a.finish.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        b.finish.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(ta.len(), tb.len());
    assert!(ta.iter().zip(&tb).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn oversize_requests_are_counted_and_can_be_dropped() {
    let cfg = config(8); // 8 blocks of 16 tokens
    let spec =
        |id: u64, len: u32| RequestSpec { id, arrival: id as f64, prompt_len: len, output_len: 4, type_id: None };
    let w = Workload::from_specs(vec![spec(0, 10), spec(1, 500), spec(2, 20), spec(3, 900)]).unwrap();
    let policy = || Box::new(VllmPolicy::default()) as Box<dyn fluidsched_core::policy::Policy>;
    let err = Simulator::new(&w, policy(), &cfg).unwrap_err().to_string();
    assert!(err.contains("2 of the 4 requests") && err.contains("drop_oversize"), "{err}");
    let cfg = SimConfig { drop_oversize: true, ..cfg };
    let mut sim = Simulator::new(&w, policy(), &cfg).unwrap();
    sim.run().unwrap();
    assert_eq!(sim.num_dropped(), 2);
    let s = sim.summary();
    assert_eq!((s.num_finished, s.num_rejected), (2, 2));
}
