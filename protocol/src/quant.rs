//! Quantization: world positions to (quadrant, i16 offsets), angles to
//! `u16`, velocities to `i16`, HP/MP to a `u8` fraction.
//!
//! # World origin rebasing
//!
//! The world is an axis-aligned box cut into equal *quadrants*. A position
//! is sent as the index of its quadrant plus one `i16` offset per axis from
//! the quadrant's minimum corner, counted in quantization steps and shifted
//! by −32768 so that the whole `u16` range of steps is usable. The quadrant
//! size is derived from the step so no offset can overflow: per axis it is
//! the largest whole number of map sections whose length in steps is at most
//! 65535, but never longer than the world. With the seed's map (§12.2:
//! sections of 25,600 × 25,600 × 6,400 units, 4 × 4 × 1 sections per
//! component, 8 × 8 × 4 components, 100 units and 100 steps per metre) the
//! world is 819,200 × 819,200 × 25,600 units, the step is 1 unit, and the
//! quadrants are 51,200 × 51,200 × 25,600 units: a 16 × 16 × 1 grid.
//!
//! The round trip error of a position is at most half a step per axis (plus
//! the rounding of the final `f32`), proven by property tests over the whole
//! default world.

use core::fmt;

/// A quantized world position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QuantizedPosition {
    /// Linear quadrant index: `x + y·gx + z·gx·gy`.
    pub quadrant: u16,
    /// Offset from the quadrant's minimum corner, in steps, minus 32768.
    pub offset: [i16; 3],
}

/// Why a world could not be set up for quantization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GeometryError {
    /// A step, extent or section length is not a positive finite number.
    NotPositive {
        /// Which value.
        what: &'static str,
        /// On which axis (0 = x).
        axis: usize,
    },
    /// Not even one section fits in 65535 steps on this axis.
    SectionTooLarge {
        /// On which axis (0 = x).
        axis: usize,
    },
    /// The quadrant grid has more than 65536 quadrants.
    TooManyQuadrants(u64),
}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const AXES: [&str; 3] = ["x", "y", "z"];
        match *self {
            Self::NotPositive { what, axis } => {
                write!(
                    f,
                    "{what} on axis {} must be positive and finite",
                    AXES[axis]
                )
            }
            Self::SectionTooLarge { axis } => write!(
                f,
                "a section on axis {} is longer than 65535 quantization steps",
                AXES[axis]
            ),
            Self::TooManyQuadrants(n) => {
                write!(
                    f,
                    "{n} quadrants; a quadrant index is a u16 (at most 65536)"
                )
            }
        }
    }
}

impl std::error::Error for GeometryError {}

/// Why a position could not be quantized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuantizeError {
    /// The position is outside the world box or not finite.
    OutOfWorld,
    /// A quadrant index names no quadrant of this world.
    UnknownQuadrant(u16),
}

impl fmt::Display for QuantizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfWorld => f.write_str("position outside the world"),
            Self::UnknownQuadrant(q) => write!(f, "unknown quadrant {q}"),
        }
    }
}

impl std::error::Error for QuantizeError {}

/// The geometry a [`Quantizer`] is built from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorldGeometry {
    /// The world's minimum corner, in units.
    pub min: [f64; 3],
    /// The world's size, in units.
    pub extent: [f64; 3],
    /// Units per quantization step.
    pub step: [f64; 3],
    /// The length of a map section, the unit quadrants are made of.
    pub section: [f64; 3],
}

impl WorldGeometry {
    /// The seed's default map (§12.2), centred on the origin.
    pub fn seed_default() -> Self {
        let section = [25_600.0, 25_600.0, 6_400.0];
        let per_component = [4.0, 4.0, 1.0];
        let components = [8.0, 8.0, 4.0];
        let extent: [f64; 3] =
            core::array::from_fn(|i| section[i] * per_component[i] * components[i]);
        Self {
            min: extent.map(|e| -e / 2.0),
            extent,
            // 100 units per metre, 100 steps per metre.
            step: [1.0; 3],
            section,
        }
    }
}

/// Converts between world positions and their quantized form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    min: [f64; 3],
    extent: [f64; 3],
    step: [f64; 3],
    quadrant_size: [f64; 3],
    grid: [u16; 3],
}

impl Quantizer {
    /// Sets up quantization for a world, deriving the quadrant size.
    pub fn new(geometry: WorldGeometry) -> Result<Self, GeometryError> {
        let mut quadrant_size = [0.0; 3];
        let mut grid = [0u16; 3];
        for axis in 0..3 {
            for (what, v) in [
                ("step", geometry.step[axis]),
                ("extent", geometry.extent[axis]),
                ("section", geometry.section[axis]),
            ] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(GeometryError::NotPositive { what, axis });
                }
            }
            let steps_per_section = geometry.section[axis] / geometry.step[axis];
            // The relative slack keeps a quadrant of exactly 65535 steps from
            // being lost to rounding in the division.
            let sections = (f64::from(u16::MAX) / steps_per_section * (1.0 + 1e-12)).floor();
            if sections < 1.0 {
                return Err(GeometryError::SectionTooLarge { axis });
            }
            let size = (sections * geometry.section[axis]).min(geometry.extent[axis]);
            let cells = (geometry.extent[axis] / size).ceil();
            if cells > 65_536.0 {
                return Err(GeometryError::TooManyQuadrants(cells as u64));
            }
            quadrant_size[axis] = size;
            grid[axis] = cells as u16;
        }
        let total = u64::from(grid[0]) * u64::from(grid[1]) * u64::from(grid[2]);
        if total > 65_536 {
            return Err(GeometryError::TooManyQuadrants(total));
        }
        Ok(Self {
            min: geometry.min,
            extent: geometry.extent,
            step: geometry.step,
            quadrant_size,
            grid,
        })
    }

    /// The quantizer of the seed's default map.
    pub fn seed_default() -> Self {
        // The default geometry is valid by construction (tested below).
        match Self::new(WorldGeometry::seed_default()) {
            Ok(q) => q,
            Err(_) => unreachable!("the seed's default world is valid"),
        }
    }

    /// The world's minimum corner.
    pub fn min(&self) -> [f64; 3] {
        self.min
    }

    /// The world's size.
    pub fn extent(&self) -> [f64; 3] {
        self.extent
    }

    /// Units per step.
    pub fn step(&self) -> [f64; 3] {
        self.step
    }

    /// The derived quadrant size in units.
    pub fn quadrant_size(&self) -> [f64; 3] {
        self.quadrant_size
    }

    /// Quadrants per axis.
    pub fn grid(&self) -> [u16; 3] {
        self.grid
    }

    /// Number of quadrants.
    pub fn quadrant_count(&self) -> u32 {
        u32::from(self.grid[0]) * u32::from(self.grid[1]) * u32::from(self.grid[2])
    }

    /// Whether a position lies inside the world box.
    pub fn contains(&self, p: [f32; 3]) -> bool {
        (0..3).all(|i| {
            let v = f64::from(p[i]);
            v.is_finite() && v >= self.min[i] && v <= self.min[i] + self.extent[i]
        })
    }

    /// The quadrant coordinates of a position inside the world.
    pub fn quadrant_coords(&self, p: [f32; 3]) -> Result<[u16; 3], QuantizeError> {
        if !self.contains(p) {
            return Err(QuantizeError::OutOfWorld);
        }
        Ok(core::array::from_fn(|i| {
            let cell = ((f64::from(p[i]) - self.min[i]) / self.quadrant_size[i]).floor();
            // The far world edge belongs to the last quadrant.
            (cell as u16).min(self.grid[i] - 1)
        }))
    }

    /// The linear index of quadrant coordinates.
    pub fn quadrant_index(&self, coords: [u16; 3]) -> u16 {
        let [gx, gy, _] = self.grid.map(u32::from);
        let [x, y, z] = coords.map(u32::from);
        // Fits: the grid has at most 65536 quadrants, so the index ≤ 65535.
        (x + y * gx + z * gx * gy) as u16
    }

    /// The coordinates of a linear quadrant index.
    pub fn quadrant_coords_of(&self, index: u16) -> Result<[u16; 3], QuantizeError> {
        if u32::from(index) >= self.quadrant_count() {
            return Err(QuantizeError::UnknownQuadrant(index));
        }
        let [gx, gy, _] = self.grid.map(u32::from);
        let i = u32::from(index);
        Ok([
            (i % gx) as u16,
            (i / gx % gy) as u16,
            (i / (gx * gy)) as u16,
        ])
    }

    /// The minimum corner of a quadrant.
    pub fn quadrant_origin(&self, coords: [u16; 3]) -> [f64; 3] {
        core::array::from_fn(|i| self.min[i] + f64::from(coords[i]) * self.quadrant_size[i])
    }

    /// Quantizes a position inside the world.
    pub fn quantize_position(&self, p: [f32; 3]) -> Result<QuantizedPosition, QuantizeError> {
        let coords = self.quadrant_coords(p)?;
        let origin = self.quadrant_origin(coords);
        let offset = core::array::from_fn(|i| {
            let steps = ((f64::from(p[i]) - origin[i]) / self.step[i]).round();
            (steps.clamp(0.0, 65_535.0) as i32 - 32_768) as i16
        });
        Ok(QuantizedPosition {
            quadrant: self.quadrant_index(coords),
            offset,
        })
    }

    /// Quantizes a position, first clamping it into the world box
    /// (non-finite coordinates become the world's minimum).
    pub fn quantize_position_clamped(&self, p: [f32; 3]) -> QuantizedPosition {
        let clamped = self.clamp(p);
        self.quantize_position(clamped).unwrap_or_default()
    }

    /// Clamps a position into the world box.
    pub fn clamp(&self, p: [f32; 3]) -> [f32; 3] {
        core::array::from_fn(|i| {
            let v = f64::from(p[i]);
            let v = if v.is_finite() { v } else { self.min[i] };
            // Rounding to f32 could step outside: clamp in f32 too.
            let lo = self.min[i] as f32;
            let hi = (self.min[i] + self.extent[i]) as f32;
            let lo = if f64::from(lo) < self.min[i] {
                next_up(lo)
            } else {
                lo
            };
            let hi = if f64::from(hi) > self.min[i] + self.extent[i] {
                next_down(hi)
            } else {
                hi
            };
            (v as f32).clamp(lo, hi)
        })
    }

    /// The world position a quantized position stands for, in `f64`.
    pub fn dequantize_position_f64(&self, q: QuantizedPosition) -> Result<[f64; 3], QuantizeError> {
        let coords = self.quadrant_coords_of(q.quadrant)?;
        let origin = self.quadrant_origin(coords);
        Ok(core::array::from_fn(|i| {
            origin[i] + (f64::from(q.offset[i]) + 32_768.0) * self.step[i]
        }))
    }

    /// The world position a quantized position stands for.
    pub fn dequantize_position(&self, q: QuantizedPosition) -> Result<[f32; 3], QuantizeError> {
        Ok(self.dequantize_position_f64(q)?.map(|v| v as f32))
    }
}

fn next_up(v: f32) -> f32 {
    f32::from_bits(if v >= 0.0 {
        v.to_bits() + 1
    } else {
        v.to_bits() - 1
    })
}

fn next_down(v: f32) -> f32 {
    -next_up(-v)
}

/// Quantizes an angle in degrees to a `u16` turn fraction (any input wraps;
/// non-finite inputs give 0). Error ≤ 360/131072 degrees.
#[inline]
pub fn quantize_angle(degrees: f32) -> u16 {
    if !degrees.is_finite() {
        return 0;
    }
    let turns = f64::from(degrees).rem_euclid(360.0) / 360.0;
    ((turns * 65_536.0).round() as u32 & 0xffff) as u16
}

/// The angle in degrees `[0, 360)` a quantized angle stands for.
#[inline]
pub fn dequantize_angle(q: u16) -> f32 {
    (f64::from(q) * 360.0 / 65_536.0) as f32
}

/// A quantized rotation: pitch, yaw and roll as `u16` turn fractions.
/// Entities that only turn about the vertical axis have pitch = roll = 0 and
/// are sent yaw-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QuantizedRotation {
    /// Pitch.
    pub pitch: u16,
    /// Yaw.
    pub yaw: u16,
    /// Roll.
    pub roll: u16,
}

impl QuantizedRotation {
    /// A yaw-only rotation.
    pub fn yaw(degrees: f32) -> Self {
        Self {
            pitch: 0,
            yaw: quantize_angle(degrees),
            roll: 0,
        }
    }

    /// A full rotation from degrees.
    pub fn from_degrees(pitch: f32, yaw: f32, roll: f32) -> Self {
        Self {
            pitch: quantize_angle(pitch),
            yaw: quantize_angle(yaw),
            roll: quantize_angle(roll),
        }
    }

    /// Whether the rotation fits the yaw-only form.
    pub fn is_yaw_only(&self) -> bool {
        self.pitch == 0 && self.roll == 0
    }
}

/// Quantizes a velocity component to `i16` steps of `step` units per second,
/// saturating at ±32767 steps; non-finite gives 0.
#[inline]
pub fn quantize_velocity(v: f32, step: f32) -> i16 {
    if !v.is_finite() || !step.is_finite() || step <= 0.0 {
        return 0;
    }
    (v / step).round().clamp(-32_767.0, 32_767.0) as i16
}

/// The velocity a quantized component stands for.
#[inline]
pub fn dequantize_velocity(q: i16, step: f32) -> f32 {
    f32::from(q) * step
}

/// Quantizes `value / max` (HP, MP) to a `u8` fraction, clamped to [0, 1].
/// A non-positive or non-finite maximum gives 0.
#[inline]
pub fn quantize_fraction(value: f32, max: f32) -> u8 {
    if !max.is_finite() || max <= 0.0 || value.is_nan() {
        return 0;
    }
    ((value / max).clamp(0.0, 1.0) * 255.0).round() as u8
}

/// The fraction in [0, 1] a quantized value stands for.
#[inline]
pub fn dequantize_fraction(q: u8) -> f32 {
    f32::from(q) / 255.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_default_world() {
        let q = Quantizer::seed_default();
        assert_eq!(q.extent(), [819_200.0, 819_200.0, 25_600.0]);
        assert_eq!(q.quadrant_size(), [51_200.0, 51_200.0, 25_600.0]);
        assert_eq!(q.grid(), [16, 16, 1]);
        assert_eq!(q.quadrant_count(), 256);
    }

    #[test]
    fn corners_and_edges() {
        let q = Quantizer::seed_default();
        let min = q.min().map(|v| v as f32);
        let max: [f32; 3] = core::array::from_fn(|i| (q.min()[i] + q.extent()[i]) as f32);
        let a = q.quantize_position(min).unwrap();
        assert_eq!(
            a,
            QuantizedPosition {
                quadrant: 0,
                offset: [-32_768; 3]
            }
        );
        let b = q.quantize_position(max).unwrap();
        assert_eq!(b.quadrant, 255);
        assert_eq!(q.dequantize_position(b).unwrap(), max);
        assert_eq!(
            q.quantize_position([1e9, 0.0, 0.0]),
            Err(QuantizeError::OutOfWorld)
        );
        assert_eq!(
            q.quantize_position([f32::NAN, 0.0, 0.0]),
            Err(QuantizeError::OutOfWorld)
        );
        assert_eq!(
            q.dequantize_position(QuantizedPosition {
                quadrant: 256,
                offset: [0; 3]
            }),
            Err(QuantizeError::UnknownQuadrant(256))
        );
        assert!(q.contains(q.clamp([1e9, -1e9, f32::INFINITY])));
    }

    #[test]
    fn geometry_errors() {
        let mut g = WorldGeometry::seed_default();
        g.step[1] = 0.0;
        assert_eq!(
            Quantizer::new(g),
            Err(GeometryError::NotPositive {
                what: "step",
                axis: 1
            })
        );
        let mut g = WorldGeometry::seed_default();
        g.step = [0.1; 3];
        assert_eq!(
            Quantizer::new(g),
            Err(GeometryError::SectionTooLarge { axis: 0 })
        );
    }

    #[test]
    fn angles_and_fractions() {
        assert_eq!(quantize_angle(0.0), 0);
        assert_eq!(quantize_angle(360.0), 0);
        assert_eq!(quantize_angle(180.0), 32_768);
        assert_eq!(quantize_angle(-90.0), 49_152);
        assert_eq!(quantize_angle(f32::NAN), 0);
        assert_eq!(quantize_fraction(50.0, 100.0), 128);
        assert_eq!(quantize_fraction(150.0, 100.0), 255);
        assert_eq!(quantize_fraction(-5.0, 100.0), 0);
        assert_eq!(quantize_fraction(5.0, 0.0), 0);
        assert_eq!(quantize_velocity(1e9, 1.0), 32_767);
        assert_eq!(quantize_velocity(-12.4, 1.0), -12);
    }
}
