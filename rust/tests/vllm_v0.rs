//! `vllm-v0` (Vidur's vLLM replica scheduler) against a small independent reference, step by step.
//!
//! The reference is written from Vidur's `VLLMReplicaScheduler._get_next_batch` as the policy's module docs state
//! it, not from the policy's code: it keeps its own FCFS queue of ids, orders the running requests by arrival
//! (not by the scheduler's admission order) and picks victims as the latest arrival among those not yet in the
//! batch. Before every step it reads the running requests and free blocks from the scheduler; the scheduled
//! `(id, tokens)` list, the admissions, the preemptions and the free blocks after the step must be identical.
//!
//! On random configurations (the engine's `max_num_batched_tokens` and chunking flag drawn too: the policy must
//! ignore them), random `max_tokens_in_batch` and `batch_size_cap`, random workloads and random aborts, every
//! step is also checked against the rules directly: a step that admits holds only the admitted prefills (no
//! decode), whole and unchunked; the padded cap `k × longest ≤ max_tokens_in_batch` holds unless the batch is a
//! single request; at most `batch_size_cap` requests run; a decode step gives every scheduled request one token
//! and admits nothing; blocks are conserved (free + held = total, and the scheduler's invariants); every
//! request finishes exactly once, and the run drains.

mod common;

use std::collections::{HashMap, VecDeque};

use fluidsched_core::policies::{PolicyContext, VllmV0Policy, build_policy};
use fluidsched_core::policy::{OptionValue, PolicyOptions};
use fluidsched_core::request::{NewRequest, Request};
use fluidsched_core::{Scheduler, SchedulerConfig};
use proptest::prelude::*;

use common::{arb_config, fit, proptest_config, usable_tokens};

/// A request as the reference sees it.
#[derive(Debug, Clone)]
struct R {
    id: u64,
    arrival: f64,
    /// Known tokens: prompt plus output emitted.
    tokens: u32,
    /// Tokens whose KV is held.
    computed: u32,
    blocks: u32,
}

fn r_of(r: &Request) -> R {
    R {
        id: r.id,
        arrival: r.arrival,
        tokens: r.prompt_len + r.num_output_tokens,
        computed: r.num_computed_tokens,
        blocks: r.blocks().len() as u32,
    }
}

/// What one step decided.
#[derive(Debug, Clone, Default, PartialEq)]
struct Decision {
    scheduled: Vec<(u64, u32)>,
    admitted: Vec<u64>,
    preempted: Vec<u64>,
}

/// Vidur's vLLM scheduler over plain vectors. `queue` is the reference's own waiting queue (ids); `free` the
/// free blocks, updated in place.
struct Reference {
    cfg: SchedulerConfig,
    max_tokens_in_batch: u32,
    batch_size_cap: u32,
    watermark: u32,
}

impl Reference {
    fn blocks_for(&self, tokens: u32) -> u32 {
        tokens.div_ceil(self.cfg.block_size)
    }

    fn step(&self, running: Vec<R>, queue: &mut VecDeque<R>, free: &mut u32) -> Decision {
        let mut d = Decision::default();
        // Prefill-only batch: whole prompts, FCFS, memory + watermark, padded cap, batch cap; first failure stops.
        let mut n_running = running.len();
        let mut lens: Vec<u32> = Vec::new();
        while let Some(r) = queue.front() {
            let t = r.tokens - r.computed;
            let need = self.blocks_for(t);
            if i64::from(*free) - i64::from(need) < i64::from(self.watermark) {
                break;
            }
            let k = lens.len() as u64 + 1;
            let longest = lens.iter().copied().chain([t]).max().unwrap();
            if k > 1 && k * u64::from(longest) > u64::from(self.max_tokens_in_batch) {
                break;
            }
            if n_running == self.batch_size_cap as usize {
                break;
            }
            let r = queue.pop_front().unwrap();
            *free -= need;
            n_running += 1;
            lens.push(t);
            d.scheduled.push((r.id, t));
            d.admitted.push(r.id);
        }
        if !d.admitted.is_empty() {
            return d;
        }
        // Decode batch: running requests by arrival; a missing block evicts the latest arrival not yet batched.
        let mut pending = running;
        pending.sort_by(|a, b| a.arrival.total_cmp(&b.arrival).then(a.id.cmp(&b.id)));
        let mut pending: VecDeque<R> = pending.into();
        while let Some(r) = pending.pop_front() {
            loop {
                let need = self.blocks_for(r.computed + 1).saturating_sub(r.blocks);
                if need <= *free {
                    *free -= need;
                    d.scheduled.push((r.id, 1));
                    break;
                }
                let victim = pending.pop_back().unwrap_or_else(|| r.clone());
                *free += victim.blocks;
                d.preempted.push(victim.id);
                let own = victim.id == r.id;
                queue.push_front(R { computed: 0, blocks: 0, ..victim });
                if own {
                    break;
                }
            }
        }
        d
    }
}

#[derive(Debug, Clone, Copy)]
struct Req {
    gap: u32,
    prompt: u32,
    output: u32,
}

fn arb_reqs() -> impl Strategy<Value = Vec<Req>> {
    prop::collection::vec((0u32..4, 1u32..150, 1u32..100), 1..40)
        .prop_map(|v| v.into_iter().map(|(gap, prompt, output)| Req { gap, prompt, output }).collect())
}

fn policy(max_tokens: Option<u32>, cap: Option<u32>) -> Box<dyn fluidsched_core::Policy> {
    let mut o = Vec::new();
    if let Some(m) = max_tokens {
        o.push(("max_tokens_in_batch".to_string(), OptionValue::Num(f64::from(m))));
    }
    if let Some(c) = cap {
        o.push(("batch_size_cap".to_string(), OptionValue::Num(f64::from(c))));
    }
    build_policy("vllm-v0", PolicyOptions::new("vllm-v0", o), &PolicyContext::default()).unwrap()
}

/// Drives the scheduler and the reference side by side; `aborts[t]` aborts the held request at that index at
/// step t. Returns the number of preemptions seen.
fn run(
    cfg: SchedulerConfig,
    max_tokens: Option<u32>,
    cap: Option<u32>,
    reqs: &[Req],
    aborts: &[Option<usize>],
) -> Result<usize, TestCaseError> {
    let mut sched = Scheduler::new(cfg, policy(max_tokens, cap)).unwrap();
    let reference = Reference {
        cfg,
        max_tokens_in_batch: max_tokens.unwrap_or(VllmV0Policy::DEFAULT_MAX_TOKENS_IN_BATCH),
        batch_size_cap: cap.map_or(cfg.max_num_seqs, |c| c.min(cfg.max_num_seqs)),
        watermark: sched.state().pool().watermark_blocks(),
    };
    let usable = usable_tokens(&cfg);
    let mut queue: VecDeque<u64> = VecDeque::new();
    let (mut held, mut next, mut arrival) = (Vec::<u64>::new(), 0usize, 0u64);
    let mut finished: HashMap<u64, u32> = HashMap::new();
    let mut aborted = 0usize;
    let mut preemptions = 0usize;
    for t in 0u64..50_000 {
        let now = t as f64 * 0.01;
        while next < reqs.len() && arrival + u64::from(reqs[next].gap) <= t {
            let q = reqs[next];
            arrival += u64::from(q.gap);
            let (prompt, output) = fit(q.prompt, q.output, usable);
            let id = next as u64;
            let new = NewRequest {
                id,
                prompt_len: prompt,
                output_len: Some(output),
                output_len_hint: None,
                type_id: None,
                arrival: now,
            };
            sched.add_request(new).map_err(|e| TestCaseError::fail(e.to_string()))?;
            queue.push_back(id);
            held.push(id);
            next += 1;
        }
        if let Some(Some(k)) = aborts.get(t as usize) {
            if !held.is_empty() {
                let id = held.remove(k % held.len());
                sched.abort_request(id).map_err(|e| TestCaseError::fail(e.to_string()))?;
                queue.retain(|&x| x != id);
                aborted += 1;
            }
        }
        if held.is_empty() {
            if next == reqs.len() {
                prop_assert_eq!(finished.len() + aborted, reqs.len(), "requests lost");
                prop_assert!(finished.values().all(|&n| n == 1), "a request finished twice");
                prop_assert_eq!(sched.num_used_blocks(), 0);
                return Ok(preemptions);
            }
            continue;
        }
        // The reference's view before the step.
        let st = sched.state();
        let running: Vec<R> = st.running().iter().map(|&s| r_of(st.request(s))).collect();
        let mut q: VecDeque<R> = queue.iter().map(|&id| r_of(sched.request(id).unwrap())).collect();
        let mut free = sched.num_free_blocks();
        let expected = reference.step(running, &mut q, &mut free);

        let step = sched.schedule(now).map_err(|e| TestCaseError::fail(e.to_string()))?.clone();
        let actual = Decision {
            scheduled: step.scheduled.iter().map(|s| (s.id, s.num_tokens)).collect(),
            admitted: step.admitted.clone(),
            preempted: step.preempted.clone(),
        };
        prop_assert_eq!(&actual, &expected, "step {}", t);
        prop_assert_eq!(sched.num_free_blocks(), free, "free blocks after step {}", t);
        queue = q.iter().map(|r| r.id).collect();
        preemptions += step.preempted.len();

        // The rules, directly.
        let k = step.admitted.len() as u64;
        if k > 0 {
            prop_assert!(step.preempted.is_empty(), "step {t} admits and preempts");
            prop_assert_eq!(step.scheduled.len() as u64, k, "step {} admits and decodes", t);
            for s in &step.scheduled {
                prop_assert!(s.is_prefill && s.context == 0 && step.admitted.contains(&s.id), "step {t}: {s:?}");
                let r = sched.request(s.id).unwrap();
                prop_assert_eq!(s.num_tokens, r.num_tokens(), "step {}: prefill not whole", t);
            }
            let longest = step.scheduled.iter().map(|s| s.num_tokens).max().unwrap();
            prop_assert!(k == 1 || k * u64::from(longest) <= u64::from(reference.max_tokens_in_batch), "padded cap");
        } else {
            prop_assert!(step.scheduled.iter().all(|s| s.num_tokens == 1 && !s.is_prefill), "step {t}: not a decode");
            prop_assert_eq!(
                step.scheduled.len(),
                sched.num_running(),
                "step {}: a running request sat out a decode",
                t
            );
        }
        prop_assert!(sched.num_running() <= reference.batch_size_cap as usize, "batch cap");
        let st = sched.state();
        let held_blocks: u32 = st.running().iter().map(|&s| st.request(s).blocks().len() as u32).sum();
        prop_assert_eq!(held_blocks + sched.num_free_blocks(), cfg.num_blocks, "blocks not conserved");
        sched.check_invariants().map_err(TestCaseError::fail)?;

        let out = sched.complete_step(&[]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for &id in &out.finished {
            *finished.entry(id).or_default() += 1;
        }
        held.retain(|id| !out.finished.contains(id));
    }
    Err(TestCaseError::fail("workload did not finish"))
}

fn aborts() -> impl Strategy<Value = Vec<Option<usize>>> {
    prop::collection::vec(prop::option::weighted(0.05, any::<usize>()), 0..200)
}

proptest! {
    #![proptest_config(proptest_config(192))]

    /// Random limits, options, workloads and aborts: identical to the reference, every rule holds.
    #[test]
    fn vllm_v0_matches_reference(
        cfg in arb_config(), reqs in arb_reqs(), ab in aborts(),
        max_tokens in prop::option::of(1u32..600), cap in prop::option::of(1u32..24),
    ) {
        run(cfg, max_tokens, cap, &reqs, &ab)?;
    }

    /// Tight memory and no aborts: preemption happens often, and still matches.
    #[test]
    fn vllm_v0_matches_reference_under_memory_pressure(
        block_size in prop::sample::select(vec![1u32, 2, 4]), num_blocks in 8u32..40, reqs in arb_reqs(),
        max_tokens in prop::option::of(8u32..400),
    ) {
        let cfg = SchedulerConfig { block_size, num_blocks, watermark: 0.0, max_num_seqs: 16, ..SchedulerConfig::default() };
        run(cfg, max_tokens, None, &reqs, &[])?;
    }
}

/// The pressure test does exercise preemption (else the victim rule would go untested).
#[test]
fn pressure_workload_preempts() {
    let cfg = SchedulerConfig {
        block_size: 1,
        num_blocks: 40,
        watermark: 0.0,
        max_num_seqs: 16,
        ..SchedulerConfig::default()
    };
    let reqs: Vec<Req> = (0..12).map(|i| Req { gap: 0, prompt: 5 + i % 3, output: 20 }).collect();
    let n = run(cfg, None, None, &reqs, &[]).unwrap();
    assert!(n > 0, "no preemption");
}
