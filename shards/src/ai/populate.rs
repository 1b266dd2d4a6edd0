//! Spawn groups to spawn points: where each member of each group of
//! `spawns.ron` lives.

use tos_config::{NpcData, SpawnArea};

use crate::util::Rng;
use crate::world::{SpawnPoint, WorldData};

use super::NpcBook;

/// Draws a point of a spawn area this many times before giving up on
/// finding one outside every obstacle box (then it is used anyway: an NPC
/// inside a box stands still, it cannot walk out).
const TRIES: u32 = 16;

/// The spawn points of every member of every group, seeded (the same
/// data and seed give the same points). Members are placed outside the
/// obstacle boxes of `data` where they can be.
pub fn spawn_points(
    npcs: &NpcData,
    book: &NpcBook,
    data: &WorldData,
    seed: u64,
) -> Vec<SpawnPoint> {
    let mut rng = Rng::new(seed ^ 0x0000_5a3a_0000_17c5);
    let mut out = Vec::with_capacity(npcs.spawned() as usize);
    let blocked = |x: f32, y: f32| {
        let z = data.heightfield.height_at(x, y);
        data.obstacles.iter().any(|b| b.contains([x, y, z]))
    };
    for group in &npcs.groups {
        let Some(t) = book.template(group.template) else {
            continue;
        };
        for k in 0..group.count {
            let (x, y) = match &group.area {
                SpawnArea::Points(points) => {
                    let (x, y) = points[k as usize % points.len()];
                    (x as f32, y as f32)
                }
                SpawnArea::Area { centre, radius } => {
                    let mut at = (centre.0 as f32, centre.1 as f32);
                    for _ in 0..TRIES {
                        let a = rng.range(0.0, core::f32::consts::TAU);
                        let r = *radius as f32 * rng.unit().sqrt();
                        at = (centre.0 as f32 + r * a.cos(), centre.1 as f32 + r * a.sin());
                        if !blocked(at.0, at.1) {
                            break;
                        }
                    }
                    at
                }
            };
            out.push(SpawnPoint {
                kind: t.kind,
                faction: t.faction,
                position: [x, y, 0.0],
                wander_radius: group.wander_radius as f32,
                speed: t.speed,
                hp: t.hp,
                mp: t.mp,
                template: t.id,
                patrol: group.patrol.unwrap_or(0),
            });
        }
    }
    out
}

impl WorldData {
    /// Adds the NPC templates, patrol routes and spawn groups of `npcs`
    /// (call it after setting the terrain and obstacles: members are
    /// placed outside the boxes).
    pub fn with_npcs(mut self, npcs: &NpcData) -> Self {
        let book = NpcBook::from_data(npcs);
        let points = spawn_points(npcs, &book, &self, self.seed);
        self.spawns.extend(points);
        self.npcs = book;
        self
    }
}
