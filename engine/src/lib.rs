//! # tos-engine: the thread-per-core runtime
//!
//! This crate will own everything that touches the operating system:
//!
//! - one pinned OS thread per configured core, each with its own
//!   `SO_REUSEPORT` UDP socket, io_uring ring (or a recvmmsg/sendmmsg
//!   fallback) and protocol endpoint;
//! - steering of datagrams to the owning core with a reuseport cBPF program;
//! - the per-core tick loop, cross-core channels and connection migration;
//! - the `tos-server` binary, its stats, metrics endpoint and signals.
//!
//! Status: a skeleton. The runtime lands with the issue "Thread-per-core
//! io_uring engine and the `tos-server` binary".

pub mod io;
