//! Reading request traces from CSV text, with the format detected from the header.
//!
//! Four formats are recognised by their column names (ASCII case-insensitive, any order, extra columns ignored):
//!
//! | format | required columns | result |
//! |---|---|---|
//! | [`TraceFormat::VidurReplay`] | `arrived_at,num_prefill_tokens,num_decode_tokens` | [`TraceData::Timed`] |
//! | [`TraceFormat::Azure2023`] | `TIMESTAMP,ContextTokens,GeneratedTokens` | [`TraceData::Timed`] |
//! | [`TraceFormat::VidurLengths`] | `num_prefill_tokens,num_decode_tokens` | [`TraceData::Lengths`] |
//! | [`TraceFormat::LmsysWords`] | `question_length,answer_length` | [`TraceData::Lengths`] |
//!
//! Vidur's `arrived_at` is read as seconds and shifted so the first row arrives at 0 (with a warning when it did
//! not already); Azure's wall-clock `TIMESTAMP` becomes seconds since the first
//! row's timestamp. Rows must already be sorted by arrival: a timestamp earlier than the row before it is an
//! error, never silently re-sorted. Zero lengths are clamped to 1 with one aggregated warning per column.
//!
//! The reader is deliberately small: comma-separated, one record per line (`\n` or `\r\n`), an optional UTF-8
//! BOM, whitespace and one pair of double quotes around a cell tolerated, no quoted commas. Blank lines before
//! the header and after the last row are ignored; a blank line between rows is an error.

mod fields;
mod header;
#[cfg(test)]
mod tests;

use std::path::Path;

use super::{RequestSpec, Workload};
use crate::error::{Error, Result, check_positive};
use fields::{clean, parse_count, parse_seconds, parse_timestamp, too_large};
pub use header::{TraceFormat, detect_format};
use header::{layout, relocate};

/// Options for reading a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceOptions {
    /// Tokens per word for word-count columns; each length becomes `round(words × words_to_tokens)` (half away
    /// from zero). The default 1.0 keeps word counts as they are. Applies to [`TraceFormat::LmsysWords`], and to
    /// every format when [`TraceOptions::lengths_are_words`] is set.
    pub words_to_tokens: f64,
    /// Treat the length columns of any format as word counts (for example the bundled `lmsys_chat_1m_20k.csv`,
    /// whose Vidur-style `num_*_tokens` columns hold whitespace word counts).
    pub lengths_are_words: bool,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions { words_to_tokens: 1.0, lengths_are_words: false }
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

/// Parses CSV text into a workload or a length table; see the module docs for the formats and rules.
pub fn parse_trace(text: &str, opts: &TraceOptions) -> Result<TraceData> {
    check_positive("words_to_tokens", opts.words_to_tokens)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));
    let (header_line, header) = loop {
        match lines.next() {
            None => return Err(Error::trace("the trace is empty: no header line and no rows")),
            Some((_, l)) if l.trim().is_empty() => continue,
            Some(found) => break found,
        }
    };
    let layout = layout(header).map_err(|e| relocate(e, header_line))?;
    let timed = layout.format.is_timed();
    let factor = (layout.format.holds_word_counts() || opts.lengths_are_words).then_some(opts.words_to_tokens);
    let scale = factor.filter(|&f| f != 1.0);
    let first_len = usize::from(timed);
    let at = |line: usize, role: usize| format!("line {line}, column \"{}\"", layout.names[role]);

    let mut arrivals: Vec<f64> = Vec::new();
    let (mut prompt, mut output) = (Vec::new(), Vec::new());
    let mut zeros = [0usize; 2];
    let mut first_stamp: Option<(i64, f64)> = None;
    let mut previous: Option<(usize, &str, f64)> = None;
    let mut blank_since: Option<usize> = None;
    let mut cells = [""; 3];
    for (n, line) in lines {
        if line.trim().is_empty() {
            blank_since.get_or_insert(n);
            continue;
        }
        if let Some(b) = blank_since {
            return Err(Error::trace_at(format!("line {b}"), format!("blank line between rows (line {n} has data)")));
        }
        let mut width = 0;
        for (i, cell) in line.split(',').enumerate() {
            width += 1;
            if let Some(role) = layout.index.iter().position(|&c| c == i) {
                cells[role] = clean(cell);
            }
        }
        if width != layout.width {
            let w = layout.width;
            return Err(Error::trace_at(
                format!("line {n}"),
                format!("wrong number of fields: expected {w} as in the header (line {header_line}), found {width}"),
            ));
        }
        if timed {
            let raw = cells[0];
            let arrival = if layout.format == TraceFormat::Azure2023 {
                let (secs, frac) = parse_timestamp(raw).map_err(|r| Error::trace_at(at(n, 0), r))?;
                let (s0, f0) = *first_stamp.get_or_insert((secs, frac));
                (secs - s0) as f64 + (frac - f0)
            } else {
                parse_seconds(raw).map_err(|r| Error::trace_at(at(n, 0), r))?
            };
            if let Some((pn, praw, parrival)) = previous {
                if arrival < parrival {
                    return Err(Error::trace_at(
                        at(n, 0),
                        format!(
                            "timestamps go backwards: \"{}\" on line {n} is earlier than \"{}\" on line \
                             {pn}; the trace must be sorted by arrival time",
                            fields::excerpt(raw),
                            fields::excerpt(praw)
                        ),
                    ));
                }
            }
            previous = Some((n, raw, arrival));
            arrivals.push(arrival);
        }
        for (k, column) in [&mut prompt, &mut output].into_iter().enumerate() {
            let role = first_len + k;
            let raw = cells[role];
            let count = parse_count(raw).map_err(|r| Error::trace_at(at(n, role), r))?;
            let scaled = scale.map_or(count as f64, |f| (count as f64 * f).round());
            if scaled > f64::from(u32::MAX) {
                let after = scale.map(|f| format!(" (after scaling by {f})")).unwrap_or_default();
                return Err(Error::trace_at(at(n, role), too_large(raw) + &after));
            }
            let value = scaled as u32;
            if value == 0 {
                zeros[k] += 1;
            }
            column.push(value.max(1));
        }
    }
    if prompt.is_empty() {
        return Err(Error::trace_at(format!("line {header_line}"), "the trace has a header but no data rows"));
    }

    let mut warnings = Vec::new();
    for (k, &z) in zeros.iter().enumerate() {
        if z > 0 {
            let rows = if z == 1 { "row" } else { "rows" };
            let after = scale.map(|f| format!(" after scaling by {f}")).unwrap_or_default();
            warnings.push(format!("{z} {rows} had {} = 0{after}; clamped to 1", layout.names[first_len + k]));
        }
    }
    if !timed {
        return Ok(TraceData::Lengths(LengthTable { prompt, output, warnings }));
    }
    // Arrivals are seconds since the first row (Azure's timestamps are converted so already). Absolute times such
    // as epoch seconds would otherwise run the whole simulation near 1e9..1e15 s, where an f64 cannot resolve an
    // iteration (latencies and TTFT round to 0): shift them, and say so.
    if let Some(&first) = arrivals.first().filter(|&&a| a > 0.0) {
        for a in &mut arrivals {
            *a -= first;
        }
        warnings.push(format!(
            "arrival times shifted by -{first} s so that the first request arrives at 0 (the trace's \"{}\" \
             column starts at {first})",
            layout.names[0]
        ));
    }
    let requests = (0..prompt.len())
        .map(|i| RequestSpec {
            id: i as u64,
            arrival: arrivals[i],
            prompt_len: prompt[i],
            output_len: output[i],
            type_id: None,
        })
        .collect();
    Ok(TraceData::Timed(Workload { requests, warnings }))
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
