//! The 64-entry replay window over packet sequences.
//!
//! A packet is checked before it is opened (cheap rejection) and committed
//! only after its tag verified, so a forged packet can never move the
//! window. Sequences are treated as a plain `u64` line that never wraps (a
//! sender that reached `u64::MAX` must close the connection); the
//! arithmetic is checked so the window is correct up to that end.

/// Why a sequence was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// The sequence was already received.
    Duplicate,
    /// The sequence is more than 64 below the largest received.
    TooOld,
}

/// Which of the last 64 sequences arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Largest sequence received, if any.
    largest: Option<u64>,
    /// Bit i set: `largest − 1 − i` was received.
    bits: u64,
}

/// How far below the largest sequence the window reaches.
pub const WINDOW: u64 = 64;

impl ReplayWindow {
    /// An empty window.
    pub const fn new() -> Self {
        Self {
            largest: None,
            bits: 0,
        }
    }

    /// The largest sequence received.
    pub fn largest(&self) -> Option<u64> {
        self.largest
    }

    /// Whether `seq` may be accepted (does not change the window).
    #[inline]
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        let Some(largest) = self.largest else {
            return Ok(());
        };
        if seq > largest {
            return Ok(());
        }
        let back = largest - seq;
        if back == 0 {
            return Err(ReplayError::Duplicate);
        }
        if back > WINDOW {
            return Err(ReplayError::TooOld);
        }
        if self.bits >> (back - 1) & 1 == 1 {
            return Err(ReplayError::Duplicate);
        }
        Ok(())
    }

    /// Records `seq` as received. Call only after [`check`](Self::check)
    /// passed and the packet authenticated.
    #[inline]
    pub fn commit(&mut self, seq: u64) {
        match self.largest {
            None => {
                self.largest = Some(seq);
                self.bits = 0;
            }
            Some(largest) if seq > largest => {
                let shift = seq - largest;
                // The old largest becomes bit shift-1.
                self.bits = if shift > WINDOW {
                    0
                } else if shift == WINDOW {
                    1 << 63
                } else {
                    (self.bits << shift) | (1 << (shift - 1))
                };
                self.largest = Some(seq);
            }
            Some(largest) => {
                let back = largest - seq;
                if (1..=WINDOW).contains(&back) {
                    self.bits |= 1 << (back - 1);
                }
            }
        }
    }

    /// The window as (largest, bits) for an ack frame.
    pub fn ack_state(&self) -> Option<(u64, u64)> {
        self.largest.map(|l| (l, self.bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, s: u64) -> Result<(), ReplayError> {
        w.check(s)?;
        w.commit(s);
        Ok(())
    }

    #[test]
    fn duplicates_and_old_packets_are_refused() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 0), Ok(()));
        assert_eq!(accept(&mut w, 0), Err(ReplayError::Duplicate));
        assert_eq!(accept(&mut w, 100), Ok(()));
        assert_eq!(accept(&mut w, 36), Ok(()));
        assert_eq!(accept(&mut w, 36), Err(ReplayError::Duplicate));
        assert_eq!(accept(&mut w, 35), Err(ReplayError::TooOld));
        assert_eq!(accept(&mut w, 99), Ok(()));
        assert_eq!(accept(&mut w, 164), Ok(()));
        assert_eq!(
            accept(&mut w, 100),
            Err(ReplayError::Duplicate),
            "64 back, kept in the window"
        );
        assert_eq!(accept(&mut w, 101), Ok(()));
        assert_eq!(accept(&mut w, 99), Err(ReplayError::TooOld));
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 5), Ok(()));
        assert_eq!(accept(&mut w, 70), Ok(()));
        assert_eq!(accept(&mut w, 6), Ok(()), "exactly 64 back is inside");
        assert_eq!(accept(&mut w, 5), Err(ReplayError::TooOld));
    }

    #[test]
    fn correct_near_the_end_of_the_sequence_space() {
        let mut w = ReplayWindow::new();
        let top = u64::MAX;
        assert_eq!(accept(&mut w, top - 70), Ok(()));
        assert_eq!(accept(&mut w, top - 1), Ok(()));
        assert_eq!(accept(&mut w, top), Ok(()));
        assert_eq!(accept(&mut w, top), Err(ReplayError::Duplicate));
        assert_eq!(accept(&mut w, top - 1), Err(ReplayError::Duplicate));
        assert_eq!(accept(&mut w, top - 64), Ok(()));
        assert_eq!(accept(&mut w, top - 65), Err(ReplayError::TooOld));
        assert_eq!(accept(&mut w, 0), Err(ReplayError::TooOld));
    }

    #[test]
    fn matches_a_set_model() {
        // Deterministic pseudo-random order against a brute-force model.
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut rng = crate::rng::SplitMix64::new(0x2545_f491_4f6c_dd1d);
        let mut base = 0u64;
        for _ in 0..20_000 {
            let x = rng.next_u64();
            base += x % 3;
            let s = base.saturating_sub(x % 90);
            let largest = seen.iter().next_back().copied();
            let expected = match largest {
                Some(l) if s + WINDOW < l => Err(ReplayError::TooOld),
                _ if seen.contains(&s) => Err(ReplayError::Duplicate),
                _ => Ok(()),
            };
            assert_eq!(accept(&mut w, s), expected, "seq {s}");
            if expected.is_ok() {
                seen.insert(s);
            }
        }
    }
}
