//! Criterion benchmarks of the core: a whole simulation of the bundled Azure sample per policy, one
//! scheduler step with a full running batch, and one engine-facing admission decision (`AdmissionController`).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluidsched_core::gate::{AdmissionController, AdmissionView};
use fluidsched_core::policies::{POLICY_NAMES, PolicyContext, build_policy};
use fluidsched_core::policy::{OptionValue, PolicyOptions};
use fluidsched_core::request::NewRequest;
use fluidsched_core::sim::{SimConfig, Simulator, policy_context};
use fluidsched_core::workload::{RequestType, TraceData, TraceOptions, Workload, read_trace_file};
use fluidsched_core::{Scheduler, SchedulerConfig, TimeModel};

fn azure() -> Workload {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python/fluidsched/data/azure_conv_2023_5k.csv");
    match read_trace_file(&path, &TraceOptions::default()).expect("bundled trace") {
        TraceData::Timed(w) => w,
        TraceData::Lengths(_) => panic!("the Azure sample has arrival times"),
    }
}

fn simulate_azure(c: &mut Criterion) {
    let workload = azure();
    let config = SimConfig { time_model: TimeModel::default_preset(), ..SimConfig::default() };
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

/// Waiting requests behind the running batch in `admission_decide` (as in the vLLM overhead benchmark).
const ADMISSION_WAITING: u64 = 1000;

/// A controller in the vLLM steady state of `bench/vllm_overhead.py`: 200,000 blocks of 16 tokens (block 0 is
/// vLLM's null block), one request type (128-token prompts, 1,800-token outputs, 5 req/s), a linear time model
/// (about the `llama2-7b-a100` linearisation), `running` requests started (`max_num_seqs` = `running`) and
/// [`ADMISSION_WAITING`] queued behind them.
fn steady_controller(policy: &str, options: PolicyOptions, running: u32) -> AdmissionController {
    let config = SchedulerConfig {
        num_blocks: 199_999,
        block_size: 16,
        watermark: 0.0,
        max_num_seqs: running,
        max_num_batched_tokens: 8192,
        enable_chunked_prefill: true,
    };
    let ctx = PolicyContext {
        config,
        d0: 0.014,
        d1: 8e-5,
        types: vec![RequestType { prompt_len: 128, output_len: 1800, rate: 5.0 }],
        ..PolicyContext::default()
    };
    let mut c = AdmissionController::new(policy, options, &ctx).expect("controller");
    for id in 0..u64::from(running) {
        c.add_request(id, 0.0, 128, Some(1800), None).expect("add");
        c.on_admitted(id, 0).expect("admit");
    }
    for id in u64::from(running)..u64::from(running) + ADMISSION_WAITING {
        c.add_request(id, 1.0, 128, Some(1800), None).expect("add");
    }
    c
}

fn admission_decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("admission_decide");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_millis(300));
    for &running in &[64u32, 256, 512] {
        // The batch is full (`max_num_seqs` = running): the decision admits nothing, as in vLLM's steady state.
        let view = AdmissionView {
            now: 2.0,
            num_running: running,
            num_free_blocks: 199_999 - 9 * running,
            max_num_seqs: running,
            stalled: false,
        };
        group.bench_function(format!("wait_{running}"), |b| {
            let mut wait = steady_controller("wait", PolicyOptions::new("wait", []), running);
            assert!(wait.decide(&view).admit.is_empty(), "the batch is full");
            b.iter(|| black_box(wait.decide(black_box(&view)).admit.len()))
        });
        let segments = || {
            let boundaries = vec![64.0, 256.0, 1024.0];
            PolicyOptions::new("nested-wait", [("segments".to_string(), OptionValue::List(boundaries))])
        };
        group.bench_function(format!("nested-wait_{running}"), |b| {
            let mut nested = steady_controller("nested-wait", segments(), running);
            assert!(nested.decide(&view).admit.is_empty(), "the batch is full");
            b.iter(|| black_box(nested.decide(black_box(&view)).admit.len()))
        });
        // One step of the adapter's Nested WAIT work: the decision, then the outputs of every running request
        // (all inside segment 1, so nothing pauses and every iteration does the same work).
        group.bench_function(format!("nested-wait+on_outputs_{running}"), |b| {
            let mut nested = steady_controller("nested-wait", segments(), running);
            let ids: Vec<u64> = (0..u64::from(running)).collect();
            let outputs: Vec<u32> = (0..running).map(|i| 1 + i % 63).collect();
            b.iter(|| {
                let admitted = nested.decide(black_box(&view)).admit.len();
                let paused = nested.on_outputs(black_box(&ids), black_box(&outputs), 2.0);
                black_box((admitted, paused.len()))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, simulate_azure, one_step, admission_decide);
criterion_main!(benches);
