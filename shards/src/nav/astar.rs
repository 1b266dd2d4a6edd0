//! A* over an implicit 8-connected grid inside a fixed window, with every
//! buffer allocated once ([`Pathfinder::new`]) and reused: a search only
//! bumps a stamp instead of clearing its arrays, so it allocates nothing
//! and costs only the cells it touches.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Nav, NavParams};

/// Cells along one side of the search window (96 cells of 1 m: a chase
/// of up to about 45 m each way around its midpoint).
pub const WINDOW: usize = 96;
const N: usize = WINDOW * WINDOW;

const DIRS: [(i32, i32); 8] = [
    (1, 0),
    (-1, 0),
    (0, 1),
    (0, -1),
    (1, 1),
    (1, -1),
    (-1, 1),
    (-1, -1),
];

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOutcome {
    /// A path to the goal: this many waypoints written.
    Found(usize),
    /// The goal is out of reach within the window or the expansion
    /// budget: a path to the reachable cell nearest the goal, this many
    /// waypoints (0: no progress possible).
    Partial(usize),
}

impl PathOutcome {
    /// Waypoints written.
    pub fn len(self) -> usize {
        match self {
            Self::Found(n) | Self::Partial(n) => n,
        }
    }

    /// Whether no waypoint was written.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// A reusable A* searcher.
#[derive(Debug)]
pub struct Pathfinder {
    params: NavParams,
    search: u32,
    /// Per cell: the search that last touched it.
    stamp: Vec<u32>,
    closed: Vec<u32>,
    g: Vec<f32>,
    parent: Vec<u32>,
    open: BinaryHeap<Reverse<u64>>,
    raw: Vec<u32>,
    /// Cells expanded by the last search.
    expanded: u32,
    /// Cells expanded since the pathfinder was made.
    total_expanded: u64,
}

impl Pathfinder {
    /// A pathfinder with all its buffers.
    pub fn new(params: NavParams) -> Self {
        Self {
            params,
            search: 0,
            stamp: vec![0; N],
            closed: vec![0; N],
            g: vec![0.0; N],
            parent: vec![0; N],
            // Lazy deletion pushes at most 8 entries per expansion.
            open: BinaryHeap::with_capacity(8 * N + 8),
            raw: Vec::with_capacity(N),
            expanded: 0,
            total_expanded: 0,
        }
    }

    /// Its parameters.
    pub fn params(&self) -> &NavParams {
        &self.params
    }

    /// Cells expanded by the last search.
    pub fn last_expanded(&self) -> u32 {
        self.expanded
    }

    /// Cells expanded since it was made.
    pub fn total_expanded(&self) -> u64 {
        self.total_expanded
    }

    /// Searches a path from `start` to `goal` (ground plane) expanding at
    /// most `budget` cells (and at most `max_expansions`), and writes its
    /// waypoints, the first one after `start`, into `out` (as many as fit;
    /// the last one is the goal itself when it is reached). Consecutive
    /// waypoints (and `start` with the first) are joined by straight steps
    /// that [`Nav::step_ok`] accepts.
    pub fn find(
        &mut self,
        nav: &Nav<'_>,
        start: [f32; 2],
        goal: [f32; 2],
        budget: u32,
        out: &mut [[f32; 2]],
    ) -> PathOutcome {
        self.expanded = 0;
        if out.is_empty() {
            return PathOutcome::Partial(0);
        }
        if nav.step_ok(start, goal) {
            out[0] = goal;
            return PathOutcome::Found(1);
        }
        let cell = self.params.cell;
        let half = (WINDOW / 2) as i32;
        let cell_of = |v: f32| (v / cell).floor() as i32;
        // The window is centred between start and goal.
        let origin = [
            cell_of((start[0] + goal[0]) * 0.5) - half,
            cell_of((start[1] + goal[1]) * 0.5) - half,
        ];
        let local = |p: [f32; 2]| -> (i32, i32) {
            (
                (cell_of(p[0]) - origin[0]).clamp(0, WINDOW as i32 - 1),
                (cell_of(p[1]) - origin[1]).clamp(0, WINDOW as i32 - 1),
            )
        };
        let centre = |x: i32, y: i32| -> [f32; 2] {
            [
                (origin[0] + x) as f32 * cell + cell * 0.5,
                (origin[1] + y) as f32 * cell + cell * 0.5,
            ]
        };
        let (sx, sy) = local(start);
        let (gx, gy) = local(goal);
        let s = sy as usize * WINDOW + sx as usize;
        let goal_node = gy as usize * WINDOW + gx as usize;
        let h = |x: i32, y: i32| -> f32 {
            let (dx, dy) = ((x - gx).abs() as f32, (y - gy).abs() as f32);
            (dx.max(dy) + (core::f32::consts::SQRT_2 - 1.0) * dx.min(dy)) * cell
        };
        self.search = self.search.wrapping_add(1);
        if self.search == 0 {
            // Stamps wrapped: forget every cell once.
            self.stamp.fill(0);
            self.closed.fill(0);
            self.search = 1;
        }
        let id = self.search;
        self.open.clear();
        self.stamp[s] = id;
        self.g[s] = 0.0;
        self.parent[s] = s as u32;
        self.open.push(Reverse(key(h(sx, sy), s)));
        let mut best = s;
        let mut best_h = h(sx, sy);
        let limit = budget.min(self.params.max_expansions);
        let mut reached = false;
        while let Some(Reverse(k)) = self.open.pop() {
            let n = (k & 0xffff_ffff) as usize;
            if self.closed[n] == id {
                continue;
            }
            self.closed[n] = id;
            if n == goal_node {
                reached = true;
                break;
            }
            if self.expanded >= limit {
                break;
            }
            self.expanded += 1;
            let (x, y) = ((n % WINDOW) as i32, (n / WINDOW) as i32);
            // The start node stands for the walker's own position.
            let from = if n == s { start } else { centre(x, y) };
            for (dx, dy) in DIRS {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= WINDOW as i32 || ny >= WINDOW as i32 {
                    continue;
                }
                let m = ny as usize * WINDOW + nx as usize;
                if self.closed[m] == id {
                    continue;
                }
                let step = if dx != 0 && dy != 0 {
                    core::f32::consts::SQRT_2 * cell
                } else {
                    cell
                };
                let g = self.g[n] + step;
                if self.stamp[m] == id && self.g[m] <= g {
                    continue;
                }
                if !nav.step_ok(from, centre(nx, ny)) {
                    continue;
                }
                self.stamp[m] = id;
                self.g[m] = g;
                self.parent[m] = n as u32;
                let hm = h(nx, ny);
                if hm < best_h {
                    best_h = hm;
                    best = m;
                }
                self.open.push(Reverse(key(g + hm, m)));
            }
        }
        self.total_expanded += u64::from(self.expanded);
        let end = if reached { goal_node } else { best };
        // Cells from the end back to (not including) the start.
        self.raw.clear();
        let mut c = end;
        while c != s {
            self.raw.push(c as u32);
            c = self.parent[c] as usize;
        }
        self.raw.reverse();
        let pos = |k: usize| {
            let c = self.raw[k] as usize;
            centre((c % WINDOW) as i32, (c / WINDOW) as i32)
        };
        // String pulling: from each waypoint, the farthest of the next 16
        // cells reachable in a straight step.
        let mut written = 0;
        let mut anchor = start;
        let mut i = 0;
        let len = self.raw.len();
        while i < len && written < out.len() {
            let far = (i + 16).min(len) - 1;
            let mut j = far;
            while j > i && !nav.step_ok(anchor, pos(j)) {
                j -= 1;
            }
            anchor = pos(j);
            out[written] = anchor;
            written += 1;
            i = j + 1;
        }
        if reached && written < out.len() && (written == 0 || i >= len) {
            // The goal's cell centre is not the goal: finish the last bit
            // when it is walkable.
            if nav.step_ok(anchor, goal) {
                out[written] = goal;
                written += 1;
            }
            // The goal shares the start's cell but is not a straight step
            // away (a box's corner between them): nowhere to go.
            if written == 0 {
                return PathOutcome::Partial(0);
            }
            return PathOutcome::Found(written);
        }
        if reached {
            PathOutcome::Found(written)
        } else {
            PathOutcome::Partial(written)
        }
    }
}

/// A heap key: the cost (a non-negative `f32`, whose bits order like
/// the number) above the node index.
#[inline]
fn key(f: f32, node: usize) -> u64 {
    (u64::from(f.max(0.0).to_bits()) << 32) | node as u64
}
