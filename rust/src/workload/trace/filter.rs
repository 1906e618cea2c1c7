//! Selecting rows by the value of a label column: BurstGPT's `Model` and `Log Type`.

use std::collections::BTreeMap;

use super::fields::excerpt;
use super::header::find_column;
use super::{TraceFormat, TraceOptions};
use crate::error::{Error, Result};

/// Distinct values remembered per column for the "no row matches" message; the rest are only counted.
const MAX_SHOWN_VALUES: usize = 20;

/// One wanted value of one column.
struct Wanted {
    /// Column index in the header.
    column: usize,
    /// The column's name as the header spells it.
    name: String,
    /// The value as the caller gave it.
    value: String,
    /// The value normalised by [`Wanted::normalise`].
    key: String,
    /// Strip a trailing ` log` before comparing (`api` matches `API log`).
    log_suffix: bool,
    /// Rows per value seen (at most [`MAX_SHOWN_VALUES`] values), and rows with any other value.
    seen: BTreeMap<String, usize>,
    others: usize,
}

impl Wanted {
    /// Lower case, trimmed, and without a trailing ` log` for a log-type column.
    fn normalise(value: &str, log_suffix: bool) -> String {
        let v = value.trim().to_ascii_lowercase();
        match v.strip_suffix(" log") {
            Some(stem) if log_suffix => stem.trim_end().to_string(),
            _ => v,
        }
    }

    /// Whether `cell` is the wanted value; remembers what it saw.
    fn matches(&mut self, cell: &str) -> bool {
        let cell = cell.trim();
        let shown = excerpt(cell);
        if let Some(n) = self.seen.get_mut(shown.as_ref()) {
            *n += 1;
        } else if self.seen.len() < MAX_SHOWN_VALUES {
            self.seen.insert(shown.into_owned(), 1);
        } else {
            self.others += 1;
        }
        Wanted::normalise(cell, self.log_suffix) == self.key
    }

    /// `Model = "GPT-5"` (for messages).
    fn describe(&self) -> String {
        format!("{} = \"{}\"", self.name, excerpt(&self.value))
    }
}

/// The row filters a trace is read with; rows pass when every wanted column holds its wanted value.
pub(super) struct RowFilter {
    wanted: Vec<Wanted>,
    kept: usize,
    total: usize,
}

impl RowFilter {
    /// The filters `opts` asks for, located in a CSV header of `format`. A filter on a format without the column
    /// is an [`Error::InvalidConfig`] naming the format.
    pub(super) fn new(opts: &TraceOptions, format: TraceFormat, cells: &[String]) -> Result<RowFilter> {
        let mut wanted = Vec::new();
        for (value, column, option, log_suffix) in
            [(&opts.model, "Model", "model", false), (&opts.log_type, "Log Type", "log type", true)]
        {
            let Some(value) = value else { continue };
            let index = if format == TraceFormat::BurstGpt { find_column(cells, column)? } else { None };
            let Some(index) = index else {
                return Err(Error::config(format!(
                    "a {option} filter needs a BurstGPT trace with a \"{column}\" column; this trace is read as {}",
                    format.name()
                )));
            };
            let key = Wanted::normalise(value, log_suffix);
            if key.is_empty() {
                return Err(Error::config(format!("the {option} filter is empty")));
            }
            let name = cells[index].clone();
            wanted.push(Wanted {
                column: index,
                name,
                value: value.clone(),
                key,
                log_suffix,
                seen: BTreeMap::new(),
                others: 0,
            });
        }
        Ok(RowFilter { wanted, kept: 0, total: 0 })
    }

    /// True when there is nothing to filter.
    pub(super) fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// A filter that needs a column other than CSV (JSON lines) is refused.
    pub(super) fn refuse(opts: &TraceOptions, format: TraceFormat) -> Result<()> {
        if opts.model.is_some() || opts.log_type.is_some() {
            return Err(Error::config(format!(
                "model and log type filters need a BurstGPT CSV trace; this trace is read as {}",
                format.name()
            )));
        }
        Ok(())
    }

    /// Whether the row with these fields passes (`field(i)` is the row's cell in column `i`).
    pub(super) fn keep<'a>(&mut self, field: impl Fn(usize) -> &'a str) -> bool {
        self.total += 1;
        let mut pass = true;
        for w in &mut self.wanted {
            // Every filter sees every row, so the "no row matches" message lists all values present.
            pass &= w.matches(field(w.column));
        }
        self.kept += usize::from(pass);
        pass
    }

    /// The note on what was kept, or the error when no row passed. `None` without filters or without rows.
    pub(super) fn summary(&self) -> Result<Option<String>> {
        if self.wanted.is_empty() || self.total == 0 {
            return Ok(None);
        }
        let wanted: Vec<String> = self.wanted.iter().map(Wanted::describe).collect();
        if self.kept == 0 {
            let present: Vec<String> = self
                .wanted
                .iter()
                .map(|w| {
                    let mut values: Vec<String> = w.seen.iter().map(|(v, n)| format!("\"{v}\" ({n} rows)")).collect();
                    if w.others > 0 {
                        values.push(format!("{} rows with other values", w.others));
                    }
                    format!("{}: {}", w.name, values.join(", "))
                })
                .collect();
            return Err(Error::trace(format!(
                "no row has {} ({} rows read; values present: {})",
                wanted.join(" and "),
                self.total,
                present.join("; ")
            )));
        }
        Ok(Some(format!("kept {} of {} rows with {}", self.kept, self.total, wanted.join(" and "))))
    }
}
