//! Time-model preset files (JSON, format `fluidsched-time-model/1`): reading, checking, and the shipped presets.
//!
//! A preset describes one model on one device: the iteration-time model (`iteration`), the KV cache the
//! deployment has (`kv_cache`), and informational `description`, `model`, `device`, `fit` and `provenance`
//! sections. The format is documented in `docs/time-model.md`. Every error names the file and the key at fault.
//! Unknown keys are ignored, so that newer writers can add information.

use serde_json::{Map, Value};

use super::profiled::{ProfiledModel, ProfiledSpec};
use crate::error::{Error, Result};

/// The `format` value this loader reads.
pub const FORMAT: &str = "fluidsched-time-model/1";

/// The presets shipped with fluidsched: `(name, JSON text)`. The files live in `python/fluidsched/data/presets/`
/// (the Python package ships them as data files too).
pub const SHIPPED: [(&str, &str); 12] = [
    ("llama2-7b-a100", include_str!("../../../python/fluidsched/data/presets/llama2-7b-a100.json")),
    ("llama2-7b-h100", include_str!("../../../python/fluidsched/data/presets/llama2-7b-h100.json")),
    ("llama2-7b-a40", include_str!("../../../python/fluidsched/data/presets/llama2-7b-a40.json")),
    ("llama3-8b-a100", include_str!("../../../python/fluidsched/data/presets/llama3-8b-a100.json")),
    ("llama3-8b-h100", include_str!("../../../python/fluidsched/data/presets/llama3-8b-h100.json")),
    ("phi-2-a100", include_str!("../../../python/fluidsched/data/presets/phi-2-a100.json")),
    ("phi-2-h100", include_str!("../../../python/fluidsched/data/presets/phi-2-h100.json")),
    ("phi-2-a40", include_str!("../../../python/fluidsched/data/presets/phi-2-a40.json")),
    ("internlm-20b-a100", include_str!("../../../python/fluidsched/data/presets/internlm-20b-a100.json")),
    ("internlm-20b-h100", include_str!("../../../python/fluidsched/data/presets/internlm-20b-h100.json")),
    ("codellama-34b-a100", include_str!("../../../python/fluidsched/data/presets/codellama-34b-a100.json")),
    ("codellama-34b-h100", include_str!("../../../python/fluidsched/data/presets/codellama-34b-h100.json")),
];

/// The shipped preset called `name`, or `None` if there is none.
pub fn shipped(name: &str) -> Option<Result<ProfiledModel>> {
    SHIPPED.iter().find(|(n, _)| *n == name).map(|(n, text)| parse(text, &format!("shipped preset `{n}`")))
}

/// The preset in the file at `path`.
pub fn read_file(path: &str) -> Result<ProfiledModel> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("cannot read time-model preset file `{path}`: {e}")))?;
    parse(&text, &format!("file `{path}`"))
}

/// Parses and checks a preset's JSON `text`; `source` ("file `x.json`") prefixes every error message.
pub fn parse(text: &str, source: &str) -> Result<ProfiledModel> {
    let in_source = |e: Error| match e {
        Error::InvalidConfig(m) => Error::config(format!("time-model preset {source}: {m}")),
        other => other,
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::config(format!("time-model preset {source}: not valid JSON: {e}")))?;
    spec_from_json(&value).and_then(ProfiledModel::new).map_err(in_source)
}

fn bad(key: &str, reason: impl std::fmt::Display) -> Error {
    Error::config(format!("key `{key}`: {reason}"))
}

/// The JSON object at `key` (`root` for the document itself).
fn object<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| bad(key, format!("must be a JSON object, got {}", kind(value))))
}

/// `map[name]`, or a "missing key" error naming `parent.name`.
fn field<'a>(map: &'a Map<String, Value>, parent: &str, name: &str) -> Result<(&'a Value, String)> {
    let key = if parent.is_empty() { name.to_string() } else { format!("{parent}.{name}") };
    match map.get(name) {
        Some(v) => Ok((v, key)),
        None => Err(bad(&key, "missing")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string(v: &Value, key: &str) -> Result<String> {
    v.as_str().map(str::to_string).ok_or_else(|| bad(key, format!("must be a string, got {}", kind(v))))
}

/// A whole number in `u32` (the range checks, such as `>= 1`, are [`ProfiledModel::new`]'s).
fn uint(v: &Value, key: &str) -> Result<u32> {
    v.as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| bad(key, format!("must be a whole number from 0 to {}, got {v}", u32::MAX)))
}

fn number(v: &Value, key: &str) -> Result<f64> {
    v.as_f64().ok_or_else(|| bad(key, format!("must be a number, got {}", kind(v))))
}

fn numbers<const N: usize>(v: &Value, key: &str) -> Result<[f64; N]> {
    let want = || format!("must be an array of {N} numbers");
    let items = v.as_array().ok_or_else(|| bad(key, format!("{}, got {}", want(), kind(v))))?;
    if items.len() != N {
        return Err(bad(key, format!("{}, got {} of them", want(), items.len())));
    }
    let mut out = [0.0; N];
    for (i, item) in items.iter().enumerate() {
        out[i] = number(item, &format!("{key}[{i}]"))?;
    }
    Ok(out)
}

fn table(v: &Value, key: &str) -> Result<Vec<(u32, f64)>> {
    let items = v.as_array().ok_or_else(|| bad(key, format!("must be an array of [tokens, ms], got {}", kind(v))))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let key = format!("{key}[{i}]");
            let pair = item.as_array().filter(|p| p.len() == 2).ok_or_else(|| bad(&key, "must be [tokens, ms]"))?;
            Ok((uint(&pair[0], &format!("{key}[0]"))?, number(&pair[1], &format!("{key}[1]"))?))
        })
        .collect()
}

/// The numbers of a preset document, with every key checked for presence and type.
fn spec_from_json(doc: &Value) -> Result<ProfiledSpec> {
    let root = object(doc, "root")?;
    let (format, key) = field(root, "", "format")?;
    if format.as_str() != Some(FORMAT) {
        return Err(bad(&key, format!("must be \"{FORMAT}\", got {format}")));
    }
    let (name, key) = field(root, "", "name")?;
    let name = string(name, &key)?;
    let (description, key) = field(root, "", "description")?;
    string(description, &key)?;
    for section in ["model", "device", "provenance"] {
        let (v, key) = field(root, "", section)?;
        object(v, &key)?;
    }
    let (fit, key) = field(root, "", "fit")?;
    if !fit.is_null() {
        object(fit, &key)?;
    }

    let (kv, key) = field(root, "", "kv_cache")?;
    let kv = object(kv, &key)?;
    let (v, key) = field(kv, "kv_cache", "block_size")?;
    let block_size = uint(v, &key)?;
    let (v, key) = field(kv, "kv_cache", "num_blocks")?;
    let num_blocks = uint(v, &key)?;
    if let Some(v) = kv.get("kv_bytes_per_token").filter(|v| !v.is_null()) {
        let x = number(v, "kv_cache.kv_bytes_per_token")?;
        if !(x.is_finite() && x > 0.0) {
            return Err(bad("kv_cache.kv_bytes_per_token", format!("must be a number > 0, got {v}")));
        }
    }
    if let Some(v) = kv.get("how") {
        string(v, "kv_cache.how")?;
    }

    let (it, key) = field(root, "", "iteration")?;
    let it = object(it, &key)?;
    let get = |name: &str| field(it, "iteration", name);
    let (v, key) = get("num_layers")?;
    let num_layers = uint(v, &key)?;
    let (v, key) = get("overhead_ms")?;
    let overhead_ms = number(v, &key)?;
    let (v, key) = get("token_step")?;
    let token_step = uint(v, &key)?;
    let (v, key) = get("linear_ops_ms")?;
    let linear_ops_ms = table(v, &key)?;
    let (v, key) = get("linear_ops_extrapolation_ms_per_token")?;
    let linear_ops_extrapolation_ms_per_token = number(v, &key)?;
    let (v, key) = get("decode_attention_ms")?;
    let decode_attention_ms = numbers::<3>(v, &key)?;
    let (v, key) = get("prefill_attention_ms")?;
    let prefill_attention_ms = numbers::<4>(v, &key)?;
    Ok(ProfiledSpec {
        name,
        num_layers,
        overhead_ms,
        token_step,
        linear_ops_ms,
        linear_ops_extrapolation_ms_per_token,
        decode_attention_ms,
        prefill_attention_ms,
        block_size,
        num_blocks,
    })
}
