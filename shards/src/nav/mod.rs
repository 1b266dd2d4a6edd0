//! Navigation: where an NPC may walk, and A* paths around obstacles and up
//! only gentle slopes.
//!
//! Walkability is the player movement rule applied to a straight step
//! ([`Nav::step_ok`]): the segment on the ground touches no obstacle box,
//! and along it the ground never rises faster than `max_step` per
//! heightfield spacing (sampled at a quarter of the spacing, with a 10 %
//! margin, so that a step the navigation accepts is one the claim check
//! accepts). There is no global grid — the world is 819,200 units wide —
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
    /// Steepest allowed rise per unit run (`max_step / spacing`), with a
    /// 10 % margin.
    steepest: f32,
    sample: f32,
}

impl<'a> Nav<'a> {
    /// The rules for `terrain`. `flat` is whether its heightfield is flat
    /// (checking it reads every sample, so the caller caches it).
    pub fn new(terrain: &'a Terrain, flat: bool, max_step: f32) -> Self {
        let spacing = terrain.heightfield.spacing() as f32;
        Self {
            terrain,
            flat,
            steepest: 0.9 * max_step / spacing,
            sample: spacing / 4.0,
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
    /// coordinates): no obstacle on the way, no slope steeper than the
    /// limit.
    pub fn step_ok(&self, a: [f32; 2], b: [f32; 2]) -> bool {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt();
        if !len.is_finite() {
            return false;
        }
        if !self.flat {
            let samples = ((len / self.sample).ceil() as u32).clamp(1, 4096);
            let run = len / samples as f32;
            let mut last = self.ground(a[0], a[1]);
            for k in 1..=samples {
                let t = k as f32 / samples as f32;
                let g = self.ground(a[0] + dx * t, a[1] + dy * t);
                if g - last > self.steepest * run {
                    return false;
                }
                last = g;
            }
        }
        !self.terrain.obstacles.segment_blocked(
            self.on_ground(a[0], a[1]),
            self.on_ground(b[0], b[1]),
        )
    }

    /// Whether a walker standing at `p` is inside an obstacle box.
    pub fn inside_obstacle(&self, p: [f32; 2]) -> bool {
        self.terrain.obstacles.inside(self.on_ground(p[0], p[1]))
    }
}

#[cfg(test)]
mod tests;
