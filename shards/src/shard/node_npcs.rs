//! NPCs across node borders: the ones that walked onto another node's
//! ground leave the simulation as [`NodeDeparture`]s, those the other
//! node did not take come back ([`Shard::keep_npc`]), and those another
//! node hands over start running here ([`Shard::accept_npc`]).

use crate::border::{CarriedNpc, NodeDeparture, carry_tick, land_tick};
use crate::combat::{CONTRIBUTORS, Contributions};
use crate::entity::{EntityRecord, EntityType};
use crate::handoff::node_peer;
use crate::util::tick_after;
use crate::{ClientId, ShardError};

use super::Shard;

/// Seconds another node's ground stays a wall for an NPC that just came
/// from there, or that the other node did not take: a border is not
/// crossed back and forth every tick.
pub const NPC_BORDER_HOLD_SECS: u32 = 3;

impl Shard {
    /// NPCs that walked onto another node's ground in the last tick, out
    /// of the simulation: hand each to its node, and give back with
    /// [`Shard::keep_npc`] the ones it does not take.
    pub fn take_npc_departures(&mut self) -> std::vec::Drain<'_, NodeDeparture> {
        self.npc_departures.drain(..)
    }

    /// Whether local slot `i` is an NPC standing on another node's ground
    /// that may leave now: the node it is on, if so.
    pub(super) fn departing_to(&self, i: usize) -> Option<u16> {
        if self.foreign.is_empty()
            || !self.crossings_open
            || self.ents.owner[i].is_some()
            || !matches!(self.ents.kind[i], EntityType::Npc | EntityType::Monster)
            || tick_after(self.ents.ai[i].border_hold, self.tick)
        {
            return None;
        }
        let p = self.ents.position[i];
        let qi = self.world.quadrant_index(self.world.quadrant_of(p));
        self.foreign_nodes.get(qi).copied().flatten()
    }

    /// Takes local slot `i` out of the simulation for node `node`: it
    /// stays in place as a ghost of that node (its viewers here see no
    /// gap; that node's ghost batches take it over).
    pub(super) fn depart(&mut self, i: u32, node: u16) {
        let iu = i as usize;
        let Some(origin) = node_peer(self.world.cores(), node) else {
            return;
        };
        let now = self.tick;
        let r = self.ents.record(i);
        let p = r.position;
        let dt = 1.0 / self.tick_hz as f32;
        let back = self.world.on_ground(
            &self.terrain.heightfield,
            [p[0] - r.velocity[0] * dt, p[1] - r.velocity[1] * dt, p[2]],
        );
        let back = if !self.is_foreign(back) {
            back
        } else if !self.is_foreign(r.ai.home) {
            r.ai.home
        } else {
            p
        };
        let mut buffs = r.buffs;
        for t in &mut buffs.until {
            *t = carry_tick(*t, now);
        }
        let mut ai = r.ai;
        ai.next_decision = carry_tick(ai.next_decision, now);
        ai.border_hold = 0;
        let mut fighter = r.fighter;
        fighter.consumable_ready = carry_tick(fighter.consumable_ready, now);
        let mut cast = r.cast;
        cast.done = carry_tick(cast.done, now);
        let dealers = r
            .contributions
            .who
            .iter()
            .zip(r.contributions.damage)
            .filter_map(|(who, damage)| {
                let c = self.clients.get(&(*who)?)?;
                Some((c.character_id, damage))
            })
            .collect();
        let npc = CarriedNpc {
            net_id: r.net_id,
            kind: r.kind,
            faction: r.faction,
            position: r.position,
            velocity: r.velocity,
            rotation: r.rotation,
            anim: r.anim,
            state: r.state,
            buffs,
            hp: r.hp,
            mp: r.mp,
            speed: r.speed,
            cooldowns: r.cooldowns.map(|t| carry_tick(t, now)),
            template: r.template,
            ai,
            expires: carry_tick(r.expires, now),
            respawn: carry_tick(r.respawn, now),
            combat_until: carry_tick(r.combat_until, now),
            progress: r.progress,
            fighter,
            cast,
            dealers,
        };
        self.ents.set_ghost(i, true, origin, now);
        self.ents.contributions[iu] = Contributions::default();
        self.npc_departures.push(NodeDeparture {
            to_node: node,
            npc,
            back,
        });
        self.report.npcs_to_nodes += 1;
    }

    /// An NPC another node did not take: it runs here again, where it
    /// stood before it stepped across, and the border is a wall for it for
    /// [`NPC_BORDER_HOLD_SECS`]. Returns its network id.
    pub fn keep_npc(&mut self, departure: NodeDeparture) -> Result<u32, ShardError> {
        let NodeDeparture { mut npc, back, .. } = departure;
        npc.position = back;
        npc.velocity = [0.0; 3];
        self.run_npc(npc)
    }

    /// An NPC handed over by another node: it runs here from now on, and
    /// the border is a wall for it for [`NPC_BORDER_HOLD_SECS`]. Refused
    /// when it is not on this node's ground, when a local entity has its
    /// id, or when the pool is full (the caller checks the ground before
    /// taking it, so only a full pool can refuse a taken NPC). Returns its
    /// network id.
    pub fn accept_npc(&mut self, npc: CarriedNpc) -> Result<u32, ShardError> {
        let p = self.world.clamp(npc.position);
        if self.is_foreign(p) {
            return Err(ShardError::BadData(
                "an NPC record for another node's ground",
            ));
        }
        self.run_npc(CarriedNpc { position: p, ..npc })
    }

    fn run_npc(&mut self, npc: CarriedNpc) -> Result<u32, ShardError> {
        self.scratch.entities_changed();
        let now = self.tick;
        let net = npc.net_id;
        let i = match self.ents.by_net_id(net) {
            Some(i) if self.ents.ghost[i as usize] => {
                self.ents.set_ghost(i, false, self.core, now);
                if self.ents.kind[i as usize] != npc.kind {
                    self.aoi.remove(i);
                    self.aoi.insert(i, npc.kind, npc.position);
                }
                i
            }
            Some(_) => return Err(ShardError::DuplicateEntity(net)),
            None => {
                let i = self.ents.alloc(net, false, self.core, now)?;
                self.aoi.insert(i, npc.kind, npc.position);
                i
            }
        };
        let mut contributions = Contributions::default();
        for (k, &(character, damage)) in npc.dealers.iter().take(CONTRIBUTORS).enumerate() {
            // A dealer not playing on this node is left out of the split.
            let who = self
                .clients
                .iter()
                .find(|(_, c)| c.character_id == character)
                .map(|(&id, _): (&ClientId, _)| id);
            if who.is_some() {
                contributions.who[k] = who;
                contributions.damage[k] = damage;
            }
        }
        let mut buffs = npc.buffs;
        for t in &mut buffs.until {
            *t = land_tick(*t, now);
        }
        let mut ai = npc.ai;
        ai.next_decision = land_tick(ai.next_decision, now);
        ai.border_hold = now.wrapping_add(NPC_BORDER_HOLD_SECS * self.tick_hz);
        let mut fighter = npc.fighter;
        fighter.consumable_ready = land_tick(fighter.consumable_ready, now);
        let mut cast = npc.cast;
        cast.done = land_tick(cast.done, now);
        let record = EntityRecord {
            net_id: net,
            kind: npc.kind,
            faction: npc.faction,
            owner: None,
            position: npc.position,
            velocity: npc.velocity,
            rotation: npc.rotation,
            anim: npc.anim,
            state: npc.state,
            buffs,
            hp: npc.hp,
            mp: npc.mp,
            speed: npc.speed,
            last_input_seq: 0,
            cooldowns: npc.cooldowns.map(|t| land_tick(t, now)),
            template: npc.template,
            ai,
            expires: land_tick(npc.expires, now),
            respawn: land_tick(npc.respawn, now),
            combat_until: land_tick(npc.combat_until, now),
            progress: npc.progress,
            fighter,
            cast,
            contributions,
            item: Default::default(),
        };
        self.ents.write_record(i, &record);
        self.aoi.update(i, record.position);
        Ok(net)
    }
}
