//! Tests of the BurstGPT, Mooncake and custom-column readers, RFC 4180 quoting, and the sample files in
//! `tests/data/` (expected values recomputed here from the files' text).

use super::*;

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data");

fn sample(name: &str) -> String {
    std::fs::read_to_string(Path::new(SAMPLES).join(name)).unwrap()
}

fn read(text: &str, opts: &TraceOptions) -> Result<TraceData> {
    parse_trace(text, opts)
}

fn timed(text: &str, opts: &TraceOptions) -> Workload {
    match read(text, opts).unwrap() {
        TraceData::Timed(w) => w,
        other => panic!("expected a timed trace, got {other:?}"),
    }
}

/// The `InvalidTrace` error's location and reason.
fn trace_err(text: &str, opts: &TraceOptions) -> (Option<String>, String) {
    match read(text, opts) {
        Err(Error::InvalidTrace { location, reason }) => (location, reason),
        other => panic!("expected InvalidTrace for {text:?}, got {other:?}"),
    }
}

fn config_err(text: &str, opts: &TraceOptions) -> String {
    match read(text, opts) {
        Err(Error::InvalidConfig(m)) => m,
        other => panic!("expected InvalidConfig for {text:?}, got {other:?}"),
    }
}

fn with_model(model: &str) -> TraceOptions {
    TraceOptions { model: Some(model.into()), ..Default::default() }
}

fn with_columns(spec: &str) -> TraceOptions {
    TraceOptions { columns: Some(ColumnMap::parse(spec).unwrap()), ..Default::default() }
}

/// BurstGPT sample rows as (timestamp, model, request, response, log type), split by hand (no quoting in it).
fn burstgpt_rows() -> Vec<(f64, String, u32, u32, String)> {
    sample("burstgpt_sample.csv")
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[0].parse().unwrap(), c[1].into(), c[2].parse().unwrap(), c[3].parse().unwrap(), c[5].into())
        })
        .collect()
}

#[test]
fn burstgpt_is_detected_not_misread_as_azure() {
    let header = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type";
    assert_eq!(detect_format(header).unwrap(), TraceFormat::BurstGpt);
    assert_eq!(
        detect_format("\"Timestamp\",\"Request tokens\",\"Response tokens\"\r\n").unwrap(),
        TraceFormat::BurstGpt
    );
    let (loc, reason) = trace_err("Timestamp,Model,Request tokens\n1,ChatGPT,3\n", &Default::default());
    assert_eq!(loc.as_deref(), Some("line 1"));
    assert!(reason.contains("\"Response tokens\"") && reason.contains("BurstGPT"), "{reason}");
}

#[test]
fn burstgpt_sample_drops_failed_requests_and_shifts_to_zero() {
    let rows = burstgpt_rows();
    let ok: Vec<_> = rows.iter().filter(|r| r.3 > 0).collect();
    let failed = rows.len() - ok.len();
    assert!(failed > 0 && ok.len() > 30, "the sample should hold failed requests");
    let w = timed(&sample("burstgpt_sample.csv"), &Default::default());
    w.validate().unwrap();
    assert_eq!(w.len(), ok.len());
    let t0 = rows[0].0;
    for (r, want) in w.requests.iter().zip(&ok) {
        assert_eq!((r.prompt_len, r.output_len), (want.2, want.3));
        assert_eq!(r.arrival, want.0 - t0);
    }
    assert_eq!(
        w.warnings,
        [
            format!("dropped {failed} rows with Response tokens = 0 (failed requests)"),
            format!(
                "arrival times shifted by -{t0} s so that the first request arrives at 0 (the trace's \"Timestamp\" \
                 column starts at {t0})"
            ),
        ]
    );
}

#[test]
fn burstgpt_filters_by_model_and_log_type() {
    let rows = burstgpt_rows();
    let text = sample("burstgpt_sample.csv");
    for (model, log_type) in
        [(Some("GPT-4"), None), (Some("chatgpt"), None), (None, Some("api")), (Some("GPT-4"), Some("Conversation log"))]
    {
        let opts =
            TraceOptions { model: model.map(Into::into), log_type: log_type.map(Into::into), ..Default::default() };
        let matches = |r: &&(f64, String, u32, u32, String)| {
            model.is_none_or(|m| r.1.eq_ignore_ascii_case(m))
                && log_type.is_none_or(|t| r.4.eq_ignore_ascii_case(t) || r.4.eq_ignore_ascii_case(&format!("{t} log")))
        };
        let selected: Vec<_> = rows.iter().filter(matches).collect();
        let kept: Vec<_> = selected.iter().filter(|r| r.3 > 0).collect();
        let w = timed(&text, &opts);
        assert_eq!(w.len(), kept.len(), "{model:?} {log_type:?}");
        for (r, want) in w.requests.iter().zip(&kept) {
            assert_eq!((r.prompt_len, r.output_len), (want.2, want.3));
            assert_eq!(r.arrival, want.0 - kept[0].0);
        }
        let note = w.warnings.last().unwrap();
        assert!(note.starts_with(&format!("kept {} of {} rows with ", selected.len(), rows.len())), "{note}");
    }
}

#[test]
fn burstgpt_filter_errors_name_what_is_there() {
    let text = sample("burstgpt_sample.csv");
    let (loc, reason) = trace_err(&text, &with_model("GPT-5"));
    assert_eq!(loc, None);
    assert!(reason.contains("no row has Model = \"GPT-5\""), "{reason}");
    assert!(reason.contains("\"ChatGPT\" (") && reason.contains("\"GPT-4\" ("), "{reason}");
    let m = config_err("arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,1\n", &with_model("GPT-4"));
    assert!(m.contains("model filter") && m.contains("Vidur replay"), "{m}");
    let opts = TraceOptions { log_type: Some("api".into()), ..Default::default() };
    assert!(config_err("Timestamp,Request tokens,Response tokens\n0,1,1\n", &opts).contains("\"Log Type\" column"));
    assert!(config_err(&sample("mooncake_sample.jsonl"), &opts).contains("Mooncake JSONL"));
    assert!(config_err(&text, &with_model("  ")).contains("empty"));
}

#[test]
fn burstgpt_where_every_row_failed_is_an_error() {
    let text = "Timestamp,Model,Request tokens,Response tokens\n0,ChatGPT,10,0\n1,ChatGPT,10,0\n";
    let (loc, reason) = trace_err(text, &Default::default());
    assert_eq!(loc.as_deref(), Some("line 1"));
    assert!(reason.contains("every data row (2) has Response tokens = 0"), "{reason}");
}

#[test]
fn mooncake_sample_reads_milliseconds_as_seconds() {
    let text = sample("mooncake_sample.jsonl");
    assert_eq!(detect_format(text.lines().next().unwrap()).unwrap(), TraceFormat::Mooncake);
    let w = timed(&text, &Default::default());
    w.validate().unwrap();
    assert!(w.warnings.is_empty(), "{:?}", w.warnings);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(w.len(), lines.len());
    for (r, line) in w.requests.iter().zip(lines) {
        // Independent reading: the three integers after their keys.
        let num = |key: &str| -> u64 {
            let rest = &line[line.find(&format!("\"{key}\": ")).unwrap() + key.len() + 4..];
            rest[..rest.find([',', '}']).unwrap()].parse().unwrap()
        };
        assert_eq!(r.arrival, num("timestamp") as f64 * 1e-3);
        assert_eq!((u64::from(r.prompt_len), u64::from(r.output_len)), (num("input_length"), num("output_length")));
    }
}

#[test]
fn mooncake_shifts_late_starts_in_milliseconds() {
    let text = "{\"timestamp\": 1700000000000, \"input_length\": 5, \"output_length\": 2, \"hash_ids\": []}\n\
                {\"timestamp\": 1700000000250, \"input_length\": 6, \"output_length\": \"3\"}\r\n\n";
    let w = timed(text, &Default::default());
    assert_eq!(w.requests.iter().map(|r| r.arrival).collect::<Vec<_>>(), [0.0, 0.25]);
    assert_eq!(w.requests[1].output_len, 3);
    assert!(w.warnings[0].contains("shifted by -1700000000000 ms") && w.warnings[0].contains("\"timestamp\" key"));
}

#[test]
fn mooncake_errors_name_format_key_and_line() {
    let ok = "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 2}\n";
    let opts = TraceOptions::default();
    let cases: [(String, &str, &[&str]); 9] = [
        ("{\"timestamp\": 0, \"input\": 5, \"output_length\": 2}\n".into(), "line 1", &["missing key \"input_length\"", "Mooncake JSONL", "[input, output_length, timestamp]"]),
        (format!("{ok}{{\"timestamp\": 1, \"input_length\": \"abc\", \"output_length\": 2}}\n"), "line 2, key \"input_length\"", &["not a number", "\"abc\"", "(Mooncake JSONL format)"]),
        (format!("{ok}{{\"timestamp\": 1, \"input_length\": 5}}\n"), "line 2, key \"output_length\"", &["missing"]),
        (format!("{ok}{{\"timestamp\": null, \"input_length\": 5, \"output_length\": 2}}\n"), "line 2, key \"timestamp\"", &["expected a number, found null"]),
        (format!("{ok}{{\"timestamp\": 1, \"input_length\": 5.5, \"output_length\": 2}}\n"), "line 2, key \"input_length\"", &["fractional"]),
        (format!("{ok}[1, 2]\n"), "line 2", &["one JSON object per line", "an array"]),
        (format!("{ok}{{\"timestamp\": 1, \"input_length\": 5,\n"), "line 2", &["not valid JSON"]),
        (format!("{ok}\n{ok}"), "line 2", &["blank line between rows (line 3 has data)"]),
        ("{\"timestamp\": 9, \"input_length\": 5, \"output_length\": 2}\n{\"timestamp\": 8, \"input_length\": 5, \"output_length\": 2}\n".into(), "line 2, key \"timestamp\"", &["backwards", "line 1"]),
    ];
    for (text, location, words) in cases {
        let (loc, reason) = trace_err(&text, &opts);
        assert_eq!(loc.as_deref(), Some(location), "{text:?}: {reason}");
        for w in words {
            assert!(reason.contains(w), "{text:?}: {reason} should mention {w}");
        }
    }
    let huge = format!("{{\"timestamp\": 0, \"input_length\": \"{}\", \"output_length\": 2}}\n", "7".repeat(1_000_000));
    assert!(trace_err(&huge, &opts).1.len() < 500);
    let huge = format!("{{\"{}\": 0}}\n", "k".repeat(1_000_000));
    assert!(trace_err(&huge, &opts).1.len() < 2000);
}

#[test]
fn custom_columns_read_a_quoted_crlf_export() {
    let text = sample("custom_columns_sample.csv");
    // Not a known format: the error says how to name the columns.
    let (_, reason) = trace_err(&text, &Default::default());
    assert!(reason.contains("unrecognised header") && reason.contains("--columns"), "{reason}");
    let opts = with_columns("arrival=sent at (ms),prompt=PROMPT TOKENS,output=completion tokens,unit=ms");
    let w = timed(&text, &opts);
    // Independent reading: rows are CRLF-terminated; a note may hold a bare LF; numbers are quoted with commas.
    let rows: Vec<Vec<String>> = text
        .split("\r\n")
        .skip(1)
        .filter(|r| !r.is_empty())
        .map(|r| r.split("\",\"").take(4).map(|c| c.trim_matches('"').replace(',', "")).collect())
        .collect();
    assert_eq!(w.len(), rows.len());
    let t0: u64 = rows[0][1].parse().unwrap();
    for (r, row) in w.requests.iter().zip(&rows) {
        let t: u64 = row[1].parse().unwrap();
        assert_eq!(r.arrival, (t - t0) as f64 * 1e-3);
        assert_eq!((r.prompt_len.to_string(), r.output_len.to_string()), (row[2].clone(), row[3].clone()));
    }
    assert!(w.warnings[0].contains("ms") && w.warnings[0].contains("\"sent at (ms)\" column"), "{:?}", w.warnings);
    // Without an arrival column the same file is length-only.
    let TraceData::Lengths(t) = read(&text, &with_columns("prompt=prompt tokens,output=completion tokens")).unwrap()
    else {
        panic!("expected lengths");
    };
    assert_eq!(t.len(), rows.len());
}

#[test]
fn custom_columns_errors() {
    let text = "a,b,c\n1,2,3\n";
    let (loc, reason) = trace_err(text, &with_columns("arrival=a,prompt=b,output=d"));
    assert_eq!(loc.as_deref(), Some("line 1"));
    assert!(
        reason.contains("column \"d\" (output= of the custom columns) is not in the header")
            && reason.contains("[a, b, c]")
    );
    let (loc, reason) = trace_err("a,b,c\n1,2,x\n", &with_columns("arrival=a,prompt=b,output=c"));
    assert_eq!(loc.as_deref(), Some("line 2, column \"c\""));
    assert!(reason.contains("not a number") && reason.contains("(custom columns format)"), "{reason}");
    // JSON lines with custom keys (exact names), microseconds.
    let jsonl = "{\"t\": 5000000, \"in\": 3, \"out\": 4}\n{\"t\": 5500000, \"in\": 3, \"out\": 4}\n";
    let w = timed(jsonl, &with_columns("arrival=t,prompt=in,output=out,unit=us"));
    assert_eq!(w.requests[1].arrival, 0.5);
    let (loc, _) = trace_err(jsonl, &with_columns("arrival=T,prompt=in,output=out"));
    assert_eq!(loc.as_deref(), Some("line 1, key \"T\""));
}

#[test]
fn rfc4180_quoting() {
    let opts = TraceOptions::default();
    // Quoted header and cells, a quoted thousands separator, doubled quotes and a line break in an extra column.
    let text = "\"arrived_at\",\"num_prefill_tokens\",\"num_decode_tokens\",\"note\"\r\n\
                \"0\",\"1,000\",\"12\",\"a, b\"\r\n\
                \"1.5\",\"2,048\",\"7\",\"said \"\"hi\"\"\nthen left\"\r\n\
                2,3,4,\"\"\r\n";
    let w = timed(text, &opts);
    let got: Vec<_> = w.requests.iter().map(|r| (r.arrival, r.prompt_len, r.output_len)).collect();
    assert_eq!(got, [(0.0, 1000, 12), (1.5, 2048, 7), (2.0, 3, 4)]);
    // Line numbers count the line break inside the quoted note (lines 3-4): the bad row is on line 6.
    let bad = format!("{text}3,\"1,00\",4,x\r\n");
    let (loc, reason) = trace_err(&bad, &opts);
    assert_eq!(loc.as_deref(), Some("line 6, column \"num_prefill_tokens\""));
    assert!(reason.contains("misplaced comma in \"1,00\"") && reason.contains("Vidur replay"), "{reason}");
    // An unquoted thousands separator splits the field: the row has a field too many.
    let (loc, reason) = trace_err("question_length,answer_length\n1,000,5\n", &opts);
    assert_eq!(loc.as_deref(), Some("line 2"));
    assert!(reason.contains("expected 2") && reason.contains("found 3"), "{reason}");
    // An unclosed quote swallows the rest of the file into one record; the error says so.
    let (loc, reason) = trace_err("question_length,answer_length\n\"1,5\n2,3\n4,5\n", &opts);
    assert_eq!(loc.as_deref(), Some("line 2"));
    assert!(reason.contains("from line 2 to line 4") && reason.contains("never closed"), "{reason}");
}

#[test]
fn value_errors_name_the_format() {
    let (_, reason) =
        trace_err("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,x,1\n", &Default::default());
    assert!(reason.ends_with("(Azure 2023 format)"), "{reason}");
    let (loc, reason) =
        trace_err("Timestamp,Model,Request tokens,Response tokens\n0,ChatGPT,-4,1\n", &Default::default());
    assert_eq!(loc.as_deref(), Some("line 2, column \"Request tokens\""));
    assert!(reason.contains("negative") && reason.ends_with("(BurstGPT format)"), "{reason}");
}
