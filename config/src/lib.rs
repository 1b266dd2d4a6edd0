//! # tos-config: settings and shard layout
//!
//! The world server is operated with RON files: the server settings
//! (`config/server.ron`), a shard layout (`config/layouts/*.ron`) and the
//! game data (`config/data/*.ron`). This
//! crate owns their types, their defaults, loading and validation, and
//! nothing else: no sockets, threads or clocks, so the engine, the world and
//! the load generator can all read the same files.
//!
//! Map of the crate:
//!
//! - [`ServerConfig`] (module `server`): the whole settings file, with
//!   [`ServerConfig::load`], [`ServerConfig::from_ron_str`] and
//!   [`ServerConfig::validate`]. Its sections each live in their own module:
//!   - [`NetworkConfig`]: sockets, MTU, I/O backend and packet steering;
//!   - [`RuntimeConfig`]: which cores to run on, tick rate, stats, shutdown;
//!   - [`ProtocolConfig`]: heartbeats, reliability, fragments, rekeying,
//!     cookies and compression limits of the UDP protocol;
//!   - [`SecurityConfig`]: encryption, integrity checks and key files;
//!   - [`AoiConfig`] and [`InterestDistances`]: the area-of-interest grid and
//!     how far each kind of entity is seen;
//!   - [`SyncConfig`]: adaptive sync rates and the per-client snapshot budget;
//!   - [`WorldConfig`]: world size and quantization, with the derived
//!     quadrant grid ([`WorldConfig::quadrant_grid`]);
//!   - [`AuthorityConfig`]: limits the server enforces on movement claims;
//!   - [`StoreConfig`]: the database (SQLite or PostgreSQL) and how the
//!     store threads batch and retry writes.
//!   - [`AccountsConfig`]: password hashing, auth workers, tickets,
//!     registration, character slots and login rate limits.
//! - [`GameData`] (module `game_data`): the game's data files in
//!   `config/data/` (character templates, the level table, name rules),
//!   loaded and validated together, with the lookups the game layer needs;
//!   its `combat` part ([`CombatData`], module `combat_data`) holds skills,
//!   item templates and loot tables.
//!   its NPC part ([`NpcData`], module `npc_data`): NPC templates, spawn
//!   groups and patrol routes.
//! - [`ShardLayout`] (module `layout`): which core owns which quadrant,
//!   resolved against a quadrant grid into a [`ResolvedLayout`] owner table,
//!   or a [`LayoutError`] naming the quadrant at fault.
//! - [`ConfigError`] (module `error`): why a file could not be used, always
//!   naming the file, and for bad values the dotted field and what is allowed.
//!
//! `ServerConfig::default()` is written out field by field in
//! `config/server.ron`; a test parses that file and checks it equals the
//! default, so the shipped file, these types and `docs/CONFIG.md` cannot
//! drift apart.

mod accounts;
mod aoi;
mod authority;
mod check;
mod combat_data;
mod error;
mod game_data;
mod layout;
mod network;
mod npc_data;
mod parse;
pub use parse::{from_ron, parse_hex32};
mod protocol;
mod runtime;
mod security;
mod server;
mod store;
mod sync;
mod triple;
mod world;

pub use accounts::AccountsConfig;
pub use aoi::{AoiConfig, InterestDistances};
pub use authority::AuthorityConfig;
pub use combat_data::{
    BuffKind, CombatData, ConsumableEffect, EquipSlot, ItemKind, ItemTemplate, LootEntry,
    LootTable, MAX_LOOT_ENTRIES, MAX_SKILLS, School, SkillBuff, SkillKind, SkillTarget,
    SkillTemplate, StatBonus,
};
pub use error::ConfigError;
pub use game_data::{
    BaseStats, CharacterTemplate, ClassGrowth, GameData, LevelEntry, LevelStats,
    MAX_STARTING_ITEMS, NameError, NameRules,
};
pub use layout::{LayoutError, LayoutKind, ResolvedLayout, ShardLayout, ShardSpec};
pub use network::{IoBackend, NetworkConfig, Steering};
pub use npc_data::{
    AiKind, MAX_NPC_SKILLS, MAX_PATROL_POINTS, MAX_SPAWNED, NpcData, NpcKind, NpcTemplate,
    PatrolMode, PatrolRoute, SpawnArea, SpawnGroup,
};
pub use protocol::ProtocolConfig;
pub use runtime::{CoreSelection, MAX_CHANNEL_CAPACITY, MIN_CHANNEL_CAPACITY, RuntimeConfig};
pub use security::SecurityConfig;
pub use server::ServerConfig;
pub use store::{StoreBackend, StoreConfig};
pub use sync::SyncConfig;
pub use world::{MAX_QUADRANTS, QUADRANT_MAX_STEPS, WorldConfig};

/// The most cores one server process can run on.
///
/// Packets are steered to cores by the low byte of their connection id, so
/// a process can address at most 256 cores; a bigger host runs one process
/// per NUMA node (see `docs/CONFIG.md`).
pub const MAX_CORES: usize = 256;
