//! Maps the core's `Error` variant by variant onto the Python classes in `fluidsched/errors.py`, and turns Rust
//! panics into `fluidsched.InternalError` instead of letting them reach the user.

use std::panic::{AssertUnwindSafe, catch_unwind};

use fluidsched_core::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// Raises the Python exception class `name` from `fluidsched.errors` with `msg`.
fn raise(py: Python<'_>, name: &str, msg: String) -> PyErr {
    let class = py
        .import("fluidsched.errors")
        .and_then(|m| m.getattr(name))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(class) => PyErr::from_type(class, msg),
        // The package is always importable when the extension is; keep a sane fallback anyway.
        Err(_) => PyRuntimeError::new_err(format!("{name}: {msg}")),
    }
}

/// The Python exception for a core error.
pub fn to_py_err(err: Error) -> PyErr {
    let name = match &err {
        Error::InvalidConfig(_) => "InvalidConfigError",
        Error::InvalidRequest { .. } => "InvalidRequestError",
        Error::InvalidTrace { .. } => "InvalidTraceError",
        Error::UnknownRequest(_) => "UnknownRequestError",
        Error::DuplicateRequest(_) => "DuplicateRequestError",
        Error::InvalidState(_) => "InvalidStateError",
        Error::Stalled(_) => "StalledError",
    };
    Python::attach(|py| raise(py, name, err.to_string()))
}

/// A `fluidsched.InvalidConfigError` with `msg`.
pub fn config_error(msg: String) -> PyErr {
    Python::attach(|py| raise(py, "InvalidConfigError", msg))
}

/// A `fluidsched.InvalidArgumentTypeError` (an `InvalidConfigError` and a `TypeError`) with `msg`.
pub fn argument_type_error(msg: String) -> PyErr {
    Python::attach(|py| raise(py, "InvalidArgumentTypeError", msg))
}

/// A `fluidsched.InternalError` with `msg`.
pub fn internal_error(msg: String) -> PyErr {
    Python::attach(|py| raise(py, "InternalError", msg))
}

/// Runs `f`, converting a core error to its Python class and a panic to `fluidsched.InternalError`.
pub fn guard<T>(f: impl FnOnce() -> Result<T, Error>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_py_err(e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Python::attach(|py| {
                raise(py, "InternalError", format!("internal error in fluidsched (please report it): {msg}"))
            }))
        }
    }
}
