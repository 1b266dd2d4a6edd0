//! Why a shard operation failed.

use core::fmt;

use tos_protocol::quant::GeometryError;

use crate::ClientId;

/// Why a shard could not be built, or an operation on it was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardError {
    /// The `world` section does not describe a quantizable world.
    Geometry(GeometryError),
    /// The layout was resolved for another quadrant grid than the world's.
    LayoutMismatch {
        /// The layout's grid.
        layout: [u16; 3],
        /// The world's grid.
        world: [u16; 3],
    },
    /// The core id is not one of the layout's cores.
    UnknownCore {
        /// The core asked for.
        core: u16,
        /// Cores in the layout.
        cores: u16,
    },
    /// The entity pool is full (its capacity is fixed when the shard is built).
    PoolFull {
        /// The pool's capacity.
        capacity: u32,
    },
    /// No room for another client.
    ClientsFull {
        /// The most clients this shard holds.
        capacity: u32,
    },
    /// The client is not on this shard.
    UnknownClient(ClientId),
    /// The client is already on this shard.
    DuplicateClient(ClientId),
    /// The position belongs to another core's quadrant: the engine should
    /// route the request there.
    WrongShard {
        /// The core that owns the position.
        owner: u16,
    },
    /// An entity with this network id is already simulated here.
    DuplicateEntity(u32),
    /// No entity with this network id is simulated here.
    UnknownEntity(u32),
    /// The client's input queue for this tick is full.
    InputQueueFull(ClientId),
    /// World data (heightfield, obstacles, actions) is inconsistent.
    BadData(&'static str),
}

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Geometry(e) => write!(f, "world geometry: {e}"),
            Self::LayoutMismatch { layout, world } => write!(
                f,
                "the layout was resolved for a {layout:?} quadrant grid, the world has {world:?}"
            ),
            Self::UnknownCore { core, cores } => {
                write!(f, "core {core} is not in the layout (cores 0..{cores})")
            }
            Self::PoolFull { capacity } => write!(f, "entity pool full ({capacity} entities)"),
            Self::ClientsFull { capacity } => write!(f, "client table full ({capacity} clients)"),
            Self::UnknownClient(c) => write!(f, "client {} is not on this shard", c.0),
            Self::DuplicateClient(c) => write!(f, "client {} is already on this shard", c.0),
            Self::WrongShard { owner } => write!(f, "the position belongs to core {owner}"),
            Self::DuplicateEntity(id) => write!(f, "entity {id} is already simulated here"),
            Self::UnknownEntity(id) => write!(f, "entity {id} is not simulated here"),
            Self::InputQueueFull(c) => write!(f, "input queue of client {} is full", c.0),
            Self::BadData(what) => write!(f, "bad world data: {what}"),
        }
    }
}

impl std::error::Error for ShardError {}

impl From<GeometryError> for ShardError {
    fn from(e: GeometryError) -> Self {
        Self::Geometry(e)
    }
}
