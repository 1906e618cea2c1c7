//! `fluidsched plan`: what the fluid model says about a workload, and the thresholds WAIT and Nested WAIT would
//! use for it, computed by building the very policies a simulation would build.

use crate::TimeModel;
use crate::error::Result;
use crate::fluid::{Binding, FluidModel, FluidSolution, MeanIteration, SegmentPlan, ThresholdPlan};
use crate::policies::{NestedWaitPolicy, PolicyContext, WaitPolicy};
use crate::policy::{OptionValue, PolicyOptions};
use crate::time_model::BatchShape;
use crate::workload::RequestType;

/// The fluid analysis of a workload plus the thresholds both WAIT policies would use.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The request types analysed (given, or derived from a trace by output-length binning).
    pub types: Vec<RequestType>,
    /// Linearised iteration time: seconds per iteration.
    pub d0: f64,
    /// Linearised iteration time: seconds per token.
    pub d1: f64,
    /// The time model's attention linearisation `(d0, d1, d2)`: `d0 + d1 · tokens + d2 · KV tokens read`.
    pub fluid_time: (f64, f64, f64),
    /// Whether the fluid analysis priced iterations with the time model itself (profiled presets: the
    /// equilibrium, optimum and largest rate at the mean iteration the fluid runs,
    /// [`crate::fluid::exact_time`]) rather than with `fluid_time` (the linear model, where both agree).
    pub exact_time: bool,
    /// KV capacity used by the fluid model, tokens (blocks above the watermark × block size).
    pub capacity_tokens: f64,
    /// The fluid equilibrium at the given rates.
    pub fluid: FluidSolution,
    /// Largest total arrival rate (same type mix) that is stable and fits memory, `max_num_seqs` and
    /// `max_num_batched_tokens`, requests per second.
    pub max_rate: f64,
    /// The constraint that sets `max_rate`.
    pub max_rate_binding: Binding,
    /// Output tokens per second when the arrival mix is kept (what WAIT, which drops no type, can reach):
    /// `min(Σλ, max_rate) · Σ_j p_j K_j`.
    pub mix_throughput: f64,
    /// WAIT's per-type thresholds.
    pub wait_thresholds: Vec<u32>,
    /// How WAIT's thresholds were chosen (None if they were given explicitly).
    pub wait_plan: Option<ThresholdPlan>,
    /// Nested WAIT's segments, thresholds and safety buffer.
    pub nested: SegmentPlan,
}

/// Analyses the workload described by `ctx` (types, rates, capacity, limits) under `time_model`. The fluid
/// analysis (equilibrium, optimum, largest sustainable rate) prices iterations with the time model itself at
/// the fluid's mean iteration when it is a profiled preset ([`FluidModel::solve_under`],
/// [`FluidModel::max_rate_under`]), and with the linear model directly otherwise; the thresholds come from the
/// policies exactly as a simulation builds them (`ctx.d0`, `ctx.d1`). `wait_options` and `nested_options` are
/// the options the policies would get in a simulation.
pub fn plan(
    ctx: &PolicyContext,
    time_model: &TimeModel,
    wait_options: Vec<(String, OptionValue)>,
    nested_options: Vec<(String, OptionValue)>,
) -> Result<Plan> {
    let cfg = &ctx.config;
    let capacity_tokens = ctx.config.usable_tokens() as f64;
    let fluid_time = time_model.attention_linearization();
    let (d0, d1, d2) = fluid_time;
    let model = FluidModel::new(ctx.types.clone(), d0, d1, capacity_tokens)?
        .with_attention(d2)?
        .with_block_size(cfg.block_size)?
        .with_limits(cfg.max_num_seqs, cfg.max_num_batched_tokens)?;
    let exact_time = !matches!(time_model, TimeModel::Linear { .. });
    let (fluid, (max_rate, max_rate_binding)) = if exact_time {
        let batch = |shape: &BatchShape| time_model.iteration_time(shape);
        let time = |m: &MeanIteration| m.expected_time(&batch);
        (model.solve_under(&time)?, model.max_rate_under(&time))
    } else {
        (model.solve()?, model.max_rate_binding()?)
    };
    let total_rate: f64 = ctx.types.iter().map(|t| t.rate).sum();
    let mean_output: f64 = ctx.types.iter().map(|t| t.rate / total_rate * f64::from(t.output_len)).sum();
    let mix_throughput = total_rate.min(max_rate) * mean_output;
    let wait = WaitPolicy::from_options(PolicyOptions::new("wait", wait_options), ctx)?;
    let nested = NestedWaitPolicy::from_options(PolicyOptions::new("nested-wait", nested_options), ctx)?;
    Ok(Plan {
        types: ctx.types.clone(),
        d0: ctx.d0,
        d1: ctx.d1,
        fluid_time,
        exact_time,
        capacity_tokens,
        fluid,
        max_rate,
        max_rate_binding,
        mix_throughput,
        wait_thresholds: wait.config().thresholds.clone(),
        wait_plan: wait.plan().cloned(),
        nested: nested.plan().clone(),
    })
}
