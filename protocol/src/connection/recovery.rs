//! Loss recovery: what each sent packet carried, RTT estimation (RFC 6298
//! style), and an AIMD congestion window over bytes in flight.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::reliable::PieceRef;

/// What a sent packet carried that matters once it is acked or lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SentFrame {
    /// A piece of a reliable message.
    Piece(PieceRef),
    /// An unreliable message, by its token.
    Unreliable(u64),
    /// One piece of a fragmented unreliable message, by its token.
    UnreliablePiece(u64),
    /// A control frame that must be re-sent if lost.
    Control(ControlKind),
}

/// Control frames that are retransmitted when their packet is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ControlKind {
    CryptoTest,
    CryptoTestAck,
    ReliableHandshake,
    NewConnectionId,
    RekeyRequest,
    RekeyResponse,
    IntegrityChallenge,
    IntegrityAnswer,
}

/// One sent packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentPacket {
    pub(crate) pn: u64,
    pub(crate) time: Instant,
    pub(crate) bytes: u16,
    pub(crate) ack_eliciting: bool,
    /// Range of this packet's frames in [`SentPackets::frames`] (by
    /// absolute frame index).
    pub(crate) first_frame: u64,
    pub(crate) frame_count: u16,
    pub(crate) acked: bool,
    pub(crate) lost: bool,
}

/// Most ack-eliciting packets tracked at once. When the history is full no
/// new ack-eliciting content is written (acks still go out): a peer that
/// never acknowledges stalls its own connection instead of growing ours,
/// and the retransmission timeout then declares the history lost, so it
/// drains. 256 packets is over 4 s of 60 Hz traffic. (Forgetting the
/// oldest instead was tried: re-queued content refilled the history within
/// one `poll_transmit` loop and never stopped.)
pub(crate) const MAX_SENT_PACKETS: usize = 256;
/// Most retransmittable frames tracked at once (same rule as packets).
pub(crate) const MAX_SENT_FRAMES: usize = 256;

/// Sent packets in packet-number order, with their frames.
///
/// Only packets that must be acknowledged or recovered are kept: an
/// ack-only packet carries nothing to re-send and is never declared lost,
/// so keeping it would pin the history's front forever if the peer never
/// acknowledges it. Invariant (restored by [`Self::compact`] after every
/// change): the front packet is unsettled, so the oldest packet in flight
/// is found in O(1).
#[derive(Debug, Default)]
pub(crate) struct SentPackets {
    packets: VecDeque<SentPacket>,
    frames: VecDeque<SentFrame>,
    /// Absolute index of `frames[0]`.
    frames_base: u64,
    /// The largest packet number sent, tracked or not (an ack naming a
    /// larger one is forged).
    largest_sent: Option<u64>,
    pub(crate) bytes_in_flight: usize,
}

impl SentPackets {
    /// Starts recording frames for the packet about to be sent.
    pub(crate) fn frame_cursor(&self) -> u64 {
        self.frames_base + self.frames.len() as u64
    }

    pub(crate) fn push_frame(&mut self, f: SentFrame) {
        self.frames.push_back(f);
    }

    /// Drops frames recorded since `cursor` (the packet was not sent).
    pub(crate) fn truncate_frames(&mut self, cursor: u64) {
        let keep = (cursor - self.frames_base) as usize;
        self.frames.truncate(keep);
    }

    pub(crate) fn push(&mut self, p: SentPacket) {
        self.largest_sent = Some(p.pn);
        if !p.ack_eliciting && p.frame_count == 0 {
            // Ack-only: nothing to recover, nothing to track.
            return;
        }
        if p.ack_eliciting {
            self.bytes_in_flight += usize::from(p.bytes);
        }
        self.packets.push_back(p);
    }

    /// Packets tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether the history is within its bounds.
    pub(crate) fn has_room(&self) -> bool {
        self.packets.len() < MAX_SENT_PACKETS && self.frames.len() < MAX_SENT_FRAMES
    }

    pub(crate) fn frame(&self, absolute: u64) -> Option<SentFrame> {
        let i = absolute.checked_sub(self.frames_base)?;
        self.frames.get(usize::try_from(i).ok()?).copied()
    }

    /// The packet with number `pn`, if still tracked.
    pub(crate) fn get_mut(&mut self, pn: u64) -> Option<&mut SentPacket> {
        // Ack-only packets leave gaps in the numbers: search (the history
        // is short and sorted).
        let i = self.packets.binary_search_by_key(&pn, |p| p.pn).ok()?;
        self.packets.get_mut(i)
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut SentPacket> {
        self.packets.iter_mut()
    }

    /// O(1): after [`Self::compact`] the front is the oldest unsettled
    /// packet (only a packet with no retransmittable frame could be
    /// non-eliciting, and none is tracked).
    pub(crate) fn oldest_in_flight(&self) -> Option<&SentPacket> {
        self.packets
            .front()
            .filter(|p| p.ack_eliciting && !p.acked && !p.lost)
    }

    pub(crate) fn largest_pn(&self) -> Option<u64> {
        self.largest_sent
    }

    /// Forgets settled packets at the front, and their frames.
    pub(crate) fn compact(&mut self) {
        while let Some(p) = self.packets.front() {
            if !(p.acked || p.lost) {
                break;
            }
            let end = p.first_frame + u64::from(p.frame_count);
            self.packets.pop_front();
            while self.frames_base < end && !self.frames.is_empty() {
                self.frames.pop_front();
                self.frames_base += 1;
            }
        }
    }

    /// Memory held (capacity), for the per-connection measurement.
    pub(crate) fn memory(&self) -> usize {
        self.packets.capacity() * core::mem::size_of::<SentPacket>()
            + self.frames.capacity() * core::mem::size_of::<SentFrame>()
    }
}

/// Smoothed RTT and its variance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RttEstimator {
    pub(crate) smoothed: Option<Duration>,
    pub(crate) variance: Duration,
    pub(crate) latest: Duration,
    pub(crate) min: Duration,
}

/// The RTT assumed before the first sample.
pub(crate) const INITIAL_RTT: Duration = Duration::from_millis(100);

impl RttEstimator {
    pub(crate) fn new() -> Self {
        Self {
            smoothed: None,
            variance: INITIAL_RTT / 2,
            latest: INITIAL_RTT,
            min: Duration::MAX,
        }
    }

    pub(crate) fn sample(&mut self, rtt: Duration) {
        self.latest = rtt;
        self.min = self.min.min(rtt);
        match self.smoothed {
            None => {
                self.smoothed = Some(rtt);
                self.variance = rtt / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(rtt);
                self.variance = (self.variance * 3 + diff) / 4;
                self.smoothed = Some((s * 7 + rtt) / 8);
            }
        }
    }

    pub(crate) fn get(&self) -> Duration {
        self.smoothed.unwrap_or(INITIAL_RTT)
    }

    /// Retransmission timeout: srtt + 4·rttvar, at least `floor`.
    pub(crate) fn rto(&self, floor: Duration) -> Duration {
        (self.get() + self.variance * 4).max(floor)
    }
}

/// AIMD congestion window in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Congestion {
    pub(crate) window: usize,
    ssthresh: usize,
    min_window: usize,
    max_datagram: usize,
    /// Losses of packets sent before this instant do not cut again.
    recovery_start: Option<Instant>,
}

impl Congestion {
    pub(crate) fn new(initial: usize, min_window: usize, max_datagram: usize) -> Self {
        Self {
            window: initial,
            ssthresh: usize::MAX,
            min_window,
            max_datagram,
            recovery_start: None,
        }
    }

    pub(crate) fn on_ack(&mut self, bytes: usize, sent: Instant) {
        if self.recovery_start.is_some_and(|r| sent <= r) {
            return;
        }
        if self.window < self.ssthresh {
            self.window += bytes;
        } else {
            self.window += (self.max_datagram * bytes / self.window).max(1);
        }
    }

    pub(crate) fn on_loss(&mut self, now: Instant, sent: Instant) {
        if self.recovery_start.is_some_and(|r| sent <= r) {
            return;
        }
        self.recovery_start = Some(now);
        self.window = (self.window / 2).max(self.min_window);
        self.ssthresh = self.window;
    }
}
