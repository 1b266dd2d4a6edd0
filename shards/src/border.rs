//! Node borders: what the shard reports when a player's legal step lands
//! on ground another node of the cluster simulates. The shard only
//! reports it and holds the player; carrying the player over (the record,
//! the lease, the client's connection) is the game layer's and the
//! cluster's work (docs/DEPLOY.md).

use crate::entity::ClientId;
use crate::world::World;

/// A player whose valid claim stepped onto another node's ground. Until
/// the game layer calls [`crate::Shard::end_crossing`] (the other node did
/// not take it) or removes the player (it did), the player stays where it
/// stood and its claims are held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BorderCrossing {
    /// Whose claim.
    pub client: ClientId,
    /// Where the claim put the player: on the other node's ground.
    pub position: [f32; 3],
    /// The claim's facing.
    pub yaw: f32,
}

/// Whether `p` lies in a quadrant marked foreign (another node's) in the
/// shard's table (indexed like a layout's owner table; empty: none is).
pub(crate) fn foreign_at(foreign: &[bool], world: &World, p: [f32; 3]) -> bool {
    !foreign.is_empty()
        && foreign
            .get(world.quadrant_index(world.quadrant_of(p)))
            .copied()
            .unwrap_or(false)
}
