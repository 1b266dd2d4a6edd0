//! Across shards: ghosts and hand-offs.
//!
//! # Ghosts
//!
//! After each tick a shard publishes, to every other core, a
//! [`GhostBatch`]: read-only copies ([`GhostState`]) of its local entities
//! that a viewer of that core could see. A viewer sees an entity of type
//! `t` within `D_t` (and keeps it until `1.05 · D_t`), and a core's viewers
//! stand in its quadrants or up to the border hysteresis beyond them, so an
//! entity is published to core `c` when it is within `1.05 · D_t +
//! hysteresis` of a quadrant `c` owns. Per quadrant and type, the shard
//! precomputes which foreign quadrants are that close at all (grouped by
//! core, with a bounding box per core), so an entity deep inside the shard
//! costs nothing and one near a border a few box-distance tests.
//!
//! The receiving shard upserts ghosts by network id (an update older than
//! the ghost's last is ignored), and drops a ghost once batches from its
//! owner have not mentioned it for [`GHOST_GRACE_TICKS`]. Ghosts enter the
//! AOI grid and snapshots like local entities but are never simulated.
//!
//! # Ghosts across node borders
//!
//! In a cluster, quadrants another node simulates are peers of their own
//! in the plan (peer id `cores + node`, see [`node_peer`]): an entity near
//! such ground is published in a [`NodeGhosts`] batch, which the game
//! layer ships over NATS. The receiving shard keeps only the ghosts its
//! own viewers could see (the plan's `near` table: another core of that
//! node may be the one that needs them), stamps them with its own tick
//! (the nodes' tick counters are unrelated), and drops them like any
//! ghost once their node's batches stop naming them, or after
//! [`GHOST_TIMEOUT_TICKS`] when no batch comes at all (NATS down). An
//! effect on such a ghost is a [`RemoteEffect`] to the node's peer id
//! ([`peer_node`] tells it apart), which the game layer carries over the
//! cluster; while the borders are closed (NATS down) an action aimed at one
//! is refused with `ActionRefusal::AcrossNodeBorder`.
//!
//! # Hand-offs
//!
//! A local entity whose quadrant belongs to another core, and which is at
//! least the layout's `border_hysteresis` deep inside that core's region,
//! is handed off: the shard removes it from its simulation — keeping it in
//! place as a ghost of the new owner, so that its own viewers see no gap —
//! and emits a [`Handoff`] (the whole entity record, plus the owning
//! client's state if it is a player) for the engine to ship to the new
//! owner, which accepts it with `Shard::accept_handoff` (turning its ghost,
//! if it has one, into the local entity in place). The entity is simulated
//! by exactly one shard before and after; while the hand-off is in the
//! channel it is simulated by none and exists exactly once, as the
//! `Handoff` value. To come back, it must again go `border_hysteresis`
//! deep into the first core's region, so walking along a border never
//! bounces it.

use crate::entity::{BuffFlags, ClientId, EntityRecord, EntityState, EntityType, Faction};
use crate::shard::ClientState;
use crate::snapshot::LEAVE_FACTOR;
use crate::world::{Aabb, World};

/// Ticks a ghost survives without being mentioned by its owner's batches.
pub const GHOST_GRACE_TICKS: u32 = 8;

/// A ghost older than this (no batch from its owner at all) is dropped.
pub const GHOST_TIMEOUT_TICKS: u32 = 120;

/// A read-only copy of an entity another core owns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GhostState {
    /// Network id.
    pub net_id: u32,
    /// Type.
    pub kind: EntityType,
    /// Faction.
    pub faction: Faction,
    /// Controlling client, if a player.
    pub owner: Option<ClientId>,
    /// Position.
    pub position: [f32; 3],
    /// Velocity.
    pub velocity: [f32; 3],
    /// Pitch, yaw, roll in degrees.
    pub rotation: [f32; 3],
    /// Animation state.
    pub anim: u8,
    /// State flags.
    pub state: EntityState,
    /// Buff flags.
    pub buffs: BuffFlags,
    /// HP and maximum.
    pub hp: [f32; 2],
    /// MP and maximum.
    pub mp: [f32; 2],
}

/// The ghosts a shard sends another cluster node, or was sent by one,
/// for one tick (the node-border twin of [`GhostBatch`]). The vectors
/// circulate like a batch's: the shard takes a received batch's vector
/// for its own next ones.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeGhosts {
    /// The receiving node when sent; the sending node when received.
    pub node: u16,
    /// The sender's tick (its own counter: not comparable with the
    /// receiver's).
    pub tick: u32,
    /// The states.
    pub ghosts: Vec<GhostState>,
}

/// The peer id the ghost plan gives node `node` of the cluster, in a
/// process of `cores` cores (`None` past the 256 ids a plan knows).
pub(crate) fn node_peer(cores: u16, node: u16) -> Option<u16> {
    cores.checked_add(node).filter(|&p| p < 256)
}

/// The cluster node a peer id names, in a process of `cores` cores
/// (`None`: one of this process's cores). A [`RemoteEffect`] whose
/// `to_core` names a node goes over the cluster.
pub fn peer_node(cores: u16, peer: u16) -> Option<u16> {
    peer.checked_sub(cores)
}

/// The ghosts one core sends another for one tick. The receiving shard
/// keeps the vector for its own batches (`Shard::accept_ghosts`), so in
/// steady state batches circulate without allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct GhostBatch {
    /// Publishing core.
    pub from_core: u16,
    /// Receiving core.
    pub to_core: u16,
    /// The tick the states are of.
    pub tick: u32,
    /// The states.
    pub ghosts: Vec<GhostState>,
}

/// A player's server-side state (replication view, movement validation,
/// anti-cheat counters, pending inputs) travelling with its entity.
#[derive(Debug)]
pub struct ClientTransfer(pub(crate) Box<ClientState>);

impl ClientTransfer {
    /// The client.
    pub fn client(&self) -> ClientId {
        self.0.client
    }
}

/// An entity moving to another core's shard: plain data, `Send`.
#[derive(Debug)]
pub struct Handoff {
    /// The core that simulated it.
    pub from_core: u16,
    /// The core that must accept it.
    pub to_core: u16,
    /// The tick of the hand-off.
    pub tick: u32,
    /// Everything about the entity.
    pub entity: EntityRecord,
    /// The owning client's state, for a player.
    pub client: Option<ClientTransfer>,
}

/// An action's effect on an entity another core owns (the caster saw it
/// as a ghost); the engine ships it to `to_core`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteEffect {
    /// The owner of the target: a core of this process, or another
    /// cluster node's peer id ([`peer_node`]).
    pub to_core: u16,
    /// The target's network id.
    pub target: u32,
    /// The caster's network id.
    pub source: u32,
    /// The caster's client, if a player (credited with the damage, told of
    /// the outcome if it is on the target's core).
    pub source_client: Option<ClientId>,
    /// The skill id.
    pub skill: u16,
    /// A damage roll to make against the target's stats (when set,
    /// `damage` is not used).
    pub strike: Option<crate::combat::Strike>,
    /// HP to take (flat, without a roll).
    pub damage: f32,
    /// HP to give.
    pub heal: f32,
    /// A buff to apply.
    pub buff: Option<crate::authority::BuffEffect>,
}

/// A set of core ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CoreMask([u64; 4]);

impl CoreMask {
    #[inline]
    pub(crate) fn set(&mut self, core: u16) {
        self.0[usize::from(core >> 6) & 3] |= 1 << (core & 63);
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = u16> {
        (0..256u16).filter(move |&c| self.0[usize::from(c >> 6)] >> (c & 63) & 1 == 1)
    }
}

#[derive(Debug, Clone, Copy)]
struct CoreGroup {
    core: u16,
    bbox: Aabb,
    start: u32,
    len: u32,
}

/// Which foreign cores an entity of each type in each quadrant must be
/// published to.
#[derive(Debug, Clone)]
pub(crate) struct GhostPlan {
    per_quadrant: Vec<[(u32, u32); 8]>,
    groups: Vec<CoreGroup>,
    boxes: Vec<Aabb>,
    neighbours: Vec<u16>,
    distance2: [f64; 8],
    /// The interest distances the plan was made for (to remake it).
    distances: [f64; 8],
    /// Per quadrant, bit `t`: an entity of type `t` there may be seen by a
    /// viewer of this core (ghosts from another node outside it are not
    /// kept).
    near: Vec<u8>,
}

fn box_gap(a: &Aabb, b: &Aabb) -> f64 {
    let mut d = 0.0;
    for i in 0..3 {
        let gap = (f64::from(a.min[i]) - f64::from(b.max[i]))
            .max(f64::from(b.min[i]) - f64::from(a.max[i]))
            .max(0.0);
        d += gap * gap;
    }
    d.sqrt()
}

impl GhostPlan {
    /// The plan of a process that runs the whole world.
    pub(crate) fn new(world: &World, distances: &[f64; 8]) -> Self {
        Self::with_nodes(world, distances, &[])
    }

    /// The same plan for other `nodes` (per quadrant: the node simulating
    /// it, `None` for this node's own; empty: no other node).
    pub(crate) fn remade(&self, world: &World, nodes: &[Option<u16>]) -> Self {
        Self::with_nodes(world, &self.distances, nodes)
    }

    /// The plan where quadrants of other cluster nodes are peers of their
    /// own ([`node_peer`]); callers check the peer ids fit.
    fn with_nodes(world: &World, distances: &[f64; 8], nodes: &[Option<u16>]) -> Self {
        let grid = world.grid();
        let count = usize::from(grid[0]) * usize::from(grid[1]) * usize::from(grid[2]);
        let publish: [f64; 8] = core::array::from_fn(|t| {
            distances[t] * LEAVE_FACTOR + f64::from(world.hysteresis()) + 1.0
        });
        let mut plan = Self {
            per_quadrant: vec![[(0, 0); 8]; count],
            groups: Vec::new(),
            boxes: Vec::new(),
            neighbours: Vec::new(),
            distance2: publish.map(|d| d * d),
            distances: *distances,
            near: vec![0; count],
        };
        let node_of = |i: usize| nodes.get(i).copied().flatten();
        let owner_of = |n: [u16; 3]| match node_of(world.quadrant_index(n)) {
            Some(node) => node_peer(world.cores(), node).unwrap_or(u16::MAX),
            None => world.owner(n),
        };
        let size = world.quantizer().quadrant_size();
        // Quadrants a local entity can be in: ours and their neighbours.
        let mut relevant = vec![false; count];
        for &q in world.owned_quadrants() {
            for n in world.neighbourhood(q) {
                relevant[world.quadrant_index(n)] = true;
            }
        }
        let mut per_core: Vec<(u16, Vec<Aabb>)> = Vec::new();
        for (qi, _) in relevant.iter().enumerate().filter(|(_, r)| **r) {
            let q = [
                (qi % usize::from(grid[0])) as u16,
                (qi / usize::from(grid[0]) % usize::from(grid[1])) as u16,
                (qi / (usize::from(grid[0]) * usize::from(grid[1]))) as u16,
            ];
            let qbox = world.quadrant_box(q);
            let own = owner_of(q) == world.core();
            for (t, &d) in publish.iter().enumerate() {
                per_core.clear();
                let reach: [u16; 3] = core::array::from_fn(|i| {
                    (d / size[i]).ceil().min(f64::from(u16::MAX)) as u16 + 1
                });
                let lo: [u16; 3] = core::array::from_fn(|i| q[i].saturating_sub(reach[i]));
                let hi: [u16; 3] =
                    core::array::from_fn(|i| q[i].saturating_add(reach[i]).min(grid[i] - 1));
                for x in lo[0]..=hi[0] {
                    for y in lo[1]..=hi[1] {
                        for z in lo[2]..=hi[2] {
                            let n = [x, y, z];
                            let nbox = world.quadrant_box(n);
                            if box_gap(&qbox, &nbox) > d {
                                continue;
                            }
                            if own {
                                plan.near[world.quadrant_index(n)] |= 1 << t;
                            }
                            let owner = owner_of(n);
                            if owner == world.core() || owner == u16::MAX {
                                continue;
                            }
                            match per_core.iter_mut().find(|(c, _)| *c == owner) {
                                Some((_, list)) => list.push(nbox),
                                None => per_core.push((owner, vec![nbox])),
                            }
                        }
                    }
                }
                let start = plan.groups.len() as u32;
                for (core, list) in &per_core {
                    let mut bbox = list[0];
                    for b in list {
                        for i in 0..3 {
                            bbox.min[i] = bbox.min[i].min(b.min[i]);
                            bbox.max[i] = bbox.max[i].max(b.max[i]);
                        }
                    }
                    plan.groups.push(CoreGroup {
                        core: *core,
                        bbox,
                        start: plan.boxes.len() as u32,
                        len: list.len() as u32,
                    });
                    plan.boxes.extend_from_slice(list);
                    if !plan.neighbours.contains(core) {
                        plan.neighbours.push(*core);
                    }
                }
                plan.per_quadrant[qi][t] = (start, plan.groups.len() as u32 - start);
            }
        }
        plan.neighbours.sort_unstable();
        plan
    }

    /// Cores that may ever receive ghosts from this shard.
    pub(crate) fn neighbours(&self) -> &[u16] {
        &self.neighbours
    }

    /// Whether an entity of type `t` in quadrant `qi` may be seen by a
    /// viewer of this core.
    #[inline]
    pub(crate) fn near(&self, qi: usize, t: usize) -> bool {
        self.near.get(qi).is_some_and(|&b| b >> t & 1 == 1)
    }

    /// Adds to `mask` the cores an entity of type `t` at `p` in quadrant
    /// `qi` must be published to.
    #[inline]
    pub(crate) fn targets(&self, qi: usize, t: usize, p: [f32; 3], mask: &mut CoreMask) {
        let Some(ranges) = self.per_quadrant.get(qi) else {
            return;
        };
        let (start, len) = ranges[t];
        let d2 = self.distance2[t];
        for g in &self.groups[start as usize..(start + len) as usize] {
            if g.bbox.distance2(p) > d2 {
                continue;
            }
            let boxes = &self.boxes[g.start as usize..(g.start + g.len) as usize];
            if boxes.iter().any(|b| b.distance2(p) <= d2) {
                mask.set(g.core);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tos_config::{AoiConfig, LayoutKind, ShardLayout, WorldConfig};

    fn assert_send<T: Send>() {}

    #[test]
    fn cross_core_values_are_send() {
        assert_send::<Handoff>();
        assert_send::<GhostBatch>();
        assert_send::<RemoteEffect>();
    }

    #[test]
    fn plan_targets_only_near_borders() {
        let config = WorldConfig::default();
        let layout = ShardLayout {
            cores: 4,
            kind: LayoutKind::Blocks { cols: 2, rows: 2 },
            border_hysteresis: 200.0,
        }
        .resolve(config.quadrant_grid())
        .unwrap();
        let world = World::new(&config, &layout, 0).unwrap();
        let aoi = AoiConfig::default();
        let d: [f64; 8] =
            core::array::from_fn(|t| EntityType::ALL[t].interest_distance(&aoi.distances));
        let plan = GhostPlan::new(&world, &d);
        assert_eq!(plan.neighbours(), [1, 2, 3]);
        let mask_of = |p: [f32; 3], kind: EntityType| {
            let mut m = CoreMask::default();
            let q = world.quadrant_of(p);
            plan.targets(world.quadrant_index(q), kind.index(), p, &mut m);
            m.iter().collect::<Vec<_>>()
        };
        // Core 0 owns x < 0, y < 0.
        assert_eq!(
            mask_of([-300_000.0, -300_000.0, 0.0], EntityType::Player),
            Vec::<u16>::new()
        );
        assert_eq!(
            mask_of([-50_000.0, -300_000.0, 0.0], EntityType::Player),
            [1]
        );
        assert_eq!(
            mask_of([-50_000.0, -50_000.0, 0.0], EntityType::Player),
            [1, 2, 3]
        );
        // An item is seen from 10,000 only.
        assert_eq!(
            mask_of([-50_000.0, -50_000.0, 0.0], EntityType::Item),
            Vec::<u16>::new()
        );
        assert_eq!(mask_of([-5_000.0, -50_000.0, 0.0], EntityType::Item), [1]);
        // Exactly: just inside and just outside the published distance.
        let dp = (100_000.0 * LEAVE_FACTOR + 201.0) as f32;
        assert_eq!(
            mask_of([-dp + 1.0, -300_000.0, 0.0], EntityType::Player),
            [1]
        );
        assert_eq!(
            mask_of([-dp - 1.0, -300_000.0, 0.0], EntityType::Player),
            Vec::<u16>::new()
        );
    }
}
