//! Combat inside the shard: the per-entity combat columns (level and
//! experience, base stats and gear, the cast in progress, who did how much
//! damage), the events the game layer reads ([`ShardEvent`]), the skill
//! table compiled to ticks ([`Skill`]) and the level table ([`Progression`]).
//!
//! The numbers live in [`formula`] (pure functions, property-tested). The
//! work inside the tick — skill requests, casts, hits, deaths, experience,
//! level-ups, loot drops and pick-ups — is `combat/ops.rs`, a child module
//! of `shard` so that it works on the shard's private state without
//! widening it; the rules are in `docs/GAMEPLAY.md` §2.

pub mod formula;

use crate::authority::{ActionDef, BuffEffect};
use crate::entity::ClientId;

pub use tos_config::{BaseStats, ConsumableEffect, StatBonus};

/// Base stats of entities that have none of their own (NPCs spawned
/// without a template, and characters the game layer sent none for).
pub const DEFAULT_STATS: BaseStats = BaseStats {
    int: 20,
    str: 20,
    con: 20,
    men: 20,
    dex: 20,
    wit: 20,
};

/// Longest time left a carried buff or cooldown may have (one hour): a
/// record from another node asking for more is refused.
pub const MAX_CARRIED_MS: u32 = 3_600_000;

/// What a player carries that the store does not keep, as time left:
/// buffs, skill cooldowns and the consumable cooldown. It travels with a
/// player moving to another node (`tos_game::transfer`), so a crossing
/// neither ends a debuff nor resets a cooldown. Milliseconds, so that
/// nodes agree whatever their tick counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CarriedCombat {
    /// Each buff that is on: which, milliseconds left, intensity.
    pub buffs: Vec<(crate::entity::Buff, u32, u8)>,
    /// Each skill cooling down: its id, milliseconds until ready.
    pub cooldowns: Vec<(u16, u32)>,
    /// Milliseconds until the next consumable may be used.
    pub consumable_ms: u32,
}

/// Level, experience and the templates of an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Level (1 and up).
    pub level: u16,
    /// Players: the character template id (selects the class growth of
    /// level-ups); 0 for none.
    pub template: u16,
    /// NPCs: the loot table rolled at death (0: none).
    pub loot_table: u16,
    /// Players: total experience.
    pub exp: u64,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            level: 1,
            template: 0,
            loot_table: 0,
            exp: 0,
        }
    }
}

/// Equipment bonuses as the shard keeps them (`f32`, like HP).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Gear {
    /// Physical attack added.
    pub p_atk: f32,
    /// Magic attack added.
    pub m_atk: f32,
    /// Physical defence added.
    pub p_def: f32,
    /// Magic defence added.
    pub m_def: f32,
    /// Maximum HP added.
    pub hp_max: f32,
    /// Maximum MP added.
    pub mp_max: f32,
}

impl Gear {
    /// From the data files' bonus type; `None` if a number is not finite.
    pub fn from_bonus(b: &StatBonus) -> Option<Self> {
        let g = Self {
            p_atk: b.p_atk as f32,
            m_atk: b.m_atk as f32,
            p_def: b.p_def as f32,
            m_def: b.m_def as f32,
            hp_max: b.hp_max as f32,
            mp_max: b.mp_max as f32,
        };
        [g.p_atk, g.m_atk, g.p_def, g.m_def, g.hp_max, g.mp_max]
            .iter()
            .all(|v| v.is_finite())
            .then_some(g)
    }
}

/// What an entity fights with: base stats, gear, and its HP/MP maxima
/// without gear (so that a gear change recomputes the maxima).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fighter {
    /// The six base stats.
    pub base: BaseStats,
    /// Equipment bonuses.
    pub gear: Gear,
    /// Maximum HP and MP without gear.
    pub base_max: [f32; 2],
    /// The first tick a consumable may be used again.
    pub consumable_ready: u32,
}

impl Default for Fighter {
    fn default() -> Self {
        Self {
            base: DEFAULT_STATS,
            gear: Gear::default(),
            base_max: [100.0, 100.0],
            consumable_ready: 0,
        }
    }
}

/// No cast in progress (the `slot` of an idle [`Cast`]).
pub const NO_CAST: u8 = u8::MAX;

/// A cast in progress: the skill takes effect at tick `done` unless the
/// caster moves, is stunned or dies first.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cast {
    /// Index of the skill in the shard's table ([`NO_CAST`]: none).
    pub slot: u8,
    /// The target's network id (0: none, caster skills).
    pub target: u32,
    /// The tick it takes effect.
    pub done: u32,
    /// Where the caster stood when it began.
    pub from: [f32; 3],
}

impl Default for Cast {
    fn default() -> Self {
        Self {
            slot: NO_CAST,
            target: 0,
            done: 0,
            from: [0.0; 3],
        }
    }
}

impl Cast {
    /// Whether a cast is in progress.
    #[inline]
    pub fn active(&self) -> bool {
        self.slot != NO_CAST
    }
}

/// Damage dealers tracked per entity (the top few; experience is split
/// among them).
pub const CONTRIBUTORS: usize = 4;

/// The top [`CONTRIBUTORS`] players by damage dealt to an entity since it
/// last (re)spawned, in a fixed array: no allocation per hit. A new dealer
/// when the array is full replaces the smallest entry if it has dealt
/// more (its damage so far is this hit's).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Contributions {
    /// Who.
    pub who: [Option<ClientId>; CONTRIBUTORS],
    /// How much damage each dealt.
    pub damage: [f32; CONTRIBUTORS],
}

impl Contributions {
    /// Adds `amount` damage by `client`.
    pub fn add(&mut self, client: ClientId, amount: f32) {
        if !(amount > 0.0 && amount.is_finite()) {
            return;
        }
        if let Some(k) = self.who.iter().position(|w| *w == Some(client)) {
            self.damage[k] += amount;
            return;
        }
        let mut low = 0;
        for k in 0..CONTRIBUTORS {
            if self.who[k].is_none() {
                low = k;
                break;
            }
            if self.damage[k] < self.damage[low] {
                low = k;
            }
        }
        if self.who[low].is_none() || self.damage[low] < amount {
            self.who[low] = Some(client);
            self.damage[low] = amount;
        }
    }

    /// The top damage dealer.
    pub fn top(&self) -> Option<ClientId> {
        let mut best: Option<(ClientId, f32)> = None;
        for k in 0..CONTRIBUTORS {
            if let Some(c) = self.who[k] {
                if best.is_none_or(|(_, d)| self.damage[k] > d) {
                    best = Some((c, self.damage[k]));
                }
            }
        }
        best.map(|(c, _)| c)
    }

    /// Forgets everyone.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

tos_protocol::flags! {
    /// What a [`ShardEvent::Combat`] reports.
    pub struct CombatFlags(pub u8) {
        /// The skill hit (damage, or a debuff landed).
        HIT = 0x01,
        /// It missed (DEX against DEX).
        MISS = 0x02,
        /// A critical hit.
        CRIT = 0x04,
        /// HP given, not taken.
        HEAL = 0x08,
        /// The target died of it.
        KILL = 0x10,
        /// A cast was interrupted (moved, stunned, target lost).
        INTERRUPTED = 0x20,
        /// The target is invulnerable: no damage.
        IMMUNE = 0x40,
    }
}

/// Something the game layer tells a client or stores, drained with
/// `Shard::take_events` after each tick (and after `use_consumable`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ShardEvent {
    /// A client picked up an item: add it to its inventory (space was
    /// reserved before `push_pickup`).
    Looted {
        /// Who.
        client: ClientId,
        /// Item template id.
        item: u16,
        /// How many.
        count: u16,
    },
    /// A client's player gained experience.
    Experience {
        /// Who.
        client: ClientId,
        /// Gained now.
        gained: u64,
        /// Total after.
        total: u64,
    },
    /// A client's player reached a new level (HP/MP maxima raised, healed
    /// to full).
    LevelUp {
        /// Who.
        client: ClientId,
        /// The new level.
        level: u16,
    },
    /// A hit, miss, heal, kill or interrupted cast a client should see (one
    /// event per client told: the caster and the target, if players).
    Combat {
        /// Who is told.
        client: ClientId,
        /// The caster's network id.
        source: u32,
        /// The target's network id.
        target: u32,
        /// The skill id (0: a consumable).
        skill: u16,
        /// HP taken or given.
        amount: f32,
        /// What happened.
        flags: CombatFlags,
    },
    /// A client's player died.
    Died {
        /// Who.
        client: ClientId,
    },
}

/// The attacker's side of a damage roll, shipped to the core owning the
/// target when the caster saw it as a ghost: that core rolls hit, critical
/// and damage against the target's own stats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Strike {
    /// The skill's power.
    pub power: f32,
    /// The attacker's attack for the skill's school.
    pub attack: f32,
    /// The attacker's DEX (hit and critical chances).
    pub dex: u16,
    /// Magic (the target defends with MEN) or physical (CON).
    pub magic: bool,
}

/// A skill as the shard uses it: the data-file definition with times in
/// ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Skill {
    /// The definition.
    pub def: ActionDef,
    /// Cooldown in ticks.
    pub cooldown_ticks: u32,
    /// The buff in ticks.
    pub buff: Option<BuffEffect>,
}

impl Skill {
    /// Compiles `def` at `tick_hz`.
    pub fn new(def: ActionDef, tick_hz: u32) -> Self {
        Self {
            def,
            cooldown_ticks: formula::ms_to_ticks(def.cooldown_ms, tick_hz),
            buff: def.buff.map(|b| BuffEffect {
                buff: b.buff,
                duration_ticks: formula::ms_to_ticks(b.duration_ms, tick_hz).max(1),
                intensity: b.intensity,
            }),
        }
    }
}

/// How one character template grows (from its class in `levels.ron`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemplateGrowth {
    /// Character template id.
    pub template: u16,
    /// HP at level 1.
    pub base_hp: f32,
    /// MP at level 1.
    pub base_mp: f32,
    /// HP added per level above 1.
    pub hp_per_level: f32,
    /// MP added per level above 1.
    pub mp_per_level: f32,
    /// HP regained per second out of combat at level 1.
    pub hp_regen: f32,
    /// MP regained per second out of combat at level 1.
    pub mp_regen: f32,
    /// Added to both rates per level above 1.
    pub regen_per_level: f32,
}

/// The level table and template growth the shard levels players up with.
#[derive(Debug, Clone, PartialEq)]
pub struct Progression {
    /// Cumulative experience to reach level `k + 1` (entry 0 is 0).
    pub levels: Vec<u64>,
    /// Growth per character template.
    pub growth: Vec<TemplateGrowth>,
}

impl Default for Progression {
    /// One level, no growth (a world without game data).
    fn default() -> Self {
        Self {
            levels: vec![0],
            growth: Vec::new(),
        }
    }
}

impl Progression {
    /// From the game data: its level table, and each template's class
    /// growth.
    pub fn from_game_data(data: &tos_config::GameData) -> Self {
        Self {
            levels: data.levels.iter().map(|l| l.exp).collect(),
            growth: data
                .templates
                .iter()
                .filter_map(|t| {
                    let g = data.class(&t.class)?;
                    Some(TemplateGrowth {
                        template: t.id,
                        base_hp: t.base_hp as f32,
                        base_mp: t.base_mp as f32,
                        hp_per_level: g.hp_per_level as f32,
                        mp_per_level: g.mp_per_level as f32,
                        hp_regen: g.hp_regen as f32,
                        mp_regen: g.mp_regen as f32,
                        regen_per_level: g.regen_per_level as f32,
                    })
                })
                .collect(),
        }
    }

    /// The highest level.
    pub fn max_level(&self) -> u16 {
        self.levels.len().clamp(1, usize::from(u16::MAX)) as u16
    }

    /// The level of `exp` experience: the highest whose requirement is at
    /// most `exp`.
    pub fn level_for(&self, exp: u64) -> u16 {
        let reached = self.levels.partition_point(|&need| need <= exp);
        reached.clamp(1, usize::from(u16::MAX)) as u16
    }

    /// HP and MP regained per second out of combat by `template` at
    /// `level` (nothing for unknown templates).
    pub fn regen(&self, template: u16, level: u16) -> [f32; 2] {
        let Some(g) = self.growth.iter().find(|g| g.template == template) else {
            return [0.0; 2];
        };
        let above = f32::from(level.clamp(1, self.max_level()) - 1);
        let extra = g.regen_per_level * above;
        [g.hp_regen + extra, g.mp_regen + extra]
    }

    /// HP and MP maxima (without gear) of `template` at `level`, if the
    /// template is known.
    pub fn maxima(&self, template: u16, level: u16) -> Option<[f32; 2]> {
        let g = self.growth.iter().find(|g| g.template == template)?;
        let above = f32::from(level.clamp(1, self.max_level()) - 1);
        Some([
            g.base_hp + g.hp_per_level * above,
            g.base_mp + g.mp_per_level * above,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contributions_keep_the_top_dealers_without_allocating() {
        let mut c = Contributions::default();
        for k in 1..=4 {
            c.add(ClientId(k), k as f32 * 10.0);
        }
        assert_eq!(c.top(), Some(ClientId(4)));
        // A fifth, smaller than everyone: ignored.
        c.add(ClientId(5), 5.0);
        assert!(!c.who.contains(&Some(ClientId(5))));
        // A fifth, bigger than the smallest (10): replaces it.
        c.add(ClientId(6), 15.0);
        assert!(c.who.contains(&Some(ClientId(6))));
        assert!(!c.who.contains(&Some(ClientId(1))));
        // Adding accumulates.
        c.add(ClientId(2), 100.0);
        assert_eq!(c.top(), Some(ClientId(2)));
        c.add(ClientId(3), f32::NAN);
        c.add(ClientId(3), -5.0);
        assert!(c.damage.iter().all(|d| d.is_finite() && *d >= 0.0));
        c.clear();
        assert_eq!(c.top(), None);
    }

    #[test]
    fn progression_follows_the_shipped_level_table() {
        let data = tos_config::GameData::embedded().unwrap();
        let p = Progression::from_game_data(&data);
        assert_eq!(p.max_level(), 20);
        assert_eq!(p.level_for(0), 1);
        assert_eq!(p.level_for(67), 1);
        assert_eq!(p.level_for(68), 2);
        assert_eq!(p.level_for(u64::MAX), 20);
        // Human Fighter: 80 HP + 12 per level (levels.ron, Fighter).
        assert_eq!(p.maxima(1, 1), Some([80.0, 30.0]));
        assert_eq!(p.maxima(1, 10).unwrap()[0], 80.0 + 12.0 * 9.0);
        assert_eq!(p.maxima(999, 3), None);
        // Fighter: 2 HP/s and 0.9 MP/s at level 1, +0.05 per level.
        let r = p.regen(1, 3);
        assert!((r[0] - 2.1).abs() < 1e-5 && (r[1] - 1.0).abs() < 1e-5);
        assert_eq!(p.regen(999, 3), [0.0; 2]);
        assert_eq!(Progression::default().level_for(1_000_000), 1);
    }
}
