//! # tos-shards: the sharded game world
//!
//! The game world of one core, with no I/O, no clock and no threads of its
//! own: the engine passes ticks and decoded inputs in and takes snapshot
//! bytes, corrections, hand-offs and ghost batches out, so a shard is
//! deterministic given its inputs and is tested without sockets. The
//! design, with its complexity and memory figures, is `docs/WORLD.md`.
//!
//! Map of the crate:
//!
//! - [`world`]: the world box, quantizer and quadrant ownership of one core
//!   ([`World`]); static data: terrain ([`Heightfield`]), obstacle boxes
//!   ([`Aabb`]), spawn points and actions ([`WorldData`]).
//! - [`entity`]: struct-of-arrays entity pool with generational ids
//!   ([`Entities`], [`EntityId`]); [`EntityType`], [`EntityState`] flags,
//!   buffs with timers ([`BuffSet`]), factions with O(1) relations
//!   ([`FactionTable`]).
//! - [`aoi`]: a sparse fine 3D grid plus one coarse layer per entity type;
//!   the interest query ([`AoiGrid::query`]).
//! - [`authority`]: movement claim validation ([`validate_claim`]), the
//!   anti-cheat counters, and action checks ([`ActionRefusal`]).
//! - [`border`]: [`BorderCrossing`], a player's legal step onto another
//!   cluster node's ground, reported and held for the game layer, and
//!   [`CarriedNpc`], the record of an NPC that walked there
//!   ([`NodeDeparture`]; the shard's side is `Shard::take_npc_departures`,
//!   `keep_npc`, `accept_npc`).
//! - [`combat`]: combat columns, formulas, experience and level-ups, and
//!   the events the game layer reads ([`ShardEvent`]).
//! - [`loot`]: drops of dead NPCs as Item entities, and pick-up rules.
//! - [`snapshot`]: per-client replication ([`ClientView`]: priority
//!   accumulator, acknowledged baselines named by tick, in-flight
//!   snapshots) and the work shared by all clients per tick (entity
//!   summary, records encoded once and copied). The client side that
//!   applies snapshots is `tos_client::SnapshotReceiver`.
//! - [`handoff`]: ghosts ([`GhostBatch`]) and hand-offs ([`Handoff`])
//!   between cores, ghosts for other cluster nodes ([`NodeGhosts`]), and
//!   effects on other cores' and nodes' entities ([`RemoteEffect`]).
//! - [`shard`]: [`Shard`], the per-core world the engine ticks.
//! - [`data`]: terrain and obstacles loaded from RON data files.
//! - [`nav`]: walkability from the slope limit and obstacle boxes, and
//!   A* paths on an implicit grid ([`nav::Pathfinder`]).
//! - [`ai`]: NPC templates, spawn groups and the per-NPC state machine
//!   ([`ai::Brain`]) run inside the shard tick, within budgets.
//!
//! [`validate_claim`]: authority::validate_claim
//! [`ClientView`]: snapshot::ClientView

pub mod ai;
pub mod aoi;
pub mod authority;
pub mod border;
pub mod combat;
pub mod data;
pub mod entity;
mod error;
pub mod handoff;
pub mod loot;
pub mod nav;
pub mod shard;
pub mod snapshot;
pub mod util;
pub mod world;

pub use ai::{AiState, AiStats, Brain, NpcBook, NpcProfile};
pub use aoi::AoiGrid;
pub use authority::{
    ACTION_DONE, ActionDef, ActionRefusal, BuffEffect, CheatCounters, MoveRejection, MovementRules,
    SkillBuffDef, TargetRule,
};
pub use border::{BadNpcRecord, BorderCrossing, CarriedNpc, NodeDeparture};
pub use combat::{
    BaseStats, CarriedCombat, CombatFlags, ConsumableEffect, Progression, ShardEvent, StatBonus,
};
pub use entity::{
    Buff, BuffFlags, BuffSet, ClientId, Entities, EntityId, EntityRecord, EntityState, EntityType,
    Faction, FactionTable, SpawnParams,
};
pub use error::ShardError;
pub use handoff::{
    ClientTransfer, GhostBatch, GhostState, Handoff, NodeGhosts, RemoteEffect, peer_node,
};
pub use shard::{
    ActionOutcome, Character, Correction, EntityInfo, HandoffRejected, NPC_BORDER_HOLD_SECS, Shard,
    ShardCapacity, TickReport,
};
pub use snapshot::ViewStats;
pub use world::{Aabb, Heightfield, NetIdSpace, SpawnPoint, World, WorldData};
