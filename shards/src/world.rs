//! The world one shard lives in: geometry and quantization (from the
//! `world` section), which quadrants this core owns (from the resolved
//! layout), and the static data the server checks movement against
//! (terrain heights and obstacle boxes) or populates the world from.

use tos_config::{ResolvedLayout, WorldConfig};
use tos_protocol::quant::Quantizer;

use crate::ShardError;
use crate::authority::{ActionDef, default_actions};
use crate::entity::{EntityType, Faction, FactionTable};
use crate::util::{IdMap, Rng, id_map};

/// An axis-aligned box, in world units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aabb {
    /// Minimum corner.
    pub min: [f32; 3],
    /// Maximum corner.
    pub max: [f32; 3],
}

impl Aabb {
    /// A box from two corners in any order.
    pub fn new(a: [f32; 3], b: [f32; 3]) -> Self {
        Self {
            min: core::array::from_fn(|i| a[i].min(b[i])),
            max: core::array::from_fn(|i| a[i].max(b[i])),
        }
    }

    /// Whether `p` is inside the box (faces included).
    pub fn contains(&self, p: [f32; 3]) -> bool {
        (0..3).all(|i| p[i] >= self.min[i] && p[i] <= self.max[i])
    }

    /// Squared distance from `p` to the box (0 inside).
    pub fn distance2(&self, p: [f32; 3]) -> f64 {
        let mut d = 0.0;
        for (i, &c) in p.iter().enumerate() {
            let v = f64::from(c);
            let lo = f64::from(self.min[i]);
            let hi = f64::from(self.max[i]);
            let e = if v < lo {
                lo - v
            } else if v > hi {
                v - hi
            } else {
                0.0
            };
            d += e * e;
        }
        d
    }

    /// Whether the segment from `a` to `b` touches the box (slab test).
    pub fn segment_intersects(&self, a: [f32; 3], b: [f32; 3]) -> bool {
        let mut t0 = 0.0f64;
        let mut t1 = 1.0f64;
        for i in 0..3 {
            let start = f64::from(a[i]);
            let dir = f64::from(b[i]) - start;
            let lo = f64::from(self.min[i]);
            let hi = f64::from(self.max[i]);
            if dir.abs() < 1e-12 {
                if start < lo || start > hi {
                    return false;
                }
            } else {
                let mut near = (lo - start) / dir;
                let mut far = (hi - start) / dir;
                if near > far {
                    core::mem::swap(&mut near, &mut far);
                }
                t0 = t0.max(near);
                t1 = t1.min(far);
                if t0 > t1 {
                    return false;
                }
            }
        }
        true
    }
}

/// Terrain heights on a regular grid of samples, interpolated bilinearly;
/// outside the sampled area the edge samples extend outwards. The z axis is
/// up.
#[derive(Debug, Clone, PartialEq)]
pub struct Heightfield {
    origin: [f64; 2],
    spacing: f64,
    size: [u32; 2],
    heights: Vec<f32>,
}

impl Heightfield {
    /// Flat ground at `height` everywhere (the default world).
    pub fn flat(height: f32) -> Self {
        Self {
            origin: [0.0; 2],
            spacing: 1.0,
            size: [1, 1],
            heights: vec![height],
        }
    }

    /// A heightfield whose sample `(i, j)` lies at `origin + (i, j) ·
    /// spacing` with height `heights[i + j · size[0]]`.
    pub fn new(
        origin: [f64; 2],
        spacing: f64,
        size: [u32; 2],
        heights: Vec<f32>,
    ) -> Result<Self, ShardError> {
        if !(spacing.is_finite() && spacing > 0.0 && origin.iter().all(|v| v.is_finite())) {
            return Err(ShardError::BadData(
                "heightfield spacing must be positive and its origin finite",
            ));
        }
        if size[0] == 0 || size[1] == 0 {
            return Err(ShardError::BadData("heightfield has no samples"));
        }
        if heights.len() as u64 != u64::from(size[0]) * u64::from(size[1]) {
            return Err(ShardError::BadData(
                "heightfield sample count differs from its size",
            ));
        }
        if !heights.iter().all(|h| h.is_finite()) {
            return Err(ShardError::BadData("heightfield heights must be finite"));
        }
        Ok(Self {
            origin,
            spacing,
            size,
            heights,
        })
    }

    /// Where sample (0, 0) lies.
    pub fn origin(&self) -> [f64; 2] {
        self.origin
    }

    /// Distance between samples.
    pub fn spacing(&self) -> f64 {
        self.spacing
    }

    /// Whether every sample has the same height.
    pub fn is_flat(&self) -> bool {
        self.heights.windows(2).all(|w| w[0] == w[1])
    }

    /// The ground height under `(x, y)`.
    pub fn height_at(&self, x: f32, y: f32) -> f32 {
        if self.heights.len() == 1 {
            return self.heights[0];
        }
        let sample = |axis: usize, v: f32| -> (usize, f32) {
            let last = self.size[axis] - 1;
            let g = ((f64::from(v) - self.origin[axis]) / self.spacing).clamp(0.0, f64::from(last));
            let i = (g.floor() as u32).min(last.saturating_sub(1));
            let frac = (g - f64::from(i)) as f32;
            (i as usize, frac)
        };
        let (i, fx) = sample(0, x);
        let (j, fy) = sample(1, y);
        let nx = self.size[0] as usize;
        let at = |i: usize, j: usize| -> f32 {
            let i = i.min(nx - 1);
            let j = j.min(self.size[1] as usize - 1);
            self.heights[i + j * nx]
        };
        let h00 = at(i, j);
        let h10 = at(i + 1, j);
        let h01 = at(i, j + 1);
        let h11 = at(i + 1, j + 1);
        let a = h00 + (h10 - h00) * fx;
        let b = h01 + (h11 - h01) * fx;
        a + (b - a) * fy
    }
}

impl Default for Heightfield {
    fn default() -> Self {
        Self::flat(0.0)
    }
}

/// Obstacle boxes with a 2D bucket index, so that a movement segment is
/// tested only against the boxes near it.
#[derive(Debug, Clone)]
pub struct ObstacleIndex {
    boxes: Vec<Aabb>,
    buckets: IdMap<u64, Vec<u32>>,
}

const OBSTACLE_CELL: f64 = 4096.0;

impl ObstacleIndex {
    /// Indexes `boxes`.
    pub fn new(boxes: Vec<Aabb>) -> Result<Self, ShardError> {
        let mut buckets: IdMap<u64, Vec<u32>> = id_map(boxes.len());
        for (n, b) in boxes.iter().enumerate() {
            if !(0..3).all(|i| b.min[i].is_finite() && b.max[i].is_finite()) {
                return Err(ShardError::BadData("obstacle corners must be finite"));
            }
            let [x0, y0] = Self::cell_of(b.min[0], b.min[1]);
            let [x1, y1] = Self::cell_of(b.max[0], b.max[1]);
            if (i64::from(x1) - i64::from(x0) + 1) * (i64::from(y1) - i64::from(y0) + 1) > 1 << 20 {
                return Err(ShardError::BadData("an obstacle box is too large"));
            }
            for x in x0..=x1 {
                for y in y0..=y1 {
                    buckets.entry(Self::key(x, y)).or_default().push(n as u32);
                }
            }
        }
        Ok(Self { boxes, buckets })
    }

    fn cell_of(x: f32, y: f32) -> [i32; 2] {
        [
            (f64::from(x) / OBSTACLE_CELL).floor() as i32,
            (f64::from(y) / OBSTACLE_CELL).floor() as i32,
        ]
    }

    fn key(x: i32, y: i32) -> u64 {
        (u64::from(x as u32) << 32) | u64::from(y as u32)
    }

    /// The boxes.
    pub fn boxes(&self) -> &[Aabb] {
        &self.boxes
    }

    /// Whether the segment from `a` to `b` touches any box.
    pub fn segment_blocked(&self, a: [f32; 3], b: [f32; 3]) -> bool {
        if self.boxes.is_empty() {
            return false;
        }
        let [x0, y0] = Self::cell_of(a[0].min(b[0]), a[1].min(b[1]));
        let [x1, y1] = Self::cell_of(a[0].max(b[0]), a[1].max(b[1]));
        let cells = (i64::from(x1) - i64::from(x0) + 1) * (i64::from(y1) - i64::from(y0) + 1);
        // The segment's bounding box rejects most boxes with six
        // comparisons, before the slab test's divisions.
        let lo: [f32; 3] = core::array::from_fn(|k| a[k].min(b[k]));
        let hi: [f32; 3] = core::array::from_fn(|k| a[k].max(b[k]));
        let hit = |o: &Aabb| {
            (0..3).all(|k| o.min[k] <= hi[k] && lo[k] <= o.max[k]) && o.segment_intersects(a, b)
        };
        if cells > 64 {
            return self.boxes.iter().any(hit);
        }
        for x in x0..=x1 {
            for y in y0..=y1 {
                if let Some(list) = self.buckets.get(&Self::key(x, y)) {
                    if list.iter().any(|&n| hit(&self.boxes[n as usize])) {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Whether `p` is inside any box.
    pub fn inside(&self, p: [f32; 3]) -> bool {
        self.segment_blocked(p, p)
    }
}

/// Where the world populates a non-player entity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpawnPoint {
    /// What spawns.
    pub kind: EntityType,
    /// Its faction.
    pub faction: Faction,
    /// Where (z is snapped to the ground).
    pub position: [f32; 3],
    /// How far from the spawn point it wanders (0: stands still).
    pub wander_radius: f32,
    /// Walking speed, units per second.
    pub speed: f32,
    /// Hit points.
    pub hp: f32,
    /// Mana points.
    pub mp: f32,
    /// NPC template id (0: none, a plain wanderer).
    pub template: u16,
    /// Patrol route id (0: none; else it walks the route instead of
    /// wandering).
    pub patrol: u16,
}

/// Which network ids the shards of one process hand out. Core `c` takes
/// ids `serial * stride + first + c`, so ids of different cores never
/// collide. A process alone uses `first` 0 and its own core count; in a
/// cluster each node gets its own residue class (`first` = the cores of
/// the nodes before it, `stride` = the cores of all nodes), so the ghosts
/// one node shows of another's entities never share an id with its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetIdSpace {
    /// The residue of this process's core 0.
    pub first: u32,
    /// The residue count (0: this process's core count).
    pub stride: u32,
}

/// Static game data a shard is built with.
#[derive(Debug, Clone)]
pub struct WorldData {
    /// Terrain heights (flat at 0 by default).
    pub heightfield: Heightfield,
    /// Solid boxes movement may not pass through.
    pub obstacles: Vec<Aabb>,
    /// Non-player entities; each shard spawns those in its own quadrants.
    pub spawns: Vec<SpawnPoint>,
    /// The actions players may request (at most [`crate::entity::MAX_ACTIONS`]).
    pub actions: Vec<ActionDef>,
    /// Who is hostile or friendly to whom.
    pub factions: FactionTable,
    /// Seed of the world's randomness (wander AI, combat rolls, loot).
    pub seed: u64,
    /// The level table and template growth players level up with.
    pub progression: crate::combat::Progression,
    /// Loot tables NPCs roll when they die.
    pub loot: Vec<tos_config::LootTable>,
    /// The loot table of monsters spawned from plain spawn points (no NPC
    /// template of their own; 0: none).
    pub monster_loot_table: u16,
    /// NPC templates and patrol routes ([`WorldData::with_npcs`]).
    pub npcs: crate::ai::NpcBook,
    /// The network ids this process's shards hand out.
    pub net_ids: NetIdSpace,
}

impl Default for WorldData {
    /// An empty flat world with the built-in game data (skills, loot
    /// tables, level table of `config/data/`).
    fn default() -> Self {
        let mut data = Self {
            heightfield: Heightfield::default(),
            obstacles: Vec::new(),
            spawns: Vec::new(),
            actions: default_actions(),
            factions: FactionTable::default(),
            seed: 1,
            progression: crate::combat::Progression::default(),
            loot: Vec::new(),
            monster_loot_table: 0,
            npcs: crate::ai::NpcBook::default(),
            net_ids: NetIdSpace::default(),
        };
        // The built-in data is checked by the config tests; were it broken,
        // the world would merely have no loot and one level.
        if let Ok(game) = tos_config::GameData::embedded() {
            data.apply_game_data(&game);
        }
        data
    }
}

impl WorldData {
    /// Takes skills, loot tables and the level table from `game` (the
    /// operator's `runtime.game_data_dir` or the built-in files).
    pub fn apply_game_data(&mut self, game: &tos_config::GameData) {
        self.actions = game
            .combat
            .skills
            .iter()
            .map(ActionDef::from_skill)
            .collect();
        self.loot = game.combat.loot.clone();
        self.monster_loot_table = game.combat.loot.first().map_or(0, |t| t.id);
        self.progression = crate::combat::Progression::from_game_data(game);
    }

    /// A default world populated with `count` non-player entities spread
    /// uniformly over the whole world (60% monsters, 25% NPCs, 10%
    /// buildings, 5% items), seeded.
    pub fn populated(world: &WorldConfig, count: usize, seed: u64) -> Self {
        let mut data = Self {
            seed,
            ..Self::default()
        };
        let geometry = world.geometry();
        let mut rng = Rng::new(seed ^ 0x005e_ed0f_5ad0);
        for _ in 0..count {
            let x = geometry.min[0] + f64::from(rng.unit()) * geometry.extent[0];
            let y = geometry.min[1] + f64::from(rng.unit()) * geometry.extent[1];
            let roll = rng.below(100);
            let (kind, faction, radius, speed, hp) = match roll {
                0..60 => (
                    EntityType::Monster,
                    Faction::MONSTERS,
                    3_000.0,
                    400.0,
                    200.0,
                ),
                60..85 => (EntityType::Npc, Faction::TOWNSFOLK, 1_500.0, 250.0, 500.0),
                85..95 => (EntityType::StaticBuild, Faction::NEUTRAL, 0.0, 0.0, 5_000.0),
                _ => (EntityType::Item, Faction::NEUTRAL, 0.0, 0.0, 1.0),
            };
            data.spawns.push(SpawnPoint {
                kind,
                faction,
                position: [x as f32, y as f32, 0.0],
                wander_radius: radius,
                speed,
                hp,
                mp: 100.0,
                template: 0,
                patrol: 0,
            });
        }
        data
    }
}

/// The world as one core sees it: geometry, quantization and ownership.
#[derive(Debug, Clone)]
pub struct World {
    quantizer: Quantizer,
    core: u16,
    cores: u16,
    grid: [u16; 3],
    owners: Vec<u16>,
    owned: Vec<[u16; 3]>,
    hysteresis: f32,
}

impl World {
    /// The world of `core` under `layout`.
    pub fn new(
        config: &WorldConfig,
        layout: &ResolvedLayout,
        core: u16,
    ) -> Result<Self, ShardError> {
        let quantizer = config.quantizer()?;
        if layout.grid() != quantizer.grid() {
            return Err(ShardError::LayoutMismatch {
                layout: layout.grid(),
                world: quantizer.grid(),
            });
        }
        if core >= layout.cores() {
            return Err(ShardError::UnknownCore {
                core,
                cores: layout.cores(),
            });
        }
        let size = quantizer.quadrant_size();
        let smallest = size.iter().copied().fold(f64::INFINITY, f64::min);
        // Hysteresis deeper than half a quadrant could skip a quadrant.
        let hysteresis = layout.border_hysteresis().min((smallest / 2.0) as f32);
        Ok(Self {
            quantizer,
            core,
            cores: layout.cores(),
            grid: quantizer.grid(),
            owners: layout.owners().to_vec(),
            owned: layout.quadrants_of(core).collect(),
            hysteresis,
        })
    }

    /// The quantizer (world box, quadrant rebasing).
    pub fn quantizer(&self) -> &Quantizer {
        &self.quantizer
    }

    /// This core.
    pub fn core(&self) -> u16 {
        self.core
    }

    /// Cores in the layout.
    pub fn cores(&self) -> u16 {
        self.cores
    }

    /// Quadrants per axis.
    pub fn grid(&self) -> [u16; 3] {
        self.grid
    }

    /// The quadrants this core owns.
    pub fn owned_quadrants(&self) -> &[[u16; 3]] {
        &self.owned
    }

    /// The hysteresis in effect (the layout's, at most half a quadrant).
    pub fn hysteresis(&self) -> f32 {
        self.hysteresis
    }

    /// Clamps a position into the world box.
    pub fn clamp(&self, p: [f32; 3]) -> [f32; 3] {
        self.quantizer.clamp(p)
    }

    /// The quadrant holding `p` (clamped into the world first).
    pub fn quadrant_of(&self, p: [f32; 3]) -> [u16; 3] {
        self.quantizer
            .quadrant_coords(self.clamp(p))
            .unwrap_or_default()
    }

    /// The linear index of a quadrant.
    pub fn quadrant_index(&self, q: [u16; 3]) -> usize {
        usize::from(self.quantizer.quadrant_index(q))
    }

    /// The core owning quadrant `q`.
    pub fn owner(&self, q: [u16; 3]) -> u16 {
        self.owners
            .get(self.quadrant_index(q))
            .copied()
            .unwrap_or(0)
    }

    /// The core owning the quadrant holding `p`.
    pub fn owner_at(&self, p: [f32; 3]) -> u16 {
        self.owner(self.quadrant_of(p))
    }

    /// Whether this core owns the quadrant holding `p`.
    pub fn owns(&self, p: [f32; 3]) -> bool {
        self.owner_at(p) == self.core
    }

    /// The box of quadrant `q`.
    pub fn quadrant_box(&self, q: [u16; 3]) -> Aabb {
        let origin = self.quantizer.quadrant_origin(q);
        let size = self.quantizer.quadrant_size();
        let end = self.quantizer.min();
        let extent = self.quantizer.extent();
        Aabb {
            min: core::array::from_fn(|i| origin[i] as f32),
            max: core::array::from_fn(|i| (origin[i] + size[i]).min(end[i] + extent[i]) as f32),
        }
    }

    /// The in-grid quadrants around `q` (its 3 × 3 × 3 block, `q` included).
    pub(crate) fn neighbourhood(&self, q: [u16; 3]) -> impl Iterator<Item = [u16; 3]> + '_ {
        let range = move |axis: usize| {
            let lo = q[axis].saturating_sub(1);
            let hi = (q[axis] + 1).min(self.grid[axis] - 1);
            lo..=hi
        };
        range(0).flat_map(move |x| range(1).flat_map(move |y| range(2).map(move |z| [x, y, z])))
    }

    /// How deep `p` is inside the region of the core owning its quadrant:
    /// the distance to the nearest neighbouring quadrant of another core
    /// (infinite if there is none nearby).
    pub fn depth_in_owner(&self, p: [f32; 3]) -> f32 {
        let q = self.quadrant_of(p);
        let owner = self.owner(q);
        let mut depth = f64::INFINITY;
        for n in self.neighbourhood(q) {
            if self.owner(n) != owner {
                depth = depth.min(self.quadrant_box(n).distance2(p).sqrt());
            }
        }
        depth as f32
    }

    /// The core an entity of this core at `p` must be handed to: the owner
    /// of its quadrant, once `p` is at least the hysteresis inside that
    /// owner's region; `None` while this core keeps it.
    pub fn handoff_target(&self, p: [f32; 3]) -> Option<u16> {
        let owner = self.owner_at(p);
        if owner == self.core {
            return None;
        }
        (self.depth_in_owner(p) >= self.hysteresis).then_some(owner)
    }

    /// Ground height helper for spawn placement: `p` with z raised to at
    /// least the ground.
    pub(crate) fn on_ground(&self, terrain: &Heightfield, p: [f32; 3]) -> [f32; 3] {
        let p = self.clamp(p);
        self.clamp([p[0], p[1], terrain.height_at(p[0], p[1])])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tos_config::{LayoutKind, ShardLayout};

    fn world(cores: u16, kind: LayoutKind, core: u16) -> World {
        let config = WorldConfig::default();
        let layout = ShardLayout {
            cores,
            kind,
            border_hysteresis: 200.0,
        }
        .resolve(config.quadrant_grid())
        .unwrap();
        World::new(&config, &layout, core).unwrap()
    }

    #[test]
    fn boxes() {
        let b = Aabb::new([0.0, 0.0, 0.0], [10.0, 10.0, 10.0]);
        assert!(b.segment_intersects([-5.0, 5.0, 5.0], [15.0, 5.0, 5.0]));
        assert!(!b.segment_intersects([-5.0, 15.0, 5.0], [15.0, 15.0, 5.0]));
        assert!(!b.segment_intersects([-5.0, 5.0, 5.0], [-1.0, 5.0, 5.0]));
        assert!(b.segment_intersects([5.0, 5.0, 5.0], [5.0, 5.0, 5.0]));
        assert_eq!(b.distance2([13.0, 14.0, 5.0]), 25.0);
    }

    #[test]
    fn heightfield_is_bilinear_and_clamped() {
        let h = Heightfield::new([0.0, 0.0], 100.0, [2, 2], vec![0.0, 100.0, 0.0, 100.0]).unwrap();
        assert_eq!(h.height_at(50.0, 50.0), 50.0);
        assert_eq!(h.height_at(-500.0, 0.0), 0.0);
        assert_eq!(h.height_at(500.0, 500.0), 100.0);
        assert_eq!(Heightfield::flat(3.0).height_at(1e6, -1e6), 3.0);
        assert!(Heightfield::new([0.0, 0.0], 1.0, [2, 2], vec![0.0]).is_err());
    }

    #[test]
    fn obstacle_index_finds_boxes_near_segments() {
        let idx = ObstacleIndex::new(vec![
            Aabb::new([1000.0, -50.0, -100.0], [1100.0, 50.0, 500.0]),
            Aabb::new([-9000.0, -9000.0, 0.0], [-8000.0, 9000.0, 100.0]),
        ])
        .unwrap();
        assert!(idx.segment_blocked([900.0, 0.0, 0.0], [1200.0, 0.0, 0.0]));
        assert!(!idx.segment_blocked([900.0, 100.0, 0.0], [1200.0, 100.0, 0.0]));
        assert!(idx.segment_blocked([-8500.0, 8000.0, 50.0], [-8500.0, 8001.0, 50.0]));
        assert!(idx.inside([1050.0, 0.0, 0.0]));
    }

    #[test]
    fn ownership_and_hysteresis() {
        // Two stripes: core 0 owns x < 0.
        let w = world(2, LayoutKind::Stripes, 0);
        assert!(w.owns([-10.0, 0.0, 0.0]));
        assert!(!w.owns([10.0, 0.0, 0.0]));
        assert_eq!(w.handoff_target([-10.0, 0.0, 0.0]), None);
        assert_eq!(w.handoff_target([150.0, 0.0, 0.0]), None);
        assert_eq!(w.handoff_target([250.0, 0.0, 0.0]), Some(1));
        // Far outside the world: clamped into core 1's edge.
        assert_eq!(w.handoff_target([1e9, 0.0, 0.0]), Some(1));
        let w1 = world(2, LayoutKind::Stripes, 1);
        assert_eq!(w1.handoff_target([-150.0, 0.0, 0.0]), None);
        assert_eq!(w1.handoff_target([-201.0, 0.0, 0.0]), Some(0));
    }

    #[test]
    fn hysteresis_counts_every_foreign_neighbour() {
        // 2 x 2 blocks: near the corner (0, 0) three other cores meet.
        let w = world(4, LayoutKind::Blocks { cols: 2, rows: 2 }, 0);
        // Inside core 3's block (x > 0, y > 0) by 250 on x but 100 on y.
        assert_eq!(w.handoff_target([250.0, 100.0, 0.0]), None);
        assert_eq!(w.handoff_target([250.0, 250.0, 0.0]), Some(3));
    }
}
