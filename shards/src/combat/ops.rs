//! Combat and loot inside the tick: skill requests and casts, hits and
//! heals (here or shipped to the core owning the target), deaths,
//! experience split by damage, level-ups, loot drops, pick-ups,
//! consumables and gear.
//!
//! This file is a child module of `shard` (declared there with `#[path]`)
//! so that it works on the shard's private state without widening it; the
//! pure parts are `combat::formula` and `crate::loot`. Every buffer used
//! per tick is allocated when the shard is built.

use super::*;
use crate::authority::{ActionRefusal, TargetRule};
use crate::combat::{
    CONTRIBUTORS, CarriedCombat, Cast, CombatFlags, ConsumableEffect, Fighter, Gear,
    MAX_CARRIED_MS, Progress, Progression, ShardEvent, Skill, StatBonus, Strike, formula,
};
use crate::loot::{self, ItemState, PickupCheck};
use tos_config::{LootTable, MAX_LOOT_ENTRIES, SkillKind};

/// Events kept until the game layer takes them; more are dropped (and
/// counted) rather than grown into.
pub(crate) const EVENT_CAPACITY: usize = 16_384;

/// A caster who moves farther than this from where the cast began is
/// interrupted, units.
const CAST_MOVE_TOLERANCE: f64 = 20.0;

/// Most entities one area skill hits.
const MAX_AREA_TARGETS: usize = 32;

/// Seconds an entity stays in combat after a hit.
const COMBAT_SECONDS: u32 = 5;

/// A skill request or pick-up, queued during the input pass and run after
/// it in arrival order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pending {
    Skill {
        client: ClientId,
        caster: u32,
        input_seq: u32,
        skill: u16,
        target: u32,
    },
    Pickup {
        client: ClientId,
        player: u32,
        input_seq: u32,
        item: u32,
    },
}

/// The shard's combat state besides the entity columns.
#[derive(Debug)]
pub(crate) struct CombatState {
    pub(crate) events: Vec<ShardEvent>,
    pub(crate) events_dropped: u64,
    pub(crate) pending: Vec<Pending>,
    /// Slots that died since deaths were last processed.
    pub(crate) died: Vec<u32>,
    due: Vec<u32>,
    area: Vec<u32>,
    pub(crate) progression: Progression,
    loot: Vec<LootTable>,
    /// What the last combat outcome told (amount, flags): read back by
    /// [`Shard::apply_node_effect`] for a caster on another node.
    pub(crate) told: Option<(f32, CombatFlags)>,
}

impl CombatState {
    pub(crate) fn new(data: &WorldData, capacity: &ShardCapacity) -> Self {
        let n = capacity.entities as usize;
        Self {
            events: Vec::with_capacity(EVENT_CAPACITY),
            events_dropped: 0,
            pending: Vec::with_capacity(capacity.clients as usize * 4),
            died: Vec::with_capacity(n),
            due: Vec::with_capacity(n),
            area: Vec::with_capacity(n),
            progression: data.progression.clone(),
            loot: data.loot.clone(),
            told: None,
        }
    }

    fn emit(&mut self, e: ShardEvent) {
        if self.events.len() < EVENT_CAPACITY {
            self.events.push(e);
        } else {
            self.events_dropped += 1;
        }
    }
}

fn actor(ents: &Entities, i: usize) -> Actor {
    Actor {
        position: ents.position[i],
        state: ents.state[i],
        buffs: ents.buffs[i].flags,
        faction: ents.faction[i],
        mp: ents.mp[i][0],
    }
}

impl Shard {
    /// The client controlling slot `i`, if it is a player.
    fn player_client(&self, i: usize) -> Option<ClientId> {
        if self.ents.kind[i] == EntityType::Player {
            self.ents.owner[i]
        } else {
            None
        }
    }

    /// Sets a new player's combat columns from its character.
    pub(super) fn enter_combat(&mut self, i: u32, c: &Character) {
        let iu = i as usize;
        self.ents.progress[iu] = Progress {
            level: c.level.clamp(1, self.combat.progression.max_level()),
            template: c.template,
            loot_table: 0,
            exp: c.exp,
        };
        self.ents.fighter[iu] = Fighter {
            base: c.stats,
            gear: Gear::default(),
            base_max: [self.ents.hp[iu][1], self.ents.mp[iu][1]],
            consumable_ready: 0,
        };
    }

    /// Runs the skill requests and pick-ups queued by the input pass.
    pub(super) fn run_pending(&mut self) {
        for k in 0..self.combat.pending.len() {
            let (client, input_seq, result) = match self.combat.pending[k] {
                Pending::Skill {
                    client,
                    caster,
                    input_seq,
                    skill,
                    target,
                } => (client, input_seq, self.request_skill(caster, skill, target)),
                Pending::Pickup {
                    client,
                    player,
                    input_seq,
                    item,
                } => (client, input_seq, self.pickup(client, player, item)),
            };
            if result.is_ok() {
                self.report.actions_done += 1;
            } else {
                self.report.actions_refused += 1;
                if let Some(cs) = self.clients.get_mut(&client) {
                    cs.counters.actions_refused += 1;
                }
            }
            self.action_results.push(ActionOutcome {
                client,
                input_seq,
                result: result_code(result),
            });
        }
        self.combat.pending.clear();
    }

    /// Checks and starts (or, for instant skills, resolves) a skill of the
    /// local entity in slot `caster`.
    pub(super) fn request_skill(
        &mut self,
        caster: u32,
        skill_id: u16,
        target_net: u32,
    ) -> Result<(), ActionRefusal> {
        let now = self.tick;
        let cu = caster as usize;
        let slot = self.skills.iter().position(|s| s.def.id == skill_id);
        let def = slot.map(|s| self.skills[s].def);
        let ents = &self.ents;
        if ents.state[cu].contains(EntityState::ALIVE)
            && !incapacitated(ents.state[cu], ents.buffs[cu].flags)
            && ents.cast[cu].active()
        {
            return Err(ActionRefusal::Casting);
        }
        let target_index = match def.map(|d| d.target) {
            Some(TargetRule::Caster) => Some(caster),
            Some(TargetRule::Friend) if target_net == 0 => Some(caster),
            _ if target_net == 0 => None,
            _ => ents.by_net_id(target_net),
        };
        if !self.crossings_open && target_index.is_some_and(|t| self.across_node(t as usize)) {
            // The effect could not be carried to the target's node.
            return Err(ActionRefusal::AcrossNodeBorder);
        }
        let ents = &self.ents;
        let caster_actor = actor(ents, cu);
        let target_actor = target_index.map(|t| actor(ents, t as usize));
        let ready = slot.map_or(0, |s| ents.cooldowns[cu][s]);
        check_action(
            def.as_ref(),
            ready,
            now,
            &caster_actor,
            target_actor.as_ref(),
            &self.factions,
        )?;
        let (Some(s), Some(def)) = (slot, def) else {
            return Err(ActionRefusal::UnknownAction);
        };
        let target = target_index.unwrap_or(caster);
        self.ents.mp[cu][0] = (self.ents.mp[cu][0] - def.mp_cost).max(0.0);
        self.ents.cooldowns[cu][s] = now.wrapping_add(self.skills[s].cooldown_ticks);
        self.ents.dirty[cu] = true;
        let ticks = formula::cast_ticks(def.cast_ms, self.ents.fighter[cu].base.wit, self.tick_hz);
        if ticks == 0 {
            self.resolve_skill(caster, s, target);
        } else {
            self.ents.cast[cu] = Cast {
                slot: s as u8,
                target: self.ents.net_id[target as usize],
                done: now.wrapping_add(ticks),
                from: self.ents.position[cu],
            };
            self.ents.state[cu].set(EntityState::CASTING, true);
            self.ents.anim[cu] = anim::CAST;
        }
        Ok(())
    }

    /// Uses skill `skill_id` for the local entity `caster_net` (an NPC's AI,
    /// or a test) on `target_net` (0: none), with the checks a player's
    /// request gets.
    pub fn cast_skill(
        &mut self,
        caster_net: u32,
        skill_id: u16,
        target_net: u32,
    ) -> Result<(), ActionRefusal> {
        self.scratch.entities_changed();
        let caster = self
            .ents
            .by_net_id(caster_net)
            .filter(|&i| self.ents.is_local(i))
            .ok_or(ActionRefusal::NotInWorld)?;
        let r = self.request_skill(caster, skill_id, target_net);
        self.process_deaths();
        r
    }

    /// The skill in table slot `s` takes effect.
    fn resolve_skill(&mut self, caster: u32, s: usize, target: u32) {
        let skill = self.skills[s];
        let cu = caster as usize;
        if skill.def.kind != SkillKind::Heal && skill.def.kind != SkillKind::Buff {
            self.ents.combat_until[cu] = self.tick.wrapping_add(COMBAT_SECONDS * self.tick_hz);
        }
        match skill.def.kind {
            SkillKind::Damage | SkillKind::Debuff => self.strike(caster, target, &skill),
            SkillKind::Area => {
                let centre = self.ents.position[target as usize];
                let mut area = core::mem::take(&mut self.combat.area);
                area.clear();
                self.aoi.query_fine(
                    centre,
                    f64::from(skill.def.radius),
                    &self.ents.position,
                    &mut area,
                );
                let mut hits = 0;
                for &e in &area {
                    let eu = e as usize;
                    let fighter = matches!(
                        self.ents.kind[eu],
                        EntityType::Player | EntityType::Npc | EntityType::Monster
                    );
                    if e == caster
                        || !self.ents.live[eu]
                        || !fighter
                        || !self.ents.state[eu].contains(EntityState::ALIVE)
                        || !self
                            .factions
                            .is_enemy(self.ents.faction[cu], self.ents.faction[eu])
                    {
                        continue;
                    }
                    self.strike(caster, e, &skill);
                    hits += 1;
                    if hits == MAX_AREA_TARGETS {
                        break;
                    }
                }
                self.combat.area = area;
            }
            SkillKind::Heal => self.heal(caster, target, &skill),
            SkillKind::Buff => {
                let tu = target as usize;
                if self.ents.ghost[tu] {
                    self.ship(caster, target, &skill, 0.0, None);
                } else if let Some(b) = skill.buff {
                    self.ents.buffs[tu].apply(b.buff, self.tick, b.duration_ticks, b.intensity);
                    self.ents.dirty[tu] = true;
                    let source = self.ents.net_id[cu];
                    self.tell(
                        self.player_client(cu),
                        tu,
                        source,
                        skill.def.id,
                        0.0,
                        CombatFlags::HIT,
                    );
                }
            }
        }
    }

    /// An effect on a ghost, shipped to the core that owns it; for a
    /// ghost of another node's entity, to that node's peer id (the game
    /// layer sends it over the cluster).
    fn ship(&mut self, caster: u32, target: u32, skill: &Skill, heal: f32, strike: Option<Strike>) {
        let (cu, tu) = (caster as usize, target as usize);
        let across = self.across_node(tu);
        if across && !self.crossings_open {
            // An area effect reached across a closed border: it cannot be
            // carried there.
            return;
        }
        self.remote_effects.push(RemoteEffect {
            to_core: self.ents.origin[tu],
            target: self.ents.net_id[tu],
            source: self.ents.net_id[cu],
            // Client ids are a node's own: the caster on another node is
            // credited with nothing there (as a dealer on another core
            // forfeits its share of the experience).
            source_client: if across { None } else { self.player_client(cu) },
            skill: skill.def.id,
            damage: 0.0,
            heal,
            buff: skill.buff,
            strike,
        });
    }

    /// A damage or debuff skill against one target.
    fn strike(&mut self, caster: u32, target: u32, skill: &Skill) {
        let cu = caster as usize;
        let f = self.ents.fighter[cu];
        let strike = Strike {
            power: skill.def.power,
            attack: formula::attack(
                &f.base,
                self.ents.progress[cu].level,
                &f.gear,
                skill.def.magic,
            ),
            dex: f.base.dex,
            magic: skill.def.magic,
        };
        if self.ents.ghost[target as usize] {
            self.ship(caster, target, skill, 0.0, Some(strike));
            return;
        }
        let source = self.ents.net_id[cu];
        let client = self.player_client(cu);
        self.land_strike(target, source, client, skill.def.id, &strike, skill.buff);
    }

    /// Rolls a strike against the local entity `t`: hit (DEX against
    /// DEX), critical, damage against its defence; on a hit the buff too.
    fn land_strike(
        &mut self,
        t: u32,
        source: u32,
        client: Option<ClientId>,
        skill: u16,
        strike: &Strike,
        buff: Option<crate::authority::BuffEffect>,
    ) {
        let tu = t as usize;
        if !self.ents.state[tu].contains(EntityState::ALIVE) {
            return;
        }
        // Attacked is in combat, hit or not.
        self.ents.combat_until[tu] = self.tick.wrapping_add(COMBAT_SECONDS * self.tick_hz);
        let tf = self.ents.fighter[tu];
        if !self
            .rng
            .chance(formula::hit_chance(strike.dex, tf.base.dex))
        {
            self.tell(client, tu, source, skill, 0.0, CombatFlags::MISS);
            return;
        }
        let crit = self.rng.chance(formula::crit_chance(strike.dex));
        let defence = formula::defence(
            &tf.base,
            self.ents.progress[tu].level,
            &tf.gear,
            strike.magic,
        );
        let amount = formula::damage(strike.power, strike.attack, defence, self.rng.unit(), crit);
        let mut flags = CombatFlags::HIT;
        flags.set(CombatFlags::CRIT, crit);
        self.hurt(t, source, client, skill, amount, flags, buff);
    }

    /// Takes `amount` HP from the local entity `t` (not if invulnerable),
    /// applies `buff`, credits the damage to `client`, kills at 0 HP.
    #[allow(clippy::too_many_arguments)]
    fn hurt(
        &mut self,
        t: u32,
        source: u32,
        client: Option<ClientId>,
        skill: u16,
        amount: f32,
        mut flags: CombatFlags,
        buff: Option<crate::authority::BuffEffect>,
    ) {
        let tu = t as usize;
        let now = self.tick;
        let ents = &mut self.ents;
        if !ents.state[tu].contains(EntityState::ALIVE) {
            return;
        }
        let invulnerable = ents.buffs[tu].flags.contains(BuffFlags::INVULNERABLE);
        ents.combat_until[tu] = now.wrapping_add(COMBAT_SECONDS * self.tick_hz);
        let dealt = if invulnerable {
            flags.set(CombatFlags::IMMUNE, true);
            0.0
        } else {
            let a = if amount.is_finite() {
                amount.max(0.0)
            } else {
                0.0
            };
            a.min(ents.hp[tu][0].max(0.0))
        };
        ents.hp[tu][0] -= dealt;
        if let Some(c) = client {
            ents.contributions[tu].add(c, dealt);
        }
        if let Some(b) = buff {
            if !(invulnerable && b.buff != Buff::Invisible && b.buff != Buff::Invulnerable) {
                ents.buffs[tu].apply(b.buff, now, b.duration_ticks, b.intensity);
            }
        }
        ents.dirty[tu] = true;
        if ents.hp[tu][0] <= 0.0 {
            Self::kill(
                ents,
                &mut self.report,
                &mut self.combat.died,
                tu,
                now,
                self.tick_hz,
            );
            flags.set(CombatFlags::KILL, true);
        }
        self.tell(client, tu, source, skill, dealt, flags);
    }

    /// A heal skill on one target.
    fn heal(&mut self, caster: u32, target: u32, skill: &Skill) {
        let cu = caster as usize;
        let f = self.ents.fighter[cu];
        let m_atk = formula::attack(&f.base, self.ents.progress[cu].level, &f.gear, true);
        let amount = formula::heal(skill.def.power, m_atk);
        if self.ents.ghost[target as usize] {
            self.ship(caster, target, skill, amount, None);
            return;
        }
        let source = self.ents.net_id[cu];
        let client = self.player_client(cu);
        self.give_hp(target as usize, source, client, skill.def.id, amount);
        if let Some(b) = skill.buff {
            let tu = target as usize;
            self.ents.buffs[tu].apply(b.buff, self.tick, b.duration_ticks, b.intensity);
        }
    }

    /// Gives `amount` HP (up to the maximum) to the living local entity
    /// in slot `tu`.
    fn give_hp(
        &mut self,
        tu: usize,
        source: u32,
        client: Option<ClientId>,
        skill: u16,
        amount: f32,
    ) {
        let ents = &mut self.ents;
        if !ents.state[tu].contains(EntityState::ALIVE) {
            return;
        }
        let before = ents.hp[tu][0];
        let a = if amount.is_finite() {
            amount.max(0.0)
        } else {
            0.0
        };
        ents.hp[tu][0] = (before + a).min(ents.hp[tu][1]).max(before);
        let healed = ents.hp[tu][0] - before;
        ents.dirty[tu] = true;
        self.tell(client, tu, source, skill, healed, CombatFlags::HEAL);
    }

    /// A `Combat` event for the caster's client and for the target's, if
    /// the target is a player.
    fn tell(
        &mut self,
        client: Option<ClientId>,
        tu: usize,
        source: u32,
        skill: u16,
        amount: f32,
        flags: CombatFlags,
    ) {
        self.combat.told = Some((amount, flags));
        let target = self.ents.net_id[tu];
        let target_client = self.player_client(tu);
        let event = |c: ClientId, combat: &mut CombatState| {
            combat.emit(ShardEvent::Combat {
                client: c,
                source,
                target,
                skill,
                amount,
                flags,
            })
        };
        if let Some(c) = client {
            event(c, &mut self.combat);
        }
        if let Some(c) = target_client.filter(|&c| Some(c) != client) {
            event(c, &mut self.combat);
        }
    }

    /// Applies an effect shipped from another core (the caster saw the
    /// target as a ghost). The hit is rolled here, against the target's
    /// own stats.
    pub(super) fn apply_remote(&mut self, t: u32, e: &RemoteEffect) {
        if let Some(strike) = &e.strike {
            self.land_strike(t, e.source, e.source_client, e.skill, strike, e.buff);
        } else if e.damage > 0.0 {
            self.hurt(
                t,
                e.source,
                e.source_client,
                e.skill,
                e.damage,
                CombatFlags::HIT,
                e.buff,
            );
        } else {
            let tu = t as usize;
            if e.heal > 0.0 {
                self.give_hp(tu, e.source, e.source_client, e.skill, e.heal);
            }
            if let Some(b) = e.buff {
                if self.ents.state[tu].contains(EntityState::ALIVE) {
                    self.ents.buffs[tu].apply(b.buff, self.tick, b.duration_ticks, b.intensity);
                    self.ents.dirty[tu] = true;
                }
            }
        }
    }

    /// Casts in progress: interrupted by moving, a stun or freeze (death
    /// clears them in `kill`); finished when due, if the target is still
    /// there, alive, of the right side and within reach.
    pub(super) fn run_casts(&mut self) {
        let now = self.tick;
        self.combat.due.clear();
        for k in 0..self.ents.dense.len() {
            let i = self.ents.dense[k];
            let iu = i as usize;
            if !self.ents.cast[iu].active() || self.ents.ghost[iu] {
                continue;
            }
            let c = self.ents.cast[iu];
            let moved = crate::util::dist2(c.from, self.ents.position[iu])
                > CAST_MOVE_TOLERANCE * CAST_MOVE_TOLERANCE;
            let stuck = incapacitated(self.ents.state[iu], self.ents.buffs[iu].flags);
            if moved || stuck || !self.ents.state[iu].contains(EntityState::ALIVE) {
                self.interrupt(i);
            } else if !tick_after(c.done, now) {
                self.combat.due.push(i);
            }
        }
        for k in 0..self.combat.due.len() {
            let i = self.combat.due[k];
            let iu = i as usize;
            let c = self.ents.cast[iu];
            let s = usize::from(c.slot);
            let Some(skill) = self.skills.get(s).copied() else {
                self.interrupt(i);
                continue;
            };
            let target = match skill.def.target {
                TargetRule::Caster => Some(i),
                _ => self.ents.by_net_id(c.target),
            };
            let ok = target.is_some_and(|t| {
                let tu = t as usize;
                let reach = f64::from(skill.def.range) + 50.0;
                let side = match skill.def.target {
                    TargetRule::Caster => true,
                    TargetRule::Enemy => self
                        .factions
                        .is_enemy(self.ents.faction[iu], self.ents.faction[tu]),
                    TargetRule::Friend => self
                        .factions
                        .is_friend(self.ents.faction[iu], self.ents.faction[tu]),
                };
                self.ents.state[tu].contains(EntityState::ALIVE)
                    && side
                    && crate::util::dist2(self.ents.position[iu], self.ents.position[tu])
                        <= reach * reach
            });
            match target {
                Some(t) if ok => {
                    self.end_cast(iu);
                    self.resolve_skill(i, s, t);
                }
                _ => self.interrupt(i),
            }
        }
    }

    fn end_cast(&mut self, iu: usize) {
        self.ents.cast[iu] = Cast::default();
        self.ents.state[iu].set(EntityState::CASTING, false);
        if self.ents.anim[iu] == anim::CAST {
            self.ents.anim[iu] = anim::IDLE;
        }
        self.ents.dirty[iu] = true;
    }

    /// Stops the cast of slot `i` and tells its client.
    fn interrupt(&mut self, i: u32) {
        let iu = i as usize;
        let c = self.ents.cast[iu];
        self.end_cast(iu);
        self.report.casts_interrupted += 1;
        if let Some(client) = self.player_client(iu) {
            let skill = self.skills.get(usize::from(c.slot)).map_or(0, |s| s.def.id);
            self.combat.emit(ShardEvent::Combat {
                client,
                source: self.ents.net_id[iu],
                target: c.target,
                skill,
                amount: 0.0,
                flags: CombatFlags::INTERRUPTED,
            });
        }
    }

    /// Players out of combat regain HP and MP at their template's rates
    /// (class growth in `levels.ron`), up to the maxima. `elapsed` ticks
    /// passed since the last tick.
    pub(super) fn regenerate(&mut self, elapsed: u32) {
        let now = self.tick;
        let dt = elapsed as f32 / self.tick_hz as f32;
        for k in 0..self.client_order.len() {
            let Some(cs) = self.clients.get_mut(&self.client_order[k]) else {
                continue;
            };
            let Some(pi) = player_slot(&self.ents, cs) else {
                continue;
            };
            let pu = pi as usize;
            let e = &mut self.ents;
            if !e.state[pu].contains(EntityState::ALIVE) || tick_after(e.combat_until[pu], now) {
                continue;
            }
            let (hp, mp) = (e.hp[pu], e.mp[pu]);
            if hp[0] >= hp[1] && mp[0] >= mp[1] {
                continue;
            }
            let p = e.progress[pu];
            let rate = self.combat.progression.regen(p.template, p.level);
            e.hp[pu][0] = (hp[0] + rate[0] * dt).min(hp[1]).max(hp[0]);
            e.mp[pu][0] = (mp[0] + rate[1] * dt).min(mp[1]).max(mp[0]);
            e.dirty[pu] = true;
        }
    }

    /// Deaths since the last call: a player's is told; an NPC's gives
    /// experience to its damage dealers and drops its loot.
    pub(super) fn process_deaths(&mut self) {
        for k in 0..self.combat.died.len() {
            let i = self.combat.died[k];
            let iu = i as usize;
            if !self.ents.live[iu] || self.ents.ghost[iu] {
                continue;
            }
            match self.ents.kind[iu] {
                EntityType::Player => {
                    if let Some(client) = self.ents.owner[iu] {
                        self.combat.emit(ShardEvent::Died { client });
                    }
                }
                EntityType::Npc | EntityType::Monster => {
                    self.grant_kill_exp(iu);
                    self.drop_loot(iu);
                }
                _ => {}
            }
            self.ents.contributions[iu].clear();
        }
        self.combat.died.clear();
    }

    /// Splits the experience an NPC is worth among its damage dealers.
    fn grant_kill_exp(&mut self, iu: usize) {
        let total = formula::kill_exp(self.ents.progress[iu].level);
        let c = self.ents.contributions[iu];
        let mut shares = [0u64; CONTRIBUTORS];
        formula::split_exp(total, &c.damage, &mut shares);
        for (who, share) in c.who.into_iter().zip(shares) {
            if let (Some(client), true) = (who, share > 0) {
                self.give_exp(client, share);
            }
        }
    }

    /// Experience for a client's player, if it is on this shard (a dealer
    /// who has crossed to another core since forfeits its share); levels
    /// up from the level table.
    pub(super) fn give_exp(&mut self, client: ClientId, amount: u64) {
        let Some(cs) = self.clients.get_mut(&client) else {
            return;
        };
        let Some(pi) = player_slot(&self.ents, cs) else {
            return;
        };
        let pu = pi as usize;
        let p = &mut self.ents.progress[pu];
        p.exp = p.exp.saturating_add(amount);
        let (total, template, old) = (p.exp, p.template, p.level);
        self.combat.emit(ShardEvent::Experience {
            client,
            gained: amount,
            total,
        });
        let level = self.combat.progression.level_for(total);
        if level > old {
            self.ents.progress[pu].level = level;
            if let Some(m) = self.combat.progression.maxima(template, level) {
                self.ents.fighter[pu].base_max = m;
            }
            self.refresh_maxima(pu);
            if self.ents.state[pu].contains(EntityState::ALIVE) {
                self.ents.hp[pu][0] = self.ents.hp[pu][1];
                self.ents.mp[pu][0] = self.ents.mp[pu][1];
            }
            self.report.level_ups += 1;
            self.combat.emit(ShardEvent::LevelUp { client, level });
        }
    }

    /// HP and MP maxima from the base maxima and gear; current values
    /// clamped.
    fn refresh_maxima(&mut self, iu: usize) {
        let f = self.ents.fighter[iu];
        let hp_max = (f.base_max[0] + f.gear.hp_max).max(1.0);
        let mp_max = (f.base_max[1] + f.gear.mp_max).max(0.0);
        let e = &mut self.ents;
        e.hp[iu] = [e.hp[iu][0].min(hp_max), hp_max];
        e.mp[iu] = [e.mp[iu][0].clamp(0.0, mp_max), mp_max];
        e.dirty[iu] = true;
    }

    /// Rolls the loot table of the dead NPC in slot `iu` and spawns the
    /// drops around the body, owned by the top damage dealer.
    fn drop_loot(&mut self, iu: usize) {
        let id = self.ents.progress[iu].loot_table;
        if id == 0 {
            return;
        }
        let mut drops = [(0u16, 0u16); MAX_LOOT_ENTRIES];
        let n = match self.combat.loot.iter().find(|t| t.id == id) {
            Some(table) => loot::roll(table, &mut self.rng, &mut drops),
            None => return,
        };
        let owner = self.ents.contributions[iu].top();
        let body = self.ents.position[iu];
        let now = self.tick;
        let owner_until =
            now.wrapping_add(formula::ms_to_ticks(loot::OWNER_WINDOW_MS, self.tick_hz));
        for &(item, count) in &drops[..n] {
            let angle = self.rng.range(0.0, core::f32::consts::TAU);
            let r = self.rng.range(loot::SCATTER / 4.0, loot::SCATTER);
            let mut p = [
                body[0] + r * angle.cos(),
                body[1] + r * angle.sin(),
                body[2],
            ];
            // On ground this core owns and not through a wall, or on the
            // body itself: the drop must be local and reachable.
            if !self.world.owns(p) || self.terrain.obstacles.segment_blocked(body, p) {
                p = body;
            }
            let mut params = SpawnParams::new(EntityType::Item, Faction::NEUTRAL, p);
            params.hp = 1.0;
            params.mp = 0.0;
            params.lifetime_ticks = formula::ms_to_ticks(loot::LIFETIME_MS, self.tick_hz);
            if let Ok(e) = self.spawn(params) {
                self.ents.item[e.index as usize] = ItemState {
                    template: item,
                    count,
                    owner,
                    owner_until,
                };
                self.report.items_dropped += 1;
            }
        }
    }

    /// Puts `count` of item template `item` on the ground at `position`
    /// (a drop from an inventory, a GM command, tests): an Item entity
    /// like a loot drop, which only `owner` (if any) may pick up during
    /// the owner window, and which vanishes after the loot lifetime.
    /// Returns its network id.
    pub fn spawn_item(
        &mut self,
        position: [f32; 3],
        item: u16,
        count: u16,
        owner: Option<ClientId>,
    ) -> Result<u32, ShardError> {
        if item == 0 || count == 0 {
            return Err(ShardError::BadData(
                "an item needs a template id and a count",
            ));
        }
        let owner_core = self.world.owner_at(position);
        if owner_core != self.core {
            return Err(ShardError::WrongShard { owner: owner_core });
        }
        let mut params = SpawnParams::new(EntityType::Item, Faction::NEUTRAL, position);
        params.hp = 1.0;
        params.mp = 0.0;
        params.lifetime_ticks = formula::ms_to_ticks(loot::LIFETIME_MS, self.tick_hz);
        let e = self.spawn(params)?;
        let iu = e.index as usize;
        self.ents.item[iu] = ItemState {
            template: item,
            count,
            owner,
            owner_until: self
                .tick
                .wrapping_add(formula::ms_to_ticks(loot::OWNER_WINDOW_MS, self.tick_hz)),
        };
        Ok(self.ents.net_id[iu])
    }

    /// A pick-up of the item `item_net` by `client`'s player in slot
    /// `player`: checked, then despawned and `Looted` in the same step.
    fn pickup(
        &mut self,
        client: ClientId,
        player: u32,
        item_net: u32,
    ) -> Result<(), ActionRefusal> {
        let i = self
            .ents
            .by_net_id(item_net)
            .filter(|&i| self.ents.kind[i as usize] == EntityType::Item)
            .ok_or(ActionRefusal::NoSuchItem)?;
        let (iu, pu) = (i as usize, player as usize);
        let state = self.ents.item[iu];
        loot::check_pickup(&PickupCheck {
            alive: self.ents.state[pu].contains(EntityState::ALIVE),
            player: self.ents.position[pu],
            item: self.ents.position[iu],
            state,
            ghost: self.ents.ghost[iu],
            client,
            now: self.tick,
        })?;
        self.scratch.entities_changed();
        self.free_slot(i);
        self.report.items_looted += 1;
        self.combat.emit(ShardEvent::Looted {
            client,
            item: state.template,
            count: state.count,
        });
        Ok(())
    }

    /// Queues a pick-up of the item entity `item_net_id` for the next tick
    /// (reserve inventory space first); the outcome comes in
    /// [`Shard::action_results`] with `input_seq`, and on success a
    /// [`ShardEvent::Looted`].
    pub fn push_pickup(
        &mut self,
        client: ClientId,
        input_seq: u32,
        item_net_id: u32,
    ) -> Result<(), ShardError> {
        self.push_input(
            client,
            Input::Pickup {
                input_seq,
                item: item_net_id,
            },
        )
    }

    /// A player's buffs and cooldowns as time left (for a move to another
    /// node); `None` when the client has no player here.
    pub fn carried_combat(&self, client: ClientId) -> Option<CarriedCombat> {
        let i = self
            .ents
            .by_net_id(self.player_of(client)?)
            .filter(|&i| self.ents.is_local(i))? as usize;
        let now = self.tick;
        let hz = self.tick_hz.max(1);
        let left = |until: u32| -> u32 {
            if tick_after(until, now) {
                let ms = u64::from(until.wrapping_sub(now)) * 1000 / u64::from(hz);
                ms.min(u64::from(MAX_CARRIED_MS)) as u32
            } else {
                0
            }
        };
        let set = &self.ents.buffs[i];
        let buffs = Buff::ALL
            .into_iter()
            .filter(|b| set.flags.contains(b.flag()))
            .map(|b| (b, left(set.until[b as usize]), set.intensity[b as usize]))
            .filter(|&(_, ms, _)| ms > 0)
            .collect();
        let cooldowns = self
            .skills
            .iter()
            .zip(self.ents.cooldowns[i])
            .map(|(skill, ready)| (skill.def.id, left(ready)))
            .filter(|&(_, ms)| ms > 0)
            .collect();
        Some(CarriedCombat {
            buffs,
            cooldowns,
            consumable_ms: left(self.ents.fighter[i].consumable_ready),
        })
    }

    /// Puts carried buffs and cooldowns on a player that just entered
    /// here (times over [`MAX_CARRIED_MS`] are cut to it; skills this
    /// node does not know are ignored).
    pub fn restore_combat(
        &mut self,
        client: ClientId,
        carried: &CarriedCombat,
    ) -> Result<(), ShardError> {
        let net = self
            .player_of(client)
            .ok_or(ShardError::UnknownClient(client))?;
        let i = self
            .ents
            .by_net_id(net)
            .filter(|&i| self.ents.is_local(i))
            .ok_or(ShardError::UnknownEntity(net))? as usize;
        self.scratch.entities_changed();
        let now = self.tick;
        let ticks = |ms: u32| formula::ms_to_ticks(ms.min(MAX_CARRIED_MS), self.tick_hz);
        for &(buff, ms, intensity) in &carried.buffs {
            if ms > 0 {
                self.ents.buffs[i].apply(buff, now, ticks(ms), intensity);
            }
        }
        for &(id, ms) in &carried.cooldowns {
            if let Some(slot) = self.skills.iter().position(|s| s.def.id == id) {
                self.ents.cooldowns[i][slot] = now.wrapping_add(ticks(ms));
            }
        }
        if carried.consumable_ms > 0 {
            self.ents.fighter[i].consumable_ready = now.wrapping_add(ticks(carried.consumable_ms));
        }
        self.ents.dirty[i] = true;
        Ok(())
    }

    /// Uses a consumable now (the game layer has taken it from the
    /// inventory): restores HP and MP up to the maxima, then blocks
    /// consumables for the effect's cooldown. Refusals are counted.
    pub fn use_consumable(
        &mut self,
        client: ClientId,
        effect: ConsumableEffect,
    ) -> Result<(), ActionRefusal> {
        let now = self.tick;
        let Some(cs) = self.clients.get_mut(&client) else {
            return Err(ActionRefusal::NotInWorld);
        };
        let Some(pi) = player_slot(&self.ents, cs) else {
            cs.counters.actions_refused += 1;
            return Err(ActionRefusal::NotInWorld);
        };
        let pu = pi as usize;
        let valid = |v: f64| v.is_finite() && v >= 0.0;
        let result = if !(valid(effect.hp) && valid(effect.mp)) {
            Err(ActionRefusal::BadItem)
        } else if !self.ents.state[pu].contains(EntityState::ALIVE) {
            Err(ActionRefusal::Dead)
        } else if tick_after(self.ents.fighter[pu].consumable_ready, now) {
            Err(ActionRefusal::OnCooldown)
        } else {
            Ok(())
        };
        if result.is_err() {
            cs.counters.actions_refused += 1;
            return result;
        }
        self.scratch.entities_changed();
        let e = &mut self.ents;
        e.fighter[pu].consumable_ready =
            now.wrapping_add(formula::ms_to_ticks(effect.cooldown_ms, self.tick_hz));
        e.mp[pu][0] = (e.mp[pu][0] + effect.mp as f32).min(e.mp[pu][1]);
        let net = e.net_id[pu];
        self.give_hp(pu, net, Some(client), 0, effect.hp as f32);
        Ok(())
    }

    /// Sets the equipment bonuses of a client's player (the sum over what
    /// it wears); HP and MP maxima follow, current values are clamped.
    pub fn set_gear(&mut self, client: ClientId, bonus: StatBonus) -> Result<(), ShardError> {
        let gear =
            Gear::from_bonus(&bonus).ok_or(ShardError::BadData("gear bonuses must be finite"))?;
        let cs = self
            .clients
            .get_mut(&client)
            .ok_or(ShardError::UnknownClient(client))?;
        let pi = player_slot(&self.ents, cs).ok_or(ShardError::UnknownClient(client))?;
        self.scratch.entities_changed();
        self.ents.fighter[pi as usize].gear = gear;
        self.refresh_maxima(pi as usize);
        Ok(())
    }

    /// Replaces `out` with the clients of this shard whose players stand
    /// within `radius` of `position` (for "say" chat). Players of other
    /// cores are not included.
    pub fn clients_within(&self, position: [f32; 3], radius: f32, out: &mut Vec<ClientId>) {
        out.clear();
        if radius.is_nan() || radius < 0.0 {
            return;
        }
        let r2 = f64::from(radius) * f64::from(radius);
        for &c in &self.client_order {
            let Some(cs) = self.clients.get(&c) else {
                continue;
            };
            let Some(i) = self.ents.by_net_id(cs.player_net_id) else {
                continue;
            };
            if self.ents.is_local(i)
                && crate::util::dist2(position, self.ents.position[i as usize]) <= r2
            {
                out.push(c);
            }
        }
    }

    /// The events since they were last taken (take them after every tick:
    /// past [`EVENT_CAPACITY`] new ones are dropped and counted in
    /// [`Shard::events_dropped`]).
    pub fn take_events(&mut self) -> std::vec::Drain<'_, ShardEvent> {
        self.combat.events.drain(..)
    }

    /// Events dropped because nobody took them.
    pub fn events_dropped(&self) -> u64 {
        self.combat.events_dropped
    }

    /// Gives a client's player experience (an admin grant, quests, tests);
    /// levels up as kills do.
    pub fn grant_experience(&mut self, client: ClientId, amount: u64) -> Result<(), ShardError> {
        if !self.clients.contains_key(&client) {
            return Err(ShardError::UnknownClient(client));
        }
        self.scratch.entities_changed();
        self.give_exp(client, amount);
        Ok(())
    }
}
