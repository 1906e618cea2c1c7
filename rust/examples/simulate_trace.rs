//! Simulates a trace from Rust: `cargo run --release --example simulate_trace -- TRACE [POLICY] [REPEATS]`.
//!
//! Prints the summary and the simulated requests per wall-second (the core alone, no Python).

use std::path::PathBuf;
use std::time::Instant;

use fluidsched_core::policies::build_policy;
use fluidsched_core::policy::PolicyOptions;
use fluidsched_core::sim::{SimConfig, Simulator, policy_context};
use fluidsched_core::workload::{TraceData, TraceOptions, read_trace_file};
use fluidsched_core::{Error, TimeModel};

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().unwrap_or_else(|| "python/fluidsched/data/azure_conv_2023_5k.csv".into()));
    let policy = args.next().unwrap_or_else(|| "vllm".into());
    let repeats: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(1);
    let workload = match read_trace_file(&path, &TraceOptions::default())? {
        TraceData::Timed(w) => w,
        TraceData::Lengths(_) => return Err(Error::config("this example needs a trace with arrival times")),
    };
    let config = SimConfig { time_model: TimeModel::default_preset(), ..SimConfig::default() };
    let ctx = policy_context(&workload, config.scheduler, &config.time_model);
    for _ in 0..repeats {
        let start = Instant::now();
        let mut sim =
            Simulator::new(&workload, build_policy(&policy, PolicyOptions::new(&policy, []), &ctx)?, &config)?;
        sim.run()?;
        let summary = sim.summary();
        let wall = start.elapsed().as_secs_f64();
        println!(
            "{policy}: {} requests, {:.1} tok/s, mean latency {:.3} s, {} preemptions; {:.0} simulated requests per wall-second",
            summary.num_finished,
            summary.throughput_tokens_per_s,
            summary.latency_mean_s,
            summary.num_preemptions,
            summary.num_finished as f64 / wall
        );
    }
    Ok(())
}
