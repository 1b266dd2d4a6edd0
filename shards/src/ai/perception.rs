//! Perception: which enemies an NPC sees.
//!
//! NPCs only target players. The AOI grid's coarse player layer is sized
//! for the players' 1 km interest distance, far too coarse for an aggro
//! radius of a few metres, so the AI keeps its own index: once per tick
//! the players (local and ghosts) are sorted by a 2D cell key into a
//! preallocated vector, and a query binary-searches the rows of cells its
//! circle covers. Building it costs O(P log P) for P players; a query
//! costs the players near the NPC.

use crate::entity::{Entities, EntityState, EntityType, Faction, FactionTable};
use crate::world::ObstacleIndex;

use super::EYE_HEIGHT;

/// Edge of a perception cell, world units.
const CELL: f32 = 2_048.0;

/// The players of one tick, sorted by cell.
#[derive(Debug)]
pub(crate) struct PlayerGrid {
    entries: Vec<(u64, u32)>,
}

#[inline]
fn cell(v: f32) -> u32 {
    ((v / CELL).floor() as i32 as u32) ^ 0x8000_0000
}

#[inline]
fn key(cx: u32, cy: u32) -> u64 {
    (u64::from(cy) << 32) | u64::from(cx)
}

impl PlayerGrid {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Rebuilds the index from every live player (local or a ghost of
    /// another core; not ghosts of another cluster node, whose origin is
    /// `cores` or above: an NPC could not touch them).
    pub(crate) fn rebuild(&mut self, ents: &Entities, cores: u16) {
        self.entries.clear();
        for &i in &ents.dense {
            let iu = i as usize;
            if ents.kind[iu] == EntityType::Player && !(ents.ghost[iu] && ents.origin[iu] >= cores)
            {
                let p = ents.position[iu];
                self.entries.push((key(cell(p[0]), cell(p[1])), i));
            }
        }
        self.entries.sort_unstable();
    }

    /// Calls `f` with the slot of every player whose cell the circle of
    /// `radius` around `p` touches (the caller checks the distance).
    #[inline]
    pub(crate) fn for_each_near(&self, p: [f32; 3], radius: f32, mut f: impl FnMut(u32)) {
        if self.entries.is_empty() || radius.is_nan() || radius < 0.0 {
            return;
        }
        let (x0, x1) = (cell(p[0] - radius), cell(p[0] + radius));
        let (y0, y1) = (cell(p[1] - radius), cell(p[1] + radius));
        for cy in y0..=y1 {
            let lo = self.entries.partition_point(|e| e.0 < key(x0, cy));
            for e in &self.entries[lo..] {
                if e.0 > key(x1, cy) {
                    break;
                }
                f(e.1);
            }
        }
    }
}

/// Whether `t` is a target an NPC of `faction` may attack: a live,
/// visible player of an enemy faction.
#[inline]
pub(crate) fn attackable(
    ents: &Entities,
    factions: &FactionTable,
    faction: Faction,
    t: usize,
) -> bool {
    ents.kind[t] == EntityType::Player
        && ents.state[t].contains(EntityState::ALIVE)
        && !ents.state[t].contains(EntityState::INVISIBLE)
        && factions.is_enemy(faction, ents.faction[t])
}

/// Whether the eyes at `a` see `b` (no obstacle box between them).
#[inline]
pub(crate) fn in_sight(obstacles: &ObstacleIndex, a: [f32; 3], b: [f32; 3]) -> bool {
    !obstacles.segment_blocked(
        [a[0], a[1], a[2] + EYE_HEIGHT],
        [b[0], b[1], b[2] + EYE_HEIGHT],
    )
}

/// The nearest attackable player within `radius` of NPC slot `i`, in sight
/// when `sight` is set.
pub(crate) fn nearest_enemy(
    grid: &PlayerGrid,
    ents: &Entities,
    factions: &FactionTable,
    obstacles: &ObstacleIndex,
    i: usize,
    radius: f32,
    sight: bool,
) -> Option<u32> {
    let p = ents.position[i];
    let faction = ents.faction[i];
    let r2 = f64::from(radius) * f64::from(radius);
    let mut best: Option<(f64, u32)> = None;
    grid.for_each_near(p, radius, |t| {
        let tu = t as usize;
        let d2 = crate::util::dist2(p, ents.position[tu]);
        if d2 <= r2
            && best.is_none_or(|(b, _)| d2 < b)
            && attackable(ents, factions, faction, tu)
            && (!sight || in_sight(obstacles, p, ents.position[tu]))
        {
            best = Some((d2, t));
        }
    });
    best.map(|(_, t)| t)
}
