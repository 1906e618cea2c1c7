//! Property tests of the scheduler under the vLLM policy: random arrivals and lengths, driven step by step.
//! Each request finishes exactly once, KV use never exceeds capacity, invariants hold after every step, and
//! first admissions follow arrival order (FCFS).

use std::collections::HashMap;

use fluidsched_core::policies::VllmPolicy;
use fluidsched_core::request::NewRequest;
use fluidsched_core::{Scheduler, SchedulerConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Arrival {
    gap_steps: u32,
    prompt_len: u32,
    output_len: u32,
}

fn arrival() -> impl Strategy<Value = Arrival> {
    (0u32..4, 1u32..60, 1u32..40).prop_map(|(gap_steps, prompt_len, output_len)| Arrival {
        gap_steps,
        prompt_len,
        output_len,
    })
}

fn config() -> impl Strategy<Value = SchedulerConfig> {
    (8u32..40, prop::sample::select(vec![1u32, 4, 8, 16]), 1u32..12, 8u32..128, any::<bool>(), 0u32..3).prop_map(
        |(num_blocks, block_size, max_num_seqs, max_num_batched_tokens, enable_chunked_prefill, wm)| SchedulerConfig {
            num_blocks,
            block_size,
            watermark: f64::from(wm) * 0.05,
            max_num_seqs,
            max_num_batched_tokens,
            enable_chunked_prefill,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn vllm_finishes_everything_once_within_capacity(cfg in config(), arrivals in prop::collection::vec(arrival(), 1..60)) {
        let mut s = Scheduler::new(cfg, Box::new(VllmPolicy::new())).unwrap();
        let usable_tokens = (cfg.num_blocks - s.state().pool().watermark_blocks()) * cfg.block_size;
        // Requests that can never fit are rejected up front; keep the ones that can.
        let mut pending: Vec<(u32, NewRequest)> = Vec::new();
        let mut step_at = 0u32;
        for (i, a) in arrivals.iter().enumerate() {
            step_at += a.gap_steps;
            let fits = a.prompt_len + a.output_len <= usable_tokens;
            let new = NewRequest {
                id: i as u64, prompt_len: a.prompt_len, output_len: Some(a.output_len),
                output_len_hint: None, type_id: None, arrival: f64::from(step_at),
            };
            if !fits {
                prop_assert!(s.add_request(new).is_err(), "a request larger than the cache must be rejected");
                continue;
            }
            pending.push((step_at, new));
        }
        let total = pending.len();
        let mut finished: HashMap<u64, u32> = HashMap::new();
        let mut first_admission_order: Vec<u64> = Vec::new();
        let mut admitted_once = std::collections::HashSet::new();
        let mut next = 0;
        let mut step = 0u32;
        while finished.len() < total {
            while next < pending.len() && pending[next].0 <= step {
                s.add_request(pending[next].1).unwrap();
                next += 1;
            }
            let st = s.schedule(f64::from(step)).unwrap();
            let tokens: u32 = st.scheduled.iter().map(|r| r.num_tokens).sum();
            prop_assert!(tokens <= cfg.max_num_batched_tokens, "token budget exceeded");
            for &id in &st.admitted {
                if admitted_once.insert(id) {
                    first_admission_order.push(id);
                }
            }
            prop_assert!(s.num_used_blocks() <= cfg.num_blocks);
            prop_assert!(s.num_running() <= cfg.max_num_seqs as usize);
            let out = s.complete_step(&[]).unwrap();
            for &id in &out.finished {
                *finished.entry(id).or_default() += 1;
            }
            prop_assert!(s.check_invariants().is_ok(), "{:?}", s.check_invariants());
            step += 1;
            prop_assert!(step < 100_000, "no progress");
        }
        prop_assert!(finished.values().all(|&c| c == 1), "each request finishes exactly once");
        prop_assert_eq!(s.num_used_blocks(), 0);
        prop_assert_eq!(s.num_unfinished(), 0);
        // FCFS: requests are first admitted in arrival (id) order.
        prop_assert!(first_admission_order.windows(2).all(|w| w[0] < w[1]), "{:?}", first_admission_order);
    }
}
