//! Reading JSON-lines traces: one JSON object per line, Mooncake's keys (`timestamp` in milliseconds,
//! `input_length`, `output_length`) or the keys a [`ColumnMap`](super::ColumnMap) names.
//!
//! Values may be JSON numbers or strings holding numbers; other keys (Mooncake's `hash_ids`) are ignored. Each
//! line is parsed on its own, so memory follows the longest line, not the file.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::fields::excerpt;
use super::filter::RowFilter;
use super::header::ArrivalKind;
use super::rows::{Rows, Schema};
use super::{TraceData, TraceFormat, TraceOptions};
use crate::error::{Error, Result};

/// The format of a JSON first line: Mooncake when it has Mooncake's keys.
pub(super) fn detect(line: &str) -> Result<TraceFormat> {
    let object = parse_object(line, 1)?;
    check_mooncake_keys(&object, 1)?;
    Ok(TraceFormat::Mooncake)
}

/// What a JSON value is, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One line as a JSON object, or an error at `line` saying why not.
fn parse_object(text: &str, line: usize) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(Error::trace_at(
            format!("line {line}"),
            format!("expected one JSON object per line (JSON lines), found {}", kind(&other)),
        )),
        Err(e) => {
            // serde_json says "... at line 1 column N": the line is ours to give, the column is a character.
            let message = e.to_string();
            let reason = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
            Err(Error::trace_at(
                format!("line {line}"),
                format!("not valid JSON ({reason} at character {})", e.column()),
            ))
        }
    }
}

/// Fails unless `object` has every key of the Mooncake format, naming the first missing one.
fn check_mooncake_keys(object: &Map<String, Value>, line: usize) -> Result<()> {
    let format = TraceFormat::Mooncake;
    if let Some(missing) = format.columns().iter().find(|k| !object.contains_key(**k)) {
        let keys: Vec<_> = object.keys().take(20).map(|k| excerpt(k)).collect();
        let more = if object.len() > 20 { format!(", … ({} more)", object.len() - 20) } else { String::new() };
        return Err(Error::trace_at(
            format!("line {line}"),
            format!(
                "missing key \"{missing}\" for the {} format (keys {}); keys found: [{}{more}]; for other keys name \
                 them (columns={{\"arrival\": ..., \"prompt\": ..., \"output\": ...}} / --columns)",
                format.name(),
                format.columns().join(", "),
                keys.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The cell of `key`: a number's text or a string's content.
fn cell<'a>(object: &'a Map<String, Value>, key: &str) -> std::result::Result<Cow<'a, str>, String> {
    match object.get(key) {
        None => Err("the key is missing".into()),
        Some(Value::Number(n)) => Ok(Cow::Owned(n.to_string())),
        Some(Value::String(s)) => Ok(Cow::Borrowed(s.trim())),
        Some(other) => Err(format!("expected a number, found {}", kind(other))),
    }
}

/// Reads a JSON-lines trace (the caller saw a `{` opening the first non-blank line).
pub(super) fn read_jsonl(text: &str, opts: &TraceOptions) -> Result<TraceData> {
    let (format, names, arrival) = match &opts.columns {
        Some(map) => {
            let names = map.roles().into_iter().map(|(_, key)| key.to_string()).collect();
            (TraceFormat::Custom, names, map.arrival.as_ref().map(|_| ArrivalKind::Number(map.unit)))
        }
        None => {
            let f = TraceFormat::Mooncake;
            (f, f.columns().iter().map(|k| k.to_string()).collect(), f.arrival())
        }
    };
    RowFilter::refuse(opts, format)?;
    let words = opts.lengths_are_words.then_some(opts.words_to_tokens).filter(|&f| f != 1.0);
    let schema = Schema { format, field: "key", arrival, names, scale: words, drop_zero_output: false };
    let mut rows = Rows::new(schema);
    let mut first_line: Option<usize> = None;
    let mut blank_since: Option<usize> = None;
    for (i, line) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if first_line.is_some() {
                blank_since.get_or_insert(n);
            }
            continue;
        }
        if let Some(b) = blank_since {
            return Err(Error::trace_at(format!("line {b}"), format!("blank line between rows (line {n} has data)")));
        }
        let object = parse_object(line, n)?;
        if first_line.is_none() && format == TraceFormat::Mooncake {
            check_mooncake_keys(&object, n)?;
        }
        first_line.get_or_insert(n);
        let cells = (0..rows.width())
            .map(|role| cell(&object, rows.name(role)).map_err(|reason| rows.error(n, role, &reason)))
            .collect::<Result<Vec<_>>>()?;
        let cells: Vec<&str> = cells.iter().map(|c| c.as_ref()).collect();
        rows.push(n, &cells)?;
    }
    let Some(first) = first_line else {
        return Err(Error::trace("the trace is empty: no header line and no rows"));
    };
    rows.finish(first, Vec::new())
}
