//! `fluidsched._core.preset_info` and the default KV capacity a time model implies.

use fluidsched_core::{Error, TimeModel};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::guard;

/// KV blocks used with the `linear` time model when none are given (Llama-2-7B on one A100-80GB, 16-token
/// blocks: the default preset's capacity).
pub const LINEAR_DEFAULT_NUM_BLOCKS: u32 = 7424;

/// `num_blocks` if given; otherwise the time model's preset capacity in whole blocks of `block_size` (for `linear`,
/// [`LINEAR_DEFAULT_NUM_BLOCKS`]).
pub fn num_blocks_or_default(time_model: &TimeModel, num_blocks: Option<u32>, block_size: u32) -> Result<u32, Error> {
    if let Some(n) = num_blocks {
        return Ok(n);
    }
    let Some(tokens) = time_model.kv_capacity_tokens() else {
        return Ok(LINEAR_DEFAULT_NUM_BLOCKS);
    };
    let blocks = tokens / u64::from(block_size.max(1));
    match u32::try_from(blocks) {
        Ok(0) => Err(Error::config(format!(
            "the KV capacity of time model `{}` ({tokens} tokens) holds no block of {block_size} tokens",
            time_model.name()
        ))),
        Ok(n) => Ok(n),
        Err(_) => Err(Error::config(format!("the KV capacity of time model `{}` is too large", time_model.name()))),
    }
}

/// The profiled preset `time_model` (a shipped preset's name or a preset file's path), checked, as a dict of
/// the numbers the simulator uses: `name`, `num_layers`, `overhead_ms`, `token_step`, `num_table_points`,
/// `decode_attention_ms`, `prefill_attention_ms`, `block_size`, `num_blocks`, `kv_capacity_tokens`,
/// `linearization` (`(d0, d1)`) and `attention_linearization` (`(d0, d1, d2)`).
#[pyfunction(name = "preset_info")]
pub fn py_preset_info<'py>(py: Python<'py>, time_model: &str) -> PyResult<Bound<'py, PyDict>> {
    let p = guard(|| match TimeModel::preset(time_model)? {
        TimeModel::Profiled(p) => Ok(p),
        TimeModel::Linear { .. } => Err(Error::config(format!("`{time_model}` is not a profiled preset"))),
    })?;
    let spec = p.spec();
    let d = PyDict::new(py);
    d.set_item("name", p.name())?;
    d.set_item("num_layers", spec.num_layers)?;
    d.set_item("overhead_ms", spec.overhead_ms)?;
    d.set_item("token_step", spec.token_step)?;
    d.set_item("num_table_points", spec.linear_ops_ms.len())?;
    d.set_item("decode_attention_ms", spec.decode_attention_ms.to_vec())?;
    d.set_item("prefill_attention_ms", spec.prefill_attention_ms.to_vec())?;
    d.set_item("block_size", spec.block_size)?;
    d.set_item("num_blocks", spec.num_blocks)?;
    d.set_item("kv_capacity_tokens", p.kv_capacity_tokens())?;
    d.set_item("linearization", p.linearization())?;
    d.set_item("attention_linearization", p.attention_linearization())?;
    Ok(d)
}
