//! Collecting a trace's rows, whatever the file format, into a [`Workload`] or a [`LengthTable`].
//!
//! The CSV and JSON-lines readers hand each record's raw cells (arrival, prompt, output) to [`Rows::push`], which
//! parses them, checks the arrivals are sorted, counts zero lengths and failed requests, and [`Rows::finish`]
//! builds the result with its warnings.

use super::fields::{excerpt, parse_arrival, parse_count, parse_timestamp, too_large};
use super::header::ArrivalKind;
use super::{LengthTable, TraceData, TraceFormat};
use crate::error::{Error, Result};
use crate::workload::{RequestSpec, Workload};

/// What a record's cells mean.
pub(super) struct Schema {
    /// The trace's format, named in every value error.
    pub(super) format: TraceFormat,
    /// What a cell is called in a location: `column` (CSV) or `key` (JSON lines).
    pub(super) field: &'static str,
    /// How the arrival cell is written; `None` for a length-only trace.
    pub(super) arrival: Option<ArrivalKind>,
    /// The cells' names as the file spells them: the arrival (when timed), then prompt, then output.
    pub(super) names: Vec<String>,
    /// Tokens per word when the lengths are word counts and the factor is not 1.
    pub(super) scale: Option<f64>,
    /// Drop rows whose output length is 0 (BurstGPT's failed requests) instead of clamping them to 1.
    pub(super) drop_zero_output: bool,
}

/// The rows read so far.
pub(super) struct Rows {
    schema: Schema,
    /// Arrival per row: in the column's unit for numbers, seconds since the first row for wall-clock stamps.
    arrivals: Vec<f64>,
    prompt: Vec<u32>,
    output: Vec<u32>,
    /// Rows whose prompt / output length was 0 (clamped to 1).
    zeros: [usize; 2],
    /// Rows dropped for a 0 output length.
    dropped: usize,
    /// The first row's wall-clock stamp (whole seconds, fraction).
    first_stamp: Option<(i64, f64)>,
    /// The previous row: line, arrival cell (an excerpt) and arrival.
    previous: Option<(usize, String, f64)>,
}

impl Rows {
    /// No rows yet.
    pub(super) fn new(schema: Schema) -> Rows {
        Rows {
            schema,
            arrivals: Vec::new(),
            prompt: Vec::new(),
            output: Vec::new(),
            zeros: [0; 2],
            dropped: 0,
            first_stamp: None,
            previous: None,
        }
    }

    /// Number of cells a record gives: [`Schema::names`]'s length.
    pub(super) fn width(&self) -> usize {
        self.schema.names.len()
    }

    /// The name of the cell of role `role` (an index into [`Schema::names`]).
    pub(super) fn name(&self, role: usize) -> &str {
        &self.schema.names[role]
    }

    /// An error at `line` in the cell of role `role` (an index into [`Schema::names`]), naming the format.
    pub(super) fn error(&self, line: usize, role: usize, reason: &str) -> Error {
        let s = &self.schema;
        Error::trace_at(
            format!("line {line}, {} \"{}\"", s.field, excerpt(&s.names[role])),
            format!("{reason} ({} format)", s.format.name()),
        )
    }

    /// Parses one record's cells (in [`Schema::names`] order) and keeps the row, or drops it as a failed request.
    pub(super) fn push(&mut self, line: usize, cells: &[&str]) -> Result<()> {
        let first_len = usize::from(self.schema.arrival.is_some());
        if let Some(kind) = self.schema.arrival {
            let raw = cells[0];
            let arrival = match kind {
                ArrivalKind::WallClock => {
                    let (secs, frac) = parse_timestamp(raw).map_err(|r| self.error(line, 0, &r))?;
                    let (s0, f0) = *self.first_stamp.get_or_insert((secs, frac));
                    (secs - s0) as f64 + (frac - f0)
                }
                ArrivalKind::Number(unit) => parse_arrival(raw, unit).map_err(|r| self.error(line, 0, &r))?,
            };
            if let Some((pn, praw, parrival)) = &self.previous {
                if arrival < *parrival {
                    let reason = format!(
                        "timestamps go backwards: \"{}\" on line {line} is earlier than \"{praw}\" on line {pn}; the \
                         trace must be sorted by arrival time",
                        excerpt(raw)
                    );
                    return Err(self.error(line, 0, &reason));
                }
            }
            self.previous = Some((line, excerpt(raw).into_owned(), arrival));
            self.arrivals.push(arrival);
        }
        let mut lengths = [0u32; 2];
        for (k, length) in lengths.iter_mut().enumerate() {
            let role = first_len + k;
            let raw = cells[role];
            let count = parse_count(raw).map_err(|r| self.error(line, role, &r))?;
            let scaled = self.schema.scale.map_or(count as f64, |f| (count as f64 * f).round());
            if scaled > f64::from(u32::MAX) {
                let after = self.schema.scale.map(|f| format!(" (after scaling by {f})")).unwrap_or_default();
                return Err(self.error(line, role, &(too_large(raw) + &after)));
            }
            *length = scaled as u32;
        }
        if self.schema.drop_zero_output && lengths[1] == 0 {
            self.dropped += 1;
            if first_len == 1 {
                self.arrivals.pop();
            }
            return Ok(());
        }
        for (k, (column, length)) in [&mut self.prompt, &mut self.output].into_iter().zip(lengths).enumerate() {
            self.zeros[k] += usize::from(length == 0);
            column.push(length.max(1));
        }
        Ok(())
    }

    /// The trace: a workload when timed (arrivals shifted to start at 0, with a warning when they did not), a
    /// length table otherwise. `header_line` locates the error for a trace without rows; `notes` are extra
    /// warnings (the filters' summary), listed last.
    pub(super) fn finish(self, header_line: usize, notes: Vec<String>) -> Result<TraceData> {
        let s = &self.schema;
        let first_len = usize::from(s.arrival.is_some());
        if self.prompt.is_empty() {
            let reason = if self.dropped > 0 {
                let output = &s.names[first_len + 1];
                format!(
                    "every data row ({}) has {output} = 0 (failed requests, dropped): no request left",
                    self.dropped
                )
            } else {
                "the trace has a header but no data rows".to_string()
            };
            return Err(Error::trace_at(format!("line {header_line}"), reason));
        }
        let mut warnings = Vec::new();
        for (k, &z) in self.zeros.iter().enumerate() {
            if z > 0 {
                let rows = if z == 1 { "row" } else { "rows" };
                let after = s.scale.map(|f| format!(" after scaling by {f}")).unwrap_or_default();
                warnings.push(format!("{z} {rows} had {} = 0{after}; clamped to 1", s.names[first_len + k]));
            }
        }
        if self.dropped > 0 {
            let rows = if self.dropped == 1 { "row" } else { "rows" };
            let output = &s.names[first_len + 1];
            warnings.push(format!("dropped {} {rows} with {output} = 0 (failed requests)", self.dropped));
        }
        let Some(kind) = s.arrival else {
            warnings.extend(notes);
            return Ok(TraceData::Lengths(LengthTable { prompt: self.prompt, output: self.output, warnings }));
        };
        // Arrivals become seconds since the first kept row (wall-clock stamps are converted so already). Absolute
        // times such as epoch seconds would otherwise run the whole simulation near 1e9..1e15 s, where an f64
        // cannot resolve an iteration (latencies and TTFT round to 0): shift them, and say so. The shift is done
        // in the column's own unit, exact for whole numbers below 2^53.
        let mut arrivals = self.arrivals;
        let (first, seconds) = match kind {
            ArrivalKind::WallClock => (0.0, 1.0),
            ArrivalKind::Number(unit) => (arrivals[0], unit.seconds()),
        };
        if first > 0.0 {
            let unit = match kind {
                ArrivalKind::Number(unit) => unit.symbol(),
                ArrivalKind::WallClock => "s",
            };
            warnings.push(format!(
                "arrival times shifted by -{first} {unit} so that the first request arrives at 0 (the trace's \"{}\" \
                 {} starts at {first})",
                s.names[0], s.field
            ));
        }
        if first > 0.0 || seconds != 1.0 {
            for a in &mut arrivals {
                *a = (*a - first) * seconds;
            }
        }
        warnings.extend(notes);
        let requests = (0..self.prompt.len())
            .map(|i| RequestSpec {
                id: i as u64,
                arrival: arrivals[i],
                prompt_len: self.prompt[i],
                output_len: self.output[i],
                type_id: None,
            })
            .collect();
        Ok(TraceData::Timed(Workload { requests, warnings }))
    }
}
