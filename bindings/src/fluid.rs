//! `fluidsched._core.FluidModel` and `fluidsched._core.plan`: the fluid model and the WAIT thresholds.

use fluidsched_core::TimeModel;
use fluidsched_core::fluid::{FluidModel, FluidPoint, FluidSolution};
use fluidsched_core::plan::plan;
use fluidsched_core::policies::PolicyContext;
use fluidsched_core::sim::{policy_context, validate_workload};
use fluidsched_core::workload::RequestType;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::guard;
use crate::options::{Int, TypeArg, policy_options, scheduler_config};
use crate::sim::PyWorkload;
use crate::time_model::num_blocks_or_default;

fn to_types(types: Vec<(u32, u32, f64)>) -> Vec<RequestType> {
    types.into_iter().map(|(prompt_len, output_len, rate)| RequestType { prompt_len, output_len, rate }).collect()
}

fn point_dict<'py>(py: Python<'py>, p: &FluidPoint) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("served_rates", p.served_rates.clone())?;
    d.set_item("iteration_time_s", p.iteration_time)?;
    d.set_item("stage_mass", p.stage_mass.clone())?;
    d.set_item("batch_size", p.batch_size)?;
    d.set_item("memory_tokens", p.memory)?;
    d.set_item("throughput_tokens_per_s", p.throughput)?;
    Ok(d)
}

fn solution_dict<'py>(py: Python<'py>, s: &FluidSolution) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("rho", s.rho)?;
    d.set_item("stable", s.stable)?;
    d.set_item("iteration_time_s", s.iteration_time)?;
    d.set_item("stage_mass", s.stage_mass.clone())?;
    d.set_item("batch_size", s.batch_size)?;
    d.set_item("memory_required_tokens", s.memory_required)?;
    d.set_item("memory_feasible", s.memory_feasible)?;
    d.set_item("limits_feasible", s.limits_feasible)?;
    d.set_item("binding_constraint", s.binding.map(|b| b.name()))?;
    d.set_item("demand_throughput_tokens_per_s", s.demand_throughput)?;
    d.set_item("throughput_tokens_per_s", s.throughput)?;
    d.set_item("optimal", point_dict(py, &s.optimal)?)?;
    Ok(d)
}

/// The paper's fluid model: request types `(prompt_len, output_len, rate)`, a linear iteration time
/// `d0 + d1 × tokens`, and a KV capacity in tokens.
#[pyclass(module = "fluidsched._core", name = "FluidModel", frozen)]
pub struct PyFluidModel {
    inner: FluidModel,
}

#[pymethods]
impl PyFluidModel {
    #[new]
    #[pyo3(signature = (types, d0, d1, kv_capacity, *, block_size = Int(1)))]
    fn new(types: Vec<TypeArg>, d0: f64, d1: f64, kv_capacity: f64, block_size: Int<u32>) -> PyResult<Self> {
        let types = types.into_iter().map(|(a, b, r)| (a.0, b.0, r)).collect::<Vec<_>>();
        let block_size = block_size.0;
        guard(|| {
            Ok(PyFluidModel {
                inner: FluidModel::new(to_types(types), d0, d1, kv_capacity)?.with_block_size(block_size)?,
            })
        })
    }

    /// The equilibrium: rho, stability, T*, per-stage mass, N*, M*, feasibility, throughput, and the
    /// memory-limited optimum (`optimal`) when demand cannot all be served.
    fn solve<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = guard(|| self.inner.solve())?;
        solution_dict(py, &s)
    }

    /// Largest total arrival rate (same type mix) that is stable and memory-feasible, requests per second.
    fn max_rate(&self) -> PyResult<f64> {
        guard(|| self.inner.max_rate())
    }

    fn __repr__(&self) -> String {
        format!(
            "FluidModel(types={}, d0={}, d1={}, kv_capacity={})",
            self.inner.types.len(),
            self.inner.d0,
            self.inner.d1,
            self.inner.capacity_tokens
        )
    }
}

/// Fluid analysis plus the WAIT and Nested WAIT thresholds a simulation would use, for explicit `types` or a
/// `workload` (types then come from its type labels, or from binning its output lengths).
#[pyfunction(name = "plan")]
#[pyo3(signature = (
    *, types = None, workload = None, time_model = "llama2-7b-a100", d0 = None, d1 = None, num_blocks = None,
    block_size = Int(16), watermark = 0.01, max_num_seqs = Int(256), max_num_batched_tokens = Int(8192), wait_options = None,
    nested_options = None
))]
#[allow(clippy::too_many_arguments)]
pub fn py_plan<'py>(
    py: Python<'py>,
    types: Option<Vec<TypeArg>>,
    workload: Option<PyRef<'py, PyWorkload>>,
    time_model: &str,
    d0: Option<f64>,
    d1: Option<f64>,
    num_blocks: Option<Int<u32>>,
    block_size: Int<u32>,
    watermark: f64,
    max_num_seqs: Int<u32>,
    max_num_batched_tokens: Int<u32>,
    wait_options: Option<&Bound<'py, PyDict>>,
    nested_options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let types = types.map(|t| t.into_iter().map(|(a, b, r)| (a.0, b.0, r)).collect::<Vec<_>>());
    let num_blocks = num_blocks.map(|n| n.0);
    let block_size = block_size.0;
    let max_num_seqs = max_num_seqs.0;
    let max_num_batched_tokens = max_num_batched_tokens.0;
    let wait_options = policy_options(wait_options)?;
    let nested_options = policy_options(nested_options)?;
    let p = guard(|| {
        let tm = TimeModel::from_name(time_model, d0, d1)?;
        let num_blocks = num_blocks_or_default(&tm, num_blocks, block_size)?;
        let config = scheduler_config(num_blocks, block_size, watermark, max_num_seqs, max_num_batched_tokens, true)?;
        let ctx = match (types, workload.as_ref()) {
            (Some(t), None) => {
                let types = to_types(t);
                let (d0, d1) = fluidsched_core::fluid::exact_time::planning_line(&tm, &types, &config);
                PolicyContext {
                    config,
                    d0,
                    d1,
                    arrival_rate: Some(types.iter().map(|t| t.rate).sum()),
                    types,
                    prompt_lengths: Vec::new(),
                    output_lengths: Vec::new(),
                }
            }
            (None, Some(w)) => {
                validate_workload(&w.inner, &config)?;
                policy_context(&w.inner, config, &tm)
            }
            _ => return Err(fluidsched_core::Error::config("plan needs exactly one of types or workload")),
        };
        plan(&ctx, &tm, wait_options, nested_options)
    })?;
    let d = PyDict::new(py);
    let types: Vec<(u32, u32, f64)> = p.types.iter().map(|t| (t.prompt_len, t.output_len, t.rate)).collect();
    d.set_item("types", types)?;
    d.set_item("d0", p.d0)?;
    d.set_item("d1", p.d1)?;
    d.set_item("fluid_time_model", p.fluid_time)?;
    d.set_item("fluid_exact_time", p.exact_time)?;
    d.set_item("capacity_tokens", p.capacity_tokens)?;
    d.set_item("fluid", solution_dict(py, &p.fluid)?)?;
    d.set_item("max_rate_per_s", p.max_rate)?;
    d.set_item("max_rate_binding", p.max_rate_binding.name())?;
    d.set_item("mix_throughput_tokens_per_s", p.mix_throughput)?;
    d.set_item("wait_thresholds", p.wait_thresholds.clone())?;
    if let Some(w) = &p.wait_plan {
        d.set_item("wait_target_iteration_time_s", w.target_iteration_time)?;
        d.set_item("wait_overloaded", w.overloaded)?;
    }
    let n = &p.nested;
    d.set_item("nested_segments", n.boundaries.clone())?;
    d.set_item("nested_wait_thresholds", n.thresholds.clone())?;
    d.set_item("nested_caps", n.caps.clone())?;
    d.set_item("nested_buffer_tokens", n.buffer_tokens)?;
    d.set_item("nested_target_iteration_time_s", n.target_iteration_time)?;
    d.set_item("nested_overloaded", n.overloaded)?;
    Ok(d)
}
