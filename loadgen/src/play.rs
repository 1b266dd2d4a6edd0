//! How a loadgen player plays: it hunts the nearest monster in view, casts
//! the skills the game data gives every character (longest reach first,
//! within cooldown and mana), heals itself or drinks a potion when hurt,
//! picks up the loot it sees, wears the equipment it finds and chats now
//! and then — and counts what came of it ([`GameplayCounts`]).
//!
//! The player's movement stays in `player.rs`; this module only says where
//! to walk and when to stand still (casting is interrupted by moving).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tos_client::{Session, SessionEvent};
use tos_config::GameData;
use tos_config::{ItemKind, SkillKind, SkillTarget, SkillTemplate};
use tos_protocol::quant::Quantizer;
use tos_protocol::wire::game::{ChatChannel, EquipSlot, combat_flags};

/// Entity type bytes (PROTOCOL.md §6.2).
const TYPE_MONSTER: u8 = 2;
const TYPE_ITEM: u8 = 6;
/// EntityState bit: alive.
const ALIVE: u8 = 0x01;

/// How often a player looks for a target or loot.
const THINK_EVERY: Duration = Duration::from_millis(250);
/// Farthest a target or an item is considered, units (40 m).
const HUNT_RADIUS: f32 = 4_000.0;
/// Close enough to pick up (the server allows a little more).
const PICKUP_RANGE: f32 = 150.0;
/// A target chased this long without a kill is given up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(25);
/// Below this HP fraction a player heals or drinks.
const HURT: f32 = 0.45;

/// What the game data offers every character, sorted for the bots.
#[derive(Debug)]
pub(crate) struct Kit {
    /// Damage skills on an enemy: (id, range, cooldown, mana, cast time),
    /// longest reach first.
    attacks: Vec<Skill>,
    /// A heal that may target the caster.
    heal: Option<Skill>,
    /// Consumables that restore HP.
    potions: Vec<u16>,
    /// Wearable items and where they go.
    gear: Vec<(u16, EquipSlot)>,
}

#[derive(Debug, Clone, Copy)]
struct Skill {
    id: u16,
    range: f32,
    cooldown: Duration,
    mp: f32,
    cast: Duration,
}

impl Kit {
    /// The kit of `data` (loadgen plays with the server's built-in data).
    pub(crate) fn new(data: &GameData) -> Self {
        let skill = |s: &SkillTemplate| Skill {
            id: s.id,
            range: s.range as f32,
            cooldown: Duration::from_millis(u64::from(s.cooldown_ms)),
            mp: s.mp_cost as f32,
            cast: Duration::from_millis(u64::from(s.cast_ms)),
        };
        let mut attacks: Vec<Skill> = data
            .combat
            .skills
            .iter()
            .filter(|s| {
                s.kind == SkillKind::Damage && s.target == SkillTarget::Enemy && s.power > 0.0
            })
            .map(skill)
            .collect();
        attacks.sort_by(|a, b| b.range.total_cmp(&a.range));
        let heal = data
            .combat
            .skills
            .iter()
            .find(|s| s.kind == SkillKind::Heal && s.target != SkillTarget::Enemy)
            .map(skill);
        let potions = data
            .combat
            .items
            .iter()
            .filter(|i| i.consumable.is_some_and(|c| c.hp > 0.0))
            .map(|i| i.id)
            .collect();
        let gear = data
            .combat
            .items
            .iter()
            .filter(|i| matches!(i.kind, ItemKind::Weapon | ItemKind::Armor))
            .filter_map(|i| Some((i.id, i.slot?.wire())))
            .collect();
        Self {
            attacks,
            heal,
            potions,
            gear,
        }
    }
}

/// What a player's gameplay came to, summed over players.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GameplayCounts {
    /// Monsters and players this player's blows killed.
    pub(crate) kills: u64,
    /// Times this player's character died.
    pub(crate) deaths: u64,
    /// Items picked up.
    pub(crate) items_looted: u64,
    /// Level-ups.
    pub(crate) level_ups: u64,
    /// Chat lines sent.
    pub(crate) chat_messages: u64,
    /// Chat lines received.
    pub(crate) chat_received: u64,
    /// Skills asked for, and of those refused by the server.
    pub(crate) skills_used: u64,
    pub(crate) skills_refused: u64,
    /// Hits and misses this player dealt.
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    /// Potions drunk and items worn.
    pub(crate) potions_used: u64,
    pub(crate) items_equipped: u64,
    /// Pick-ups the server refused (too far, someone else's, gone).
    pub(crate) pickups_refused: u64,
    /// Players that entered with a level above 1, and with items: what an
    /// earlier run gained and the store kept.
    pub(crate) entered_above_level_1: u64,
    pub(crate) entered_with_items: u64,
    /// The highest level seen.
    pub(crate) max_level: u64,
}

impl GameplayCounts {
    /// Adds `o` (the highest level is a maximum).
    pub(crate) fn merge(&mut self, o: &Self) {
        self.kills += o.kills;
        self.deaths += o.deaths;
        self.items_looted += o.items_looted;
        self.level_ups += o.level_ups;
        self.chat_messages += o.chat_messages;
        self.chat_received += o.chat_received;
        self.skills_used += o.skills_used;
        self.skills_refused += o.skills_refused;
        self.hits += o.hits;
        self.misses += o.misses;
        self.potions_used += o.potions_used;
        self.items_equipped += o.items_equipped;
        self.pickups_refused += o.pickups_refused;
        self.entered_above_level_1 += o.entered_above_level_1;
        self.entered_with_items += o.entered_with_items;
        self.max_level = self.max_level.max(o.max_level);
    }
}

/// What the player should do with its feet this input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Feet {
    /// Whatever it was doing (wander).
    Free,
    /// Walk towards this point.
    To([f32; 3]),
    /// Stand still (in range, or casting).
    Stand,
}

/// One player's gameplay state.
#[derive(Debug)]
pub(crate) struct Play {
    kit: Arc<Kit>,
    quantizer: Option<Quantizer>,
    me: u32,
    name: String,
    alive: bool,
    hp: f32,
    mp_max: f32,
    mp: f32,
    level: u16,
    stats_seen: bool,
    inventory_seen: bool,
    target: Option<(u32, Instant)>,
    loot: Option<u32>,
    pickup_seq: Option<u32>,
    skill_seqs: [u32; 4],
    ready: Vec<Instant>,
    heal_ready: Instant,
    potion_ready: Instant,
    still_until: Instant,
    next_think: Instant,
    next_chat: Instant,
    /// Items that refused a pick-up lately (not tried again).
    refused_items: [u32; 4],
    /// Entities that are not this player's enemies (a refused attack).
    friends: [u32; 8],
    counts: GameplayCounts,
}

impl Play {
    pub(crate) fn new(kit: Arc<Kit>, name: String, now: Instant, chat_offset: Duration) -> Self {
        let n = kit.attacks.len();
        Self {
            kit,
            quantizer: None,
            me: 0,
            name,
            alive: true,
            hp: 1.0,
            mp_max: 0.0,
            mp: 1.0,
            level: 0,
            stats_seen: false,
            inventory_seen: false,
            target: None,
            loot: None,
            pickup_seq: None,
            skill_seqs: [0; 4],
            ready: vec![now; n],
            heal_ready: now,
            potion_ready: now,
            still_until: now,
            next_think: now,
            next_chat: now + Duration::from_secs(10) + chat_offset,
            refused_items: [0; 4],
            friends: [0; 8],
            counts: GameplayCounts::default(),
        }
    }

    /// What this player's gameplay came to so far.
    pub(crate) fn counts(&self) -> &GameplayCounts {
        &self.counts
    }

    /// Takes the session events that matter to play (the caller handles
    /// the rest too).
    pub(crate) fn on_event(&mut self, e: &SessionEvent, session: &Session) {
        match *e {
            SessionEvent::EnteredWorld(en) => {
                self.me = en.entity_id;
                self.quantizer = en.world.quantizer().ok();
                self.alive = true;
            }
            SessionEvent::Snapshot { .. } => {
                if let Some((_, q)) = session.receiver().state(self.me) {
                    let alive = q.status.state & ALIVE != 0;
                    if self.alive && !alive {
                        self.counts.deaths += 1;
                        self.target = None;
                        self.loot = None;
                    }
                    self.alive = alive;
                    self.hp = f32::from(q.status.hp) / 255.0;
                    self.mp = f32::from(q.status.mp) / 255.0;
                }
            }
            SessionEvent::Combat {
                source,
                target,
                flags,
                ..
            } if source == self.me && target != self.me => {
                if flags & combat_flags::MISS != 0 {
                    self.counts.misses += 1;
                } else if flags & combat_flags::HIT != 0 {
                    self.counts.hits += 1;
                }
                if flags & combat_flags::KILL != 0 {
                    self.counts.kills += 1;
                    if self.target.is_some_and(|(t, _)| t == target) {
                        self.target = None;
                    }
                }
            }
            SessionEvent::StatsChanged {
                level, leveled_up, ..
            } => {
                if let Some(s) = session.character_stats() {
                    self.mp_max = s.mp_max;
                }
                if !self.stats_seen {
                    self.stats_seen = true;
                    if level > 1 {
                        self.counts.entered_above_level_1 += 1;
                    }
                }
                if leveled_up {
                    self.counts.level_ups += 1;
                }
                self.level = level;
                self.counts.max_level = self.counts.max_level.max(u64::from(level));
            }
            SessionEvent::InventoryChanged { items } if !self.inventory_seen => {
                self.inventory_seen = true;
                if items > 0 {
                    self.counts.entered_with_items += 1;
                }
            }
            SessionEvent::ActionResult { input_seq, result } => {
                if self.pickup_seq == Some(input_seq) {
                    self.pickup_seq = None;
                    if result == 0 {
                        self.counts.items_looted += 1;
                    } else {
                        self.counts.pickups_refused += 1;
                        if let Some(item) = self.loot.take() {
                            self.refused_items.rotate_right(1);
                            self.refused_items[0] = item;
                        }
                    }
                    self.loot = None;
                } else if self.skill_seqs.contains(&input_seq) && result != 0 {
                    self.counts.skills_refused += 1;
                    // Not an enemy (a friend of this faction), or out of
                    // reach: pick another.
                    if let Some((t, _)) = self.target.take() {
                        self.friends.rotate_right(1);
                        self.friends[0] = t;
                    }
                }
            }
            SessionEvent::Chat { .. } => self.counts.chat_received += 1,
            _ => {}
        }
    }

    /// Decides this input: where to walk, and which requests to send.
    pub(crate) fn decide(
        &mut self,
        now: Instant,
        me: [f32; 3],
        session: &mut Session,
        rand: u64,
    ) -> Feet {
        if !self.alive || self.me == 0 {
            return Feet::Stand;
        }
        self.chat(now, session, rand);
        self.wear(session);
        if now < self.still_until {
            return Feet::Stand;
        }
        if self.hp < HURT && self.heal_or_drink(now, session) {
            return Feet::Stand;
        }
        if now >= self.next_think {
            self.next_think = now + THINK_EVERY;
            self.look(now, me, session);
        }
        if let Some(item) = self.loot {
            let Some(at) = self.position_of(session, item) else {
                self.loot = None;
                return Feet::Free;
            };
            if dist2(me, at) <= PICKUP_RANGE * PICKUP_RANGE {
                if self.pickup_seq.is_none() {
                    if let Ok(seq) = session.send_pickup(item) {
                        self.pickup_seq = Some(seq);
                    }
                }
                return Feet::Stand;
            }
            return Feet::To(at);
        }
        let Some((target, since)) = self.target else {
            return Feet::Free;
        };
        let Some(at) = self.position_of(session, target) else {
            self.target = None;
            return Feet::Free;
        };
        if now.duration_since(since) > GIVE_UP_AFTER {
            self.target = None;
            return Feet::Free;
        }
        let d = dist2(me, at).sqrt();
        let mp_now = self.mp * self.mp_max;
        let mut nearest_reach = f32::INFINITY;
        for (k, s) in self.kit.attacks.iter().enumerate() {
            nearest_reach = nearest_reach.min(s.range);
            if d > s.range * 0.9 || now < self.ready[k] || s.mp > mp_now {
                continue;
            }
            if let Ok(seq) = session.send_action(s.id, target) {
                self.counts.skills_used += 1;
                self.skill_seqs.rotate_right(1);
                self.skill_seqs[0] = seq;
                self.ready[k] = now + s.cooldown;
                self.still_until = now + s.cast + Duration::from_millis(50);
            }
            return Feet::Stand;
        }
        if d <= nearest_reach * 0.8 {
            Feet::Stand
        } else {
            Feet::To(at)
        }
    }

    /// Finds loot to pick up and, failing that, the nearest monster.
    fn look(&mut self, now: Instant, me: [f32; 3], session: &Session) {
        let Some(q) = &self.quantizer else {
            return;
        };
        let mut best_item: Option<(f32, u32)> = None;
        let mut best_foe: Option<(f32, u32)> = None;
        for (id, kind, state) in session.receiver().visible() {
            if id == self.me || (kind != TYPE_ITEM && kind != TYPE_MONSTER) {
                continue;
            }
            let Ok(p) = q.dequantize_position(state.position) else {
                continue;
            };
            let d = dist2(me, p);
            if d > HUNT_RADIUS * HUNT_RADIUS {
                continue;
            }
            if kind == TYPE_ITEM {
                if !self.refused_items.contains(&id) && best_item.is_none_or(|(b, _)| d < b) {
                    best_item = Some((d, id));
                }
            } else if state.status.state & ALIVE != 0
                && !self.friends.contains(&id)
                && best_foe.is_none_or(|(b, _)| d < b)
            {
                best_foe = Some((d, id));
            }
        }
        if self.loot.is_none() && self.pickup_seq.is_none() {
            self.loot = best_item.map(|(_, id)| id);
        }
        match (self.target, best_foe) {
            (None, Some((_, id))) => self.target = Some((id, now)),
            (Some((t, _)), _) if self.position_of(session, t).is_none() => {
                self.target = best_foe.map(|(_, id)| (id, now));
            }
            _ => {}
        }
    }

    fn heal_or_drink(&mut self, now: Instant, session: &mut Session) -> bool {
        if now >= self.potion_ready {
            let slot = self
                .kit
                .potions
                .iter()
                .find_map(|&p| session.inventory().slot_of(p));
            if let Some(slot) = slot {
                if session.send_use_item(slot).is_ok() {
                    self.counts.potions_used += 1;
                    self.potion_ready = now + Duration::from_secs(10);
                    return false;
                }
            }
        }
        if let Some(h) = self.kit.heal {
            if now >= self.heal_ready && h.mp <= self.mp * self.mp_max {
                if let Ok(seq) = session.send_action(h.id, 0) {
                    self.counts.skills_used += 1;
                    self.skill_seqs.rotate_right(1);
                    self.skill_seqs[0] = seq;
                    self.heal_ready = now + h.cooldown;
                    self.still_until = now + h.cast + Duration::from_millis(50);
                    return true;
                }
            }
        }
        false
    }

    /// Wears what it carries where nothing is worn.
    fn wear(&mut self, session: &mut Session) {
        let inv = session.inventory();
        let pick = inv.items.iter().find_map(|i| {
            let (_, slot) = self.kit.gear.iter().find(|(t, _)| *t == i.template)?;
            inv.equipped[slot.index()]
                .is_none()
                .then_some((i.slot, *slot))
        });
        if let Some((slot, equip)) = pick {
            if session.send_equip(slot, equip).is_ok() {
                self.counts.items_equipped += 1;
            }
        }
    }

    fn chat(&mut self, now: Instant, session: &mut Session, rand: u64) {
        if now < self.next_chat {
            return;
        }
        // About one line every 30 s, spread so that players do not speak
        // in chorus.
        self.next_chat = now + Duration::from_secs(20 + rand % 20);
        let (channel, text) = if rand % 10 == 0 {
            (
                ChatChannel::Shout,
                format!("{} is level {}", self.name, self.level),
            )
        } else {
            (
                ChatChannel::Say,
                format!("{} here, {} kills so far", self.name, self.counts.kills),
            )
        };
        if session.send_chat(channel, "", &text).is_ok() {
            self.counts.chat_messages += 1;
        }
    }

    fn position_of(&self, session: &Session, id: u32) -> Option<[f32; 3]> {
        let (_, s) = session.receiver().state(id)?;
        if s.status.state & ALIVE == 0 && self.target.is_some_and(|(t, _)| t == id) {
            return None;
        }
        self.quantizer
            .as_ref()?
            .dequantize_position(s.position)
            .ok()
    }
}

fn dist2(a: [f32; 3], b: [f32; 3]) -> f32 {
    let (dx, dy) = (a[0] - b[0], a[1] - b[1]);
    dx * dx + dy * dy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kit_of_the_built_in_data_can_fight_heal_drink_and_dress() {
        let data = GameData::embedded().expect("built-in data");
        let kit = Kit::new(&data);
        assert!(!kit.attacks.is_empty(), "no attack skill");
        assert!(
            kit.attacks.windows(2).all(|w| w[0].range >= w[1].range),
            "longest reach first"
        );
        assert!(kit.heal.is_some(), "no self heal");
        assert!(!kit.potions.is_empty(), "no healing potion");
        assert!(!kit.gear.is_empty(), "no wearable item");
    }

    #[test]
    fn counts_merge_sums_and_keeps_the_highest_level() {
        let mut a = GameplayCounts {
            kills: 2,
            max_level: 3,
            ..Default::default()
        };
        let b = GameplayCounts {
            kills: 5,
            level_ups: 1,
            max_level: 2,
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!((a.kills, a.level_ups, a.max_level), (7, 1, 3));
    }
}
