//! `fluidsched._core.AdmissionController`: a policy's admission decision for an engine that owns its memory
//! (the vLLM adapter in `fluidsched.vllm`). Conversion only; the behaviour is `fluidsched_core::gate`.

use std::sync::{Mutex, MutexGuard};

use fluidsched_core::gate::{AdmissionController, AdmissionView};
use fluidsched_core::policies::PolicyContext;
use fluidsched_core::policy::PolicyOptions;
use fluidsched_core::workload::RequestType;
use fluidsched_core::{Error, TimeModel};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::guard;
use crate::options::{Int, TypeArg, ints, policy_options as policy_options_from, scheduler_config};

/// A policy's admission decision, keyed by the engine's request ids, updated incrementally and asked once per
/// step. Every method takes an internal lock.
#[pyclass(module = "fluidsched._core", name = "AdmissionController")]
pub struct PyAdmissionController {
    inner: Mutex<AdmissionController>,
}

impl PyAdmissionController {
    fn lock(&self) -> Result<MutexGuard<'_, AdmissionController>, Error> {
        self.inner.lock().map_err(|_| Error::InvalidState("controller poisoned by an earlier internal error".into()))
    }
}

#[pymethods]
impl PyAdmissionController {
    #[new]
    #[pyo3(signature = (
        policy = "wait", *, num_blocks, block_size = Int(16), watermark = 0.0, max_num_seqs = Int(256),
        max_num_batched_tokens = Int(8192), policy_options = None, time_model = "llama2-7b-a100", d0 = None, d1 = None,
        types = None, prompt_lengths = None, output_lengths = None, arrival_rate = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        policy: &str,
        num_blocks: Int<u32>,
        block_size: Int<u32>,
        watermark: f64,
        max_num_seqs: Int<u32>,
        max_num_batched_tokens: Int<u32>,
        policy_options: Option<&Bound<'_, PyDict>>,
        time_model: &str,
        d0: Option<f64>,
        d1: Option<f64>,
        types: Option<Vec<TypeArg>>,
        prompt_lengths: Option<Vec<Int<u32>>>,
        output_lengths: Option<Vec<Int<u32>>>,
        arrival_rate: Option<f64>,
    ) -> PyResult<Self> {
        let types = types.map(|t| t.into_iter().map(|(a, b, r)| (a.0, b.0, r)).collect::<Vec<_>>());
        let prompt_lengths = prompt_lengths.map(ints).unwrap_or_default();
        let output_lengths = output_lengths.map(ints).unwrap_or_default();
        let options = policy_options_from(policy_options)?;
        guard(|| {
            let config = scheduler_config(
                num_blocks.0,
                block_size.0,
                watermark,
                max_num_seqs.0,
                max_num_batched_tokens.0,
                true,
            )?;
            let tm = TimeModel::from_name(time_model, d0, d1)?;
            let types: Vec<RequestType> = types
                .unwrap_or_default()
                .into_iter()
                .map(|(prompt_len, output_len, rate)| RequestType { prompt_len, output_len, rate })
                .collect();
            // The line a simulation plans with: from the types, or from the length sample binned as a trace's.
            let line_types = match (types.is_empty(), arrival_rate) {
                (true, Some(rate)) if !output_lengths.is_empty() => fluidsched_core::fluid::types_from_lengths(
                    &prompt_lengths,
                    &output_lengths,
                    rate,
                    fluidsched_core::sim::TRACE_TYPE_BINS,
                )
                .unwrap_or_default(),
                _ => types.clone(),
            };
            let (d0, d1) = fluidsched_core::fluid::exact_time::planning_line(&tm, &line_types, &config);
            let ctx = PolicyContext { config, d0, d1, types, prompt_lengths, output_lengths, arrival_rate };
            let controller = AdmissionController::new(policy, PolicyOptions::new(policy, options), &ctx)?;
            Ok(PyAdmissionController { inner: Mutex::new(controller) })
        })
    }

    /// Name of the policy.
    #[getter]
    fn policy(&self) -> PyResult<&'static str> {
        guard(|| Ok(self.lock()?.policy()))
    }

    /// Requests waiting to start.
    #[getter]
    fn num_waiting(&self) -> PyResult<usize> {
        guard(|| Ok(self.lock()?.num_waiting()))
    }

    /// Requests started and not finished (paused ones included).
    #[getter]
    fn num_running(&self) -> PyResult<usize> {
        guard(|| Ok(self.lock()?.num_running()))
    }

    /// Requests paused at a segment boundary.
    #[getter]
    fn num_paused(&self) -> PyResult<usize> {
        guard(|| Ok(self.lock()?.num_paused()))
    }

    /// Per-type (WAIT) or per-segment (Nested WAIT) thresholds in use.
    #[getter]
    fn thresholds(&self) -> PyResult<Vec<u32>> {
        guard(|| Ok(self.lock()?.thresholds()))
    }

    /// Correction applied to the time model (measured / predicted iteration time).
    #[getter]
    fn time_correction(&self) -> PyResult<f64> {
        guard(|| Ok(self.lock()?.time_correction()))
    }

    /// A new waiting request.
    #[pyo3(signature = (request_id, prompt_len, *, arrival, output_len_hint = None, type_id = None))]
    fn add_request(
        &self,
        request_id: Int<u64>,
        prompt_len: Int<u32>,
        arrival: f64,
        output_len_hint: Option<Int<u32>>,
        type_id: Option<Int<u32>>,
    ) -> PyResult<()> {
        guard(|| {
            self.lock()?.add_request(
                request_id.0,
                arrival,
                prompt_len.0,
                output_len_hint.map(|x| x.0),
                type_id.map(|x| x.0),
            )
        })
    }

    /// The engine started waiting request `request_id`.
    #[pyo3(signature = (request_id, num_output_tokens = Int(0)))]
    fn on_admitted(&self, request_id: Int<u64>, num_output_tokens: Int<u32>) -> PyResult<()> {
        guard(|| self.lock()?.on_admitted(request_id.0, num_output_tokens.0))
    }

    /// The engine put `request_id` back at the head of the waiting queue (preempted, or skipped).
    fn requeue(&self, request_id: Int<u64>) -> PyResult<()> {
        guard(|| self.lock()?.requeue(request_id.0))
    }

    /// `request_id` finished or was aborted; False if it was not held.
    fn finish(&self, request_id: Int<u64>) -> PyResult<bool> {
        guard(|| Ok(self.lock()?.finish(request_id.0)))
    }

    /// Output progress of running requests; returns the ids that must pause now.
    fn on_outputs(&self, request_ids: Vec<Int<u64>>, num_output_tokens: Vec<Int<u32>>, now: f64) -> PyResult<Vec<u64>> {
        let ids = ints(request_ids);
        let outs = ints(num_output_tokens);
        guard(|| {
            if ids.len() != outs.len() {
                return Err(Error::config("on_outputs: request_ids and num_output_tokens differ in length"));
            }
            Ok(self.lock()?.on_outputs(&ids, &outs, now))
        })
    }

    /// Whether the policy reads output progress (call `on_outputs` every step).
    #[getter]
    fn wants_outputs(&self) -> PyResult<bool> {
        guard(|| Ok(self.lock()?.wants_outputs()))
    }

    /// Whether `request_id` is paused at a segment boundary.
    fn is_paused(&self, request_id: Int<u64>) -> PyResult<bool> {
        guard(|| Ok(self.lock()?.is_paused(request_id.0)))
    }

    /// One measured iteration; True if the thresholds were re-planned.
    fn observe_iteration(&self, seconds: f64, num_tokens: Int<u32>) -> PyResult<bool> {
        guard(|| Ok(self.lock()?.observe_iteration(seconds, num_tokens.0)))
    }

    /// The earliest future deadline that lets a waiting or paused request in.
    fn next_wakeup(&self, now: f64) -> PyResult<Option<f64>> {
        guard(|| Ok(self.lock()?.next_wakeup(now)))
    }

    /// This step's decision: `(admit_all, admit_ids, resume_ids)`.
    #[pyo3(signature = (*, now, num_running, num_free_blocks, max_num_seqs, stalled = false))]
    fn decide(
        &self,
        now: f64,
        num_running: Int<u32>,
        num_free_blocks: Int<u32>,
        max_num_seqs: Int<u32>,
        stalled: bool,
    ) -> PyResult<(bool, Vec<u64>, Vec<u64>)> {
        guard(|| {
            if !now.is_finite() {
                return Err(Error::config(format!("now must be finite, got {now}")));
            }
            let view = AdmissionView {
                now,
                num_running: num_running.0,
                num_free_blocks: num_free_blocks.0,
                max_num_seqs: max_num_seqs.0,
                stalled,
            };
            let mut c = self.lock()?;
            let d = c.decide(&view);
            Ok((d.admit_all, d.admit.clone(), d.resume.clone()))
        })
    }

    fn __repr__(&self) -> PyResult<String> {
        guard(|| {
            let c = self.lock()?;
            Ok(format!(
                "AdmissionController(policy={:?}, waiting={}, running={}, paused={}, thresholds={:?})",
                c.policy(),
                c.num_waiting(),
                c.num_running(),
                c.num_paused(),
                c.thresholds()
            ))
        })
    }
}
