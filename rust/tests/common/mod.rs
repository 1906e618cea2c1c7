//! Helpers shared by the Rust integration tests (`fuzz_ops`, `differential`, `trace_fuzz`, `bad_input`, `sim_smoke`, ...).
#![allow(dead_code)]

use fluidsched_core::policies::PolicyContext;
use fluidsched_core::request::{NewRequest, RequestState};
use fluidsched_core::rng::Rng;
use fluidsched_core::workload::RequestType;
use fluidsched_core::{RequestSpec, Scheduler, SchedulerConfig, Workload};
use proptest::prelude::*;

/// Linear time model used by every harness: fixed cost per iteration, seconds.
pub const D0: f64 = 0.005;
/// Linear time model: seconds per token.
pub const D1: f64 = 1e-4;

/// A `ProptestConfig` with `default_cases` cases, or the count in `FLUIDSCHED_PROPTEST_CASES` when set (for
/// long runs: `FLUIDSCHED_PROPTEST_CASES=10000 cargo test --release -p fluidsched-core --test fuzz_ops`).
pub fn proptest_config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("FLUIDSCHED_PROPTEST_CASES").ok().and_then(|v| v.trim().parse().ok());
    ProptestConfig { cases: cases.unwrap_or(default_cases), ..ProptestConfig::default() }
}

/// Tokens a request may hold: the blocks above the watermark times the block size.
pub fn usable_tokens(cfg: &SchedulerConfig) -> u32 {
    (cfg.num_blocks - (cfg.watermark * f64::from(cfg.num_blocks)).floor() as u32) * cfg.block_size
}

/// Small scheduler configurations (caches of at most 1,280 tokens, so Orca's default reservation covers all).
pub fn arb_config() -> impl Strategy<Value = SchedulerConfig> {
    (
        prop::sample::select(vec![1u32, 2, 4, 8, 16]),
        4u32..=80,
        prop_oneof![Just(0.0), 0.01f64..0.1],
        1u32..=16,
        8u32..=600,
        any::<bool>(),
    )
        .prop_map(|(block_size, num_blocks, watermark, max_num_seqs, max_num_batched_tokens, chunked)| {
            SchedulerConfig {
                block_size,
                num_blocks,
                watermark,
                max_num_seqs,
                max_num_batched_tokens,
                enable_chunked_prefill: chunked,
            }
        })
}

/// 1 to 3 request types (the shape `wait_props.rs` uses), with lengths clipped to fit `usable` tokens.
pub fn arb_types() -> impl Strategy<Value = Vec<RequestType>> {
    let ty =
        (1u32..60, 1u32..80, 1.0f64..200.0).prop_map(|(p, o, r)| RequestType { prompt_len: p, output_len: o, rate: r });
    prop::collection::vec(ty, 1..4)
}

/// Clips a (prompt, output) pair so that it fits `usable` tokens (>= 2), both at least 1.
pub fn fit(prompt: u32, output: u32, usable: u32) -> (u32, u32) {
    let prompt = prompt.clamp(1, usable - 1);
    (prompt, output.clamp(1, usable - prompt))
}

/// The policy context a driver gives: the time model, types fitted to the cache, length samples and the rate.
pub fn context(cfg: SchedulerConfig, types: &[RequestType], samples: &[(u32, u32)]) -> PolicyContext {
    let usable = usable_tokens(&cfg);
    let types: Vec<RequestType> = types
        .iter()
        .map(|t| {
            let (p, o) = fit(t.prompt_len, t.output_len, usable);
            RequestType { prompt_len: p, output_len: o, rate: t.rate }
        })
        .collect();
    let samples: Vec<(u32, u32)> = if samples.is_empty() {
        types.iter().map(|t| (t.prompt_len, t.output_len)).collect()
    } else {
        samples.to_vec()
    };
    PolicyContext {
        config: cfg,
        d0: D0,
        d1: D1,
        arrival_rate: Some(types.iter().map(|t| t.rate).sum()),
        types,
        prompt_lengths: samples.iter().map(|s| s.0).collect(),
        output_lengths: samples.iter().map(|s| s.1).collect(),
    }
}

/// A request with the given lengths arriving at `arrival`.
pub fn new_request(id: u64, prompt: u32, output: Option<u32>, hint: Option<u32>, arrival: f64) -> NewRequest {
    NewRequest { id, prompt_len: prompt, output_len: output, output_len_hint: hint, type_id: None, arrival }
}

/// Everything observable about the held requests and the pool, to assert that a rejected call changed nothing.
pub type Snapshot = (usize, usize, u32, Vec<(u64, RequestState, u32, u32, Vec<u32>)>);

/// Takes a [`Snapshot`] of `s` for the ids in `held`.
pub fn snapshot(s: &Scheduler, held: &[u64]) -> Snapshot {
    let reqs = held
        .iter()
        .map(|&id| {
            let r = s.request(id).expect("held request");
            (id, r.state, r.num_computed_tokens, r.num_output_tokens, r.blocks().to_vec())
        })
        .collect();
    (s.num_waiting(), s.num_running(), s.num_free_blocks(), reqs)
}

/// `n` Poisson arrivals at `rate`, prompts 1–600 and outputs 1–400 tokens (so up to 999 in all).
pub fn poisson_workload(n: usize, rate: f64, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut t = 0.0;
    let requests = (0..n)
        .map(|i| {
            t += -(1.0 - rng.next_f64()).ln() / rate;
            RequestSpec {
                id: i as u64,
                arrival: t,
                prompt_len: 1 + (rng.next_u64() % 600) as u32,
                output_len: 1 + (rng.next_u64() % 400) as u32,
                type_id: None,
            }
        })
        .collect();
    Workload { requests, warnings: vec![] }
}
