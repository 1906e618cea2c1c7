//! Unit tests of the time models and of the shipped preset `llama2-7b-a100`.

use super::*;

/// The shipped `llama2-7b-a100` preset (read once).
fn llama() -> TimeModel {
    static MODEL: std::sync::OnceLock<TimeModel> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| TimeModel::preset("llama2-7b-a100").unwrap()).clone()
}

fn profiled(m: &TimeModel) -> &ProfiledModel {
    match m {
        TimeModel::Profiled(p) => p,
        TimeModel::Linear { .. } => panic!("not a profiled model"),
    }
}

/// Per-layer linear-operator ms of the `llama2-7b-a100` preset.
fn linear_ops_ms(num_tokens: u32) -> f64 {
    profiled(&llama()).linear_ops_ms(num_tokens)
}

const TOKEN_STEP: u32 = 8;
const DECODE_ATTN_MS: [f64; 3] = [0.00598, 0.001097, 8.772e-6];
const LINEAR_OPS_EXTRAP_MS_PER_TOKEN: f64 = 0.0019417;

fn decode_batch(n: u32, context: u32) -> BatchShape {
    let mut s = BatchShape::default();
    for _ in 0..n {
        s.add_decode(context);
    }
    s
}

fn prefill_batch(chunk: u32, context: u32) -> BatchShape {
    let mut s = BatchShape::default();
    s.add_prefill(chunk, context);
    s
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

#[test]
fn attention_fit_tracks_the_preset_on_decode_batches() {
    assert_eq!(TimeModel::Linear { d0: 0.01, d1: 1e-4 }.attention_linearization(), (0.01, 1e-4, 0.0));
    let m = llama();
    let (d0, d1, d2) = m.attention_linearization();
    // d2 is close to the preset's own decode-attention slope: 32 layers × 8.772e-6 ms per cached token.
    assert!(close(d2, 32.0 * DECODE_ATTN_MS[2] * 1e-3, 0.25), "d2 = {d2}");
    assert!(d0 > 0.0 && d1 > 0.0);
    // Long contexts cost what the preset says, which a tokens-only line misses (its error grows with context).
    let (l0, l1) = m.linearization();
    let mut fit_err: f64 = 0.0;
    let mut line_err: f64 = 0.0;
    for &(b, ctx) in &[(32u32, 2048u32), (128, 1024), (256, 512), (64, 64)] {
        let s = decode_batch(b, ctx);
        let t = m.iteration_time(&s);
        let fit = d0 + d1 * f64::from(s.num_tokens) + d2 * s.decode_context_sum as f64;
        let line = l0 + l1 * f64::from(s.num_tokens);
        fit_err = fit_err.max((fit - t).abs() / t);
        line_err = line_err.max((line - t).abs() / t);
    }
    assert!(fit_err < 0.15 && fit_err < line_err, "fit {fit_err}, line {line_err}");
}

#[test]
fn table_points_are_reproduced_exactly() {
    let model = llama();
    for &(t, ms) in &profiled(&model).spec().linear_ops_ms {
        assert_eq!(linear_ops_ms(t), ms, "at {t} tokens");
        // Every count that rounds up to a profiled one gets its value.
        assert_eq!(linear_ops_ms(t - TOKEN_STEP + 1), ms, "at {} tokens", t - TOKEN_STEP + 1);
    }
    // Spot values summed by hand from mlp.csv (TP=1 medians, emb excluded), where the raw data is monotone.
    assert_eq!(linear_ops_ms(8), 0.283);
    assert_eq!(linear_ops_ms(128), 0.3825);
    assert_eq!(linear_ops_ms(512), 1.0425);
    assert_eq!(linear_ops_ms(1), 0.283);
}

#[test]
fn table_grid_matches_the_profile() {
    let model = llama();
    let table = &profiled(&model).spec().linear_ops_ms;
    assert_eq!(table.len(), 256);
    assert_eq!((table[0].0, table[255].0), (8, 4096));
    for w in table.windows(2) {
        assert!(w[0].0 < w[1].0 && w[1].0 % TOKEN_STEP == 0);
        assert!(w[0].1 <= w[1].1, "table not non-decreasing at {}", w[1].0);
    }
}

#[test]
fn interpolates_between_profiled_points() {
    // 1040 and 1056 are neighbours in the profile; 1048 lies halfway.
    let (lo, hi) = (linear_ops_ms(1040), linear_ops_ms(1056));
    assert!((linear_ops_ms(1048) - (lo + hi) / 2.0).abs() < 1e-12);
    // Past 4096: linear extrapolation.
    let last = linear_ops_ms(4096);
    assert!((linear_ops_ms(4096 + 800) - (last + 800.0 * LINEAR_OPS_EXTRAP_MS_PER_TOKEN)).abs() < 1e-12);
    assert!(linear_ops_ms(u32::MAX).is_finite());
}

#[test]
fn monotone_in_num_tokens() {
    let m = llama();
    let mut prev = 0.0;
    for t in 1..=10_000 {
        let ms = linear_ops_ms(t);
        assert!(ms >= prev, "linear ops decrease at {t} tokens");
        prev = ms;
    }
    let mut prev = 0.0;
    for c in 1..=8192 {
        let s = m.iteration_time(&prefill_batch(c, 0));
        assert!(s > 0.0 && s >= prev, "prefill time decreases at {c}");
        prev = s;
    }
    let mut prev = 0.0;
    for b in 1..=512 {
        let s = m.iteration_time(&decode_batch(b, 500));
        assert!(s >= prev, "decode time decreases at {b}");
        prev = s;
    }
}

#[test]
fn sanity_numbers() {
    let m = llama();
    let decode = m.iteration_time(&decode_batch(26, 1200));
    assert!(close(decode, 0.019, 0.2), "decode 26 × 1.2k = {decode} s");
    let prefill = m.iteration_time(&prefill_batch(1024, 0));
    assert!(close(prefill, 0.077, 0.2), "prefill 1024 = {prefill} s");
    // Decomposition: 32 layers × (linear ops + attention).
    let expected = 32.0 * (linear_ops_ms(26) + 0.00598 + 0.001097 * 26.0 + 8.772e-6 * 26.0 * 1200.0) / 1000.0;
    assert!((decode - expected).abs() < 1e-12);
    let expected = 32.0 * (linear_ops_ms(1024) + 1.325e-4 * 1024.0 + 1.246e-7 * 1024.0 * 1024.0) / 1000.0;
    assert!((prefill - expected).abs() < 1e-12);
}

#[test]
fn prefill_terms_and_mixed_batches_add_up() {
    let m = llama();
    let mut s = prefill_batch(512, 1000);
    s.add_prefill(256, 0);
    s.add_decode(300);
    s.add_decode(700);
    let attn = 1.325e-4 * 768.0
        + 1.246e-7 * (512.0 * 512.0 + 256.0 * 256.0)
        + 1.080e-7 * 512.0 * 1000.0
        + 9.56e-6 * 1000.0
        + 0.00598
        + 0.001097 * 2.0
        + 8.772e-6 * 1000.0;
    let expected = 32.0 * (linear_ops_ms(770) + attn) / 1000.0;
    assert!((m.iteration_time(&s) - expected).abs() < 1e-12);
}

#[test]
fn linear_model_formula() {
    let m = TimeModel::linear(0.003, 0.00032).unwrap();
    let s = decode_batch(10, 4000);
    assert_eq!(m.iteration_time(&s), 0.003 + 0.00032 * 10.0);
    let mut s = prefill_batch(100, 0);
    for _ in 0..5 {
        s.add_decode(3000);
    }
    assert_eq!(m.iteration_time(&s), 0.003 + 0.00032 * 105.0);
    assert_eq!(m.linearization(), (0.003, 0.00032));
    assert_eq!(m.name(), "linear");
}

#[test]
fn empty_batch_takes_no_time() {
    let empty = BatchShape::default();
    assert_eq!(llama().iteration_time(&empty), 0.0);
    assert_eq!(TimeModel::linear(0.01, 0.0).unwrap().iteration_time(&empty), 0.0);
}

#[test]
fn preset_linearization_and_capacity() {
    let m = llama();
    let (d0, d1) = m.linearization();
    // The constants tools/fit_time_model.py used to generate, now computed when the preset is loaded.
    assert_eq!((d0, d1), (0.01433, 7.948e-5));
    assert!(d0 > 0.0 && d1 > 0.0);
    // The line passes near the model for a mid-sized decode batch (64 requests at 500 context), and it
    // cannot follow the context: the same batch at 2k context is far slower.
    let mid = m.iteration_time(&decode_batch(64, 500));
    assert!(close(d0 + d1 * 64.0, mid, 0.2), "line {} vs model {mid}", d0 + d1 * 64.0);
    assert!(m.iteration_time(&decode_batch(64, 2000)) > 2.0 * (d0 + d1 * 64.0));
    assert_eq!(m.kv_capacity_tokens(), Some(118_784));
    assert_eq!(m.name(), "llama2-7b-a100");
}

#[test]
fn from_name_builds_and_rejects() {
    assert_eq!(
        TimeModel::from_name("linear", Some(0.01), Some(1e-4)).unwrap(),
        TimeModel::Linear { d0: 0.01, d1: 1e-4 }
    );
    assert_eq!(TimeModel::from_name("llama2-7b-a100", None, None).unwrap(), llama());
    for name in TimeModel::names() {
        let (d0, d1) = if name == "linear" { (Some(0.01), Some(1e-4)) } else { (None, None) };
        assert_eq!(TimeModel::from_name(name, d0, d1).unwrap().name(), name);
    }

    let msg = |r: Result<TimeModel>| match r {
        Err(Error::InvalidConfig(m)) => m,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    assert!(msg(TimeModel::from_name("linear", None, None)).contains("needs d0 and d1"));
    assert!(msg(TimeModel::from_name("linear", None, Some(1e-4))).contains("d0"));
    assert!(msg(TimeModel::from_name("linear", Some(0.01), None)).contains("d1"));
    assert!(msg(TimeModel::from_name("linear", Some(-1.0), Some(1e-4))).contains("d0"));
    assert!(msg(TimeModel::from_name("linear", Some(0.0), Some(0.0))).contains("both be 0"));
    assert!(msg(TimeModel::from_name("llama2-7b-a100", Some(0.01), None)).contains("takes no d0/d1"));
    assert!(msg(TimeModel::from_name("llama2-7b-a100", None, Some(1e-4))).contains("takes no d0/d1"));
    let unknown = msg(TimeModel::from_name("gpt-9", None, None));
    assert!(unknown.contains("gpt-9") && unknown.contains("linear") && unknown.contains("llama2-7b-a100"));
}

#[test]
fn every_shipped_preset_loads_and_is_monotone() {
    for (name, _) in preset::SHIPPED {
        let m = TimeModel::from_name(name, None, None).unwrap();
        assert_eq!(m.name(), name);
        let p = profiled(&m);
        let mut prev = 0.0;
        for t in (1..=40_000).step_by(7) {
            let ms = p.linear_ops_ms(t);
            assert!(ms >= prev && ms.is_finite(), "{name}: linear ops decrease at {t} tokens");
            prev = ms;
        }
        let (d0, d1) = m.linearization();
        assert!(d0 > 0.0 && d1 > 0.0, "{name}");
    }
    assert!(TimeModel::names().contains(&"llama3-8b-h100"));
}

fn spec(table: Vec<(u32, f64)>) -> ProfiledSpec {
    ProfiledSpec {
        name: "t".into(),
        num_layers: 2,
        overhead_ms: 0.0,
        token_step: 8,
        linear_ops_ms: table,
        linear_ops_extrapolation_ms_per_token: 0.01,
        decode_attention_ms: [0.0; 3],
        prefill_attention_ms: [0.0; 4],
        block_size: 16,
        num_blocks: 10,
    }
}

#[test]
fn tables_off_the_token_grid_are_clamped_interpolated_and_extrapolated() {
    let m = ProfiledModel::new(spec(vec![(20, 1.0), (30, 2.0), (45, 2.5)])).unwrap();
    assert_eq!(m.linear_ops_ms(1), 1.0); // 8 tokens: below the first point, clamped
    assert_eq!(m.linear_ops_ms(16), 1.0);
    assert!((m.linear_ops_ms(24) - 1.4).abs() < 1e-12); // between 20 and 30
    assert!((m.linear_ops_ms(40) - (2.0 + 0.5 * 10.0 / 15.0)).abs() < 1e-12);
    assert!((m.linear_ops_ms(48) - (2.5 + 3.0 * 0.01)).abs() < 1e-12); // past 45: the slope
    assert!((m.linear_ops_ms(800) - (2.5 + 755.0 * 0.01)).abs() < 1e-12);
    // An iteration is layers x per-layer, plus the overhead when there is one.
    let mut with_overhead = spec(vec![(8, 1.0)]);
    with_overhead.overhead_ms = 3.0;
    let m = ProfiledModel::new(with_overhead).unwrap();
    assert!((m.seconds(&decode_batch(1, 10)) - (3.0 + 2.0 * 1.0) / 1000.0).abs() < 1e-15);
}

#[test]
fn bad_specs_and_files_name_the_key() {
    let msg = |r: Result<ProfiledModel>| match r {
        Err(Error::InvalidConfig(m)) => m,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    assert!(msg(ProfiledModel::new(spec(vec![(8, 1.0), (16, 0.5)]))).contains("iteration.linear_ops_ms[1]"));
    assert!(msg(ProfiledModel::new(spec(vec![(8, 1.0), (8, 1.5)]))).contains("strictly increasing"));
    assert!(msg(ProfiledModel::new(spec(vec![]))).contains("at least one"));
    assert!(msg(ProfiledModel::new(spec(vec![(8, 0.0)]))).contains("cannot both be 0"));
    let mut s = spec(vec![(8, 1.0)]);
    s.prefill_attention_ms[2] = f64::NAN;
    assert!(msg(ProfiledModel::new(s)).contains("iteration.prefill_attention_ms[2]"));
    let mut s = spec(vec![(u32::MAX, 1.0)]);
    s.token_step = 1;
    assert!(msg(ProfiledModel::new(s)).contains("token_step"));

    let text = preset::SHIPPED[0].1;
    let doc = text.replacen("\"token_step\"", "\"token_stride\"", 1);
    let err = msg(preset::parse(&doc, "file `x.json`"));
    assert!(err.contains("file `x.json`") && err.contains("iteration.token_step") && err.contains("missing"), "{err}");
    let err = msg(preset::parse("[1, 2", "file `y.json`"));
    assert!(err.contains("file `y.json`") && err.contains("not valid JSON"), "{err}");
    let err = msg(preset::parse("[]", "file `z.json`"));
    assert!(err.contains("root") && err.contains("object"), "{err}");
}
