//! Tests of the trace reader: format detection, every error case, and the bundled and shared real traces.

use super::*;

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../python/fluidsched/data");
const SHARED: &str = "/work/shared/traces";

fn parse(text: &str) -> Result<TraceData> {
    parse_trace(text, &TraceOptions::default())
}

fn timed(text: &str) -> Workload {
    match parse(text).unwrap() {
        TraceData::Timed(w) => w,
        other => panic!("expected a timed trace, got {other:?}"),
    }
}

fn lengths(text: &str, opts: &TraceOptions) -> LengthTable {
    match parse_trace(text, opts).unwrap() {
        TraceData::Lengths(t) => t,
        other => panic!("expected a length table, got {other:?}"),
    }
}

/// Asserts an `InvalidTrace` error at `location` whose reason contains every one of `words`.
fn assert_trace_err(text: &str, location: Option<&str>, words: &[&str]) {
    match parse(text) {
        Err(Error::InvalidTrace { location: loc, reason }) => {
            assert_eq!(loc.as_deref(), location, "location for {text:?} (reason: {reason})");
            for w in words {
                assert!(reason.contains(w), "reason for {text:?} should mention {w:?}: {reason}");
            }
        }
        other => panic!("expected InvalidTrace for {text:?}, got {other:?}"),
    }
}

#[test]
fn detects_all_four_formats() {
    let cases = [
        ("arrived_at,num_prefill_tokens,num_decode_tokens", TraceFormat::VidurReplay),
        ("TIMESTAMP,ContextTokens,GeneratedTokens", TraceFormat::Azure2023),
        ("num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio", TraceFormat::VidurLengths),
        ("question_length,answer_length", TraceFormat::LmsysWords),
        ("\u{feff} GeneratedTokens , extra, \"TIMESTAMP\",contexttokens\r\n", TraceFormat::Azure2023),
        ("num_decode_tokens,arrived_at,x,num_prefill_tokens", TraceFormat::VidurReplay),
    ];
    for (header, want) in cases {
        assert_eq!(detect_format(header).unwrap(), want, "{header}");
    }
}

#[test]
fn parses_vidur_replay() {
    let w = timed("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,374,44\n4.314579,396,109\n4.314579,5,6\n");
    assert_eq!(w.requests.len(), 3);
    assert_eq!(
        w.requests[1],
        RequestSpec { id: 1, arrival: 4.314579, prompt_len: 396, output_len: 109, type_id: None }
    );
    assert!(w.warnings.is_empty());
    w.validate().unwrap();
}

#[test]
fn parses_azure_with_reordered_columns_crlf_bom_and_no_final_newline() {
    let text = "\u{feff}ContextTokens,TIMESTAMP,GeneratedTokens\r\n\
                374, 2023-11-16 18:15:46.6805900 ,44\r\n\
                396,2023-11-16 18:15:50.9951690,109\r\n\
                10,2023-11-16 18:16:00.5,0\r\n\
                11,2023-11-17 00:00:00,0";
    let w = timed(text);
    let t: Vec<f64> = w.requests.iter().map(|r| r.arrival).collect();
    assert_eq!(t[0], 0.0);
    assert!((t[1] - 4.314579).abs() < 1e-9, "{t:?}");
    assert!((t[2] - 13.81941).abs() < 1e-9, "{t:?}");
    assert!((t[3] - (5.0 * 3600.0 + 44.0 * 60.0 + 13.31941)).abs() < 1e-6, "{t:?}");
    assert_eq!((w.requests[0].prompt_len, w.requests[0].output_len), (374, 44));
    assert_eq!(w.requests[3].output_len, 1);
    assert_eq!(w.warnings, ["2 rows had GeneratedTokens = 0; clamped to 1"]);
}

#[test]
fn parses_length_only_formats_and_scales_words() {
    let t = lengths(
        "num_prefill_tokens,num_decode_tokens,num_total_tokens\n3772,54,3826\n0,12.0,12\n",
        &Default::default(),
    );
    assert_eq!((t.prompt.clone(), t.output.clone()), (vec![3772, 1], vec![54, 12]));
    assert_eq!(t.warnings, ["1 row had num_prefill_tokens = 0; clamped to 1"]);

    let text = "question_length,answer_length\n11,201\n0,0\n2,3\n\n\n";
    let t = lengths(text, &Default::default());
    assert_eq!((t.prompt.clone(), t.output.clone()), (vec![11, 1, 2], vec![201, 1, 3]));
    assert_eq!(t.warnings.len(), 2);
    let opts = TraceOptions { words_to_tokens: 1.3, ..Default::default() };
    let t = lengths(text, &opts);
    // round(11 × 1.3) = 14, round(201 × 1.3) = 261, round(2 × 1.3) = 3, round(3 × 1.3) = 4.
    assert_eq!((t.prompt, t.output), (vec![14, 1, 3], vec![261, 1, 4]));
    assert!(t.warnings[0].contains("after scaling by 1.3"), "{:?}", t.warnings);

    // Token-named columns are not scaled unless the caller says they hold words.
    let text = "num_prefill_tokens,num_decode_tokens\n10,20\n";
    assert_eq!(lengths(text, &opts).prompt, [10]);
    let words = TraceOptions { lengths_are_words: true, ..opts };
    assert_eq!(lengths(text, &words).output, [26]);
}

#[test]
fn rejects_bad_options() {
    for f in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let opts = TraceOptions { words_to_tokens: f, ..Default::default() };
        let err = parse_trace("question_length,answer_length\n1,2\n", &opts).unwrap_err();
        assert!(matches!(&err, Error::InvalidConfig(m) if m.contains("words_to_tokens")), "{err}");
    }
}

#[test]
fn empty_text_and_header_only_are_errors() {
    assert_trace_err("", None, &["empty"]);
    assert_trace_err("\n \r\n", None, &["empty"]);
    assert_trace_err("question_length,answer_length\n", Some("line 1"), &["no data rows"]);
    assert_trace_err("\nquestion_length,answer_length\n\n", Some("line 2"), &["no data rows"]);
}

#[test]
fn unknown_header_lists_the_accepted_sets() {
    let words = ["unrecognised header", "[a, b]", "arrived_at,num_prefill_tokens,num_decode_tokens"];
    assert_trace_err("a,b\n1,2\n", Some("line 1"), &words);
    assert_trace_err("a,b\n1,2\n", Some("line 1"), &["TIMESTAMP,ContextTokens,GeneratedTokens", "question_length"]);
}

#[test]
fn missing_required_column_is_named() {
    let text = "arrived_at,num_prefill_tokens\n0,1\n";
    assert_trace_err(text, Some("line 1"), &["missing required column \"num_decode_tokens\"", "Vidur replay"]);
    assert_trace_err(text, Some("line 1"), &["header found: [arrived_at, num_prefill_tokens]"]);
    assert_trace_err("TIMESTAMP,ContextTokens\n", Some("line 1"), &["\"GeneratedTokens\"", "Azure 2023"]);
    assert_trace_err("answer_length,foo\n1,2\n", Some("line 1"), &["\"question_length\"", "[answer_length, foo]"]);
    assert_trace_err("question_length,answer_length,Question_Length\n1,2,3\n", Some("line 1"), &["appears twice"]);
}

#[test]
fn wrong_field_count_is_an_error() {
    let text = "question_length,answer_length\n1,2\n3\n";
    assert_trace_err(text, Some("line 3"), &["wrong number of fields", "expected 2", "found 1"]);
    let text = "question_length,answer_length\n1,2,3\n";
    assert_trace_err(text, Some("line 2"), &["expected 2", "found 3"]);
}

#[test]
fn bad_values_are_located_and_explained() {
    let h = "arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,1\n";
    let cases = [
        ("1,abc,2", "num_prefill_tokens", &["not a number", "\"abc\""][..]),
        ("1,5,-3", "num_decode_tokens", &["negative", "\"-3\""][..]),
        ("1,NaN,2", "num_prefill_tokens", &["not a finite number", "\"NaN\""][..]),
        ("1,5,inf", "num_decode_tokens", &["not a finite number", "\"inf\""][..]),
        ("1,4294967296,2", "num_prefill_tokens", &["too large", "4294967296", "4294967295"][..]),
        ("1,1e12,2", "num_prefill_tokens", &["too large", "\"1e12\""][..]),
        ("1,12.5,2", "num_prefill_tokens", &["fractional", "\"12.5\""][..]),
        ("1,,2", "num_prefill_tokens", &["empty value"][..]),
        ("-1,1,2", "arrived_at", &["negative", "\"-1\""][..]),
        ("nan,1,2", "arrived_at", &["not a finite number"][..]),
        ("soon,1,2", "arrived_at", &["not a number", "\"soon\""][..]),
    ];
    for (row, column, words) in cases {
        assert_trace_err(&format!("{h}{row}\n"), Some(&format!("line 3, column \"{column}\"")), words);
    }
    let opts = TraceOptions { words_to_tokens: 2.0, ..Default::default() };
    let err = parse_trace("question_length,answer_length\n1,4000000000\n", &opts).unwrap_err();
    assert!(err.to_string().contains("too large") && err.to_string().contains("after scaling"), "{err}");
}

#[test]
fn timestamps_going_backwards_name_both_lines() {
    let text = "arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,1\n5,1,1\n4.5,1,1\n";
    assert_trace_err(
        text,
        Some("line 4, column \"arrived_at\""),
        &["backwards", "line 4", "line 3", "\"4.5\"", "\"5\""],
    );
    let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.5,1,1\n2023-11-16 18:15:46.25,1,1\n";
    assert_trace_err(text, Some("line 3, column \"TIMESTAMP\""), &["backwards", "line 2", "sorted"]);
}

#[test]
fn unparseable_timestamp_is_an_error() {
    let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,1\n2023-11-16 25:00:00,1,1\n";
    assert_trace_err(text, Some("line 3, column \"TIMESTAMP\""), &["unparseable timestamp", "25:00:00"]);
    let text = "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n";
    assert_trace_err(text, Some("line 2, column \"TIMESTAMP\""), &["unparseable timestamp", "\"yesterday\""]);
}

#[test]
fn blank_lines_are_fine_only_around_the_data() {
    let t = lengths("\n\nquestion_length,answer_length\n1,2\n  \n\r\n", &Default::default());
    assert_eq!(t.len(), 1);
    assert_trace_err("question_length,answer_length\n1,2\n\n3,4\n", Some("line 3"), &["blank line", "line 4"]);
}

#[test]
fn read_trace_file_names_the_path() {
    let missing = Path::new("/nonexistent/trace.csv");
    let err = read_trace_file(missing, &TraceOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::InvalidTrace { .. }) && err.to_string().contains("/nonexistent/trace.csv"), "{err}");

    let path = std::env::temp_dir().join(format!("fluidsched-trace-test-{}.csv", std::process::id()));
    std::fs::write(&path, "question_length,answer_length\n1,x\n").unwrap();
    let err = read_trace_file(&path, &TraceOptions::default()).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("line 2, column \"answer_length\""), "{msg}");
}

#[test]
fn bundled_azure_sample() {
    let path = Path::new(BUNDLED).join("azure_conv_2023_5k.csv");
    let TraceData::Timed(w) = read_trace_file(&path, &TraceOptions::default()).unwrap() else {
        panic!("the Azure sample should be timed");
    };
    w.validate().unwrap();
    assert_eq!(w.len(), 5000);
    assert_eq!(w.requests[0].arrival, 0.0);
    assert_eq!((w.requests[0].prompt_len, w.requests[0].output_len), (374, 44));
    assert_eq!((w.requests[4999].prompt_len, w.requests[4999].output_len), (382, 88));
    let rate = w.mean_rate().unwrap();
    assert!((rate - 4.885).abs() < 0.001, "mean rate {rate}");
    let prompt: u64 = w.requests.iter().map(|r| u64::from(r.prompt_len)).sum();
    let output: u64 = w.requests.iter().map(|r| u64::from(r.output_len)).sum();
    assert_eq!((prompt, output), (5_805_639, 1_287_511));
    assert!(w.warnings.is_empty());
}

#[test]
fn bundled_lmsys_sample() {
    let path = Path::new(BUNDLED).join("lmsys_chat_1m_20k.csv");
    let TraceData::Lengths(t) = read_trace_file(&path, &TraceOptions::default()).unwrap() else {
        panic!("the LMSYS sample is length-only");
    };
    assert_eq!(t.len(), 20_000);
    assert_eq!(
        t.warnings,
        ["2 rows had num_prefill_tokens = 0; clamped to 1", "15 rows had num_decode_tokens = 0; clamped to 1"]
    );
    let mean = |v: &[u32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    // README: 34.8 / 147.0 words before clamping; clamping adds 2 / 15 words in total.
    assert!((mean(&t.prompt) - 34.81045).abs() < 1e-3, "{}", mean(&t.prompt));
    assert!((mean(&t.output) - 146.97355).abs() < 1e-3, "{}", mean(&t.output));
    assert!(t.prompt.iter().all(|&p| (1..200).contains(&p)) && t.output.iter().all(|&o| (1..500).contains(&o)));
}

/// Reads a file of the shared trace directory, or `None` (with a note) where the directory is absent.
fn shared(name: &str) -> Option<TraceData> {
    let path = Path::new(SHARED).join(name);
    if !path.exists() {
        eprintln!("skipping: {} not found", path.display());
        return None;
    }
    Some(read_trace_file(&path, &TraceOptions::default()).unwrap())
}

#[test]
fn shared_azure_and_vidur_replay_agree() {
    let (Some(TraceData::Timed(azure)), Some(TraceData::Timed(vidur))) =
        (shared("azure_llm_2023_conv.csv"), shared("vidur_splitwise_conv.csv"))
    else {
        return;
    };
    assert_eq!((azure.len(), vidur.len()), (19_366, 19_366));
    assert_eq!(azure.requests[0].arrival, 0.0);
    let rate = azure.mean_rate().unwrap();
    assert!((rate - 5.53).abs() < 0.005, "mean rate {rate}");
    for (a, v) in azure.requests.iter().zip(&vidur.requests) {
        assert_eq!((a.prompt_len, a.output_len), (v.prompt_len, v.output_len));
        assert!((a.arrival - v.arrival).abs() < 4e-7, "row {}: {} vs {}", a.id, a.arrival, v.arrival);
    }
}

#[test]
fn shared_length_only_traces() {
    let expected = [
        ("vidur_arxiv_summarization_llama2.csv", 28_257, 0, 0),
        ("lmsys1m_in_lt257_out_lt257.csv", 662_534, 63, 1136),
        ("lmsys1m_sample100k_in_lt500_out_lt600.csv", 100_000, 4, 147),
        ("lmsys1m_sample20k_in_lt200_out_lt500.csv", 20_000, 2, 15),
    ];
    for (name, rows, zero_prompt, zero_output) in expected {
        let Some(TraceData::Lengths(t)) = shared(name) else {
            return;
        };
        assert_eq!(t.len(), rows, "{name}");
        let clamped: Vec<String> =
            [zero_prompt, zero_output].iter().filter(|&&z| z > 0).map(|z| format!("{z} rows had")).collect();
        assert_eq!(t.warnings.len(), clamped.len(), "{name}: {:?}", t.warnings);
        for (w, c) in t.warnings.iter().zip(&clamped) {
            assert!(w.starts_with(c.as_str()), "{name}: {w}");
        }
    }
}

#[test]
fn vidur_absolute_timestamps_are_shifted_to_start_at_zero() {
    let w = timed("arrived_at,num_prefill_tokens,num_decode_tokens\n1700000000000000,10,5\n1700000000000002.5,10,5\n");
    let t: Vec<f64> = w.requests.iter().map(|r| r.arrival).collect();
    assert_eq!(t, vec![0.0, 2.5]);
    assert_eq!(w.warnings.len(), 1, "{:?}", w.warnings);
    assert!(w.warnings[0].contains("shifted") && w.warnings[0].contains("arrived_at"), "{:?}", w.warnings);
    let w = timed("arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,5\n2.5,10,5\n");
    assert!(w.warnings.is_empty(), "{:?}", w.warnings);
}

#[test]
fn error_messages_quote_a_bounded_excerpt_of_the_input() {
    let opts = TraceOptions::default();
    // Bare CR line ends are line ends (RFC 4180 readers accept them): a CR-only file reads row by row, and an
    // error in it names its line.
    let mut cr_only = String::from("arrived_at,num_prefill_tokens,num_decode_tokens");
    for i in 0..20_000 {
        cr_only.push_str(&format!("\r{i},10,5"));
    }
    assert_eq!(parse(&cr_only).unwrap().len(), 20_000);
    cr_only.push_str("\r20000,x,5");
    assert_trace_err(&cr_only, Some("line 20002, column \"num_prefill_tokens\""), &["not a number"]);
    // One huge line (20,000 fields) quoted back in an error.
    let huge_row = format!("arrived_at,num_prefill_tokens,num_decode_tokens\n{}\n", "1,".repeat(20_000));
    let huge_cell = format!("arrived_at,num_prefill_tokens,num_decode_tokens\n0,{},5\n", "9".repeat(5_000_000));
    let huge_header = format!("{},b\n1,2\n", "x".repeat(5_000_000));
    for text in [huge_row, huge_cell, huge_header] {
        let err = parse_trace(&text, &opts).unwrap_err().to_string();
        assert!(err.len() < 2_000, "{} bytes: {}", err.len(), &err[..200]);
    }
}
