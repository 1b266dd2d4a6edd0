//! A connection's deadlines in one table (the model: quinn-proto's
//! `connection/timer.rs`). [`Connection::timers`](super::Connection) fills
//! it from the connection's state; `next_timeout` is its earliest entry
//! and `handle_timeout` acts on the entries that expired, so the two can
//! never disagree about when something is due.

use std::time::Instant;

/// One kind of deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The handshake must have completed.
    HandshakeDeadline = 0,
    /// Client: the next Connect re-send.
    HandshakeResend = 1,
    /// Closing: the connection becomes closed.
    Close = 2,
    /// Nothing was heard for the idle timeout.
    Idle = 3,
    /// A heartbeat Ping is due.
    KeepAlive = 4,
    /// An acknowledgement is due.
    Ack = 5,
    /// The oldest packet in flight reaches its retransmission timeout.
    Rto = 6,
    /// The oldest reassembly expires.
    Reassembly = 7,
    /// The previous key generation stops being accepted.
    KeyDiscard = 8,
    /// Server: the key's age calls for a rekey.
    Rekey = 9,
    /// The pending integrity answer is overdue.
    IntegrityAnswer = 10,
    /// The next periodic integrity check.
    IntegrityNext = 11,
}

const COUNT: usize = 12;

/// Every deadline of a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    data: [Option<Instant>; COUNT],
}

impl TimerTable {
    /// Sets `timer` to `at`, or to the earlier of the two if it is set
    /// already (a timer fed by several sources fires at the first).
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        let slot = &mut self.data[timer as usize];
        *slot = Some(slot.map_or(at, |t| t.min(at)));
    }

    /// The deadline of `timer`.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer as usize]
    }

    /// Whether `timer` is set and due at `now`.
    pub(crate) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| now >= t)
    }

    /// The earliest deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_deadline_wins() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::Idle, t0 + Duration::from_secs(15));
        t.set(Timer::Ack, t0 + Duration::from_millis(25));
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_millis(25)));
        t.set(Timer::Ack, t0 + Duration::from_millis(50));
        assert_eq!(t.get(Timer::Ack), Some(t0 + Duration::from_millis(25)));
        assert!(t.is_expired(Timer::Ack, t0 + Duration::from_millis(25)));
        assert!(!t.is_expired(Timer::Idle, t0 + Duration::from_millis(25)));
        assert!(!t.is_expired(Timer::Rto, t0 + Duration::from_secs(100)));
    }
}
