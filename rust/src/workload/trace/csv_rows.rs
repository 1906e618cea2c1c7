//! Reading CSV traces: RFC 4180 records (quoted fields with commas, doubled quotes and line breaks; `\n`,
//! `\r\n` or `\r` line ends) through the `csv` crate, with line numbers counted from the text itself so every
//! error can name the line a record starts on.

use super::fields::clean;
use super::filter::RowFilter;
use super::header::{Layout, custom_layout, layout, relocate};
use super::rows::{Rows, Schema};
use super::{TraceData, TraceFormat, TraceOptions};
use crate::error::{Error, Result};

/// The cells of one CSV line (a header), unquoted and trimmed.
pub(super) fn split_line(line: &str) -> Vec<String> {
    let mut records = Records::new(line);
    match records.next() {
        Ok(Some(_)) => records.cells(),
        _ => Vec::new(),
    }
}

/// Line numbers of byte offsets, counted forwards: `\r\n`, `\n` and a lone `\r` each end a line.
struct LineIndex<'a> {
    bytes: &'a [u8],
    /// Offset up to which line ends have been counted.
    pos: usize,
    /// 1-based line number at `pos`.
    line: usize,
}

impl LineIndex<'_> {
    /// The 1-based line holding the byte at `offset` (offsets are asked for in increasing order; an earlier one
    /// restarts the count).
    fn line_at(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.bytes.len());
        if offset < self.pos {
            (self.pos, self.line) = (0, 1);
        }
        for i in self.pos..offset {
            let ends_line = match self.bytes[i] {
                b'\n' => true,
                b'\r' => self.bytes.get(i + 1) != Some(&b'\n'),
                _ => false,
            };
            self.line += usize::from(ends_line);
        }
        self.pos = offset;
        self.line
    }
}

/// A CSV reader over a whole text that knows the lines each record spans.
struct Records<'a> {
    reader: csv::Reader<&'a [u8]>,
    lines: LineIndex<'a>,
    record: csv::StringRecord,
}

impl<'a> Records<'a> {
    fn new(text: &'a str) -> Records<'a> {
        let reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
        Records {
            reader,
            lines: LineIndex { bytes: text.as_bytes(), pos: 0, line: 1 },
            record: csv::StringRecord::new(),
        }
    }

    /// Reads the next record: the lines it starts and ends on, or `None` at the end. Empty lines are skipped
    /// (the gap shows in the line numbers).
    fn next(&mut self) -> Result<Option<(usize, usize)>> {
        match self.reader.read_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(Error::trace(format!("cannot read the CSV: {e}"))),
        }
        let bytes = self.lines.bytes;
        // The record's position is where reading began: skip the empty lines the reader passed over.
        let mut start = self.record.position().map_or(0, |p| p.byte() as usize).min(bytes.len());
        while start < bytes.len() && matches!(bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        // The reader stops after the record's line end (when it has one): step back over it.
        let mut end = (self.reader.position().byte() as usize).clamp(start, bytes.len());
        if end > start && bytes[end - 1] == b'\n' {
            end -= 1;
        }
        if end > start && bytes[end - 1] == b'\r' {
            end -= 1;
        }
        let first = self.lines.line_at(start);
        Ok(Some((first, self.lines.line_at(end))))
    }

    /// True when the record is a line of whitespace only.
    fn is_blank(&self) -> bool {
        self.record.len() == 1 && self.record[0].trim().is_empty()
    }

    /// The record's cells, unquoted and trimmed.
    fn cells(&self) -> Vec<String> {
        self.record.iter().map(|c| clean(c).to_string()).collect()
    }
}

/// Reads a CSV trace: the format from its header, or the columns `opts.columns` names.
pub(super) fn read_csv(text: &str, opts: &TraceOptions) -> Result<TraceData> {
    let mut records = Records::new(text);
    let (header_line, header_end) = loop {
        match records.next()? {
            None => return Err(Error::trace("the trace is empty: no header line and no rows")),
            Some(_) if records.is_blank() => continue,
            Some(span) => break span,
        }
    };
    let cells = records.cells();
    let found = match &opts.columns {
        Some(map) => custom_layout(&cells, map),
        None => layout(&cells),
    };
    let layout = found.map_err(|e| relocate(e, header_line))?;
    let mut filter = RowFilter::new(opts, layout.format, &cells).map_err(|e| relocate(e, header_line))?;
    let mut rows = Rows::new(schema(&layout, opts));
    let mut previous_end = header_end;
    let mut blank_since: Option<usize> = None;
    while let Some((start, end)) = records.next()? {
        if records.is_blank() {
            blank_since.get_or_insert(start);
            previous_end = end;
            continue;
        }
        if let Some(b) = blank_since.or((start > previous_end + 1).then_some(previous_end + 1)) {
            return Err(Error::trace_at(
                format!("line {b}"),
                format!("blank line between rows (line {start} has data)"),
            ));
        }
        previous_end = end;
        let record = &records.record;
        if record.len() != layout.width {
            let (w, found) = (layout.width, record.len());
            let spans = if end > start {
                format!(" (the record runs from line {start} to line {end}: a double quote that is never closed?)")
            } else {
                String::new()
            };
            return Err(Error::trace_at(
                format!("line {start}"),
                format!(
                    "wrong number of fields: expected {w} as in the header (line {header_line}), found {found}{spans}"
                ),
            ));
        }
        if !filter.is_empty() && !filter.keep(|i| &record[i]) {
            continue;
        }
        let cells: Vec<&str> = layout.index.iter().map(|&i| clean(&record[i])).collect();
        rows.push(start, &cells)?;
    }
    let notes = filter.summary()?;
    rows.finish(header_line, notes.into_iter().collect())
}

/// What the cells of a CSV trace with this layout mean.
fn schema(layout: &Layout, opts: &TraceOptions) -> Schema {
    let words = layout.format.holds_word_counts() || opts.lengths_are_words;
    Schema {
        format: layout.format,
        field: "column",
        arrival: layout.arrival,
        names: layout.names.clone(),
        scale: words.then_some(opts.words_to_tokens).filter(|&f| f != 1.0),
        drop_zero_output: layout.format == TraceFormat::BurstGpt,
    }
}
