//! `fluidsched._core.Step` and `StepOutcome`: what `Scheduler.schedule()` and `complete_step()` return.
//!
//! Both hold their decisions as plain Rust columns and convert each one to Python on first access only, then
//! return the same object on every later access: tuples (immutable) for the per-request views, and read-only
//! numpy arrays (built over an immutable `bytes` copy of the column) for bulk readers.

use fluidsched_core::step::{Step, StepOutcome};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple};

use crate::errors::internal_error;

/// A numpy element type the columns are exported as (native byte order, as the bytes are written).
#[derive(Clone, Copy)]
enum Dtype {
    U64,
    U32,
    Bool,
}

/// `numpy.frombuffer` and the three dtypes, imported once per process.
struct Numpy {
    frombuffer: Py<PyAny>,
    dtypes: [Py<PyAny>; 3],
}

static NUMPY: PyOnceLock<Numpy> = PyOnceLock::new();

fn numpy(py: Python<'_>) -> PyResult<&Numpy> {
    NUMPY.get_or_try_init(py, || {
        let np = py.import("numpy")?;
        let dtype = np.getattr("dtype")?;
        let make = |code: &str| dtype.call1((code,)).map(Bound::unbind);
        Ok(Numpy { frombuffer: np.getattr("frombuffer")?.unbind(), dtypes: [make("=u8")?, make("=u4")?, make("?")?] })
    })
}

/// A read-only one-dimensional numpy array holding `bytes` (already in `dtype`'s layout).
fn array_from_bytes(py: Python<'_>, bytes: Bound<'_, PyBytes>, dtype: Dtype) -> PyResult<Py<PyAny>> {
    let np = numpy(py)?;
    let dtype = np.dtypes[dtype as usize].bind(py);
    Ok(np.frombuffer.bind(py).call1((bytes, dtype))?.unbind())
}

fn u64_array(py: Python<'_>, values: &[u64]) -> PyResult<Py<PyAny>> {
    let bytes = PyBytes::new_with(py, values.len() * 8, |buf| {
        buf.chunks_exact_mut(8).zip(values).for_each(|(out, v)| out.copy_from_slice(&v.to_ne_bytes()));
        Ok(())
    })?;
    array_from_bytes(py, bytes, Dtype::U64)
}

fn u32_array(py: Python<'_>, values: &[u32]) -> PyResult<Py<PyAny>> {
    let bytes = PyBytes::new_with(py, values.len() * 4, |buf| {
        buf.chunks_exact_mut(4).zip(values).for_each(|(out, v)| out.copy_from_slice(&v.to_ne_bytes()));
        Ok(())
    })?;
    array_from_bytes(py, bytes, Dtype::U32)
}

fn bool_array(py: Python<'_>, values: &[bool]) -> PyResult<Py<PyAny>> {
    let bytes = PyBytes::new_with(py, values.len(), |buf| {
        buf.iter_mut().zip(values).for_each(|(out, &v)| *out = u8::from(v));
        Ok(())
    })?;
    array_from_bytes(py, bytes, Dtype::Bool)
}

/// The cached value of `cell`, built by `build` on first access.
///
/// Not `get_or_try_init`, which releases and re-takes the GIL around a first initialisation (about as long as
/// building a short column): threads that race here each build the same value and all return the one stored.
fn cached<'py>(
    py: Python<'py>,
    cell: &PyOnceLock<Py<PyAny>>,
    build: impl FnOnce() -> PyResult<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    if cell.get(py).is_none() {
        // A racing thread's value stays; this one is dropped.
        let _ = cell.set(py, build()?);
    }
    let value = cell.get(py).ok_or_else(|| internal_error("step view cache empty after it was set".into()))?;
    Ok(value.bind(py).clone())
}

/// A tuple of Python ints.
fn id_tuple(py: Python<'_>, ids: &[u64]) -> PyResult<Py<PyAny>> {
    Ok(PyTuple::new(py, ids)?.into_any().unbind())
}

/// One iteration's batch.
#[pyclass(module = "fluidsched._core", name = "Step", frozen)]
pub struct PyStep {
    request_ids: Vec<u64>,
    num_tokens: Vec<u32>,
    is_prefill: Vec<bool>,
    preempted: Vec<u64>,
    admitted: Vec<u64>,
    /// Tokens in the step.
    #[pyo3(get)]
    num_batched_tokens: u32,
    /// Prefill tokens in the step.
    #[pyo3(get)]
    num_prefill_tokens: u32,
    /// Requests decoding one token.
    #[pyo3(get)]
    num_decode_seqs: u32,
    /// Time the step was scheduled at.
    #[pyo3(get)]
    now: f64,
    scheduled_tuple: PyOnceLock<Py<PyAny>>,
    preempted_tuple: PyOnceLock<Py<PyAny>>,
    admitted_tuple: PyOnceLock<Py<PyAny>>,
    request_ids_array: PyOnceLock<Py<PyAny>>,
    num_tokens_array: PyOnceLock<Py<PyAny>>,
    is_prefill_array: PyOnceLock<Py<PyAny>>,
}

impl PyStep {
    /// The Python view of a core step.
    pub fn new(step: &Step) -> Self {
        PyStep {
            request_ids: step.scheduled.iter().map(|r| r.id).collect(),
            num_tokens: step.scheduled.iter().map(|r| r.num_tokens).collect(),
            is_prefill: step.scheduled.iter().map(|r| r.is_prefill).collect(),
            preempted: step.preempted.clone(),
            admitted: step.admitted.clone(),
            num_batched_tokens: step.shape.num_tokens,
            num_prefill_tokens: step.shape.num_prefill_tokens,
            num_decode_seqs: step.shape.num_decode_seqs,
            now: step.now,
            scheduled_tuple: PyOnceLock::new(),
            preempted_tuple: PyOnceLock::new(),
            admitted_tuple: PyOnceLock::new(),
            request_ids_array: PyOnceLock::new(),
            num_tokens_array: PyOnceLock::new(),
            is_prefill_array: PyOnceLock::new(),
        }
    }
}

#[pymethods]
impl PyStep {
    /// `(request_id, num_tokens, is_prefill)` for every request computed this step (a tuple, built once).
    #[getter]
    fn scheduled<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        cached(py, &self.scheduled_tuple, || {
            let rows = self.request_ids.iter().zip(&self.num_tokens).zip(&self.is_prefill);
            Ok(PyTuple::new(py, rows.map(|((&id, &n), &prefill)| (id, n, prefill)))?.into_any().unbind())
        })
    }

    /// Ids preempted (KV freed, back to recompute) while building the step (a tuple, built once).
    #[getter]
    fn preempted<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        cached(py, &self.preempted_tuple, || id_tuple(py, &self.preempted))
    }

    /// Ids admitted from the waiting queue in this step (a tuple, built once).
    #[getter]
    fn admitted<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        cached(py, &self.admitted_tuple, || id_tuple(py, &self.admitted))
    }

    /// The scheduled requests' ids, in `scheduled` order (read-only `uint64` array, built once).
    #[getter]
    fn request_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        cached(py, &self.request_ids_array, || u64_array(py, &self.request_ids))
    }

    /// Tokens computed per scheduled request (read-only `uint32` array, built once).
    #[getter]
    fn num_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        cached(py, &self.num_tokens_array, || u32_array(py, &self.num_tokens))
    }

    /// Whether each scheduled request is (still) in its prefill (read-only `bool` array, built once).
    #[getter]
    fn is_prefill<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        cached(py, &self.is_prefill_array, || bool_array(py, &self.is_prefill))
    }

    fn __len__(&self) -> usize {
        self.request_ids.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Step(now={}, requests={}, tokens={}, preempted={})",
            self.now,
            self.request_ids.len(),
            self.num_batched_tokens,
            self.preempted.len()
        )
    }
}

/// What `complete_step` did.
#[pyclass(module = "fluidsched._core", name = "StepOutcome", frozen)]
pub struct PyStepOutcome {
    request_ids: Vec<u64>,
    num_output_tokens: Vec<u32>,
    finished: Vec<u64>,
    emitted_tuple: PyOnceLock<Py<PyAny>>,
    finished_tuple: PyOnceLock<Py<PyAny>>,
    request_ids_array: PyOnceLock<Py<PyAny>>,
    num_output_tokens_array: PyOnceLock<Py<PyAny>>,
}

impl PyStepOutcome {
    /// The Python view of a core step outcome.
    pub fn new(outcome: &StepOutcome) -> Self {
        PyStepOutcome {
            request_ids: outcome.emitted.iter().map(|&(id, _)| id).collect(),
            num_output_tokens: outcome.emitted.iter().map(|&(_, n)| n).collect(),
            finished: outcome.finished.clone(),
            emitted_tuple: PyOnceLock::new(),
            finished_tuple: PyOnceLock::new(),
            request_ids_array: PyOnceLock::new(),
            num_output_tokens_array: PyOnceLock::new(),
        }
    }
}

#[pymethods]
impl PyStepOutcome {
    /// `(request_id, num_output_tokens)` for each request that emitted a token (a tuple, built once).
    #[getter]
    fn emitted<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        cached(py, &self.emitted_tuple, || {
            let rows = self.request_ids.iter().zip(&self.num_output_tokens);
            Ok(PyTuple::new(py, rows.map(|(&id, &n)| (id, n)))?.into_any().unbind())
        })
    }

    /// Ids that finished (their blocks are free) (a tuple, built once).
    #[getter]
    fn finished<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        cached(py, &self.finished_tuple, || id_tuple(py, &self.finished))
    }

    /// Ids of the requests that emitted a token, in `emitted` order (read-only `uint64` array, built once).
    #[getter]
    fn request_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        cached(py, &self.request_ids_array, || u64_array(py, &self.request_ids))
    }

    /// Output tokens after this step per emitting request, in `emitted` order (read-only `uint32` array, built once).
    #[getter]
    fn num_output_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        cached(py, &self.num_output_tokens_array, || u32_array(py, &self.num_output_tokens))
    }

    fn __repr__(&self) -> String {
        format!("StepOutcome(emitted={}, finished={:?})", self.request_ids.len(), self.finished)
    }
}
