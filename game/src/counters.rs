//! Process-wide game counters: refusals by reason, logins, characters,
//! saves, messages between cores. Every counter only goes up; they are
//! bumped on requests and refusals (not per tick) and rendered for the
//! metrics endpoint as `tos_game_*`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tos_protocol::wire::game::RefusalReason;

/// Refusal reason codes are below this.
pub const REASONS: usize = 32;

macro_rules! counters {
    ($( $(#[$m:meta])* $name:ident ),* $(,)?) => {
        /// Process-wide game counters.
        #[derive(Debug, Default)]
        pub struct GameCounters {
            /// Refusals sent, by `RefusalReason` code.
            pub refusals: [AtomicU64; REASONS],
            $( $(#[$m])* pub $name: AtomicU64, )*
        }

        impl GameCounters {
            /// Writes every counter in the Prometheus text format.
            pub fn render_prometheus(&self, out: &mut String) {
                for (code, c) in self.refusals.iter().enumerate() {
                    let v = c.load(Ordering::Relaxed);
                    if v == 0 {
                        continue;
                    }
                    // The variant's name: a stable label (the text is for people).
                    let reason = u8::try_from(code)
                        .ok()
                        .and_then(|c| RefusalReason::from_u8(c).ok())
                        .map_or_else(|| format!("code{code}"), |r| format!("{r:?}"));
                    let _ = writeln!(out, "tos_game_refusals_total{{reason=\"{reason}\"}} {v}");
                }
                $(
                    let _ = writeln!(
                        out,
                        concat!("tos_game_", stringify!($name), " {}"),
                        self.$name.load(Ordering::Relaxed)
                    );
                )*
            }
        }
    };
}

counters! {
    /// Client messages that did not decode.
    malformed_total,
    /// Accounts registered.
    registrations_total,
    /// Logins by password that succeeded.
    logins_total,
    /// Logins or registrations refused (bad credentials, rate limits, ...).
    logins_failed_total,
    /// Connections whose ticket checked out.
    tickets_accepted_total,
    /// Connections refused for their ticket.
    tickets_rejected_total,
    /// Characters created.
    characters_created_total,
    /// Characters deleted (soft).
    characters_deleted_total,
    /// Characters restored.
    characters_restored_total,
    /// Characters that entered the world.
    enters_total,
    /// Characters that left the world (logout or disconnect).
    leaves_total,
    /// Character states handed to the store.
    saves_queued_total,
    /// Saves the store's queue could not take at once (retried next interval).
    saves_deferred_total,
    /// Messages to another core handed back because its inbox was full.
    peer_bounced_total,
    /// Ghosts and effects dropped because a core's inbox was full.
    peer_dropped_total,
    /// Messages the transport would not take (queue full, closed).
    send_failed_total,
    /// Requests the store or the auth pool could not take (queue full).
    service_busy_total,
    /// Inputs the shard refused (input queue full, stale target, ...).
    shard_refused_total,
}

impl GameCounters {
    /// Counts a refusal.
    pub fn refused(&self, reason: RefusalReason) {
        if let Some(c) = self.refusals.get(reason as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refusals sent for `reason` so far.
    pub fn refusals_of(&self, reason: RefusalReason) -> u64 {
        self.refusals
            .get(reason as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Bumps a counter by one.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
