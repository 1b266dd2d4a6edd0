//! Navigation: where an NPC may walk, and A* paths around obstacles and up
//! only gentle slopes.
//!
//! Walkability is the player movement rule applied to a straight step
//! ([`Nav::step_ok`]): the segment on the ground touches no obstacle box,
//! and nowhere along it does the ground rise faster than `max_step` per
//! heightfield spacing (with a 5 % margin), so that any part of a step
//! the navigation accepts is a claim the player check accepts. There is no global grid — the world is 819,200 units wide —
//! so [`Pathfinder`] searches an implicit grid of [`NavParams::cell`]-sized
//! cells inside a square window around start and goal, with buffers sized
//! once for that window (no allocation per search).

mod astar;

pub use astar::{PathOutcome, Pathfinder, WINDOW};

use crate::authority::{MovementRules, Terrain};

/// Navigation parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NavParams {
    /// Edge of one search cell, world units.
    pub cell: f32,
    /// Highest step a walker climbs (the player rule's `max_step`).
    pub max_step: f32,
    /// Most cells one search expands.
    pub max_expansions: u32,
}

impl NavParams {
    /// Parameters for the player movement rules: 1 m cells, 4,096
    /// expansions per search.
    pub fn new(rules: &MovementRules) -> Self {
        Self {
            cell: 100.0,
            max_step: rules.max_step,
            max_expansions: 4_096,
        }
    }
}

/// The static walkability rules of one world: terrain, obstacles and the
/// slope limit.
#[derive(Debug)]
pub struct Nav<'a> {
    terrain: &'a Terrain,
    flat: bool,
    /// Steepest allowed rise per unit run (`max_step / spacing`, as the
    /// claim check), with a 5 % margin.
    steepest: f32,
    origin: [f32; 2],
    spacing: f32,
}

/// The most heightfield cells one straight step may cross.
const MAX_PIECES: u32 = 8_192;

/// The longest piece of a straight step checked against obstacles on
/// uneven ground (units): shorter than a walker's step per tick.
const PIECE: f32 = 8.0;

impl<'a> Nav<'a> {
    /// The rules for `terrain`. `flat` is whether its heightfield is flat
    /// (checking it reads every sample, so the caller caches it).
    pub fn new(terrain: &'a Terrain, flat: bool, max_step: f32) -> Self {
        let spacing = terrain.heightfield.spacing() as f32;
        let o = terrain.heightfield.origin();
        Self {
            terrain,
            flat,
            steepest: 0.95 * max_step / spacing,
            origin: [o[0] as f32, o[1] as f32],
            spacing,
        }
    }

    /// The terrain.
    pub fn terrain(&self) -> &'a Terrain {
        self.terrain
    }

    /// The ground height at `(x, y)`.
    #[inline]
    pub fn ground(&self, x: f32, y: f32) -> f32 {
        self.terrain.heightfield.height_at(x, y)
    }

    /// The point on the ground at `(x, y)`.
    #[inline]
    pub fn on_ground(&self, x: f32, y: f32) -> [f32; 3] {
        [x, y, self.ground(x, y)]
    }

    /// Whether a walker may go straight from `(a)` to `(b)` (ground plane
    /// coordinates): no obstacle on the way, and nowhere along it is the
    /// ground steeper than the limit — not just between samples: within
    /// one heightfield cell the ground along a line is a quadratic, so its
    /// slope is linear and is steepest at the ends of each piece between
    /// cell borders, where it is measured. Any part of an accepted step is
    /// then a claim the player rule accepts.
    pub fn step_ok(&self, a: [f32; 2], b: [f32; 2]) -> bool {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt();
        if !len.is_finite() {
            return false;
        }
        if !self.flat && len > 0.0 && !self.slope_ok(a, [dx / len, dy / len], len) {
            return false;
        }
        let obstacles = &self.terrain.obstacles;
        if obstacles.segment_blocked(self.on_ground(a[0], a[1]), self.on_ground(b[0], b[1])) {
            return false;
        }
        if self.flat {
            // On a plane the chord is the walk.
            return true;
        }
        // On hills the walker follows the ground, not the chord between the
        // ends: a chord between two high points passes over a low box the
        // walk between them runs into. Checked in pieces no longer than a
        // walker's step per tick.
        let pieces = (len / PIECE).ceil().max(1.0);
        if pieces > MAX_PIECES as f32 {
            return false;
        }
        let mut p0 = self.on_ground(a[0], a[1]);
        for k in 1..=pieces as u32 {
            let f = k as f32 / pieces;
            let p1 = self.on_ground(a[0] + dx * f, a[1] + dy * f);
            if obstacles.segment_blocked(p0, p1) {
                return false;
            }
            p0 = p1;
        }
        true
    }

    fn slope_ok(&self, a: [f32; 2], u: [f32; 2], len: f32) -> bool {
        let at = |t: f32| self.ground(a[0] + u[0] * t, a[1] + u[1] * t);
        // The next cell border along one axis after distance t.
        let next = |axis: usize, t: f32| -> f32 {
            if u[axis].abs() < 1e-6 {
                return f32::INFINITY;
            }
            let g = (a[axis] + u[axis] * t - self.origin[axis]) / self.spacing;
            let mut k = if u[axis] > 0.0 {
                g.floor() + 1.0
            } else {
                g.ceil() - 1.0
            };
            loop {
                let tn = (self.origin[axis] + k * self.spacing - a[axis]) / u[axis];
                if tn > t + 1e-3 {
                    return tn;
                }
                k += u[axis].signum();
            }
        };
        let mut t = 0.0;
        let mut pieces = 0;
        while t < len {
            pieces += 1;
            if pieces > MAX_PIECES {
                return false;
            }
            let t1 = next(0, t).min(next(1, t)).min(len);
            let run = t1 - t;
            let ok = if run < 2.0 {
                at(t1) - at(t) <= self.steepest * run + 1e-3
            } else {
                // The quadratic through both ends and the middle gives
                // the slope at each end exactly.
                let (h0, hm, h1) = (at(t), at(t + run * 0.5), at(t1));
                (4.0 * hm - 3.0 * h0 - h1) / run <= self.steepest
                    && (h0 - 4.0 * hm + 3.0 * h1) / run <= self.steepest
            };
            if !ok {
                return false;
            }
            t = t1;
        }
        true
    }

    /// Whether a walker standing at `p` is inside an obstacle box.
    pub fn inside_obstacle(&self, p: [f32; 2]) -> bool {
        self.terrain.obstacles.inside(self.on_ground(p[0], p[1]))
    }
}

#[cfg(test)]
mod tests;
