//! Conversions from Python values to core option types.

use fluidsched_core::policy::OptionValue;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// Converts one Python option value (bool, int, float, str, or a list/tuple of numbers).
fn option_value(key: &str, v: &Bound<'_, PyAny>) -> PyResult<OptionValue> {
    if v.is_instance_of::<PyBool>() {
        return Ok(OptionValue::Bool(v.extract()?));
    }
    if v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>() {
        return Ok(OptionValue::Num(v.extract()?));
    }
    if v.is_instance_of::<PyString>() {
        return Ok(OptionValue::Str(v.extract()?));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items: Vec<f64> = v
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("policy option {key:?}: a list must hold only numbers")))?;
        return Ok(OptionValue::List(items));
    }
    Err(PyTypeError::new_err(format!(
        "policy option {key:?}: expected bool, int, float, str or a list of numbers, got {}",
        v.get_type().name()?
    )))
}

/// Converts an optional `dict[str, value]` of policy options.
pub fn policy_options(options: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, OptionValue)>> {
    let mut out = Vec::new();
    if let Some(d) = options {
        for (k, v) in d.iter() {
            let key: String = k.extract().map_err(|_| PyTypeError::new_err("policy option names must be strings"))?;
            let value = option_value(&key, &v)?;
            out.push((key, value));
        }
    }
    Ok(out)
}
