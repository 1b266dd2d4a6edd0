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
//!   waiting, nearer and faster first — until the budget is full. Those that
//!   do not fit keep their credit, so they come first later. A sent entry's
//!   credit restarts at 0.
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
//! into one 28-byte [`Summary`] per slot. Selection takes a priority
//! threshold (a selection over the priorities alone) and walks the due
//! entries in slot order, which ascends through the view's memory.
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

use tos_config::ServerConfig;
use tos_protocol::delta::{encode_create, encode_remove, encode_update};
use tos_protocol::wire::Writer;
use tos_protocol::wire::game::{DeltaSync, ServerMessage};

use crate::aoi::AoiGrid;
use crate::entity::{Entities, EntityState, EntityType, Faction, FactionTable, HISTORY};
use crate::record_cache::{CREATE, RecordCache};
use crate::util::{IdMap, dist2, id_map, prefetch, tick_after};

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
const RECORD_RING: usize = 2048;

/// Entities leave interest beyond this factor of their enter distance.
pub const LEAVE_FACTOR: f64 = 1.05;

/// Ticks between two AOI queries of one client (entities entering range
/// are found at most this late; leaving is checked every tick).
pub const REFRESH_TICKS: u32 = 6;

/// A viewer that moved this far since its last query is queried again at
/// once.
const REFRESH_DISTANCE: f64 = 2_000.0;

/// How many entries ahead the writer's walks start fetching memory.
const PREFETCH_AHEAD: usize = 8;

/// Consecutive records that did not fit before a snapshot is closed.
const MAX_MISSES: u32 = 8;

/// The sync settings in the form the writer uses.
#[derive(Debug, Clone)]
pub(crate) struct SyncParams {
    moving_rate: f32,
    stationary_rate: f32,
    distant_rate: f32,
    full_sync_ticks: u32,
    exit_d2: [f64; 8],
    distant_d2: [f64; 8],
    inv_distance: [f64; 8],
    max_speed: f32,
    aoi_enabled: bool,
}

impl SyncParams {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        let sync = &config.sync;
        let distance: [f64; 8] =
            core::array::from_fn(|t| EntityType::ALL[t].interest_distance(&config.aoi.distances));
        let enabled = config.aoi.enabled;
        Self {
            moving_rate: sync.moving_rate as f32,
            stationary_rate: sync.stationary_rate as f32,
            distant_rate: sync.distant_rate as f32,
            full_sync_ticks: ((u64::from(sync.full_sync_interval_ms)
                * u64::from(config.runtime.tick_hz))
                / 1000)
                .clamp(1, u64::from(u32::MAX)) as u32,
            exit_d2: distance.map(|d| {
                if enabled {
                    (d * LEAVE_FACTOR).powi(2)
                } else {
                    f64::INFINITY
                }
            }),
            distant_d2: distance.map(|d| (d * sync.distant_fraction).powi(2)),
            inv_distance: distance.map(|d| 1.0 / d.max(f64::MIN_POSITIVE)),
            max_speed: (config.authority.max_speed as f32).max(1.0),
            aoi_enabled: enabled,
        }
    }

    pub(crate) fn full_sync_ticks(&self) -> u32 {
        self.full_sync_ticks
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// The slot holds no entry.
    Free,
    Active,
    Leaving,
    RemoveSent,
}

/// A Create or Update was sent since the last Remove.
const KNOWN: u8 = 1;
/// A snapshot carrying the entity was lost: send at the moving rate.
const RESEND: u8 = 2;
/// A Remove is in flight (tick `remove_tick`), neither acknowledged nor
/// lost yet.
const REMOVE_PENDING: u8 = 4;

/// The part of a view entry the per-tick pass reads (20 bytes), kept apart
/// from the rest so that the pass streams through memory.
#[derive(Debug, Clone, Copy)]
struct Hot {
    index: u32,
    generation: u32,
    credit: f32,
    /// Tick of the last record sent (0: none yet).
    last_sent: u32,
    kind: EntityType,
    phase: Phase,
    flags: u8,
}

/// The rest of a view entry. The baseline is named by its tick only: its
/// state is read from the shard's per-entity history when an update is
/// encoded, so a client's view holds no copy of any entity state (a copy
/// per client and entity was most of the memory the pass streamed).
#[derive(Debug, Clone, Copy)]
struct Cold {
    net_id: u32,
    /// Tick of the last Create sent.
    last_full: u32,
    /// Records sent at or before this tick can never become baselines (a
    /// Remove was sent, or the id changed type).
    epoch_tick: u32,
    baseline_tick: u32,
    /// The tick of the snapshot carrying the last Remove.
    remove_tick: u32,
    incarnation: u16,
    sent_seq: u16,
    baseline_seq: u16,
    has_baseline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SentKind {
    Create,
    Update,
    Remove,
}

#[derive(Debug, Clone, Copy)]
struct SentRecord {
    slot: u16,
    incarnation: u16,
    seq: u16,
    kind: SentKind,
}

#[derive(Debug, Clone, Copy, Default)]
struct InFlight {
    tick: u32,
    start: u64,
    len: u32,
    used: bool,
}

/// Counters of what a client was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ViewStats {
    /// Snapshots written.
    pub snapshots: u64,
    /// Bytes written (whole messages).
    pub bytes: u64,
    /// Create records.
    pub creates: u64,
    /// Update records.
    pub updates: u64,
    /// Remove records.
    pub removes: u64,
    /// Snapshots acknowledged.
    pub acked: u64,
    /// Snapshots lost (reported, or forgotten unacknowledged).
    pub lost: u64,
    /// Entities not tracked because the view was full.
    pub view_full: u64,
    /// Entries now.
    pub entries: u32,
}

/// The replication state of one client.
#[derive(Debug)]
pub struct ClientView {
    hot: Vec<Hot>,
    cold: Vec<Cold>,
    free: Vec<u16>,
    live: usize,
    by_net: IdMap<u32, u16>,
    max_entries: usize,
    inflight: [InFlight; IN_FLIGHT],
    ring: Vec<SentRecord>,
    ring_head: u64,
    newest_acked: u32,
    next_refresh: u32,
    refresh_pos: [f32; 3],
    refreshed: bool,
    /// Mean bytes per record of recent snapshots (sizes the batches).
    record_bytes: f32,
    stats: ViewStats,
}

/// The viewer a snapshot is built for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Viewer {
    pub(crate) input_ack: u32,
    pub(crate) index: u32,
    pub(crate) position: [f32; 3],
    pub(crate) faction: Faction,
}

/// What the per-tick pass reads of one entity (28 bytes), gathered once per
/// tick for every client of the shard: one load per view entry instead of
/// six scattered columns (generation, position, change tick, velocity,
/// state, faction).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Summary {
    position: [f32; 3],
    generation: u32,
    changed_tick: u32,
    /// `1 + min(speed / max_speed, 1)`: faster entities first.
    fast: f32,
    faction: Faction,
    /// Invisible to all but friends.
    hidden: bool,
}

/// Scratch buffers shared by all clients of a shard, and the per-tick
/// entity summary.
#[derive(Debug)]
pub(crate) struct Scratch {
    query: Vec<u32>,
    /// Due entries (priority, slot), in slot order.
    candidates: Vec<(f32, u16)>,
    /// Entries whose Remove is due, in slot order.
    removes: Vec<u16>,
    /// Priorities, for selecting the best of the candidates.
    keys: Vec<f32>,
    /// The candidates of one batch, in slot order.
    chosen: Vec<u16>,
    records: Vec<u8>,
    summary: Vec<Summary>,
    /// The summary describes the entities as they are now.
    summary_fresh: bool,
    /// Per entity slot: (refresh epoch, view entry) of the view being
    /// refreshed.
    stamps: Vec<(u32, u16)>,
    stamp_epoch: u32,
    /// Records encoded this tick, shared by the clients.
    cache: RecordCache,
}

impl Scratch {
    pub(crate) fn new(entities: u32) -> Self {
        Self {
            query: Vec::with_capacity(entities as usize),
            candidates: Vec::with_capacity(4096),
            removes: Vec::with_capacity(4096),
            keys: Vec::with_capacity(4096),
            chosen: Vec::with_capacity(4096),
            records: vec![0; 64 * 1024],
            summary: vec![Summary::default(); entities as usize],
            summary_fresh: false,
            stamps: vec![(0, 0); entities as usize],
            stamp_epoch: 0,
            cache: RecordCache::new(entities),
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
    /// record cache ways; the cache's 1 MiB arena is per shard).
    pub(crate) const fn bytes_per_entity_slot() -> usize {
        core::mem::size_of::<Summary>()
            + core::mem::size_of::<(u32, u16)>()
            + RecordCache::bytes_per_slot()
    }

    /// Rebuilds the summary if the entities changed since it was built:
    /// O(slots), once per tick rather than once per client and entry.
    pub(crate) fn refresh_summary(&mut self, ents: &Entities, params: &SyncParams) {
        if self.summary_fresh {
            return;
        }
        self.summary_fresh = true;
        // Every slot's generation, so that a freed slot never matches an
        // entry that named its old entity.
        for (s, &g) in self.summary.iter_mut().zip(&ents.generation) {
            s.generation = g;
        }
        for &i in &ents.dense {
            let iu = i as usize;
            let v = ents.velocity[iu];
            let speed = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            let s = &mut self.summary[iu];
            s.position = ents.position[iu];
            s.changed_tick = ents.changed_tick[iu];
            s.fast = 1.0 + (speed / params.max_speed).min(1.0);
            s.faction = ents.faction[iu];
            s.hidden = ents.state[iu].contains(EntityState::INVISIBLE);
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

impl ClientView {
    /// A view with room for `initial` entries now and at most `max` (at most
    /// 65535).
    pub(crate) fn new(initial: usize, max: usize) -> Self {
        let max = max.min(usize::from(u16::MAX));
        let initial = initial.min(max);
        Self {
            hot: Vec::with_capacity(initial),
            cold: Vec::with_capacity(initial),
            free: Vec::with_capacity(initial),
            live: 0,
            by_net: id_map(initial),
            max_entries: max,
            inflight: [InFlight::default(); IN_FLIGHT],
            ring: vec![
                SentRecord {
                    slot: 0,
                    incarnation: 0,
                    seq: 0,
                    kind: SentKind::Remove,
                };
                RECORD_RING
            ],
            ring_head: 0,
            newest_acked: 0,
            next_refresh: 0,
            refresh_pos: [0.0; 3],
            refreshed: false,
            record_bytes: 8.0,
            stats: ViewStats::default(),
        }
    }

    /// Forgets everything (for reuse by another client).
    pub(crate) fn reset(&mut self) {
        self.hot.clear();
        self.cold.clear();
        self.free.clear();
        self.live = 0;
        self.by_net.clear();
        self.inflight = [InFlight::default(); IN_FLIGHT];
        self.ring_head = 0;
        self.newest_acked = 0;
        self.next_refresh = 0;
        self.refreshed = false;
        self.record_bytes = 8.0;
        self.stats = ViewStats::default();
    }

    /// Heap bytes of this view (entries, lookup map, record ring).
    pub(crate) fn heap_bytes(&self) -> usize {
        use core::mem::size_of;
        self.hot.capacity() * size_of::<Hot>()
            + self.cold.capacity() * size_of::<Cold>()
            + self.free.capacity() * size_of::<u16>()
            + self.by_net.capacity() * (size_of::<u32>() + size_of::<u16>() + 1)
            + self.ring.capacity() * size_of::<SentRecord>()
    }

    /// Bytes one view entry takes (hot and cold parts, free list, map).
    pub const fn bytes_per_entry() -> usize {
        use core::mem::size_of;
        size_of::<Hot>() + size_of::<Cold>() + size_of::<u16>() + 8
    }

    /// Counters.
    pub(crate) fn stats(&self) -> ViewStats {
        ViewStats {
            entries: self.live as u32,
            ..self.stats
        }
    }

    /// Network ids and types of the entries in interest.
    pub(crate) fn active(&self) -> impl Iterator<Item = (u32, EntityType)> + '_ {
        self.hot
            .iter()
            .zip(&self.cold)
            .filter(|(h, _)| h.phase == Phase::Active)
            .map(|(h, c)| (c.net_id, h.kind))
    }

    fn alloc_entry(&mut self) -> Option<u16> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.hot.len() >= self.max_entries {
                    return None;
                }
                self.hot.push(Hot {
                    index: 0,
                    generation: 0,
                    credit: 0.0,
                    last_sent: 0,
                    kind: EntityType::Item,
                    phase: Phase::Free,
                    flags: 0,
                });
                self.cold.push(Cold {
                    net_id: 0,
                    last_full: 0,
                    epoch_tick: 0,
                    baseline_tick: 0,
                    remove_tick: 0,
                    incarnation: 0,
                    sent_seq: 0,
                    baseline_seq: 0,
                    has_baseline: false,
                });
                (self.hot.len() - 1) as u16
            }
        };
        self.live += 1;
        Some(slot)
    }

    fn free_entry(&mut self, slot: u16) {
        let s = usize::from(slot);
        if self.hot[s].phase == Phase::Free {
            return;
        }
        self.hot[s].phase = Phase::Free;
        let c = &mut self.cold[s];
        c.incarnation = c.incarnation.wrapping_add(1);
        self.by_net.remove(&c.net_id);
        self.free.push(slot);
        self.live -= 1;
    }

    /// Handles of the entries in the shard this view is now on (after a
    /// migration): looked up again by network id.
    ///
    /// Baselines are forgotten: they name states in the old shard's
    /// history, which this one does not hold (the next records are
    /// Creates).
    pub(crate) fn rebind(&mut self, ents: &Entities) {
        for (h, c) in self.hot.iter_mut().zip(&mut self.cold) {
            if h.phase == Phase::Free {
                continue;
            }
            c.has_baseline = false;
            match ents.by_net_id(c.net_id) {
                Some(i) => {
                    h.index = i;
                    h.generation = ents.generation[i as usize];
                }
                None => {
                    h.index = 0;
                    h.generation = u32::MAX;
                }
            }
        }
        self.refreshed = false;
    }

    /// Treats every snapshot in flight as lost (before a migration: the
    /// next shard cannot read the states they carried).
    pub(crate) fn drop_in_flight(&mut self) {
        for s in 0..IN_FLIGHT {
            if self.inflight[s].used {
                self.settle(s, None);
            }
        }
    }

    /// The snapshot of `tick` was acknowledged.
    pub(crate) fn on_acked(&mut self, tick: u32, ents: &Entities, now: u32) {
        let s = tick as usize % IN_FLIGHT;
        if self.inflight[s].used && self.inflight[s].tick == tick {
            self.settle(s, Some((ents, now)));
            if self.newest_acked == 0 || tick_after(tick, self.newest_acked) {
                self.newest_acked = tick;
            }
        }
    }

    /// The snapshot of `tick` was lost.
    pub(crate) fn on_lost(&mut self, tick: u32) {
        let s = tick as usize % IN_FLIGHT;
        if self.inflight[s].used && self.inflight[s].tick == tick {
            self.settle(s, None);
        }
    }

    /// Settles an in-flight snapshot: acknowledged with the world to read
    /// states from, or lost.
    #[inline(never)]
    fn settle(&mut self, s: usize, acked: Option<(&Entities, u32)>) {
        let f = self.inflight[s];
        self.inflight[s].used = false;
        if acked.is_some() {
            self.stats.acked += 1;
        } else {
            self.stats.lost += 1;
        }
        for k in 0..u64::from(f.len) {
            if k + (PREFETCH_AHEAD as u64) < u64::from(f.len) {
                let ahead = self.ring
                    [((f.start + k + PREFETCH_AHEAD as u64) % RECORD_RING as u64) as usize];
                if let Some(c) = self.cold.get(usize::from(ahead.slot)) {
                    prefetch(c);
                }
                if let Some(h) = self.hot.get(usize::from(ahead.slot)) {
                    prefetch(h);
                }
            }
            let r = self.ring[((f.start + k) % RECORD_RING as u64) as usize];
            let slot = usize::from(r.slot);
            if slot >= self.hot.len() {
                continue;
            }
            let (h, c) = (&mut self.hot[slot], &mut self.cold[slot]);
            if h.phase == Phase::Free || c.incarnation != r.incarnation {
                continue;
            }
            match (r.kind, acked) {
                (SentKind::Remove, _) if c.remove_tick != f.tick => {}
                (SentKind::Remove, Some(_)) => {
                    h.flags &= !REMOVE_PENDING;
                    if h.phase == Phase::RemoveSent {
                        self.free_entry(r.slot);
                    }
                }
                (SentKind::Remove, None) => {
                    h.flags &= !REMOVE_PENDING;
                    if h.phase == Phase::RemoveSent {
                        h.phase = Phase::Leaving;
                    } else {
                        // Back in view before the lost Remove was
                        // repeated: the client may still hold the entity
                        // (the Create to come replaces it).
                        h.flags |= KNOWN;
                    }
                }
                (_, Some((ents, now))) => {
                    let newer = !c.has_baseline || tick_after(f.tick, c.baseline_tick);
                    if newer
                        && tick_after(f.tick, c.epoch_tick)
                        && ents.generation[h.index as usize] == h.generation
                        && ents.has_history(h.index, now, f.tick)
                    {
                        c.baseline_tick = f.tick;
                        c.baseline_seq = r.seq;
                        c.has_baseline = true;
                    }
                }
                (_, None) => h.flags |= RESEND,
            }
        }
    }

    /// Frees the slot of `tick` and room in the record ring for
    /// `max_records`, settling what was there as lost.
    fn begin(&mut self, tick: u32, max_records: usize) -> usize {
        let s = tick as usize % IN_FLIGHT;
        if self.inflight[s].used {
            self.settle(s, None);
        }
        loop {
            let oldest = (0..IN_FLIGHT)
                .filter(|&k| self.inflight[k].used)
                .min_by_key(|&k| self.inflight[k].start);
            match oldest {
                Some(k)
                    if self.ring_head + max_records as u64 - self.inflight[k].start
                        > RECORD_RING as u64 =>
                {
                    self.settle(k, None);
                }
                _ => break,
            }
        }
        self.inflight[s] = InFlight {
            tick,
            start: self.ring_head,
            len: 0,
            used: false,
        };
        s
    }

    fn push_record(&mut self, s: usize, record: SentRecord) {
        self.ring[(self.ring_head % RECORD_RING as u64) as usize] = record;
        self.ring_head += 1;
        self.inflight[s].len += 1;
    }

    fn needs_refresh(&self, tick: u32, position: [f32; 3]) -> bool {
        !self.refreshed
            || !tick_after(self.next_refresh, tick)
            || dist2(position, self.refresh_pos) > REFRESH_DISTANCE * REFRESH_DISTANCE
    }

    /// Runs the AOI query and adds or re-activates entries.
    #[inline(never)]
    fn refresh(&mut self, w: &WorldView<'_>, viewer: &Viewer, tick: u32, scratch: &mut Scratch) {
        let ents = w.ents;
        scratch.query.clear();
        if w.params.aoi_enabled {
            w.aoi
                .query(viewer.position, &ents.position, &mut scratch.query);
        } else {
            scratch.query.extend_from_slice(&ents.dense);
        }
        // Stamp the entity slot of every entry that still holds its entity
        // with this entry's slot: a queried entity finds its entry in the
        // shard-wide stamp array (in cache, shared by every client) instead
        // of probing this client's map (a miss per probe once the views of
        // all clients exceed the cache). Entries the stamps miss (stale
        // slots, new entities) fall back to the map.
        scratch.stamp_epoch = scratch.stamp_epoch.wrapping_add(1).max(1);
        let epoch = scratch.stamp_epoch;
        for (slot, h) in self.hot.iter().enumerate() {
            if h.phase != Phase::Free && ents.generation[h.index as usize] == h.generation {
                scratch.stamps[h.index as usize] = (epoch, slot as u16);
            }
        }
        for &i in &scratch.query {
            let iu = i as usize;
            let e = &scratch.summary[iu];
            if i != viewer.index && e.hidden && !w.factions.is_friend(viewer.faction, e.faction) {
                continue;
            }
            let (stamp, stamped) = scratch.stamps[iu];
            let hit = stamp == epoch
                && self.hot.get(usize::from(stamped)).is_some_and(|h| {
                    // Checked, so that a stamp left from an epoch long ago
                    // (the counter wraps) can never name a wrong entry.
                    h.phase != Phase::Free && h.index == i && h.generation == ents.generation[iu]
                });
            if hit {
                // Same slot, same generation: the same entity, so neither
                // its handle nor its type changed.
                let h = &mut self.hot[usize::from(stamped)];
                if h.phase != Phase::Active {
                    h.phase = Phase::Active;
                    h.credit = h.credit.max(1.0);
                }
                continue;
            }
            let net = ents.net_id[iu];
            let kind = ents.kind[iu];
            if let Some(&slot) = self.by_net.get(&net) {
                let (h, c) = (
                    &mut self.hot[usize::from(slot)],
                    &mut self.cold[usize::from(slot)],
                );
                h.index = i;
                h.generation = ents.generation[iu];
                if h.kind != kind {
                    // The id was recycled for another entity: never update
                    // across the change of type.
                    h.kind = kind;
                    c.has_baseline = false;
                    c.epoch_tick = tick;
                }
                if h.phase != Phase::Active {
                    h.phase = Phase::Active;
                    h.credit = h.credit.max(1.0);
                }
                continue;
            }
            let Some(slot) = self.alloc_entry() else {
                self.stats.view_full += 1;
                continue;
            };
            self.by_net.insert(net, slot);
            let s = usize::from(slot);
            self.hot[s] = Hot {
                index: i,
                generation: ents.generation[iu],
                credit: 1.0,
                last_sent: 0,
                kind,
                phase: Phase::Active,
                flags: 0,
            };
            let incarnation = self.cold[s].incarnation;
            self.cold[s] = Cold {
                net_id: net,
                last_full: tick,
                epoch_tick: tick.wrapping_sub(1),
                baseline_tick: 0,
                remove_tick: 0,
                incarnation,
                sent_seq: 0,
                baseline_seq: 0,
                has_baseline: false,
            };
        }
        self.refreshed = true;
        self.next_refresh = tick.wrapping_add(REFRESH_TICKS);
        self.refresh_pos = viewer.position;
    }
}

/// What the per-tick pass decided about an entry that left interest.
enum Leave {
    Stay,
    Remove,
    Await,
    Forget,
}

/// Writes the snapshot of `tick` for one client into `out` (at most
/// `budget` bytes); returns its length (0 if the budget cannot hold a
/// header).
pub(crate) fn write_snapshot(
    view: &mut ClientView,
    w: &WorldView<'_>,
    viewer: &Viewer,
    tick: u32,
    budget: usize,
    out: &mut [u8],
    scratch: &mut Scratch,
) -> usize {
    let input_ack = viewer.input_ack;
    let budget = budget.min(out.len());
    if budget <= DELTA_SYNC_HEADER {
        return 0;
    }
    let avail = budget - DELTA_SYNC_HEADER;
    // Every record takes at least 2 bytes, so the count fits this many.
    let count_len = tos_protocol::wire::buf::varint_len((avail / 2) as u64);
    if avail <= count_len {
        return 0;
    }
    let records_budget = (avail - count_len).min(scratch.records.len());
    let max_records = (records_budget / 2).min(RECORD_RING / 2);
    let s = view.begin(tick, max_records);
    if view.needs_refresh(tick, viewer.position) {
        view.refresh(w, viewer, tick, scratch);
    }
    prioritize(view, w, viewer, scratch);

    // Removes first, then the highest priorities in batches sized by the
    // recent mean record size (usually one or two batches).
    let Scratch {
        removes,
        candidates,
        chosen,
        keys,
        records,
        cache,
        ..
    } = scratch;
    let mut wr = Writer::new(&mut records[..records_budget]);
    let mut count = 0u32;
    let mut misses = 0u32;
    let full = |count: u32, misses: u32| misses >= MAX_MISSES || count as usize >= max_records;
    for &slot in removes.iter() {
        if full(count, misses) {
            break;
        }
        match view.send_remove(slot, &mut wr, tick) {
            Some(record) => {
                misses = 0;
                count += 1;
                view.push_record(s, record);
            }
            None => misses += 1,
        }
    }
    let per_record = view.record_bytes.max(2.0);
    let mut pending = candidates.len();
    while pending > 0 && !full(count, misses) {
        // The best `k` of what is pending: a threshold from a selection
        // over the priorities alone, then one walk in slot order, which
        // is ascending through the view's memory (no sort).
        let k = ((wr.remaining() as f32 / per_record) as usize + 4).min(pending);
        let threshold = if k < pending {
            keys.clear();
            keys.extend(candidates[..pending].iter().map(|c| c.0));
            let (_, nth, _) = keys.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
            *nth
        } else {
            f32::NEG_INFINITY
        };
        // Split the pending list: the chosen (in slot order) out, the
        // rest compacted in place.
        chosen.clear();
        let mut kept = 0;
        for j in 0..pending {
            let (priority, slot) = candidates[j];
            if chosen.len() < k && priority >= threshold {
                chosen.push(slot);
            } else {
                candidates[kept] = (priority, slot);
                kept += 1;
            }
        }
        for j in 0..chosen.len() {
            if full(count, misses) {
                break;
            }
            if let Some(&ahead) = chosen.get(j + 2 * PREFETCH_AHEAD) {
                view.prefetch_entry(ahead);
            }
            if let Some(&ahead) = chosen.get(j + PREFETCH_AHEAD) {
                prefetch(cache.slot_ptr(view.hot[usize::from(ahead)].index));
            }
            match view.send_entity(chosen[j], w, tick, &mut wr, cache) {
                Some(record) => {
                    misses = 0;
                    count += 1;
                    view.push_record(s, record);
                }
                // Did not fit: keeps its credit for a later snapshot.
                None => misses += 1,
            }
        }
        pending = kept;
    }
    let len = wr.position();
    if count > 0 {
        view.record_bytes = 0.8 * view.record_bytes + 0.2 * (len as f32 / count as f32);
    }
    let message = ServerMessage::DeltaSync(DeltaSync {
        tick,
        baseline_tick: view.newest_acked,
        input_ack,
        record_count: count,
        records: &records[..len],
    });
    let mut ow = Writer::new(&mut out[..budget]);
    if message.encode(&mut ow).is_err() {
        // Unreachable by the sizing above; never leave a half snapshot.
        view.inflight[s].used = true;
        view.settle(s, None);
        return 0;
    }
    view.inflight[s].used = true;
    view.stats.snapshots += 1;
    view.stats.bytes += ow.position() as u64;
    ow.position()
}

/// The per-tick pass over one view: accumulates credit, finds entries that
/// left interest, and collects due Removes and due entries (the latter in
/// slot order, with their priorities) into the scratch lists.
#[inline(never)]
fn prioritize(view: &mut ClientView, w: &WorldView<'_>, viewer: &Viewer, scratch: &mut Scratch) {
    let ents = w.ents;
    let p = w.params;
    let summary = &scratch.summary;
    scratch.removes.clear();
    scratch.candidates.clear();
    let n = view.hot.len();
    for slot in 0..n {
        if slot + PREFETCH_AHEAD < n {
            let ahead = view.hot[slot + PREFETCH_AHEAD].index as usize;
            if let Some(e) = summary.get(ahead) {
                prefetch(e);
            }
        }
        let h = &mut view.hot[slot];
        match h.phase {
            Phase::Free | Phase::RemoveSent => continue,
            Phase::Leaving => {
                scratch.removes.push(slot as u16);
                continue;
            }
            Phase::Active => {}
        }
        let mut i = h.index as usize;
        let mut e = &summary[i];
        // A generation match means the slot still holds the entity.
        let mut alive = e.generation == h.generation;
        if !alive {
            // The same entity may live on in another slot (a ghost that
            // was dropped and received again).
            if let Some(j) = ents.by_net_id(view.cold[slot].net_id) {
                if ents.kind[j as usize] == h.kind {
                    h.index = j;
                    h.generation = ents.generation[j as usize];
                    i = j as usize;
                    e = &summary[i];
                    alive = true;
                }
            }
        }
        let t = h.kind.index();
        let mut d2 = 0.0;
        if alive && i as u32 != viewer.index {
            d2 = dist2(viewer.position, e.position);
            alive = d2 <= p.exit_d2[t]
                && (!e.hidden || w.factions.is_friend(viewer.faction, e.faction));
        }
        let leave = if alive {
            Leave::Stay
        } else if h.flags & KNOWN != 0 {
            Leave::Remove
        } else if h.flags & REMOVE_PENDING != 0 {
            Leave::Await
        } else {
            Leave::Forget
        };
        match leave {
            Leave::Stay => {}
            Leave::Remove => {
                h.phase = Phase::Leaving;
                scratch.removes.push(slot as u16);
                continue;
            }
            Leave::Await => {
                // Never sent since its Remove, which is still in flight:
                // wait for that Remove's fate.
                h.phase = Phase::RemoveSent;
                continue;
            }
            Leave::Forget => {
                view.free_entry(slot as u16);
                continue;
            }
        }
        let changed =
            h.flags & (KNOWN | RESEND) != KNOWN || tick_after(e.changed_tick, h.last_sent);
        let mut rate = if changed {
            p.moving_rate
        } else {
            p.stationary_rate
        };
        if d2 > p.distant_d2[t] {
            rate = rate.min(p.distant_rate);
        }
        h.credit += rate;
        if h.credit >= 1.0 {
            let near = 2.0 - ((d2.sqrt() * p.inv_distance[t]) as f32).min(1.0);
            scratch
                .candidates
                .push((h.credit * near * e.fast, slot as u16));
        }
    }
}

impl ClientView {
    /// Starts fetching entry `slot`'s cold part.
    #[inline]
    fn prefetch_entry(&self, slot: u16) {
        prefetch(&raw const self.cold[usize::from(slot)]);
    }

    /// Encodes the Remove of entry `slot`; `None` if it did not fit.
    fn send_remove(&mut self, slot: u16, wr: &mut Writer<'_>, tick: u32) -> Option<SentRecord> {
        let su = usize::from(slot);
        let (h, c) = (&mut self.hot[su], &mut self.cold[su]);
        encode_remove(wr, c.net_id).ok()?;
        h.phase = Phase::RemoveSent;
        h.flags = (h.flags & !KNOWN) | REMOVE_PENDING;
        c.remove_tick = tick;
        c.has_baseline = false;
        c.epoch_tick = tick;
        self.stats.removes += 1;
        Some(SentRecord {
            slot,
            incarnation: c.incarnation,
            seq: c.sent_seq,
            kind: SentKind::Remove,
        })
    }

    /// Encodes entry `slot` as an Update against its acknowledged baseline
    /// (read from the shard's history) or as a Create, or copies the same
    /// record from the shared cache; `None` if it did not fit.
    fn send_entity(
        &mut self,
        slot: u16,
        w: &WorldView<'_>,
        tick: u32,
        wr: &mut Writer<'_>,
        cache: &mut RecordCache,
    ) -> Option<SentRecord> {
        let su = usize::from(slot);
        let (h, c) = (&mut self.hot[su], &mut self.cold[su]);
        let ents = w.ents;
        let age = tick.wrapping_sub(c.baseline_tick);
        let update = c.has_baseline
            && (1..=MAX_BASELINE_AGE).contains(&age)
            && c.sent_seq.wrapping_sub(c.baseline_seq) <= MAX_RECORDS_SINCE_BASELINE
            && tick.wrapping_sub(c.last_full) < w.params.full_sync_ticks
            && ents.has_history(h.index, tick, c.baseline_tick);
        let key = if update { c.baseline_tick } else { CREATE };
        if let Some(copied) = cache.copy_into(h.index, key, wr) {
            if !copied {
                return None;
            }
        } else {
            let start = wr.position();
            let q = &ents.qstate[h.index as usize];
            let result = match update.then(|| ents.history_at(h.index, tick, c.baseline_tick)) {
                Some(Some(b)) => encode_update(wr, c.net_id, age, &b, q),
                _ => encode_create(wr, c.net_id, h.kind.to_u8(), q),
            };
            result.ok()?;
            cache.put(h.index, key, &wr.written()[start..]);
        }
        if update {
            self.stats.updates += 1;
        } else {
            self.stats.creates += 1;
            c.last_full = tick;
        }
        h.credit = 0.0;
        h.flags = (h.flags & !RESEND) | KNOWN;
        h.last_sent = tick;
        let seq = c.sent_seq;
        c.sent_seq = c.sent_seq.wrapping_add(1);
        Some(SentRecord {
            slot,
            incarnation: c.incarnation,
            seq,
            kind: if update {
                SentKind::Update
            } else {
                SentKind::Create
            },
        })
    }
}
