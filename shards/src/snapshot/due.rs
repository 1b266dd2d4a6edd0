//! The due entries of one view at one tick, in one first-in-first-out list
//! per priority bucket, so that the writer takes the best of them by
//! following the lists from the highest bucket down, touching only what it
//! sends (and no walk over every due entry, no sort, no partition).
//!
//! The lists are threaded through one `next` array indexed by entry slot
//! (shared by all views of a shard; it grows to the largest view once), and
//! the pass adds entries in slot order, so each bucket's list is in slot
//! order too.

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
}

impl DueQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            heads: [NONE; PRIORITY_BUCKETS],
            tails: [NONE; PRIORITY_BUCKETS],
            next: vec![NONE; capacity],
            bucket: 0,
            cursor: NONE,
        }
    }

    /// Empties the lists for a view of `entries` slots.
    #[inline]
    pub(crate) fn clear(&mut self, entries: usize) {
        self.heads = [NONE; PRIORITY_BUCKETS];
        self.tails = [NONE; PRIORITY_BUCKETS];
        if self.next.len() < entries {
            // Once per shard, for its largest view (warm-up, not per tick).
            self.next.resize(entries, NONE);
        }
        self.bucket = PRIORITY_BUCKETS;
        self.cursor = NONE;
    }

    /// Appends entry `slot` to bucket `bucket`'s list (below
    /// [`PRIORITY_BUCKETS`]; slots in ascending order).
    #[inline]
    pub(crate) fn push(&mut self, bucket: u16, slot: u16) {
        let b = usize::from(bucket);
        match self.tails.get(b).copied() {
            Some(NONE) => self.heads[b] = slot,
            Some(tail) => {
                if let Some(n) = self.next.get_mut(usize::from(tail)) {
                    *n = slot;
                }
            }
            None => return,
        }
        self.tails[b] = slot;
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
        q.clear(10);
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
        q.clear(10);
        q.take(10, &mut out);
        assert!(out.is_empty(), "clear forgets everything");
        q.clear(10);
        q.push(1, 5);
        q.take(10, &mut out);
        assert_eq!(out, [5]);
    }
}
