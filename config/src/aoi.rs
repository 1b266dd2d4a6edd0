//! The `aoi` section: the area-of-interest grid and per-kind distances.

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::check::Checker;

/// The area-of-interest grid. Distances are in world units (100 units =
/// 1 m at the default `world.units_per_metre`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AoiConfig {
    /// Filter replication by interest; `false` sends every client every
    /// entity in its shard (for tests and tiny worlds only).
    pub enabled: bool,
    /// Edge of one cubic AOI grid cell, in units.
    pub cell_size: f64,
    /// Interest distance for any entity kind without its own entry below,
    /// in units.
    pub base_distance: f64,
    /// How far away a viewer can be and still be sent each kind of entity.
    pub distances: InterestDistances,
}

impl Default for AoiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cell_size: 500.0,
            base_distance: 100_000.0,
            distances: InterestDistances::default(),
        }
    }
}

impl AoiConfig {
    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.positive("aoi.cell_size", self.cell_size)?;
        check.positive("aoi.base_distance", self.base_distance)?;
        self.distances.validate(check)
    }
}

/// Interest distance per entity kind, in units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterestDistances {
    /// Other players (default 1 km).
    pub player: f64,
    /// Non-player characters (default 500 m).
    pub npc: f64,
    /// Monsters (default 500 m).
    pub monster: f64,
    /// Buildings and other static structures (default 250 m).
    pub static_build: f64,
    /// Vehicles and mounts (default 1.5 km).
    pub vehicle: f64,
    /// Projectiles, seen from far because they are fast (default 2 km).
    pub projectile: f64,
    /// Items lying in the world (default 100 m).
    pub item: f64,
    /// Visual effects (default 500 m).
    pub effect: f64,
}

impl Default for InterestDistances {
    fn default() -> Self {
        Self {
            player: 100_000.0,
            npc: 50_000.0,
            monster: 50_000.0,
            static_build: 25_000.0,
            vehicle: 150_000.0,
            projectile: 200_000.0,
            item: 10_000.0,
            effect: 50_000.0,
        }
    }
}

impl InterestDistances {
    /// The largest distance of any kind: the radius a viewer's AOI query
    /// must cover.
    pub fn max(&self) -> f64 {
        self.entries()
            .into_iter()
            .map(|(_, distance)| distance)
            .fold(0.0, f64::max)
    }

    fn entries(&self) -> [(&'static str, f64); 8] {
        [
            ("aoi.distances.player", self.player),
            ("aoi.distances.npc", self.npc),
            ("aoi.distances.monster", self.monster),
            ("aoi.distances.static_build", self.static_build),
            ("aoi.distances.vehicle", self.vehicle),
            ("aoi.distances.projectile", self.projectile),
            ("aoi.distances.item", self.item),
            ("aoi.distances.effect", self.effect),
        ]
    }

    fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        for (field, distance) in self.entries() {
            check.positive(field, distance)?;
        }
        Ok(())
    }
}
