//! Snapshot records shared across clients: each (entity, baseline tick)
//! record is encoded once per tick and its bytes copied into every
//! snapshot that needs it.
//!
//! Clients that acknowledged the same snapshot tick hold the same baseline
//! for an entity (baselines are named by tick and read from the shard's
//! history), so at one tick the record an entity needs depends only on
//! that baseline tick: a Create (no baseline) is the same for everyone,
//! and an Update against tick `b` is the same for every client whose
//! baseline is `b`. Quake 3 deltas from the last acknowledged frame for
//! the same reason; Unreal's replication graph shares serialisation across
//! connections.
//!
//! Per entity slot the cache keeps [`WAYS`] entries (key: baseline tick,
//! or [`CREATE`]), each naming bytes in one arena that is reused from the
//! start every epoch. An epoch ends at every tick and whenever the
//! entities change between two snapshots (a spawn, a hand-off, ghosts):
//! the keys are stamped with their epoch, so nothing is cleared per tick.
//! A full arena or a busy slot only means encoding again; the cache never
//! changes what is sent.

use tos_protocol::wire::Writer;

/// Entries per entity slot (distinct baseline ticks served from cache at
/// one tick; more are encoded each time).
pub(crate) const WAYS: usize = 4;

/// The key of a Create record (no baseline).
pub(crate) const CREATE: u32 = u32::MAX;

/// Bytes of encoded records one epoch can hold (records beyond it are
/// encoded for each client that needs them).
const ARENA_BYTES: usize = 2 << 20;

/// The largest record the cache keeps (larger ones are rare: full Creates
/// with every optional field).
const MAX_RECORD: usize = 64;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Way {
    epoch: u32,
    key: u32,
    offset: u32,
    len: u16,
}

/// Encoded records of the current epoch, by entity slot and key.
#[derive(Debug)]
pub(crate) struct RecordCache {
    epoch: u32,
    ways: Vec<[Way; WAYS]>,
    /// `ARENA_BYTES + MAX_RECORD` bytes, allocated once: every record
    /// start has [`MAX_RECORD`] readable bytes after it, so a hit is copied
    /// as one fixed-size block (inlined vector moves) rather than by a
    /// call to `memcpy` per record of ~8 bytes.
    arena: Box<[u8]>,
    used: usize,
    /// Round-robin victim per slot is its tick parity; a counter is enough.
    next_victim: u32,
    hits: u64,
    misses: u64,
}

impl RecordCache {
    /// A cache for `slots` entity slots; allocates everything now.
    pub(crate) fn new(slots: u32) -> Self {
        Self {
            // Epoch 0 is never current, so default ways never match.
            epoch: 1,
            ways: vec![[Way::default(); WAYS]; slots as usize],
            arena: vec![0; ARENA_BYTES + MAX_RECORD].into_boxed_slice(),
            used: 0,
            next_victim: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// Forgets every record (a new tick, or the entities changed).
    pub(crate) fn new_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.used = 0;
    }

    /// Copies the record of entity slot `index` under `key` into `wr`, if
    /// it was encoded this epoch: `Some(true)` copied, `Some(false)` found
    /// but it did not fit, `None` not cached.
    #[inline]
    pub(crate) fn copy_into(&mut self, index: u32, key: u32, wr: &mut Writer<'_>) -> Option<bool> {
        let ways = self.ways.get(index as usize)?;
        let Some(w) = ways.iter().find(|w| w.epoch == self.epoch && w.key == key) else {
            self.misses += 1;
            return None;
        };
        self.hits += 1;
        let (start, len) = (w.offset as usize, usize::from(w.len));
        if let (Some(window), Some(block)) = (
            wr.spare::<MAX_RECORD>(),
            self.arena.get(start..start + MAX_RECORD),
        ) {
            window.copy_from_slice(block);
            wr.advance(len);
            return Some(true);
        }
        Some(wr.bytes(&self.arena[start..start + len]).is_ok())
    }

    /// Keeps `bytes` as the record of entity slot `index` under `key`.
    #[inline]
    pub(crate) fn put(&mut self, index: u32, key: u32, bytes: &[u8]) {
        if bytes.len() > MAX_RECORD || self.used + bytes.len() > ARENA_BYTES {
            return;
        }
        let Some(ways) = self.ways.get_mut(index as usize) else {
            return;
        };
        let epoch = self.epoch;
        let victim = match ways.iter().position(|w| w.epoch != epoch) {
            Some(free) => free,
            None => {
                self.next_victim = self.next_victim.wrapping_add(1);
                self.next_victim as usize % WAYS
            }
        };
        ways[victim] = Way {
            epoch,
            key,
            offset: self.used as u32,
            len: bytes.len() as u16,
        };
        self.arena[self.used..self.used + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
    }

    /// Where the cache line of slot `index` is (for prefetching).
    #[inline]
    pub(crate) fn slot_ptr(&self, index: u32) -> *const [Way; WAYS] {
        self.ways
            .get(index as usize)
            .map_or(core::ptr::null(), |w| w as *const _)
    }

    /// Records served from the cache and encoded, since the start.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Bytes per entity slot (the ways; the 2 MiB arena is per shard).
    pub(crate) const fn bytes_per_slot() -> usize {
        core::mem::size_of::<[Way; WAYS]>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &mut RecordCache, index: u32, key: u32) -> Option<Vec<u8>> {
        let mut buf = [0u8; 256];
        let mut wr = Writer::new(&mut buf);
        match c.copy_into(index, key, &mut wr)? {
            true => Some(wr.written().to_vec()),
            false => panic!("a 256-byte buffer holds any record"),
        }
    }

    #[test]
    fn records_are_found_by_slot_and_key_within_an_epoch() {
        let mut c = RecordCache::new(4);
        assert!(get(&mut c, 1, 7).is_none());
        c.put(1, 7, &[1, 2, 3]);
        c.put(1, CREATE, &[9]);
        assert_eq!(get(&mut c, 1, 7), Some(vec![1, 2, 3]));
        assert_eq!(get(&mut c, 1, CREATE), Some(vec![9]));
        assert!(get(&mut c, 2, 7).is_none());
        c.new_epoch();
        assert!(
            get(&mut c, 1, 7).is_none(),
            "a new epoch forgets everything"
        );
    }

    #[test]
    fn a_full_slot_evicts_and_never_returns_wrong_bytes() {
        let mut c = RecordCache::new(1);
        for key in 0..(WAYS as u32 * 3) {
            c.put(0, key, &[key as u8, 0xee]);
            for k in 0..=key {
                if let Some(b) = get(&mut c, 0, k) {
                    assert_eq!(b, vec![k as u8, 0xee]);
                }
            }
            assert_eq!(get(&mut c, 0, key), Some(vec![key as u8, 0xee]));
        }
        assert!(get(&mut c, 5, 0).is_none(), "out-of-range slots are misses");
    }

    #[test]
    fn a_copy_never_writes_past_the_record_or_the_buffer() {
        let mut c = RecordCache::new(2);
        c.put(0, 1, &[5, 6, 7]);
        // Room for less than a fixed block: the exact bytes, or nothing.
        let mut small = [0xaa_u8; 4];
        let mut wr = Writer::new(&mut small);
        assert_eq!(c.copy_into(0, 1, &mut wr), Some(true));
        assert_eq!(wr.written(), &[5, 6, 7]);
        let mut tiny = [0xaa_u8; 2];
        let mut wr = Writer::new(&mut tiny);
        assert_eq!(c.copy_into(0, 1, &mut wr), Some(false));
        assert_eq!(wr.position(), 0);
        // Room for a block: only the record's length counts as written.
        let mut big = [0u8; 200];
        let mut wr = Writer::new(&mut big);
        wr.u8(1).unwrap();
        assert_eq!(c.copy_into(0, 1, &mut wr), Some(true));
        assert_eq!(wr.written(), &[1, 5, 6, 7]);
    }

    #[test]
    fn a_full_arena_stops_caching() {
        let mut c = RecordCache::new(2);
        let record = [7u8; MAX_RECORD];
        for _ in 0..(ARENA_BYTES / MAX_RECORD) {
            c.put(0, 1, &record);
        }
        c.put(1, 1, &record);
        assert!(get(&mut c, 1, 1).is_none());
        c.put(0, 2, &[0u8; MAX_RECORD + 1]);
        assert!(
            get(&mut c, 0, 2).is_none(),
            "oversized records are not kept"
        );
    }
}
