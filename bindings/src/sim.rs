//! `fluidsched._core.Workload` and `fluidsched._core.Simulation`: workloads and the discrete-event simulator.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fluidsched_core::policies::build_policy;
use fluidsched_core::policy::PolicyOptions;
use fluidsched_core::sim::{SimConfig, Simulator, policy_context, served_workload};
use fluidsched_core::workload::{
    ArrivalProcess, ModelLen, OverLength, RequestSpec, RequestType, TraceData, TraceOptions, Workload, read_trace_file,
};
use fluidsched_core::{Error, TimeModel};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::guard;
use crate::options::{
    Int, TypeArg, ints, max_model_len as max_model_len_from, policy_options as policy_options_from, scheduler_config,
};
use crate::time_model::num_blocks_or_default;
use crate::trace_args::{column_map, optional_str};

fn arrival_process(kind: &str, rate: f64, cv: f64) -> Result<ArrivalProcess, Error> {
    match kind {
        "poisson" => ArrivalProcess::poisson(rate),
        "gamma" => ArrivalProcess::gamma(rate, cv),
        other => Err(Error::config(format!("unknown arrival process {other:?}; use \"poisson\" or \"gamma\""))),
    }
}

/// A list of requests (arrival time, prompt and output lengths, optional type) sorted by arrival.
#[pyclass(module = "fluidsched._core", name = "Workload", frozen)]
pub struct PyWorkload {
    pub(crate) inner: Workload,
}

#[pymethods]
impl PyWorkload {
    /// Reads a trace file (Vidur replay, Azure 2023, BurstGPT, Vidur lengths, LMSYS word counts or Mooncake
    /// JSONL; detected from the content), or the columns `columns` names. Timed traces keep their arrivals
    /// (rescaled to `rate` req/s if given); length-only traces need `rate` and get seeded Poisson or
    /// Gamma(`rate`, `cv`) arrivals. `trace_model` / `trace_log_type` keep only BurstGPT rows of that `Model` /
    /// `Log Type`.
    #[staticmethod]
    #[pyo3(signature = (
        path, *, rate = None, num_requests = None, arrival = "poisson", cv = 1.0, seed = Int(0),
        words_to_tokens = 1.0, lengths_are_words = false, trace_model = None, trace_log_type = None, columns = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn from_trace(
        py: Python<'_>,
        path: PathBuf,
        rate: Option<f64>,
        num_requests: Option<Int<usize>>,
        arrival: &str,
        cv: f64,
        seed: Int<u64>,
        words_to_tokens: f64,
        lengths_are_words: bool,
        trace_model: Option<&Bound<'_, PyAny>>,
        trace_log_type: Option<&Bound<'_, PyAny>>,
        columns: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let num_requests = num_requests.map(|x| x.0);
        let seed = seed.0;
        let opts = TraceOptions {
            words_to_tokens,
            lengths_are_words,
            model: optional_str(trace_model, "trace_model")?,
            log_type: optional_str(trace_log_type, "trace_log_type")?,
            columns: column_map(columns)?,
        };
        py.detach(|| {
            guard(|| {
                let inner = match read_trace_file(&path, &opts)? {
                    TraceData::Timed(w) => {
                        let w = match num_requests {
                            Some(0) => return Err(Error::config("num_requests must be >= 1")),
                            Some(n) => w.truncated(n),
                            None => w,
                        };
                        match rate {
                            Some(r) => w.rescaled_to_rate(r)?,
                            None => w,
                        }
                    }
                    TraceData::Lengths(table) => {
                        let rate = rate.ok_or_else(|| {
                            Error::config(format!(
                                "{} has lengths but no arrival times: pass an arrival rate (rate=... / --rate)",
                                path.display()
                            ))
                        })?;
                        Workload::from_lengths(&table, &arrival_process(arrival, rate, cv)?, num_requests, seed)?
                    }
                };
                Ok(PyWorkload { inner })
            })
        })
    }

    /// Synthetic typed workload: one Poisson stream of total rate Σrate, each arrival's type drawn with
    /// probability rate_j / Σrate. `types` holds `(prompt_len, output_len, rate)` tuples.
    #[staticmethod]
    #[pyo3(signature = (types, num_requests, *, seed = Int(0)))]
    fn from_types(types: Vec<TypeArg>, num_requests: Int<usize>, seed: Int<u64>) -> PyResult<Self> {
        let types = types.into_iter().map(|(a, b, r)| (a.0, b.0, r)).collect::<Vec<_>>();
        let num_requests = num_requests.0;
        let seed = seed.0;
        guard(|| {
            let types: Vec<RequestType> = types
                .into_iter()
                .map(|(prompt_len, output_len, rate)| RequestType { prompt_len, output_len, rate })
                .collect();
            Ok(PyWorkload { inner: Workload::from_types(&types, num_requests, seed)? })
        })
    }

    /// A workload from explicit per-request sequences (arrivals must be sorted).
    #[staticmethod]
    #[pyo3(signature = (arrival, prompt_len, output_len, type_id = None))]
    fn from_requests(
        arrival: Vec<f64>,
        prompt_len: Vec<Int<u32>>,
        output_len: Vec<Int<u32>>,
        type_id: Option<Vec<Int<u32>>>,
    ) -> PyResult<Self> {
        let prompt_len = ints(prompt_len);
        let output_len = ints(output_len);
        let type_id = type_id.map(ints);
        guard(|| {
            let n = arrival.len();
            if prompt_len.len() != n || output_len.len() != n || type_id.as_ref().is_some_and(|t| t.len() != n) {
                return Err(Error::trace("arrival, prompt_len, output_len (and type_id) must have the same length"));
            }
            let specs = (0..n)
                .map(|i| RequestSpec {
                    id: i as u64,
                    arrival: arrival[i],
                    prompt_len: prompt_len[i],
                    output_len: output_len[i],
                    type_id: type_id.as_ref().map(|t| t[i]),
                })
                .collect();
            Ok(PyWorkload { inner: Workload::from_specs(specs)? })
        })
    }

    /// The first `n` requests.
    fn truncated(&self, n: Int<usize>) -> PyResult<Self> {
        let n = n.0;
        guard(|| {
            if n == 0 {
                return Err(Error::config("n must be >= 1"));
            }
            Ok(PyWorkload { inner: self.inner.truncated(n) })
        })
    }

    /// The same requests with arrival times scaled so the mean rate is `rate` req/s.
    fn rescaled_to_rate(&self, rate: f64) -> PyResult<Self> {
        guard(|| Ok(PyWorkload { inner: self.inner.rescaled_to_rate(rate)? }))
    }

    fn __len__(&self) -> usize {
        self.inner.requests.len()
    }

    fn __repr__(&self) -> String {
        let rate = self.inner.mean_rate().map_or("n/a".to_string(), |r| format!("{r:.3} req/s"));
        format!("Workload(requests={}, mean_rate={rate})", self.inner.requests.len())
    }

    /// Arrival times, seconds.
    #[getter]
    fn arrival(&self) -> Vec<f64> {
        self.inner.requests.iter().map(|r| r.arrival).collect()
    }

    /// Prompt lengths, tokens.
    #[getter]
    fn prompt_len(&self) -> Vec<u32> {
        self.inner.requests.iter().map(|r| r.prompt_len).collect()
    }

    /// Output lengths, tokens.
    #[getter]
    fn output_len(&self) -> Vec<u32> {
        self.inner.requests.iter().map(|r| r.output_len).collect()
    }

    /// Type labels (None where absent).
    #[getter]
    fn type_id(&self) -> Vec<Option<u32>> {
        self.inner.requests.iter().map(|r| r.type_id).collect()
    }

    /// Non-fatal problems found while reading (for example zero lengths clamped to 1).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings.clone()
    }

    /// Mean arrival rate (n − 1) / (last − first arrival), or None.
    #[getter]
    fn mean_rate(&self) -> Option<f64> {
        self.inner.mean_rate()
    }
}

/// A simulation of one workload under one policy; run it in chunks with `run_for` (the GIL is released).
#[pyclass(module = "fluidsched._core", name = "Simulation")]
pub struct PySimulation {
    inner: Mutex<Simulator>,
}

impl PySimulation {
    fn lock(&self) -> Result<MutexGuard<'_, Simulator>, Error> {
        self.inner.lock().map_err(|_| Error::InvalidState("simulation poisoned by an earlier internal error".into()))
    }
}

fn f64_bytes<'py>(py: Python<'py>, xs: impl ExactSizeIterator<Item = f64>) -> Bound<'py, PyBytes> {
    let mut buf = Vec::with_capacity(xs.len() * 8);
    for x in xs {
        buf.extend_from_slice(&x.to_ne_bytes());
    }
    PyBytes::new(py, &buf)
}

fn u32_bytes<'py>(py: Python<'py>, xs: impl ExactSizeIterator<Item = u32>) -> Bound<'py, PyBytes> {
    let mut buf = Vec::with_capacity(xs.len() * 4);
    for x in xs {
        buf.extend_from_slice(&x.to_ne_bytes());
    }
    PyBytes::new(py, &buf)
}

fn bool_bytes<'py>(py: Python<'py>, xs: &[bool]) -> Bound<'py, PyBytes> {
    let buf: Vec<u8> = xs.iter().map(|&x| u8::from(x)).collect();
    PyBytes::new(py, &buf)
}

#[pymethods]
impl PySimulation {
    #[new]
    #[pyo3(signature = (
        workload, policy = "vllm", *, policy_options = None, time_model = "llama2-7b-a100", d0 = None, d1 = None,
        num_blocks = None, block_size = Int(16), watermark = 0.01, max_num_seqs = Int(256), max_num_batched_tokens = Int(8192),
        enable_chunked_prefill = true, seed = Int(0), length_error = 0.0, max_model_len = None, over_length = "trim",
        drop_oversize = false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        workload: &PyWorkload,
        policy: &str,
        policy_options: Option<&Bound<'_, PyDict>>,
        time_model: &str,
        d0: Option<f64>,
        d1: Option<f64>,
        num_blocks: Option<Int<u32>>,
        block_size: Int<u32>,
        watermark: f64,
        max_num_seqs: Int<u32>,
        max_num_batched_tokens: Int<u32>,
        enable_chunked_prefill: bool,
        seed: Int<u64>,
        length_error: f64,
        max_model_len: Option<&Bound<'_, PyAny>>,
        over_length: &str,
        drop_oversize: bool,
    ) -> PyResult<Self> {
        let max_model_len = max_model_len_from(max_model_len)?;
        let num_blocks = num_blocks.map(|n| n.0);
        let block_size = block_size.0;
        let max_num_seqs = max_num_seqs.0;
        let max_num_batched_tokens = max_num_batched_tokens.0;
        let seed = seed.0;
        let options = policy_options_from(policy_options)?;
        py.detach(|| {
            guard(|| {
                let time_model = TimeModel::from_name(time_model, d0, d1)?;
                let num_blocks = num_blocks_or_default(&time_model, num_blocks, block_size)?;
                let scheduler = scheduler_config(
                    num_blocks,
                    block_size,
                    watermark,
                    max_num_seqs,
                    max_num_batched_tokens,
                    enable_chunked_prefill,
                )?;
                let model_len = ModelLen::new(max_model_len, OverLength::from_name(over_length)?)?;
                let config = SimConfig { scheduler, time_model, seed, length_error, model_len, drop_oversize };
                // The policy plans with the requests it will be given: rejected ones left out, trimmed ones cut.
                let served = served_workload(&workload.inner, &config)?;
                let ctx = policy_context(&served.workload, scheduler, &config.time_model);
                let policy = build_policy(policy, PolicyOptions::new(policy, options), &ctx)?;
                Ok(PySimulation { inner: Mutex::new(Simulator::new(&workload.inner, policy, &config)?) })
            })
        })
    }

    /// Runs at most `max_iterations` model iterations; returns True once every request has finished.
    ///
    /// The GIL is released while simulating; between chunks of iterations (sized to take about 50 ms) it is taken
    /// back briefly to check for signals, so Ctrl-C raises `KeyboardInterrupt` promptly. The simulation stays
    /// consistent and can be resumed with another call.
    #[pyo3(signature = (max_iterations = Int(u64::MAX)))]
    fn run_for(&self, py: Python<'_>, max_iterations: Int<u64>) -> PyResult<bool> {
        const TARGET: Duration = Duration::from_millis(50);
        let mut left = max_iterations.0;
        let mut chunk: u64 = 256;
        loop {
            let n = left.min(chunk);
            let start = Instant::now();
            let done = py.detach(|| guard(|| self.lock()?.run_for(n)))?;
            left -= n;
            if done || left == 0 {
                return Ok(done);
            }
            py.check_signals()?;
            let took = start.elapsed();
            if took < TARGET / 2 {
                chunk = chunk.saturating_mul(2).min(1 << 24);
            } else if took > TARGET * 2 {
                chunk = (chunk / 2).max(1);
            }
        }
    }

    /// `(settled, total)` requests; settled: finished, or rejected by the model length limit.
    fn progress(&self) -> PyResult<(usize, usize)> {
        guard(|| Ok(self.lock()?.progress()))
    }

    /// Requests dropped before the run because they can never fit the KV cache (`drop_oversize=True`); they
    /// are also counted in `num_rejected`.
    #[getter]
    fn num_dropped(&self) -> PyResult<usize> {
        guard(|| Ok(self.lock()?.num_dropped()))
    }

    /// Current simulated time, seconds.
    #[getter]
    fn now(&self) -> PyResult<f64> {
        guard(|| Ok(self.lock()?.now()))
    }

    /// Summary metrics as a dict (the keys of `fluidsched simulate --json`).
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| guard(|| Ok(self.lock()?.summary())))?;
        let d = PyDict::new(py);
        for (k, v) in s.fields() {
            if k.starts_with("num_") {
                d.set_item(k, v as u64)?;
            } else {
                d.set_item(k, v)?;
            }
        }
        Ok(d)
    }

    /// Per-request records as raw native-endian buffers: name -> (bytes, dtype) with dtype "f8", "u4" or "?"
    /// (bool, one byte each).
    fn records<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let sim = guard(|| self.lock())?;
        let r = sim.records();
        let d = PyDict::new(py);
        d.set_item("arrival", (f64_bytes(py, r.arrival.iter().copied()), "f8"))?;
        d.set_item("first_scheduled", (f64_bytes(py, r.first_scheduled.iter().copied()), "f8"))?;
        d.set_item("first_token", (f64_bytes(py, r.first_token.iter().copied()), "f8"))?;
        d.set_item("finish", (f64_bytes(py, r.finish.iter().copied()), "f8"))?;
        d.set_item("prompt_len", (u32_bytes(py, r.prompt_len.iter().copied()), "u4"))?;
        d.set_item("output_len", (u32_bytes(py, r.output_len.iter().copied()), "u4"))?;
        d.set_item("num_preemptions", (u32_bytes(py, r.num_preemptions.iter().copied()), "u4"))?;
        d.set_item("rejected", (bool_bytes(py, &r.rejected), "?"))?;
        d.set_item("trimmed", (bool_bytes(py, &r.trimmed), "?"))?;
        Ok(d)
    }

    /// Per-iteration log as raw buffers: start, duration (f8), num_tokens, num_seqs, used_blocks (u4).
    fn iterations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let sim = guard(|| self.lock())?;
        let log = sim.iteration_log();
        let d = PyDict::new(py);
        d.set_item("start", (f64_bytes(py, log.iter().map(|r| r.start)), "f8"))?;
        d.set_item("duration", (f64_bytes(py, log.iter().map(|r| r.duration)), "f8"))?;
        d.set_item("num_tokens", (u32_bytes(py, log.iter().map(|r| r.num_tokens)), "u4"))?;
        d.set_item("num_seqs", (u32_bytes(py, log.iter().map(|r| r.num_seqs)), "u4"))?;
        d.set_item("used_blocks", (u32_bytes(py, log.iter().map(|r| r.used_blocks)), "u4"))?;
        Ok(d)
    }

    /// Gaps between consecutive tokens of a request, seconds (native-endian f8 bytes), in no particular order.
    fn time_between_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let sim = guard(|| self.lock())?;
        Ok(f64_bytes(py, sim.time_between_tokens().into_iter()))
    }

    /// Name of the policy.
    #[getter]
    fn policy(&self) -> PyResult<&'static str> {
        guard(|| Ok(self.lock()?.scheduler().policy_name()))
    }
}
