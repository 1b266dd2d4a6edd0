//! Snapshots: per client per tick, one `DeltaSync` message under a byte
//! budget, and the client side that applies them.
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
//! when it has one, that baseline is at most [`MAX_BASELINE_AGE`] ticks old,
//! at most [`MAX_RECORDS_SINCE_BASELINE`] records were sent for it since,
//! and its last Create is younger than `full_sync_interval_ms`; otherwise as
//! a Create (a full refresh).
//!
//! # Acknowledgements
//!
//! Up to [`IN_FLIGHT`] snapshots per client are remembered, by `tick %
//! IN_FLIGHT`, each as a compact list of (entry, record kind, sequence) in a
//! per-client ring of records; the states they carried are read back from
//! the shard's per-entity state history ([`crate::entity::HISTORY`] ticks)
//! when an acknowledgement arrives. An acknowledgement promotes each
//! record's state to the entry's baseline if it is newer than the current
//! one; a loss marks the entries for resending. A snapshot that is
//! neither acknowledged nor lost before its slot is needed again counts as
//! lost.
//!
//! # The receiver
//!
//! [`SnapshotReceiver`] is the client side (the load generator uses it):
//! it keeps, per entity, the [`RECEIVER_HISTORY`] newest states it
//! received, applies each record to the state its baseline age names, and
//! orders Creates, Updates and Removes by tick so that late or reordered
//! snapshots never resurrect or regress an entity. The server never names a
//! baseline the receiver has dropped: it references only baselines at most
//! 64 ticks old with at most [`MAX_RECORDS_SINCE_BASELINE`] later records
//! for the same entity, fewer than the receiver keeps.

use tos_config::ServerConfig;
use tos_protocol::delta::{
    DeltaRecord, QuantizedEntity, RecordKind, encode_create, encode_remove, encode_update,
};
use tos_protocol::wire::buf::varint_len;
use tos_protocol::wire::game::{DeltaSync, ServerMessage};
use tos_protocol::wire::{Reader, WireError, Writer};

use crate::aoi::AoiGrid;
use crate::entity::{Entities, EntityState, EntityType, Faction, FactionTable, HISTORY};
use crate::util::{IdMap, dist2, id_map, tick_after};

/// Snapshots per client that can await an acknowledgement.
pub const IN_FLIGHT: usize = HISTORY;

/// The oldest baseline an update may name, in ticks (PROTOCOL.md §8).
pub const MAX_BASELINE_AGE: u32 = 64;

/// States per entity the receiver keeps.
pub const RECEIVER_HISTORY: usize = 16;

/// The most records sent for an entity after its baseline's record before
/// the server stops naming that baseline (and sends a Create): below
/// [`RECEIVER_HISTORY`], leaving room for reordered snapshots.
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
    distance: [f64; 8],
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
            distance,
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

/// The rest of a view entry.
#[derive(Debug, Clone, Copy)]
struct Cold {
    baseline: QuantizedEntity,
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

/// Scratch buffers shared by all clients of a shard.
#[derive(Debug)]
pub(crate) struct Scratch {
    query: Vec<u32>,
    candidates: Vec<(f32, u16)>,
    records: Vec<u8>,
}

impl Scratch {
    pub(crate) fn new(entities: u32) -> Self {
        Self {
            query: Vec::with_capacity(entities as usize),
            candidates: Vec::with_capacity(4096),
            records: vec![0; 64 * 1024],
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

#[inline]
fn visible_to(ents: &Entities, i: usize, viewer: &Viewer, factions: &FactionTable) -> bool {
    !ents.state[i].contains(EntityState::INVISIBLE)
        || factions.is_friend(viewer.faction, ents.faction[i])
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
                    baseline: QuantizedEntity::default(),
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
    pub(crate) fn rebind(&mut self, ents: &Entities) {
        for (h, c) in self.hot.iter_mut().zip(&self.cold) {
            if h.phase == Phase::Free {
                continue;
            }
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
                    {
                        if let Some(q) = ents.history_at(h.index, now, f.tick) {
                            c.baseline = q;
                            c.baseline_tick = f.tick;
                            c.baseline_seq = r.seq;
                            c.has_baseline = true;
                        }
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
        for &i in &scratch.query {
            let iu = i as usize;
            if i != viewer.index && !visible_to(ents, iu, viewer, w.factions) {
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
                baseline: QuantizedEntity::default(),
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
    let count_len = varint_len((avail / 2) as u64);
    if avail <= count_len {
        return 0;
    }
    let records_budget = (avail - count_len).min(scratch.records.len());
    let max_records = (records_budget / 2).min(RECORD_RING / 2);
    let s = view.begin(tick, max_records);
    if view.needs_refresh(tick, viewer.position) {
        view.refresh(w, viewer, tick, scratch);
    }
    let ents = w.ents;
    let p = w.params;

    // Accumulate priorities; collect due entries and due Removes. Entries
    // are visited in slot order, streaming through the hot array.
    scratch.candidates.clear();
    for slot in 0..view.hot.len() {
        let h = &mut view.hot[slot];
        match h.phase {
            Phase::Free | Phase::RemoveSent => continue,
            Phase::Leaving => {
                scratch.candidates.push((f32::INFINITY, slot as u16));
                continue;
            }
            Phase::Active => {}
        }
        let mut i = h.index as usize;
        // A generation match means the slot still holds the entity.
        let mut alive = ents.generation[i] == h.generation;
        if !alive {
            // The same entity may live on in another slot (a ghost that
            // was dropped and received again).
            if let Some(j) = ents.by_net_id(view.cold[slot].net_id) {
                if ents.kind[j as usize] == h.kind {
                    h.index = j;
                    h.generation = ents.generation[j as usize];
                    i = j as usize;
                    alive = true;
                }
            }
        }
        let t = h.kind.index();
        let mut d2 = 0.0;
        if alive && i as u32 != viewer.index {
            d2 = dist2(viewer.position, ents.position[i]);
            alive = d2 <= p.exit_d2[t] && visible_to(ents, i, viewer, w.factions);
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
                scratch.candidates.push((f32::INFINITY, slot as u16));
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
            h.flags & (KNOWN | RESEND) != KNOWN || tick_after(ents.changed_tick[i], h.last_sent);
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
            let near = 2.0 - ((d2.sqrt() / p.distance[t]) as f32).min(1.0);
            let v = ents.velocity[i];
            let speed = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            let fast = 1.0 + (speed / p.max_speed).min(1.0);
            scratch
                .candidates
                .push((h.credit * near * fast, slot as u16));
        }
    }

    // Removes first, then the highest priorities in batches sized by the
    // recent mean record size (usually one or two batches).
    let mut removes = 0;
    for k in 0..scratch.candidates.len() {
        if scratch.candidates[k].0 == f32::INFINITY {
            scratch.candidates.swap(k, removes);
            removes += 1;
        }
    }
    let mut wr = Writer::new(&mut scratch.records[..records_budget]);
    let mut count = 0u32;
    let mut misses = 0u32;
    let mut start = 0;
    let mut batch_end = removes;
    let total = scratch.candidates.len();
    let per_record = view.record_bytes.max(2.0);
    while start < total && misses < MAX_MISSES && (count as usize) < max_records {
        if start == batch_end {
            let rest = &mut scratch.candidates[start..];
            let k = ((wr.remaining() as f32 / per_record) as usize + 4).min(rest.len());
            if k < rest.len() {
                rest.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            }
            // Within a batch the order does not matter (each batch is the
            // best of the rest); slot order makes the entry accesses, here
            // and when the snapshot is acknowledged, ascend through memory.
            rest[..k].sort_unstable_by_key(|c| c.1);
            batch_end = start + k;
        }
        let slot = scratch.candidates[start].1;
        start += 1;
        let su = usize::from(slot);
        let (h, c) = (&mut view.hot[su], &mut view.cold[su]);
        let record = if h.phase == Phase::Leaving {
            if encode_remove(&mut wr, c.net_id).is_err() {
                misses += 1;
                continue;
            }
            h.phase = Phase::RemoveSent;
            h.flags = (h.flags & !KNOWN) | REMOVE_PENDING;
            c.remove_tick = tick;
            c.has_baseline = false;
            c.epoch_tick = tick;
            view.stats.removes += 1;
            SentRecord {
                slot,
                incarnation: c.incarnation,
                seq: c.sent_seq,
                kind: SentKind::Remove,
            }
        } else {
            let q = &ents.qstate[h.index as usize];
            let age = tick.wrapping_sub(c.baseline_tick);
            let update = c.has_baseline
                && (1..=MAX_BASELINE_AGE).contains(&age)
                && c.sent_seq.wrapping_sub(c.baseline_seq) <= MAX_RECORDS_SINCE_BASELINE
                && tick.wrapping_sub(c.last_full) < p.full_sync_ticks;
            let result = if update {
                encode_update(&mut wr, c.net_id, age, &c.baseline, q)
            } else {
                encode_create(&mut wr, c.net_id, h.kind.to_u8(), q)
            };
            if result.is_err() {
                misses += 1;
                continue;
            }
            if update {
                view.stats.updates += 1;
            } else {
                view.stats.creates += 1;
                c.last_full = tick;
            }
            h.credit = 0.0;
            h.flags = (h.flags & !RESEND) | KNOWN;
            h.last_sent = tick;
            let seq = c.sent_seq;
            c.sent_seq = c.sent_seq.wrapping_add(1);
            SentRecord {
                slot,
                incarnation: c.incarnation,
                seq,
                kind: if update {
                    SentKind::Update
                } else {
                    SentKind::Create
                },
            }
        };
        misses = 0;
        count += 1;
        view.push_record(s, record);
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
        records: &scratch.records[..len],
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

/// Why a snapshot could not be applied at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveError {
    /// The message is not a DeltaSync.
    NotDeltaSync,
    /// The message or a record is malformed.
    Wire(WireError),
    /// Bytes are left after the last record.
    TrailingBytes,
}

impl core::fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotDeltaSync => f.write_str("not a DeltaSync message"),
            Self::Wire(e) => write!(f, "malformed snapshot: {e}"),
            Self::TrailingBytes => f.write_str("bytes after the last record"),
        }
    }
}

impl std::error::Error for ReceiveError {}

/// What one applied snapshot said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its tick.
    pub tick: u32,
    /// The newest acknowledged tick the server knew.
    pub baseline_tick: u32,
    /// The last input sequence of this client the server applied.
    pub input_ack: u32,
    /// Records in it.
    pub records: u32,
    /// Updates whose baseline this receiver did not have (skipped).
    pub missing_baselines: u32,
    /// Whether a newer snapshot had already been applied.
    pub late: bool,
}

/// Counters of a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiverStats {
    /// Snapshots applied.
    pub snapshots: u64,
    /// Of which arrived after a newer one.
    pub late: u64,
    /// Snapshots rejected as malformed.
    pub rejected: u64,
    /// Create records.
    pub creates: u64,
    /// Update records.
    pub updates: u64,
    /// Remove records.
    pub removes: u64,
    /// Updates skipped for want of their baseline.
    pub missing_baselines: u64,
}

#[derive(Debug, Clone, Copy)]
struct Tracked {
    entity_type: u8,
    len: u8,
    removed: bool,
    removed_at: u32,
    ticks: [u32; RECEIVER_HISTORY],
    states: [QuantizedEntity; RECEIVER_HISTORY],
}

impl Tracked {
    fn new() -> Self {
        Self {
            entity_type: 0,
            len: 0,
            removed: false,
            removed_at: 0,
            ticks: [0; RECEIVER_HISTORY],
            states: [QuantizedEntity::default(); RECEIVER_HISTORY],
        }
    }

    fn find(&self, tick: u32) -> Option<&QuantizedEntity> {
        (0..usize::from(self.len))
            .find(|&k| self.ticks[k] == tick)
            .map(|k| &self.states[k])
    }

    fn visible(&self) -> bool {
        self.len > 0
            && (!self.removed || tick_after(self.ticks[usize::from(self.len) - 1], self.removed_at))
    }

    fn newest(&self) -> Option<(u32, &QuantizedEntity)> {
        (self.len > 0).then(|| {
            let k = usize::from(self.len) - 1;
            (self.ticks[k], &self.states[k])
        })
    }

    /// Inserts a state, keeping the newest [`RECEIVER_HISTORY`] by tick.
    fn insert(&mut self, tick: u32, state: QuantizedEntity, entity_type: Option<u8>) {
        if self.removed && !tick_after(tick, self.removed_at) {
            return;
        }
        let len = usize::from(self.len);
        let newest = len == 0 || !tick_after(self.ticks[len - 1], tick);
        if let Some(t) = entity_type {
            if newest {
                self.entity_type = t;
            }
        }
        if let Some(k) = (0..len).find(|&k| self.ticks[k] == tick) {
            self.states[k] = state;
            return;
        }
        // Position among the sorted ticks.
        let pos = (0..len)
            .find(|&k| tick_after(self.ticks[k], tick))
            .unwrap_or(len);
        if len == RECEIVER_HISTORY {
            if pos == 0 {
                return; // older than everything kept
            }
            // Drop the oldest, shift left up to the insertion point.
            self.ticks.copy_within(1..pos, 0);
            self.states.copy_within(1..pos, 0);
            self.ticks[pos - 1] = tick;
            self.states[pos - 1] = state;
        } else {
            self.ticks.copy_within(pos..len, pos + 1);
            self.states.copy_within(pos..len, pos + 1);
            self.ticks[pos] = tick;
            self.states[pos] = state;
            self.len += 1;
        }
    }

    fn remove(&mut self, tick: u32) {
        if self.removed && !tick_after(tick, self.removed_at) {
            return;
        }
        self.removed = true;
        self.removed_at = tick;
        // States at or before the removal can never be named again.
        let len = usize::from(self.len);
        let keep = (0..len)
            .find(|&k| tick_after(self.ticks[k], tick))
            .unwrap_or(len);
        self.ticks.copy_within(keep..len, 0);
        self.states.copy_within(keep..len, 0);
        self.len = (len - keep) as u8;
    }
}

/// The client side of snapshots: applies DeltaSync messages and yields
/// the state of every entity in view and the server's input ack.
#[derive(Debug)]
pub struct SnapshotReceiver {
    entities: IdMap<u32, Tracked>,
    newest: Option<u32>,
    input_ack: u32,
    baseline_tick: u32,
    scratch: Vec<DeltaRecord>,
    last_prune: u32,
    stats: ReceiverStats,
}

impl Default for SnapshotReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotReceiver {
    /// An empty receiver.
    pub fn new() -> Self {
        Self {
            entities: id_map(256),
            newest: None,
            input_ack: 0,
            baseline_tick: 0,
            scratch: Vec::with_capacity(1024),
            last_prune: 0,
            stats: ReceiverStats::default(),
        }
    }

    /// Applies a whole server message, which must be a DeltaSync.
    pub fn apply_message(&mut self, message: &[u8]) -> Result<SnapshotInfo, ReceiveError> {
        match ServerMessage::decode(message) {
            Ok(ServerMessage::DeltaSync(d)) => self.apply(&d),
            Ok(_) => Err(ReceiveError::NotDeltaSync),
            Err(e) => {
                self.stats.rejected += 1;
                Err(ReceiveError::Wire(e))
            }
        }
    }

    /// Applies a decoded DeltaSync. A malformed record list changes
    /// nothing; an update whose baseline is missing is skipped (and
    /// counted) while the rest of the snapshot applies.
    pub fn apply(&mut self, sync: &DeltaSync<'_>) -> Result<SnapshotInfo, ReceiveError> {
        self.scratch.clear();
        let mut r = Reader::new(sync.records);
        for _ in 0..sync.record_count {
            match DeltaRecord::decode(&mut r) {
                Ok(rec) => self.scratch.push(rec),
                Err(e) => {
                    self.stats.rejected += 1;
                    return Err(ReceiveError::Wire(e));
                }
            }
        }
        if !r.is_empty() {
            self.stats.rejected += 1;
            return Err(ReceiveError::TrailingBytes);
        }
        let tick = sync.tick;
        let late = self.newest.is_some_and(|n| tick_after(n, tick));
        let mut missing = 0u32;
        for rec in &self.scratch {
            match rec.kind {
                RecordKind::Remove => {
                    self.stats.removes += 1;
                    self.entities
                        .entry(rec.entity_id)
                        .or_insert_with(Tracked::new)
                        .remove(tick);
                }
                RecordKind::Create { entity_type } => {
                    self.stats.creates += 1;
                    match rec.apply(&QuantizedEntity::default()) {
                        Ok(state) => self
                            .entities
                            .entry(rec.entity_id)
                            .or_insert_with(Tracked::new)
                            .insert(tick, state, Some(entity_type)),
                        Err(_) => missing += 1,
                    }
                }
                RecordKind::Update => {
                    self.stats.updates += 1;
                    let Some(t) = self.entities.get_mut(&rec.entity_id) else {
                        missing += 1;
                        continue;
                    };
                    let base_tick = tick.wrapping_sub(rec.baseline_age);
                    if t.removed && !tick_after(tick, t.removed_at) {
                        // Older than a removal already applied: moot.
                        continue;
                    }
                    let Some(base) = t.find(base_tick) else {
                        missing += 1;
                        continue;
                    };
                    match rec.apply(base) {
                        Ok(state) => t.insert(tick, state, None),
                        Err(_) => missing += 1,
                    }
                }
            }
        }
        self.stats.missing_baselines += u64::from(missing);
        self.stats.snapshots += 1;
        if late {
            self.stats.late += 1;
        } else {
            self.newest = Some(tick);
            self.input_ack = sync.input_ack;
            self.baseline_tick = sync.baseline_tick;
        }
        if tick.wrapping_sub(self.last_prune) >= 256 && !late {
            self.last_prune = tick;
            // Tombstones and empty entries older than any late snapshot
            // the transport could still deliver.
            self.entities
                .retain(|_, t| t.len > 0 || (t.removed && tick.wrapping_sub(t.removed_at) < 512));
        }
        Ok(SnapshotInfo {
            tick,
            baseline_tick: sync.baseline_tick,
            input_ack: sync.input_ack,
            records: sync.record_count,
            missing_baselines: missing,
            late,
        })
    }

    /// The last input sequence of this client the server applied (from the
    /// newest snapshot).
    pub fn input_ack(&self) -> u32 {
        self.input_ack
    }

    /// The newest snapshot tick applied.
    pub fn newest_tick(&self) -> Option<u32> {
        self.newest
    }

    /// The newest acknowledged tick the newest snapshot named.
    pub fn server_baseline_tick(&self) -> u32 {
        self.baseline_tick
    }

    /// The type and newest state of an entity in view.
    pub fn state(&self, net_id: u32) -> Option<(u8, QuantizedEntity)> {
        let t = self.entities.get(&net_id)?;
        if !t.visible() {
            return None;
        }
        t.newest().map(|(_, s)| (t.entity_type, *s))
    }

    /// Every entity in view: network id, type, newest state.
    pub fn visible(&self) -> impl Iterator<Item = (u32, u8, QuantizedEntity)> + '_ {
        self.entities
            .iter()
            .filter(|(_, t)| t.visible())
            .filter_map(|(&id, t)| t.newest().map(|(_, s)| (id, t.entity_type, *s)))
    }

    /// Entities in view.
    pub fn visible_count(&self) -> usize {
        self.entities.values().filter(|t| t.visible()).count()
    }

    /// Counters.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// Approximate bytes of state this receiver holds per tracked entity.
    pub const fn bytes_per_entity() -> usize {
        core::mem::size_of::<Tracked>() + core::mem::size_of::<u32>() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tos_protocol::quant::QuantizedPosition;

    fn state(x: i16) -> QuantizedEntity {
        QuantizedEntity {
            position: QuantizedPosition {
                quadrant: 3,
                offset: [x, 0, 0],
            },
            ..QuantizedEntity::default()
        }
    }

    #[test]
    fn tracked_keeps_newest_sorted() {
        let mut t = Tracked::new();
        for tick in [5u32, 3, 9, 7, 1] {
            t.insert(tick, state(tick as i16), None);
        }
        assert_eq!(&t.ticks[..5], &[1, 3, 5, 7, 9]);
        for tick in 10..40u32 {
            t.insert(tick, state(tick as i16), None);
        }
        assert_eq!(usize::from(t.len), RECEIVER_HISTORY);
        assert_eq!(t.ticks[0], 40 - RECEIVER_HISTORY as u32);
        assert_eq!(t.newest().unwrap().0, 39);
        // Too old to keep.
        t.insert(2, state(2), None);
        assert!(t.find(2).is_none());
        t.remove(30);
        assert!(t.visible());
        assert!(t.find(30).is_none());
        t.remove(45);
        assert!(!t.visible());
        // A late state from before the removal does not resurrect it.
        t.insert(44, state(44), None);
        assert!(!t.visible());
        t.insert(46, state(46), Some(2));
        assert!(t.visible());
        assert_eq!(t.entity_type, 2);
    }

    #[test]
    fn varint_lengths() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(16_383), 2);
        assert_eq!(varint_len(16_384), 3);
    }

    #[test]
    fn receiver_rejects_garbage_without_changes() {
        let mut r = SnapshotReceiver::new();
        assert!(r.apply_message(&[6, 1, 0]).is_err());
        let bad = DeltaSync {
            tick: 5,
            baseline_tick: 0,
            input_ack: 0,
            record_count: 2,
            records: &[1, 0],
        };
        assert!(r.apply(&bad).is_err());
        let trailing = DeltaSync {
            record_count: 1,
            records: &[1, 0, 9],
            ..bad
        };
        assert_eq!(r.apply(&trailing), Err(ReceiveError::TrailingBytes));
        assert_eq!(r.newest_tick(), None);
        assert_eq!(r.stats().rejected, 3);
    }
}
