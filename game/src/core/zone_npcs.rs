//! NPCs crossing node borders, for [`GameCore`]: each NPC the shard
//! reports on another node's ground is offered to that node under a
//! transit lease, and either forgotten (taken) or put back on this side
//! (not taken); NPCs another node hands over start running here.
//!
//! ```text
//! sender core                          cluster (NATS)              receiver node
//! shard: NPC steps across the line
//!   -> NodeDeparture (out of the
//!      simulation, a ghost here)
//! HandOffNpc{record} ----------------> transit lease, offer ------> decode, check ground
//!                                                                   take the lease (CAS)
//!                                      <-------------------------- ack; NpcArrived to the
//!                                                                   core of its ground: runs
//! Delivered: forgotten
//! Kept: back where it stood, the border a wall for it a few seconds
//! ```
//!
//! An NPC carries no player data, so nothing is saved: while its outcome
//! is unknown it exists once, as the core's `NodeDeparture`.

use super::*;

use tos_shards::{CarriedNpc, NodeDeparture};

use crate::cluster::{ClusterOp, CrossingOutcome};

impl GameCore {
    /// After the shard's tick: every NPC that walked onto another node's
    /// ground is offered to that node.
    pub(super) fn npc_zone_tick(&mut self) {
        let departures: Vec<NodeDeparture> = self.shard.take_npc_departures().collect();
        for d in departures {
            self.offer_npc(d);
        }
    }

    fn offer_npc(&mut self, departure: NodeDeparture) {
        bump(&self.services.counters.zone_npcs_out_total);
        let to = usize::from(departure.to_node);
        let known = self
            .cluster
            .as_ref()
            .is_some_and(|c| to < c.view.nodes.len() && to != c.view.me);
        if !known {
            return self.npc_kept(departure, "no such node");
        }
        let op = ClusterOp::HandOffNpc {
            to,
            payload: departure.npc.encode(),
        };
        // The departure waits in `pending` for its outcome; a refused
        // submission gives it straight back.
        let pending = Pending::NpcCrossing {
            departure: Box::new(departure),
        };
        match self.submit_cluster(op, pending) {
            Ok(()) => self.zone.npcs_in_flight += 1,
            Err(Pending::NpcCrossing { departure }) => {
                self.npc_kept(*departure, "the cluster queue is full")
            }
            Err(_) => {}
        }
    }

    /// The outcome of an NPC's hand-off.
    pub(super) fn on_npc_crossing(&mut self, departure: NodeDeparture, outcome: CrossingOutcome) {
        self.zone.npcs_in_flight = self.zone.npcs_in_flight.saturating_sub(1);
        match outcome {
            // Superseded cannot happen to a transit lease nobody else
            // knows; if it did, another node runs the NPC: forget it too.
            CrossingOutcome::Delivered | CrossingOutcome::Superseded => {
                tracing::debug!(
                    net_id = departure.npc.net_id,
                    to = departure.to_node,
                    "NPC handed to another node"
                );
            }
            CrossingOutcome::Kept(why) => self.npc_kept(departure, &why),
        }
    }

    /// An NPC that stays: back on this side.
    fn npc_kept(&mut self, departure: NodeDeparture, why: &str) {
        bump(&self.services.counters.zone_npcs_kept_total);
        let net_id = departure.npc.net_id;
        tracing::debug!(net_id, why, "an NPC's crossing was not taken; it stays");
        if let Err(e) = self.shard.keep_npc(departure) {
            bump(&self.services.counters.zone_npcs_lost_total);
            tracing::error!(net_id, error = %e, "an NPC could not be put back and is gone");
        }
    }

    /// Another node handed an NPC to this one (the cluster thread checked
    /// its ground before taking it).
    pub(super) fn npc_arrived(&mut self, npc: CarriedNpc) {
        let net_id = npc.net_id;
        match self.shard.accept_npc(npc) {
            Ok(_) => bump(&self.services.counters.zone_npcs_in_total),
            Err(e) => {
                bump(&self.services.counters.zone_npcs_lost_total);
                tracing::error!(net_id, error = %e, "an NPC handed to this node could not run and is gone");
            }
        }
    }
}
