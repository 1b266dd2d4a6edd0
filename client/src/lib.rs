//! # tos-client: the client side of the game protocol
//!
//! What a game client (and `loadgen`) needs to get from a connection to a
//! character in the world, written sans-IO like the protocol crate: the
//! caller feeds decoded server messages in and sends what it polls out,
//! on its own connection, clock and socket. It depends on the protocol
//! crate only, never on the server's.
//!
//! Map of the crate:
//!
//! - [`flow`]: [`LoginFlow`], the account and character flow of one
//!   client — log in (or register), list characters, create one if there
//!   is none, enter the world — as a state machine whose states are types.
//! - [`snapshot`]: [`SnapshotReceiver`], which applies the server's
//!   snapshots against per-entity baselines.

pub mod flow;
pub mod snapshot;

pub use flow::{Entered, FlowEvent, LoginFlow, LoginSpec};
pub use snapshot::{RECEIVER_HISTORY, ReceiveError, ReceiverStats, SnapshotInfo, SnapshotReceiver};
