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

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// A global allocator that counts allocations (and reallocations), for the
/// benches that check a hot path allocates nothing in steady state. A bench
/// installs it with
/// `#[global_allocator] static GLOBAL: tos_benches::Counting = tos_benches::Counting;`
/// and reads [`allocations`] around the code it checks.
#[derive(Debug)]
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Allocations so far in this process (with [`Counting`] installed).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// SAFETY: defers to the system allocator; only adds a relaxed counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds alloc's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
