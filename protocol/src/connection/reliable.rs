//! Reliable channels: the sender's slots of unacknowledged messages, the
//! receivers' ordering and de-duplication, and fragment reassembly.
//!
//! Every buffer here is bounded and reused: a slot's `Vec` keeps its
//! capacity when the slot is recycled, so a connection in steady state
//! allocates nothing per message.

use std::collections::VecDeque;
use std::time::Instant;

use crate::wire::Channel;
use crate::wire::control::FRAGMENT_PIECE_LEN;

/// One piece of a reliable message: the whole message if it fits a
/// datagram, else one fragment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PieceState {
    pub(crate) acked: bool,
    /// In a packet not yet acknowledged or declared lost.
    pub(crate) in_flight: bool,
    /// Times this piece was declared lost.
    pub(crate) losses: u32,
}

/// A reliable message awaiting acknowledgement.
#[derive(Debug, Default)]
pub(crate) struct SendSlot {
    pub(crate) id: u64,
    pub(crate) data: Vec<u8>,
    /// Whether the message is sent as fragments.
    pub(crate) fragmented: bool,
    pub(crate) fragment_id: u16,
    pub(crate) pieces: Vec<PieceState>,
    pub(crate) unacked_pieces: usize,
}

impl SendSlot {
    /// The bytes of piece `index`.
    pub(crate) fn piece(&self, index: u16) -> &[u8] {
        if !self.fragmented {
            return &self.data;
        }
        let start = usize::from(index) * FRAGMENT_PIECE_LEN;
        let end = (start + FRAGMENT_PIECE_LEN).min(self.data.len());
        &self.data[start.min(end)..end]
    }
}

/// Reference to one piece of one reliable message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PieceRef {
    pub(crate) channel: Channel,
    pub(crate) id: u64,
    pub(crate) piece: u16,
}

/// The sending half of one reliable channel.
#[derive(Debug)]
pub(crate) struct ReliableSender {
    channel: Channel,
    /// Id of the oldest slot (all lower ids are acknowledged).
    base_id: u64,
    next_id: u64,
    slots: VecDeque<SendSlot>,
    /// Recycled slots, capacity kept.
    spare: Vec<SendSlot>,
    bytes_queued: usize,
}

impl ReliableSender {
    pub(crate) fn new(channel: Channel) -> Self {
        Self {
            channel,
            base_id: 0,
            next_id: 0,
            slots: VecDeque::new(),
            spare: Vec::new(),
            bytes_queued: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The oldest id not yet acknowledged.
    pub(crate) fn base_id(&self) -> u64 {
        self.base_id
    }

    pub(crate) fn bytes_queued(&self) -> usize {
        self.bytes_queued
    }

    /// Bytes held (capacity): queued slots and spares.
    pub(crate) fn memory(&self) -> usize {
        let slot = |s: &SendSlot| {
            s.data.capacity() + s.pieces.capacity() * core::mem::size_of::<PieceState>()
        };
        self.slots.iter().map(slot).sum::<usize>()
            + self.spare.iter().map(slot).sum::<usize>()
            + (self.slots.capacity() + self.spare.capacity()) * core::mem::size_of::<SendSlot>()
    }

    /// Queues a message; returns its id. The caller checked the limits.
    /// Every piece is pushed onto `pending` for its first transmission.
    pub(crate) fn push(
        &mut self,
        data: &[u8],
        max_unfragmented: usize,
        fragment_id: &mut u16,
        pending: &mut VecDeque<PieceRef>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut slot = self.spare.pop().unwrap_or_default();
        slot.id = id;
        slot.data.clear();
        slot.data.extend_from_slice(data);
        slot.fragmented = data.len() > max_unfragmented;
        let count = if slot.fragmented {
            data.len().div_ceil(FRAGMENT_PIECE_LEN)
        } else {
            1
        };
        if slot.fragmented {
            slot.fragment_id = *fragment_id;
            *fragment_id = fragment_id.wrapping_add(1);
        }
        slot.pieces.clear();
        slot.pieces.resize(count, PieceState::default());
        slot.unacked_pieces = count;
        for piece in 0..count {
            pending.push_back(PieceRef {
                channel: self.channel,
                id,
                piece: piece as u16,
            });
        }
        self.bytes_queued += data.len() + SEND_SLOT_COST;
        self.slots.push_back(slot);
        id
    }

    pub(crate) fn slot_mut(&mut self, id: u64) -> Option<&mut SendSlot> {
        let index = usize::try_from(id.checked_sub(self.base_id)?).ok()?;
        self.slots.get_mut(index)
    }

    /// Marks a piece acknowledged and recycles fully acknowledged slots at
    /// the front. Returns whether the piece was newly acknowledged.
    pub(crate) fn ack(&mut self, id: u64, piece: u16) -> bool {
        let Some(slot) = self.slot_mut(id) else {
            return false;
        };
        let Some(state) = slot.pieces.get_mut(usize::from(piece)) else {
            return false;
        };
        state.in_flight = false;
        if state.acked {
            return false;
        }
        state.acked = true;
        slot.unacked_pieces -= 1;
        while self.slots.front().is_some_and(|s| s.unacked_pieces == 0) {
            if let Some(done) = self.slots.pop_front() {
                self.bytes_queued -= done.data.len() + SEND_SLOT_COST;
                self.base_id += 1;
                // Keep a few small slots for reuse; a recycled slot used to
                // keep whatever capacity its largest message gave it.
                if self.spare.len() < SPARE_BUFFERS && done.data.capacity() <= SPARE_BUFFER_CAPACITY
                {
                    self.spare.push(done);
                }
            }
        }
        true
    }
}

/// Appends `data`, growing the capacity by doubling but never past
/// `limit` (unless the data itself needs more): buffers that count towards
/// the memory budget must not overshoot it by the doubling slack.
pub(crate) fn extend_bounded(v: &mut Vec<u8>, data: &[u8], limit: usize) {
    let need = v.len() + data.len();
    if need > v.capacity() {
        let target = (v.capacity() * 2).max(64).min(limit).max(need);
        v.reserve_exact(target - v.len());
    }
    v.extend_from_slice(data);
}

/// Spare out-of-order buffers kept for reuse.
pub(crate) const SPARE_BUFFERS: usize = 4;
/// Largest spare buffer kept: small messages (inputs, chat) reuse buffers
/// without allocating; larger ones are rare and freed after use.
pub(crate) const SPARE_BUFFER_CAPACITY: usize = 512;
/// What a queued reliable message costs beyond its bytes (its slot and
/// piece state), charged to `send_queue_bytes` so that many tiny messages
/// cannot exceed the queue's memory.
pub(crate) const SEND_SLOT_COST: usize =
    core::mem::size_of::<SendSlot>() + core::mem::size_of::<PieceState>();

/// Delivers reliable ordered messages in id order.
#[derive(Debug)]
pub(crate) struct OrderedReceiver {
    next_deliver: u64,
    /// Index i holds message `next_deliver + i` if it arrived early.
    buffered: VecDeque<Option<Vec<u8>>>,
    spare: Vec<Vec<u8>>,
    buffered_bytes: usize,
    /// Messages buffered (the `Some` entries of `buffered`).
    buffered_count: usize,
    window: u64,
}

/// What a receiver did with an arriving message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Deliver it now (and then drain what became deliverable).
    Deliver,
    /// Buffered until earlier ids arrive.
    Buffered,
    /// Already delivered or buffered: ignore (but acknowledge).
    Duplicate,
    /// Beyond the window or the buffer is full: refuse (do not acknowledge).
    Refused,
}

impl OrderedReceiver {
    pub(crate) fn new(window: u64) -> Self {
        Self {
            next_deliver: 0,
            buffered: VecDeque::new(),
            spare: Vec::new(),
            buffered_bytes: 0,
            buffered_count: 0,
            window,
        }
    }

    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Messages buffered out of order.
    pub(crate) fn buffered_count(&self) -> usize {
        self.buffered_count
    }

    /// Whether message `id` was delivered or is buffered.
    pub(crate) fn is_done(&self, id: u64) -> bool {
        if id < self.next_deliver {
            return true;
        }
        let offset = id - self.next_deliver;
        usize::try_from(offset)
            .ok()
            .and_then(|o| self.buffered.get(o))
            .is_some_and(Option::is_some)
    }

    /// Classifies message `id`; when it is [`Arrival::Buffered`] the bytes
    /// were copied. The caller delivers on [`Arrival::Deliver`] and then
    /// calls [`Self::pop_ready`] until it returns `None`.
    pub(crate) fn arrive(&mut self, id: u64, data: &[u8], max_buffered_bytes: usize) -> Arrival {
        if id < self.next_deliver {
            return Arrival::Duplicate;
        }
        let offset = id - self.next_deliver;
        if offset >= self.window {
            return Arrival::Refused;
        }
        if offset == 0 {
            if let Some(front) = self.buffered.front() {
                if front.is_some() {
                    return Arrival::Duplicate;
                }
            }
            return Arrival::Deliver;
        }
        let offset = offset as usize;
        if self.buffered.get(offset).is_some_and(Option::is_some) {
            return Arrival::Duplicate;
        }
        if self.buffered_bytes + data.len() > max_buffered_bytes {
            return Arrival::Refused;
        }
        while self.buffered.len() <= offset {
            self.buffered.push_back(None);
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(data);
        self.buffered_bytes += buf.len();
        self.buffered_count += 1;
        self.buffered[offset] = Some(buf);
        Arrival::Buffered
    }

    /// Records that the message at `next_deliver` was delivered.
    pub(crate) fn delivered(&mut self) {
        self.next_deliver += 1;
        if !self.buffered.is_empty() {
            if let Some(Some(buf)) = self.buffered.pop_front() {
                // Delivered directly although buffered: recycle.
                self.buffered_bytes -= buf.len();
                self.buffered_count -= 1;
                self.recycle(buf);
            }
        }
    }

    /// The next buffered message that is now in order, if any. The caller
    /// must deliver it and then call [`Self::recycle`].
    pub(crate) fn pop_ready(&mut self) -> Option<Vec<u8>> {
        if let Some(Some(_)) = self.buffered.front() {
            let buf = self.buffered.pop_front().flatten()?;
            self.buffered_bytes -= buf.len();
            self.buffered_count -= 1;
            self.next_deliver += 1;
            return Some(buf);
        }
        None
    }

    /// Returns a buffer from [`Self::pop_ready`] for reuse.
    /// Keeps at most [`SPARE_BUFFERS`] buffers of at most
    /// [`SPARE_BUFFER_CAPACITY`] bytes: a burst of large out-of-order
    /// messages must not leave its buffers pinned to the connection.
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_BUFFER_CAPACITY {
            self.spare.push(buf);
        }
    }

    /// Bytes held (capacity of the index and of every buffer).
    pub(crate) fn memory(&self) -> usize {
        self.buffered.capacity() * core::mem::size_of::<Option<Vec<u8>>>()
            + self
                .buffered
                .iter()
                .flatten()
                .map(Vec::capacity)
                .sum::<usize>()
            + self.spare.iter().map(Vec::capacity).sum::<usize>()
            + self.spare.capacity() * core::mem::size_of::<Vec<u8>>()
    }
}

/// De-duplicates reliable unordered messages.
#[derive(Debug)]
pub(crate) struct UnorderedReceiver {
    /// Every id below `base` was received.
    base: u64,
    /// Bit i of word w: id `base + 64w + i` was received.
    bits: Vec<u64>,
    window: u64,
}

impl UnorderedReceiver {
    pub(crate) fn new(window: u64) -> Self {
        let words = window.div_ceil(64) as usize;
        Self {
            base: 0,
            bits: vec![0; words],
            window: words as u64 * 64,
        }
    }

    /// Whether message `id` was received.
    pub(crate) fn is_done(&self, id: u64) -> bool {
        if id < self.base {
            return true;
        }
        let offset = id - self.base;
        offset < self.window && self.bits[(offset / 64) as usize] >> (offset % 64) & 1 == 1
    }

    pub(crate) fn arrive(&mut self, id: u64) -> Arrival {
        if id < self.base {
            return Arrival::Duplicate;
        }
        let offset = id - self.base;
        if offset >= self.window {
            return Arrival::Refused;
        }
        let (w, b) = ((offset / 64) as usize, offset % 64);
        if self.bits[w] >> b & 1 == 1 {
            return Arrival::Duplicate;
        }
        self.bits[w] |= 1 << b;
        // Slide past fully received leading ids.
        while self.bits[0] & 1 == 1 {
            let shift = u64::from(self.bits[0].trailing_ones());
            self.shift(shift);
        }
        Arrival::Deliver
    }

    fn shift(&mut self, n: u64) {
        // n ≤ 64, and the first word is all ones in its low n bits.
        self.base += n;
        let words = self.bits.len();
        for i in 0..words {
            let next = if i + 1 < words { self.bits[i + 1] } else { 0 };
            self.bits[i] = if n == 64 {
                next
            } else {
                (self.bits[i] >> n) | (next << (64 - n))
            };
        }
    }
}

/// One message being reassembled.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    pub(crate) active: bool,
    pub(crate) channel: Option<Channel>,
    pub(crate) message_id: u64,
    pub(crate) fragment_id: u16,
    pub(crate) total: usize,
    pub(crate) received: Vec<u64>,
    pub(crate) remaining: usize,
    /// The pieces received so far, in arrival order (in message order once
    /// complete). Never zero-filled to `total` up front: a peer announcing
    /// a large message with one tiny piece costs us that piece, not the
    /// whole announced size (the zero-fill was CPU amplification).
    pub(crate) data: Vec<u8>,
    /// (piece index, offset in `data`) in arrival order.
    pub(crate) pieces: Vec<(u16, u32)>,
    pub(crate) started: Option<Instant>,
}

/// A released reassembly keeps buffers up to this capacity (reused without
/// allocating); larger ones are freed so that one large message, or a
/// hostile peer, does not pin memory in every slot.
pub(crate) const REASSEMBLY_RETAIN: usize = 2 * FRAGMENT_PIECE_LEN;

impl Reassembly {
    /// Puts the pieces, stored in arrival order, in message order. In-order
    /// arrival (the common case) needs nothing; otherwise one copy of the
    /// message, paid for by the bytes that arrived.
    fn put_in_order(&mut self) {
        if self.pieces.is_sorted_by_key(|&(i, _)| i) {
            return;
        }
        self.pieces.sort_unstable_by_key(|&(i, _)| i);
        let mut ordered = Vec::with_capacity(self.data.len());
        let count = self.pieces.len();
        for &(index, start) in &self.pieces {
            let len = if usize::from(index) + 1 == count {
                self.total - usize::from(index) * FRAGMENT_PIECE_LEN
            } else {
                FRAGMENT_PIECE_LEN
            };
            let start = start as usize;
            ordered.extend_from_slice(&self.data[start..start + len]);
        }
        self.data = ordered;
    }

    /// Frees the slot; buffers over [`REASSEMBLY_RETAIN`] are released.
    fn deactivate(&mut self) {
        self.active = false;
        if self.data.capacity() > REASSEMBLY_RETAIN {
            self.data = Vec::new();
        }
        if self.pieces.capacity() > REASSEMBLY_RETAIN / FRAGMENT_PIECE_LEN * 4 {
            self.pieces = Vec::new();
        }
        if self.received.capacity() > 1 {
            self.received = Vec::new();
        }
    }
}

/// Why a fragment was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FragmentError {
    /// Total size over the message limit, or index/length inconsistent.
    Invalid,
    /// Every reassembly slot is busy.
    TooManyReassemblies,
}

/// Bounded fragment reassembly.
#[derive(Debug)]
pub(crate) struct Reassembler {
    slots: Vec<Reassembly>,
}

impl Reassembler {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            slots: (0..max).map(|_| Reassembly::default()).collect(),
        }
    }

    /// Adds a piece. Returns the slot index when the message is complete
    /// (read it with [`Self::complete`] then [`Self::release`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        now: Instant,
        channel: Channel,
        message_id: u64,
        fragment_id: u16,
        index: u16,
        total_size: u32,
        data: &[u8],
        max_message: usize,
    ) -> Result<Option<usize>, FragmentError> {
        let total = total_size as usize;
        if total == 0 || total > max_message {
            return Err(FragmentError::Invalid);
        }
        let count = total.div_ceil(FRAGMENT_PIECE_LEN);
        let idx = usize::from(index);
        if idx >= count {
            return Err(FragmentError::Invalid);
        }
        let expected = if idx + 1 == count {
            total - idx * FRAGMENT_PIECE_LEN
        } else {
            FRAGMENT_PIECE_LEN
        };
        if data.len() != expected {
            return Err(FragmentError::Invalid);
        }
        let found = self.slots.iter().position(|s| {
            s.active
                && s.channel == Some(channel)
                && s.fragment_id == fragment_id
                && s.message_id == message_id
        });
        let slot_index = match found {
            Some(i) => {
                if self.slots[i].total != total {
                    return Err(FragmentError::Invalid);
                }
                i
            }
            None => {
                let free = self.slots.iter().position(|s| !s.active);
                // An unreliable message may evict the oldest incomplete
                // unreliable one: its missing piece is not coming again,
                // and fresh state is worth more than stale.
                let evict = || {
                    self.slots
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.active && s.channel == Some(Channel::Unreliable))
                        .min_by_key(|(_, s)| s.started)
                        .map(|(i, _)| i)
                };
                let Some(i) = free.or_else(|| {
                    if channel == Channel::Unreliable {
                        evict()
                    } else {
                        None
                    }
                }) else {
                    return Err(FragmentError::TooManyReassemblies);
                };
                let s = &mut self.slots[i];
                s.active = true;
                s.channel = Some(channel);
                s.message_id = message_id;
                s.fragment_id = fragment_id;
                s.total = total;
                s.remaining = count;
                s.received.clear();
                s.received.resize(count.div_ceil(64), 0);
                s.data.clear();
                s.pieces.clear();
                s.started = Some(now);
                i
            }
        };
        let s = &mut self.slots[slot_index];
        let (w, b) = (idx / 64, idx % 64);
        if s.received[w] >> b & 1 == 1 {
            // A repeated piece of a message that completed but could not be
            // delivered then (receive buffer full): offer it again.
            return Ok((s.remaining == 0).then_some(slot_index));
        }
        s.received[w] |= 1 << b;
        s.remaining -= 1;
        // Offsets stay below `total` ≤ the message limit (< 4 GiB).
        s.pieces.push((index, s.data.len() as u32));
        extend_bounded(&mut s.data, data, total);
        if s.remaining == 0 {
            s.put_in_order();
            return Ok(Some(slot_index));
        }
        Ok(None)
    }

    /// Bytes of pieces held by active reassemblies (what the receive budget
    /// is charged).
    pub(crate) fn held_bytes(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.active)
            .map(|s| s.data.len())
            .sum()
    }

    /// Takes a slot's buffer out (to deliver it without copying).
    pub(crate) fn take_data(&mut self, slot: usize) -> Vec<u8> {
        core::mem::take(&mut self.slots[slot].data)
    }

    /// Puts a buffer back (its capacity is reused).
    pub(crate) fn put_data(&mut self, slot: usize, data: Vec<u8>) {
        self.slots[slot].data = data;
    }

    pub(crate) fn complete(&self, slot: usize) -> &Reassembly {
        &self.slots[slot]
    }

    pub(crate) fn release(&mut self, slot: usize) {
        self.slots[slot].deactivate();
    }

    /// Drops reassemblies older than `timeout`; returns how many.
    pub(crate) fn expire(&mut self, now: Instant, timeout: std::time::Duration) -> usize {
        let mut n = 0;
        for s in &mut self.slots {
            if s.active
                && s.started
                    .is_some_and(|t| now.saturating_duration_since(t) >= timeout)
            {
                s.deactivate();
                n += 1;
            }
        }
        n
    }

    /// The earliest expiry deadline.
    pub(crate) fn next_expiry(&self, timeout: std::time::Duration) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|s| s.active)
            .filter_map(|s| s.started)
            .min()
            .map(|t| t + timeout)
    }

    /// Bytes held by reassembly buffers (capacity).
    pub(crate) fn memory(&self) -> usize {
        self.slots
            .iter()
            .map(|s| {
                s.data.capacity()
                    + s.received.capacity() * 8
                    + s.pieces.capacity() * core::mem::size_of::<(u16, u32)>()
            })
            .sum::<usize>()
            + self.slots.capacity() * core::mem::size_of::<Reassembly>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_delivers_in_order_and_refuses_beyond_window() {
        let mut r = OrderedReceiver::new(4);
        assert_eq!(r.arrive(2, b"c", 100), Arrival::Buffered);
        assert_eq!(r.arrive(2, b"c", 100), Arrival::Duplicate);
        assert_eq!(r.arrive(4, b"e", 100), Arrival::Refused);
        assert_eq!(r.arrive(1, b"b", 100), Arrival::Buffered);
        assert_eq!(r.arrive(0, b"a", 100), Arrival::Deliver);
        r.delivered();
        assert_eq!(r.pop_ready().as_deref(), Some(&b"b"[..]));
        assert_eq!(r.pop_ready().as_deref(), Some(&b"c"[..]));
        assert_eq!(r.pop_ready(), None);
        assert_eq!(r.arrive(1, b"b", 100), Arrival::Duplicate);
        assert_eq!(r.arrive(3, b"d", 100), Arrival::Deliver);
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn unordered_deduplicates_across_the_window() {
        let mut r = UnorderedReceiver::new(128);
        let mut x = 1u64;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let id = (x >> 33) % 400;
            let expected = if seen.contains(&id) {
                Arrival::Duplicate
            } else if id >= r.base + r.window {
                Arrival::Refused
            } else {
                Arrival::Deliver
            };
            let got = r.arrive(id);
            assert_eq!(got, expected, "id {id}");
            if got == Arrival::Deliver {
                seen.insert(id);
            }
        }
        assert!(r.base > 0);
    }

    #[test]
    fn reassembly_limits() {
        let now = Instant::now();
        let mut r = Reassembler::new(1);
        let piece = [7u8; FRAGMENT_PIECE_LEN];
        assert_eq!(
            r.add(now, Channel::ReliableOrdered, 1, 1, 0, 1500, &piece, 4096),
            Ok(None)
        );
        assert_eq!(
            r.add(now, Channel::ReliableOrdered, 2, 2, 0, 1500, &piece, 4096),
            Err(FragmentError::TooManyReassemblies)
        );
        assert_eq!(
            r.add(
                now,
                Channel::ReliableOrdered,
                1,
                1,
                1,
                1500,
                &piece[..100],
                4096
            ),
            Err(FragmentError::Invalid)
        );
        assert_eq!(
            r.add(
                now,
                Channel::ReliableOrdered,
                1,
                1,
                1,
                1500,
                &piece[..476],
                4096
            ),
            Ok(Some(0))
        );
        assert_eq!(r.complete(0).data.len(), 1500);
        r.release(0);
        assert_eq!(
            r.add(now, Channel::ReliableOrdered, 3, 3, 0, 5000, &piece, 4096),
            Err(FragmentError::Invalid)
        );
    }

    #[test]
    fn reassembly_out_of_order_is_put_back_in_order() {
        let now = Instant::now();
        let mut r = Reassembler::new(1);
        let total = 2 * FRAGMENT_PIECE_LEN + 5;
        let msg: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
        let piece =
            |i: usize| &msg[i * FRAGMENT_PIECE_LEN..((i + 1) * FRAGMENT_PIECE_LEN).min(total)];
        let ch = Channel::ReliableOrdered;
        assert_eq!(
            r.add(now, ch, 1, 1, 2, total as u32, piece(2), 4096),
            Ok(None)
        );
        assert_eq!(r.held_bytes(), 5);
        assert_eq!(
            r.add(now, ch, 1, 1, 0, total as u32, piece(0), 4096),
            Ok(None)
        );
        assert_eq!(
            r.add(now, ch, 1, 1, 1, total as u32, piece(1), 4096),
            Ok(Some(0))
        );
        assert_eq!(r.complete(0).data, msg);
        r.release(0);
        assert_eq!(r.held_bytes(), 0);
    }
}
