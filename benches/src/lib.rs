//! # tos-benches: measurement harnesses
//!
//! Criterion benchmarks live in `benches/benches/`; run them with
//! `cargo bench -p tos-benches`. The figures they produced are recorded in
//! `docs/PERFORMANCE.md` with the command and machine for each.
//!
//! The `echo-compare` binary (`src/bin/echo_compare.rs`) measures CPU per
//! packet of a raw `recvmmsg`/`sendmmsg` echo (the kernel floor), the engine
//! in echo mode on both I/O backends, and renet, side by side in one run:
//! `cargo run --release -p tos-benches --bin echo-compare -- --seconds 5 --repeat 3`.
