//! Conversions from Python values to core types: policy options, and integer arguments whose range errors must
//! surface as `fluidsched.InvalidConfigError` rather than PyO3's bare `OverflowError`.

use fluidsched_core::policy::OptionValue;
use fluidsched_core::workload::model_len::max_model_len_error;
use fluidsched_core::{Result, SchedulerConfig};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors::config_error;

/// An integer argument of Rust type `T`: a Python int or a numpy integer scalar (anything with `__index__`). One
/// outside `T`'s range (negative, or too large) raises `fluidsched.InvalidConfigError` saying so; a non-integer
/// raises `fluidsched.InvalidArgumentTypeError` (also a `TypeError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int<T>(pub T);

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl<'a, 'py> FromPyObject<'a, 'py> for Int<$t> {
            type Error = PyErr;

            fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
                let obj = as_int(obj)?;
                let range = || format!("an integer from {} to {}", <$t>::MIN, <$t>::MAX);
                let wide: i128 = obj
                    .extract()
                    .map_err(|_| config_error(format!("expected {}, got an integer of unbounded size", range())))?;
                <$t>::try_from(wide)
                    .map(Int)
                    .map_err(|_| config_error(format!("expected {}, got {wide}", range())))
            }
        }
    )*};
}

int_arg!(u32, u64, usize);

/// `obj` as a Python int: an int itself, or any integer type that implements `__index__` (numpy's `int64`,
/// `uint32`, ... scalars, so numpy integer arrays convert element by element). A bool, a float, a string or
/// `None` raises `fluidsched.InvalidArgumentTypeError` (a `TypeError` and an `InvalidConfigError`; PyO3 adds a
/// note naming the argument).
fn as_int<'py>(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let type_name = || obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    let wrong = || {
        let shown = obj.repr().map(|r| r.to_string()).unwrap_or_default();
        let shown: String =
            if shown.chars().count() > 60 { shown.chars().take(60).collect::<String>() + "…" } else { shown };
        crate::errors::argument_type_error(format!("expected an int, got {} {shown}", type_name()))
    };
    if obj.is_instance_of::<PyBool>() {
        return Err(wrong());
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(obj.to_owned());
    }
    // numpy's bool_ has no __index__ in current numpy and is refused like bool; floats have none either.
    if type_name().starts_with("bool") || !obj.hasattr(pyo3::intern!(py, "__index__"))? {
        return Err(wrong());
    }
    let index = obj.call_method0(pyo3::intern!(py, "__index__")).map_err(|_| wrong())?;
    if index.is_instance_of::<PyInt>() && !index.is_instance_of::<PyBool>() { Ok(index) } else { Err(wrong()) }
}

/// The `max_model_len` argument: `None`, or an int the core validates. A bool, a non-int or an int outside
/// `u32` raises `fluidsched.InvalidConfigError` with the core's message, which names the option.
pub fn max_model_len(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u32>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let err = |shown: String| crate::errors::to_py_err(max_model_len_error(shown));
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(err(obj.repr()?.to_string()));
    }
    let wide: i128 = obj.extract().map_err(|_| err(obj.repr().map(|r| r.to_string()).unwrap_or_default()))?;
    u32::try_from(wide).map(Some).map_err(|_| err(wide.to_string()))
}

/// A request type argument: `(prompt_len, output_len, rate)`.
pub type TypeArg = (Int<u32>, Int<u32>, f64);

/// Unwraps a vector of [`Int`] arguments.
pub fn ints<T>(v: Vec<Int<T>>) -> Vec<T> {
    v.into_iter().map(|Int(x)| x).collect()
}

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
    if let Ok(Int(x)) = v.extract::<Int<u64>>() {
        return Ok(OptionValue::Num(x as f64)); // a numpy integer scalar
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items: Vec<f64> =
            v.extract().map_err(|_| config_error(format!("policy option {key:?}: a list must hold only numbers")))?;
        return Ok(OptionValue::List(items));
    }
    Err(config_error(format!(
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

/// The shared scheduler limits from their Python arguments, validated.
pub fn scheduler_config(
    num_blocks: u32,
    block_size: u32,
    watermark: f64,
    max_num_seqs: u32,
    max_num_batched_tokens: u32,
    enable_chunked_prefill: bool,
) -> Result<SchedulerConfig> {
    let config = SchedulerConfig {
        block_size,
        num_blocks,
        watermark,
        max_num_seqs,
        max_num_batched_tokens,
        enable_chunked_prefill,
    };
    config.validate()?;
    Ok(config)
}
