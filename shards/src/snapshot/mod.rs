//! Snapshots: per client per tick, one `DeltaSync` message under a byte
//! budget. The client side that applies them is `tos_client::snapshot`.
//!
//! # What a client is sent
//!
//! Each client has a [`ClientView`]: one entry per entity it may know, with
//! a priority accumulator, the state it last **acknowledged** for that
//! entity (the baseline, with its tick), and the entry's lifecycle:
//!
//! - *Active*: in interest. Every tick its credit grows by the adaptive
//!   rate — `moving_rate` (1.0: every tick) when the entity changed since
//!   it was last sent to this client (or a snapshot carrying it was lost),
//!   `stationary_rate` (0.10) otherwise, at most `distant_rate` (0.30)
//!   beyond `distant_fraction` of the entity type's interest distance. An
//!   entry is due when its credit reaches 1; due entries are sent in order
//!   of `credit × (2 − d/D) × (1 + min(speed / max_speed, 1))` — longer
//!   waiting, nearer and faster first — until the budget is full, compared
//!   by priority bucket (eight per doubling; within a bucket, in slot
//!   order). The distance and speed factors are those
//!   of the entry's last full check, at most 16 ticks old. Those that
//!   do not fit keep their credit, so they come first later. A sent entry's
//!   credit restarts at 0. Credit is kept in thousandths in a saturating
//!   `u16` (the rates become 1000, 100 and 300), so an entry is due after
//!   exactly the same number of ticks as with the `f32` sums before.
//! - *Leaving*: out of interest (beyond 1.05 × its type's distance, gone,
//!   or turned invisible to this viewer) while the client may know it: a
//!   Remove is due, ahead of everything else.
//! - *RemoveSent*: the Remove is in flight. The entry is forgotten when the
//!   snapshot carrying it is acknowledged; if that snapshot is lost, the
//!   entry goes back to Leaving and the Remove is sent again. Re-entering
//!   interest meanwhile makes it Active again, and its next record is a
//!   Create.
//!
//! An Active entry is sent as an Update against its acknowledged baseline
//! when it has one, that baseline is at most [`MAX_BASELINE_AGE`] ticks old
//! and still in the shard's history ([`crate::entity::HISTORY`] ticks), at
//! most [`MAX_RECORDS_SINCE_BASELINE`] records were sent for it since, and
//! its last Create is younger than `full_sync_interval_ms`; otherwise as a
//! Create (a full refresh).
//!
//! # Shared work
//!
//! A view names each baseline by its tick only; the state is read from the
//! shard's history, so no view holds a copy of any entity state. Clients
//! whose baseline for an entity is the same tick need the same record
//! bytes, so each (entity, baseline tick) record is encoded once per tick
//! and copied from the shard's [`RecordCache`] into every other snapshot
//! that needs it. What the per-entry pass reads of an entity (position,
//! generation, change tick, speed, visibility) is gathered once per tick
//! into one 32-byte, aligned [`Summary`] per slot (with the slot's creation
//! tick, so that the writer checks a baseline against the history without
//! reading the entity columns). An entry that can neither leave interest
//! nor change its distance band before its next full check reads only its
//! entity's 4-byte [`Moves`] word (anchored entities, `priority.rs`).
//! The pass lists the due entries per priority bucket (one list per
//! bucket, threaded through an array by entry slot); the writer follows the
//! lists from the highest bucket down and stops when the budget is full,
//! so it touches only what it sends. When the budget binds, the pass lists
//! only buckets at or above a floor just below where the view's previous
//! snapshot stopped; the rest are listed only if the writer runs out, so
//! the order taken is the same.
//!
//! # Acknowledgements
//!
//! Up to [`IN_FLIGHT`] snapshots per client are remembered, by `tick %
//! IN_FLIGHT`, each as a compact list of (entry, record kind, sequence) in a
//! per-client ring of records. An acknowledgement makes each record's tick
//! the entry's baseline if it is newer than the current one and the
//! history still holds that state; a loss marks the entries for resending.
//! A snapshot that is neither acknowledged nor lost before its slot is
//! needed again counts as lost. After a migration to another core, the
//! baselines are forgotten (they name the old shard's history).
//!
//! # The receiver
//!
//! The client side lives in the client crate (`tos_client::SnapshotReceiver`,
//! which keeps 16 states per entity). The writer never names a baseline
//! that receiver has dropped: it references only baselines at most
//! [`MAX_BASELINE_AGE`] ticks old with at most [`MAX_RECORDS_SINCE_BASELINE`]
//! later records for the same entity, fewer than the receiver keeps
//! (`shards/tests/snapshots.rs` checks the two constants against each other).
//!
//! # Files
//!
//! - `view.rs`: a client's view (hot and cold entries, lifecycle, the
//!   in-flight snapshots and their acknowledgements, the interest refresh).
//! - `priority.rs`: the per-tick pass (credit, leaving, due entries, the
//!   short path of entries that cannot leave).
//! - `due.rs`: the due entries of one view, listed by priority bucket.
//! - `writer.rs`: selection and the records of one snapshot.
//! - `record_cache.rs`: records shared across clients within a tick.
//! - this file: constants, settings, and what all clients share per tick
//!   (the entity summary, the entities' anchors and `Moves` words, and the
//!   scratch buffers).

mod due;
mod priority;
mod record_cache;
mod view;
mod writer;

use tos_config::ServerConfig;

use crate::aoi::AoiGrid;
use crate::entity::{Entities, EntityState, EntityType, Faction, FactionTable, HISTORY};
use due::DueQueue;
use record_cache::RecordCache;

/// Squared distance in `f32`: the per-tick pass only compares it with the
/// interest distances (its rounding is far inside the 5% between entering
/// and leaving, and inside the anchors' margins) and ranks by it.
#[inline]
pub(super) fn dist2_f32(a: [f32; 3], b: [f32; 3]) -> f32 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    dx * dx + dy * dy + dz * dz
}

pub use view::{ClientView, ViewStats};
pub(crate) use writer::write_snapshot;

/// Snapshots per client that can await an acknowledgement.
pub const IN_FLIGHT: usize = 16;

// An acknowledgement reads the states its snapshot carried from the
// history, so the history must reach back over every snapshot in flight.
const _: () = assert!(IN_FLIGHT <= HISTORY);

/// The oldest baseline an update may name, in ticks (PROTOCOL.md §8).
pub const MAX_BASELINE_AGE: u32 = 64;

/// The most records sent for an entity after its baseline's record before
/// the server stops naming that baseline (and sends a Create): below the
/// 16 states the client's receiver keeps (`tos_client::RECEIVER_HISTORY`),
/// leaving room for reordered snapshots.
pub const MAX_RECORDS_SINCE_BASELINE: u16 = 12;

/// Bytes of a DeltaSync before its record count: type, tick, newest
/// acknowledged tick, input ack.
pub const DELTA_SYNC_HEADER: usize = 13;

/// Records of in-flight snapshots one client can hold.
pub(super) const RECORD_RING: usize = 2048;

/// Entities leave interest beyond this factor of their enter distance.
pub const LEAVE_FACTOR: f64 = 1.05;

/// Ticks between two AOI queries of one client (entities entering range
/// are found at most this late; leaving is checked every tick).
pub const REFRESH_TICKS: u32 = 6;

/// A viewer that moved this far since its last query is queried again at
/// once.
pub(super) const REFRESH_DISTANCE: f64 = 2_000.0;

/// How many entries ahead the writer's walks start fetching memory.
pub(super) const PREFETCH_AHEAD: usize = 8;

/// Consecutive records that did not fit before a snapshot is closed.
pub(super) const MAX_MISSES: u32 = 8;

/// Priority buckets of the selection: eight per doubling of the priority,
/// from that of a just-due entry (bucket 0) up (see `priority::bucket`).
pub(super) const PRIORITY_BUCKETS: usize = 128;

/// Buckets below the one where a view's last snapshot ran out of budget
/// that its next pass still lists (half a doubling of priority; see
/// `due.rs`, "The floor").
pub(super) const DUE_FLOOR_MARGIN: u16 = 4;

/// Ticks between two anchor resets of one entity, and the longest an
/// entry goes without a full check (see "Entries that cannot leave").
pub(super) const ANCHOR_TICKS: u32 = 16;

/// The sync settings in the form the writer uses: rates in the entries'
/// fixed-point credit, distances in `f32` (the per-entry pass never
/// converts to `f64`; its rounding is far inside the 5% between the enter
/// and leave distances).
#[derive(Debug, Clone)]
pub(crate) struct SyncParams {
    pub(super) moving_rate: u16,
    pub(super) stationary_rate: u16,
    pub(super) distant_rate: u16,
    pub(super) full_sync_ticks: u32,
    pub(super) exit_d2: [f32; 8],
    pub(super) distant_d2: [f32; 8],
    pub(super) inv_distance: [f32; 8],
    pub(super) max_speed: f32,
    pub(super) aoi_enabled: bool,
    /// An entity farther than this (squared) from its anchor is flagged.
    pub(super) anchor_r2: f32,
    /// A viewer farther than this (squared) from its view's anchor gets a
    /// full pass.
    pub(super) view_slack2: f32,
    /// Squared distances within which an entry can neither leave nor change
    /// its distance band before its next full check: below `safe_exit2`,
    /// and either beyond `far_safe2` or within `near_safe2`.
    pub(super) safe_exit2: [f32; 8],
    pub(super) far_safe2: [f32; 8],
    pub(super) near_safe2: [f32; 8],
}

impl SyncParams {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        let sync = &config.sync;
        let distance: [f64; 8] =
            core::array::from_fn(|t| EntityType::ALL[t].interest_distance(&config.aoi.distances));
        let enabled = config.aoi.enabled;
        // An entity stays within `anchor` of its anchor (or is flagged) and
        // the viewer within `slack` of its view's anchor (or the view gets a
        // full pass), so between two full checks of an entry the distance
        // changes by at most 2 × anchor + 2 × slack. The anchor is what the
        // fastest legal mover covers in `ANCHOR_TICKS`, with room for the
        // authority's tolerance; faster movers are flagged, never missed.
        let per_tick = config.authority.max_speed / f64::from(config.runtime.tick_hz.max(1));
        let anchor = (per_tick * f64::from(ANCHOR_TICKS) * 1.5).max(1.0);
        let slack = 2.0 * anchor;
        let margin = 2.0 * anchor + 2.0 * slack;
        let sq_or_never = |d: f64| if d > 0.0 { (d * d) as f32 } else { -1.0 };
        let rate = |r: f64| {
            (r * f64::from(view::CREDIT_ONE))
                .round()
                .clamp(0.0, f64::from(u16::MAX)) as u16
        };
        Self {
            moving_rate: rate(sync.moving_rate),
            stationary_rate: rate(sync.stationary_rate),
            distant_rate: rate(sync.distant_rate),
            full_sync_ticks: ((u64::from(sync.full_sync_interval_ms)
                * u64::from(config.runtime.tick_hz))
                / 1000)
                .clamp(1, u64::from(u32::MAX)) as u32,
            exit_d2: distance.map(|d| {
                if enabled {
                    (d * LEAVE_FACTOR).powi(2) as f32
                } else {
                    f32::INFINITY
                }
            }),
            distant_d2: distance.map(|d| (d * sync.distant_fraction).powi(2) as f32),
            inv_distance: distance.map(|d| (1.0 / d.max(f64::MIN_POSITIVE)) as f32),
            max_speed: (config.authority.max_speed as f32).max(1.0),
            aoi_enabled: enabled,
            anchor_r2: (anchor * anchor) as f32,
            view_slack2: (slack * slack) as f32,
            safe_exit2: distance.map(|d| {
                if enabled {
                    sq_or_never(d * LEAVE_FACTOR - margin)
                } else {
                    f32::INFINITY
                }
            }),
            far_safe2: distance.map(|d| sq_or_never(d * sync.distant_fraction + margin)),
            near_safe2: distance.map(|d| sq_or_never(d * sync.distant_fraction - margin)),
        }
    }

    pub(crate) fn full_sync_ticks(&self) -> u32 {
        self.full_sync_ticks
    }
}

/// The viewer a snapshot is built for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Viewer {
    pub(crate) input_ack: u32,
    pub(crate) index: u32,
    pub(crate) position: [f32; 3],
    pub(crate) faction: Faction,
}

/// What the per-tick pass reads of one entity (32 bytes, aligned: never two
/// cache lines), gathered once per tick for every client of the shard: one
/// load per view entry instead of six scattered columns (generation,
/// position, change tick, velocity, state, faction).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
pub(crate) struct Summary {
    pub(super) position: [f32; 3],
    pub(super) generation: u32,
    /// Low 16 bits of the last tick the quantized state changed, clamped to
    /// at most `CHANGE_WINDOW` ticks ago (compared with the entries'
    /// 16-bit `last_sent`).
    pub(super) changed: u16,
    /// The tick the slot got its entity (a baseline before it is not its).
    pub(super) created_tick: u32,
    /// `1 + min(speed / max_speed, 1)`: faster entities first.
    pub(super) fast: f32,
    pub(super) faction: Faction,
    /// Invisible to all but friends.
    pub(super) hidden: bool,
}

/// How far back the summary's 16-bit change ticks reach (older changes
/// read as this old): below half the 16-bit range, so that comparing with
/// an entry's 16-bit `last_sent` of the last `0x8000` ticks is exact.
const CHANGE_WINDOW: u32 = 0x7000;

const _: () = assert!(core::mem::size_of::<Summary>() == 32);

/// What an entry that cannot leave reads of its entity each tick (4 bytes
/// per slot, so the whole array stays in the first cache levels, where the
/// 32-byte summary of ten thousand entities does not).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(4))]
pub(crate) struct Moves {
    /// `Summary::changed`.
    pub(super) changed: u16,
    /// Low 16 bits of the last tick the entity was flagged: it moved
    /// beyond the anchor radius from its anchor, or its slot, visibility or
    /// faction changed. Entries of a flagged entity get full checks for
    /// [`ANCHOR_TICKS`] ticks.
    pub(super) flagged: u16,
}

/// Scratch buffers shared by all clients of a shard, and the per-tick
/// entity summary.
#[derive(Debug)]
pub(crate) struct Scratch {
    pub(super) query: Vec<u32>,
    /// Due entries, by priority bucket.
    pub(super) due: DueQueue,
    /// Entries whose Remove is due, in slot order.
    pub(super) removes: Vec<u16>,
    /// Entries the per-tick pass forgets (freed after its walk).
    pub(super) forget: Vec<u16>,
    /// The due entries of one batch, best first.
    pub(super) chosen: Vec<u16>,
    pub(super) records: Vec<u8>,
    pub(super) summary: Vec<Summary>,
    /// The summary describes the entities as they are now.
    pub(super) summary_fresh: bool,
    /// Per entity slot: (refresh epoch, view entry) of the view being
    /// refreshed.
    pub(super) stamps: Vec<(u32, u16)>,
    pub(super) stamp_epoch: u32,
    /// Records encoded this tick, shared by the clients.
    pub(super) cache: RecordCache,
    /// Per entity slot: what entries that cannot leave read.
    pub(super) moves: Vec<Moves>,
    /// Per entity slot: where it stood when its anchor was last reset.
    pub(super) anchors: Vec<[f32; 3]>,
    /// The tick whose first summary build reset its anchor group.
    pub(super) anchored_tick: u32,
}

impl Scratch {
    pub(crate) fn new(entities: u32) -> Self {
        Self {
            query: Vec::with_capacity(entities as usize),
            due: DueQueue::new(4096),
            removes: Vec::with_capacity(4096),
            forget: Vec::with_capacity(4096),
            chosen: Vec::with_capacity(4096),
            records: vec![0; 64 * 1024],
            summary: vec![Summary::default(); entities as usize],
            summary_fresh: false,
            stamps: vec![(0, 0); entities as usize],
            stamp_epoch: 0,
            cache: RecordCache::new(entities),
            moves: vec![Moves::default(); entities as usize],
            anchors: vec![[0.0; 3]; entities as usize],
            anchored_tick: 0,
        }
    }

    /// The entities changed: the summary is rebuilt before the next
    /// snapshot.
    pub(crate) fn entities_changed(&mut self) {
        self.summary_fresh = false;
        self.cache.new_epoch();
    }

    /// Records served from the shared cache and records encoded.
    pub(crate) fn record_counts(&self) -> (u64, u64) {
        self.cache.counts()
    }

    /// Bytes per entity slot of the shared per-shard state (summary and
    /// record cache ways; the cache's 2 MiB arena is per shard).
    pub(crate) const fn bytes_per_entity_slot() -> usize {
        core::mem::size_of::<Summary>()
            + core::mem::size_of::<(u32, u16)>()
            + core::mem::size_of::<Moves>()
            + core::mem::size_of::<[f32; 3]>()
            + RecordCache::bytes_per_slot()
    }

    /// Rebuilds the summary if the entities changed since it was built:
    /// O(slots), once per tick rather than once per client and entry.
    ///
    /// The first call of each tick always builds, so that the anchor group
    /// of the tick is reset before any view's pass of that tick reads it.
    pub(crate) fn refresh_summary(&mut self, ents: &Entities, params: &SyncParams, now: u32) {
        if self.summary_fresh && now == self.anchored_tick {
            return;
        }
        self.summary_fresh = true;
        let now16 = now as u16;
        // One anchor group is reset per tick, at the tick's first build
        // (resetting again later in the tick would let an entity drift a
        // second radius from where an entry last checked it).
        let group = (now != self.anchored_tick).then_some(now % ANCHOR_TICKS);
        self.anchored_tick = now;
        // Every slot's generation, so that a freed slot never matches an
        // entry that named its old entity; a slot that changed hands is
        // flagged.
        for ((s, &g), m) in self
            .summary
            .iter_mut()
            .zip(&ents.generation)
            .zip(&mut self.moves)
        {
            if s.generation != g {
                s.generation = g;
                m.flagged = now16;
            }
        }
        for &i in &ents.dense {
            let iu = i as usize;
            let v = ents.velocity[iu];
            let speed = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            let s = &mut self.summary[iu];
            let m = &mut self.moves[iu];
            let anchor = &mut self.anchors[iu];
            let position = ents.position[iu];
            let created_tick = ents.created_tick[iu];
            let faction = ents.faction[iu];
            let hidden = ents.state[iu].contains(EntityState::INVISIBLE);
            if s.created_tick != created_tick
                || s.faction != faction
                || s.hidden != hidden
                || dist2_f32(*anchor, position) > params.anchor_r2
            {
                m.flagged = now16;
            }
            if group == Some(i % ANCHOR_TICKS) || m.flagged == now16 {
                *anchor = position;
            }
            s.position = position;
            s.created_tick = created_tick;
            let changed = ents.changed_tick[iu];
            s.changed = if now.wrapping_sub(changed) <= CHANGE_WINDOW {
                changed as u16
            } else {
                now.wrapping_sub(CHANGE_WINDOW) as u16
            };
            m.changed = s.changed;
            s.fast = 1.0 + (speed / params.max_speed).min(1.0);
            s.faction = faction;
            s.hidden = hidden;
        }
    }
}

/// What the writer reads of the world.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorldView<'a> {
    pub(crate) ents: &'a Entities,
    pub(crate) aoi: &'a AoiGrid,
    pub(crate) factions: &'a FactionTable,
    pub(crate) params: &'a SyncParams,
}
