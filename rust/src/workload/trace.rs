//! Reading request traces (CSV or JSON lines), with the format detected from the content.
//!
//! CSV formats are recognised by their column names (ASCII case-insensitive, any order, extra columns ignored);
//! a file whose first non-blank line opens a JSON object is read as JSON lines:
//!
//! | format | required columns / keys | result |
//! |---|---|---|
//! | [`TraceFormat::VidurReplay`] | `arrived_at,num_prefill_tokens,num_decode_tokens` | [`TraceData::Timed`] |
//! | [`TraceFormat::Azure2023`] | `TIMESTAMP,ContextTokens,GeneratedTokens` | [`TraceData::Timed`] |
//! | [`TraceFormat::BurstGpt`] | `Timestamp,Request tokens,Response tokens` (`Model`, `Log Type` to filter) | [`TraceData::Timed`] |
//! | [`TraceFormat::VidurLengths`] | `num_prefill_tokens,num_decode_tokens` | [`TraceData::Lengths`] |
//! | [`TraceFormat::LmsysWords`] | `question_length,answer_length` | [`TraceData::Lengths`] |
//! | [`TraceFormat::Mooncake`] | JSON lines with `timestamp` (ms), `input_length`, `output_length` | [`TraceData::Timed`] |
//! | [`TraceFormat::Custom`] | the columns or keys a [`ColumnMap`] names | either |
//!
//! Numeric arrivals (Vidur's and BurstGPT's seconds, Mooncake's milliseconds) are shifted so the first row
//! arrives at 0 (with a warning when it did not already); Azure's wall-clock `TIMESTAMP` becomes seconds since
//! the first row's timestamp. Rows must already be sorted by arrival: a timestamp earlier than the row before it
//! is an error, never silently re-sorted. Zero lengths are clamped to 1 with one aggregated warning per column,
//! except BurstGPT's zero `Response tokens` (failed requests), whose rows are dropped with a warning counting
//! them. A quoted number may hold thousands separators (`"1,000"`), which are removed; a comma anywhere else in
//! a number is an error.
//!
//! CSV is read as RFC 4180 by the `csv` crate: quoted fields (with commas, doubled quotes `""` or line breaks),
//! quoted headers, `\n`, `\r\n` or `\r` line ends, an optional UTF-8 BOM; whitespace and one pair of double
//! quotes around a cell are trimmed. Blank lines before the header and after the last row are ignored; a blank
//! line between rows is an error. Every error names the line (of the record's start), the column or key and the
//! format, and quotes at most a short excerpt of the input.

mod columns;
mod csv_rows;
mod fields;
mod filter;
mod header;
mod jsonl;
mod rows;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_formats;

use std::path::Path;

#[cfg(test)]
use super::RequestSpec;
use super::Workload;
use crate::error::{Error, Result, check_positive};
pub use columns::{ColumnMap, TimeUnit};
pub use header::{TraceFormat, detect_format};

/// Options for reading a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceOptions {
    /// Tokens per word for word-count columns; each length becomes `round(words × words_to_tokens)` (half away
    /// from zero). The default 1.0 keeps word counts as they are. Applies to [`TraceFormat::LmsysWords`], and to
    /// every format when [`TraceOptions::lengths_are_words`] is set.
    pub words_to_tokens: f64,
    /// Treat the length columns of any format as word counts (for example the bundled `lmsys_chat_1m_20k.csv`,
    /// whose Vidur-style `num_*_tokens` columns hold whitespace word counts).
    pub lengths_are_words: bool,
    /// Keep only the rows whose `Model` is this (BurstGPT, e.g. `ChatGPT` or `GPT-4`; ASCII case-insensitive).
    /// Any other format is refused with [`Error::InvalidConfig`].
    pub model: Option<String>,
    /// Keep only the rows whose `Log Type` is this (BurstGPT: `Conversation log` or `API log`; ASCII
    /// case-insensitive, the trailing ` log` optional: `api`). Any other format is refused.
    pub log_type: Option<String>,
    /// Read these columns (CSV) or keys (JSON lines) instead of detecting the format.
    pub columns: Option<ColumnMap>,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions { words_to_tokens: 1.0, lengths_are_words: false, model: None, log_type: None, columns: None }
    }
}

/// Prompt and output lengths without arrival times, to be paired with an arrival process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LengthTable {
    /// Prompt lengths in tokens (>= 1), one per row.
    pub prompt: Vec<u32>,
    /// Output lengths in tokens (>= 1), one per row, same length as `prompt`.
    pub output: Vec<u32>,
    /// Non-fatal problems found while reading (for example lengths clamped from 0 to 1).
    pub warnings: Vec<String>,
}

impl LengthTable {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.prompt.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.prompt.is_empty()
    }

    /// Checks that the table has rows, equal column lengths, and lengths >= 1.
    pub fn validate(&self) -> Result<()> {
        if self.prompt.len() != self.output.len() {
            let (p, o) = (self.prompt.len(), self.output.len());
            return Err(Error::trace(format!("length table has {p} prompt lengths but {o} output lengths")));
        }
        if self.is_empty() {
            return Err(Error::trace("length table has no rows"));
        }
        for (column, values) in [("prompt", &self.prompt), ("output", &self.output)] {
            if let Some(row) = values.iter().position(|&v| v == 0) {
                return Err(Error::trace_at(format!("row {row}"), format!("{column} length is 0; must be >= 1")));
            }
        }
        Ok(())
    }
}

/// What a trace file holds: a ready-to-replay workload, or lengths that still need arrival times.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceData {
    /// A trace with arrival times (ids are the row order, from 0).
    Timed(Workload),
    /// A length-only trace.
    Lengths(LengthTable),
}

impl TraceData {
    /// Number of requests (rows).
    pub fn len(&self) -> usize {
        match self {
            TraceData::Timed(w) => w.requests.len(),
            TraceData::Lengths(t) => t.len(),
        }
    }

    /// True when there are no rows (never the case for a successfully parsed trace).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The warnings raised while reading.
    pub fn warnings(&self) -> &[String] {
        match self {
            TraceData::Timed(w) => &w.warnings,
            TraceData::Lengths(t) => &t.warnings,
        }
    }
}

/// Parses trace text (CSV or JSON lines) into a workload or a length table; see the module docs for the formats
/// and rules.
pub fn parse_trace(text: &str, opts: &TraceOptions) -> Result<TraceData> {
    check_positive("words_to_tokens", opts.words_to_tokens)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first_line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    if first_line.trim_start().starts_with('{') {
        jsonl::read_jsonl(text, opts)
    } else {
        csv_rows::read_csv(text, opts)
    }
}

/// Reads and parses a trace file; errors name the path.
pub fn read_trace_file(path: &Path, opts: &TraceOptions) -> Result<TraceData> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| Error::trace(format!("cannot read {shown}: {e}")))?;
    parse_trace(&text, opts).map_err(|e| match e {
        Error::InvalidTrace { location, reason } => Error::InvalidTrace {
            location: Some(location.map_or_else(|| shown.to_string(), |l| format!("{shown}, {l}"))),
            reason,
        },
        other => other,
    })
}
