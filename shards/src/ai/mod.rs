//! NPC AI inside the shard tick: per NPC a state machine ([`Brain`],
//! module `brain`), perception of enemies through a per-tick grid of the
//! players (module `perception`), and steering along cached paths served
//! from a budgeted queue (module `steering`).
//!
//! What an NPC is comes from its template ([`NpcProfile`], compiled from
//! `config/data/npcs.ron`); where it lives from its spawn group (home,
//! wander radius, patrol route). The [`Brain`] is plain data in the
//! entity record, so a hand-off carries the AI state to the next core;
//! cached paths are not carried (the next core plans again).
//!
//! Budgets, so that 10,000 NPCs never blow the frame: an NPC *thinks*
//! (looks for enemies, picks wander goals) one tick in [`THINK_EVERY`],
//! staggered by slot; it *moves* every tick (a few flops and one segment
//! test); paths are planned only when the straight line is blocked, from a
//! queue served up to [`AiBudget::path_expansions`] A* cell expansions
//! per tick.

mod brain;
mod perception;
mod populate;
mod steering;

#[cfg(test)]
mod tests;

pub(crate) use brain::{AiCtx, on_dead, on_respawn, step};
pub use brain::{AiState, Brain};
pub(crate) use perception::PlayerGrid;
pub use populate::spawn_points;
pub use steering::Steer;
pub(crate) use steering::{Mover, PathCache, serve_paths};

use std::collections::VecDeque;

use tos_config::{AiKind, BaseStats, MAX_NPC_SKILLS, NpcData, NpcKind, PatrolMode};

use crate::entity::{EntityType, Faction};
use crate::nav::{NavParams, Pathfinder};

/// An NPC thinks (perception, decisions) once in this many ticks.
pub const THINK_EVERY: u32 = 6;

/// Waypoints one NPC's cached path holds; a longer path is planned again
/// from its last waypoint.
pub const PATH_LEN: usize = 8;

/// Height of the eyes above the ground, for line of sight.
pub const EYE_HEIGHT: f32 = 150.0;

/// An NPC template as the shard uses it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NpcProfile {
    /// Template id (at least 1).
    pub id: u16,
    /// Entity type.
    pub kind: EntityType,
    /// Faction.
    pub faction: Faction,
    /// Level.
    pub level: u16,
    /// Base stats.
    pub stats: BaseStats,
    /// Hit points.
    pub hp: f32,
    /// Mana points.
    pub mp: f32,
    /// Walking speed, units per second.
    pub speed: f32,
    /// Enemies this close (in sight) are attacked (aggressive).
    pub aggro_range: f32,
    /// The chase ends this far from home.
    pub leash_range: f32,
    /// Skill ids in order of preference (`skill_count` used).
    pub skills: [u16; MAX_NPC_SKILLS],
    /// Skills listed.
    pub skill_count: u8,
    /// Loot table id.
    pub loot: Option<u16>,
    /// Behaviour toward enemies.
    pub ai: AiKind,
    /// Flees below this HP fraction (0: never).
    pub flee_below: f32,
    /// Seconds from death to respawn.
    pub respawn_secs: f32,
}

impl NpcProfile {
    /// Whether it fights at all.
    pub fn fights(&self) -> bool {
        self.ai != AiKind::Passive && self.skill_count > 0
    }

    /// Its skills.
    pub fn skills(&self) -> &[u16] {
        &self.skills[..usize::from(self.skill_count)]
    }
}

/// A patrol route as the shard uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct PatrolPath {
    /// Route id.
    pub id: u16,
    /// Points on the ground plane.
    pub points: Vec<[f32; 2]>,
    /// Loop (else back and forth).
    pub looped: bool,
}

/// NPC templates and patrol routes, from the data files.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NpcBook {
    /// Templates.
    pub templates: Vec<NpcProfile>,
    /// Routes.
    pub routes: Vec<PatrolPath>,
}

impl NpcBook {
    /// The shard's view of validated NPC data.
    pub fn from_data(data: &NpcData) -> Self {
        let templates = data
            .templates
            .iter()
            .map(|t| {
                let mut skills = [0; MAX_NPC_SKILLS];
                let n = t.skills.len().min(MAX_NPC_SKILLS);
                skills[..n].copy_from_slice(&t.skills[..n]);
                NpcProfile {
                    id: t.id,
                    kind: match t.kind {
                        NpcKind::Monster => EntityType::Monster,
                        NpcKind::Npc => EntityType::Npc,
                    },
                    faction: Faction(t.faction),
                    level: t.level,
                    stats: t.stats,
                    hp: t.hp as f32,
                    mp: t.mp as f32,
                    speed: t.speed as f32,
                    aggro_range: t.aggro_range as f32,
                    leash_range: t.leash_range as f32,
                    skills,
                    skill_count: n as u8,
                    loot: t.loot,
                    ai: t.ai,
                    flee_below: t.flee_below.unwrap_or(0.0) as f32,
                    respawn_secs: t.respawn_secs as f32,
                }
            })
            .collect();
        let routes = data
            .routes
            .iter()
            .map(|r| PatrolPath {
                id: r.id,
                points: r
                    .points
                    .iter()
                    .map(|&(x, y)| [x as f32, y as f32])
                    .collect(),
                looped: r.mode == PatrolMode::Loop,
            })
            .collect();
        Self { templates, routes }
    }

    /// The template with `id`.
    pub fn template(&self, id: u16) -> Option<&NpcProfile> {
        self.templates.iter().find(|t| t.id == id)
    }
}

/// Per-tick AI budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AiBudget {
    /// A* cell expansions per tick, over all path requests: a search gets
    /// at most what is left of it (cut short, it returns the path to the
    /// cell nearest the goal, and the NPC plans on from there).
    pub path_expansions: u32,
}

impl Default for AiBudget {
    fn default() -> Self {
        Self {
            path_expansions: 2_048,
        }
    }
}

/// AI counters since the shard started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AiStats {
    /// Paths planned with A*.
    pub paths_planned: u64,
    /// Of those, the goal was out of reach (a partial path or none).
    pub paths_partial: u64,
    /// A* cells expanded.
    pub expansions: u64,
    /// Path requests waiting now.
    pub queued: u32,
    /// Chases started.
    pub aggros: u64,
    /// Chases given up (leash, lost target): walks home.
    pub leashes: u64,
    /// Flights started.
    pub flights: u64,
    /// NPC attacks decided (cast by the shard after the AI pass).
    pub attacks: u64,
    /// Of those, refused by the skill checks (target gone, out of mana).
    pub attacks_refused: u64,
    /// NPC moves refused by the movement rules (a wall, a cliff) and
    /// planned again.
    pub blocked_moves: u64,
}

/// The AI's per-shard state: templates, routes, per-slot path caches, the
/// path request queue, the pathfinder and scratch, all sized when the
/// shard is built.
#[derive(Debug)]
pub(crate) struct AiRuntime {
    /// Template index + 1 by template id (0: none).
    by_id: Vec<u16>,
    pub(crate) book: NpcBook,
    pub(crate) paths: Vec<PathCache>,
    pub(crate) queue: VecDeque<(u32, u32)>,
    pub(crate) finder: Pathfinder,
    pub(crate) players: PlayerGrid,
    pub(crate) budget: AiBudget,
    pub(crate) stats: AiStats,
    pub(crate) flat: bool,
    /// Attacks the AI decided this tick: (caster slot, skill id, target
    /// network id), cast by the shard after the AI pass.
    pub(crate) casts: Vec<(u32, u16, u32)>,
}

impl AiRuntime {
    pub(crate) fn new(book: NpcBook, capacity: u32, nav: NavParams, flat: bool) -> Self {
        let max_id = book.templates.iter().map(|t| t.id).max().unwrap_or(0);
        let mut by_id = vec![0u16; usize::from(max_id) + 1];
        for (k, t) in book.templates.iter().enumerate() {
            by_id[usize::from(t.id)] = k as u16 + 1;
        }
        let n = capacity as usize;
        Self {
            by_id,
            book,
            paths: vec![PathCache::default(); n],
            queue: VecDeque::with_capacity(n),
            finder: Pathfinder::new(nav),
            players: PlayerGrid::new(n),
            budget: AiBudget::default(),
            stats: AiStats::default(),
            flat,
            casts: Vec::with_capacity(n),
        }
    }

    /// The template of an id (0 and unknown ids: none).
    #[inline]
    pub(crate) fn profile(&self, id: u16) -> Option<&NpcProfile> {
        match self.by_id.get(usize::from(id)) {
            Some(&k) if k > 0 => Some(&self.book.templates[usize::from(k - 1)]),
            _ => None,
        }
    }

    /// Route index + 1 of a route id (0: none).
    pub(crate) fn route_slot(&self, id: u16) -> u16 {
        self.book
            .routes
            .iter()
            .position(|r| r.id == id)
            .map_or(0, |k| k as u16 + 1)
    }
}
