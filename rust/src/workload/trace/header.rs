//! Trace headers: the known formats, their required columns, and matching a header line against them.

use super::fields::clean;
use crate::error::{Error, Result};

/// A trace format, recognised from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceFormat {
    /// Vidur's `trace_replay` input: `arrived_at` (seconds), `num_prefill_tokens`, `num_decode_tokens`.
    VidurReplay,
    /// Azure LLM inference trace 2023: `TIMESTAMP` (wall clock), `ContextTokens`, `GeneratedTokens`.
    Azure2023,
    /// Vidur's length-only traces: `num_prefill_tokens`, `num_decode_tokens` (other columns ignored).
    VidurLengths,
    /// LMSYS-Chat-1M statistics from the WAIT authors' fork: `question_length`, `answer_length` (word counts).
    LmsysWords,
}

impl TraceFormat {
    /// All formats, in detection priority order (a header matching several picks the first).
    pub const ALL: [TraceFormat; 4] =
        [TraceFormat::VidurReplay, TraceFormat::Azure2023, TraceFormat::VidurLengths, TraceFormat::LmsysWords];

    /// The required columns: the arrival column first for timed formats, then prompt, then output length.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            TraceFormat::VidurReplay => &["arrived_at", "num_prefill_tokens", "num_decode_tokens"],
            TraceFormat::Azure2023 => &["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
            TraceFormat::VidurLengths => &["num_prefill_tokens", "num_decode_tokens"],
            TraceFormat::LmsysWords => &["question_length", "answer_length"],
        }
    }

    /// A short human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            TraceFormat::VidurReplay => "Vidur replay",
            TraceFormat::Azure2023 => "Azure 2023",
            TraceFormat::VidurLengths => "Vidur lengths",
            TraceFormat::LmsysWords => "LMSYS word counts",
        }
    }

    /// True when the format carries arrival times.
    pub fn is_timed(self) -> bool {
        matches!(self, TraceFormat::VidurReplay | TraceFormat::Azure2023)
    }

    /// True when the length columns hold word counts rather than tokens.
    pub fn holds_word_counts(self) -> bool {
        self == TraceFormat::LmsysWords
    }
}

/// The required columns' positions within a header.
pub(super) struct Layout {
    /// The matched format.
    pub(super) format: TraceFormat,
    /// Column index of each required column, in [`TraceFormat::columns`] order.
    pub(super) index: Vec<usize>,
    /// Column names as the header spells them, in the same order.
    pub(super) names: Vec<String>,
    /// Number of fields every row must have.
    pub(super) width: usize,
}

/// Recognises the format of a header line (the first line of a trace).
pub fn detect_format(header: &str) -> Result<TraceFormat> {
    let header = header.strip_prefix('\u{feff}').unwrap_or(header);
    layout(header.trim_end_matches(['\r', '\n'])).map(|l| l.format)
}

/// Matches a header against the known formats.
pub(super) fn layout(header: &str) -> Result<Layout> {
    let cells: Vec<&str> = header.split(',').map(clean).collect();
    let found = || {
        // At most 20 cells, each cut to a short excerpt: a huge header (or a CR-only file) never fills the message.
        let shown: Vec<_> = cells.iter().take(20).map(|c| super::fields::excerpt(c)).collect();
        let more = cells.len().saturating_sub(20);
        let more = if more > 0 { format!(", … ({more} more)") } else { String::new() };
        format!("header found: [{}{more}]", shown.join(", "))
    };
    let position = |name: &str| cells.iter().position(|c| c.eq_ignore_ascii_case(name));
    // Pick the format with every column present; otherwise the closest one, to name what is missing.
    let mut best: Option<(TraceFormat, usize)> = None;
    for format in TraceFormat::ALL {
        let cols = format.columns();
        let hits = cols.iter().filter(|c| position(c).is_some()).count();
        if hits == cols.len() {
            best = Some((format, hits));
            break;
        }
        let better = |(f, h): (TraceFormat, usize)| {
            hits * f.columns().len() > h * cols.len() || (hits > h && hits * f.columns().len() == h * cols.len())
        };
        if hits > 0 && best.is_none_or(better) {
            best = Some((format, hits));
        }
    }
    let Some((format, _)) = best else {
        let accepted: Vec<String> =
            TraceFormat::ALL.iter().map(|f| format!("{} ({})", f.columns().join(","), f.name())).collect();
        return Err(Error::trace_at(
            "line 1",
            format!(
                "unrecognised header; {}; accepted header sets (any order, extra columns ignored): {}",
                found(),
                accepted.join("; ")
            ),
        ));
    };
    let (mut index, mut names) = (Vec::new(), Vec::new());
    for &col in format.columns() {
        let Some(i) = position(col) else {
            return Err(Error::trace_at(
                "line 1",
                format!("missing required column \"{col}\" for the {} format; {}", format.name(), found()),
            ));
        };
        if let Some(j) = cells[i + 1..].iter().position(|c| c.eq_ignore_ascii_case(col)) {
            let (a, b) = (i + 1, i + j + 2);
            return Err(Error::trace_at("line 1", format!("column \"{col}\" appears twice (columns {a} and {b})")));
        }
        index.push(i);
        names.push(cells[i].to_string());
    }
    Ok(Layout { format, index, names, width: cells.len() })
}

/// Moves a header error from the default `line 1` to the header's real line.
pub(super) fn relocate(err: Error, line: usize) -> Error {
    match err {
        Error::InvalidTrace { location: Some(_), reason } if line != 1 => {
            Error::trace_at(format!("line {line}"), reason)
        }
        other => other,
    }
}
