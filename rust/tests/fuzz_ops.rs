//! One generic property-test harness over random operation sequences, run for every policy in
//! [`POLICY_NAMES`]: add requests (random lengths, arrival gaps, known or driver-finished outputs, exact, missing
//! or wrong hints, type labels), step (`schedule` + `complete_step`, the driver finishing unknown-length requests
//! when they reach their length or early), abort held requests (waiting or running), and misuse the API
//! (unknown and duplicate ids, invalid requests, `complete_step` without `schedule`, `schedule` twice, abort or
//! unknown finished ids while a step is pending: each must fail with its error variant and change nothing).
//!
//! After every op: `check_invariants`, blocks in use within capacity, the driver's count of held requests,
//! every id finishes or is aborted at most once and never reappears, tokens are emitted one at a time up to the
//! request's length, and the policy's own rule for the step (see `fuzz_ops/rules.rs`). At the end the run is
//! drained with no new arrivals: every request not aborted must finish within a bound on steps (liveness) and
//! every block must be free. A second property checks the simulator: its clock never goes backwards, and the
//! same seed gives bit-identical results.
//!
//! Cases per policy: 96 by default; `FLUIDSCHED_PROPTEST_CASES=10000 cargo test --release -p fluidsched-core
//! --test fuzz_ops` for a long run.

mod common;
#[path = "fuzz_ops/harness.rs"]
mod harness;
#[path = "fuzz_ops/rules.rs"]
mod rules;

use fluidsched_core::gate::CohortTracking;
use fluidsched_core::policies::{NestedWaitPolicy, POLICY_NAMES, WaitPolicy, build_policy};
use fluidsched_core::policy::{OptionValue, PolicyOptions};
use fluidsched_core::sim::policy_context;
use fluidsched_core::workload::RequestType;
use fluidsched_core::{RequestSpec, Scheduler, SchedulerConfig, SimConfig, Simulator, TimeModel, Workload};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use common::{arb_config, arb_types, context, proptest_config, usable_tokens};
use harness::{Harness, Hint, Op};
use rules::{NoPreempt, Rules, Threshold};

/// Random settings that each policy maps to its own options.
#[derive(Debug, Clone, Copy)]
struct Knobs {
    a: u32,
    b: u32,
    flag1: bool,
    flag2: bool,
    max_wait: f64,
}

#[derive(Debug, Clone)]
struct Case {
    cfg: SchedulerConfig,
    types: Vec<RequestType>,
    knobs: Knobs,
    first_id: u64,
    ops: Vec<Op>,
}

fn arb_op() -> impl Strategy<Value = Op> {
    let hint = prop_oneof![3 => Just(Hint::Exact), 1 => Just(Hint::Missing), 1 => (0.2f64..2.0).prop_map(Hint::Scaled)];
    let add = (1u32..120, 1u32..80, prop::bool::weighted(0.7), hint, prop::option::of(0u32..5), 0u32..4)
        .prop_map(|(prompt, len, known, hint, type_id, gap)| Op::Add { prompt, len, known, hint, type_id, gap });
    prop_oneof![
        12 => add,
        14 => (any::<u8>(), prop::bool::weighted(0.1)).prop_map(|(e, misuse)| Op::Step { early: e & e.rotate_left(3), misuse }),
        2 => any::<usize>().prop_map(|pick| Op::Abort { pick }),
        1 => any::<usize>().prop_map(|pick| Op::AbortUnknown { pick }),
        1 => any::<usize>().prop_map(|pick| Op::AddDuplicate { pick }),
        1 => any::<u8>().prop_map(|kind| Op::AddBad { kind }),
        1 => Just(Op::CompleteWithoutSchedule),
    ]
}

fn arb_case() -> impl Strategy<Value = Case> {
    let knobs = (any::<u32>(), any::<u32>(), any::<bool>(), any::<bool>(), 0.01f64..0.5)
        .prop_map(|(a, b, flag1, flag2, max_wait)| Knobs { a, b, flag1, flag2, max_wait });
    let first_id = prop_oneof![Just(0u64), Just(u64::MAX - 100_000), any::<u32>().prop_map(u64::from)];
    (arb_config(), arb_types(), knobs, first_id, prop::collection::vec(arb_op(), 1..160))
        .prop_map(|(cfg, types, knobs, first_id, ops)| Case { cfg, types, knobs, first_id, ops })
}

/// Each policy's options from the knobs.
fn options(name: &str, k: &Knobs, num_types: usize) -> Vec<(String, OptionValue)> {
    let num = |x: u32| OptionValue::Num(f64::from(x));
    let opts: Vec<(&str, OptionValue)> = match name {
        "wait" => {
            let mut o = vec![("max_wait", OptionValue::Num(k.max_wait)), ("stall", OptionValue::Bool(k.flag2))];
            if k.b & 1 == 0 {
                // The paper's cohort rule alone, whose threshold rule `rules_for` checks; otherwise the defaults
                // (admission credit, online rates, backlog drain), checked for the general invariants.
                o.push(("credit", OptionValue::Bool(false)));
                o.push(("rate_estimation", OptionValue::Bool(false)));
                o.push(("backlog", OptionValue::Num(0.0)));
            }
            if k.flag1 {
                let th = (0..num_types).map(|j| f64::from(1 + (k.a >> j) % 4)).collect();
                o.push(("thresholds", OptionValue::List(th)));
            }
            o
        }
        "nested-wait" => vec![
            ("max_wait", OptionValue::Num(k.max_wait)),
            ("num_segments", num(1 + k.a % 5)),
            ("per_stage_caps", OptionValue::Bool(k.flag1)),
            ("strict_break", OptionValue::Bool(k.flag2)),
            // Odd `b`: segment 1's admission credit (the default), checked for the general invariants only.
            ("credit", OptionValue::Bool(k.b & 1 == 1)),
        ],
        "sarathi" => vec![("token_budget", num(1 + k.a % 600)), ("chunked_prefill", OptionValue::Bool(k.flag1))],
        "mc-sf" => vec![("on_infeasible", OptionValue::Str(if k.flag1 { "skip" } else { "stop" }.into()))],
        "sglang" => vec![
            ("use_output_hints", OptionValue::Bool(k.flag1)),
            ("max_new_tokens", num(1 + k.a % 300)),
            ("decay_steps", num(1 + k.b % 50)),
        ],
        "orca" => vec![("reserve", OptionValue::Str(if k.flag1 { "oracle" } else { "max_tokens" }.into()))],
        "vllm-v0" => {
            let mut o = vec![("max_tokens_in_batch", num(1 + k.a % 600))];
            if k.flag1 {
                o.push(("batch_size_cap", num(1 + k.b % 20)));
            }
            o
        }
        _ => vec![],
    };
    opts.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The rules policy `name` must keep under these options.
fn rules_for(
    name: &str,
    case: &Case,
    opts: &[(String, OptionValue)],
    ctx: &fluidsched_core::policies::PolicyContext,
) -> Rules {
    let k = &case.knobs;
    let budget = Some(case.cfg.max_num_batched_tokens);
    match name {
        "vllm" | "sglang" => Rules::new(budget, true, NoPreempt::Unchecked, None),
        "sarathi" => Rules::new(Some(1 + k.a % 600), true, NoPreempt::Unchecked, None),
        "orca" => Rules::new(budget, true, if k.flag1 { NoPreempt::IfExactHints } else { NoPreempt::Always }, None),
        // Prefill-only batches under the padded cap, which a lone long prompt may pass; the engine budget is ignored.
        "vllm-v0" => Rules::new(None, true, NoPreempt::Unchecked, None),
        // MC-SF runs whole prefills next to the decodes, so the batched-token limit may be passed.
        "mc-sf" => Rules::new(None, false, NoPreempt::IfExactHints, None),
        "wait" => {
            let p = WaitPolicy::from_options(PolicyOptions::new(name, opts.to_vec()), ctx).expect("built once already");
            // The memory guard (on by default) admits only what fits at its projected peak: with exact lengths WAIT
            // never needs to preempt. (Under `stall` the guard still holds; the rule is the same.)
            let no_preempt = if p.config().memory_guard { NoPreempt::IfExactHints } else { NoPreempt::Unchecked };
            let paper = p.config().tracking == CohortTracking::PAPER;
            Rules::new(budget, false, no_preempt, paper.then(|| Threshold::Wait(Box::new(p), k.max_wait)))
        }
        "nested-wait" => {
            let p = NestedWaitPolicy::from_options(PolicyOptions::new(name, opts.to_vec()), ctx)
                .expect("built once already");
            let rule = (k.b & 1 == 0).then(|| Threshold::Nested(p.plan().thresholds[0], k.max_wait));
            Rules::new(budget, true, NoPreempt::Unchecked, rule)
        }
        other => panic!("no rules for policy {other:?}: add it to fuzz_ops.rs"),
    }
}

fn run_case(name: &str, case: &Case) -> Result<[usize; 2], TestCaseError> {
    let usable = usable_tokens(&case.cfg);
    let samples: Vec<(u32, u32)> = case
        .ops
        .iter()
        .filter_map(|op| match *op {
            Op::Add { prompt, len, .. } => Some(common::fit(prompt, len, usable)),
            _ => None,
        })
        .collect();
    let ctx = context(case.cfg, &case.types, &samples);
    let opts = options(name, &case.knobs, case.types.len());
    let policy = build_policy(name, PolicyOptions::new(name, opts.clone()), &ctx)
        .map_err(|e| TestCaseError::fail(format!("build {name}: {e}")))?;
    let rules = rules_for(name, case, &opts, &ctx);
    let sched = Scheduler::new(case.cfg, policy).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut h = Harness::new(sched, rules, case.first_id, usable);
    for &op in &case.ops {
        h.apply(op)?;
    }
    h.drain()?;
    Ok(h.rules.aborts)
}

/// Runs the harness for one policy; also checks that aborts of both waiting and running requests happened.
fn fuzz_policy(name: &str) {
    let config = proptest_config(96);
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let aborts = std::sync::Mutex::new([0usize; 2]);
    let result = runner.run(&arb_case(), |case| {
        let a = run_case(name, &case)?;
        let mut total = aborts.lock().unwrap_or_else(|e| e.into_inner());
        total[0] += a[0];
        total[1] += a[1];
        Ok(())
    });
    if let Err(e) = result {
        panic!("policy {name}: {e}");
    }
    let total = *aborts.lock().unwrap_or_else(|e| e.into_inner());
    if cases >= 64 {
        assert!(total[0] > 0 && total[1] > 0, "{name}: aborts of waiting / running requests not exercised: {total:?}");
    }
}

macro_rules! fuzz_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                fuzz_policy($name);
            }
        )*

        /// Every registered policy has a fuzz test above.
        #[test]
        fn every_policy_is_fuzzed() {
            let mut covered = vec![$($name),*];
            let mut names = POLICY_NAMES.to_vec();
            covered.sort_unstable();
            names.sort_unstable();
            assert_eq!(covered, names, "add the new policy to fuzz_tests! in fuzz_ops.rs");
        }
    };
}

fuzz_tests! {
    fuzz_vllm => "vllm",
    fuzz_wait => "wait",
    fuzz_nested_wait => "nested-wait",
    fuzz_sarathi => "sarathi",
    fuzz_mc_sf => "mc-sf",
    fuzz_sglang => "sglang",
    fuzz_orca => "orca",
    fuzz_vllm_v0 => "vllm-v0",
}

fn arb_workload() -> impl Strategy<Value = Vec<(u32, u32, u32)>> {
    prop::collection::vec((0u32..5, 1u32..150, 1u32..100), 2..30)
}

/// Runs `w` under `name` one iteration at a time, asserting the clock and the iteration log never go back;
/// returns every record and the log as bits.
fn simulate_stepwise(w: &Workload, name: &str, cfg: &SimConfig) -> Result<Vec<Vec<u64>>, TestCaseError> {
    let ctx = policy_context(w, cfg.scheduler, &cfg.time_model);
    let Ok(policy) = build_policy(name, PolicyOptions::new(name, []), &ctx) else { return Ok(vec![]) };
    let mut sim = Simulator::new(w, policy, cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut last = sim.now();
    while !sim.run_for(1).map_err(|e| TestCaseError::fail(e.to_string()))? {
        prop_assert!(sim.now() >= last, "{name}: clock went back from {last} to {}", sim.now());
        last = sim.now();
    }
    prop_assert!(sim.now() >= last);
    let log = sim.iteration_log();
    for pair in log.windows(2) {
        prop_assert!(pair[0].start + pair[0].duration <= pair[1].start, "{name}: iterations overlap");
    }
    let r = sim.records();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
    let mut out = vec![bits(&r.finish), bits(&r.first_token), bits(&r.first_scheduled)];
    out.push(r.num_preemptions.iter().map(|&p| u64::from(p)).collect());
    out.push(log.iter().flat_map(|l| [l.start.to_bits(), l.duration.to_bits(), u64::from(l.used_blocks)]).collect());
    out.push(bits(&sim.time_between_tokens()));
    Ok(out)
}

proptest! {
    #![proptest_config(proptest_config(24))]

    /// The simulator's clock never goes backwards, and the same seed gives bit-identical results (with predicted
    /// lengths drawn from the seed), for every policy.
    #[test]
    fn simulator_clock_monotone_and_deterministic(
        cfg in arb_config(), reqs in arb_workload(), seed in any::<u64>(), error in prop_oneof![Just(0.0), 0.0f64..0.9],
    ) {
        let usable = usable_tokens(&cfg);
        let mut t = 0.0;
        let requests = reqs.iter().enumerate().map(|(i, &(gap, p, o))| {
            t += 0.01 * f64::from(gap);
            let (prompt_len, output_len) = common::fit(p, o, usable);
            RequestSpec { id: i as u64, arrival: t, prompt_len, output_len, type_id: None }
        }).collect();
        let w = Workload { requests, warnings: vec![] };
        let sim_cfg = SimConfig { scheduler: cfg, time_model: TimeModel::Linear { d0: 0.003, d1: 1e-4 }, seed, length_error: error, ..SimConfig::default() };
        for &name in POLICY_NAMES {
            let a = simulate_stepwise(&w, name, &sim_cfg)?;
            let b = simulate_stepwise(&w, name, &sim_cfg)?;
            prop_assert!(a == b, "{}: two runs with seed {} differ", name, seed);
        }
    }
}
