//! Snapshots on the client side: [`receive`] applies the server's
//! DeltaSync messages against per-entity baselines.

pub mod receive;

pub use receive::{RECEIVER_HISTORY, ReceiveError, ReceiverStats, SnapshotInfo, SnapshotReceiver};
