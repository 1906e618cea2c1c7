//! The fluid under the time model itself, not its linearisation: what `plan` uses for profiled presets.
//!
//! In the fluid, `c = λT` requests enter every iteration (the mix kept, `p_j = λ_j / Σλ`), and every stage holds
//! `p_j c` requests of type j. So the mean iteration is `c` times a fixed per-entry shape ([`MeanIteration`]):
//! `p_j c` prefills of `l_j` tokens, `p_j c (K_j − 1)` decodes reading `R_j / (K_j − 1)` KV tokens each on
//! average, `c Σ p_j w_j` tokens in all, `c Σ p_j S_j` KV tokens held and `c Σ p_j K_j` requests in flight. An
//! equilibrium is a fixed point of `T = f(c · shape)` with `c = λT` ([`FluidModel::equilibrium_time_under`]
//! says which one is reported when the profiled cost's steps make several).
//!
//! Each constraint caps `c` itself: memory at `c ≤ M / Σ p_j S_j`, `max_num_seqs` at `c ≤ S / Σ p_j K_j`,
//! `max_num_batched_tokens` at `c ≤ B / Σ p_j w_j`. At the largest sustainable rate the binding one is tight, the
//! mean iteration is fully known, and `Λ_max = c_max / f(c_max · shape)`: no linearisation, so the attention
//! cost's dependence on the batch and the step-shaped cost of the linear operators are priced where the system
//! runs. With `f` affine this is exactly [`FluidModel::max_rate_binding`]'s closed form.

use super::model::{Binding, FluidModel, FluidPoint, FluidSolution};
use crate::error::Result;
use crate::time_model::BatchShape;
use crate::workload::RequestType;

/// The fluid's mean iteration (or, scaled by `c`, the mean iteration with `c` requests entering per iteration).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeanIteration {
    /// Tokens processed.
    pub num_tokens: f64,
    /// Prefill tokens.
    pub num_prefill_tokens: f64,
    /// Requests doing their prefill.
    pub num_prefill_seqs: f64,
    /// Requests decoding one token.
    pub num_decode_seqs: f64,
    /// KV tokens the decodes read.
    pub decode_context_sum: f64,
    /// Σ prefill length².
    pub prefill_chunk_sq_sum: f64,
    /// KV tokens held (block-rounded).
    pub kv_tokens: f64,
    /// Requests in flight.
    pub num_seqs: f64,
}

impl MeanIteration {
    /// This iteration with every count multiplied by `c`.
    pub fn scaled(&self, c: f64) -> MeanIteration {
        MeanIteration {
            num_tokens: self.num_tokens * c,
            num_prefill_tokens: self.num_prefill_tokens * c,
            num_prefill_seqs: self.num_prefill_seqs * c,
            num_decode_seqs: self.num_decode_seqs * c,
            decode_context_sum: self.decode_context_sum * c,
            prefill_chunk_sq_sum: self.prefill_chunk_sq_sum * c,
            kv_tokens: self.kv_tokens * c,
            num_seqs: self.num_seqs * c,
        }
    }

    /// The expected seconds of this iteration under a time model of whole batches when the number of prefills
    /// is Poisson with this iteration's mean (arrivals during an iteration are Poisson, and each starts with its
    /// prefill), each of the mean prompt length, the decodes as they are. A profiled model's cost rises in steps
    /// of the token count; pricing only the mean iteration puts equilibria on the edges of those steps, while
    /// the running system straddles them.
    pub fn expected_time(&self, time: &dyn Fn(&BatchShape) -> f64) -> f64 {
        let mean = self.num_prefill_seqs;
        if mean <= 0.0 {
            return time(&self.to_batch_shape());
        }
        let (prompt, prompt_sq) = (self.num_prefill_tokens / mean, self.prefill_chunk_sq_sum / mean);
        // Poisson(mean) weights from k = 0 until the tail is negligible.
        let last = (mean + 8.0 * mean.sqrt() + 8.0).ceil() as u32;
        let (mut weight, mut total, mut seconds) = ((-mean).exp(), 0.0, 0.0);
        for k in 0..=last {
            let kf = f64::from(k);
            let shape = MeanIteration {
                num_prefill_tokens: kf * prompt,
                num_prefill_seqs: kf,
                prefill_chunk_sq_sum: kf * prompt_sq,
                num_tokens: kf * prompt + self.num_decode_seqs,
                ..*self
            };
            seconds += weight * time(&shape.to_batch_shape());
            total += weight;
            weight *= mean / (kf + 1.0);
        }
        seconds / total
    }

    /// The nearest whole-count [`BatchShape`] (prefills whole and from an empty cache), for a time model. A
    /// mean iteration with any work in it keeps at least one decode, so that it is never priced as empty.
    pub fn to_batch_shape(&self) -> BatchShape {
        let round = |x: f64| x.round().clamp(0.0, f64::from(u32::MAX)) as u32;
        let num_prefill_tokens = round(self.num_prefill_tokens);
        let mut num_decode_seqs = round(self.num_decode_seqs);
        if num_prefill_tokens == 0 && num_decode_seqs == 0 && self.num_tokens > 0.0 {
            num_decode_seqs = 1;
        }
        BatchShape {
            num_tokens: num_prefill_tokens.saturating_add(num_decode_seqs),
            num_prefill_tokens,
            num_prefill_seqs: round(self.num_prefill_seqs),
            num_decode_seqs,
            decode_context_sum: self.decode_context_sum.round().max(0.0) as u64,
            prefill_chunk_sq_sum: self.prefill_chunk_sq_sum,
            prefill_chunk_context_sum: 0.0,
            prefill_context_sum: 0,
        }
    }
}

/// How far past the constraints' cap the equilibrium is looked for (a profiled time model grows linearly past
/// its table, so some batch clears any load; one this far past every limit is not worth reporting).
pub const MAX_OVERFLOW: f64 = 64.0;
/// Growth factor of the search past the cap.
const GROWTH: f64 = 1.01;
/// Most batch sizes tried below the cap (one token of batch apart, or coarser for huge caches).
const MAX_GRID_STEPS: f64 = 200_000.0;
/// Bisection steps (enough for a double's precision from any bracket).
const BISECTION_STEPS: usize = 200;

impl FluidModel {
    /// The mean iteration per request entering each iteration (`c = 1`), for the model's type mix.
    pub fn mean_iteration_per_entry(&self) -> MeanIteration {
        let total: f64 = self.types.iter().map(|t| t.rate).sum();
        let kv = self.kv_token_iterations();
        let mut m = MeanIteration::default();
        for (t, s) in self.types.iter().zip(kv) {
            let p = t.rate / total;
            let (l, k) = (f64::from(t.prompt_len), f64::from(t.output_len));
            m.num_prefill_tokens += p * l;
            m.num_prefill_seqs += p;
            m.num_decode_seqs += p * (k - 1.0);
            m.decode_context_sum += p * ((k - 1.0) * l + (k - 1.0) * (k - 2.0) / 2.0);
            m.prefill_chunk_sq_sum += p * l * l;
            m.kv_tokens += p * s;
            m.num_seqs += p * k;
        }
        m.num_tokens = m.num_prefill_tokens + m.num_decode_seqs;
        m
    }

    /// How many requests may enter per iteration (`c = λT`) before a constraint binds, and which one.
    fn entry_cap(&self, unit: &MeanIteration) -> (f64, Binding) {
        let mut caps = vec![(self.capacity_tokens / unit.kv_tokens, Binding::Memory)];
        if let Some(s) = self.max_num_seqs {
            caps.push((s / unit.num_seqs, Binding::MaxNumSeqs));
        }
        if let Some(b) = self.max_num_batched_tokens {
            caps.push((b / unit.num_tokens, Binding::MaxNumBatchedTokens));
        }
        caps.into_iter().min_by(|a, b| a.0.total_cmp(&b.0)).expect("memory always caps c")
    }

    /// The largest total arrival rate (the mix kept) that every constraint allows when an iteration of mean
    /// shape `m` takes `time(m)` seconds, and the constraint that binds (see the module documentation).
    pub fn max_rate_under(&self, time: &dyn Fn(&MeanIteration) -> f64) -> (f64, Binding) {
        let unit = self.mean_iteration_per_entry();
        let (c, binding) = self.entry_cap(&unit);
        (c / time(&unit.scaled(c)), binding)
    }

    /// The equilibrium iteration time at the model's rates when an iteration of mean shape `m` takes `time(m)`,
    /// or None when no batch up to [`MAX_OVERFLOW`] times the constraints' cap clears the arrivals.
    ///
    /// With `c = λT` requests entering per iteration, a batch of entry `c` clears arrivals at rate
    /// `r(c) = c / time(c · shape)`; an equilibrium is a `c` with `r(c) = λ`. A profiled model's cost rises in
    /// steps (the linear operators' table), so `r` is not monotone and small equilibria can sit just below a
    /// step, where any fluctuation pushes the batch over it for good. The equilibrium reported is the robust
    /// one: the smallest `c` from which every larger batch, up to the constraints' cap `c_cap`, clears at least
    /// `λ`. It exists within the cap exactly when `λ ≤ r(c_cap)`, which is [`Self::max_rate_under`]: the two
    /// agree on feasibility. Past the cap the smallest `c` with `r(c) ≥ λ` is reported (the infeasible batch the
    /// load asks for).
    pub fn equilibrium_time_under(&self, time: &dyn Fn(&MeanIteration) -> f64) -> Option<f64> {
        let unit = self.mean_iteration_per_entry();
        let lambda: f64 = self.types.iter().map(|t| t.rate).sum();
        let rate = |c: f64| c / time(&unit.scaled(c));
        let (cap, _) = self.entry_cap(&unit);
        let c = if rate(cap) >= lambda {
            // Down from the cap, one token of batch at a time, to the last batch that clears too slowly.
            let step = (1.0 / unit.num_tokens).max(cap / MAX_GRID_STEPS);
            let mut good = cap;
            let mut bad = 0.0;
            let mut c = cap - step;
            while c > 0.0 {
                if rate(c) < lambda {
                    bad = c;
                    break;
                }
                good = c;
                c -= step;
            }
            bisect(bad, good, |c| rate(c) >= lambda)
        } else {
            // Up from the cap (geometrically) to the first batch that clears fast enough.
            let mut bad = cap;
            let mut good = cap * GROWTH;
            while rate(good) < lambda {
                bad = good;
                good *= GROWTH;
                if good > cap * MAX_OVERFLOW {
                    return None;
                }
            }
            bisect(bad, good, |c| rate(c) >= lambda)
        };
        Some(c / lambda)
    }
}

/// The tokens-only line `(d0, d1)` that WAIT and Nested WAIT plan their thresholds with, for `types` under
/// `config`: the time model's global linearisation, except that for a profiled model `d1` is raised (never
/// lowered) so that the line passes through the expected time of the fluid's fullest mean iteration (the
/// binding constraint's cap, [`FluidModel::max_rate_under`]). The global fit is made on batches of up to 256
/// requests and prices a full cache too cheaply, so thresholds planned with it admit more than the memory
/// sustains once the load passes the true limit: Nested WAIT then overflows the cache and evicts. With the
/// line through the full point, the linear fluid's largest rate is the exact one.
pub fn planning_line(
    time_model: &crate::TimeModel,
    types: &[RequestType],
    config: &crate::scheduler::SchedulerConfig,
) -> (f64, f64) {
    let (d0, d1) = time_model.linearization();
    if matches!(time_model, crate::TimeModel::Linear { .. }) || types.is_empty() {
        return (d0, d1);
    }
    let model = FluidModel::new(types.to_vec(), d0, d1, config.usable_tokens() as f64)
        .and_then(|m| m.with_block_size(config.block_size))
        .and_then(|m| m.with_limits(config.max_num_seqs, config.max_num_batched_tokens));
    let Ok(model) = model else {
        return (d0, d1);
    };
    let unit = model.mean_iteration_per_entry();
    let (c, _) = model.entry_cap(&unit);
    let full = unit.scaled(c);
    let batch = |shape: &BatchShape| time_model.iteration_time(shape);
    let through_full = (full.expected_time(&batch) - d0) / full.num_tokens;
    if through_full.is_finite() && through_full > d1 { (d0, through_full) } else { (d0, d1) }
}

/// The point in `[bad, good]` where `ok` turns true (`ok(bad)` false, `ok(good)` true), to double precision.
fn bisect(mut bad: f64, mut good: f64, ok: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..BISECTION_STEPS {
        let mid = 0.5 * (bad + good);
        if mid <= bad || mid >= good {
            break;
        }
        if ok(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    good
}

impl FluidModel {
    /// [`FluidModel::solve`] with iteration times from `time` instead of the linear model: the equilibrium is the
    /// fixed point above, and when the demand does not fit, the optimum keeps the mix of the linear analysis'
    /// optimum (which types to serve, in what proportion: its memory-limited knapsack, or the demand's mix when
    /// only a limit binds) and scales it to the largest rate `time` sustains (no type above its demand). `rho` and `demand_throughput` are the linear analysis' (ρ is a
    /// property of the linearisation); `stable` says whether the fixed point exists.
    pub fn solve_under(&self, time: &dyn Fn(&MeanIteration) -> f64) -> Result<FluidSolution> {
        let linear = self.solve()?;
        let rates: Vec<f64> = self.types.iter().map(|t| t.rate).collect();
        let equilibrium = self.equilibrium_time_under(time);
        let demand = self.point_with_time(rates.clone(), equilibrium.unwrap_or(f64::INFINITY));
        let memory_feasible = equilibrium.is_some() && demand.memory <= self.capacity_tokens;
        let tokens_per_iteration = demand.iteration_time * self.work_rate(&rates);
        let limits_feasible = memory_feasible
            && self.max_num_seqs.is_none_or(|s| demand.batch_size <= s)
            && self.max_num_batched_tokens.is_none_or(|b| tokens_per_iteration <= b);
        let (optimal, binding) = if limits_feasible {
            (demand.clone(), None)
        } else {
            let mix = if memory_feasible { rates.clone() } else { linear.optimal.served_rates.clone() };
            let mix = if mix.iter().sum::<f64>() > 0.0 { mix } else { rates.clone() };
            let mixed = self.with_rates(&mix);
            let (rate, limit) = mixed.max_rate_under(time);
            // Along the mix, as far as `time` allows, but never above a type's own demand.
            let demand_cap =
                mix.iter().zip(&rates).filter(|(y, _)| **y > 0.0).map(|(y, l)| l / y).fold(f64::INFINITY, f64::min);
            let scale = (rate / mix.iter().sum::<f64>()).min(demand_cap);
            let served: Vec<f64> = mix.iter().map(|y| y * scale).collect();
            let t = self.with_rates(&served).equilibrium_time_under(time).unwrap_or(f64::INFINITY);
            (self.point_with_time(served, t), Some(limit))
        };
        Ok(FluidSolution {
            rho: linear.rho,
            stable: equilibrium.is_some(),
            iteration_time: demand.iteration_time,
            stage_mass: demand.stage_mass,
            batch_size: demand.batch_size,
            memory_required: demand.memory,
            memory_feasible,
            limits_feasible,
            binding,
            demand_throughput: linear.demand_throughput,
            throughput: optimal.throughput,
            optimal,
        })
    }

    /// The same model with these per-type rates (zero rates allowed: only the mix is read from it).
    fn with_rates(&self, rates: &[f64]) -> FluidModel {
        let types = self.types.iter().zip(rates).map(|(t, &rate)| RequestType { rate, ..*t }).collect();
        FluidModel { types, ..self.clone() }
    }

    /// Tokens per second the rates bring: `Σ_j y_j w_j`.
    fn work_rate(&self, rates: &[f64]) -> f64 {
        self.types.iter().zip(rates).map(|(t, y)| y * f64::from(t.prompt_len + t.output_len - 1)).sum()
    }

    /// The operating point serving `served` per second with iteration time `t`.
    fn point_with_time(&self, served: Vec<f64>, t: f64) -> FluidPoint {
        let kv = self.kv_token_iterations();
        let iterations: f64 = self.types.iter().zip(&served).map(|(ty, y)| y * f64::from(ty.output_len)).sum();
        let memory = kv.iter().zip(&served).map(|(s, y)| s * y).sum::<f64>() * t;
        FluidPoint {
            stage_mass: served.iter().map(|y| y * t).collect(),
            served_rates: served,
            iteration_time: t,
            batch_size: iterations * t,
            memory,
            throughput: iterations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::RequestType;

    fn two_types(scale: f64) -> FluidModel {
        let types = vec![
            RequestType { prompt_len: 50, output_len: 156, rate: 167.0 * scale },
            RequestType { prompt_len: 100, output_len: 171, rate: 31.0 * scale },
        ];
        FluidModel::new(types, 0.01, 8e-5, 118_784.0).unwrap().with_block_size(16).unwrap()
    }

    fn affine(m: &FluidModel) -> impl Fn(&MeanIteration) -> f64 {
        let (d0, d1, d2) = (m.d0, m.d1, m.d2);
        move |it: &MeanIteration| d0 + d1 * it.num_tokens + d2 * it.decode_context_sum
    }

    #[test]
    fn an_affine_time_reproduces_the_closed_forms() {
        for limits in [None, Some((128, 1 << 20)), Some((1 << 20, 512)), Some((4096, 8192))] {
            let mut m = two_types(0.1).with_attention(2.8e-7).unwrap();
            if let Some((s, b)) = limits {
                m = m.with_limits(s, b).unwrap();
            }
            let (exact, binding) = m.max_rate_under(&affine(&m));
            let (closed, closed_binding) = m.max_rate_binding().unwrap();
            assert!((exact - closed).abs() <= 1e-9 * closed, "{limits:?}: {exact} vs {closed}");
            assert_eq!(binding, closed_binding);
            let t = m.equilibrium_time_under(&affine(&m)).expect("stable at 0.1 of the load");
            let sol = m.solve().unwrap();
            assert!((t - sol.iteration_time).abs() <= 1e-9 * sol.iteration_time, "{t} vs {}", sol.iteration_time);
        }
    }

    #[test]
    fn solving_under_an_affine_time_is_solving_the_linear_model() {
        // Light load, memory overload (the knapsack), a concurrency cap and a token cap.
        for (scale, limits) in [(0.05, None), (1.0, None), (0.3, Some((128, 1 << 20))), (0.3, Some((1 << 20, 512)))] {
            let mut m = two_types(scale).with_attention(2.8e-7).unwrap();
            if let Some((s, b)) = limits {
                m = m.with_limits(s, b).unwrap();
            }
            let (exact, linear) = (m.solve_under(&affine(&m)).unwrap(), m.solve().unwrap());
            let close =
                |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0) || (a.is_infinite() && b.is_infinite());
            assert_eq!((exact.stable, exact.memory_feasible), (linear.stable, linear.memory_feasible), "{scale}");
            assert_eq!((exact.limits_feasible, exact.binding), (linear.limits_feasible, linear.binding), "{scale}");
            assert!(close(exact.iteration_time, linear.iteration_time), "{scale}");
            assert!(
                close(exact.throughput, linear.throughput),
                "{scale}: {} vs {}",
                exact.throughput,
                linear.throughput
            );
            assert!(close(exact.optimal.memory, linear.optimal.memory), "{scale}");
            assert!(close(exact.optimal.batch_size, linear.optimal.batch_size), "{scale}");
        }
    }

    #[test]
    fn under_the_profiled_preset_the_largest_rate_is_where_memory_fills() {
        let tm = crate::TimeModel::from_name("llama2-7b-a100", None, None).unwrap();
        let time = |m: &MeanIteration| tm.iteration_time(&m.to_batch_shape());
        let (d0, d1, d2) = tm.attention_linearization();
        let m = FluidModel::new(two_types(1.0).types, d0, d1, 117_600.0)
            .unwrap()
            .with_attention(d2)
            .unwrap()
            .with_block_size(16)
            .unwrap();
        let (rate, binding) = m.max_rate_under(&time);
        assert_eq!(binding, Binding::Memory);
        // The linearisation prices the full batch too cheaply: it promises more than the preset delivers.
        assert!(rate < m.max_rate().unwrap());
        let total: f64 = m.types.iter().map(|t| t.rate).sum();
        let below = m.scaled(0.99 * rate / total).unwrap().solve_under(&time).unwrap();
        let above = m.scaled(1.01 * rate / total).unwrap().solve_under(&time).unwrap();
        assert!(below.memory_feasible && below.memory_required <= m.capacity_tokens);
        assert!(!above.memory_feasible);
        assert_eq!(above.binding, Some(Binding::Memory));
        // Overloaded, the optimum serves the whole mix at the largest rate, filling memory.
        assert!((above.optimal.served_rates.iter().sum::<f64>() - rate).abs() < 1e-6 * rate);
        assert!((above.optimal.memory - m.capacity_tokens).abs() < 1e-3 * m.capacity_tokens);
    }

    #[test]
    fn the_planning_line_passes_through_the_full_cache() {
        let config = crate::scheduler::SchedulerConfig { max_num_seqs: 4096, ..Default::default() };
        let types = two_types(1.0).types;
        let linear = crate::TimeModel::Linear { d0: 0.01, d1: 8e-5 };
        assert_eq!(planning_line(&linear, &types, &config), (0.01, 8e-5));
        let tm = crate::TimeModel::from_name("llama2-7b-a100", None, None).unwrap();
        let (d0, d1) = planning_line(&tm, &types, &config);
        assert_eq!(d0, tm.linearization().0);
        assert!(d1 > tm.linearization().1, "the full cache costs more than the global line says");
        // The tokens-only fluid on that line sustains what the preset itself sustains at a full cache.
        let m = FluidModel::new(types, d0, d1, config.usable_tokens() as f64)
            .unwrap()
            .with_block_size(config.block_size)
            .unwrap()
            .with_limits(config.max_num_seqs, config.max_num_batched_tokens)
            .unwrap();
        let batch = |shape: &BatchShape| tm.iteration_time(shape);
        let (exact, _) = m.max_rate_under(&|it: &MeanIteration| it.expected_time(&batch));
        let (on_line, _) = m.max_rate_binding().unwrap();
        assert!((on_line - exact).abs() < 1e-9 * exact, "{on_line} vs {exact}");
        assert_eq!(planning_line(&tm, &[], &config), tm.linearization());
    }

    #[test]
    fn equilibrium_diverges_past_the_compute_limit() {
        let m = two_types(1.0);
        assert!(m.solve().unwrap().rho > 1.0);
        assert_eq!(m.equilibrium_time_under(&affine(&m)), None);
    }

    #[test]
    fn the_mean_iteration_counts_what_the_fluid_holds() {
        let m = two_types(1.0);
        let unit = m.mean_iteration_per_entry();
        let (p0, p1) = (167.0 / 198.0, 31.0 / 198.0);
        assert!((unit.num_seqs - (p0 * 156.0 + p1 * 171.0)).abs() < 1e-9);
        assert!((unit.num_prefill_seqs - 1.0).abs() < 1e-12);
        assert!((unit.num_tokens - (p0 * (50.0 + 155.0) + p1 * (100.0 + 170.0))).abs() < 1e-9);
        let kv = m.kv_token_iterations();
        assert!((unit.kv_tokens - (p0 * kv[0] + p1 * kv[1])).abs() < 1e-6);
        let shape = unit.scaled(10.0).to_batch_shape();
        assert_eq!(shape.num_tokens, shape.num_prefill_tokens + shape.num_decode_seqs);
        assert_eq!(shape.num_prefill_seqs, 10);
    }
}
