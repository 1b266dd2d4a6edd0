//! One snapshot: Removes first, then the best due entries under the
//! budget (by priority bucket, from the highest down), each record copied
//! from the shared cache or encoded.

use tos_protocol::delta::{encode_create, encode_remove, encode_update};
use tos_protocol::wire::Writer;
use tos_protocol::wire::game::{DeltaSync, ServerMessage};

use super::priority::{list_held_back, prioritize};
use super::record_cache::{CREATE, RecordCache};
use super::view::{ClientView, KNOWN, Phase, REMOVE_PENDING, RESEND, SentKind, SentRecord};
use super::{
    DELTA_SYNC_HEADER, DUE_FLOOR_MARGIN, MAX_BASELINE_AGE, MAX_MISSES, MAX_RECORDS_SINCE_BASELINE,
    PREFETCH_AHEAD, RECORD_RING, Scratch, Summary, Viewer, WorldView,
};
use crate::entity::HISTORY;
use crate::util::{prefetch, tick_after};

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
    prioritize(view, w, viewer, tick, scratch);

    // Removes first, then the highest priorities in batches sized by the
    // recent mean record size (usually one or two batches).
    let Scratch {
        removes,
        due,
        chosen,
        records,
        cache,
        summary,
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
    while !full(count, misses) {
        // The highest priority buckets first, in slot order within a
        // bucket. A batch is a list, so the writer fetches the memory of the
        // records a few entries ahead.
        let k = (wr.remaining() as f32 / per_record) as usize + 4;
        due.take(k, chosen);
        if chosen.is_empty() {
            match due.reopen() {
                Some(floor) => {
                    list_held_back(view, floor, due);
                    continue;
                }
                None => break,
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
            match view.send_entity(chosen[j], w, tick, &mut wr, cache, summary) {
                Some(record) => {
                    misses = 0;
                    count += 1;
                    view.push_record(s, record);
                }
                // Did not fit: keeps its credit for a later snapshot.
                None => misses += 1,
            }
        }
    }
    // Next tick's floor: a little below where the budget ran out; none if
    // every due entry fitted.
    view.due_floor = match due.reached() {
        Some(b) if full(count, misses) => b.saturating_sub(DUE_FLOOR_MARGIN),
        _ => 0,
    };
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

impl ClientView {
    /// Starts fetching entry `slot`'s cold part.
    #[inline]
    fn prefetch_entry(&self, slot: u16) {
        prefetch(&raw const self.cold[usize::from(slot)]);
    }

    /// Whether entry `slot` is sent as an Update (against its baseline) or
    /// as a Create, and the record's cache key. The entry is Active and its
    /// entity alive (the per-tick pass checked both this tick), so the
    /// history holds the baseline iff it is young enough and not older
    /// than the entity's slot.
    #[inline]
    fn record_key(
        &self,
        slot: u16,
        w: &WorldView<'_>,
        tick: u32,
        summary: &[Summary],
    ) -> (bool, u32) {
        let su = usize::from(slot);
        let (h, c) = (&self.hot[su], &self.cold[su]);
        let age = tick.wrapping_sub(c.baseline_tick);
        let update = c.has_baseline
            && (1..=MAX_BASELINE_AGE.min(HISTORY as u32 - 1)).contains(&age)
            && c.sent_seq.wrapping_sub(c.baseline_seq) <= MAX_RECORDS_SINCE_BASELINE
            && tick.wrapping_sub(c.last_full) < w.params.full_sync_ticks
            && summary
                .get(h.index as usize)
                .is_some_and(|e| !tick_after(e.created_tick, c.baseline_tick));
        (update, if update { c.baseline_tick } else { CREATE })
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
        summary: &[Summary],
    ) -> Option<SentRecord> {
        let (update, key) = self.record_key(slot, w, tick, summary);
        let su = usize::from(slot);
        let (h, c) = (&mut self.hot[su], &mut self.cold[su]);
        let ents = w.ents;
        if let Some(copied) = cache.copy_into(h.index, key, wr) {
            if !copied {
                return None;
            }
        } else {
            let start = wr.position();
            let q = &ents.qstate[h.index as usize];
            let result = if update {
                // `record_key` checked that the history holds it.
                let b = &ents.history[c.baseline_tick as usize % HISTORY][h.index as usize];
                encode_update(wr, c.net_id, tick.wrapping_sub(c.baseline_tick), b, q)
            } else {
                encode_create(wr, c.net_id, h.kind.to_u8(), q)
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
        h.credit = 0;
        h.flags = (h.flags & !RESEND) | KNOWN;
        h.last_sent = tick as u16;
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
