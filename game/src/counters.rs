//! Process-wide game counters: refusals by reason, logins, characters,
//! saves, messages between cores. Every counter only goes up; they are
//! bumped on requests and refusals (not per tick) and rendered for the
//! metrics endpoint as `tos_game_*`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tos_protocol::wire::game::RefusalReason;

/// Refusal reason codes are below this (the array must implement
/// `Default`, which arrays do up to 32 entries, hence two halves).
pub const REASONS: usize = 64;
const HALF: usize = REASONS / 2;

macro_rules! counters {
    ($( $(#[$m:meta])* $name:ident ),* $(,)?) => {
        /// Process-wide game counters.
        #[derive(Debug, Default)]
        pub struct GameCounters {
            /// Refusals sent, by `RefusalReason` code: codes below 32,
            /// then 32 and up.
            pub refusals: ([AtomicU64; HALF], [AtomicU64; HALF]),
            $( $(#[$m])* pub $name: AtomicU64, )*
        }

        impl GameCounters {
            /// Writes every counter in the Prometheus text format.
            pub fn render_prometheus(&self, out: &mut String) {
                for (code, c) in self.refusals.0.iter().chain(&self.refusals.1).enumerate() {
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
    /// Items picked up (Looted events added to an inventory).
    items_looted_total,
    /// Looted items that found no inventory room (a client reusing a
    /// pick-up's input sequence; 0 otherwise).
    items_lost_total,
    /// Consumables used.
    items_used_total,
    /// Drops of items on the ground.
    items_dropped_total,
    /// Equips and unequips.
    equipment_changes_total,
    /// Players' level-ups.
    level_ups_total,
    /// Players' deaths.
    deaths_total,
    /// Say and shout lines sent.
    chat_lines_total,
    /// Whispers sent.
    whispers_total,
    /// Shouts, and says near a node border, sent to the other nodes.
    chat_to_nodes_total,
    /// Whispers whose recipient had left by the time they arrived.
    chat_undelivered_total,
    /// Players held back at a node border (another node's quadrant, while
    /// NATS is down or when the other node did not take them).
    cluster_border_held_total,
    /// Enters whose saved position is another node's ground (sent there,
    /// or refused while NATS is down).
    cluster_wrong_node_total,
    /// Enters refused because the lease could not be taken (NATS down).
    cluster_unavailable_total,
    /// Cluster commands not queued (the cluster thread's queue was full).
    cluster_busy_total,
    /// Characters stopped here because another node took their lease.
    cluster_leases_lost_total,
    /// Players whose valid step onto another node's ground was offered to
    /// that node.
    zone_crossings_total,
    /// Of those, players the other node took: sent there (ZoneTransfer).
    zone_transfers_out_total,
    /// Of those, crossings the other node did not take (or NATS was down):
    /// the player stayed, corrected back.
    zone_crossings_kept_total,
    /// Players that arrived from another node and entered here.
    zone_transfers_in_total,
    /// Players handed to this node whose client never came (or whose
    /// connection failed first): saved where they crossed.
    zone_arrivals_unclaimed_total,
    /// Connects with a transfer ticket that named no arrival (unknown,
    /// used, expired or malformed).
    zone_tickets_rejected_total,
    /// Ghost batches published to other nodes (one per sending core, per
    /// neighbouring node, per tick).
    zone_ghost_batches_out_total,
    /// Ghost batches from other nodes passed to this node's cores.
    zone_ghost_batches_in_total,
    /// Ghost batches lost on the way: not sent (NATS down, a queue full)
    /// or not passed on (a core's reply channel full).
    zone_ghost_batches_dropped_total,
    /// Ghost batches from other nodes refused as malformed (or naming an
    /// unknown node, or this one).
    zone_ghost_batches_malformed_total,
    /// NPCs that walked onto another node's ground, offered to that node.
    zone_npcs_out_total,
    /// Of those, NPCs the other node did not take (or that could not be
    /// offered): back on this node's side.
    zone_npcs_kept_total,
    /// NPCs handed to this node by another and running here.
    zone_npcs_in_total,
    /// NPCs handed to this node that its shard could not run (the entity
    /// pool full): gone from the world, logged as an error.
    zone_npcs_lost_total,
    /// Skill effects on entities of other nodes, sent over the cluster.
    zone_effects_out_total,
    /// Skill effects from other nodes applied to an entity here.
    zone_effects_in_total,
    /// Skill effects for other nodes that could not be queued (the
    /// cluster queue full, NATS down), and effects from other nodes
    /// refused as malformed.
    zone_effects_dropped_total,
}

impl GameCounters {
    /// Counts a refusal.
    pub fn refused(&self, reason: RefusalReason) {
        if let Some(c) = self.refusal(reason) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn refusal(&self, reason: RefusalReason) -> Option<&AtomicU64> {
        let code = reason as usize;
        if code < HALF {
            self.refusals.0.get(code)
        } else {
            self.refusals.1.get(code - HALF)
        }
    }

    /// Refusals sent for `reason` so far.
    pub fn refusals_of(&self, reason: RefusalReason) -> u64 {
        self.refusal(reason)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Bumps a counter by one.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
