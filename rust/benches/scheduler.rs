//! Criterion benchmarks of the core: a whole simulation of the bundled Azure sample per policy, and one
//! scheduler step with a full running batch.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluidsched_core::policies::{POLICY_NAMES, PolicyContext, build_policy};
use fluidsched_core::policy::PolicyOptions;
use fluidsched_core::request::NewRequest;
use fluidsched_core::sim::{SimConfig, Simulator, policy_context};
use fluidsched_core::workload::{TraceData, TraceOptions, Workload, read_trace_file};
use fluidsched_core::{Scheduler, SchedulerConfig, TimeModel};

fn azure() -> Workload {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/fluidsched/data/azure_conv_2023_5k.csv");
    match read_trace_file(&path, &TraceOptions::default()).expect("bundled trace") {
        TraceData::Timed(w) => w,
        TraceData::Lengths(_) => panic!("the Azure sample has arrival times"),
    }
}

fn simulate_azure(c: &mut Criterion) {
    let workload = azure();
    let config = SimConfig { time_model: TimeModel::Llama2_7bA100, ..SimConfig::default() };
    let mut group = c.benchmark_group("simulate_azure_5k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(workload.requests.len() as u64));
    for &name in POLICY_NAMES {
        let ctx = policy_context(&workload, config.scheduler, &config.time_model);
        group.bench_function(name, |b| {
            b.iter(|| {
                let policy = build_policy(name, PolicyOptions::new(name, []), &ctx).expect("policy");
                let mut sim = Simulator::new(&workload, policy, &config).expect("simulator");
                sim.run().expect("run");
                black_box(sim.summary().num_finished)
            })
        });
    }
    group.finish();
}

fn one_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler_step");
    for &running in &[64u32, 256] {
        group.throughput(Throughput::Elements(u64::from(running)));
        group.bench_function(format!("vllm_decode_{running}"), |b| {
            // Blocks of 2^20 tokens: the batch decodes for ever without allocating, so this times the step itself.
            let config = SchedulerConfig {
                max_num_seqs: 1024,
                num_blocks: 1024,
                block_size: 1 << 20,
                max_num_batched_tokens: 1 << 20,
                ..SchedulerConfig::default()
            };
            let ctx = PolicyContext { config, ..PolicyContext::default() };
            let policy = build_policy("vllm", PolicyOptions::new("vllm", []), &ctx).expect("policy");
            let mut s = Scheduler::new(config, policy).expect("scheduler");
            for id in 0..u64::from(running) {
                let new = NewRequest {
                    id,
                    prompt_len: 100,
                    output_len: None,
                    output_len_hint: None,
                    type_id: None,
                    arrival: 0.0,
                };
                s.add_request(new).expect("add");
            }
            s.schedule(0.0).expect("schedule");
            s.complete_step(&[]).expect("complete");
            b.iter(|| {
                let n = s.schedule(0.0).expect("schedule").scheduled.len();
                s.complete_step(&[]).expect("complete");
                black_box(n)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, simulate_azure, one_step);
criterion_main!(benches);
