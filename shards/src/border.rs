//! Node borders: what the shard reports when a player's legal step lands
//! on ground another node of the cluster simulates, and the record of an
//! NPC that walks there. The shard only reports a player and holds it; an
//! NPC it takes out of its simulation and hands over as a
//! [`NodeDeparture`]. Carrying either over (the record, the lease, the
//! client's connection) is the game layer's and the cluster's work
//! (docs/DEPLOY.md).

use serde::{Deserialize, Serialize};

use crate::ai::Brain;
use crate::combat::{Cast, Fighter, Progress};
use crate::entity::{BuffSet, ClientId, EntityState, EntityType, Faction, MAX_ACTIONS};
use crate::world::World;

/// A player whose valid claim stepped onto another node's ground. Until
/// the game layer calls [`crate::Shard::end_crossing`] (the other node did
/// not take it) or removes the player (it did), the player stays where it
/// stood and its claims are held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BorderCrossing {
    /// Whose claim.
    pub client: ClientId,
    /// Where the claim put the player: on the other node's ground.
    pub position: [f32; 3],
    /// The claim's facing.
    pub yaw: f32,
}

/// Whether `p` lies in a quadrant marked foreign (another node's) in the
/// shard's table (indexed like a layout's owner table; empty: none is).
pub(crate) fn foreign_at(foreign: &[bool], world: &World, p: [f32; 3]) -> bool {
    !foreign.is_empty()
        && foreign
            .get(world.quadrant_index(world.quadrant_of(p)))
            .copied()
            .unwrap_or(false)
}

/// An NPC that walked onto another node's ground. The shard no longer
/// simulates it (it shows as a ghost of that node until that node's ghost
/// batches take over); until the game layer knows how the hand-off ended it
/// exists only as this value. Delivered: drop it. Not taken:
/// [`crate::Shard::keep_npc`] puts it back at `back`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDeparture {
    /// The node whose ground it stepped on.
    pub to_node: u16,
    /// Everything about it.
    pub npc: CarriedNpc,
    /// Where it stood on this node's ground the tick before.
    pub back: [f32; 3],
}

/// An NPC on its way between nodes: the entity record without what only
/// players and items have, with every tick field counted from the tick of
/// the crossing (0 stays 0: "none"), since two nodes' tick counters are
/// unrelated, and the damage dealers by character (client ids are a
/// node's own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedNpc {
    /// Network id (unique in the cluster: kept).
    pub net_id: u32,
    /// Npc or Monster.
    pub kind: EntityType,
    /// Faction.
    pub faction: Faction,
    /// Position (on the receiving node's ground).
    pub position: [f32; 3],
    /// Velocity, units per second.
    pub velocity: [f32; 3],
    /// Pitch, yaw, roll in degrees.
    pub rotation: [f32; 3],
    /// Animation state.
    pub anim: u8,
    /// State flags.
    pub state: EntityState,
    /// Buffs, timers relative.
    pub buffs: BuffSet,
    /// HP and its maximum.
    pub hp: [f32; 2],
    /// MP and its maximum.
    pub mp: [f32; 2],
    /// Walking speed.
    pub speed: f32,
    /// Per skill slot: ready again after this many ticks (relative).
    pub cooldowns: [u32; MAX_ACTIONS],
    /// NPC template id.
    pub template: u16,
    /// AI state, `next_decision` relative.
    pub ai: Brain,
    /// Despawn (relative; 0: never).
    pub expires: u32,
    /// Respawn while dead (relative; 0: none).
    pub respawn: u32,
    /// In combat for this many more ticks.
    pub combat_until: u32,
    /// Level, experience, templates.
    pub progress: Progress,
    /// Stats and gear, `consumable_ready` relative.
    pub fighter: Fighter,
    /// The cast in progress, `done` relative.
    pub cast: Cast,
    /// Damage dealt to it since it (re)spawned, by character id.
    pub dealers: Vec<(u64, f32)>,
}

/// The first bytes of an encoded [`CarriedNpc`]: magic and version.
const NPC_MAGIC: &[u8; 4] = b"TOSN";
const NPC_VERSION: u8 = 1;

/// Why bytes are not a [`CarriedNpc`] this node can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadNpcRecord(pub String);

impl core::fmt::Display for BadNpcRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "bad NPC record: {}", self.0)
    }
}

impl CarriedNpc {
    /// The record's bytes: magic, version, then the record as RON (an NPC
    /// crosses rarely; readability on the wire beats a few hundred bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(NPC_MAGIC);
        out.push(NPC_VERSION);
        // A plain struct of numbers, arrays and enums always serializes.
        if let Ok(text) = ron::to_string(self) {
            out.extend_from_slice(text.as_bytes());
        }
        out
    }

    /// Whether `bytes` claim to be an NPC record (the magic), so a receiver
    /// can tell them from a player's.
    pub fn is_npc_record(bytes: &[u8]) -> bool {
        bytes.starts_with(NPC_MAGIC)
    }

    /// Reads and checks a record: the version, the syntax, the kind, and
    /// every number finite.
    pub fn decode(bytes: &[u8]) -> Result<Self, BadNpcRecord> {
        let bad = |why: &str| Err(BadNpcRecord(why.to_owned()));
        let Some(rest) = bytes.strip_prefix(NPC_MAGIC) else {
            return bad("no magic");
        };
        let Some((&version, text)) = rest.split_first() else {
            return bad("truncated");
        };
        if version != NPC_VERSION {
            return Err(BadNpcRecord(format!("version {version}")));
        }
        let text = core::str::from_utf8(text).map_err(|_| BadNpcRecord("not UTF-8".into()))?;
        let npc: Self = ron::from_str(text).map_err(|e| BadNpcRecord(e.to_string()))?;
        if !matches!(npc.kind, EntityType::Npc | EntityType::Monster) {
            return bad("not an NPC kind");
        }
        let numbers = npc
            .position
            .iter()
            .chain(&npc.velocity)
            .chain(&npc.rotation)
            .chain(&npc.hp)
            .chain(&npc.mp)
            .chain([&npc.speed, &npc.ai.radius, &npc.ai.last_hp])
            .chain(&npc.ai.home)
            .chain(&npc.ai.goal)
            .chain(&npc.cast.from)
            .chain(&npc.fighter.base_max)
            .chain(npc.dealers.iter().map(|(_, d)| d));
        if numbers.copied().any(|x| !x.is_finite()) {
            return bad("a number is not finite");
        }
        if npc.hp[0] < 0.0 || npc.hp[0] > npc.hp[1] || npc.mp[0] < 0.0 || npc.mp[0] > npc.mp[1] {
            return bad("HP or MP out of range");
        }
        if npc.dealers.len() > crate::combat::CONTRIBUTORS {
            return bad("too many damage dealers");
        }
        Ok(npc)
    }
}

/// A tick of this node as a count of ticks from `now` (0 stays 0, "none";
/// a tick in the past stays in the past: wrapping arithmetic).
pub(crate) fn carry_tick(t: u32, now: u32) -> u32 {
    if t == 0 {
        return 0;
    }
    // `t == now` must not read as "none" on the other side.
    t.wrapping_sub(now).max(1)
}

/// A carried tick count as a tick of this node (the inverse of
/// [`carry_tick`]).
pub(crate) fn land_tick(rel: u32, now: u32) -> u32 {
    if rel == 0 {
        return 0;
    }
    now.wrapping_add(rel).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_keep_their_distance_from_now_and_none_stays_none() {
        for (t, from, to) in [(0, 500, 9), (510, 500, 9), (490, 500, 9_000), (500, 500, 3)] {
            let back = land_tick(carry_tick(t, from), to);
            if t == 0 {
                assert_eq!(back, 0);
            } else {
                let before = t.wrapping_sub(from) as i32;
                let after = back.wrapping_sub(to) as i32;
                assert_eq!(
                    after,
                    if before == 0 { 1 } else { before },
                    "{t} {from} {to}"
                );
            }
        }
    }
}
