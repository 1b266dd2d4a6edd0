//! Helpers shared by the integration tests: configurations, a cluster of
//! shards run in one thread, and a lossy, reordering link for snapshots.

#![allow(dead_code, unreachable_pub)]

use tos_config::{LayoutKind, ResolvedLayout, ServerConfig, ShardLayout};
use tos_shards::util::Rng;
use tos_shards::{
    EntityType, Faction, GhostBatch, Handoff, Shard, ShardCapacity, SpawnPoint, WorldData,
};

pub fn layout(config: &ServerConfig, cores: u16, kind: LayoutKind) -> ResolvedLayout {
    ShardLayout {
        cores,
        kind,
        border_hysteresis: 200.0,
    }
    .resolve(config.world.quadrant_grid())
    .unwrap()
}

/// Node `node` of a two-node cluster (west 0, east 1), one core each: the
/// default world splits at x = 0 (x quadrants 0..8 are the west's). Its
/// network ids are its node's residue class; the borders start closed.
pub fn cluster_node(node: u16) -> Shard {
    let config = ServerConfig::default();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let data = WorldData {
        net_ids: tos_shards::NetIdSpace {
            first: u32::from(node),
            stride: 2,
        },
        ..WorldData::default()
    };
    let mut shard = Shard::with_capacity(0, &config, &layout, data, small_capacity()).unwrap();
    // The default grid is 16 x 16 x 1.
    let other = 1 - node;
    let table = (0..256)
        .map(|i| ((i % 16 >= 8) == (node == 0)).then_some(other))
        .collect();
    assert!(shard.set_foreign_quadrants(table));
    shard
}

/// A monster that stands where it spawns (no wandering, no speed).
pub fn still_monster(position: [f32; 3]) -> SpawnPoint {
    SpawnPoint {
        kind: EntityType::Monster,
        faction: Faction::MONSTERS,
        position,
        wander_radius: 0.0,
        speed: 0.0,
        hp: 100.0,
        mp: 0.0,
        template: 0,
        patrol: 0,
    }
}

pub fn small_capacity() -> ShardCapacity {
    ShardCapacity {
        entities: 4096,
        clients: 64,
        initial_view: 64,
        max_view: 4096,
        inputs_per_tick: 16,
    }
}

/// Shards of every core, ticked in one thread; hand-offs and ghost
/// batches are delivered one tick later, as the engine's channels would.
pub struct Cluster {
    pub shards: Vec<Shard>,
    pub handoffs: Vec<Handoff>,
    pub batches: Vec<GhostBatch>,
    pub handoff_count: u64,
    inbox_handoffs: Vec<Handoff>,
    inbox_batches: Vec<GhostBatch>,
}

impl Cluster {
    pub fn new(config: &ServerConfig, layout: &ResolvedLayout, data: &WorldData) -> Self {
        let shards = (0..layout.cores())
            .map(|core| {
                Shard::with_capacity(core, config, layout, data.clone(), small_capacity()).unwrap()
            })
            .collect();
        Self {
            shards,
            handoffs: Vec::with_capacity(1024),
            batches: Vec::with_capacity(1024),
            handoff_count: 0,
            inbox_handoffs: Vec::with_capacity(1024),
            inbox_batches: Vec::with_capacity(1024),
        }
    }

    /// Delivers what is in the channels, then ticks every shard.
    pub fn step(&mut self, tick: u32) {
        // Swap in preallocated vectors: the harness must not allocate
        // either (tests/alloc.rs counts).
        std::mem::swap(&mut self.handoffs, &mut self.inbox_handoffs);
        std::mem::swap(&mut self.batches, &mut self.inbox_batches);
        for h in self.inbox_handoffs.drain(..) {
            let to = usize::from(h.to_core);
            self.shards[to]
                .accept_handoff(h)
                .expect("hand-off accepted");
        }
        for b in self.inbox_batches.drain(..) {
            let to = usize::from(b.to_core);
            self.shards[to].accept_ghosts(b);
        }
        for s in &mut self.shards {
            s.tick(tick);
            let before = self.handoffs.len();
            self.handoffs.extend(s.take_handoffs());
            self.handoff_count += (self.handoffs.len() - before) as u64;
            s.publish_ghosts(&mut self.batches);
        }
    }

    /// Network ids simulated by some shard or in a hand-off in flight.
    pub fn census(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .shards
            .iter()
            .flat_map(|s| s.local_net_ids())
            .chain(self.handoffs.iter().map(|h| h.entity.net_id))
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// What the simulated transport reports to the server, and when.
#[derive(Debug, Clone, Copy)]
pub enum Report {
    Acked(u32),
    Lost(u32),
}

/// A lossy link from the server to one client: snapshots are lost,
/// delayed and reordered; the transport later reports each as acked or
/// lost (acks can be lost too: then a delivered snapshot is reported
/// lost), and some reports never come.
pub struct Link {
    pub rng: Rng,
    pub loss: f32,
    pub ack_loss: f32,
    pub silence: f32,
    pub max_delay: u32,
    pub in_transit: Vec<(u32, Vec<u8>)>,
    pub reports: Vec<(u32, Report)>,
}

impl Link {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            loss: 0.0,
            ack_loss: 0.0,
            silence: 0.0,
            max_delay: 0,
            in_transit: Vec::new(),
            reports: Vec::new(),
        }
    }

    pub fn perfect(&mut self) {
        self.loss = 0.0;
        self.ack_loss = 0.0;
        self.silence = 0.0;
        self.max_delay = 0;
    }

    /// Sends the snapshot of `tick` at `now`.
    pub fn send(&mut self, now: u32, tick: u32, bytes: &[u8]) {
        if self.rng.chance(self.silence) {
            // Delivered, but the transport never says anything about it.
            self.in_transit
                .push((now + self.rng.below(self.max_delay + 1), bytes.to_vec()));
            return;
        }
        if self.rng.chance(self.loss) {
            self.reports
                .push((now + 2 + self.rng.below(4), Report::Lost(tick)));
            return;
        }
        let arrive = now + self.rng.below(self.max_delay + 1);
        self.in_transit.push((arrive, bytes.to_vec()));
        if self.rng.chance(self.ack_loss) {
            self.reports
                .push((arrive + 3 + self.rng.below(4), Report::Lost(tick)));
        } else {
            self.reports
                .push((arrive + 1 + self.rng.below(2), Report::Acked(tick)));
        }
    }

    /// Snapshots arriving at the client at `now`, in a random order among
    /// themselves.
    pub fn arrivals(&mut self, now: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut k = 0;
        while k < self.in_transit.len() {
            if self.in_transit[k].0 <= now {
                out.push(self.in_transit.swap_remove(k).1);
            } else {
                k += 1;
            }
        }
        // Shuffle.
        for i in (1..out.len()).rev() {
            let j = self.rng.below(i as u32 + 1) as usize;
            out.swap(i, j);
        }
        out
    }

    /// Reports due at `now`.
    pub fn due_reports(&mut self, now: u32) -> Vec<Report> {
        let mut out = Vec::new();
        let mut k = 0;
        while k < self.reports.len() {
            if self.reports[k].0 <= now {
                out.push(self.reports.swap_remove(k).1);
            } else {
                k += 1;
            }
        }
        out
    }
}
