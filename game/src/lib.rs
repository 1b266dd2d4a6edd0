//! # tos-game: the game layer
//!
//! Everything between a connection and the world: who the client is
//! (accounts, login, session tickets), which character it plays
//! (create, list, delete, restore, enter), the online-players registry,
//! and when a character's progress goes to the store. It owns no socket,
//! thread or clock: the runtime (`tos-engine`) feeds it plain values
//! (`handle_*`) and drains what it wants done (`poll_*`), the way
//! quinn-proto's endpoint and connection talk through `EndpointEvent` and
//! `ConnectionEvent`. Database I/O and password hashing happen on the
//! store's and the auth pool's own threads; a core only sends commands
//! over bounded channels and receives the replies as messages.
//!
//! Map of the crate:
//!
//! - [`seam`]: the values exchanged with the runtime ([`Output`],
//!   [`PeerMessage`]) — the only way in and out.
//! - [`session`]: a client's states as types (Connected → Authenticating →
//!   Authenticated (character selection) → Entering → InGame → Closing),
//!   each consumed on transition, and which message each state accepts.
//! - [`names`]: account-name and password rules.
//! - [`registry`]: the process-wide online registry (character → core),
//!   which also enforces one live session per character.
//! - [`services`]: what every core shares — store handle, auth pool, game
//!   data, registry, rate limits, settings, counters.
//! - [`counters`]: process-wide game counters (refusals by reason, logins,
//!   saves), rendered for Prometheus.
//! - [`core`]: [`GameCore`], one core's game layer driving its shard.
//! - [`boot`]: starting the shared services from the server config (data
//!   directory, ticket key, game data, store, auth workers) and stopping
//!   them (the store flushes every pending save).
//! - `store_link`: the one place that speaks the store's command language.
//! - [`persist`]: turning a playing character into the state the store
//!   saves, and deciding when it changed.
//! - [`inventory`]: a character's inventory and equipment (slots, stacks,
//!   weight, pick-up reservations, equip rules, consumable cooldowns).
//! - [`cluster`]: what a core of a cluster node exchanges with the
//!   node's cluster thread (leases, whispers, players and NPCs crossing to
//!   other nodes, skill effects across the border) and which quadrants
//!   other nodes simulate.
//! - [`transfer`]: the record a player crossing to another node travels
//!   as, and its one-time transfer ticket.
//! - [`node_ghosts`]: the byte layout of the ghosts a node shows another
//!   near their border.
//! - [`chat`]: chat rules (text checks, the per-session rate limit) and
//!   the lines that cross cores.

pub mod boot;
pub mod chat;
pub mod cluster;
pub mod core;
pub mod counters;
pub mod inventory;
pub mod names;
pub mod node_ghosts;
pub mod persist;
pub mod registry;
pub mod seam;
pub mod services;
pub mod session;
mod store_link;
pub mod transfer;

pub use crate::core::GameCore;
pub use counters::GameCounters;
pub use registry::OnlineRegistry;
pub use seam::{Output, PeerMessage};
pub use services::{GameSettings, Services};
