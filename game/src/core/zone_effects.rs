//! Skill effects across node borders, for [`GameCore`]: a skill aimed at
//! another node's ghost goes to that node as a `RemoteEffect` (at most
//! once, nobody answers) and is rolled there by the core running the
//! target; effects from other nodes are applied here the same way.

use super::*;

use tos_shards::RemoteEffect;

use crate::cluster::{ClusterCommand, ClusterOp};

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
    /// core (every core of the node gets it).
    pub(super) fn effect_from_node(&mut self, effect: RemoteEffect) {
        if self.shard.apply_remote_effect(effect).is_ok() {
            bump(&self.services.counters.zone_effects_in_total);
        }
    }
}
