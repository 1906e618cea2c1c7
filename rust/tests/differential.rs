//! Differential tests: each policy's per-step decision against a deliberately simple reference implementation
//! (`differential/reference*.rs`), step by step on random workloads with random aborts. Before every step the
//! reference reads the scheduler's state (running list, blocks, counters) and keeps its own waiting queues;
//! the scheduled `(id, tokens)` list, the admissions, the preemptions and the free blocks after the step must
//! be identical.
//!
//! Exact: vLLM, Sarathi, Orca, MC-SF (feasibility by brute force over every future step, not the Fenwick-tree
//! profile), SGLang (its ratio schedule recomputed independently, with the same floating-point operation order,
//! so the reservation inequality is decided identically) and WAIT with explicit thresholds (all three admission
//! rules). Partial: Nested WAIT, whose segment plan, pauses and safety buffer make an exact reference
//! impractical; for segment 1's entry we check that admissions are a prefix of the FIFO queue, that nothing
//! enters when the entry is neither ready (`n_1` waiting) nor due (`max_wait`), and that a cohort cut below
//! `min(waiting, n_1)` was plausibly cut by capacity, `max_num_seqs` or the token budget.

mod common;
#[path = "differential/reference.rs"]
mod reference;
#[path = "differential/reference2.rs"]
mod reference2;

use std::collections::{HashMap, VecDeque};

use fluidsched_core::policies::{NestedWaitPolicy, build_policy};
use fluidsched_core::policy::{OptionValue, Policy, PolicyOptions};
use fluidsched_core::request::Request;
use fluidsched_core::step::Step;
use fluidsched_core::{Scheduler, SchedulerConfig};
use proptest::prelude::*;

use common::{arb_config, arb_types, context, fit, proptest_config, usable_tokens};
use reference::{Decision, R, World};
use reference2::{Sglang, Wait};

/// The reference of one policy, with its own waiting queue(s) of ids.
enum Ref {
    Vllm,
    Sarathi { budget: u32, chunked: bool },
    Orca { oracle: bool },
    McSf { skip: bool, seqs: HashMap<u64, u64> },
    Sglang(Sglang),
    Wait(Wait),
    Nested { n1: u32, max_wait: f64 },
}

fn r_of(r: &Request) -> R {
    R {
        id: r.id,
        prompt: r.prompt_len,
        out: r.num_output_tokens,
        computed: r.num_computed_tokens,
        blocks: r.blocks().len() as u32,
        hint: r.output_len_hint,
        arrival: r.arrival,
        type_id: r.type_id,
    }
}

fn world(s: &Scheduler) -> World {
    let st = s.state();
    World {
        cfg: *st.config(),
        free: s.num_free_blocks(),
        watermark: st.pool().watermark_blocks(),
        running: st.running().iter().map(|&slot| r_of(st.request(slot))).collect(),
    }
}

fn decision(step: &Step) -> Decision {
    Decision {
        scheduled: step.scheduled.iter().map(|s| (s.id, s.num_tokens)).collect(),
        admitted: step.admitted.clone(),
        preempted: step.preempted.clone(),
    }
}

/// One request: arrives `gap` steps after the previous; `hint` scales the true length (1.0: exact).
#[derive(Debug, Clone, Copy)]
struct Req {
    gap: u32,
    prompt: u32,
    output: u32,
    hint: f64,
    type_id: u32,
}

fn arb_reqs() -> impl Strategy<Value = Vec<Req>> {
    let hint = prop_oneof![3 => Just(1.0), 1 => 0.3f64..2.0];
    prop::collection::vec((0u32..4, 1u32..150, 1u32..100, hint, 0u32..4), 1..40).prop_map(|v| {
        v.into_iter().map(|(gap, prompt, output, hint, type_id)| Req { gap, prompt, output, hint, type_id }).collect()
    })
}

/// Drives `sched` and `reference` side by side; `aborts[t]` aborts the held request at that index at step t.
fn run(
    mut sched: Scheduler,
    mut reference: Ref,
    reqs: &[Req],
    aborts: &[Option<usize>],
    hints: bool,
) -> Result<(), TestCaseError> {
    let usable = usable_tokens(sched.state().config());
    let mut queue: VecDeque<u64> = VecDeque::new();
    let (mut held, mut next, mut arrival) = (Vec::<u64>::new(), 0usize, 0u64);
    for t in 0u64..20_000 {
        let now = t as f64 * 0.01;
        while next < reqs.len() && arrival + u64::from(reqs[next].gap) <= t {
            let q = reqs[next];
            arrival += u64::from(q.gap);
            let (prompt, output) = fit(q.prompt, q.output, usable);
            let hint = hints.then(|| ((f64::from(output) * q.hint).round() as u32).max(1));
            let id = next as u64;
            let new = fluidsched_core::request::NewRequest {
                id,
                prompt_len: prompt,
                output_len: Some(output),
                output_len_hint: hint,
                type_id: Some(q.type_id),
                arrival: now,
            };
            sched.add_request(new).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if let Ref::McSf { seqs, .. } = &mut reference {
                seqs.insert(id, id);
            }
            queue.push_back(id);
            held.push(id);
            next += 1;
        }
        if let Some(Some(k)) = aborts.get(t as usize) {
            if !held.is_empty() {
                let id = held.remove(k % held.len());
                sched.abort_request(id).map_err(|e| TestCaseError::fail(e.to_string()))?;
                queue.retain(|&x| x != id);
            }
        }
        if held.is_empty() {
            if next == reqs.len() {
                return Ok(());
            }
            continue;
        }
        let mut w = world(&sched);
        let free_before = w.free;
        let get = |id: u64| r_of(sched.request(id).expect("queued requests are held"));
        let mut q: VecDeque<R> = queue.iter().map(|&id| get(id)).collect();
        let expected = match &mut reference {
            Ref::Vllm => Some(reference::vllm(&mut w, &mut q)),
            Ref::Sarathi { budget, chunked } => Some(reference::sarathi(&mut w, &mut q, *budget, *chunked)),
            Ref::Orca { oracle } => Some(reference::orca(&mut w, &mut q, *oracle, 4096)),
            Ref::Sglang(s) => Some(s.step(&mut w, &mut q)),
            Ref::McSf { skip, seqs } => {
                let mut waiting: Vec<(R, u64)> = q.drain(..).map(|r| (r.clone(), seqs[&r.id])).collect();
                let d = reference2::mc_sf(&mut w, &mut waiting, seqs, *skip, 256);
                waiting.sort_by_key(|x| x.1);
                q = waiting.into_iter().map(|x| x.0).collect();
                Some(d)
            }
            Ref::Wait(wt) => {
                for qj in &mut wt.queues {
                    qj.clear();
                }
                for r in q.drain(..) {
                    let j = wt.type_of(&r);
                    wt.queues[j].push_back(r);
                }
                let d = wt.step(&mut w, now);
                q = wt.queues.iter_mut().flat_map(|qj| qj.drain(..)).collect();
                Some(d)
            }
            Ref::Nested { .. } => None,
        };
        let step = sched.schedule(now).map_err(|e| TestCaseError::fail(e.to_string()))?.clone();
        let actual = decision(&step);
        match (&expected, &reference) {
            (Some(e), _) => {
                prop_assert_eq!(&actual, e, "step {} (t = {})", t, now);
                prop_assert_eq!(sched.num_free_blocks(), w.free, "free blocks after step {}", t);
                // The queue order is the reference's; keep ids only (for WAIT, per-type order is what counts).
                queue = q.iter().map(|r| r.id).collect();
            }
            (None, Ref::Nested { n1, max_wait }) => {
                check_nested_entry(&sched, &step, &q, *n1, *max_wait, now, free_before)?;
                queue.drain(..step.admitted.len());
                for &id in &step.preempted {
                    queue.push_front(id);
                }
            }
            (None, _) => unreachable!("only Nested WAIT has no exact reference"),
        }
        let out = sched.complete_step(&[]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        held.retain(|id| !out.finished.contains(id));
    }
    Err(TestCaseError::fail("workload did not finish"))
}

/// Nested WAIT, segment 1's entry (see the module documentation). `q` is the FIFO entry queue before the step.
fn check_nested_entry(
    sched: &Scheduler,
    step: &Step,
    q: &VecDeque<R>,
    n1: u32,
    max_wait: f64,
    now: f64,
    _free_before: u32,
) -> Result<(), TestCaseError> {
    let k = step.admitted.len();
    if !step.preempted.is_empty() {
        prop_assert_eq!(k, 0, "admission in a step that preempted");
        return Ok(());
    }
    let ids: Vec<u64> = q.iter().map(|r| r.id).collect();
    prop_assert!(
        k <= ids.len() && step.admitted[..] == ids[..k],
        "admitted {:?} not a prefix of {:?}",
        step.admitted,
        ids
    );
    let (n1, len) = (n1 as usize, ids.len());
    let due = q.front().is_some_and(|r| r.arrival + max_wait <= now);
    if len < n1 && !due {
        prop_assert_eq!(k, 0, "entry neither ready nor due, yet {} admitted", k);
        return Ok(());
    }
    let target = len.min(n1);
    prop_assert!(k <= target, "admitted {k} > cohort {target}");
    if k < target {
        let cfg = sched.state().config();
        let cand = &q[k];
        let free_after = sched.num_free_blocks();
        let need = cand.prompt.max(1);
        let owed = cand.tokens() - cand.computed;
        let blocks = (owed).div_ceil(cfg.block_size);
        let cut = sched.num_running() >= cfg.max_num_seqs as usize
            || step.num_batched_tokens() + owed > cfg.max_num_batched_tokens
            || blocks + sched.state().pool().watermark_blocks() > free_after;
        prop_assert!(cut, "cohort cut at {k} of {target} without a capacity reason (candidate needs {need} tokens)");
    }
    Ok(())
}

fn opts(name: &str, list: Vec<(&str, OptionValue)>) -> PolicyOptions {
    PolicyOptions::new(name, list.into_iter().map(|(k, v)| (k.to_string(), v)))
}

fn built(name: &str, list: Vec<(&str, OptionValue)>) -> Box<dyn Policy> {
    build_policy(name, opts(name, list), &fluidsched_core::policies::PolicyContext::default()).expect("valid options")
}

fn aborts() -> impl Strategy<Value = Vec<Option<usize>>> {
    prop::collection::vec(prop::option::weighted(0.05, any::<usize>()), 0..200)
}

proptest! {
    #![proptest_config(proptest_config(96))]

    #[test]
    fn vllm_matches_reference(cfg in arb_config(), reqs in arb_reqs(), ab in aborts()) {
        run(Scheduler::new(cfg, built("vllm", vec![])).unwrap(), Ref::Vllm, &reqs, &ab, false)?;
    }

    #[test]
    fn sarathi_matches_reference(cfg in arb_config(), reqs in arb_reqs(), ab in aborts(), budget in 1u32..600, chunked in any::<bool>()) {
        let p = built("sarathi", vec![("token_budget", OptionValue::Num(f64::from(budget))), ("chunked_prefill", OptionValue::Bool(chunked))]);
        run(Scheduler::new(cfg, p).unwrap(), Ref::Sarathi { budget, chunked }, &reqs, &ab, false)?;
    }

    #[test]
    fn orca_matches_reference(cfg in arb_config(), reqs in arb_reqs(), ab in aborts(), oracle in any::<bool>()) {
        let p = built("orca", vec![("reserve", OptionValue::Str(if oracle { "oracle" } else { "max_tokens" }.into()))]);
        run(Scheduler::new(cfg, p).unwrap(), Ref::Orca { oracle }, &reqs, &ab, oracle)?;
    }

    #[test]
    fn mc_sf_matches_brute_force_reference(cfg in arb_config(), reqs in arb_reqs(), ab in aborts(), skip in any::<bool>()) {
        let p = built("mc-sf", vec![("on_infeasible", OptionValue::Str(if skip { "skip" } else { "stop" }.into()))]);
        run(Scheduler::new(cfg, p).unwrap(), Ref::McSf { skip, seqs: HashMap::new() }, &reqs, &ab, true)?;
    }

    #[test]
    fn sglang_matches_reference(
        cfg in arb_config(), reqs in arb_reqs(), ab in aborts(), hints in any::<bool>(),
        max_new in 1u32..300, decay_steps in 1u32..50, init in 0.1f64..1.0,
    ) {
        let p = built("sglang", vec![
            ("use_output_hints", OptionValue::Bool(hints)),
            ("max_new_tokens", OptionValue::Num(f64::from(max_new))),
            ("decay_steps", OptionValue::Num(f64::from(decay_steps))),
            ("init_new_token_ratio", OptionValue::Num(init)),
        ]);
        let min = init * 0.14;
        let s = Sglang { ratio: init, min, decay: (init - min) / f64::from(decay_steps), clip: 4096, max_new, retract_steps: 20 };
        run(Scheduler::new(cfg, p).unwrap(), Ref::Sglang(s), &reqs, &ab, hints)?;
    }

    #[test]
    fn wait_explicit_thresholds_match_reference(
        cfg in arb_config(), reqs in arb_reqs(), ab in aborts(), th in prop::collection::vec(1u32..5, 1..4),
        rule in 0u8..3, max_wait in 0.02f64..0.3,
    ) {
        let names = ["per-type", "any-ready", "all-ready"];
        let p = built("wait", vec![
            ("thresholds", OptionValue::List(th.iter().map(|&x| f64::from(x)).collect())),
            ("admission", OptionValue::Str(names[rule as usize].into())),
            ("max_wait", OptionValue::Num(max_wait)),
            // The reference models the admission rule alone; the memory guard's own property (exact lengths ⇒ no
            // preemption) is checked in fuzz_ops.
            ("memory_guard", OptionValue::Bool(false)),
            // The paper's rule: no admission credit, no online rates, no backlog drain (their mechanics are
            // tested in gate::wait_gate).
            ("credit", OptionValue::Bool(false)),
            ("rate_estimation", OptionValue::Bool(false)),
            ("backlog", OptionValue::Num(0.0)),
        ]);
        let queues = vec![VecDeque::new(); th.len()];
        run(Scheduler::new(cfg, p).unwrap(), Ref::Wait(Wait { thresholds: th, rule, max_wait, queues }), &reqs, &ab, true)?;
    }

    #[test]
    fn nested_wait_segment_one_entry(
        cfg in arb_config(), types in arb_types(), reqs in arb_reqs(), ab in aborts(),
        max_wait in 0.02f64..0.3, segments in 1u32..5, strict in any::<bool>(),
    ) {
        let usable = usable_tokens(&cfg);
        let samples: Vec<(u32, u32)> = reqs.iter().map(|r| fit(r.prompt, r.output, usable)).collect();
        let ctx = context(cfg, &types, &samples);
        let o = opts("nested-wait", vec![
            ("max_wait", OptionValue::Num(max_wait)),
            ("num_segments", OptionValue::Num(f64::from(segments))),
            ("strict_break", OptionValue::Bool(strict)),
            // The paper's entry rule: no admission credit (its mechanics are tested in gate::segment_gate).
            ("credit", OptionValue::Bool(false)),
        ]);
        let p = NestedWaitPolicy::from_options(o, &ctx).unwrap();
        let n1 = p.plan().thresholds[0];
        run(Scheduler::new(cfg, Box::new(p)).unwrap(), Ref::Nested { n1, max_wait }, &reqs, &ab, false)?;
    }
}

/// The configurations the differential tests draw from are valid.
#[test]
fn configs_are_valid() {
    let cfg = SchedulerConfig { num_blocks: 4, block_size: 1, ..SchedulerConfig::default() };
    assert!(cfg.validate().is_ok());
    assert!(usable_tokens(&cfg) >= 2);
}
