//! # tos-cluster: one world across several `tos-server` processes
//!
//! This crate owns what the nodes of a cluster share, and nothing of the
//! game or the engine:
//!
//! - [`file`]: the cluster file (RON): nodes, their addresses, NATS URLs,
//!   quadrants and layouts, validated as a whole ([`Cluster`]).
//! - [`link`]: [`NatsLink`], the node's NATS connection on a thread of its
//!   own, exchanging plain values with the process over bounded channels:
//!   hand-offs with acknowledgements, settled through the directory when
//!   an acknowledgement is lost, so an entity is always on exactly one node.
//! - [`directory`]: JetStream key-value buckets: quadrant owners, character
//!   leases that expire when not renewed, online players by name.
//! - [`wire`]: the versioned, length-checked binary format of everything
//!   that crosses between nodes.
//!
//! The engine uses it for `tos-server --cluster FILE --node NAME`
//! (`tos-engine::cluster`): quadrant claims, character leases, players
//! crossing node borders, whispers across nodes, and the ghosts each node
//! publishes of its entities near another's ground (see `docs/DEPLOY.md`,
//! "Status").

pub mod directory;
pub mod file;
pub mod link;
pub mod wire;

pub use directory::{DirectoryError, Storage};
pub use file::{Cluster, ClusterFile, NodeSpec, QuadrantRect, QuadrantSet};
pub use link::{
    DirectoryAnswer, HandoffOutcome, KeptReason, LinkCommand, LinkConfig, LinkError, LinkEvent,
    LinkStats, NatsLink, TRANSIT_BIT, is_transit, transit_key,
};
pub use wire::{RefuseReason, WireError};
