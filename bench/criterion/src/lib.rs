//! Criterion benchmarks of `fluidsched-core` live in `benches/`; this crate has no library code of its own.
