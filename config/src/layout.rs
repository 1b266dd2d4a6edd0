//! Shard layouts: which core owns which quadrant of the world.
//!
//! A layout file says how to cut the quadrant grid among cores; it does not
//! know the grid, which comes from the `world` section of the settings.
//! [`ShardLayout::resolve`] combines the two into a [`ResolvedLayout`], an
//! owner table in which every quadrant has exactly one core and every core
//! at least one quadrant.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::check::Checker;
use crate::parse::{from_ron, read_file};
use crate::{ConfigError, MAX_CORES, MAX_QUADRANTS};

/// A shard layout file (`config/layouts/*.ron`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardLayout {
    /// Number of cores (shards); core ids are `0..cores`, and must match
    /// the number of cores `runtime.cores` selects.
    pub cores: u16,
    /// How the quadrant grid is cut among the cores.
    pub kind: LayoutKind,
    /// How far past a quadrant border an entity must go before it is handed
    /// to the neighbouring core, in units, so that an entity walking along
    /// a border is not handed back and forth every tick.
    pub border_hysteresis: f32,
}

impl Default for ShardLayout {
    /// One core owning the whole world.
    fn default() -> Self {
        Self {
            cores: 1,
            kind: LayoutKind::Stripes,
            border_hysteresis: 200.0,
        }
    }
}

/// How the quadrant grid is cut among the cores.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum LayoutKind {
    /// Cut along x into `cores` stripes of whole quadrant columns (all y and
    /// z), as even as possible; core 0 owns the lowest x.
    #[default]
    Stripes,
    /// Cut along x into `cols` and along y into `rows`, as even as possible;
    /// the block in column `c` and row `r` belongs to core `c + r * cols`.
    /// `cols * rows` must equal `cores`.
    Blocks {
        /// Blocks along x.
        cols: u16,
        /// Blocks along y.
        rows: u16,
    },
    /// Every quadrant listed by hand.
    Explicit(Vec<ShardSpec>),
}

/// The quadrants one core owns, in a [`LayoutKind::Explicit`] layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSpec {
    /// The owning core, `0..cores`.
    pub core: u16,
    /// Its quadrants, as `(x, y, z)` quadrant coordinates.
    #[serde(deserialize_with = "crate::triple::deserialize_vec")]
    pub quadrants: Vec<[u16; 3]>,
}

impl ShardLayout {
    /// Reads, parses and validates the layout file at `path`; errors name
    /// the path.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_file(path)?;
        Self::from_ron_str(&text, &path.display().to_string())
    }

    /// Parses and validates a layout from RON text; errors name `origin`.
    pub fn from_ron_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let layout: Self = from_ron(text, origin)?;
        layout.validate(origin)?;
        Ok(layout)
    }

    /// Checks what can be checked without the quadrant grid: the core
    /// count, the hysteresis, block counts and the cores explicit shards
    /// name. Quadrant coverage is checked by [`ShardLayout::resolve`].
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker::new(origin);
        check.in_range("cores", usize::from(self.cores), 1, MAX_CORES)?;
        check.require(
            self.border_hysteresis.is_finite() && self.border_hysteresis >= 0.0,
            "border_hysteresis",
            "a finite number of at least 0.0",
            self.border_hysteresis,
        )?;
        match &self.kind {
            LayoutKind::Stripes => {}
            LayoutKind::Blocks { cols, rows } => {
                check.at_least("kind.Blocks.cols", *cols, 1)?;
                check.at_least("kind.Blocks.rows", *rows, 1)?;
                let blocks = u32::from(*cols) * u32::from(*rows);
                check.require(
                    blocks == u32::from(self.cores),
                    "kind.Blocks",
                    format!("cols * rows equal to cores ({})", self.cores),
                    format_args!("cols {cols} * rows {rows} = {blocks}"),
                )?;
            }
            LayoutKind::Explicit(shards) => {
                check.require(
                    !shards.is_empty(),
                    "kind.Explicit",
                    "at least one shard",
                    "an empty list",
                )?;
                for (index, shard) in shards.iter().enumerate() {
                    check.require(
                        shard.core < self.cores,
                        format!("kind.Explicit[{index}].core"),
                        format!("0..{} (the layout's cores)", self.cores),
                        shard.core,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Builds the owner table for a quadrant grid (normally
    /// [`WorldConfig::quadrant_grid`](crate::WorldConfig::quadrant_grid)).
    ///
    /// Fails unless every quadrant has exactly one owner and every core owns
    /// at least one quadrant; the error names the quadrant or core at fault.
    /// Safe on layouts that were never validated.
    pub fn resolve(&self, grid: [u16; 3]) -> Result<ResolvedLayout, LayoutError> {
        let cores = self.cores;
        if cores == 0 {
            return Err(LayoutError::NoCores);
        }
        if usize::from(cores) > MAX_CORES {
            return Err(LayoutError::TooManyCores {
                cores,
                max: MAX_CORES,
            });
        }
        let count = grid.iter().map(|&n| usize::from(n)).product::<usize>();
        if count == 0 || count > MAX_QUADRANTS {
            return Err(LayoutError::InvalidGrid {
                grid,
                max_quadrants: MAX_QUADRANTS,
            });
        }
        let [columns, rows_in_grid, _] = grid;
        let mut table = ResolvedLayout {
            grid,
            cores,
            border_hysteresis: self.border_hysteresis,
            owners: vec![UNOWNED; count],
        };
        match &self.kind {
            LayoutKind::Stripes => {
                fit_cuts('x', cores, columns)?;
                table.fill(|[x, _, _]| even_part(x, columns, cores));
            }
            &LayoutKind::Blocks { cols, rows } => {
                if u32::from(cols) * u32::from(rows) != u32::from(cores) {
                    return Err(LayoutError::BlocksMismatch { cols, rows, cores });
                }
                fit_cuts('x', cols, columns)?;
                fit_cuts('y', rows, rows_in_grid)?;
                table.fill(|[x, y, _]| {
                    even_part(x, columns, cols) + even_part(y, rows_in_grid, rows) * cols
                });
            }
            LayoutKind::Explicit(shards) => table.assign_explicit(shards)?,
        }
        table.check_coverage()?;
        Ok(table)
    }
}

/// Marks a quadrant nobody owns yet; above every valid core id.
const UNOWNED: u16 = u16::MAX;

/// A quadrant grid cut into `parts` needs at least one quadrant per part.
fn fit_cuts(axis: char, parts: u16, quadrants: u16) -> Result<(), LayoutError> {
    if parts == 0 || parts > quadrants {
        return Err(LayoutError::NotEnoughQuadrants {
            axis,
            parts,
            quadrants,
        });
    }
    Ok(())
}

/// Which of `parts` near-equal runs of `0..len` holds `index`: part sizes
/// differ by at most one, and each is non-empty when `parts <= len`.
fn even_part(index: u16, len: u16, parts: u16) -> u16 {
    let part = u32::from(index) * u32::from(parts) / u32::from(len);
    // part < parts <= u16::MAX because index < len.
    u16::try_from(part).unwrap_or(u16::MAX)
}

/// The owner of every quadrant, checked: each quadrant has exactly one
/// owning core and each core owns at least one quadrant.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedLayout {
    grid: [u16; 3],
    cores: u16,
    border_hysteresis: f32,
    owners: Vec<u16>,
}

impl ResolvedLayout {
    /// Quadrants per axis.
    pub fn grid(&self) -> [u16; 3] {
        self.grid
    }

    /// Number of cores; core ids are `0..cores`.
    pub fn cores(&self) -> u16 {
        self.cores
    }

    /// The layout's border hysteresis, in units.
    pub fn border_hysteresis(&self) -> f32 {
        self.border_hysteresis
    }

    /// The owner table, indexed by [`ResolvedLayout::index`].
    pub fn owners(&self) -> &[u16] {
        &self.owners
    }

    /// Linear index of a quadrant, `x + y * gx + z * gx * gy`; `None`
    /// outside the grid.
    pub fn index(&self, quadrant: [u16; 3]) -> Option<usize> {
        let [gx, gy, gz] = self.grid.map(usize::from);
        let [x, y, z] = quadrant.map(usize::from);
        (x < gx && y < gy && z < gz).then(|| x + y * gx + z * gx * gy)
    }

    /// The quadrant at a linear index; `None` past the end of the table.
    pub fn quadrant_at(&self, index: usize) -> Option<[u16; 3]> {
        if index >= self.owners.len() {
            return None;
        }
        let [gx, gy, _] = self.grid.map(usize::from);
        let coordinate = |value: usize| u16::try_from(value).unwrap_or(u16::MAX);
        Some([
            coordinate(index % gx),
            coordinate(index / gx % gy),
            coordinate(index / (gx * gy)),
        ])
    }

    /// The core owning `quadrant`. Coordinates past the grid are clamped to
    /// its edge, so an entity pushed beyond the world border stays with the
    /// core owning that edge; use [`ResolvedLayout::checked_owner`] to tell
    /// the two apart.
    pub fn owner(&self, quadrant: [u16; 3]) -> u16 {
        let clamped: [u16; 3] =
            std::array::from_fn(|axis| quadrant[axis].min(self.grid[axis].saturating_sub(1)));
        self.checked_owner(clamped).unwrap_or(0)
    }

    /// The core owning `quadrant`; `None` outside the grid.
    pub fn checked_owner(&self, quadrant: [u16; 3]) -> Option<u16> {
        self.index(quadrant)
            .and_then(|index| self.owners.get(index).copied())
    }

    /// The quadrants `core` owns, in index order (none for an unknown core).
    pub fn quadrants_of(&self, core: u16) -> impl Iterator<Item = [u16; 3]> + '_ {
        self.owners
            .iter()
            .enumerate()
            .filter(move |&(_, &owner)| owner == core)
            .filter_map(|(index, _)| self.quadrant_at(index))
    }

    /// Sets the owner of every quadrant from its coordinates.
    fn fill(&mut self, owner_of: impl Fn([u16; 3]) -> u16) {
        for index in 0..self.owners.len() {
            if let Some(quadrant) = self.quadrant_at(index) {
                self.owners[index] = owner_of(quadrant);
            }
        }
    }

    fn assign_explicit(&mut self, shards: &[ShardSpec]) -> Result<(), LayoutError> {
        for (shard, spec) in shards.iter().enumerate() {
            if spec.core >= self.cores {
                return Err(LayoutError::CoreOutOfRange {
                    shard,
                    core: spec.core,
                    cores: self.cores,
                });
            }
            for &quadrant in &spec.quadrants {
                let Some(index) = self.index(quadrant) else {
                    return Err(LayoutError::QuadrantOutOfRange {
                        core: spec.core,
                        quadrant,
                        grid: self.grid,
                    });
                };
                let owner = &mut self.owners[index];
                if *owner != UNOWNED {
                    return Err(LayoutError::DoublyOwned {
                        quadrant,
                        first: *owner,
                        second: spec.core,
                    });
                }
                *owner = spec.core;
            }
        }
        Ok(())
    }

    fn check_coverage(&self) -> Result<(), LayoutError> {
        let mut owned = vec![0usize; usize::from(self.cores)];
        let mut unowned = None;
        let mut unowned_count = 0;
        for (index, &owner) in self.owners.iter().enumerate() {
            match owned.get_mut(usize::from(owner)) {
                Some(count) => *count += 1,
                None => {
                    unowned_count += 1;
                    unowned = unowned.or(Some(index));
                }
            }
        }
        if let Some(index) = unowned {
            return Err(LayoutError::Unowned {
                quadrant: self.quadrant_at(index).unwrap_or_default(),
                count: unowned_count,
            });
        }
        match owned.iter().position(|&count| count == 0) {
            Some(core) => Err(LayoutError::CoreOwnsNothing {
                core: u16::try_from(core).unwrap_or(u16::MAX),
            }),
            None => Ok(()),
        }
    }
}

/// Why a layout cannot be applied to a quadrant grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// The layout has `cores: 0`.
    NoCores,
    /// More cores than connection ids can steer to.
    TooManyCores {
        /// Cores in the layout.
        cores: u16,
        /// The most allowed ([`MAX_CORES`]).
        max: usize,
    },
    /// The quadrant grid is empty on some axis, or too big for a table.
    InvalidGrid {
        /// The grid given to `resolve`.
        grid: [u16; 3],
        /// The most quadrants allowed ([`MAX_QUADRANTS`]).
        max_quadrants: usize,
    },
    /// `Blocks` whose `cols * rows` differs from `cores`.
    BlocksMismatch {
        /// Blocks along x.
        cols: u16,
        /// Blocks along y.
        rows: u16,
        /// Cores in the layout.
        cores: u16,
    },
    /// More stripes or blocks along an axis than there are quadrants, so
    /// some core would own nothing.
    NotEnoughQuadrants {
        /// `'x'` or `'y'`.
        axis: char,
        /// Parts asked for along the axis.
        parts: u16,
        /// Quadrants along the axis.
        quadrants: u16,
    },
    /// An explicit shard names a core id of `cores` or more.
    CoreOutOfRange {
        /// Position of the shard in the `Explicit` list.
        shard: usize,
        /// The core it names.
        core: u16,
        /// Cores in the layout.
        cores: u16,
    },
    /// An explicit shard lists a quadrant outside the grid.
    QuadrantOutOfRange {
        /// The core that lists it.
        core: u16,
        /// The quadrant listed.
        quadrant: [u16; 3],
        /// The grid given to `resolve`.
        grid: [u16; 3],
    },
    /// A quadrant is listed twice (by two cores, or twice by one).
    DoublyOwned {
        /// The quadrant.
        quadrant: [u16; 3],
        /// The core that listed it first.
        first: u16,
        /// The core that listed it again.
        second: u16,
    },
    /// Some quadrants have no owner.
    Unowned {
        /// The first unowned quadrant in index order.
        quadrant: [u16; 3],
        /// How many quadrants have no owner.
        count: usize,
    },
    /// A core owns no quadrant.
    CoreOwnsNothing {
        /// The idle core.
        core: u16,
    },
}

/// Writes a quadrant as `(x, y, z)`, the way layout files do.
struct Quadrant([u16; 3]);

impl fmt::Display for Quadrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [x, y, z] = self.0;
        write!(f, "({x}, {y}, {z})")
    }
}

/// Writes a grid as `gx x gy x gz`.
struct Grid([u16; 3]);

impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [x, y, z] = self.0;
        write!(f, "{x} x {y} x {z}")
    }
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoCores => f.write_str("the layout has `cores: 0`; it needs at least one core"),
            Self::TooManyCores { cores, max } => write!(
                f,
                "the layout has {cores} cores; at most {max} are supported \
                 (a connection id's low byte names its core)"
            ),
            Self::InvalidGrid {
                grid,
                max_quadrants,
            } => write!(
                f,
                "the quadrant grid {} is empty or has more than {max_quadrants} quadrants",
                Grid(grid)
            ),
            Self::BlocksMismatch { cols, rows, cores } => write!(
                f,
                "Blocks(cols: {cols}, rows: {rows}) makes {} blocks, but the layout has {cores} cores",
                u32::from(cols) * u32::from(rows)
            ),
            Self::NotEnoughQuadrants {
                axis,
                parts,
                quadrants,
            } => write!(
                f,
                "cannot cut {quadrants} quadrants along {axis} into {parts} parts; \
                 each core needs at least one whole quadrant"
            ),
            Self::CoreOutOfRange { shard, core, cores } => write!(
                f,
                "Explicit shard #{shard} names core {core}, but the layout's cores are 0..{cores}"
            ),
            Self::QuadrantOutOfRange {
                core,
                quadrant,
                grid,
            } => write!(
                f,
                "core {core} lists quadrant {}, outside the {} quadrant grid",
                Quadrant(quadrant),
                Grid(grid)
            ),
            Self::DoublyOwned {
                quadrant,
                first,
                second,
            } if first == second => write!(
                f,
                "quadrant {} is listed twice for core {first}",
                Quadrant(quadrant)
            ),
            Self::DoublyOwned {
                quadrant,
                first,
                second,
            } => write!(
                f,
                "quadrant {} is owned by both core {first} and core {second}",
                Quadrant(quadrant)
            ),
            Self::Unowned { quadrant, count } => write!(
                f,
                "quadrant {} has no owner ({count} unowned quadrants in all)",
                Quadrant(quadrant)
            ),
            Self::CoreOwnsNothing { core } => write!(f, "core {core} owns no quadrant"),
        }
    }
}

impl std::error::Error for LayoutError {}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: [u16; 3] = [16, 16, 1];

    fn layout(cores: u16, kind: LayoutKind) -> ShardLayout {
        ShardLayout {
            cores,
            kind,
            border_hysteresis: 200.0,
        }
    }

    fn spec(core: u16, quadrants: &[[u16; 3]]) -> ShardSpec {
        ShardSpec {
            core,
            quadrants: quadrants.to_vec(),
        }
    }

    /// Every quadrant of `grid` whose coordinates satisfy `keep`.
    fn quadrants(grid: [u16; 3], keep: impl Fn([u16; 3]) -> bool) -> Vec<[u16; 3]> {
        let mut all = Vec::new();
        for z in 0..grid[2] {
            for y in 0..grid[1] {
                for x in 0..grid[0] {
                    if keep([x, y, z]) {
                        all.push([x, y, z]);
                    }
                }
            }
        }
        all
    }

    /// The workspace's one seeded generator (SplitMix64), for random cases.
    struct SplitMix(tos_protocol::rng::SplitMix64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0.next_u64()
        }

        /// Uniform-ish in `low..=high`.
        fn range(&mut self, low: u16, high: u16) -> u16 {
            let span = u64::from(high - low) + 1;
            low + (self.next() % span) as u16
        }
    }

    #[test]
    fn the_default_layout_is_one_core_owning_everything() {
        let resolved = ShardLayout::default().resolve(GRID).unwrap();
        assert_eq!(resolved.cores(), 1);
        assert_eq!(resolved.border_hysteresis(), 200.0);
        assert!(resolved.owners().iter().all(|&owner| owner == 0));
        assert_eq!(resolved.quadrants_of(0).count(), 256);
    }

    #[test]
    fn two_stripes_split_the_default_grid_at_x_8() {
        let resolved = layout(2, LayoutKind::Stripes).resolve(GRID).unwrap();
        for [x, y, z] in quadrants(GRID, |_| true) {
            assert_eq!(resolved.owner([x, y, z]), u16::from(x >= 8));
        }
        assert_eq!(resolved.quadrants_of(0).count(), 128);
        assert_eq!(resolved.quadrants_of(1).count(), 128);
        assert_eq!(resolved.quadrants_of(2).count(), 0);
    }

    #[test]
    fn uneven_stripes_differ_by_at_most_one_column() {
        let resolved = layout(3, LayoutKind::Stripes).resolve([16, 2, 2]).unwrap();
        let widths: Vec<usize> = (0..3)
            .map(|core| resolved.quadrants_of(core).count() / 4)
            .collect();
        assert_eq!(widths.iter().sum::<usize>(), 16);
        assert!(
            widths.iter().all(|&width| width == 5 || width == 6),
            "{widths:?}"
        );
    }

    #[test]
    fn more_stripes_than_columns_is_an_error() {
        let error = layout(17, LayoutKind::Stripes).resolve(GRID).unwrap_err();
        assert_eq!(
            error,
            LayoutError::NotEnoughQuadrants {
                axis: 'x',
                parts: 17,
                quadrants: 16
            }
        );
        assert!(error.to_string().contains("16 quadrants along x into 17"));
    }

    #[test]
    fn four_by_four_blocks_number_cores_by_column_then_row() {
        let blocks = LayoutKind::Blocks { cols: 4, rows: 4 };
        let resolved = layout(16, blocks).resolve(GRID).unwrap();
        assert_eq!(resolved.owner([0, 0, 0]), 0);
        assert_eq!(resolved.owner([5, 9, 0]), 1 + 2 * 4);
        assert_eq!(resolved.owner([15, 15, 0]), 15);
        for core in 0..16 {
            assert_eq!(resolved.quadrants_of(core).count(), 16);
        }
    }

    #[test]
    fn blocks_must_match_the_cores_and_fit_the_grid() {
        let blocks = LayoutKind::Blocks { cols: 4, rows: 2 };
        let error = layout(16, blocks).resolve(GRID).unwrap_err();
        assert_eq!(
            error,
            LayoutError::BlocksMismatch {
                cols: 4,
                rows: 2,
                cores: 16
            }
        );
        assert!(error.to_string().contains("makes 8 blocks"), "{error}");

        let blocks = LayoutKind::Blocks { cols: 1, rows: 4 };
        let error = layout(4, blocks).resolve([16, 3, 1]).unwrap_err();
        assert_eq!(
            error,
            LayoutError::NotEnoughQuadrants {
                axis: 'y',
                parts: 4,
                quadrants: 3
            }
        );
        let blocks = LayoutKind::Blocks { cols: 0, rows: 0 };
        assert!(layout(0, blocks).resolve(GRID).is_err());
    }

    fn two_halves() -> Vec<ShardSpec> {
        vec![
            spec(0, &quadrants(GRID, |[x, _, _]| x < 8)),
            spec(1, &quadrants(GRID, |[x, _, _]| x >= 8)),
        ]
    }

    #[test]
    fn an_explicit_layout_matching_stripes_resolves_the_same() {
        let explicit = layout(2, LayoutKind::Explicit(two_halves())).resolve(GRID);
        let stripes = layout(2, LayoutKind::Stripes).resolve(GRID);
        assert_eq!(explicit.unwrap(), stripes.unwrap());
    }

    #[test]
    fn explicit_overlap_names_the_quadrant_and_both_cores() {
        let mut shards = two_halves();
        shards[1].quadrants.push([3, 4, 0]);
        let error = layout(2, LayoutKind::Explicit(shards))
            .resolve(GRID)
            .unwrap_err();
        assert_eq!(
            error,
            LayoutError::DoublyOwned {
                quadrant: [3, 4, 0],
                first: 0,
                second: 1
            }
        );
        assert_eq!(
            error.to_string(),
            "quadrant (3, 4, 0) is owned by both core 0 and core 1"
        );

        let mut shards = two_halves();
        shards[0].quadrants.push([0, 0, 0]);
        let error = layout(2, LayoutKind::Explicit(shards))
            .resolve(GRID)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "quadrant (0, 0, 0) is listed twice for core 0"
        );
    }

    #[test]
    fn explicit_gaps_name_the_first_unowned_quadrant() {
        let mut shards = two_halves();
        shards[1]
            .quadrants
            .retain(|&q| q != [9, 2, 0] && q != [12, 7, 0]);
        let error = layout(2, LayoutKind::Explicit(shards))
            .resolve(GRID)
            .unwrap_err();
        assert_eq!(
            error,
            LayoutError::Unowned {
                quadrant: [9, 2, 0],
                count: 2
            }
        );
        assert!(error.to_string().contains("(9, 2, 0) has no owner"));
    }

    #[test]
    fn explicit_out_of_range_quadrants_and_cores_are_named() {
        let mut shards = two_halves();
        shards[1].quadrants.push([16, 0, 0]);
        let error = layout(2, LayoutKind::Explicit(shards))
            .resolve(GRID)
            .unwrap_err();
        assert_eq!(
            error,
            LayoutError::QuadrantOutOfRange {
                core: 1,
                quadrant: [16, 0, 0],
                grid: GRID
            }
        );
        assert_eq!(
            error.to_string(),
            "core 1 lists quadrant (16, 0, 0), outside the 16 x 16 x 1 quadrant grid"
        );

        let mut shards = two_halves();
        shards[1].core = 2;
        let error = layout(2, LayoutKind::Explicit(shards))
            .resolve(GRID)
            .unwrap_err();
        assert_eq!(
            error,
            LayoutError::CoreOutOfRange {
                shard: 1,
                core: 2,
                cores: 2
            }
        );
    }

    #[test]
    fn a_core_without_quadrants_is_an_error() {
        let mut shards = two_halves();
        shards[1].core = 0;
        shards.push(spec(2, &[]));
        let error = layout(3, LayoutKind::Explicit(shards))
            .resolve(GRID)
            .unwrap_err();
        assert_eq!(error, LayoutError::CoreOwnsNothing { core: 1 });
    }

    #[test]
    fn core_counts_and_grids_are_checked_before_anything_is_built() {
        let error = layout(0, LayoutKind::Stripes).resolve(GRID).unwrap_err();
        assert_eq!(error, LayoutError::NoCores);
        let error = layout(300, LayoutKind::Stripes).resolve([1024, 1, 1]);
        assert!(matches!(
            error,
            Err(LayoutError::TooManyCores { cores: 300, .. })
        ));
        for grid in [[0, 16, 1], [16, 16, 0], [u16::MAX, u16::MAX, u16::MAX]] {
            let error = layout(1, LayoutKind::Stripes).resolve(grid).unwrap_err();
            assert!(matches!(error, LayoutError::InvalidGrid { .. }), "{grid:?}");
        }
    }

    #[test]
    fn lookups_clamp_or_refuse_coordinates_past_the_grid() {
        let resolved = layout(2, LayoutKind::Stripes).resolve(GRID).unwrap();
        assert_eq!(resolved.owner([100, 3, 0]), 1);
        assert_eq!(resolved.owner([0, 100, 7]), 0);
        assert_eq!(resolved.checked_owner([16, 0, 0]), None);
        assert_eq!(resolved.checked_owner([15, 15, 0]), Some(1));
        assert_eq!(resolved.index([3, 2, 0]), Some(3 + 2 * 16));
        assert_eq!(resolved.index([3, 2, 1]), None);
        assert_eq!(resolved.quadrant_at(255), Some([15, 15, 0]));
        assert_eq!(resolved.quadrant_at(256), None);
    }

    #[test]
    fn random_stripes_and_blocks_give_every_core_an_even_share() {
        let mut rng = SplitMix(tos_protocol::rng::SplitMix64::new(7));
        for _ in 0..500 {
            let grid = [rng.range(1, 24), rng.range(1, 24), rng.range(1, 3)];
            let cols = rng.range(1, grid[0]);
            // Keep cols * rows within MAX_CORES (16 * 16 = 256).
            let rows = rng.range(1, grid[1].min(16));
            let cols = cols.min(16);
            for (cores, kind) in [
                (cols, LayoutKind::Stripes),
                (cols * rows, LayoutKind::Blocks { cols, rows }),
            ] {
                let resolved = layout(cores, kind.clone()).resolve(grid).unwrap();
                // Each core owns a box of whole runs: width x height x gz,
                // and widths (heights) differ by at most one.
                let mut widths = Vec::new();
                let mut heights = Vec::new();
                for core in 0..cores {
                    let owned: Vec<[u16; 3]> = resolved.quadrants_of(core).collect();
                    let span = |axis: usize| {
                        let low = owned.iter().map(|q| q[axis]).min().unwrap();
                        let high = owned.iter().map(|q| q[axis]).max().unwrap();
                        usize::from(high - low) + 1
                    };
                    let (width, height) = (span(0), span(1));
                    assert_eq!(owned.len(), width * height * usize::from(grid[2]));
                    widths.push(width);
                    heights.push(height);
                }
                for spans in [&widths, &heights] {
                    let smallest = spans.iter().min().unwrap();
                    let largest = spans.iter().max().unwrap();
                    assert!(largest - smallest <= 1, "{grid:?} {kind:?} {spans:?}");
                }
                if kind == LayoutKind::Stripes {
                    assert!(heights.iter().all(|&h| h == usize::from(grid[1])));
                }
                // Owners never decrease along x within a row.
                for q in quadrants(grid, |[x, _, _]| x > 0) {
                    let left = resolved.owner([q[0] - 1, q[1], q[2]]);
                    assert!(left <= resolved.owner(q), "{grid:?} {kind:?}");
                }
            }
        }
    }

    #[test]
    fn random_explicit_layouts_resolve_to_their_own_table_or_name_the_fault() {
        let mut rng = SplitMix(tos_protocol::rng::SplitMix64::new(42));
        for _ in 0..300 {
            let grid = [rng.range(1, 12), rng.range(1, 12), rng.range(1, 2)];
            let all = quadrants(grid, |_| true);
            let cores = rng.range(1, (all.len() as u16).min(8));
            // Give the first `cores` quadrants one core each, the rest at
            // random, so every core owns at least one.
            let owners: Vec<u16> = (0..all.len())
                .map(|i| match u16::try_from(i) {
                    Ok(i) if i < cores => i,
                    _ => rng.range(0, cores - 1),
                })
                .collect();
            let mut shards: Vec<ShardSpec> = (0..cores).map(|core| spec(core, &[])).collect();
            for (quadrant, &owner) in all.iter().zip(&owners) {
                shards[usize::from(owner)].quadrants.push(*quadrant);
            }
            let resolved = layout(cores, LayoutKind::Explicit(shards.clone()))
                .resolve(grid)
                .unwrap();
            for (quadrant, &owner) in all.iter().zip(&owners) {
                assert_eq!(resolved.owner(*quadrant), owner);
            }

            // Drop one quadrant: it is named as unowned (or its core idles).
            let victim = (rng.next() % all.len() as u64) as usize;
            let mut gappy = shards.clone();
            gappy[usize::from(owners[victim])]
                .quadrants
                .retain(|&q| q != all[victim]);
            match layout(cores, LayoutKind::Explicit(gappy)).resolve(grid) {
                Err(LayoutError::Unowned { quadrant, count: 1 }) => {
                    assert_eq!(quadrant, all[victim]);
                }
                other => panic!("expected Unowned, got {other:?}"),
            }

            // Give it to a second core as well: named as doubly owned.
            let mut doubled = shards;
            let other = (owners[victim] + 1) % cores;
            doubled[usize::from(other)].quadrants.push(all[victim]);
            match layout(cores, LayoutKind::Explicit(doubled)).resolve(grid) {
                Err(LayoutError::DoublyOwned { quadrant, .. }) => {
                    assert_eq!(quadrant, all[victim]);
                }
                other => panic!("expected DoublyOwned, got {other:?}"),
            }
        }
    }

    fn invalid_field(text: &str) -> String {
        match ShardLayout::from_ron_str(text, "layouts/bad.ron") {
            Err(error @ ConfigError::Invalid { .. }) => {
                let message = error.to_string();
                assert!(message.starts_with("layouts/bad.ron: "), "{message}");
                let ConfigError::Invalid { field, .. } = error else {
                    unreachable!()
                };
                assert!(message.contains(&field), "{message}");
                field
            }
            other => panic!("expected Invalid for {text}, got {other:?}"),
        }
    }

    #[test]
    fn layout_validation_names_the_field() {
        assert_eq!(invalid_field("(cores: 0)"), "cores");
        assert_eq!(invalid_field("(cores: 257)"), "cores");
        assert_eq!(
            invalid_field("(border_hysteresis: -1.0)"),
            "border_hysteresis"
        );
        assert_eq!(
            invalid_field("(border_hysteresis: NaN)"),
            "border_hysteresis"
        );
        assert_eq!(
            invalid_field("(cores: 4, kind: Blocks(cols: 0, rows: 4))"),
            "kind.Blocks.cols"
        );
        assert_eq!(
            invalid_field("(cores: 4, kind: Blocks(cols: 2, rows: 3))"),
            "kind.Blocks"
        );
        assert_eq!(
            invalid_field("(cores: 2, kind: Explicit([]))"),
            "kind.Explicit"
        );
        assert_eq!(
            invalid_field(
                "(cores: 2, kind: Explicit([(core: 0, quadrants: []), (core: 2, quadrants: [])]))"
            ),
            "kind.Explicit[1].core"
        );
    }

    fn parse_message(text: &str) -> String {
        match ShardLayout::from_ron_str(text, "layouts/typo.ron") {
            Err(error @ ConfigError::Parse { .. }) => error.to_string(),
            other => panic!("expected a parse error for {text}, got {other:?}"),
        }
    }

    #[test]
    fn unknown_layout_names_are_rejected_by_name() {
        let message = parse_message("(cores: 2, hysteresis: 10.0)");
        assert!(message.starts_with("layouts/typo.ron:1:"), "{message}");
        assert!(message.contains("unknown field `hysteresis`"), "{message}");
        let message = parse_message("(kind: Rings)");
        assert!(message.contains("unknown variant `Rings`"), "{message}");
        let message = parse_message("(cores: 4, kind: Blocks(cols: 2, rowz: 2))");
        assert!(message.contains("`rowz`"), "{message}");
        let message = parse_message("(kind: Explicit([(core: 0, quadrant: [])]))");
        assert!(message.contains("`quadrant`"), "{message}");
        let message = parse_message("(kind: Explicit([(core: 0, quadrants: [(1, 2)])]))");
        assert!(message.contains("(x, y, z)"), "{message}");
    }

    #[test]
    fn explicit_quadrants_read_as_tuples_or_lists() {
        let text = "(cores: 1, kind: Explicit([(core: 0, quadrants: [(0, 0, 0), [1, 0, 0]])]))";
        let layout = ShardLayout::from_ron_str(text, "inline").unwrap();
        let resolved = layout.resolve([2, 1, 1]).unwrap();
        assert_eq!(
            resolved.quadrants_of(0).collect::<Vec<_>>(),
            [[0, 0, 0], [1, 0, 0]]
        );
    }
}
