//! Area of interest: which entities a viewer may see.
//!
//! Two levels of uniform grids index every entity of a shard (local or
//! ghost), both maintained incrementally:
//!
//! - the **fine grid**: 3D cells of `aoi.cell_size` units (500 by default),
//!   stored sparsely as a hash map from cell key to the head of an
//!   intrusive doubly-linked list through the entity slots. Cell lookup is
//!   O(1); an entity changes list only when it crosses a cell border. Only
//!   occupied cells exist, so memory is O(entities), not O(world volume)
//!   (the default world has 1639 × 1639 × 52 = 140 million fine cells).
//! - one **coarse layer per entity type**: a dense 3D grid whose cells are
//!   aligned blocks of fine cells, about half that type's interest distance
//!   on a side (50,000 units for players, 5,000 for items). An entity is
//!   linked into its own type's layer only; its coarse cell is recomputed
//!   only when its fine cell changes.
//!
//! A viewer's query visits, per entity type present, the coarse cells of
//! that type's layer that overlap the sphere of that type's interest
//! distance: about 5 × 5 cells in the plane (one layer thick in the default
//! world), whatever the distance. Cells wholly inside the sphere are taken
//! without a per-entity test; cells crossing its surface test each entity.
//! The cost is O(cells visited + candidates), where candidates are at most
//! about (2.5 D)² / (π D²) ≈ 2 times the entities actually in range, instead
//! of the (2 D / 500)² = 160,000 fine cells a naive scan of a 100,000-unit
//! player radius would visit. See `docs/WORLD.md`.

use tos_config::AoiConfig;
use tos_protocol::quant::Quantizer;

use crate::entity::EntityType;
use crate::util::{IdMap, id_map};

const NIL: u32 = u32::MAX;
const AXIS_BITS: u32 = 21;
const MAX_LAYER_CELLS: u64 = 1 << 22;

#[derive(Debug, Clone)]
struct Layer {
    /// Fine cells per coarse cell along each axis.
    factor: u32,
    dims: [u32; 3],
    size: f64,
    heads: Vec<u32>,
    count: u32,
}

/// The AOI index of one shard. Slots are entity pool indices.
#[derive(Debug, Clone)]
pub struct AoiGrid {
    cell: f64,
    min: [f64; 3],
    fine_dims: [u32; 3],
    distance: [f64; 8],
    fine: IdMap<u64, u32>,
    fine_key: Vec<u64>,
    fine_next: Vec<u32>,
    fine_prev: Vec<u32>,
    layers: [Layer; 8],
    coarse_cell: Vec<u32>,
    coarse_next: Vec<u32>,
    coarse_prev: Vec<u32>,
    layer_of: Vec<u8>,
    present: Vec<bool>,
    cell_moves: u64,
}

impl AoiGrid {
    /// A grid over the world of `quantizer` for `capacity` entity slots.
    pub fn new(config: &AoiConfig, quantizer: &Quantizer, capacity: u32) -> Self {
        let min = quantizer.min();
        let extent = quantizer.extent();
        let longest = extent.iter().copied().fold(0.0, f64::max);
        // Fine coordinates are packed into 21 bits per axis.
        let cell = config
            .cell_size
            .max(longest / f64::from((1u32 << AXIS_BITS) - 1));
        let fine_dims: [u32; 3] =
            core::array::from_fn(|i| ((extent[i] / cell).ceil() as u32).max(1));
        let distance: [f64; 8] =
            core::array::from_fn(|t| EntityType::ALL[t].interest_distance(&config.distances));
        let layers = core::array::from_fn(|t| {
            let mut factor = ((distance[t] / 2.0 / cell).round() as u32).max(1);
            loop {
                let dims: [u32; 3] = core::array::from_fn(|i| fine_dims[i].div_ceil(factor));
                let cells = dims.iter().map(|&d| u64::from(d)).product::<u64>();
                if cells <= MAX_LAYER_CELLS {
                    break Layer {
                        factor,
                        dims,
                        size: f64::from(factor) * cell,
                        heads: vec![NIL; cells as usize],
                        count: 0,
                    };
                }
                factor *= 2;
            }
        });
        let n = capacity as usize;
        Self {
            cell,
            min,
            fine_dims,
            distance,
            fine: id_map(2 * n + 16),
            fine_key: vec![0; n],
            fine_next: vec![NIL; n],
            fine_prev: vec![NIL; n],
            layers,
            coarse_cell: vec![0; n],
            coarse_next: vec![NIL; n],
            coarse_prev: vec![NIL; n],
            layer_of: vec![0; n],
            present: vec![false; n],
            cell_moves: 0,
        }
    }

    /// Edge of a fine cell.
    pub fn cell_size(&self) -> f64 {
        self.cell
    }

    /// The interest distance of a type.
    pub fn distance(&self, kind: EntityType) -> f64 {
        self.distance[kind.index()]
    }

    /// Edge of a coarse cell of a type's layer.
    pub fn coarse_size(&self, kind: EntityType) -> f64 {
        self.layers[kind.index()].size
    }

    /// Fine-cell crossings so far.
    pub fn cell_moves(&self) -> u64 {
        self.cell_moves
    }

    /// Occupied fine cells.
    pub fn occupied_cells(&self) -> usize {
        self.fine.len()
    }

    /// The fine cell coordinates of a position (clamped to the grid).
    #[inline]
    pub fn cell_of(&self, p: [f32; 3]) -> [u32; 3] {
        core::array::from_fn(|i| {
            let c = ((f64::from(p[i]) - self.min[i]) / self.cell).floor();
            if c <= 0.0 {
                0
            } else {
                (c as u32).min(self.fine_dims[i] - 1)
            }
        })
    }

    #[inline]
    fn key(c: [u32; 3]) -> u64 {
        u64::from(c[0]) | u64::from(c[1]) << AXIS_BITS | u64::from(c[2]) << (2 * AXIS_BITS)
    }

    #[inline]
    fn coarse_index(layer: &Layer, c: [u32; 3]) -> u32 {
        let x = c[0] / layer.factor;
        let y = c[1] / layer.factor;
        let z = c[2] / layer.factor;
        x + y * layer.dims[0] + z * layer.dims[0] * layer.dims[1]
    }

    /// Adds slot `index` of type `kind` at `p`.
    pub fn insert(&mut self, index: u32, kind: EntityType, p: [f32; 3]) {
        let i = index as usize;
        if self.present[i] {
            self.remove(index);
        }
        self.present[i] = true;
        let c = self.cell_of(p);
        self.link_fine(index, Self::key(c));
        self.layer_of[i] = kind.to_u8();
        let layer = &self.layers[kind.index()];
        let ci = Self::coarse_index(layer, c);
        self.link_coarse(index, ci);
        self.layers[kind.index()].count += 1;
    }

    /// Removes slot `index`.
    pub fn remove(&mut self, index: u32) {
        let i = index as usize;
        if !self.present[i] {
            return;
        }
        self.present[i] = false;
        self.unlink_fine(index);
        self.unlink_coarse(index);
        self.layers[usize::from(self.layer_of[i])].count -= 1;
    }

    /// Moves slot `index` to `p`; returns whether it crossed a fine cell.
    #[inline]
    pub fn update(&mut self, index: u32, p: [f32; 3]) -> bool {
        let i = index as usize;
        if !self.present[i] {
            return false;
        }
        let c = self.cell_of(p);
        let key = Self::key(c);
        if key == self.fine_key[i] {
            return false;
        }
        self.cell_moves += 1;
        self.unlink_fine(index);
        self.link_fine(index, key);
        let layer = &self.layers[usize::from(self.layer_of[i])];
        let ci = Self::coarse_index(layer, c);
        if ci != self.coarse_cell[i] {
            self.unlink_coarse(index);
            self.link_coarse(index, ci);
        }
        true
    }

    fn link_fine(&mut self, index: u32, key: u64) {
        let i = index as usize;
        let head = self.fine.entry(key).or_insert(NIL);
        self.fine_next[i] = *head;
        self.fine_prev[i] = NIL;
        if *head != NIL {
            self.fine_prev[*head as usize] = index;
        }
        *head = index;
        self.fine_key[i] = key;
    }

    fn unlink_fine(&mut self, index: u32) {
        let i = index as usize;
        let (prev, next) = (self.fine_prev[i], self.fine_next[i]);
        if prev != NIL {
            self.fine_next[prev as usize] = next;
        } else if next == NIL {
            self.fine.remove(&self.fine_key[i]);
        } else if let Some(head) = self.fine.get_mut(&self.fine_key[i]) {
            *head = next;
        }
        if next != NIL {
            self.fine_prev[next as usize] = prev;
        }
    }

    fn link_coarse(&mut self, index: u32, cell: u32) {
        let i = index as usize;
        let heads = &mut self.layers[usize::from(self.layer_of[i])].heads;
        let head = heads[cell as usize];
        self.coarse_next[i] = head;
        self.coarse_prev[i] = NIL;
        if head != NIL {
            self.coarse_prev[head as usize] = index;
        }
        heads[cell as usize] = index;
        self.coarse_cell[i] = cell;
    }

    fn unlink_coarse(&mut self, index: u32) {
        let i = index as usize;
        let (prev, next) = (self.coarse_prev[i], self.coarse_next[i]);
        if prev != NIL {
            self.coarse_next[prev as usize] = next;
        } else {
            self.layers[usize::from(self.layer_of[i])].heads[self.coarse_cell[i] as usize] = next;
        }
        if next != NIL {
            self.coarse_prev[next as usize] = prev;
        }
    }

    /// Appends to `out` every entity the viewer at `p` may see: each entity
    /// within its own type's interest distance of `p` (distance ≤ D, in
    /// `f64`, from the `f32` positions in `positions`, indexed by slot).
    pub fn query(&self, p: [f32; 3], positions: &[[f32; 3]], out: &mut Vec<u32>) {
        for t in 0..8 {
            self.scan_layer(t, p, self.distance[t], positions, out);
        }
    }

    /// Appends to `out` every entity of any type within `radius` of `p`.
    pub fn query_radius(
        &self,
        p: [f32; 3],
        radius: f64,
        positions: &[[f32; 3]],
        out: &mut Vec<u32>,
    ) {
        for t in 0..8 {
            self.scan_layer(t, p, radius, positions, out);
        }
    }

    fn scan_layer(
        &self,
        t: usize,
        p: [f32; 3],
        d: f64,
        positions: &[[f32; 3]],
        out: &mut Vec<u32>,
    ) {
        let layer = &self.layers[t];
        if layer.count == 0 || d.is_nan() || d < 0.0 {
            return;
        }
        let d2 = d * d;
        let pf = p.map(f64::from);
        let mut lo = [0u32; 3];
        let mut hi = [0u32; 3];
        for i in 0..3 {
            let a = ((pf[i] - d - self.min[i]) / layer.size).floor();
            let b = ((pf[i] + d - self.min[i]) / layer.size).floor();
            let last = f64::from(layer.dims[i] - 1);
            if b < 0.0 || a > last {
                return;
            }
            lo[i] = a.clamp(0.0, last) as u32;
            hi[i] = b.clamp(0.0, last) as u32;
        }
        // Cell boxes are widened by a hair so that floating-point rounding
        // in assigning entities to cells can never put one outside its box.
        let eps = self.cell * 1e-6;
        for z in lo[2]..=hi[2] {
            for y in lo[1]..=hi[1] {
                let row = y * layer.dims[0] + z * layer.dims[0] * layer.dims[1];
                for x in lo[0]..=hi[0] {
                    let head = layer.heads[(row + x) as usize];
                    if head == NIL {
                        continue;
                    }
                    let c = [x, y, z];
                    let mut near = 0.0;
                    let mut far = 0.0;
                    for i in 0..3 {
                        let bmin = self.min[i] + f64::from(c[i]) * layer.size - eps;
                        let bmax = bmin + layer.size + 2.0 * eps;
                        let e = if pf[i] < bmin {
                            bmin - pf[i]
                        } else if pf[i] > bmax {
                            pf[i] - bmax
                        } else {
                            0.0
                        };
                        near += e * e;
                        let f = (pf[i] - bmin).abs().max((bmax - pf[i]).abs());
                        far += f * f;
                    }
                    if near > d2 {
                        continue;
                    }
                    let whole = far < d2 * (1.0 - 1e-9);
                    let mut e = head;
                    while e != NIL {
                        if whole || crate::util::dist2(p, positions[e as usize]) <= d2 {
                            out.push(e);
                        }
                        e = self.coarse_next[e as usize];
                    }
                }
            }
        }
    }

    /// Appends to `out` the entities of any type within `radius` of `p`,
    /// through the fine grid (for small radii: it visits every fine cell of
    /// the sphere's bounding box; large radii use the coarse layers).
    pub fn query_fine(&self, p: [f32; 3], radius: f64, positions: &[[f32; 3]], out: &mut Vec<u32>) {
        if radius.is_nan() || radius < 0.0 {
            return;
        }
        let r = radius as f32;
        let lo = self.cell_of([p[0] - r, p[1] - r, p[2] - r]);
        let hi = self.cell_of([p[0] + r, p[1] + r, p[2] + r]);
        let cells: u64 = (0..3).map(|i| u64::from(hi[i] - lo[i] + 1)).product();
        if cells > 4096 {
            return self.query_radius(p, radius, positions, out);
        }
        let r2 = radius * radius;
        for z in lo[2]..=hi[2] {
            for y in lo[1]..=hi[1] {
                for x in lo[0]..=hi[0] {
                    let Some(&head) = self.fine.get(&Self::key([x, y, z])) else {
                        continue;
                    };
                    let mut e = head;
                    while e != NIL {
                        if crate::util::dist2(p, positions[e as usize]) <= r2 {
                            out.push(e);
                        }
                        e = self.fine_next[e as usize];
                    }
                }
            }
        }
    }

    /// The entities in the fine cell holding `p`.
    pub fn cell_members(&self, p: [f32; 3], out: &mut Vec<u32>) {
        if let Some(&head) = self.fine.get(&Self::key(self.cell_of(p))) {
            let mut e = head;
            while e != NIL {
                out.push(e);
                e = self.fine_next[e as usize];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::Rng;

    fn brute(
        p: [f32; 3],
        positions: &[[f32; 3]],
        kinds: &[EntityType],
        present: &[bool],
        grid: &AoiGrid,
    ) -> Vec<u32> {
        (0..positions.len() as u32)
            .filter(|&i| {
                let i = i as usize;
                let d = grid.distance(kinds[i]);
                present[i] && crate::util::dist2(p, positions[i]) <= d * d
            })
            .collect()
    }

    fn random_point(rng: &mut Rng, q: &Quantizer, spread: f32) -> [f32; 3] {
        // Mostly clustered near the origin so that ranges overlap, some
        // anywhere in the world.
        if rng.chance(0.8) {
            q.clamp([
                rng.range(-spread, spread),
                rng.range(-spread, spread),
                rng.range(-3_000.0, 3_000.0),
            ])
        } else {
            let (min, ext) = (q.min(), q.extent());
            core::array::from_fn(|i| (min[i] + f64::from(rng.unit()) * ext[i]) as f32)
        }
    }

    /// The query equals a brute-force search, over random entities that
    /// move (incremental cell moves), appear and disappear, for several
    /// cell sizes and interest distances.
    #[test]
    fn query_equals_brute_force() {
        let q = Quantizer::seed_default();
        for (case, cell) in [500.0, 1_700.0, 20_000.0].into_iter().enumerate() {
            let mut config = AoiConfig {
                cell_size: cell,
                ..AoiConfig::default()
            };
            if case == 1 {
                // Odd distances that are not multiples of the cell.
                config.distances.item = 7_777.0;
                config.distances.player = 123_456.0;
            }
            let n = 1_500usize;
            let mut grid = AoiGrid::new(&config, &q, n as u32);
            let mut rng = Rng::new(42 + case as u64);
            let mut positions = vec![[0.0f32; 3]; n];
            let mut kinds = vec![EntityType::Player; n];
            let mut present = vec![false; n];
            for round in 0..30 {
                for i in 0..n {
                    if !present[i] {
                        if rng.chance(0.7) {
                            positions[i] = random_point(&mut rng, &q, 150_000.0);
                            kinds[i] = EntityType::ALL[rng.below(8) as usize];
                            present[i] = true;
                            grid.insert(i as u32, kinds[i], positions[i]);
                        }
                    } else if rng.chance(0.05) {
                        present[i] = false;
                        grid.remove(i as u32);
                    } else if rng.chance(0.5) {
                        let step = if rng.chance(0.1) { 40_000.0 } else { 800.0 };
                        let p = positions[i];
                        positions[i] = q.clamp([
                            p[0] + rng.range(-step, step),
                            p[1] + rng.range(-step, step),
                            p[2] + rng.range(-step, step) * 0.1,
                        ]);
                        grid.update(i as u32, positions[i]);
                    }
                }
                for _ in 0..10 {
                    let viewer = random_point(&mut rng, &q, 150_000.0);
                    let mut got = Vec::new();
                    grid.query(viewer, &positions, &mut got);
                    got.sort_unstable();
                    let want = brute(viewer, &positions, &kinds, &present, &grid);
                    assert_eq!(got, want, "cell {cell} round {round} viewer {viewer:?}");
                    let radius = f64::from(rng.range(0.0, 5_000.0));
                    let mut fine = Vec::new();
                    grid.query_fine(viewer, radius, &positions, &mut fine);
                    fine.sort_unstable();
                    let want: Vec<u32> = (0..n as u32)
                        .filter(|&i| {
                            present[i as usize]
                                && crate::util::dist2(viewer, positions[i as usize])
                                    <= radius * radius
                        })
                        .collect();
                    assert_eq!(fine, want);
                }
            }
        }
    }

    #[test]
    fn entities_exactly_on_the_interest_boundary() {
        let q = Quantizer::seed_default();
        let config = AoiConfig::default();
        let mut grid = AoiGrid::new(&config, &q, 4);
        let positions = [
            [10_000.0, 0.0, 0.0],
            [10_000.5, 0.0, 0.0],
            [0.0, -100_000.0, 0.0],
            [0.0, 0.0, 0.0],
        ];
        grid.insert(0, EntityType::Item, positions[0]);
        grid.insert(1, EntityType::Item, positions[1]);
        grid.insert(2, EntityType::Player, positions[2]);
        grid.insert(3, EntityType::Player, positions[3]);
        let mut out = Vec::new();
        grid.query([0.0; 3], &positions, &mut out);
        out.sort_unstable();
        assert_eq!(out, [0, 2, 3]);
    }

    #[test]
    fn moves_inside_a_cell_are_free() {
        let q = Quantizer::seed_default();
        let mut grid = AoiGrid::new(&AoiConfig::default(), &q, 2);
        grid.insert(0, EntityType::Player, [10.0, 10.0, 10.0]);
        assert!(!grid.update(0, [20.0, 20.0, 20.0]));
        assert!(grid.update(0, [600.0, 20.0, 20.0]));
        assert_eq!(grid.cell_moves(), 1);
        assert_eq!(grid.occupied_cells(), 1);
        let mut out = Vec::new();
        grid.cell_members([700.0, 100.0, 100.0], &mut out);
        assert_eq!(out, [0]);
        grid.remove(0);
        assert_eq!(grid.occupied_cells(), 0);
    }
}
