//! Property tests of the baseline policies (`sarathi`, `mc-sf`, `sglang`, `orca`) on random small workloads, driven
//! step by step through the `Scheduler` (checking after every step) and end to end through the `Simulator`, plus
//! the differential check Sarathi (unlimited budget, no chunking) ≡ vLLM.

use std::collections::HashMap;

use fluidsched_core::policies::{POLICY_NAMES, PolicyContext, build_policy};
use fluidsched_core::policy::{OptionValue, Policy, PolicyOptions};
use fluidsched_core::request::NewRequest;
use fluidsched_core::sim::policy_context;
use fluidsched_core::step::Step;
use fluidsched_core::{Error, RequestSpec, Scheduler, SchedulerConfig, SimConfig, Simulator, TimeModel, Workload};
use proptest::prelude::*;

/// One request: arrives `gap` steps after the previous one.
#[derive(Debug, Clone, Copy)]
struct Req {
    gap: u32,
    prompt: u32,
    output: u32,
}

fn arb_config() -> impl Strategy<Value = SchedulerConfig> {
    (4u32..=16, 20u32..=200, prop_oneof![Just(0.0), 0.01f64..0.1], 1u32..=16, 8u32..=600, any::<bool>()).prop_map(
        |(block_size, num_blocks, watermark, max_num_seqs, max_num_batched_tokens, enable_chunked_prefill)| {
            SchedulerConfig {
                block_size,
                num_blocks,
                watermark,
                max_num_seqs,
                max_num_batched_tokens,
                enable_chunked_prefill,
            }
        },
    )
}

/// A config and requests that each fit the usable cache.
fn arb_case() -> impl Strategy<Value = (SchedulerConfig, Vec<Req>)> {
    let reqs = prop::collection::vec((0u32..5, 1u32..150, 1u32..100), 1..40);
    (arb_config(), reqs).prop_map(|(cfg, reqs)| {
        let usable = (cfg.num_blocks - (cfg.watermark * f64::from(cfg.num_blocks)).floor() as u32) * cfg.block_size;
        let reqs = reqs
            .into_iter()
            .map(|(gap, p, o)| {
                let prompt = p.min(usable - 1);
                Req { gap, prompt, output: o.min(usable - prompt) }
            })
            .collect();
        (cfg, reqs)
    })
}

fn policy(name: &str, options: &[(&str, OptionValue)]) -> Box<dyn Policy> {
    let opts = PolicyOptions::new(name, options.iter().map(|(k, v)| (k.to_string(), v.clone())));
    build_policy(name, opts, &PolicyContext::default()).unwrap()
}

/// What a step-by-step run produced.
#[derive(Debug, Default)]
struct Run {
    steps: Vec<Step>,
    preemptions: usize,
}

/// Drives `sched` over `reqs` one step per time unit, checking the common properties after every step and
/// `check` on each step. Hints: exact lengths times `hint_factor(i)` when the policy asks for them.
fn drive(
    mut sched: Scheduler,
    reqs: &[Req],
    hint_factor: impl Fn(usize) -> f64,
    mut check: impl FnMut(&Scheduler, &Step) -> Result<(), TestCaseError>,
) -> Result<Run, TestCaseError> {
    let cap = sched.state().config().num_blocks;
    let needs = sched.policy_needs_output_lengths();
    let mut arrival = 0u64;
    let arrivals: Vec<u64> = reqs
        .iter()
        .map(|r| {
            arrival += u64::from(r.gap);
            arrival
        })
        .collect();
    let mut finished: HashMap<u64, u32> = HashMap::new();
    let mut run = Run::default();
    let mut next = 0;
    for t in 0u64..200_000 {
        while next < reqs.len() && arrivals[next] <= t {
            let r = reqs[next];
            let hint = needs.then(|| ((f64::from(r.output) * hint_factor(next)).round() as u32).max(1));
            sched
                .add_request(NewRequest {
                    id: next as u64,
                    prompt_len: r.prompt,
                    output_len: Some(r.output),
                    output_len_hint: hint,
                    type_id: None,
                    arrival: t as f64,
                })
                .unwrap();
            next += 1;
        }
        if sched.num_unfinished() == 0 {
            if next == reqs.len() {
                break;
            }
            continue;
        }
        let step = sched.schedule(t as f64).unwrap().clone();
        if let Err(e) = sched.check_invariants() {
            return Err(TestCaseError::fail(format!("step {t}: {e}")));
        }
        prop_assert!(sched.num_used_blocks() <= cap);
        prop_assert!(
            !step.is_empty() || !step.preempted.is_empty(),
            "step {t}: stalled with {} waiting, {} running",
            sched.num_waiting(),
            sched.num_running()
        );
        check(&sched, &step)?;
        run.preemptions += step.preempted.len();
        let outcome = sched.complete_step(&[]).unwrap();
        for &id in &outcome.finished {
            *finished.entry(id).or_default() += 1;
        }
        run.steps.push(step);
    }
    prop_assert_eq!(sched.num_unfinished(), 0, "unfinished after the step limit");
    prop_assert_eq!(sched.num_used_blocks(), 0, "blocks leaked");
    for id in 0..reqs.len() as u64 {
        prop_assert_eq!(finished.get(&id).copied(), Some(1), "request {} finish events", id);
    }
    Ok(run)
}

fn no_check(_: &Scheduler, _: &Step) -> Result<(), TestCaseError> {
    Ok(())
}

fn exact(_: usize) -> f64 {
    1.0
}

/// Sarathi's per-step properties: within the budget, and no prefill while a running decode waits.
fn sarathi_check(budget: u32) -> impl FnMut(&Scheduler, &Step) -> Result<(), TestCaseError> {
    move |sched, step| {
        prop_assert!(step.num_batched_tokens() <= budget, "{} tokens > budget {budget}", step.num_batched_tokens());
        if step.shape.num_prefill_seqs > 0 {
            let st = sched.state();
            for &slot in st.running() {
                let r = st.request(slot);
                let scheduled = step.scheduled.iter().any(|s| s.slot == slot);
                prop_assert!(scheduled || r.is_prefill(), "decode of request {} delayed for a prefill", r.id);
            }
        }
        Ok(())
    }
}

fn no_preemption(_: &Scheduler, step: &Step) -> Result<(), TestCaseError> {
    prop_assert!(step.preempted.is_empty(), "preempted {:?}", step.preempted);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn sarathi_budget_stall_free_and_safe((cfg, reqs) in arb_case(), budget in 1u32..700, chunked in any::<bool>()) {
        let p = policy("sarathi", &[("token_budget", OptionValue::Num(f64::from(budget))), ("chunked_prefill", OptionValue::Bool(chunked))]);
        drive(Scheduler::new(cfg, p).unwrap(), &reqs, exact, sarathi_check(budget))?;
    }

    #[test]
    fn mc_sf_exact_lengths_never_preempt((cfg, reqs) in arb_case(), skip in any::<bool>()) {
        let mode = if skip { "skip" } else { "stop" };
        let p = policy("mc-sf", &[("on_infeasible", OptionValue::Str(mode.into()))]);
        drive(Scheduler::new(cfg, p).unwrap(), &reqs, exact, no_preemption)?;
    }

    #[test]
    fn mc_sf_predicted_lengths_stay_safe((cfg, reqs) in arb_case(), factors in prop::collection::vec(0.2f64..2.0, 40)) {
        let p = policy("mc-sf", &[]);
        drive(Scheduler::new(cfg, p).unwrap(), &reqs, |i| factors[i], no_check)?;
    }

    #[test]
    fn sglang_safe_and_complete((cfg, reqs) in arb_case(), hints in any::<bool>(), max_new in 1u32..300, decay in 1u32..50) {
        let p = policy("sglang", &[
            ("use_output_hints", OptionValue::Bool(hints)),
            ("max_new_tokens", OptionValue::Num(f64::from(max_new))),
            ("decay_steps", OptionValue::Num(f64::from(decay))),
        ]);
        drive(Scheduler::new(cfg, p).unwrap(), &reqs, exact, no_check)?;
    }

    #[test]
    fn orca_never_preempts((cfg, reqs) in arb_case(), oracle in any::<bool>()) {
        let mode = if oracle { "oracle" } else { "max_tokens" };
        let p = policy("orca", &[("reserve", OptionValue::Str(mode.into()))]);
        drive(Scheduler::new(cfg, p).unwrap(), &reqs, exact, no_preemption)?;
    }

    #[test]
    fn orca_small_max_tokens_stays_safe((cfg, reqs) in arb_case(), max_tokens in 1u32..100) {
        // Reservations below the true lengths: growth is allocated on demand, preemption is the fallback.
        let p = policy("orca", &[("max_tokens", OptionValue::Num(f64::from(max_tokens)))]);
        drive(Scheduler::new(cfg, p).unwrap(), &reqs, exact, no_check)?;
    }

    /// Sarathi with a budget no step can reach and no chunking against vLLM with the same limits (its own budget
    /// unreachable, chunking off). Then no running request is ever mid-prefill at the start of a step (every
    /// prefill runs whole in its admission step), so "decodes, then prefill chunks" is plain admission order;
    /// preemption (newest first, no admission after it) and admission (FCFS, whole prompt above the watermark,
    /// head-of-line) are the same rules, and Sarathi's up-front allocation of the whole prefill equals vLLM's
    /// allocation of its one and only chunk. So the strongest equality holds: every step is identical (ids, token
    /// counts, contexts, phases, in order; admissions; preemptions), hence also every finish time.
    #[test]
    fn sarathi_unlimited_unchunked_equals_vllm((cfg, reqs) in arb_case()) {
        const HUGE: u32 = 1 << 30;
        let cfg = SchedulerConfig { max_num_batched_tokens: HUGE, enable_chunked_prefill: false, ..cfg };
        let sarathi = policy("sarathi", &[("token_budget", OptionValue::Num(f64::from(HUGE))), ("chunked_prefill", OptionValue::Bool(false))]);
        let a = drive(Scheduler::new(cfg, sarathi).unwrap(), &reqs, exact, no_check)?;
        let b = drive(Scheduler::new(cfg, policy("vllm", &[])).unwrap(), &reqs, exact, no_check)?;
        prop_assert_eq!(a.steps.len(), b.steps.len());
        for (i, (x, y)) in a.steps.iter().zip(&b.steps).enumerate() {
            prop_assert_eq!(&x.scheduled, &y.scheduled, "step {}", i);
            prop_assert_eq!(&x.admitted, &y.admitted, "step {}", i);
            prop_assert_eq!(&x.preempted, &y.preempted, "step {}", i);
        }
        prop_assert_eq!(a.preemptions, b.preemptions);

        let w = workload(&reqs);
        let sim_cfg = SimConfig { scheduler: cfg, time_model: TimeModel::Linear { d0: 0.003, d1: 0.0001 }, ..SimConfig::default() };
        let sarathi = policy("sarathi", &[("token_budget", OptionValue::Num(f64::from(HUGE))), ("chunked_prefill", OptionValue::Bool(false))]);
        let fa = simulate(&w, sarathi, &sim_cfg);
        let fb = simulate(&w, policy("vllm", &[]), &sim_cfg);
        prop_assert_eq!(fa, fb);
    }

    /// Every policy, through the simulator with its default options (and predicted lengths for the clairvoyant
    /// ones): every request finishes once, after it arrived.
    #[test]
    fn every_policy_finishes_every_request_in_the_simulator((cfg, reqs) in arb_case(), error in prop_oneof![Just(0.0), 0.0f64..0.9]) {
        let w = workload(&reqs);
        let sim_cfg = SimConfig { scheduler: cfg, length_error: error, time_model: TimeModel::Linear { d0: 0.003, d1: 0.0001 }, ..SimConfig::default() };
        let ctx = policy_context(&w, cfg, &sim_cfg.time_model);
        for &name in POLICY_NAMES {
            let built = build_policy(name, PolicyOptions::new(name, []), &ctx);
            if ctx.arrival_rate.is_none() && (name == "wait" || name == "nested-wait") {
                // Fluid thresholds need an arrival rate; a workload whose requests all arrive at once has none.
                prop_assert!(matches!(built, Err(Error::InvalidConfig(_))), "{name} must ask for thresholds");
                continue;
            }
            let finish = simulate(&w, built.unwrap(), &sim_cfg);
            for (i, f) in finish.iter().enumerate() {
                let f = f64::from_bits(*f);
                prop_assert!(f.is_finite() && f >= w.requests[i].arrival, "{name}: request {i} finish {f}");
            }
        }
    }
}

/// The requests as a workload, one arrival-gap step = 10 ms.
fn workload(reqs: &[Req]) -> Workload {
    let mut t = 0.0;
    let requests = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            t += 0.01 * f64::from(r.gap);
            RequestSpec { id: i as u64, arrival: t, prompt_len: r.prompt, output_len: r.output, type_id: None }
        })
        .collect();
    Workload { requests, warnings: vec![] }
}

/// Runs a simulation to the end; returns each request's finish time, as bits.
fn simulate(w: &Workload, p: Box<dyn Policy>, cfg: &SimConfig) -> Vec<u64> {
    let mut sim = Simulator::new(w, p, cfg).unwrap();
    sim.run().unwrap();
    assert!(sim.is_done());
    assert_eq!(sim.summary().num_finished, w.requests.len() as u64);
    assert_eq!(sim.scheduler().num_used_blocks(), 0);
    sim.records().finish.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn registry_knows_every_baseline_and_rejects_unknown_options() {
    for name in ["sarathi", "mc-sf", "sglang", "orca"] {
        assert!(POLICY_NAMES.contains(&name));
        let p = build_policy(name, PolicyOptions::new(name, []), &PolicyContext::default()).unwrap();
        assert_eq!(p.name(), name);
        let bad = PolicyOptions::new(name, [("no_such_option".to_string(), OptionValue::Num(1.0))]);
        let err = build_policy(name, bad, &PolicyContext::default()).unwrap_err().to_string();
        assert!(err.contains("no_such_option"), "{err}");
    }
    let bad = |name: &str, k: &str, v: OptionValue| {
        build_policy(name, PolicyOptions::new(name, [(k.to_string(), v)]), &PolicyContext::default()).is_err()
    };
    assert!(bad("sarathi", "token_budget", OptionValue::Num(0.0)));
    assert!(bad("mc-sf", "on_infeasible", OptionValue::Str("maybe".into())));
    assert!(bad("sglang", "init_new_token_ratio", OptionValue::Num(1.5)));
    assert!(bad("orca", "reserve", OptionValue::Str("all".into())));
}

#[test]
fn clairvoyance_flags() {
    let needs = |name: &str, opts: &[(&str, OptionValue)]| policy(name, opts).needs_output_lengths();
    assert!(!needs("sarathi", &[]));
    assert!(needs("mc-sf", &[]));
    assert!(!needs("sglang", &[]));
    assert!(needs("sglang", &[("use_output_hints", OptionValue::Bool(true))]));
    assert!(!needs("orca", &[]));
    assert!(needs("orca", &[("reserve", OptionValue::Str("oracle".into()))]));
}

/// MC-SF admits shortest-output first: with room for one long-lived request at a time, the short one goes first.
#[test]
fn mc_sf_admits_shortest_output_first() {
    let cfg = SchedulerConfig {
        block_size: 4,
        num_blocks: 10,
        watermark: 0.0,
        max_num_seqs: 1,
        ..SchedulerConfig::default()
    };
    let mut sched = Scheduler::new(cfg, policy("mc-sf", &[])).unwrap();
    for (id, out) in [(0u64, 20u32), (1, 3)] {
        let r = NewRequest {
            id,
            prompt_len: 8,
            output_len: Some(out),
            output_len_hint: Some(out),
            type_id: None,
            arrival: 0.0,
        };
        sched.add_request(r).unwrap();
    }
    let step = sched.schedule(0.0).unwrap();
    assert_eq!(step.admitted, vec![1]);
}
