//! # tos-engine: the thread-per-core runtime
//!
//! Everything that touches the operating system, and nothing of the game:
//!
//! - [`io`]: per-core UDP I/O — `SO_REUSEPORT` sockets, the cBPF program
//!   that steers each datagram to the core owning its connection id, and
//!   two batched backends (io_uring with multishot receive; recvmmsg /
//!   sendmmsg where io_uring is forbidden), chosen at start and logged.
//! - [`runtime`]: starting a server — core selection and pinning, sockets
//!   bound in core order, the channel mesh between cores, the metrics
//!   endpoint, and graceful shutdown ([`runtime::start`] →
//!   [`runtime::ServerHandle`]).
//! - [`core`]: one core's loop — receive, forward misrouted datagrams,
//!   protocol events, the tick on a grid shared by all cores, transmit with
//!   one system call per turn.
//! - [`settings`]: the operator's RON config turned into protocol settings;
//!   secrets loaded or generated.
//! - [`stats`] and the metrics endpoint: per-core counters, the stats line,
//!   the Prometheus text format.
//! - The game itself (sessions, accounts, characters, the shard each core
//!   simulates) is `tos-game`'s: a core feeds its `GameCore` plain values
//!   and carries out the `Output`s it polls; the database and password
//!   hashing run on the store's and the auth pool's own threads.
//! - [`cluster`]: a node of a cluster — the cluster file's part for this
//!   node, the NATS link and the thread routing the cores' lease and
//!   whisper requests to it (crate `tos-cluster`).
//! - [`signals`]: SIGINT / SIGTERM.
//!
//! The `tos-server` binary (`src/bin/tos-server.rs`) wires these together.

pub mod cluster;
pub mod core;
pub mod io;
mod metrics;
pub mod runtime;
pub mod settings;
pub mod signals;
pub mod stats;
