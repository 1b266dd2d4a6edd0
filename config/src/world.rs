//! The `world` section: world size, quantization, and the quadrant grid.
//!
//! Positions go on the wire as 16-bit offsets from the origin of the
//! quadrant they are in. A quadrant is therefore at most 65,535
//! quantization steps wide on each axis, and is made of whole map sections
//! so quadrant borders fall on section borders.

use serde::{Deserialize, Serialize};

use tos_protocol::quant::{GeometryError, Quantizer, WorldGeometry};

use crate::ConfigError;
use crate::check::Checker;

/// Widest quadrant on any axis, in quantization steps: the largest offset a
/// 16-bit position can hold.
pub const QUADRANT_MAX_STEPS: u32 = u16::MAX as u32;

/// Most quadrants a world may have: the size of every shard layout's owner
/// table (the default world has 256).
pub const MAX_QUADRANTS: usize = 1 << 16;

/// World size and position quantization. Per-axis values are `(x, y, z)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldConfig {
    /// World units in one metre (100: a unit is a centimetre).
    pub units_per_metre: u32,
    /// Quantization steps per metre on each axis (100: 1 cm precision).
    #[serde(deserialize_with = "crate::triple::deserialize")]
    pub steps_per_metre: [u32; 3],
    /// Size of one map section, in units.
    #[serde(deserialize_with = "crate::triple::deserialize")]
    pub section_size: [f64; 3],
    /// Sections in one map component, per axis.
    #[serde(deserialize_with = "crate::triple::deserialize")]
    pub sections_per_component: [u32; 3],
    /// Components in the world, per axis.
    #[serde(deserialize_with = "crate::triple::deserialize")]
    pub components: [u32; 3],
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            units_per_metre: 100,
            steps_per_metre: [100, 100, 100],
            section_size: [25_600.0, 25_600.0, 6_400.0],
            sections_per_component: [4, 4, 1],
            components: [8, 8, 4],
        }
    }
}

const AXES: [&str; 3] = ["x", "y", "z"];

impl WorldConfig {
    /// Size of the world in units, per axis: section size × sections per
    /// component × components (819,200 × 819,200 × 25,600 by default).
    pub fn extent(&self) -> [f64; 3] {
        std::array::from_fn(|axis| self.section_size[axis] * self.sections_along(axis) as f64)
    }

    /// Size of one quantization step in units, per axis:
    /// `units_per_metre / steps_per_metre` (1.0 by default).
    pub fn step(&self) -> [f64; 3] {
        std::array::from_fn(|axis| {
            f64::from(self.units_per_metre) / f64::from(self.steps_per_metre[axis])
        })
    }

    /// The geometry the protocol's quantizer is built from: this world,
    /// centred on the origin.
    pub fn geometry(&self) -> WorldGeometry {
        let extent = self.extent();
        WorldGeometry {
            min: extent.map(|e| -e / 2.0),
            extent,
            step: self.step(),
            section: self.section_size,
        }
    }

    /// The quantizer of this world. The quadrant size rule lives there, in
    /// one place: per axis the largest whole number of sections at most
    /// [`QUADRANT_MAX_STEPS`] steps wide, but never more than the world.
    pub fn quantizer(&self) -> Result<Quantizer, GeometryError> {
        Quantizer::new(self.geometry())
    }

    /// Size of one quadrant in units, per axis (51,200 × 51,200 × 25,600 by
    /// default); zeros for a world that validation rejects.
    pub fn quadrant_size(&self) -> [f64; 3] {
        self.quantizer().map_or([0.0; 3], |q| q.quadrant_size())
    }

    /// Quadrants per axis (16 × 16 × 1 by default); zeros for a world that
    /// validation rejects.
    pub fn quadrant_grid(&self) -> [u16; 3] {
        self.quantizer().map_or([0; 3], |q| q.grid())
    }

    /// Quadrants in the whole world: the length of a layout's owner table.
    pub fn quadrant_count(&self) -> usize {
        self.quadrant_grid()
            .iter()
            .map(|&count| usize::from(count))
            .product()
    }

    /// Sections end to end along `axis`.
    fn sections_along(&self, axis: usize) -> u64 {
        u64::from(self.sections_per_component[axis]) * u64::from(self.components[axis])
    }

    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.at_least("world.units_per_metre", self.units_per_metre, 1)?;
        for (axis, _axis_name) in AXES.iter().enumerate() {
            check.at_least(
                &format!("world.steps_per_metre[{axis}]"),
                self.steps_per_metre[axis],
                1,
            )?;
            let field = format!("world.section_size[{axis}]");
            check.positive(&field, self.section_size[axis])?;
            check.at_least(
                &format!("world.sections_per_component[{axis}]"),
                self.sections_per_component[axis],
                1,
            )?;
            check.at_least(
                &format!("world.components[{axis}]"),
                self.components[axis],
                1,
            )?;
        }
        if let Err(error) = self.quantizer() {
            let (field, allowed) = match error {
                GeometryError::SectionTooLarge { axis } => (
                    format!("world.section_size[{axis}]"),
                    format!(
                        "at most {} units along {}: {QUADRANT_MAX_STEPS} quantization steps of \
                         {} units, so that a 16-bit offset can span a quadrant",
                        f64::from(QUADRANT_MAX_STEPS) * self.step()[axis],
                        AXES[axis],
                        self.step()[axis]
                    ),
                ),
                GeometryError::TooManyQuadrants(_) => (
                    "world.components".to_string(),
                    format!(
                        "a world of at most {MAX_QUADRANTS} quadrants (a quadrant index is a u16)"
                    ),
                ),
                GeometryError::NotPositive { what, axis } => (
                    format!("world.{what}[{axis}]"),
                    "a positive, finite size".to_string(),
                ),
            };
            let found = match error {
                GeometryError::SectionTooLarge { axis } => self.section_size[axis].to_string(),
                other => other.to_string(),
            };
            return Err(check.invalid(field, allowed, found));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerConfig;

    fn field_of(error: ConfigError) -> String {
        match error {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    fn validate(world: &WorldConfig) -> Result<(), ConfigError> {
        world.validate(&Checker::new("world.ron"))
    }

    #[test]
    fn default_world_matches_the_seed_map() {
        let world = WorldConfig::default();
        assert_eq!(world.extent(), [819_200.0, 819_200.0, 25_600.0]);
        assert_eq!(world.step(), [1.0, 1.0, 1.0]);
        assert_eq!(world.quadrant_size(), [51_200.0, 51_200.0, 25_600.0]);
        assert_eq!(world.quadrant_grid(), [16, 16, 1]);
        assert_eq!(world.quadrant_count(), 256);
        assert!(validate(&world).is_ok());
    }

    #[test]
    fn finer_steps_make_smaller_quadrants() {
        // 10 steps per unit on x: a 25,600-unit section is 256,000 steps,
        // so halve the section to 6,400 units (64,000 steps): one per
        // quadrant.
        let world = WorldConfig {
            steps_per_metre: [1000, 100, 100],
            section_size: [6_400.0, 25_600.0, 6_400.0],
            ..WorldConfig::default()
        };
        assert_eq!(world.step(), [0.1, 1.0, 1.0]);
        assert_eq!(world.quadrant_size(), [6_400.0, 51_200.0, 25_600.0]);
        assert_eq!(world.quadrant_grid(), [32, 16, 1]);
        assert!(validate(&world).is_ok());
    }

    #[test]
    fn a_quadrant_of_exactly_65535_steps_is_allowed() {
        let world = WorldConfig {
            section_size: [21_845.0, 65_535.0, 6_400.0],
            sections_per_component: [3, 1, 1],
            components: [2, 2, 4],
            ..WorldConfig::default()
        };
        assert_eq!(world.quadrant_size(), [65_535.0, 65_535.0, 25_600.0]);
        assert_eq!(world.quadrant_grid(), [2, 2, 1]);
        assert!(validate(&world).is_ok());
    }

    #[test]
    fn a_partial_last_quadrant_rounds_the_grid_up() {
        // Five sections of 25,600 along x, two per quadrant: 3 quadrants.
        let world = WorldConfig {
            sections_per_component: [5, 4, 1],
            components: [1, 8, 4],
            ..WorldConfig::default()
        };
        assert_eq!(world.extent()[0], 128_000.0);
        assert_eq!(world.quadrant_size()[0], 51_200.0);
        assert_eq!(world.quadrant_grid()[0], 3);
    }

    #[test]
    fn a_section_wider_than_a_quadrant_is_rejected() {
        let world = WorldConfig {
            steps_per_metre: [1000, 100, 100],
            ..WorldConfig::default()
        };
        assert_eq!(world.quadrant_size()[0], 0.0);
        assert_eq!(world.quadrant_grid()[0], 0);
        let error = validate(&world).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("world.section_size[0]"), "{message}");
        assert!(message.contains("6553.5 units"), "{message}");
    }

    #[test]
    fn zero_steps_or_units_do_not_panic_and_are_rejected() {
        let world = WorldConfig {
            units_per_metre: 0,
            steps_per_metre: [0, 0, 0],
            ..WorldConfig::default()
        };
        let _ = (world.extent(), world.step(), world.quadrant_size());
        let _ = (world.quadrant_grid(), world.quadrant_count());
        assert_eq!(
            field_of(validate(&world).unwrap_err()),
            "world.units_per_metre"
        );
        let world = WorldConfig {
            steps_per_metre: [100, 0, 100],
            ..WorldConfig::default()
        };
        assert_eq!(
            field_of(validate(&world).unwrap_err()),
            "world.steps_per_metre[1]"
        );
    }

    #[test]
    fn too_many_quadrants_are_rejected() {
        let world = WorldConfig {
            components: [5000, 5000, 1],
            ..WorldConfig::default()
        };
        let error = validate(&world).unwrap_err();
        assert!(error.to_string().contains("100000000 quadrants"), "{error}");
        assert_eq!(field_of(error), "world.components");
        // Few quadrants in all, but too many along one axis for a u16.
        let world = WorldConfig {
            components: [40_000, 1, 1],
            ..WorldConfig::default()
        };
        assert_eq!(field_of(validate(&world).unwrap_err()), "world.components");
    }

    #[test]
    fn triples_read_as_tuples_or_lists() {
        let text = "(world: (steps_per_metre: [200, 200, 100], components: (8, 8, 4)))";
        let config = ServerConfig::from_ron_str(text, "t.ron").unwrap();
        assert_eq!(config.world.steps_per_metre, [200, 200, 100]);
        for bad in ["(1, 2)", "[1, 2, 3, 4]", "7", "\"x\""] {
            let text = format!("(world: (sections_per_component: {bad}))");
            match ServerConfig::from_ron_str(&text, "t.ron") {
                Err(ConfigError::Parse { message, .. }) => {
                    assert!(message.contains("(x, y, z)"), "{bad}: {message}");
                }
                other => panic!("{bad}: expected a parse error, got {other:?}"),
            }
        }
    }
}
