//! Chat as plain rules: what a line may hold, how fast a session may
//! speak (a token bucket per session), and where a line goes.
//!
//! - **Say** reaches the players within [`SAY_RADIUS`] of the speaker.
//!   The speaker's core asks its shard ([`tos_shards::Shard::clients_within`])
//!   and sends the line to the other cores too, each of which asks its own
//!   shard: a listener across a core border hears it.
//! - **Shout** reaches every player of the process: the speaker's core
//!   delivers it locally and sends it to every other core.
//! - **Whisper** finds the named character in the online registry and goes
//!   to its core only; the speaker gets a WhisperSent echo.
//!
//! Lines between cores travel as [`ChatLine`]s inside
//! [`crate::PeerMessage::Chat`]. Chat is bounded by the rate limit, never
//! per tick, so a line may allocate its strings.

use std::time::Instant;

use tos_protocol::wire::game::{ChatChannel, MAX_CHAT_LEN, RefusalReason};

/// How far Say carries, world units (20 m).
pub const SAY_RADIUS: f32 = 2_000.0;
/// Lines a session may send in a burst.
pub const BURST: f32 = 5.0;
/// Lines per second a session may send in the long run.
pub const RATE_PER_SEC: f32 = 0.5;

/// A session's chat token bucket: [`BURST`] lines at once, then one every
/// `1 / RATE_PER_SEC` seconds. It travels with the session on a hand-off,
/// so crossing a core border does not refill it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatLimiter {
    tokens: f32,
    last: Option<Instant>,
}

impl Default for ChatLimiter {
    fn default() -> Self {
        Self {
            tokens: BURST,
            last: None,
        }
    }
}

impl ChatLimiter {
    /// Takes `cost` tokens for a line at `now` (1 for a say or a whisper;
    /// a shout costs more); false when the bucket holds fewer (the line is
    /// refused with `ChatFlood`, and nothing is taken).
    pub fn allow(&mut self, now: Instant, cost: f32) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f32();
            self.tokens = (self.tokens + dt * RATE_PER_SEC).min(BURST);
        }
        self.last = Some(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Checks a line's text: not empty or blank (`ChatTooLong`, the reason
/// for any bad length), at most [`MAX_CHAT_LEN`] bytes (the decoder
/// already refuses longer ones), and no control characters (`Malformed`:
/// they would let a line fake others in a client's chat window).
pub fn check_text(text: &str) -> Result<(), RefusalReason> {
    if text.trim().is_empty() || text.len() > MAX_CHAT_LEN {
        return Err(RefusalReason::ChatTooLong);
    }
    if text.chars().any(char::is_control) {
        return Err(RefusalReason::Malformed);
    }
    Ok(())
}

/// Where a line is going, in a form that crosses cores.
#[derive(Debug, Clone, PartialEq)]
pub enum Audience {
    /// Players within [`SAY_RADIUS`] of this point.
    Near([f32; 3]),
    /// Every player.
    Everyone,
    /// One character (by id), wherever it is.
    Character(u64),
}

/// A chat line sent to another core.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatLine {
    /// The channel the listeners get it on.
    pub channel: ChatChannel,
    /// The speaker's character name.
    pub from: String,
    /// The text (checked by the speaker's core).
    pub text: String,
    /// Who hears it.
    pub audience: Audience,
    /// How many times a whisper was forwarded after its recipient moved
    /// on; past [`MAX_FORWARDS`] it is dropped.
    pub forwards: u8,
}

/// Forwards of a whisper chasing a recipient that keeps changing cores.
pub const MAX_FORWARDS: u8 = 2;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let t0 = Instant::now();
        let mut l = ChatLimiter::default();
        for i in 0..5 {
            assert!(l.allow(t0, 1.0), "line {i} of the burst");
        }
        assert!(!l.allow(t0, 1.0), "the sixth at once is a flood");
        // Half a token after one second: still refused.
        assert!(!l.allow(t0 + Duration::from_secs(1), 1.0));
        // One token after two seconds (counted from the last refusal's
        // refill, which kept what it added).
        assert!(l.allow(t0 + Duration::from_secs(2), 1.0));
        assert!(!l.allow(t0 + Duration::from_secs(2), 1.0));
        // A long silence refills up to the burst, not beyond.
        let later = t0 + Duration::from_secs(3_600);
        for _ in 0..5 {
            assert!(l.allow(later, 1.0));
        }
        assert!(!l.allow(later, 1.0));
        // A shout takes a whole burst, and is refused whole.
        let much_later = later + Duration::from_secs(3_600);
        assert!(l.allow(much_later, BURST));
        assert!(!l.allow(much_later, BURST));
        assert!(!l.allow(much_later, 1.0));
    }

    #[test]
    fn texts_are_checked() {
        assert_eq!(check_text("hello"), Ok(()));
        assert_eq!(check_text("héllo wörld ✓"), Ok(()));
        assert_eq!(check_text(""), Err(RefusalReason::ChatTooLong));
        assert_eq!(check_text("   "), Err(RefusalReason::ChatTooLong));
        assert_eq!(
            check_text(&"x".repeat(MAX_CHAT_LEN + 1)),
            Err(RefusalReason::ChatTooLong)
        );
        assert_eq!(check_text(&"x".repeat(MAX_CHAT_LEN)), Ok(()));
        assert_eq!(check_text("a\nb"), Err(RefusalReason::Malformed));
        assert_eq!(check_text("a\u{1b}[2J"), Err(RefusalReason::Malformed));
    }
}
