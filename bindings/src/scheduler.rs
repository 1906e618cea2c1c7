//! `fluidsched._core.Scheduler`: the step API for drivers written in Python (the vLLM adapter, tests).

use std::sync::{Mutex, MutexGuard};

use fluidsched_core::policies::{PolicyContext, build_policy};
use fluidsched_core::policy::PolicyOptions;
use fluidsched_core::request::{NewRequest, RequestState};
use fluidsched_core::workload::RequestType;
use fluidsched_core::{Error, Scheduler};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::guard;
use crate::errors::internal_error;
use crate::options::{Int, TypeArg, ints, policy_options as policy_options_from, scheduler_config};
use crate::step::{PyStep, PyStepOutcome};

/// A policy plus KV block bookkeeping, driven once per model iteration.
///
/// Thread-safety: every method takes an internal lock, so sharing one scheduler between threads is safe but
/// serialised.
#[pyclass(module = "fluidsched._core", name = "Scheduler")]
pub struct PyScheduler {
    inner: Mutex<Scheduler>,
}

impl PyScheduler {
    fn lock(&self) -> Result<MutexGuard<'_, Scheduler>, Error> {
        self.inner.lock().map_err(|_| Error::InvalidState("scheduler poisoned by an earlier internal error".into()))
    }
}

#[pymethods]
impl PyScheduler {
    #[new]
    #[pyo3(signature = (
        policy = "vllm", *, num_blocks = Int(7424), block_size = Int(16), watermark = 0.01, max_num_seqs = Int(256),
        max_num_batched_tokens = Int(8192), enable_chunked_prefill = true, policy_options = None,
        d0 = 0.0, d1 = 0.0, types = None, output_lengths = None, arrival_rate = None, prompt_lengths = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        policy: &str,
        num_blocks: Int<u32>,
        block_size: Int<u32>,
        watermark: f64,
        max_num_seqs: Int<u32>,
        max_num_batched_tokens: Int<u32>,
        enable_chunked_prefill: bool,
        policy_options: Option<&Bound<'_, PyDict>>,
        d0: f64,
        d1: f64,
        types: Option<Vec<TypeArg>>,
        output_lengths: Option<Vec<Int<u32>>>,
        arrival_rate: Option<f64>,
        prompt_lengths: Option<Vec<Int<u32>>>,
    ) -> PyResult<Self> {
        let num_blocks = num_blocks.0;
        let block_size = block_size.0;
        let max_num_seqs = max_num_seqs.0;
        let max_num_batched_tokens = max_num_batched_tokens.0;
        let types = types.map(|t| t.into_iter().map(|(a, b, r)| (a.0, b.0, r)).collect::<Vec<_>>());
        let output_lengths = output_lengths.map(ints);
        let prompt_lengths = prompt_lengths.map(ints);
        let options = policy_options_from(policy_options)?;
        guard(|| {
            let config = scheduler_config(
                num_blocks,
                block_size,
                watermark,
                max_num_seqs,
                max_num_batched_tokens,
                enable_chunked_prefill,
            )?;
            let ctx = PolicyContext {
                config,
                d0,
                d1,
                types: types
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(prompt_len, output_len, rate)| RequestType { prompt_len, output_len, rate })
                    .collect(),
                prompt_lengths: prompt_lengths.unwrap_or_default(),
                output_lengths: output_lengths.unwrap_or_default(),
                arrival_rate,
            };
            let policy = build_policy(policy, PolicyOptions::new(policy, options), &ctx)?;
            Ok(PyScheduler { inner: Mutex::new(Scheduler::new(config, policy)?) })
        })
    }

    /// Name of the policy.
    #[getter]
    fn policy(&self) -> PyResult<&'static str> {
        guard(|| Ok(self.lock()?.policy_name()))
    }

    /// Whether the policy reads output lengths (pass `output_len_hint` for it).
    #[getter]
    fn needs_output_lengths(&self) -> PyResult<bool> {
        guard(|| Ok(self.lock()?.policy_needs_output_lengths()))
    }

    /// Adds a waiting request.
    #[pyo3(signature = (request_id, prompt_len, output_len = None, *, output_len_hint = None, type_id = None, arrival = 0.0))]
    fn add_request(
        &self,
        request_id: Int<u64>,
        prompt_len: Int<u32>,
        output_len: Option<Int<u32>>,
        output_len_hint: Option<Int<u32>>,
        type_id: Option<Int<u32>>,
        arrival: f64,
    ) -> PyResult<()> {
        let request_id = request_id.0;
        let prompt_len = prompt_len.0;
        let output_len = output_len.map(|x| x.0);
        let output_len_hint = output_len_hint.map(|x| x.0);
        let type_id = type_id.map(|x| x.0);
        guard(|| {
            self.lock()?.add_request(NewRequest {
                id: request_id,
                prompt_len,
                output_len,
                output_len_hint,
                type_id,
                arrival,
            })
        })
    }

    /// Builds the next iteration's batch at time `now` (seconds).
    #[pyo3(signature = (now = 0.0))]
    fn schedule(&self, now: f64) -> PyResult<PyStep> {
        guard(|| {
            let mut s = self.lock()?;
            Ok(PyStep::new(s.schedule(now)?))
        })
    }

    /// Applies the pending step; `finished` lists ids the driver saw stop (e.g. at an end-of-sequence token).
    #[pyo3(signature = (finished = Vec::new()))]
    fn complete_step(&self, finished: Vec<Int<u64>>) -> PyResult<PyStepOutcome> {
        let finished = ints(finished);
        guard(|| {
            let mut s = self.lock()?;
            Ok(PyStepOutcome::new(s.complete_step(&finished)?))
        })
    }

    /// Removes a waiting or running request, freeing its blocks.
    fn abort_request(&self, request_id: Int<u64>) -> PyResult<()> {
        let request_id = request_id.0;
        guard(|| self.lock()?.abort_request(request_id))
    }

    /// The scheduler's view of one request, as a dict.
    fn get_request<'py>(&self, py: Python<'py>, request_id: Int<u64>) -> PyResult<Bound<'py, PyDict>> {
        let Int(request_id) = request_id;
        let (id, prompt, state, computed, output, preemptions, blocks, type_id, arrival) = guard(|| {
            let s = self.lock()?;
            let r = s.request(request_id)?;
            let state = match r.state {
                RequestState::Waiting => "waiting",
                RequestState::Running => "running",
                RequestState::Finished => "finished",
            };
            Ok((
                r.id,
                r.prompt_len,
                state,
                r.num_computed_tokens,
                r.num_output_tokens,
                r.num_preemptions,
                r.num_blocks(),
                r.type_id,
                r.arrival,
            ))
        })?;
        let d = PyDict::new(py);
        d.set_item("request_id", id)?;
        d.set_item("prompt_len", prompt)?;
        d.set_item("state", state)?;
        d.set_item("num_computed_tokens", computed)?;
        d.set_item("num_output_tokens", output)?;
        d.set_item("num_preemptions", preemptions)?;
        d.set_item("num_blocks", blocks)?;
        d.set_item("type_id", type_id)?;
        d.set_item("arrival", arrival)?;
        Ok(d)
    }

    /// Requests waiting for admission.
    #[getter]
    fn num_waiting(&self) -> PyResult<usize> {
        guard(|| Ok(self.lock()?.num_waiting()))
    }

    /// Requests admitted and not finished.
    #[getter]
    fn num_running(&self) -> PyResult<usize> {
        guard(|| Ok(self.lock()?.num_running()))
    }

    /// Requests held (waiting + running).
    #[getter]
    fn num_unfinished(&self) -> PyResult<usize> {
        guard(|| Ok(self.lock()?.num_unfinished()))
    }

    /// Free KV blocks.
    #[getter]
    fn num_free_blocks(&self) -> PyResult<u32> {
        guard(|| Ok(self.lock()?.num_free_blocks()))
    }

    /// KV blocks in use.
    #[getter]
    fn num_used_blocks(&self) -> PyResult<u32> {
        guard(|| Ok(self.lock()?.num_used_blocks()))
    }

    /// Total KV blocks.
    #[getter]
    fn num_blocks(&self) -> PyResult<u32> {
        guard(|| Ok(self.lock()?.state().pool().num_blocks()))
    }

    /// Tokens per KV block.
    #[getter]
    fn block_size(&self) -> PyResult<u32> {
        guard(|| Ok(self.lock()?.state().pool().block_size()))
    }

    /// Blocks kept free at admission.
    #[getter]
    fn watermark_blocks(&self) -> PyResult<u32> {
        guard(|| Ok(self.lock()?.state().pool().watermark_blocks()))
    }

    /// Ids of the running requests, oldest admission first.
    #[getter]
    fn running_ids(&self) -> PyResult<Vec<u64>> {
        guard(|| {
            let s = self.lock()?;
            Ok(s.state().running().iter().map(|&slot| s.state().request(slot).id).collect())
        })
    }

    /// The policy's next wake-up time, if it has one (a liveness deadline).
    fn next_wakeup(&self) -> PyResult<Option<f64>> {
        guard(|| Ok(self.lock()?.next_wakeup()))
    }

    /// Raises `InternalError` if any invariant is broken (blocks owned twice, counts off, limits exceeded).
    fn check_invariants(&self) -> PyResult<()> {
        let result = guard(|| Ok(self.lock()?.check_invariants()))?;
        result.map_err(|e| internal_error(format!("scheduler invariant violated: {e}")))
    }

    fn __repr__(&self) -> PyResult<String> {
        guard(|| {
            let s = self.lock()?;
            Ok(format!(
                "Scheduler(policy={:?}, waiting={}, running={}, used_blocks={}/{})",
                s.policy_name(),
                s.num_waiting(),
                s.num_running(),
                s.num_used_blocks(),
                s.state().pool().num_blocks()
            ))
        })
    }
}
