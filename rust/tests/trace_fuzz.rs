//! Property tests standing in for a fuzz target of the trace readers (`cargo fuzz run` needs a nightly
//! toolchain and a new dependency, `libfuzzer-sys`; the project builds on stable only). Generated CSV text:
//! valid headers of every format with random mutations (dropped, duplicated, renamed, reordered and extra
//! columns), cells that are valid, negative, NaN, infinite, huge, fractional, quoted, empty or text, unsorted
//! timestamps, blank lines, a BOM, CRLF line ends, truncated and over-long rows, and fully random text and bytes;
//! and JSON lines with Mooncake's keys mutated (missing, renamed, null, array, string and out-of-range values).
//!
//! `parse_trace` must never panic, and must return either a trace that validates (sorted arrivals, lengths ≥ 1)
//! or an `InvalidTrace` / `InvalidConfig` error with a non-empty message. `read_trace_file` must do the same on
//! files of random bytes (not UTF-8 included), naming the path in its error.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use fluidsched_core::Error;
use fluidsched_core::workload::{TraceData, TraceFormat, TraceOptions, parse_trace, read_trace_file};
use proptest::prelude::*;

use common::proptest_config;

/// A numeric-looking or garbage cell.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u32..5000).prop_map(|x| x.to_string()),
        1 => (0u32..500).prop_map(|x| format!("{x}.0")),
        1 => Just("-3".to_string()),
        1 => Just("NaN".to_string()),
        1 => Just("inf".to_string()),
        1 => Just("-inf".to_string()),
        1 => Just("1e300".to_string()),
        1 => Just("4294967296".to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => Just("2.5".to_string()),
        1 => Just(String::new()),
        1 => (0u32..100).prop_map(|x| format!(" \"{x}\" ")),
        1 => "[a-zA-Z ]{1,8}",
        1 => any::<String>().prop_map(|s| s.chars().filter(|c| *c != ',' && *c != '\n').take(6).collect()),
    ]
}

/// A timestamp cell: Azure wall clock (valid or broken) or seconds.
fn stamp() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..86_400, 0u32..1_000_000).prop_map(|(s, f)| format!("2023-11-16 {:02}:{:02}:{:02}.{f:06}", s / 3600, s / 60 % 60, s % 60)),
        1 => (1u32..13, 1u32..32).prop_map(|(m, d)| format!("2023-{m:02}-{d:02} 00:00:00")),
        1 => Just("2023-02-29 00:00:00".to_string()),
        1 => Just("2023-11-16T25:00:00".to_string()),
        4 => (0u32..100_000).prop_map(|x| format!("{}", f64::from(x) / 1000.0)),
        2 => cell(),
    ]
}

/// A header: one format's columns, mutated.
fn header() -> impl Strategy<Value = Vec<String>> {
    let format = prop::sample::select(TraceFormat::ALL.to_vec());
    (format, any::<u8>(), any::<u64>(), prop::option::of("[a-z_]{1,10}")).prop_map(|(f, m, seed, extra)| {
        let mut cols: Vec<String> = f.columns().iter().map(|c| c.to_string()).collect();
        let i = seed as usize % cols.len();
        match m % 8 {
            0 => drop(cols.remove(i)),
            1 => cols.push(cols[i].clone()),
            2 => cols[i] = cols[i].to_uppercase(),
            3 => cols[i].push('x'),
            4 => cols.rotate_left(i),
            _ => {}
        }
        if let Some(e) = extra {
            cols.insert(seed as usize % (cols.len() + 1), e);
        }
        cols
    })
}

/// Rows of `width` cells (sometimes one short or one long), timestamps in the columns that hold them.
fn trace_text() -> impl Strategy<Value = String> {
    let rows = prop::collection::vec((prop::collection::vec((stamp(), cell()), 4), -1i8..=1, any::<u8>()), 0..12);
    (header(), rows, any::<u8>()).prop_map(|(cols, rows, style)| {
        let nl = if style & 1 == 1 { "\r\n" } else { "\n" };
        let mut text = String::new();
        if style & 2 == 2 {
            text.push('\u{feff}');
        }
        if style & 4 == 4 {
            text.push_str(nl);
        }
        text.push_str(&cols.join(","));
        let stamps: Vec<bool> =
            cols.iter().map(|c| c.eq_ignore_ascii_case("arrived_at") || c.eq_ignore_ascii_case("timestamp")).collect();
        for (cells, delta, blank) in rows {
            text.push_str(nl);
            if blank % 17 == 0 {
                text.push_str(nl);
            }
            let width = (cols.len() as i64 + i64::from(delta)).max(0) as usize;
            let row: Vec<String> = (0..width)
                .map(|k| {
                    let (s, c) = &cells[k % cells.len()];
                    if stamps.get(k).copied().unwrap_or(false) { s.clone() } else { c.clone() }
                })
                .collect();
            text.push_str(&row.join(","));
        }
        if style & 8 == 8 {
            text.push_str(nl);
        }
        if style & 16 == 16 {
            let cut = text.len() * usize::from(style) / 300;
            while !text.is_char_boundary(cut.min(text.len())) {
                text.pop();
            }
            text.truncate(cut.min(text.len()));
        }
        text
    })
}

fn arb_options() -> impl Strategy<Value = TraceOptions> {
    let w = prop_oneof![8 => Just(1.0), 2 => 0.1f64..3.0, 1 => Just(f64::NAN), 1 => Just(0.0), 1 => Just(-1.0), 1 => Just(1e12)];
    (w, any::<bool>()).prop_map(|(words_to_tokens, lengths_are_words)| TraceOptions {
        words_to_tokens,
        lengths_are_words,
        ..Default::default()
    })
}

/// Parses `text` under `catch_unwind` and checks the outcome.
fn check(text: &str, opts: &TraceOptions) -> Result<(), TestCaseError> {
    let got = catch_unwind(AssertUnwindSafe(|| parse_trace(text, opts)));
    let Ok(got) = got else {
        return Err(TestCaseError::fail(format!("parse_trace panicked on {text:?}")));
    };
    match got {
        Ok(TraceData::Timed(w)) => {
            prop_assert!(!w.requests.is_empty());
            prop_assert!(w.validate().is_ok(), "{:?}", w.validate());
            prop_assert!(w.requests.iter().all(|r| r.arrival.is_finite() && r.arrival >= 0.0));
        }
        Ok(TraceData::Lengths(t)) => prop_assert!(t.validate().is_ok(), "{:?}", t.validate()),
        Err(Error::InvalidTrace { reason, .. }) => prop_assert!(!reason.is_empty()),
        Err(Error::InvalidConfig(m)) => prop_assert!(!m.is_empty()),
        Err(other) => return Err(TestCaseError::fail(format!("unexpected error variant {other:?} for {text:?}"))),
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(512))]

    #[test]
    fn mutated_traces_parse_or_fail_cleanly(text in trace_text(), opts in arb_options()) {
        check(&text, &opts)?;
    }

    #[test]
    fn random_text_parses_or_fails_cleanly(text in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check(&text, &TraceOptions::default())?;
        check(&String::from_utf8_lossy(&bytes), &TraceOptions::default())?;
        let with_header = format!("arrived_at,num_prefill_tokens,num_decode_tokens\n{text}");
        check(&with_header, &TraceOptions::default())?;
    }
}

/// A JSON-lines trace: Mooncake records with mutated keys and values, broken lines and blank lines.
fn jsonl_text() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        4 => (0u64..100_000).prop_map(|x| x.to_string()),
        1 => cell().prop_map(|c| format!("{c:?}")),
        1 => Just("null".to_string()),
        1 => Just("[1, 2]".to_string()),
        1 => Just("-1.5e400".to_string()),
        1 => Just("18446744073709551616".to_string()),
    ];
    let key = prop_oneof![
        6 => prop::sample::select(vec!["timestamp", "input_length", "output_length", "hash_ids"]).prop_map(String::from),
        1 => "[a-z_]{1,8}",
    ];
    let record = prop::collection::vec((key, value), 0..5).prop_map(|kv| {
        format!("{{{}}}", kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(", "))
    });
    let line = prop_oneof![8 => record, 1 => Just(String::new()), 1 => "[{}\\[\\]a-z0-9\",: ]{0,12}"];
    prop::collection::vec(line, 1..10).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(proptest_config(256))]

    #[test]
    fn json_lines_parse_or_fail_cleanly(text in jsonl_text(), opts in arb_options()) {
        check(&text, &opts)?;
    }
}

proptest! {
    #![proptest_config(proptest_config(32))]

    #[test]
    fn trace_files_of_random_bytes_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..300), valid in any::<bool>()) {
        let dir = std::env::temp_dir().join(format!("fluidsched-trace-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("t{}.csv", bytes.len()));
        let mut content = if valid { b"num_prefill_tokens,num_decode_tokens\n".to_vec() } else { Vec::new() };
        content.extend_from_slice(&bytes);
        std::fs::write(&path, &content).unwrap();
        let got = catch_unwind(AssertUnwindSafe(|| read_trace_file(&path, &TraceOptions::default())));
        let _ = std::fs::remove_file(&path);
        prop_assert!(got.is_ok(), "read_trace_file panicked");
        if let Ok(Err(e)) = got {
            let Error::InvalidTrace { location, reason } = &e else {
                return Err(TestCaseError::fail(format!("unexpected variant {e:?}")));
            };
            prop_assert!(!reason.is_empty());
            let shown = path.display().to_string();
            prop_assert!(location.as_deref().is_some_and(|l| l.contains(&shown)) || reason.contains(&shown), "{e}");
        }
    }
}

/// A missing file is an `InvalidTrace` naming it.
#[test]
fn missing_file_is_named() {
    let path = std::path::Path::new("/nonexistent/fluidsched/trace.csv");
    let err = read_trace_file(path, &TraceOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::InvalidTrace { .. }) && err.to_string().contains("trace.csv"), "{err}");
}
