//! Trace headers: the known formats, their required columns, and matching a header line against them.

use super::columns::{ColumnMap, TimeUnit};
use super::fields::excerpt;
use crate::error::{Error, Result};

/// A trace format, recognised from the header (CSV) or the first record (JSON lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceFormat {
    /// Vidur's `trace_replay` input: `arrived_at` (seconds), `num_prefill_tokens`, `num_decode_tokens`.
    VidurReplay,
    /// Azure LLM inference trace 2023: `TIMESTAMP` (wall clock), `ContextTokens`, `GeneratedTokens`.
    Azure2023,
    /// BurstGPT (HPMLL/BurstGPT): `Timestamp` (seconds from the trace start), `Model`, `Request tokens`,
    /// `Response tokens`, `Total tokens`, `Log Type`. Rows with 0 response tokens (failed requests) are dropped.
    BurstGpt,
    /// Vidur's length-only traces: `num_prefill_tokens`, `num_decode_tokens` (other columns ignored).
    VidurLengths,
    /// LMSYS-Chat-1M statistics from the WAIT authors' fork: `question_length`, `answer_length` (word counts).
    LmsysWords,
    /// Mooncake's JSON-lines traces (kvcache-ai/Mooncake): one object per line with `timestamp` (milliseconds),
    /// `input_length`, `output_length` (other keys, such as `hash_ids`, ignored).
    Mooncake,
    /// Columns named by a [`ColumnMap`](super::ColumnMap) rather than recognised (CSV or JSON lines).
    Custom,
}

/// How an arrival column is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArrivalKind {
    /// A number of seconds, milliseconds or microseconds.
    Number(TimeUnit),
    /// A wall-clock timestamp `YYYY-MM-DD HH:MM:SS[.fraction]`.
    WallClock,
}

impl TraceFormat {
    /// The CSV formats recognised from a header, in detection priority order (a header matching several picks
    /// the first). [`TraceFormat::Mooncake`] is recognised from a JSON first line instead, and
    /// [`TraceFormat::Custom`] is never detected.
    pub const ALL: [TraceFormat; 5] = [
        TraceFormat::VidurReplay,
        TraceFormat::Azure2023,
        TraceFormat::BurstGpt,
        TraceFormat::VidurLengths,
        TraceFormat::LmsysWords,
    ];

    /// The required columns (JSON keys for Mooncake): the arrival column first for timed formats, then prompt,
    /// then output length. Empty for [`TraceFormat::Custom`].
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            TraceFormat::VidurReplay => &["arrived_at", "num_prefill_tokens", "num_decode_tokens"],
            TraceFormat::Azure2023 => &["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
            TraceFormat::BurstGpt => &["Timestamp", "Request tokens", "Response tokens"],
            TraceFormat::VidurLengths => &["num_prefill_tokens", "num_decode_tokens"],
            TraceFormat::LmsysWords => &["question_length", "answer_length"],
            TraceFormat::Mooncake => &["timestamp", "input_length", "output_length"],
            TraceFormat::Custom => &[],
        }
    }

    /// A short human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            TraceFormat::VidurReplay => "Vidur replay",
            TraceFormat::Azure2023 => "Azure 2023",
            TraceFormat::BurstGpt => "BurstGPT",
            TraceFormat::VidurLengths => "Vidur lengths",
            TraceFormat::LmsysWords => "LMSYS word counts",
            TraceFormat::Mooncake => "Mooncake JSONL",
            TraceFormat::Custom => "custom columns",
        }
    }

    /// True when the format carries arrival times ([`TraceFormat::Custom`]: false here; it is timed when its
    /// column map names an arrival column).
    pub fn is_timed(self) -> bool {
        self.arrival().is_some()
    }

    /// True when the length columns hold word counts rather than tokens.
    pub fn holds_word_counts(self) -> bool {
        self == TraceFormat::LmsysWords
    }

    /// How the format writes its arrival column, if it has one.
    pub(super) fn arrival(self) -> Option<ArrivalKind> {
        match self {
            TraceFormat::VidurReplay | TraceFormat::BurstGpt => Some(ArrivalKind::Number(TimeUnit::Seconds)),
            TraceFormat::Mooncake => Some(ArrivalKind::Number(TimeUnit::Milliseconds)),
            TraceFormat::Azure2023 => Some(ArrivalKind::WallClock),
            TraceFormat::VidurLengths | TraceFormat::LmsysWords | TraceFormat::Custom => None,
        }
    }
}

/// Where the columns a request needs sit in a CSV header, and how to read them.
pub(super) struct Layout {
    /// The matched format.
    pub(super) format: TraceFormat,
    /// How the arrival column is written; `None` for a length-only trace.
    pub(super) arrival: Option<ArrivalKind>,
    /// Column index of each needed column: the arrival column (when timed), then prompt, then output.
    pub(super) index: Vec<usize>,
    /// Column names as the header spells them, in the same order.
    pub(super) names: Vec<String>,
    /// Number of fields every row must have.
    pub(super) width: usize,
}

/// Recognises the format of a header line (the first line of a trace): a CSV header, or a JSON object with
/// Mooncake's keys.
pub fn detect_format(header: &str) -> Result<TraceFormat> {
    let header = header.strip_prefix('\u{feff}').unwrap_or(header).trim_end_matches(['\r', '\n']);
    if header.trim_start().starts_with('{') {
        return super::jsonl::detect(header);
    }
    layout(&super::csv_rows::split_line(header)).map(|l| l.format)
}

/// `header found: [a, b, ...]`: at most 20 cells, each cut to a short excerpt, so a huge header never fills the
/// message.
pub(super) fn header_found(cells: &[String]) -> String {
    let shown: Vec<_> = cells.iter().take(20).map(|c| excerpt(c)).collect();
    let more = cells.len().saturating_sub(20);
    let more = if more > 0 { format!(", … ({more} more)") } else { String::new() };
    format!("header found: [{}{more}]", shown.join(", "))
}

/// The index of column `name` (ASCII case-insensitive) in `cells`: `None` when absent, an error when it appears
/// twice.
pub(super) fn find_column(cells: &[String], name: &str) -> Result<Option<usize>> {
    let Some(i) = cells.iter().position(|c| c.eq_ignore_ascii_case(name)) else {
        return Ok(None);
    };
    if let Some(j) = cells[i + 1..].iter().position(|c| c.eq_ignore_ascii_case(name)) {
        let (a, b) = (i + 1, i + j + 2);
        let name = excerpt(name);
        return Err(Error::trace_at("line 1", format!("column \"{name}\" appears twice (columns {a} and {b})")));
    }
    Ok(Some(i))
}

/// Matches a header (its cells, unquoted and trimmed) against the known formats.
pub(super) fn layout(cells: &[String]) -> Result<Layout> {
    let present = |name: &str| cells.iter().any(|c| c.eq_ignore_ascii_case(name));
    // Pick the format with every column present; otherwise the closest one, to name what is missing.
    let mut best: Option<(TraceFormat, usize)> = None;
    for format in TraceFormat::ALL {
        let cols = format.columns();
        let hits = cols.iter().filter(|c| present(c)).count();
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
                "unrecognised header; {}; accepted header sets (any order, extra columns ignored): {}; for any \
                 other layout name the columns (columns={{\"arrival\": ..., \"prompt\": ..., \"output\": ...}} / \
                 --columns arrival=COL,prompt=COL,output=COL)",
                header_found(cells),
                accepted.join("; ")
            ),
        ));
    };
    let (mut index, mut names) = (Vec::new(), Vec::new());
    for &col in format.columns() {
        let Some(i) = find_column(cells, col)? else {
            return Err(Error::trace_at(
                "line 1",
                format!("missing required column \"{col}\" for the {} format; {}", format.name(), header_found(cells)),
            ));
        };
        index.push(i);
        names.push(cells[i].clone());
    }
    Ok(Layout { format, arrival: format.arrival(), index, names, width: cells.len() })
}

/// The layout of a CSV header whose columns a [`ColumnMap`] names (ASCII case-insensitive).
pub(super) fn custom_layout(cells: &[String], map: &ColumnMap) -> Result<Layout> {
    let (mut index, mut names) = (Vec::new(), Vec::new());
    for (role, col) in map.roles() {
        let Some(i) = find_column(cells, col)? else {
            return Err(Error::trace_at(
                "line 1",
                format!(
                    "column \"{}\" ({role}= of the custom columns) is not in the header; {}",
                    excerpt(col),
                    header_found(cells)
                ),
            ));
        };
        index.push(i);
        names.push(cells[i].clone());
    }
    let arrival = map.arrival.as_ref().map(|_| ArrivalKind::Number(map.unit));
    Ok(Layout { format: TraceFormat::Custom, arrival, index, names, width: cells.len() })
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
