//! The fluid model: closed forms of the single-type case, the multi-type formulas checked numerically,
//! monotonicity, the memory-limited optimum, the largest sustainable rate, and input validation.

use fluidsched_core::Error;
use fluidsched_core::fluid::{FluidModel, kv_token_iterations, types_from_lengths};
use fluidsched_core::workload::RequestType;

const D0: f64 = 0.0066;
const D1: f64 = 7.4e-5;

fn ty(prompt_len: u32, output_len: u32, rate: f64) -> RequestType {
    RequestType { prompt_len, output_len, rate }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

#[test]
fn single_type_closed_forms() {
    let (l, k, lambda, m) = (50.0, 100.0, 60.0, 1e6);
    let sol = FluidModel::new(vec![ty(50, 100, lambda)], D0, D1, m).unwrap().solve().unwrap();
    let rho = lambda * D1 * (l + k - 1.0);
    let t = D0 / (1.0 - rho);
    assert!(close(sol.rho, rho, 1e-12));
    assert!(sol.stable && sol.memory_feasible);
    assert!(close(sol.iteration_time, t, 1e-12));
    assert!(close(sol.stage_mass[0], lambda * t, 1e-12));
    assert!(close(sol.batch_size, lambda * t * k, 1e-12));
    assert!(close(sol.memory_required, lambda * t * k * (l + (k - 1.0) / 2.0), 1e-12));
    assert!(close(sol.throughput, lambda * k, 1e-12));
    assert_eq!(sol.optimal.served_rates, vec![lambda]);
}

#[test]
fn block_rounding_adds_the_rounded_tokens() {
    let exact = FluidModel::new(vec![ty(50, 100, 60.0)], D0, D1, 1e6).unwrap();
    let blocks = exact.clone().with_block_size(16).unwrap();
    let (a, b) = (exact.solve().unwrap(), blocks.solve().unwrap());
    assert_eq!(a.iteration_time, b.iteration_time);
    let per_request: f64 = (0..100u32).map(|i| f64::from((50 + i).div_ceil(16) * 16)).sum();
    assert!(close(b.memory_required, b.stage_mass[0] * per_request, 1e-12));
    assert_eq!(kv_token_iterations(50.0, 100.0, 16), per_request);
}

#[test]
fn multi_type_flow_balance_and_memory() {
    let types = vec![ty(20, 50, 30.0), ty(100, 300, 8.0), ty(5, 10, 100.0)];
    let model = FluidModel::new(types.clone(), D0, D1, 1e7).unwrap();
    let sol = model.solve().unwrap();
    let t = sol.iteration_time;
    // Flow balance: an iteration with x_j = λ_j T per stage takes exactly T.
    let tokens: f64 =
        types.iter().map(|y| y.rate * t * (f64::from(y.prompt_len) + f64::from(y.output_len) - 1.0)).sum();
    assert!(close(D0 + D1 * tokens, t, 1e-12));
    let mem: f64 = types
        .iter()
        .map(|y| {
            let (l, k) = (f64::from(y.prompt_len), f64::from(y.output_len));
            y.rate * t * k * (l + (k - 1.0) / 2.0)
        })
        .sum();
    assert!(close(sol.memory_required, mem, 1e-12));
    let n: f64 = types.iter().map(|y| y.rate * t * f64::from(y.output_len)).sum();
    assert!(close(sol.batch_size, n, 1e-12));
    assert!(close(sol.demand_throughput, 30.0 * 50.0 + 8.0 * 300.0 + 100.0 * 10.0, 1e-12));
}

#[test]
fn more_load_means_longer_iterations() {
    let base = FluidModel::new(vec![ty(20, 50, 10.0), ty(100, 300, 2.0)], D0, D1, 1e9).unwrap();
    let mut last = 0.0;
    for f in [0.5, 1.0, 2.0, 4.0, 6.0, 7.0] {
        let sol = base.scaled(f).unwrap().solve().unwrap();
        assert!(sol.stable, "factor {f}: rho {}", sol.rho);
        assert!(sol.iteration_time > last);
        last = sol.iteration_time;
    }
}

#[test]
fn more_memory_never_lowers_throughput() {
    for rates in [(30.0, 8.0), (300.0, 80.0), (3.0, 0.8)] {
        let types = vec![ty(20, 50, rates.0), ty(100, 300, rates.1)];
        let mut last = 0.0;
        for m in [1e3, 5e3, 2e4, 1e5, 5e5, 2e6, 1e7] {
            let sol = FluidModel::new(types.clone(), D0, D1, m).unwrap().solve().unwrap();
            assert!(sol.throughput >= last * (1.0 - 1e-12), "rates {rates:?} M {m}");
            assert!(sol.throughput <= sol.demand_throughput * (1.0 + 1e-12));
            last = sol.throughput;
        }
    }
}

#[test]
fn memory_limited_optimum_fills_memory_and_beats_a_grid() {
    let types = vec![ty(20, 50, 300.0), ty(100, 300, 80.0)];
    let m = 50_000.0;
    let model = FluidModel::new(types.clone(), D0, D1, m).unwrap();
    let sol = model.solve().unwrap();
    assert!(!sol.memory_feasible);
    let opt = &sol.optimal;
    assert!(close(opt.memory, m, 1e-9), "{opt:?}");
    assert!(opt.served_rates.iter().zip(&types).all(|(y, t)| *y >= 0.0 && *y <= t.rate));
    // Any served-rate pair on a grid that fits memory does no better.
    let s = model.kv_token_iterations();
    for i in 0..=100 {
        for j in 0..=100 {
            let y = [300.0 * f64::from(i) / 100.0, 80.0 * f64::from(j) / 100.0];
            let load: f64 = D1 * (y[0] * 69.0 + y[1] * 399.0);
            if load >= 1.0 {
                continue;
            }
            let t = D0 / (1.0 - load);
            if t * (y[0] * s[0] + y[1] * s[1]) <= m {
                assert!(50.0 * y[0] + 300.0 * y[1] <= opt.throughput * (1.0 + 1e-9));
            }
        }
    }
}

#[test]
fn max_rate_is_where_memory_binds() {
    let model = FluidModel::new(vec![ty(20, 50, 3.0), ty(100, 300, 1.0)], D0, D1, 118_784.0).unwrap();
    let max = model.max_rate().unwrap();
    let at = model.scaled(max / 4.0).unwrap().solve().unwrap();
    assert!(at.stable && close(at.memory_required, 118_784.0, 1e-9), "{at:?}");
    assert!(model.scaled(max / 4.0 * 0.999).unwrap().solve().unwrap().memory_feasible);
    assert!(!model.scaled(max / 4.0 * 1.001).unwrap().solve().unwrap().memory_feasible);
    // With memory no object, the bound tends to the stability limit 1 / (d1 Σ p_j w_j).
    let big = FluidModel { capacity_tokens: 1e15, ..model };
    let stability = 1.0 / (D1 * (0.75 * 69.0 + 0.25 * 399.0));
    assert!(close(big.max_rate().unwrap(), stability, 1e-6));
}

#[test]
fn unstable_demand_reports_infinite_equilibrium_and_a_finite_optimum() {
    let sol = FluidModel::new(vec![ty(50, 100, 200.0)], D0, D1, 118_784.0).unwrap().solve().unwrap();
    assert!(!sol.stable && !sol.memory_feasible);
    assert!(sol.iteration_time.is_infinite() && sol.memory_required.is_infinite());
    assert!(sol.throughput.is_finite() && sol.throughput > 0.0 && sol.optimal.iteration_time.is_finite());
}

#[test]
fn bad_inputs_name_the_field() {
    let err = |r: Result<FluidModel, Error>| match r {
        Err(Error::InvalidConfig(msg)) => msg,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    assert!(err(FluidModel::new(vec![ty(5, 5, f64::NAN)], D0, D1, 1e5)).contains("types[0].rate"));
    assert!(err(FluidModel::new(vec![ty(5, 5, 1.0), ty(5, 5, -1.0)], D0, D1, 1e5)).contains("types[1].rate"));
    assert!(err(FluidModel::new(vec![ty(5, 5, 0.0)], D0, D1, 1e5)).contains("rate"));
    assert!(err(FluidModel::new(vec![ty(0, 5, 1.0)], D0, D1, 1e5)).contains("prompt_len"));
    assert!(err(FluidModel::new(vec![ty(5, 0, 1.0)], D0, D1, 1e5)).contains("output_len"));
    assert!(err(FluidModel::new(vec![ty(5, 5, 1.0)], D0, D1, 0.0)).contains("capacity_tokens"));
    assert!(err(FluidModel::new(vec![ty(5, 5, 1.0)], 0.0, D1, 1e5)).contains("d0"));
    assert!(err(FluidModel::new(vec![ty(5, 5, 1.0)], D0, -1.0, 1e5)).contains("d1"));
    assert!(err(FluidModel::new(vec![], D0, D1, 1e5)).contains("types"));
    let bad = FluidModel { capacity_tokens: f64::NAN, ..FluidModel::new(vec![ty(5, 5, 1.0)], D0, D1, 1.0).unwrap() };
    assert!(bad.solve().is_err() && bad.max_rate().is_err());
}

#[test]
fn types_from_a_trace_keep_the_rate_and_the_mean_output() {
    let output: Vec<u32> = (0..1000).map(|i| 1 + (i * 7919) % 500).collect();
    let prompt: Vec<u32> = (0..1000).map(|i| 1 + (i * 104_729) % 200).collect();
    let types = types_from_lengths(&prompt, &output, 50.0, 10).unwrap();
    assert_eq!(types.len(), 10);
    let total: f64 = types.iter().map(|t| t.rate).sum();
    assert!(close(total, 50.0, 1e-12));
    let mean_out: f64 = types.iter().map(|t| t.rate / total * f64::from(t.output_len)).sum();
    let true_mean = output.iter().map(|&o| f64::from(o)).sum::<f64>() / 1000.0;
    assert!(close(mean_out, true_mean, 0.01));
    assert!(types.windows(2).all(|w| w[0].output_len <= w[1].output_len));
}
