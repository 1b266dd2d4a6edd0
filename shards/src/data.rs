//! Terrain and obstacles loaded from RON data files (the operator's
//! `authority.heightfield_file` and `authority.obstacles_file`).
//!
//! ```ron
//! // heightfield: sample (i, j) at origin + (i, j) · spacing, row-major in i
//! (origin: (-1000.0, -1000.0), spacing: 100.0, size: (3, 2), heights: [0, 10, 20, 0, 10, 20])
//! ```
//!
//! ```ron
//! // obstacles: solid axis-aligned boxes, corners in world units
//! [(min: (0, 0, 0), max: (500, 200, 400)), (min: (-800, 100, 0), max: (-700, 900, 300))]
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::world::{Aabb, Heightfield};

/// Why a data file could not be loaded.
#[derive(Debug)]
pub enum DataError {
    /// The file could not be read.
    Io {
        /// Which file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid RON of the expected shape.
    Parse {
        /// Which file.
        path: String,
        /// Where and what.
        message: String,
    },
    /// The values are inconsistent (see the message).
    Invalid {
        /// Which file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl core::fmt::Display for DataError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "cannot read {path}: {source}"),
            Self::Parse { path, message } => write!(f, "{path}: {message}"),
            Self::Invalid { path, message } => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for DataError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeightfieldFile {
    origin: (f64, f64),
    spacing: f64,
    size: (u32, u32),
    heights: Vec<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoxFile {
    min: (f32, f32, f32),
    max: (f32, f32, f32),
}

fn read(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn parse<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T, DataError> {
    ron::from_str(text).map_err(|e| DataError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Parses a heightfield from RON text (`origin_name` names it in errors).
pub fn heightfield_from_str(text: &str, origin_name: &Path) -> Result<Heightfield, DataError> {
    let f: HeightfieldFile = parse(origin_name, text)?;
    Heightfield::new(
        [f.origin.0, f.origin.1],
        f.spacing,
        [f.size.0, f.size.1],
        f.heights,
    )
    .map_err(|e| DataError::Invalid {
        path: origin_name.display().to_string(),
        message: e.to_string(),
    })
}

/// Loads a heightfield file.
pub fn load_heightfield(path: &Path) -> Result<Heightfield, DataError> {
    heightfield_from_str(&read(path)?, path)
}

/// Parses obstacle boxes from RON text.
pub fn obstacles_from_str(text: &str, origin_name: &Path) -> Result<Vec<Aabb>, DataError> {
    let boxes: Vec<BoxFile> = parse(origin_name, text)?;
    boxes
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let (a, c) = ([b.min.0, b.min.1, b.min.2], [b.max.0, b.max.1, b.max.2]);
            if a.iter().chain(&c).any(|v| !v.is_finite()) || (0..3).any(|k| a[k] > c[k]) {
                return Err(DataError::Invalid {
                    path: origin_name.display().to_string(),
                    message: format!(
                        "box {i}: corners must be finite and min <= max on every axis"
                    ),
                });
            }
            Ok(Aabb::new(a, c))
        })
        .collect()
}

/// Loads an obstacles file.
pub fn load_obstacles(path: &Path) -> Result<Vec<Aabb>, DataError> {
    obstacles_from_str(&read(path)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/data");
        let h = load_heightfield(&dir.join("heightfield-example.ron")).unwrap();
        assert!(!h.is_flat());
        let boxes = load_obstacles(&dir.join("obstacles-example.ron")).unwrap();
        assert_eq!(boxes.len(), 2);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let p = Path::new("terrain.ron");
        let e = heightfield_from_str(
            "(origin: (0, 0), spacing: 1.0, size: (2, 2), heights: [1, 2, 3])",
            p,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("terrain.ron:") && e.to_string().contains("sample count"),
            "{e}"
        );
        let e = heightfield_from_str(
            "(origin: (0, 0), spacing: 1.0, size: (1, 1), heights: [1], extra: 2)",
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
        let e = obstacles_from_str("[(min: (1, 0, 0), max: (0, 1, 1))]", Path::new("walls.ron"))
            .unwrap_err();
        assert!(
            e.to_string().contains("walls.ron") && e.to_string().contains("box 0"),
            "{e}"
        );
        assert!(matches!(
            load_obstacles(Path::new("/nonexistent/x.ron")),
            Err(DataError::Io { .. })
        ));
    }
}
