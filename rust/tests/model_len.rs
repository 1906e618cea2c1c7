//! The model length limit in the simulator (`SimConfig::model_len`): each over-length mode against an equivalent
//! run without a limit, the summary's accounting of rejected requests, validation, and Orca's reservation.

mod common;

use common::poisson_workload;
use fluidsched_core::metrics::Summary;
use fluidsched_core::policies::{POLICY_NAMES, PolicyContext, build_policy};
use fluidsched_core::policy::{OptionValue, PolicyOptions};
use fluidsched_core::sim::{policy_context, served_workload};
use fluidsched_core::workload::{ModelLen, OverLength};
use fluidsched_core::{Error, RequestSpec, SchedulerConfig, SimConfig, Simulator, TimeModel, Workload};

fn config(num_blocks: u32, model_len: ModelLen) -> SimConfig {
    SimConfig {
        scheduler: SchedulerConfig { num_blocks, ..SchedulerConfig::default() },
        time_model: TimeModel::Linear { d0: 0.005, d1: 0.0001 },
        length_error: 0.2,
        seed: 5,
        model_len,
        drop_oversize: false,
    }
}

fn limit(n: u32, over_length: OverLength) -> ModelLen {
    ModelLen::new(Some(n), over_length).unwrap()
}

/// A finished simulation of `w` under `name` (default options unless given), the policy planned, as the bindings
/// plan it, from the served requests.
fn run(w: &Workload, name: &str, options: &[(&str, OptionValue)], cfg: &SimConfig) -> Simulator {
    let served = served_workload(w, cfg).unwrap();
    let ctx = policy_context(&served.workload, cfg.scheduler, &cfg.time_model);
    let options = PolicyOptions::new(name, options.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let policy = build_policy(name, options, &ctx).unwrap();
    let mut sim = Simulator::new(w, policy, cfg).unwrap();
    sim.run().unwrap();
    assert!(sim.is_done());
    assert_eq!(sim.scheduler().num_used_blocks(), 0, "{name}: every block returned");
    sim
}

fn bits(xs: &[f64]) -> Vec<u64> {
    xs.iter().map(|x| x.to_bits()).collect()
}

/// The summary without its one non-deterministic value.
fn summary(sim: &mut Simulator) -> Summary {
    Summary { wall_time_s: 0.0, ..sim.summary() }
}

#[test]
fn reject_equals_a_run_without_the_rejected_requests() {
    let w = poisson_workload(400, 40.0, 11);
    let cfg = config(1500, limit(600, OverLength::Reject));
    let kept: Vec<usize> =
        (0..w.len()).filter(|&i| w.requests[i].prompt_len + w.requests[i].output_len <= 600).collect();
    let rejected = w.len() - kept.len();
    assert!(rejected > 50 && kept.len() > 50, "the workload must have both kinds: {rejected} rejected");
    // The same requests without the rejected ones (renumbered: ids only order requests).
    let filtered = Workload {
        requests: kept.iter().enumerate().map(|(j, &i)| RequestSpec { id: j as u64, ..w.requests[i] }).collect(),
        warnings: vec![],
    };
    for &name in POLICY_NAMES {
        let mut a = run(&w, name, &[], &cfg);
        let mut b = run(&filtered, name, &[], &config(1500, ModelLen::default()));
        let (ra, rb) = (a.records(), b.records());
        for (j, &i) in kept.iter().enumerate() {
            assert_eq!(ra.finish[i].to_bits(), rb.finish[j].to_bits(), "{name}: request {i}");
            assert_eq!(ra.first_token[i].to_bits(), rb.first_token[j].to_bits(), "{name}: request {i}");
            assert_eq!(ra.num_preemptions[i], rb.num_preemptions[j], "{name}: request {i}");
            assert!(!ra.rejected[i] && !ra.trimmed[i]);
        }
        for i in (0..w.len()).filter(|i| !kept.contains(i)) {
            assert!(ra.rejected[i] && !ra.trimmed[i], "{name}: request {i}");
            assert!(ra.first_scheduled[i].is_nan() && ra.first_token[i].is_nan() && ra.finish[i].is_nan());
            assert_eq!((ra.prompt_len[i], ra.output_len[i]), (w.requests[i].prompt_len, w.requests[i].output_len));
            assert_eq!(ra.num_preemptions[i], 0);
        }
        assert_eq!(bits(&a.time_between_tokens()), bits(&b.time_between_tokens()), "{name}");
        // Every metric but the two counts equals the filtered run's: rejected requests distort none of them.
        let (sa, sb) = (summary(&mut a), summary(&mut b));
        assert_eq!((sa.num_requests, sa.num_finished, sa.num_rejected), (400, kept.len() as u64, rejected as u64));
        assert_eq!(sa.num_finished + sa.num_rejected, sa.num_requests, "{name}");
        assert_eq!(Summary { num_requests: sb.num_requests, num_rejected: 0, ..sa }, sb, "{name}");
        assert_eq!(a.progress(), (400, 400));
    }
}

#[test]
fn trim_equals_a_run_of_the_trimmed_workload() {
    let w = poisson_workload(400, 40.0, 12);
    let n = 500;
    let cfg = config(1500, limit(n, OverLength::Trim));
    // Vidur's rule: the prompt is cut to N - output; here every output (<= 400) leaves room for a prompt.
    let trimmed = Workload {
        requests: w
            .requests
            .iter()
            .map(|r| RequestSpec { prompt_len: r.prompt_len.min(n - r.output_len), ..*r })
            .collect(),
        warnings: vec![],
    };
    let num_trimmed = w.requests.iter().zip(&trimmed.requests).filter(|(a, b)| a != b).count();
    assert!(num_trimmed > 50, "{num_trimmed} trimmed");
    for &name in POLICY_NAMES {
        let mut a = run(&w, name, &[], &cfg);
        let mut b = run(&trimmed, name, &[], &config(1500, ModelLen::default()));
        let (ra, rb) = (a.records(), b.records());
        assert_eq!(bits(&ra.finish), bits(&rb.finish), "{name}");
        assert_eq!(ra.prompt_len, rb.prompt_len, "{name}: the records hold the served lengths");
        assert_eq!(ra.output_len, rb.output_len, "{name}");
        assert_eq!(ra.num_preemptions, rb.num_preemptions, "{name}");
        assert!(ra.rejected.iter().all(|&r| !r));
        for i in 0..w.len() {
            assert_eq!(ra.trimmed[i], w.requests[i] != trimmed.requests[i], "{name}: request {i}");
            assert!(ra.prompt_len[i] + ra.output_len[i] <= n);
        }
        let sa = summary(&mut a);
        assert_eq!((sa.num_finished, sa.num_rejected), (400, 0));
        assert_eq!(sa, summary(&mut b), "{name}");
    }
}

#[test]
fn trim_cuts_the_output_when_it_alone_exceeds_the_limit() {
    let spec = |id: u64, p: u32, o: u32| RequestSpec {
        id,
        arrival: 0.1 * id as f64,
        prompt_len: p,
        output_len: o,
        type_id: None,
    };
    let w = Workload { requests: vec![spec(0, 50, 300), spec(1, 10, 100), spec(2, 80, 150)], warnings: vec![] };
    let mut sim = run(&w, "vllm", &[], &config(200, limit(100, OverLength::Trim)));
    let r = sim.records();
    let lengths: Vec<(u32, u32)> = (0..3).map(|i| (r.prompt_len[i], r.output_len[i])).collect();
    assert_eq!(lengths, vec![(1, 99), (1, 99), (1, 99)]);
    assert_eq!(r.trimmed, vec![true, true, true]);
    assert_eq!(sim.summary().throughput_tokens_per_s * sim.summary().simulated_span_s, 297.0);
}

#[test]
fn keep_and_no_limit_give_identical_runs() {
    let w = poisson_workload(300, 40.0, 13);
    for &name in POLICY_NAMES {
        let mut a = run(&w, name, &[], &config(1500, limit(300, OverLength::Keep)));
        let mut b = run(&w, name, &[], &config(1500, ModelLen::default()));
        assert_eq!(a.records(), b.records(), "{name}");
        assert!(a.records().trimmed.iter().chain(&a.records().rejected).all(|&x| !x));
        assert_eq!(summary(&mut a), summary(&mut b), "{name}");
    }
}

#[test]
fn the_span_starts_at_the_first_served_arrival() {
    let spec = |id: u64, arrival: f64, p: u32| RequestSpec { id, arrival, prompt_len: p, output_len: 4, type_id: None };
    let w = Workload { requests: vec![spec(0, 0.0, 500), spec(1, 10.0, 20), spec(2, 20.0, 500)], warnings: vec![] };
    let mut sim = run(&w, "vllm", &[], &config(200, limit(100, OverLength::Reject)));
    let s = sim.summary();
    assert_eq!((s.num_requests, s.num_finished, s.num_rejected), (3, 1, 2));
    let r = sim.records();
    assert_eq!(r.rejected, vec![true, false, true]);
    assert_eq!(s.simulated_span_s, r.finish[1] - 10.0);
    assert_eq!(s.latency_mean_s, r.finish[1] - 10.0);
    assert_eq!(s.requests_per_s, 1.0 / s.simulated_span_s);
}

#[test]
fn a_workload_rejected_whole_is_done_at_once() {
    let w = poisson_workload(20, 10.0, 14);
    let mut sim = run(&w, "vllm", &[], &config(100, limit(2, OverLength::Reject)));
    assert_eq!(sim.progress(), (20, 20));
    assert!(sim.iteration_log().is_empty());
    let s = sim.summary();
    assert_eq!((s.num_requests, s.num_finished, s.num_rejected, s.num_iterations), (20, 0, 20, 0));
    assert!(s.latency_mean_s.is_nan() && s.ttft_p50_s.is_nan());
    assert_eq!((s.throughput_tokens_per_s, s.simulated_span_s), (0.0, 0.0));
}

#[test]
fn the_kv_cache_check_applies_to_what_is_served() {
    // 100 blocks of 16 tokens, 1 % watermark: 1,584 usable tokens. One request needs 2,000.
    let mut w = poisson_workload(10, 10.0, 15);
    w.requests[4].prompt_len = 1900;
    w.requests[4].output_len = 100;
    let cfg = |model_len| config(100, model_len);
    for model_len in [ModelLen::default(), limit(1000, OverLength::Keep)] {
        let err = served_workload(&w, &cfg(model_len)).unwrap_err();
        assert!(matches!(&err, Error::InvalidRequest { id: 4, reason } if reason.contains("max_model_len")), "{err}");
    }
    for mode in [OverLength::Reject, OverLength::Trim] {
        let served = served_workload(&w, &cfg(limit(1000, mode))).unwrap();
        assert_eq!(served.num_rejected() + served.num_trimmed(), 1, "{mode}");
        run(&w, "vllm", &[], &cfg(limit(1000, mode)));
    }
    // The checks that do not depend on the limit still cover every request, served or not.
    w.requests[4].output_len = 0;
    let err = served_workload(&w, &cfg(limit(1000, OverLength::Reject))).unwrap_err();
    assert!(matches!(err, Error::InvalidTrace { .. }), "{err}");
}

#[test]
fn bad_limits_are_config_errors_naming_the_option() {
    let w = poisson_workload(5, 10.0, 16);
    for n in [0, 1] {
        let cfg = config(100, ModelLen { max_model_len: Some(n), over_length: OverLength::Trim });
        let policy = build_policy("vllm", PolicyOptions::new("vllm", []), &PolicyContext::default()).unwrap();
        let err = Simulator::new(&w, policy, &cfg).unwrap_err();
        assert!(matches!(&err, Error::InvalidConfig(m) if m.contains("max_model_len")), "{err}");
    }
    assert!(matches!(OverLength::from_name("Trim"), Err(Error::InvalidConfig(m)) if m.contains("over_length")));
}

/// The remark: with requests capped at Orca's reservation (`max_model_len` = `max_tokens`, trimmed or
/// rejected), no request outgrows its reservation, so Orca never preempts; kept, the long ones do and it does.
#[test]
fn orca_never_preempts_with_requests_capped_at_its_reservation() {
    let max_tokens = 512;
    let options = [("max_tokens", OptionValue::Num(f64::from(max_tokens)))];
    for seed in 0..4 {
        let w = poisson_workload(600, 60.0, 100 + seed);
        let over = w.requests.iter().filter(|r| r.prompt_len + r.output_len > max_tokens).count();
        assert!(over > 100, "{over} requests above the reservation");
        let mut kept = run(&w, "orca", &options, &config(400, limit(max_tokens, OverLength::Keep)));
        assert!(kept.summary().num_preemptions > 0, "seed {seed}: long requests outgrow the reservation");
        for mode in [OverLength::Trim, OverLength::Reject] {
            let mut sim = run(&w, "orca", &options, &config(400, limit(max_tokens, mode)));
            let s = sim.summary();
            assert_eq!(s.num_preemptions, 0, "seed {seed}, {mode}");
            assert_eq!(s.num_finished + s.num_rejected, 600);
        }
    }
}
