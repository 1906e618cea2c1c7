//! The multi-type fluid model of continuous batching under a KV-cache limit (WAIT paper §2; derivation in
//! `docs/wait.md`).
//!
//! Convention (Vidur's, the scheduler's): a type-j request takes `K_j = l'_j` iterations. Its first iteration
//! is the prefill (`l_j` tokens, emits output token 1); each of the other `K_j − 1` iterations decodes one token.
//! During its k-th iteration (k = 1..K_j) it holds the KV of `l_j + k − 1` tokens, rounded up to whole blocks.
//!
//! With `x_j` requests of type j in every stage, an iteration processes `B = Σ_j x_j w_j` tokens, `w_j = l_j +
//! K_j − 1`, and takes `T = d0 + d1 B`. Flow balance `x_j = λ_j T` gives `T* = d0 / (1 − ρ)` with `ρ = d1 Σ_j
//! λ_j w_j`, batch size `N* = T* Σ_j λ_j K_j` and memory `M* = T* Σ_j λ_j S_j`, where `S_j` is the KV a
//! request holds summed over its iterations.

use crate::error::{Error, Result, check_non_negative, check_positive};
use crate::workload::RequestType;

/// The fluid model's inputs: request types, the linear iteration-time model and the KV capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct FluidModel {
    /// Request types (prompt length `l_j`, output length `l'_j = K_j`, arrival rate `λ_j` per second).
    pub types: Vec<RequestType>,
    /// Fixed cost of one iteration, seconds (> 0).
    pub d0: f64,
    /// Cost per token processed in an iteration, seconds (>= 0).
    pub d1: f64,
    /// Cost per KV token read by a decode (attention over the cached context), seconds (>= 0; 0 = the paper's
    /// linear model). The iteration time is `d0 + d1 · tokens + d2 · KV tokens read`.
    pub d2: f64,
    /// KV capacity `M`, tokens (> 0).
    pub capacity_tokens: f64,
    /// KV block size in tokens: each request's memory is rounded up to whole blocks (1 = exact tokens).
    pub block_size: u32,
    /// Most requests in flight (the scheduler's `max_num_seqs`); None: unlimited.
    pub max_num_seqs: Option<f64>,
    /// Most tokens in one iteration (the scheduler's `max_num_batched_tokens`); None: unlimited.
    pub max_num_batched_tokens: Option<f64>,
}

/// The constraint that limits a fluid operating point (or the largest sustainable rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// KV memory (above the watermark, block-rounded).
    Memory,
    /// `max_num_seqs`: requests in flight.
    MaxNumSeqs,
    /// `max_num_batched_tokens`: tokens per iteration.
    MaxNumBatchedTokens,
}

impl Binding {
    /// Stable name, as `plan` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Binding::Memory => "memory",
            Binding::MaxNumSeqs => "max_num_seqs",
            Binding::MaxNumBatchedTokens => "max_num_batched_tokens",
        }
    }
}

/// One operating point of the fluid: what is served and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct FluidPoint {
    /// Served arrival rate of each type, requests per second (`λ_j` when all demand is served).
    pub served_rates: Vec<f64>,
    /// Iteration time at this point, seconds.
    pub iteration_time: f64,
    /// Requests of each type in every stage (the batch composition), `x_j = y_j T`.
    pub stage_mass: Vec<f64>,
    /// Requests in flight (batch size), `Σ_j K_j x_j`.
    pub batch_size: f64,
    /// KV tokens held, `Σ_j x_j S_j`.
    pub memory: f64,
    /// Output tokens per second, `Σ_j K_j y_j`.
    pub throughput: f64,
}

/// The fluid equilibrium of a [`FluidModel`], and its memory-limited optimum when the demand cannot be served.
#[derive(Debug, Clone, PartialEq)]
pub struct FluidSolution {
    /// Load `ρ = d1 Σ_j λ_j (l_j + K_j − 1)`.
    pub rho: f64,
    /// Compute stability: `ρ < 1`.
    pub stable: bool,
    /// Equilibrium iteration time `T* = d0 / (1 − ρ)`, seconds (infinite when unstable).
    pub iteration_time: f64,
    /// Equilibrium requests of each type per stage, `x*_j = λ_j T*` (infinite when unstable).
    pub stage_mass: Vec<f64>,
    /// Equilibrium batch size `N* = T* Σ_j λ_j K_j` (infinite when unstable).
    pub batch_size: f64,
    /// Equilibrium KV requirement `M* = T* Σ_j λ_j S_j`, tokens (infinite when unstable).
    pub memory_required: f64,
    /// Whether the equilibrium exists and fits: `ρ < 1` and `M* ≤ M`.
    pub memory_feasible: bool,
    /// Whether the equilibrium also respects `max_num_seqs` (`N* ≤`) and `max_num_batched_tokens` (tokens per
    /// iteration `T* Σ_j λ_j w_j ≤`).
    pub limits_feasible: bool,
    /// What limits the fluid-optimal point: None when the whole demand is served.
    pub binding: Option<Binding>,
    /// Offered output tokens per second, `Σ_j λ_j K_j`.
    pub demand_throughput: f64,
    /// Fluid-optimal output tokens per second: the demand when feasible, the memory-limited optimum otherwise.
    pub throughput: f64,
    /// The fluid-optimal operating point: the equilibrium when feasible, else the memory-limited optimum with
    /// its composition (which types are served, at what rate).
    pub optimal: FluidPoint,
}

/// Per-type constants of the fluid.
#[derive(Debug, Clone, Copy)]
struct TypeTerms {
    rate: f64,
    /// Iterations `K_j`.
    iterations: f64,
    /// Tokens processed over the request's life, `w_j = l_j + K_j − 1`.
    work: f64,
    /// KV tokens held summed over the request's iterations, `S_j`.
    kv_sum: f64,
    /// Seconds of iteration time the request costs over its life: `d1 w_j + d2 R_j`, with `R_j` the KV tokens
    /// its decodes read (`Σ_{k=2..K_j} (l_j + k − 2)`).
    cost: f64,
}

/// `Σ_{t=1..n} ceil(t / b)`, exactly, in floating point.
fn ceil_div_prefix_sum(n: f64, b: f64) -> f64 {
    let q = (n / b).floor();
    let r = n - q * b;
    b * q * (q + 1.0) / 2.0 + r * (q + 1.0)
}

/// KV tokens a request with prompt `l` and `k` iterations holds, summed over its iterations, with memory
/// rounded up to blocks of `b` tokens: `Σ_{t=l..l+k−1} b·ceil(t/b)`. With `b = 1` this is `k (l + (k − 1)/2)`.
pub fn kv_token_iterations(prompt_len: f64, iterations: f64, block_size: u32) -> f64 {
    let b = f64::from(block_size.max(1));
    b * (ceil_div_prefix_sum(prompt_len + iterations - 1.0, b) - ceil_div_prefix_sum(prompt_len - 1.0, b))
}

impl FluidModel {
    /// A validated model with exact token accounting (`block_size` 1).
    pub fn new(types: Vec<RequestType>, d0: f64, d1: f64, capacity_tokens: f64) -> Result<Self> {
        let model = FluidModel {
            types,
            d0,
            d1,
            d2: 0.0,
            capacity_tokens,
            block_size: 1,
            max_num_seqs: None,
            max_num_batched_tokens: None,
        };
        model.validate()?;
        Ok(model)
    }

    /// The same model with KV memory rounded up to blocks of `block_size` tokens.
    pub fn with_block_size(mut self, block_size: u32) -> Result<Self> {
        self.block_size = block_size;
        self.validate()?;
        Ok(self)
    }

    /// The same model with the attention term: `d2` seconds per KV token a decode reads.
    pub fn with_attention(mut self, d2: f64) -> Result<Self> {
        self.d2 = d2;
        self.validate()?;
        Ok(self)
    }

    /// The same model under the scheduler's limits: `max_num_seqs` requests in flight and
    /// `max_num_batched_tokens` tokens per iteration.
    pub fn with_limits(mut self, max_num_seqs: u32, max_num_batched_tokens: u32) -> Result<Self> {
        self.max_num_seqs = Some(f64::from(max_num_seqs));
        self.max_num_batched_tokens = Some(f64::from(max_num_batched_tokens));
        self.validate()?;
        Ok(self)
    }

    /// Checks every input, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.types.is_empty() {
            return Err(Error::config("fluid model: types must not be empty"));
        }
        for (j, t) in self.types.iter().enumerate() {
            if t.prompt_len == 0 {
                return Err(Error::config(format!("fluid model: types[{j}].prompt_len must be >= 1")));
            }
            if t.output_len == 0 {
                return Err(Error::config(format!("fluid model: types[{j}].output_len must be >= 1")));
            }
            check_positive(&format!("fluid model: types[{j}].rate"), t.rate)?;
        }
        check_positive("fluid model: d0", self.d0)?;
        check_non_negative("fluid model: d1", self.d1)?;
        check_non_negative("fluid model: d2", self.d2)?;
        check_positive("fluid model: capacity_tokens", self.capacity_tokens)?;
        if self.block_size == 0 {
            return Err(Error::config("fluid model: block_size must be >= 1"));
        }
        if let Some(n) = self.max_num_seqs {
            check_positive("fluid model: max_num_seqs", n)?;
        }
        if let Some(n) = self.max_num_batched_tokens {
            check_positive("fluid model: max_num_batched_tokens", n)?;
        }
        Ok(())
    }

    fn terms(&self) -> Vec<TypeTerms> {
        self.types
            .iter()
            .map(|t| {
                let k = f64::from(t.output_len);
                let l = f64::from(t.prompt_len);
                let kv_read = (k - 1.0) * l + (k - 1.0) * (k - 2.0) / 2.0;
                TypeTerms {
                    rate: t.rate,
                    iterations: k,
                    work: l + k - 1.0,
                    kv_sum: kv_token_iterations(l, k, self.block_size),
                    cost: self.d1 * (l + k - 1.0) + self.d2 * kv_read,
                }
            })
            .collect()
    }

    /// KV tokens each type's request holds summed over its iterations (`S_j`), in type order.
    pub fn kv_token_iterations(&self) -> Vec<f64> {
        self.terms().iter().map(|t| t.kv_sum).collect()
    }

    /// The operating point that serves `served[j]` requests per second of each type (must satisfy
    /// `d1 Σ_j y_j w_j < 1`; the iteration time is infinite otherwise).
    fn point(&self, terms: &[TypeTerms], served: Vec<f64>) -> FluidPoint {
        let load: f64 = terms.iter().zip(&served).map(|(t, y)| t.cost * y).sum();
        let iteration_time = if load < 1.0 { self.d0 / (1.0 - load) } else { f64::INFINITY };
        let stage_mass: Vec<f64> = served.iter().map(|y| y * iteration_time).collect();
        let batch_size = terms.iter().zip(&served).map(|(t, y)| t.iterations * y).sum::<f64>() * iteration_time;
        let memory = terms.iter().zip(&served).map(|(t, y)| t.kv_sum * y).sum::<f64>() * iteration_time;
        let throughput = terms.iter().zip(&served).map(|(t, y)| t.iterations * y).sum();
        FluidPoint { served_rates: served, iteration_time, stage_mass, batch_size, memory, throughput }
    }

    /// The memory-limited optimum: maximise `Σ K_j y_j` over served rates `0 ≤ y_j ≤ λ_j` subject to
    /// `T(y) Σ_j y_j S_j ≤ M`, `T(y) = d0 / (1 − d1 Σ_j y_j w_j)`. Multiplying out, the constraint is linear,
    /// `Σ_j y_j (S_j + M d1 w_j / d0) ≤ M / d0`, so the optimum is a fractional knapsack: serve types in
    /// decreasing order of `K_j / (S_j + M d1 w_j / d0)` until the budget is spent.
    fn memory_limited_optimum(&self, terms: &[TypeTerms]) -> Vec<f64> {
        let m = self.capacity_tokens;
        let cost: Vec<f64> = terms.iter().map(|t| t.kv_sum + m * t.cost / self.d0).collect();
        let mut order: Vec<usize> = (0..terms.len()).collect();
        order.sort_by(|&a, &b| (terms[b].iterations / cost[b]).total_cmp(&(terms[a].iterations / cost[a])));
        let mut budget = m / self.d0;
        let mut served = vec![0.0; terms.len()];
        for j in order {
            let full = terms[j].rate * cost[j];
            if full <= budget {
                served[j] = terms[j].rate;
                budget -= full;
            } else {
                served[j] = budget / cost[j];
                break;
            }
        }
        served
    }

    /// The largest factor `f ≤ 1` by which served rates `y` can be scaled and still respect `max_num_seqs` and
    /// `max_num_batched_tokens`, with the limit that binds. Scaling by f gives `N(f) = d0 f C / (1 − f B)` (C =
    /// `Σ y_j K_j`, B = `d1 Σ y_j w_j`), so `N(f) ≤ S` iff `f ≤ S / (d0 C + S B)`; tokens per iteration likewise
    /// with `W = Σ y_j w_j`.
    fn limit_scale(&self, terms: &[TypeTerms], served: &[f64]) -> (f64, Option<Binding>) {
        let c: f64 = terms.iter().zip(served).map(|(t, y)| t.iterations * y).sum();
        let w: f64 = terms.iter().zip(served).map(|(t, y)| t.work * y).sum();
        let b: f64 = terms.iter().zip(served).map(|(t, y)| t.cost * y).sum();
        match self.tightest_limit(c, w, b) {
            Some((f, binding)) if f < 1.0 => (f, Some(binding)),
            _ => (1.0, None),
        }
    }

    /// The tightest of the `max_num_seqs` and `max_num_batched_tokens` bounds on a rate `Λ` (or a scale factor)
    /// with `C` requests in flight per unit, `W` tokens per iteration per unit and load `B` per unit: the bound
    /// `limit / (d0 · per_unit + limit · B)` of each limit that is set, and which limit it is.
    fn tightest_limit(&self, c: f64, w: f64, b: f64) -> Option<(f64, Binding)> {
        [(self.max_num_seqs, c, Binding::MaxNumSeqs), (self.max_num_batched_tokens, w, Binding::MaxNumBatchedTokens)]
            .into_iter()
            .filter_map(|(limit, per_unit, binding)| limit.map(|l| (l / (self.d0 * per_unit + l * b), binding)))
            .min_by(|x, y| x.0.total_cmp(&y.0))
    }

    /// Solves the fluid: equilibrium, feasibility and the fluid-optimal throughput under every constraint the
    /// scheduler enforces (memory, `max_num_seqs`, `max_num_batched_tokens`).
    ///
    /// When the demand does not fit, the optimal point starts from the memory-limited optimum (the demand
    /// itself when memory fits) and, if that breaks `max_num_seqs` or `max_num_batched_tokens`, scales its
    /// served rates down uniformly until the binding limit holds. With memory alone binding this is the exact
    /// optimum; with a concurrency or token limit binding it keeps the memory optimum's mix (exact for one type,
    /// a feasible point within the optimum's reach otherwise).
    pub fn solve(&self) -> Result<FluidSolution> {
        self.validate()?;
        let terms = self.terms();
        let rho: f64 = terms.iter().map(|t| t.rate * t.cost).sum();
        let stable = rho < 1.0;
        let demand = self.point(&terms, terms.iter().map(|t| t.rate).collect());
        let memory_feasible = stable && demand.memory <= self.capacity_tokens;
        let demand_throughput = demand.throughput;
        let (demand_scale, _) = self.limit_scale(&terms, &demand.served_rates);
        let limits_feasible = memory_feasible && demand_scale >= 1.0;
        let (optimal, binding) = if limits_feasible {
            (demand.clone(), None)
        } else {
            // The knapsack's constraint implies ρ < 1 for what it serves: memory binds, not compute.
            let (base, mut binding) = if memory_feasible {
                (demand.served_rates.clone(), None)
            } else {
                (self.memory_limited_optimum(&terms), Some(Binding::Memory))
            };
            let (f, limit) = self.limit_scale(&terms, &base);
            if f < 1.0 {
                binding = limit;
            }
            let served = base.iter().map(|y| y * f.min(1.0)).collect();
            (self.point(&terms, served), binding)
        };
        Ok(FluidSolution {
            rho,
            stable,
            iteration_time: demand.iteration_time,
            stage_mass: demand.stage_mass,
            batch_size: demand.batch_size,
            memory_required: demand.memory,
            memory_feasible,
            limits_feasible,
            binding,
            demand_throughput,
            throughput: optimal.throughput,
            optimal,
        })
    }

    /// The largest total arrival rate, with the types' rates kept in proportion, that is both stable and
    /// memory-feasible: with mix `p_j = λ_j / Σλ`, `A = Σ p_j S_j` and `B = d1 Σ p_j w_j`, `M*(Λ) = d0 Λ A / (1 −
    /// Λ B) ≤ M` gives `Λ_max = M / (d0 A + M B)` (which also satisfies `Λ_max B < 1`).
    ///
    /// Under `max_num_seqs` S and `max_num_batched_tokens` Bt the same form applies with `C = Σ p_j K_j` and
    /// `W = Σ p_j w_j` in place of A: `Λ ≤ S / (d0 C + S B)` and `Λ ≤ Bt / (d0 W + Bt B)`; the smallest bound
    /// is the largest sustainable rate, and [`Self::max_rate_binding`] names it.
    pub fn max_rate(&self) -> Result<f64> {
        Ok(self.max_rate_binding()?.0)
    }

    /// [`Self::max_rate`] with the constraint that sets it.
    pub fn max_rate_binding(&self) -> Result<(f64, Binding)> {
        self.validate()?;
        let terms = self.terms();
        let total: f64 = terms.iter().map(|t| t.rate).sum();
        let mix = |f: &dyn Fn(&TypeTerms) -> f64| -> f64 { terms.iter().map(|t| t.rate / total * f(t)).sum() };
        let a = mix(&|t| t.kv_sum);
        let c = mix(&|t| t.iterations);
        let w = mix(&|t| t.work);
        let b = mix(&|t| t.cost);
        let memory = (self.capacity_tokens / (self.d0 * a + self.capacity_tokens * b), Binding::Memory);
        Ok(match self.tightest_limit(c, w, b) {
            Some(limit) if limit.0 < memory.0 => limit,
            _ => memory,
        })
    }

    /// The same model with every rate multiplied by `factor` (the mix kept), for sweeps.
    pub fn scaled(&self, factor: f64) -> Result<Self> {
        check_positive("fluid model: rate factor", factor)?;
        let types = self.types.iter().map(|t| RequestType { rate: t.rate * factor, ..*t }).collect();
        let model = FluidModel { types, ..self.clone() };
        model.validate()?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_types(scale: f64) -> FluidModel {
        let types = vec![
            RequestType { prompt_len: 50, output_len: 156, rate: 167.0 * scale },
            RequestType { prompt_len: 100, output_len: 171, rate: 31.0 * scale },
        ];
        FluidModel::new(types, 0.01, 8e-5, 118_784.0).unwrap().with_block_size(16).unwrap()
    }

    #[test]
    fn max_rate_names_the_binding_limit() {
        let free = two_types(0.25);
        let (rate, binding) = free.max_rate_binding().unwrap();
        assert_eq!(binding, Binding::Memory);
        // A concurrency cap below the memory-limited batch binds instead, at N(Λ) = max_num_seqs exactly.
        let capped = free.clone().with_limits(128, 1 << 20).unwrap();
        let (rate_capped, binding) = capped.max_rate_binding().unwrap();
        assert_eq!(binding, Binding::MaxNumSeqs);
        assert!(rate_capped < rate);
        let at_cap = capped.scaled(rate_capped / capped.types.iter().map(|t| t.rate).sum::<f64>()).unwrap();
        let sol = at_cap.solve().unwrap();
        assert!((sol.batch_size - 128.0).abs() < 1e-6, "{}", sol.batch_size);
        // A token budget below the per-iteration demand binds likewise.
        let tokens = free.with_limits(1 << 20, 512).unwrap();
        assert_eq!(tokens.max_rate_binding().unwrap().1, Binding::MaxNumBatchedTokens);
    }

    #[test]
    fn overload_optimum_respects_every_limit() {
        let m = two_types(1.0).with_limits(256, 8192).unwrap();
        let sol = m.solve().unwrap();
        assert!(!sol.limits_feasible);
        assert_eq!(sol.binding, Some(Binding::MaxNumSeqs));
        assert!(sol.optimal.batch_size <= 256.0 + 1e-9);
        assert!(sol.optimal.memory <= m.capacity_tokens + 1e-6);
        // Light load: the whole demand is served and nothing binds.
        let light = two_types(0.05).with_limits(256, 8192).unwrap().solve().unwrap();
        assert!(light.limits_feasible);
        assert_eq!(light.binding, None);
        assert_eq!(light.throughput, light.demand_throughput);
    }

    #[test]
    fn attention_term_makes_long_requests_cost_more() {
        let linear = two_types(0.2);
        let with = linear.clone().with_attention(2.8e-7).unwrap();
        let (a, b) = (linear.solve().unwrap(), with.solve().unwrap());
        // Each decode reads its context: the load and the equilibrium iteration time grow, the sustainable rate
        // shrinks, and ρ is exactly d1 Σ λ w + d2 Σ λ R.
        assert!(b.rho > a.rho && b.iteration_time > a.iteration_time);
        assert!(with.max_rate().unwrap() < linear.max_rate().unwrap());
        let r = |l: f64, k: f64| (k - 1.0) * l + (k - 1.0) * (k - 2.0) / 2.0;
        let extra: f64 =
            with.types.iter().map(|t| t.rate * 2.8e-7 * r(f64::from(t.prompt_len), f64::from(t.output_len))).sum();
        assert!((b.rho - a.rho - extra).abs() < 1e-12);
        assert!(linear.clone().with_attention(-1.0).is_err());
    }

    #[test]
    fn block_rounded_kv_sum_matches_a_loop() {
        for (l, k, b) in [(1u32, 1u32, 16u32), (5, 40, 16), (33, 100, 16), (16, 17, 16), (7, 9, 1), (100, 3, 4)] {
            let looped: f64 = (0..k).map(|i| f64::from((l + i).div_ceil(b) * b)).sum();
            assert_eq!(kv_token_iterations(f64::from(l), f64::from(k), b), looped, "l={l} k={k} b={b}");
        }
    }
}
