//! Snapshots on the client side: [`receive`] applies the server's
//! DeltaSync messages against per-entity baselines; [`view`] turns the
//! result into entity created / updated / removed events in world units.

pub mod receive;
pub mod view;

pub use receive::{RECEIVER_HISTORY, ReceiveError, ReceiverStats, SnapshotInfo, SnapshotReceiver};
pub use view::{EntityEvent, EntityState, WorldView};
