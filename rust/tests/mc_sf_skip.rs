//! MC-SF with `on_infeasible = "skip"` jumps over waiting candidates that must fail (its `SizedQueue`); these
//! tests check that it makes exactly the decisions of the plain walk that tries every candidate. (Its speed under
//! overload is measured by `bench/sim_speed.py --scaling`, not here.)

mod common;

use common::{arb_config, poisson_workload, proptest_config};
use fluidsched_core::TimeModel;
use fluidsched_core::policies::mc_sf::McSfPolicy;
use fluidsched_core::sim::{SimConfig, Simulator};
use fluidsched_core::workload::Workload;
use proptest::prelude::*;

fn run(workload: &Workload, config: &SimConfig, policy: McSfPolicy) -> Simulator {
    let mut sim = Simulator::new(workload, Box::new(policy), config).expect("valid simulation");
    sim.run().expect("the run completes");
    sim
}

proptest! {
    #![proptest_config(proptest_config(64))]

    /// Same records and the same iteration log, request for request and step for step.
    #[test]
    fn skipping_makes_the_plain_walks_decisions(
        scheduler in arb_config(),
        n in 20usize..200,
        rate in 5.0f64..400.0,
        seed in any::<u64>(),
        length_error in prop_oneof![Just(0.0), 0.0f64..0.5],
    ) {
        let mut workload = poisson_workload(n, rate, seed);
        let usable = common::usable_tokens(&scheduler);
        for r in &mut workload.requests {
            (r.prompt_len, r.output_len) = common::fit(r.prompt_len, r.output_len, usable);
        }
        let config = SimConfig {
            scheduler,
            time_model: TimeModel::Linear { d0: common::D0, d1: common::D1 },
            seed,
            length_error,
            ..SimConfig::default()
        };
        let indexed = run(&workload, &config, McSfPolicy::new(true, 256));
        let plain = run(&workload, &config, McSfPolicy::new(true, 256).with_exhaustive_walk());
        prop_assert_eq!(indexed.records(), plain.records());
        prop_assert_eq!(indexed.iteration_log(), plain.iteration_log());
    }
}
