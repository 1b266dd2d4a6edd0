//! The due entries of one view at one tick, in one first-in-first-out list
//! per priority bucket, so that the writer takes the best of them by
//! following the lists from the highest bucket down, touching only what it
//! sends (and no walk over every due entry, no sort, no partition).
//!
//! The lists are threaded through one `next` array indexed by entry slot
//! (shared by all views of a shard; it grows to the largest view once), and
//! the pass adds entries in slot order, so each bucket's list is in slot
//! order too.
//!
//! # The floor
//!
//! When the budget binds, most due entries are never taken: a view of a
//! thousand due entries sends about 140. So the pass lists only entries at
//! or above a floor, a little below the bucket where the view's previous
//! snapshot stopped, and remembers that it held some back. If the writer
//! empties the lists with room left, it reopens them below the floor
//! ([`DueQueue::reopen`]) and a second walk over the view's entries lists
//! the rest (`priority::list_held_back`). Every entry at or
//! above the floor ranks before every entry below it, so the order taken is
//! the same as with every entry listed: the floor changes the work, never
//! what is sent.

use super::PRIORITY_BUCKETS;

/// No entry (slots are below `u16::MAX`: views hold at most 65,535).
const NONE: u16 = u16::MAX;

#[derive(Debug)]
pub(crate) struct DueQueue {
    heads: [u16; PRIORITY_BUCKETS],
    tails: [u16; PRIORITY_BUCKETS],
    next: Vec<u16>,
    /// Where `take` goes on: the bucket, and the next entry in it.
    bucket: usize,
    cursor: u16,
    /// Buckets below this are not listed (yet).
    floor: u16,
    /// An entry below the floor was due.
    held_back: bool,
}

impl DueQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            heads: [NONE; PRIORITY_BUCKETS],
            tails: [NONE; PRIORITY_BUCKETS],
            next: vec![NONE; capacity],
            bucket: 0,
            cursor: NONE,
            floor: 0,
            held_back: false,
        }
    }

    /// Empties the lists for a view of `entries` slots, listing from now on
    /// only buckets at or above `floor`.
    #[inline]
    pub(crate) fn clear(&mut self, entries: usize, floor: u16) {
        self.heads = [NONE; PRIORITY_BUCKETS];
        self.tails = [NONE; PRIORITY_BUCKETS];
        if self.next.len() < entries {
            // Once per shard, for its largest view (warm-up, not per tick).
            self.next.resize(entries, NONE);
        }
        self.bucket = PRIORITY_BUCKETS;
        self.cursor = NONE;
        self.floor = floor;
        self.held_back = false;
    }

    /// Appends entry `slot` to bucket `bucket`'s list (below
    /// [`PRIORITY_BUCKETS`]; slots in ascending order) if the bucket is at
    /// or above the floor; returns whether it did.
    #[inline]
    pub(crate) fn push(&mut self, bucket: u16, slot: u16) -> bool {
        if bucket < self.floor {
            self.held_back = true;
            return false;
        }
        let b = usize::from(bucket);
        match self.tails.get(b).copied() {
            Some(NONE) => self.heads[b] = slot,
            Some(tail) => {
                if let Some(n) = self.next.get_mut(usize::from(tail)) {
                    *n = slot;
                }
            }
            None => return false,
        }
        self.tails[b] = slot;
        true
    }

    /// After `take` found the lists empty: if entries were held back below
    /// the floor, lowers the floor to 0 so that they can be listed (every
    /// bucket at or above the old floor has been taken) and returns the old
    /// floor, below which the caller lists them; otherwise `None`.
    pub(crate) fn reopen(&mut self) -> Option<u16> {
        if !self.held_back {
            return None;
        }
        let floor = self.floor;
        self.held_back = false;
        self.floor = 0;
        self.bucket = usize::from(floor);
        self.cursor = NONE;
        Some(floor)
    }

    /// The bucket `take` has reached (where a full budget stopped it);
    /// `None` before the first `take`.
    pub(crate) fn reached(&self) -> Option<u16> {
        (self.bucket < PRIORITY_BUCKETS).then_some(self.bucket as u16)
    }

    /// Moves up to `k` of the entries not yet taken into `out` (cleared
    /// first), best bucket first and in slot order within a bucket. The pass
    /// pushes every due entry before the writer takes any; pushing again
    /// needs a `clear` first.
    pub(crate) fn take(&mut self, k: usize, out: &mut Vec<u16>) {
        out.clear();
        while out.len() < k {
            if self.cursor == NONE {
                // The next non-empty bucket down.
                let Some(b) = (0..self.bucket).rev().find(|&b| self.heads[b] != NONE) else {
                    self.bucket = 0;
                    return;
                };
                self.bucket = b;
                self.cursor = self.heads[b];
            }
            let slot = self.cursor;
            out.push(slot);
            self.cursor = if slot == self.tails[self.bucket] {
                NONE
            } else {
                self.next.get(usize::from(slot)).copied().unwrap_or(NONE)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_best_bucket_first_in_slot_order_and_once() {
        let mut q = DueQueue::new(4);
        q.clear(10, 0);
        for (bucket, slot) in [(0, 0), (5, 1), (0, 2), (127, 3), (5, 4), (5, 9), (0, 7)] {
            q.push(bucket, slot);
        }
        q.push(PRIORITY_BUCKETS as u16, 8); // out of range: ignored
        let mut out = Vec::new();
        q.take(2, &mut out);
        assert_eq!(out, [3, 1]);
        q.take(3, &mut out);
        assert_eq!(out, [4, 9, 0]);
        q.take(10, &mut out);
        assert_eq!(out, [2, 7]);
        q.take(10, &mut out);
        assert!(out.is_empty(), "each entry is taken once");
        q.clear(10, 0);
        q.take(10, &mut out);
        assert!(out.is_empty(), "clear forgets everything");
        q.clear(10, 0);
        q.push(1, 5);
        q.take(10, &mut out);
        assert_eq!(out, [5]);
    }

    /// Takes everything in batches of `k`, reopening below the floor (and
    /// listing what was held back, as the pass would) when the lists run
    /// out.
    fn take_all(q: &mut DueQueue, due: &[(u16, u16)], k: usize) -> Vec<u16> {
        let (mut all, mut out) = (Vec::new(), Vec::new());
        loop {
            q.take(k, &mut out);
            if out.is_empty() {
                let Some(floor) = q.reopen() else {
                    return all;
                };
                for &(bucket, slot) in due {
                    if bucket < floor {
                        assert!(q.push(bucket, slot));
                    }
                }
                continue;
            }
            all.extend_from_slice(&out);
        }
    }

    #[test]
    fn a_floor_changes_the_work_never_the_order() {
        let mut rng = tos_protocol::rng::SplitMix64::new(3);
        for round in 0..200 {
            let n = 1 + (rng.next_u64() % 300) as u16;
            let mut due = Vec::new();
            for slot in 0..n {
                let r = rng.next_u64();
                if r % 4 != 0 {
                    due.push((((r >> 8) % 40) as u16, slot));
                }
            }
            let mut q = DueQueue::new(4);
            q.clear(usize::from(n), 0);
            for &(bucket, slot) in &due {
                assert!(q.push(bucket, slot));
            }
            let k = 1 + round % 7;
            let expected = take_all(&mut q, &due, k);
            assert_eq!(expected.len(), due.len());
            let floor = (rng.next_u64() % 45) as u16;
            q.clear(usize::from(n), floor);
            for &(bucket, slot) in &due {
                assert_eq!(q.push(bucket, slot), bucket >= floor);
            }
            assert_eq!(take_all(&mut q, &due, k), expected, "floor {floor}");
        }
    }

    #[test]
    fn reached_is_where_take_stopped() {
        let mut q = DueQueue::new(8);
        q.clear(8, 0);
        assert_eq!(q.reached(), None, "nothing taken yet");
        q.push(9, 0);
        q.push(3, 1);
        let mut out = Vec::new();
        q.take(1, &mut out);
        assert_eq!(q.reached(), Some(9));
        q.take(1, &mut out);
        assert_eq!(q.reached(), Some(3));
        assert_eq!(q.reopen(), None, "nothing was held back");
    }
}
