//! The NPC state machine.
//!
//! ```text
//!            enemy in aggro range and sight (aggressive), or hurt
//!  Idle/Roam ───────────────────────────────────────────────► Chase ⇄ Attack
//!     ▲                                                         │  │  (a skill in range)
//!     │ home: full HP/MP          target lost, or leash_range   │  │ HP < flee_below
//!   Return ◄────────────────────────────────────────────────────┘  ▼
//!     ▲                                                          Flee
//!     └──────────────────────── flee time over ───────────────────┘
//!  any ── HP 0 ──► Dead ── respawn_secs ──► Idle at home
//! ```
//!
//! Idle NPCs wander around home (a random point within the wander radius
//! every 1–5 s) or walk their patrol route. The [`Brain`] is plain data in
//! the entity record; its target is a network id, which means the same
//! on every core, so a chase survives a hand-off.

use tos_config::AiKind;

use crate::authority::{TargetRule, speed_factor};
use crate::entity::Entities;

use crate::util::{Rng, tick_after};

use super::perception::{attackable, in_sight, nearest_enemy};
use super::steering::{Mover, Steer, move_to, stand};
use super::{AiRuntime, NpcProfile, THINK_EVERY};

/// What an NPC is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum AiState {
    /// Standing (at home, or waiting to wander on).
    #[default]
    Idle = 0,
    /// Wandering or patrolling.
    Roam = 1,
    /// Going for its target.
    Chase = 2,
    /// In range of its target, using skills.
    Attack = 3,
    /// Walking home, ignoring everyone; healed on arrival.
    Return = 4,
    /// Running from its target.
    Flee = 5,
    /// Dead, waiting to respawn.
    Dead = 6,
}

/// The AI state of one NPC (in the entity record: hand-offs carry it).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Brain {
    /// The state.
    pub state: AiState,
    /// Whether it moves when idle (a wander radius and a speed, or a
    /// patrol route).
    pub wander: bool,
    /// Where it lives: it wanders around it, leashes back and respawns
    /// there.
    pub home: [f32; 3],
    /// How far from home it wanders.
    pub radius: f32,
    /// Where it is walking while roaming.
    pub goal: [f32; 3],
    /// Roam: when it next picks a goal; Flee: when it stops fleeing.
    pub next_decision: u32,
    /// The network id of its target (0: none).
    pub target: u32,
    /// Patrol route index + 1 (0: none).
    pub patrol: u16,
    /// The patrol point it walks to.
    pub leg: u16,
    /// Back-and-forth routes: walking the points backwards.
    pub reverse: bool,
    /// HP when it last ran: less now means someone hurt it.
    pub last_hp: f32,
    /// Until this tick another node's ground is a wall for it (it just
    /// came from there, or that node did not take it): an NPC at a node
    /// border does not bounce between the nodes.
    pub border_hold: u32,
}

/// The shard state one AI step uses.
pub(crate) struct AiCtx<'a, 'n> {
    pub(crate) rt: &'a mut AiRuntime,
    pub(crate) mover: Mover<'a, 'n>,
    pub(crate) rng: &'a mut Rng,
    pub(crate) factions: &'a crate::entity::FactionTable,
    pub(crate) skills: &'a [crate::combat::Skill],
    pub(crate) now: u32,
    pub(crate) tick_hz: u32,
}

/// Runs one tick of the AI of live local NPC slot `i` (`stuck`: stunned
/// or frozen).
pub(crate) fn step(ents: &mut Entities, cx: &mut AiCtx<'_, '_>, i: u32, stuck: bool) {
    let iu = i as usize;
    let mut b = ents.ai[iu];
    let profile = cx.rt.profile(ents.template[iu]).copied();
    let now = cx.now;
    let think = now.wrapping_add(i) % THINK_EVERY == 0;
    let hp = ents.hp[iu][0];
    let hurt = hp < b.last_hp - 1e-3;
    b.last_hp = hp;
    let speed = ents.speed[iu] * speed_factor(&ents.buffs[iu]);
    if b.state == AiState::Dead {
        b.state = AiState::Idle;
    }
    if matches!(b.state, AiState::Idle | AiState::Roam) {
        if let Some(p) = profile.filter(NpcProfile::fights) {
            let obstacles = &cx.mover.nav.terrain().obstacles;
            let players = &cx.rt.players;
            let mut target = None;
            if think && p.ai == AiKind::Aggressive && p.aggro_range > 0.0 {
                target = nearest_enemy(
                    players,
                    ents,
                    cx.factions,
                    obstacles,
                    iu,
                    p.aggro_range,
                    true,
                );
            }
            if target.is_none() && hurt {
                // Whoever hurt it is an enemy nearby (the shard does not
                // track attackers; the nearest enemy is the best guess).
                let r = p.leash_range.max(p.aggro_range);
                target = nearest_enemy(players, ents, cx.factions, obstacles, iu, r, false);
            }
            if let Some(t) = target {
                b.state = AiState::Chase;
                b.target = ents.net_id[t as usize];
                cx.rt.stats.aggros += 1;
            }
        }
    }
    match b.state {
        AiState::Idle | AiState::Roam | AiState::Dead => roam(ents, cx, i, &mut b, speed, stuck),
        AiState::Chase | AiState::Attack => match profile {
            Some(p) => chase(ents, cx, i, &mut b, &p, speed, stuck),
            None => give_up(cx, &mut b),
        },
        AiState::Return => {
            let home = [b.home[0], b.home[1]];
            match move_to(ents, cx.rt, &mut cx.mover, i, home, speed, stuck) {
                Steer::Arrived => arrive_home(ents, &mut b, iu, now),
                Steer::Unreachable => {
                    // No way home: put it there (an "evade"), healed.
                    let np = cx
                        .mover
                        .world
                        .clamp(cx.mover.nav.on_ground(home[0], home[1]));
                    ents.position[iu] = np;
                    cx.mover.aoi.update(i, np);
                    stand(ents, iu);
                    cx.rt.paths[iu].reset();
                    arrive_home(ents, &mut b, iu, now);
                }
                Steer::Moving | Steer::Waiting => {}
            }
        }
        AiState::Flee => flee(ents, cx, i, &mut b, speed, stuck),
    }
    ents.ai[iu] = b;
}

fn arrive_home(ents: &mut Entities, b: &mut Brain, iu: usize, now: u32) {
    ents.hp[iu][0] = ents.hp[iu][1];
    ents.mp[iu][0] = ents.mp[iu][1];
    ents.dirty[iu] = true;
    b.last_hp = ents.hp[iu][1];
    b.state = AiState::Idle;
    b.target = 0;
    b.next_decision = now;
}

fn give_up(cx: &mut AiCtx<'_, '_>, b: &mut Brain) {
    b.state = AiState::Return;
    b.target = 0;
    cx.rt.stats.leashes += 1;
}

fn roam(
    ents: &mut Entities,
    cx: &mut AiCtx<'_, '_>,
    i: u32,
    b: &mut Brain,
    speed: f32,
    stuck: bool,
) {
    let iu = i as usize;
    let now = cx.now;
    // A route index from another core's data that this core lacks, or an
    // empty route, is no route.
    let route = usize::from(b.patrol)
        .checked_sub(1)
        .and_then(|r| cx.rt.book.routes.get(r))
        .filter(|r| !r.points.is_empty())
        .map(|r| (r.points.len() as u16, r.looped));
    if let Some((n, looped)) = route {
        let points = &cx.rt.book.routes[usize::from(b.patrol - 1)].points;
        let dest = points[usize::from(b.leg.min(n - 1))];
        match move_to(ents, cx.rt, &mut cx.mover, i, dest, speed, stuck) {
            Steer::Arrived | Steer::Unreachable => {
                advance_leg(b, n, looped);
                b.state = AiState::Roam;
            }
            Steer::Moving => b.state = AiState::Roam,
            Steer::Waiting => {}
        }
        return;
    }
    if !b.wander {
        stand(ents, iu);
        b.state = AiState::Idle;
        return;
    }
    if !tick_after(b.next_decision, now) {
        let angle = cx.rng.range(0.0, core::f32::consts::TAU);
        let r = b.radius * cx.rng.unit().sqrt();
        b.goal = cx.mover.world.clamp([
            b.home[0] + r * angle.cos(),
            b.home[1] + r * angle.sin(),
            b.home[2],
        ]);
        b.next_decision = now.wrapping_add(60 + cx.rng.below(240));
    }
    match move_to(
        ents,
        cx.rt,
        &mut cx.mover,
        i,
        [b.goal[0], b.goal[1]],
        speed,
        stuck,
    ) {
        Steer::Moving => b.state = AiState::Roam,
        Steer::Arrived | Steer::Waiting => b.state = AiState::Idle,
        Steer::Unreachable => {
            // Pick another goal now.
            b.goal = ents.position[iu];
            b.next_decision = now;
            b.state = AiState::Idle;
        }
    }
}

fn advance_leg(b: &mut Brain, n: u16, looped: bool) {
    if looped {
        b.leg = (b.leg + 1) % n;
    } else if b.reverse {
        if b.leg == 0 {
            b.reverse = false;
            b.leg = 1.min(n - 1);
        } else {
            b.leg -= 1;
        }
    } else if b.leg + 1 >= n {
        b.reverse = true;
        b.leg = n.saturating_sub(2);
    } else {
        b.leg += 1;
    }
}

fn chase(
    ents: &mut Entities,
    cx: &mut AiCtx<'_, '_>,
    i: u32,
    b: &mut Brain,
    p: &NpcProfile,
    speed: f32,
    stuck: bool,
) {
    let iu = i as usize;
    let now = cx.now;
    let target = ents
        .by_net_id(b.target)
        .filter(|&t| attackable(ents, cx.factions, ents.faction[iu], t as usize));
    let Some(t) = target else {
        return give_up(cx, b);
    };
    let tu = t as usize;
    let pos = ents.position[iu];
    let home_d = ((pos[0] - b.home[0]).powi(2) + (pos[1] - b.home[1]).powi(2)).sqrt();
    if home_d > p.leash_range {
        return give_up(cx, b);
    }
    if p.flee_below > 0.0 && ents.hp[iu][0] < p.flee_below * ents.hp[iu][1] {
        b.state = AiState::Flee;
        b.next_decision = now.wrapping_add(4 * cx.tick_hz);
        cx.rt.stats.flights += 1;
        return;
    }
    ents.combat_until[iu] = now.wrapping_add(5 * cx.tick_hz);
    let tp = ents.position[tu];
    let d = crate::util::dist2(pos, tp).sqrt() as f32;
    // The first enemy skill in range, and whether one is ready.
    let mut in_range = false;
    let mut ready = None;
    for &skill in p.skills() {
        // The cooldown column is indexed by the shard's skill table slot,
        // as for players: the same skill cools down the same way.
        let Some(slot) = cx.skills.iter().position(|s| s.def.id == skill) else {
            continue;
        };
        let def = &cx.skills[slot].def;
        if def.target != TargetRule::Enemy || d > def.range {
            continue;
        }
        in_range = true;
        if ready.is_none()
            && !tick_after(ents.cooldowns[iu][slot], now)
            && ents.mp[iu][0] >= def.mp_cost
        {
            ready = Some(def.id);
        }
    }
    // Sight is checked when it matters: to start attacking, and for each
    // attack (an NPC already attacking waits out its cooldowns in place).
    let waiting = b.state == AiState::Attack && ready.is_none();
    let sight = in_range && (waiting || in_sight(&cx.mover.nav.terrain().obstacles, pos, tp));
    if in_range && sight {
        b.state = AiState::Attack;
        stand(ents, iu);
        if let (Some(skill), false) = (ready, stuck) {
            // Face the target as it strikes.
            ents.rotation[iu][1] = (tp[1] - pos[1]).atan2(tp[0] - pos[0]).to_degrees();
            ents.dirty[iu] = true;
            // The shard casts it after the AI pass, through the same
            // checks, formulas, cooldowns and mana costs as a player's
            // request (`Shard::cast_skill`); the list is preallocated.
            if cx.rt.casts.len() < cx.rt.casts.capacity() {
                cx.rt.casts.push((i, skill, ents.net_id[tu]));
                cx.rt.stats.attacks += 1;
            }
        }
        return;
    }
    b.state = AiState::Chase;
    if move_to(ents, cx.rt, &mut cx.mover, i, [tp[0], tp[1]], speed, stuck) == Steer::Unreachable {
        give_up(cx, b);
    }
}

fn flee(
    ents: &mut Entities,
    cx: &mut AiCtx<'_, '_>,
    i: u32,
    b: &mut Brain,
    speed: f32,
    stuck: bool,
) {
    let iu = i as usize;
    if !tick_after(b.next_decision, cx.now) {
        b.state = AiState::Return;
        b.target = 0;
        return;
    }
    let Some(t) = ents.by_net_id(b.target) else {
        b.state = AiState::Return;
        b.target = 0;
        return;
    };
    let (p, tp) = (ents.position[iu], ents.position[t as usize]);
    let (dx, dy) = (p[0] - tp[0], p[1] - tp[1]);
    let d = (dx * dx + dy * dy).sqrt().max(1e-3);
    let dest = [p[0] + dx / d * 600.0, p[1] + dy / d * 600.0];
    if move_to(ents, cx.rt, &mut cx.mover, i, dest, speed, stuck) == Steer::Unreachable {
        b.state = AiState::Return;
        b.target = 0;
    }
}

/// Slot `i` died: it waits for its template's respawn time.
pub(crate) fn on_dead(ents: &mut Entities, rt: &mut AiRuntime, i: u32, now: u32, tick_hz: u32) {
    let iu = i as usize;
    if ents.ai[iu].state == AiState::Dead {
        return;
    }
    ents.ai[iu].state = AiState::Dead;
    ents.ai[iu].target = 0;
    if let Some(p) = rt.profile(ents.template[iu]) {
        let ticks = (p.respawn_secs * tick_hz as f32).ceil() as u32;
        ents.respawn[iu] = now.wrapping_add(ticks.max(1)).max(1);
    }
    rt.paths[iu].reset();
}

/// Slot `i` came back to life (full HP set by the caller): at home, idle.
pub(crate) fn on_respawn(
    ents: &mut Entities,
    rt: &mut AiRuntime,
    aoi: &mut crate::aoi::AoiGrid,
    i: u32,
    now: u32,
) {
    let iu = i as usize;
    let b = &mut ents.ai[iu];
    b.state = AiState::Idle;
    b.target = 0;
    b.leg = 0;
    b.reverse = false;
    b.next_decision = now;
    b.goal = b.home;
    b.last_hp = ents.hp[iu][1];
    let home = b.home;
    ents.position[iu] = home;
    ents.velocity[iu] = [0.0; 3];
    aoi.update(i, home);
    rt.paths[iu].reset();
}
