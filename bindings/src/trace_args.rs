//! Conversions of `Workload.from_trace`'s trace-reading arguments: the row filters and the column map.

use fluidsched_core::workload::ColumnMap;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::{argument_type_error, to_py_err};

/// `repr(obj)`, cut to 60 characters, for messages.
fn shown(obj: &Bound<'_, PyAny>) -> String {
    let repr = obj.repr().map(|r| r.to_string()).unwrap_or_default();
    if repr.chars().count() > 60 { repr.chars().take(60).collect::<String>() + "…" } else { repr }
}

/// An optional string argument `name`: `None` or a `str`; anything else raises
/// `fluidsched.InvalidArgumentTypeError` naming the argument.
pub fn optional_str(obj: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<String>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => match o.cast::<PyString>() {
            Ok(s) => Ok(Some(s.to_str()?.to_string())),
            Err(_) => Err(argument_type_error(format!("{name} must be a str, got {}", shown(o)))),
        },
    }
}

/// The `columns` argument: `None`, a dict of `str` to `str` (`{"arrival": ..., "prompt": ..., "output": ...,
/// "unit": "ms"}`) or the command-line form `"arrival=COL,prompt=COL,output=COL,unit=ms"`. A bad key or value
/// raises `fluidsched.InvalidConfigError`, a value of the wrong type `fluidsched.InvalidArgumentTypeError`.
pub fn column_map(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<ColumnMap>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if let Ok(spec) = obj.cast::<PyString>() {
        return ColumnMap::parse(spec.to_str()?).map(Some).map_err(to_py_err);
    }
    let Ok(dict) = obj.cast::<PyDict>() else {
        return Err(argument_type_error(format!(
            "columns must be a dict such as {{\"arrival\": ..., \"prompt\": ..., \"output\": ...}} or a string \
             \"arrival=COL,prompt=COL,output=COL\", got {}",
            shown(obj)
        )));
    };
    let mut pairs = Vec::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let (Ok(k), Ok(v)) = (key.cast::<PyString>(), value.cast::<PyString>()) else {
            let (k, v) = (shown(&key), shown(&value));
            return Err(argument_type_error(format!("columns keys and values must be str, got {k}: {v}")));
        };
        pairs.push((k.to_str()?.to_string(), v.to_str()?.to_string()));
    }
    ColumnMap::from_pairs(pairs).map(Some).map_err(to_py_err)
}
