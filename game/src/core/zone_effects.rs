//! Skill effects across node borders, for [`GameCore`]: a skill aimed at
//! another node's ghost goes to that node as a `RemoteEffect` (at most
//! once, nobody answers) and is rolled there by the core running the
//! target; effects from other nodes are applied here the same way, and
//! what they did goes back to the caster's node for its player's
//! `CombatEvent`.

use super::*;

use tos_shards::RemoteEffect;

use crate::cluster::{ClusterCommand, ClusterOp, CombatOutcome};

impl GameCore {
    /// A skill's effect on another node's entity: sent there (nobody
    /// answers; the caster sees the outcome in the target's next
    /// snapshots).
    pub(super) fn effect_to_node(&mut self, to: usize, effect: RemoteEffect) {
        let sent = self.cluster.as_ref().is_some_and(|c| {
            c.view.send(ClusterCommand {
                request: 0,
                core: self.core,
                op: ClusterOp::Effect { to, effect },
            })
        });
        let counter = if sent {
            &self.services.counters.zone_effects_out_total
        } else {
            &self.services.counters.zone_effects_dropped_total
        };
        bump(counter);
    }

    /// Another node's skill effect: applied if the target runs on this
    /// core (every core of the node gets it), and what it did sent back to
    /// the caster's node `from`.
    pub(super) fn effect_from_node(&mut self, effect: RemoteEffect, from: Option<usize>) {
        let Ok(told) = self.shard.apply_node_effect(effect) else {
            return;
        };
        bump(&self.services.counters.zone_effects_in_total);
        let (Some((amount, flags)), Some(to), Some(cluster)) = (told, from, self.cluster.as_ref())
        else {
            return;
        };
        let outcome = CombatOutcome {
            source: effect.source,
            target: effect.target,
            skill: effect.skill,
            amount,
            flags: flags.bits() & tos_protocol::wire::game::combat_flags::ALL,
        };
        // At most once, like the effect: a lost outcome costs the caster
        // one floating number, not any state.
        let _ = cluster.view.send(ClusterCommand {
            request: 0,
            core: self.core,
            op: ClusterOp::CombatEcho { to, outcome },
        });
    }

    /// What this node's skill did on another node: its caster's player,
    /// if it plays on this core, gets the `CombatEvent`.
    pub(super) fn combat_from_node(&mut self, outcome: CombatOutcome) {
        let client = self
            .shard
            .entity(outcome.source)
            .filter(|e| !e.ghost)
            .and_then(|e| e.record.owner);
        let Some(handle) = client.and_then(|c| self.handle_of(c)) else {
            return;
        };
        let msg = ServerMessage::CombatEvent {
            source: outcome.source,
            target: outcome.target,
            skill: outcome.skill,
            amount: outcome.amount,
            flags: outcome.flags,
        };
        self.reliable(handle, &msg);
    }
}
