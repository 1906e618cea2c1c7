//! Bad input reaching the core: every case returns its error variant with a message naming the offending field,
//! and nothing panics (each call runs under `catch_unwind`) or allocates without bound.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use fluidsched_core::policies::{POLICY_NAMES, build_policy, policy_option_names};
use fluidsched_core::policy::{OptionValue, PolicyOptions};
use fluidsched_core::request::NewRequest;
use fluidsched_core::workload::{ArrivalProcess, RequestType};
use fluidsched_core::{
    Error, FluidModel, RequestSpec, Scheduler, SchedulerConfig, SimConfig, Simulator, TimeModel, Workload,
};

use common::{context, new_request};

/// Runs `f`, failing the test if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("{what}: panicked"))
}

/// Asserts `InvalidConfig` whose message contains `field`.
fn config_err<T: std::fmt::Debug>(r: fluidsched_core::Result<T>, field: &str) {
    match r {
        Err(Error::InvalidConfig(m)) => assert!(m.contains(field), "message should name {field:?}: {m}"),
        other => panic!("expected InvalidConfig naming {field:?}, got {other:?}"),
    }
}

/// Asserts `InvalidRequest` for `id` whose reason contains `field`.
fn request_err(r: fluidsched_core::Result<()>, id: u64, field: &str) {
    match r {
        Err(Error::InvalidRequest { id: got, reason }) => {
            assert_eq!(got, id);
            assert!(reason.contains(field), "reason should name {field:?}: {reason}");
        }
        other => panic!("expected InvalidRequest naming {field:?}, got {other:?}"),
    }
}

fn small() -> SchedulerConfig {
    SchedulerConfig { num_blocks: 64, block_size: 16, ..SchedulerConfig::default() }
}

fn vllm(cfg: SchedulerConfig) -> Scheduler {
    let p = build_policy("vllm", PolicyOptions::new("vllm", []), &Default::default()).unwrap();
    Scheduler::new(cfg, p).unwrap()
}

#[test]
fn scheduler_config_fields_are_validated() {
    let ok = small();
    for (cfg, field) in [
        (SchedulerConfig { block_size: 0, ..ok }, "block_size"),
        (SchedulerConfig { num_blocks: 0, ..ok }, "num_blocks"),
        (SchedulerConfig { num_blocks: u32::MAX, ..ok }, "num_blocks"),
        (SchedulerConfig { num_blocks: u32::MAX - 1, ..ok }, "num_blocks"),
        (SchedulerConfig { watermark: f64::NAN, ..ok }, "watermark"),
        (SchedulerConfig { watermark: -0.1, ..ok }, "watermark"),
        (SchedulerConfig { watermark: 1.0, ..ok }, "watermark"),
        (SchedulerConfig { watermark: f64::INFINITY, ..ok }, "watermark"),
        (SchedulerConfig { max_num_seqs: 0, ..ok }, "max_num_seqs"),
        (SchedulerConfig { max_num_batched_tokens: 0, ..ok }, "max_num_batched_tokens"),
    ] {
        config_err(no_panic("validate", || cfg.validate()), field);
        let p = build_policy("vllm", PolicyOptions::new("vllm", []), &Default::default()).unwrap();
        config_err(no_panic("Scheduler::new", || Scheduler::new(cfg, p)), field);
    }
}

#[test]
fn add_request_rejects_bad_requests_without_changing_anything() {
    let mut s = vllm(small());
    let usable = common::usable_tokens(&small());
    let cases: [(NewRequest, &str); 8] = [
        (new_request(1, 0, Some(5), None, 0.0), "prompt_len"),
        (new_request(1, 5, Some(0), None, 0.0), "output length"),
        (new_request(1, 5, None, Some(0), 0.0), "output length"),
        (new_request(1, 5, Some(5), None, f64::NAN), "arrival"),
        (new_request(1, 5, Some(5), None, f64::INFINITY), "arrival"),
        (new_request(1, usable, Some(1), None, 0.0), "KV cache"),
        (new_request(1, u32::MAX, Some(u32::MAX), Some(u32::MAX), 0.0), "KV cache"),
        (new_request(1, u32::MAX, None, None, 0.0), "KV cache"),
    ];
    for (r, field) in cases {
        request_err(no_panic("add_request", || s.add_request(r)), 1, field);
        assert_eq!((s.num_unfinished(), s.num_used_blocks()), (0, 0));
    }
    s.add_request(new_request(1, 5, Some(5), None, 0.0)).unwrap();
    assert_eq!(s.add_request(new_request(1, 5, Some(5), None, 0.0)), Err(Error::DuplicateRequest(1)));
    assert_eq!(s.abort_request(2), Err(Error::UnknownRequest(2)));
    assert!(matches!(s.complete_step(&[]), Err(Error::InvalidState(_))));
    config_err(s.schedule(f64::NAN), "now");
    s.check_invariants().unwrap();
}

/// Lengths near `u32::MAX` in a cache large enough to hold them: rejected above `u32::MAX / 2` tokens, and
/// accepted ones run without overflow.
#[test]
fn huge_lengths_do_not_overflow() {
    let cfg = SchedulerConfig { num_blocks: 8, block_size: u32::MAX, watermark: 0.0, ..SchedulerConfig::default() };
    let mut s = vllm(cfg);
    request_err(s.add_request(new_request(1, u32::MAX - 1, Some(1), None, 0.0)), 1, "tokens");
    request_err(s.add_request(new_request(1, u32::MAX / 2, Some(u32::MAX / 2), None, 0.0)), 1, "tokens");
    s.add_request(new_request(2, u32::MAX / 2 - 1, Some(1), Some(u32::MAX), 0.0)).unwrap();
    s.add_request(new_request(3, 1, None, None, 0.0)).unwrap();
    for t in 0..3 {
        no_panic("schedule", || s.schedule(f64::from(t)).map(|_| ())).unwrap();
        let finished: &[u64] = if t == 0 { &[3] } else { &[] };
        no_panic("complete_step", || s.complete_step(finished).map(|_| ())).unwrap();
        s.check_invariants().unwrap();
    }
    s.abort_request(2).unwrap();
    assert_eq!(s.num_used_blocks(), 0);
}

#[test]
fn unknown_policies_and_options_are_named() {
    config_err(build_policy("fifo", PolicyOptions::new("fifo", []), &Default::default()), "fifo");
    config_err(build_policy("", PolicyOptions::new("", []), &Default::default()), "available policies");
    let ctx = context(small(), &[RequestType { prompt_len: 20, output_len: 30, rate: 5.0 }], &[]);
    for &name in POLICY_NAMES {
        let opts = PolicyOptions::new(name, [("no_such".to_string(), OptionValue::Num(1.0))]);
        config_err(build_policy(name, opts, &ctx), "no_such");
    }
}

/// Every option of every policy with values of the wrong type or out of range: Ok, or `InvalidConfig` naming
/// the option (or the policy's derived setting), never a panic.
#[test]
fn every_option_with_bad_values_fails_cleanly() {
    let ctx = context(small(), &[RequestType { prompt_len: 20, output_len: 30, rate: 5.0 }], &[]);
    let values = [
        OptionValue::Num(f64::NAN),
        OptionValue::Num(f64::INFINITY),
        OptionValue::Num(-1.0),
        OptionValue::Num(0.0),
        OptionValue::Num(0.5),
        OptionValue::Num(1e300),
        OptionValue::Bool(true),
        OptionValue::Str("x".into()),
        OptionValue::List(vec![]),
        OptionValue::List(vec![f64::NAN]),
        OptionValue::List(vec![0.0, -1.0]),
    ];
    for &name in POLICY_NAMES {
        for &key in policy_option_names(name).unwrap() {
            for v in &values {
                let opts = PolicyOptions::new(name, [(key.to_string(), v.clone())]);
                let got = no_panic(&format!("{name} {key}={v}"), || build_policy(name, opts, &ctx));
                if let Err(e) = got {
                    let Error::InvalidConfig(m) = &e else { panic!("{name} {key}={v}: {e:?}") };
                    assert!(!m.is_empty());
                    let named = m.contains(key) || m.contains(name);
                    assert!(named, "{name} {key}={v}: message names neither option nor policy: {m}");
                }
            }
        }
    }
}

#[test]
fn arrival_processes_reject_bad_rates() {
    for rate in [f64::NAN, -1.0, 0.0, f64::INFINITY, f64::NEG_INFINITY] {
        config_err(ArrivalProcess::poisson(rate), "arrival rate");
        config_err(ArrivalProcess::gamma(rate, 1.0), "arrival rate");
        if rate.is_nan() || rate <= 0.0 || rate.is_infinite() {
            config_err(ArrivalProcess::gamma(1.0, rate), "arrival cv");
        }
    }
}

#[test]
fn rescaling_rejects_bad_rates() {
    let spec = |id: u64, arrival: f64| RequestSpec { id, arrival, prompt_len: 1, output_len: 1, type_id: None };
    let w = Workload::from_specs(vec![spec(0, 0.0), spec(1, 1.0)]).unwrap();
    for rate in [f64::NAN, -1.0, 0.0, f64::INFINITY] {
        config_err(w.rescaled_to_rate(rate), "target rate");
    }
    config_err(Workload::from_specs(vec![spec(0, 0.0)]).unwrap().rescaled_to_rate(1.0), "at least 2");
    config_err(Workload::from_specs(vec![spec(0, 1.0), spec(1, 1.0)]).unwrap().rescaled_to_rate(1.0), "same time");
}

#[test]
fn time_models_reject_bad_constants() {
    for bad in [f64::NAN, -1.0, f64::INFINITY] {
        config_err(TimeModel::from_name("linear", Some(bad), Some(1e-4)), "d0");
        config_err(TimeModel::from_name("linear", Some(0.003), Some(bad)), "d1");
    }
    config_err(TimeModel::from_name("linear", Some(0.0), Some(0.0)), "d0 and d1");
    config_err(TimeModel::from_name("linear", None, Some(1e-4)), "d0");
    config_err(TimeModel::from_name("gpu", None, None), "unknown time model");
    config_err(TimeModel::from_name("llama2-7b-a100", Some(1.0), None), "d0");
}

#[test]
fn fluid_model_rejects_bad_rates_and_capacity() {
    let t = RequestType { prompt_len: 10, output_len: 10, rate: 1.0 };
    for bad in [f64::NAN, -1.0, 0.0, f64::INFINITY] {
        config_err(FluidModel::new(vec![RequestType { rate: bad, ..t }], 0.003, 1e-4, 1000.0), "types[0].rate");
        config_err(FluidModel::new(vec![t], 0.003, 1e-4, bad), "capacity_tokens");
        config_err(FluidModel::new(vec![t], bad, 1e-4, 1000.0), "d0");
    }
    config_err(FluidModel::new(vec![t], 0.003, -1.0, 1000.0), "d1");
    config_err(FluidModel::new(vec![], 0.003, 1e-4, 1000.0), "types");
    config_err(FluidModel::new(vec![RequestType { prompt_len: 0, ..t }], 0.003, 1e-4, 1e3), "prompt_len");
    config_err(FluidModel::new(vec![t], 0.003, 1e-4, 1e3).unwrap().with_block_size(0), "block_size");
}

#[test]
fn simulator_rejects_requests_larger_than_the_cache() {
    let sim_cfg = SimConfig { scheduler: small(), ..SimConfig::default() };
    let p = || build_policy("vllm", PolicyOptions::new("vllm", []), &Default::default()).unwrap();
    let big = RequestSpec { id: 7, arrival: 0.0, prompt_len: 2000, output_len: 10, type_id: None };
    let w = Workload { requests: vec![big], warnings: vec![] };
    request_err(Simulator::new(&w, p(), &sim_cfg).map(drop), 7, "KV cache");
    // Lengths near u32::MAX in a cache that could hold them: rejected up front, no huge allocation.
    let huge_cfg = SchedulerConfig { num_blocks: 8, block_size: u32::MAX, watermark: 0.0, ..small() };
    let sim_cfg = SimConfig { scheduler: huge_cfg, ..SimConfig::default() };
    let huge = RequestSpec { id: 3, arrival: 0.0, prompt_len: 1, output_len: u32::MAX - 1, type_id: None };
    let w = Workload { requests: vec![huge; 1], warnings: vec![] };
    request_err(no_panic("Simulator::new", || Simulator::new(&w, p(), &sim_cfg).map(drop)), 3, "tokens");
    let mut sim_cfg = SimConfig { scheduler: small(), ..SimConfig::default() };
    for bad in [f64::NAN, -0.1, 1.0] {
        sim_cfg.length_error = bad;
        config_err(Simulator::new(&Workload::default(), p(), &sim_cfg).map(drop), "length_error");
    }
}
