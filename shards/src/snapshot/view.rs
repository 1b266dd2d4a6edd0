//! A client's view: one entry per entity it may know (hot part for the
//! per-tick pass, cold part for records and acknowledgements), the
//! snapshots in flight and what their acknowledgement or loss does, and
//! the interest refresh that adds entries.

use super::{
    IN_FLIGHT, PREFETCH_AHEAD, RECORD_RING, REFRESH_DISTANCE, REFRESH_TICKS, Scratch, Viewer,
    WorldView,
};
use crate::entity::{Entities, EntityType, Faction};
use crate::util::{IdMap, dist2, id_map, prefetch, tick_after};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    /// The slot holds no entry.
    Free,
    Active,
    Leaving,
    RemoveSent,
}

/// A Create or Update was sent since the last Remove.
pub(super) const KNOWN: u8 = 1;
/// A snapshot carrying the entity was lost: send at the moving rate.
pub(super) const RESEND: u8 = 2;
/// A Remove is in flight (tick `remove_tick`), neither acknowledged nor
/// lost yet.
pub(super) const REMOVE_PENDING: u8 = 4;

/// The entry can neither leave interest nor change its distance band
/// before its next full check (set by a full check, see `priority.rs`).
pub(super) const SAFE: u8 = 8;
/// The entry is beyond the distant fraction of its interest distance (as
/// of its last full check; constant while [`SAFE`]).
pub(super) const FAR: u8 = 16;

/// Credit of an entry that is due, in the fixed point of [`Hot::credit`].
pub(super) const CREDIT_ONE: u16 = 1000;

/// The part of a view entry the per-tick pass reads and writes (16 bytes,
/// aligned: four to a cache line, never straddling two), kept apart from
/// the rest so that the pass streams through memory.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(16))]
pub(super) struct Hot {
    pub(super) index: u32,
    pub(super) generation: u32,
    /// Priority credit in thousandths ([`CREDIT_ONE`] is due), saturating.
    pub(super) credit: u16,
    /// Low 16 bits of the tick of the last record sent (0: none yet). The
    /// per-tick summary clamps each entity's change tick to the last
    /// `0x7000` ticks, so the wrapping comparison is exact for any entry
    /// sent in the last 9 minutes at 60 Hz; an older one can at worst be
    /// credited at the wrong one of the two rates once.
    pub(super) last_sent: u16,
    pub(super) kind: EntityType,
    pub(super) phase: Phase,
    pub(super) flags: u8,
    /// The distance and speed factors of the priority as of the last full
    /// check, `(near × fast − 1) × 85` (see `priority::factor`).
    pub(super) factor: u8,
}

const _: () = assert!(core::mem::size_of::<Hot>() == 16);

/// The rest of a view entry. The baseline is named by its tick only: its
/// state is read from the shard's per-entity history when an update is
/// encoded, so a client's view holds no copy of any entity state (a copy
/// per client and entity was most of the memory the pass streamed).
#[derive(Debug, Clone, Copy)]
pub(super) struct Cold {
    pub(super) net_id: u32,
    /// Tick of the last Create sent.
    pub(super) last_full: u32,
    /// Records sent at or before this tick can never become baselines (a
    /// Remove was sent, or the id changed type).
    pub(super) epoch_tick: u32,
    pub(super) baseline_tick: u32,
    /// The tick of the snapshot carrying the last Remove.
    pub(super) remove_tick: u32,
    pub(super) incarnation: u16,
    pub(super) sent_seq: u16,
    pub(super) baseline_seq: u16,
    pub(super) has_baseline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SentKind {
    Create,
    Update,
    Remove,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct SentRecord {
    pub(super) slot: u16,
    pub(super) incarnation: u16,
    pub(super) seq: u16,
    pub(super) kind: SentKind,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct InFlight {
    pub(super) tick: u32,
    pub(super) start: u64,
    pub(super) len: u32,
    pub(super) used: bool,
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
    pub(super) hot: Vec<Hot>,
    pub(super) cold: Vec<Cold>,
    pub(super) free: Vec<u16>,
    pub(super) live: usize,
    pub(super) by_net: IdMap<u32, u16>,
    pub(super) max_entries: usize,
    pub(super) inflight: [InFlight; IN_FLIGHT],
    pub(super) ring: Vec<SentRecord>,
    pub(super) ring_head: u64,
    pub(super) newest_acked: u32,
    pub(super) next_refresh: u32,
    pub(super) refresh_pos: [f32; 3],
    pub(super) refreshed: bool,
    /// Mean bytes per record of recent snapshots (sizes the batches).
    pub(super) record_bytes: f32,
    /// The lowest priority bucket the next pass lists (see `due.rs`): a
    /// little below where the last snapshot's budget ran out.
    pub(super) due_floor: u16,
    /// Where the viewer stood, and its faction, at the last pass that
    /// checked every entry (the `SAFE` flags assume the viewer stays near).
    pub(super) anchor: [f32; 3],
    pub(super) anchor_faction: Faction,
    /// The tick of the last pass, and whether the `SAFE` flags may be used
    /// by the next one (false after a reset, a migration or a gap).
    pub(super) last_pass: u32,
    pub(super) safe_valid: bool,
    pub(super) stats: ViewStats,
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
            due_floor: 0,
            anchor: [0.0; 3],
            anchor_faction: Faction::default(),
            last_pass: 0,
            safe_valid: false,
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
        self.due_floor = 0;
        self.safe_valid = false;
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

    pub(super) fn alloc_entry(&mut self) -> Option<u16> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.hot.len() >= self.max_entries {
                    return None;
                }
                self.hot.push(Hot {
                    index: 0,
                    generation: 0,
                    credit: 0,
                    last_sent: 0,
                    kind: EntityType::Item,
                    phase: Phase::Free,
                    flags: 0,
                    factor: 0,
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

    pub(super) fn free_entry(&mut self, slot: u16) {
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
        self.safe_valid = false;
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
    pub(super) fn settle(&mut self, s: usize, acked: Option<(&Entities, u32)>) {
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
    pub(super) fn begin(&mut self, tick: u32, max_records: usize) -> usize {
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

    pub(super) fn push_record(&mut self, s: usize, record: SentRecord) {
        self.ring[(self.ring_head % RECORD_RING as u64) as usize] = record;
        self.ring_head += 1;
        self.inflight[s].len += 1;
    }

    pub(super) fn needs_refresh(&self, tick: u32, position: [f32; 3]) -> bool {
        !self.refreshed
            || !tick_after(self.next_refresh, tick)
            || dist2(position, self.refresh_pos) > REFRESH_DISTANCE * REFRESH_DISTANCE
    }

    /// Runs the AOI query and adds or re-activates entries.
    #[inline(never)]
    pub(super) fn refresh(
        &mut self,
        w: &WorldView<'_>,
        viewer: &Viewer,
        tick: u32,
        scratch: &mut Scratch,
    ) {
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
                    h.flags &= !SAFE;
                    h.credit = h.credit.max(CREDIT_ONE);
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
                h.flags &= !SAFE;
                if h.kind != kind {
                    // The id was recycled for another entity: never update
                    // across the change of type.
                    h.kind = kind;
                    c.has_baseline = false;
                    c.epoch_tick = tick;
                }
                if h.phase != Phase::Active {
                    h.phase = Phase::Active;
                    h.credit = h.credit.max(CREDIT_ONE);
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
                credit: CREDIT_ONE,
                last_sent: 0,
                kind,
                phase: Phase::Active,
                flags: 0,
                factor: 0,
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
