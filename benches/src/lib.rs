//! # tos-benches: measurement harnesses
//!
//! Criterion benchmarks live in `benches/benches/`; run them with
//! `cargo bench -p tos-benches`. The figures they produced are recorded in
//! `docs/PERFORMANCE.md` with the command and machine for each.
