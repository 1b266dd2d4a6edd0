//! The receiving half of snapshots: applies the server's DeltaSync
//! messages against per-entity baselines and keeps, per entity, the newest
//! states it received.
//!
//! [`SnapshotReceiver`] keeps, per entity, the [`RECEIVER_HISTORY`] newest
//! states it received, applies each record to the state its baseline age
//! names, and orders Creates, Updates and Removes by tick so that late or
//! reordered snapshots never resurrect or regress an entity. An Update
//! whose baseline it does not hold is skipped (and counted); the rest of
//! the snapshot applies (PROTOCOL.md §6.3, §8). The server never names a
//! baseline this receiver has dropped: it references only baselines at
//! most 64 ticks old with at most 12 later records for the same entity
//! (`tos_shards::snapshot::MAX_RECORDS_SINCE_BASELINE`), fewer than the
//! receiver keeps.
//!
//! It works on quantized states, as they travel; [`super::WorldView`]
//! turns them into what a game needs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use tos_protocol::delta::{DeltaRecord, QuantizedEntity, RecordKind};
use tos_protocol::wire::game::{DeltaSync, ServerMessage};
use tos_protocol::wire::{Reader, WireError};

/// States per entity the receiver keeps. The server's writer stays below
/// it (PROTOCOL.md §8: at most 12 records after a named baseline), leaving
/// room for reordered snapshots.
pub const RECEIVER_HISTORY: usize = 16;

/// Whether tick `a` is after tick `b`, with wrap-around.
#[inline]
pub(crate) fn tick_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// A deterministic hasher for server-chosen network ids (no flooding
/// resistance needed: the keys are the server's, and the server is
/// trusted once the handshake pinned its key).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        tos_protocol::rng::mix64(self.0)
    }
}

/// A map keyed by network id.
pub(crate) type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

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
    entities: IdMap<Tracked>,
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
            entities: IdMap::with_capacity_and_hasher(256, BuildHasherDefault::default()),
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

    /// Every entity in view with the tick of its newest state: network id,
    /// type, tick, state.
    pub fn visible_with_ticks(&self) -> impl Iterator<Item = (u32, u8, u32, QuantizedEntity)> + '_ {
        self.entities
            .iter()
            .filter(|(_, t)| t.visible())
            .filter_map(|(&id, t)| t.newest().map(|(tick, s)| (id, t.entity_type, tick, *s)))
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
