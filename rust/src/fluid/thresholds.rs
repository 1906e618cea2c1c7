//! WAIT's per-type thresholds: fluid-guided (default) or the authors' reference rule from a total concurrency.
//!
//! Fluid rule. Thresholds are `n_j ≈ λ_j T` for a target iteration time T between two bounds:
//! - stability (lower): `T > T* = d0 / (1 − ρ)`, so that a cohort of `n_j` arrives no faster than one
//!   iteration of the batch it creates takes (`n_j > λ_j T(n)`);
//! - memory and concurrency (upper): `T Σ_j λ_j S_j ≤ M` and `T Σ_j λ_j K_j ≤ max_num_seqs`.
//!
//! `T = min(T* (1 + headroom), T_upper)`, and `n_j = max(1, ceil(λ_j T))`: rounding up keeps every type stable.
//! If the rounded-up thresholds break the memory or concurrency bound, they are rounded down instead (still at
//! least 1). When the bounds cross (`T_upper ≤ T*`: the demand cannot be served), `T = T_upper` and the
//! thresholds are rounded down, which keeps the equilibrium inside memory while the queues grow.

use crate::error::{Error, Result, check_non_negative, check_positive};
use crate::fluid::model::FluidModel;
use crate::workload::RequestType;

/// Thresholds chosen from the fluid model, with the bounds they were chosen between.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdPlan {
    /// `n_j` per type (>= 1).
    pub thresholds: Vec<u32>,
    /// The target iteration time T the thresholds were sized for, seconds.
    pub target_iteration_time: f64,
    /// Stability bound `T*` (infinite when `ρ ≥ 1`).
    pub stability_bound: f64,
    /// Memory/concurrency bound `T_upper`.
    pub upper_bound: f64,
    /// True when `T_upper ≤ T*`: no threshold serves the whole demand.
    pub overloaded: bool,
}

/// Fluid-guided thresholds (see the module documentation). `max_concurrency` is the most requests in flight
/// (the scheduler's `max_num_seqs`); `headroom` ≥ 0 is the relative margin above the stability bound.
pub fn fluid_thresholds(model: &FluidModel, max_concurrency: f64, headroom: f64) -> Result<ThresholdPlan> {
    let solution = model.solve()?;
    check_positive("max_concurrency", max_concurrency)?;
    check_non_negative("headroom", headroom)?;
    let kv = model.kv_token_iterations();
    let rates: Vec<f64> = model.types.iter().map(|t| t.rate).collect();
    let iterations: Vec<f64> = model.types.iter().map(|t| f64::from(t.output_len)).collect();
    let mem_per_t: f64 = rates.iter().zip(&kv).map(|(r, s)| r * s).sum();
    let seqs_per_t: f64 = rates.iter().zip(&iterations).map(|(r, k)| r * k).sum();
    let upper = (model.capacity_tokens / mem_per_t).min(max_concurrency / seqs_per_t);
    let lower = solution.iteration_time;
    let overloaded = lower.partial_cmp(&upper) != Some(std::cmp::Ordering::Less);
    let target = if overloaded { upper } else { (lower * (1.0 + headroom)).min(upper) };
    let fits = |n: &[u32]| {
        let mem: f64 = n.iter().zip(&kv).map(|(&n, s)| f64::from(n) * s).sum();
        let seqs: f64 = n.iter().zip(&iterations).map(|(&n, k)| f64::from(n) * k).sum();
        mem <= model.capacity_tokens && seqs <= max_concurrency
    };
    let round = |f: fn(f64) -> f64| -> Vec<u32> {
        rates.iter().map(|r| (f(r * target).min(f64::from(u32::MAX)) as u32).max(1)).collect()
    };
    let mut thresholds = if overloaded { round(f64::floor) } else { round(f64::ceil) };
    if !fits(&thresholds) {
        thresholds = round(f64::floor);
    }
    Ok(ThresholdPlan {
        thresholds,
        target_iteration_time: target,
        stability_bound: lower,
        upper_bound: upper,
        overloaded,
    })
}

/// The authors' thresholds from a total concurrency `L` (`modified_booking_limit`, `calculate_booking_limits`),
/// computed exactly as their code does, including its `decode + 1` stage count:
/// `limit_j = L λ_j (l'_j + 1) / Σ_i λ_i (l'_i + 1)`, `n_j = int(max(limit_j / (l'_j + 1), 1))`.
pub fn reference_thresholds(types: &[RequestType], total_limit: f64) -> Result<Vec<u32>> {
    check_positive("total_limit", total_limit)?;
    if types.is_empty() {
        return Err(Error::config("total_limit needs request types with rates"));
    }
    for (j, t) in types.iter().enumerate() {
        check_positive(&format!("types[{j}].rate"), t.rate)?;
    }
    let stages = |t: &RequestType| f64::from(t.output_len) + 1.0;
    let total: f64 = types.iter().map(|t| t.rate * stages(t)).sum();
    Ok(types
        .iter()
        .map(|t| {
            let limit = total_limit * t.rate * stages(t) / total;
            (limit / stages(t)).max(1.0).trunc().min(f64::from(u32::MAX)) as u32
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(prompt_len: u32, output_len: u32, rate: f64) -> RequestType {
        RequestType { prompt_len, output_len, rate }
    }

    #[test]
    fn reference_rule_reproduces_the_digest_examples() {
        let test10 = [ty(50, 156, 1670.0), ty(100, 171, 310.0)];
        assert_eq!(reference_thresholds(&test10, 2000.0).unwrap(), vec![10, 1]);
        let test9 = [ty(10, 10, 2000.0), ty(10, 20, 1000.0)];
        assert_eq!(reference_thresholds(&test9, 340.0).unwrap(), vec![15, 7]);
    }

    #[test]
    fn fluid_thresholds_sit_between_the_bounds() {
        let model = FluidModel::new(vec![ty(50, 100, 60.0), ty(20, 300, 10.0)], 0.0066, 7.4e-5, 400_000.0).unwrap();
        let plan = fluid_thresholds(&model, 10_000.0, 0.25).unwrap();
        assert!(!plan.overloaded);
        assert!(plan.stability_bound < plan.target_iteration_time && plan.target_iteration_time <= plan.upper_bound);
        for (n, t) in plan.thresholds.iter().zip(&model.types) {
            assert_eq!(*n, (t.rate * plan.target_iteration_time).ceil() as u32);
        }
    }
}
