//! Combat data files in `config/data/`: skills (`skills.ron`), item
//! templates (`items.ron`) and loot tables (`loot.ron`), loaded and
//! validated together; errors name the file and the dotted field.
//!
//! The shard turns skills into its action table and rolls loot tables when
//! an NPC dies; the game layer reads item templates for inventories,
//! equipment bonuses and consumables. The formulas that use these numbers
//! are in `docs/GAMEPLAY.md` (combat part).

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::check::Checker;
use crate::parse::{from_ron, read_file};

const SKILLS: &str = "skills.ron";
const ITEMS: &str = "items.ron";
const LOOT: &str = "loot.ron";

/// The most skills (the shard keeps one cooldown timer per skill and
/// entity, in a fixed array).
pub const MAX_SKILLS: usize = 16;

/// What a skill does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkillKind {
    /// Takes HP from one enemy.
    Damage,
    /// Gives HP to one friend.
    Heal,
    /// Puts a buff on a friend (or the caster).
    Buff,
    /// Puts a debuff on an enemy (and deals `power` damage if above 0).
    Debuff,
    /// Takes HP from every enemy within `radius` of the target (or of the
    /// caster for `target: Caster`).
    Area,
}

/// Which stats a skill's power scales with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum School {
    /// STR attacks, CON defends.
    Physical,
    /// INT attacks, MEN defends.
    Magic,
}

/// Whom a skill may target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkillTarget {
    /// Only the caster (the request's target is ignored).
    Caster,
    /// An enemy (by faction).
    Enemy,
    /// A friend (by faction); no target means the caster.
    Friend,
}

/// The buffs and debuffs of the world (the shard's `BuffFlags` bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BuffKind {
    /// Cannot move or act.
    Frozen,
    /// Loses `intensity` HP per second.
    Poisoned,
    /// Loses `intensity` HP per second.
    Burning,
    /// Moves at `1 − 0.75 · intensity / 255` of its speed.
    Slowed,
    /// Cannot move or act.
    Stunned,
    /// Only friends see it.
    Invisible,
    /// Takes no damage.
    Invulnerable,
}

/// A buff a skill applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillBuff {
    /// Which.
    pub buff: BuffKind,
    /// How long, milliseconds.
    pub duration_ms: u32,
    /// How strong (meaning per buff, see [`BuffKind`]).
    pub intensity: u8,
}

/// One skill players (and NPCs) may use; its id is what clients send in
/// `ActionRequest.action_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillTemplate {
    /// Unique id, 1..=65535.
    pub id: u16,
    /// Display name.
    pub name: String,
    /// What it does.
    pub kind: SkillKind,
    /// Base amount: damage or healing before stats.
    pub power: f64,
    /// Physical or magic.
    pub school: School,
    /// Casting time before it takes effect, milliseconds (0: instant);
    /// shortened by WIT.
    pub cast_ms: u32,
    /// Time before it can be used again, milliseconds.
    pub cooldown_ms: u32,
    /// Mana it costs.
    pub mp_cost: f64,
    /// Farthest target, world units (ignored for `target: Caster`).
    pub range: f64,
    /// Area skills: radius around the target, world units (0 otherwise).
    #[serde(default)]
    pub radius: f64,
    /// A buff or debuff it applies to each target.
    #[serde(default)]
    pub buff: Option<SkillBuff>,
    /// Whom it may target.
    pub target: SkillTarget,
}

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemKind {
    /// Equipped in the weapon slot.
    Weapon,
    /// Equipped in an armour slot.
    Armor,
    /// Used up for an effect.
    Consumable,
    /// Crafting material, only carried.
    Material,
}

/// Where an item is worn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EquipSlot {
    /// Main hand.
    Weapon,
    /// Head.
    Head,
    /// Chest.
    Chest,
    /// Legs.
    Legs,
    /// Feet.
    Feet,
    /// Hands.
    Hands,
}

impl EquipSlot {
    /// The slot's number on the wire (PROTOCOL.md §6.6): the protocol has
    /// more slots than the data files use today.
    pub fn wire(self) -> tos_protocol::wire::game::EquipSlot {
        use tos_protocol::wire::game::EquipSlot as W;
        match self {
            Self::Weapon => W::Weapon,
            Self::Head => W::Head,
            Self::Chest => W::Chest,
            Self::Legs => W::Legs,
            Self::Feet => W::Feet,
            Self::Hands => W::Hands,
        }
    }
}

/// Stat bonuses of equipment (summed over what is worn and handed to the
/// shard with `Shard::set_gear`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatBonus {
    /// Physical attack added.
    pub p_atk: f64,
    /// Magic attack added.
    pub m_atk: f64,
    /// Physical defence added.
    pub p_def: f64,
    /// Magic defence added.
    pub m_def: f64,
    /// Maximum HP added.
    pub hp_max: f64,
    /// Maximum MP added.
    pub mp_max: f64,
}

impl StatBonus {
    /// The field-wise sum (for summing what a character wears).
    pub fn plus(self, o: Self) -> Self {
        Self {
            p_atk: self.p_atk + o.p_atk,
            m_atk: self.m_atk + o.m_atk,
            p_def: self.p_def + o.p_def,
            m_def: self.m_def + o.m_def,
            hp_max: self.hp_max + o.hp_max,
            mp_max: self.mp_max + o.mp_max,
        }
    }

    fn fields(&self) -> [(&'static str, f64); 6] {
        [
            ("p_atk", self.p_atk),
            ("m_atk", self.m_atk),
            ("p_def", self.p_def),
            ("m_def", self.m_def),
            ("hp_max", self.hp_max),
            ("mp_max", self.mp_max),
        ]
    }
}

/// What using a consumable does (handed to the shard with
/// `Shard::use_consumable`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumableEffect {
    /// HP restored at once.
    #[serde(default)]
    pub hp: f64,
    /// MP restored at once.
    #[serde(default)]
    pub mp: f64,
    /// Time before any consumable can be used again, milliseconds.
    pub cooldown_ms: u32,
}

/// One kind of item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemTemplate {
    /// Unique id, 1..=65535.
    pub id: u16,
    /// Display name.
    pub name: String,
    /// What it is.
    pub kind: ItemKind,
    /// Whether several share one inventory slot.
    pub stackable: bool,
    /// Most in one slot (1 when not stackable).
    pub max_stack: u16,
    /// Weight of one, in grams (inventories have a weight limit).
    pub weight: u32,
    /// Where it is worn: required for weapons and armour, absent otherwise.
    #[serde(default)]
    pub slot: Option<EquipSlot>,
    /// Bonuses while worn (weapons and armour only).
    #[serde(default)]
    pub bonus: StatBonus,
    /// The effect of using one (consumables only, required for them).
    #[serde(default)]
    pub consumable: Option<ConsumableEffect>,
}

/// One possible drop of a loot table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LootEntry {
    /// Item template id.
    pub item: u16,
    /// Probability of dropping, in `(0, 1]`, rolled independently per
    /// entry.
    pub chance: f64,
    /// Fewest dropped when it drops (at least 1).
    pub min: u16,
    /// Most dropped (at least `min`, at most the item's `max_stack`).
    pub max: u16,
}

/// What an NPC may drop when it dies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LootTable {
    /// Unique id, 1..=65535 (NPC templates refer to it; 0 means none).
    pub id: u16,
    /// The possible drops (at most 8: one Item entity each).
    pub entries: Vec<LootEntry>,
}

/// The most entries of one loot table (each spawns at most one Item
/// entity, so a kill spawns at most this many).
pub const MAX_LOOT_ENTRIES: usize = 8;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkillsFile {
    skills: Vec<SkillTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemsFile {
    items: Vec<ItemTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LootFile {
    tables: Vec<LootTable>,
}

/// Skills, items and loot tables, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CombatData {
    /// Skills, in file order.
    pub skills: Vec<SkillTemplate>,
    /// Item templates, in file order.
    pub items: Vec<ItemTemplate>,
    /// Loot tables, in file order.
    pub loot: Vec<LootTable>,
}

impl CombatData {
    /// Loads `skills.ron`, `items.ron` and `loot.ron` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let skills = read_file(&dir.join(SKILLS))?;
        let items = read_file(&dir.join(ITEMS))?;
        let loot = read_file(&dir.join(LOOT))?;
        Self::from_ron_strs(&dir.display().to_string(), &skills, &items, &loot)
    }

    /// The files of `config/data/` at build time.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::from_ron_strs(
            "config/data (built in)",
            include_str!("../data/skills.ron"),
            include_str!("../data/items.ron"),
            include_str!("../data/loot.ron"),
        )
    }

    /// Parses and validates the three files' text; errors name
    /// `dir/skills.ron` and so on.
    pub fn from_ron_strs(
        dir: &str,
        skills: &str,
        items: &str,
        loot: &str,
    ) -> Result<Self, ConfigError> {
        let origin = |file: &str| {
            if dir.is_empty() {
                file.to_owned()
            } else {
                format!("{}/{file}", dir.trim_end_matches('/'))
            }
        };
        let (so, io, lo) = (origin(SKILLS), origin(ITEMS), origin(LOOT));
        let skills: SkillsFile = from_ron(skills, &so)?;
        let items: ItemsFile = from_ron(items, &io)?;
        let loot: LootFile = from_ron(loot, &lo)?;
        validate_skills(&skills.skills, &Checker::new(&so))?;
        validate_items(&items.items, &Checker::new(&io))?;
        validate_loot(&loot.tables, &items.items, &Checker::new(&lo))?;
        Ok(Self {
            skills: skills.skills,
            items: items.items,
            loot: loot.tables,
        })
    }

    /// The skill with `id`.
    pub fn skill(&self, id: u16) -> Option<&SkillTemplate> {
        self.skills.iter().find(|s| s.id == id)
    }

    /// The item template with `id`.
    pub fn item(&self, id: u16) -> Option<&ItemTemplate> {
        self.items.iter().find(|i| i.id == id)
    }

    /// The loot table with `id`.
    pub fn loot_table(&self, id: u16) -> Option<&LootTable> {
        self.loot.iter().find(|t| t.id == id)
    }
}

fn finite_min(check: &Checker<'_>, field: String, v: f64, low: f64) -> Result<(), ConfigError> {
    check.require(
        v.is_finite() && v >= low,
        field,
        format!("a finite number of at least {low}"),
        v,
    )
}

fn validate_skills(skills: &[SkillTemplate], check: &Checker<'_>) -> Result<(), ConfigError> {
    check.require(
        !skills.is_empty() && skills.len() <= MAX_SKILLS,
        "skills",
        format!("1 to {MAX_SKILLS} skills"),
        skills.len(),
    )?;
    let mut seen = HashSet::new();
    for (i, s) in skills.iter().enumerate() {
        let f = |name: &str| format!("skills[{i}].{name}");
        check.require(s.id != 0, f("id"), "1..=65535", s.id)?;
        check.require(seen.insert(s.id), f("id"), "an id not used before", s.id)?;
        check.require(
            !s.name.trim().is_empty(),
            f("name"),
            "a non-empty name",
            format_args!("{:?}", s.name),
        )?;
        finite_min(check, f("power"), s.power, 0.0)?;
        finite_min(check, f("mp_cost"), s.mp_cost, 0.0)?;
        finite_min(check, f("range"), s.range, 0.0)?;
        finite_min(check, f("radius"), s.radius, 0.0)?;
        check.require(s.cast_ms <= 60_000, f("cast_ms"), "0..=60000", s.cast_ms)?;
        check.require(
            s.cooldown_ms <= 3_600_000,
            f("cooldown_ms"),
            "0..=3600000",
            s.cooldown_ms,
        )?;
        let (needs_power, needs_buff, target_ok) = match s.kind {
            SkillKind::Damage => (true, false, s.target == SkillTarget::Enemy),
            SkillKind::Heal => (true, false, s.target != SkillTarget::Enemy),
            SkillKind::Buff => (false, true, s.target != SkillTarget::Enemy),
            SkillKind::Debuff => (false, true, s.target == SkillTarget::Enemy),
            SkillKind::Area => (true, false, s.target != SkillTarget::Friend),
        };
        check.require(
            target_ok,
            f("target"),
            format!("a target that fits kind {:?}", s.kind),
            format_args!("{:?}", s.target),
        )?;
        check.require(
            !needs_power || s.power > 0.0,
            f("power"),
            format!("above 0 for kind {:?}", s.kind),
            s.power,
        )?;
        check.require(
            !needs_buff || s.buff.is_some(),
            f("buff"),
            format!("Some(...) for kind {:?}", s.kind),
            "None",
        )?;
        check.require(
            (s.kind == SkillKind::Area) == (s.radius > 0.0),
            f("radius"),
            "above 0 for Area skills and 0 for the others",
            s.radius,
        )?;
        if let Some(b) = &s.buff {
            check.require(
                (1..=600_000).contains(&b.duration_ms),
                f("buff.duration_ms"),
                "1..=600000",
                b.duration_ms,
            )?;
        }
    }
    Ok(())
}

fn validate_items(items: &[ItemTemplate], check: &Checker<'_>) -> Result<(), ConfigError> {
    check.require(!items.is_empty(), "items", "at least one item", "none")?;
    let mut seen = HashSet::new();
    for (i, it) in items.iter().enumerate() {
        let f = |name: &str| format!("items[{i}].{name}");
        check.require(it.id != 0, f("id"), "1..=65535", it.id)?;
        check.require(seen.insert(it.id), f("id"), "an id not used before", it.id)?;
        check.require(
            !it.name.trim().is_empty(),
            f("name"),
            "a non-empty name",
            format_args!("{:?}", it.name),
        )?;
        if it.stackable {
            check.require(
                it.max_stack >= 2,
                f("max_stack"),
                "at least 2 for a stackable item",
                it.max_stack,
            )?;
        } else {
            check.require(
                it.max_stack == 1,
                f("max_stack"),
                "1 for an item that does not stack",
                it.max_stack,
            )?;
        }
        let wearable = matches!(it.kind, ItemKind::Weapon | ItemKind::Armor);
        match (it.kind, it.slot) {
            (ItemKind::Weapon, Some(EquipSlot::Weapon)) => {}
            (ItemKind::Armor, Some(s)) if s != EquipSlot::Weapon => {}
            (ItemKind::Consumable | ItemKind::Material, None) => {}
            (kind, slot) => {
                return Err(check.invalid(
                    f("slot"),
                    format!(
                        "{} for kind {kind:?}",
                        match kind {
                            ItemKind::Weapon => "Some(Weapon)",
                            ItemKind::Armor =>
                                "Some(an armour slot: Head, Chest, Legs, Feet, Hands)",
                            _ => "None",
                        }
                    ),
                    format_args!("{slot:?}"),
                ));
            }
        }
        for (name, v) in it.bonus.fields() {
            check.require(
                v.is_finite() && (wearable || v == 0.0),
                f(&format!("bonus.{name}")),
                if wearable {
                    "a finite number"
                } else {
                    "0 (only weapons and armour give bonuses)"
                },
                v,
            )?;
        }
        match (it.kind, &it.consumable) {
            (ItemKind::Consumable, Some(c)) => {
                finite_min(check, f("consumable.hp"), c.hp, 0.0)?;
                finite_min(check, f("consumable.mp"), c.mp, 0.0)?;
                check.require(
                    c.hp > 0.0 || c.mp > 0.0,
                    f("consumable"),
                    "an effect restoring some HP or MP",
                    "nothing",
                )?;
                check.require(
                    c.cooldown_ms <= 3_600_000,
                    f("consumable.cooldown_ms"),
                    "0..=3600000",
                    c.cooldown_ms,
                )?;
            }
            (ItemKind::Consumable, None) => {
                return Err(check.invalid(f("consumable"), "Some(...) for a consumable", "None"));
            }
            (_, Some(_)) => {
                return Err(check.invalid(
                    f("consumable"),
                    "None for an item that is not a consumable",
                    "Some(...)",
                ));
            }
            (_, None) => {}
        }
    }
    Ok(())
}

fn validate_loot(
    tables: &[LootTable],
    items: &[ItemTemplate],
    check: &Checker<'_>,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (t, table) in tables.iter().enumerate() {
        let f = |name: &str| format!("tables[{t}].{name}");
        check.require(table.id != 0, f("id"), "1..=65535", table.id)?;
        check.require(
            seen.insert(table.id),
            f("id"),
            "an id not used before",
            table.id,
        )?;
        check.require(
            !table.entries.is_empty() && table.entries.len() <= MAX_LOOT_ENTRIES,
            f("entries"),
            format!("1 to {MAX_LOOT_ENTRIES} entries"),
            table.entries.len(),
        )?;
        for (e, entry) in table.entries.iter().enumerate() {
            let g = |name: &str| format!("tables[{t}].entries[{e}].{name}");
            let Some(item) = items.iter().find(|i| i.id == entry.item) else {
                return Err(check.invalid(g("item"), "the id of an item in items.ron", entry.item));
            };
            check.require(
                entry.chance > 0.0 && entry.chance <= 1.0,
                g("chance"),
                "above 0 and at most 1.0",
                entry.chance,
            )?;
            check.require(entry.min >= 1, g("min"), "at least 1", entry.min)?;
            check.require(
                entry.max >= entry.min && entry.max <= item.max_stack,
                g("max"),
                format!(
                    "min ({}) ..= the item's max_stack ({})",
                    entry.min, item.max_stack
                ),
                entry.max,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
    }

    fn text(file: &str) -> String {
        std::fs::read_to_string(dir().join(file)).unwrap()
    }

    /// The (origin, field) of the error after editing `file` with `edit`.
    fn broken(file: &str, edit: impl Fn(String) -> String) -> (String, String) {
        let mut t = [SKILLS, ITEMS, LOOT].map(text);
        let k = [SKILLS, ITEMS, LOOT]
            .iter()
            .position(|f| *f == file)
            .unwrap();
        let edited = edit(t[k].clone());
        assert_ne!(edited, t[k], "the edit changed nothing");
        t[k] = edited;
        match CombatData::from_ron_strs("config/data", &t[0], &t[1], &t[2]) {
            Err(ConfigError::Invalid { origin, field, .. }) => (origin, field),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn expect(file: &str, field: &str, edit: impl Fn(String) -> String) {
        let (origin, found) = broken(file, edit);
        assert_eq!(origin, format!("config/data/{file}"));
        assert_eq!(found, field);
    }

    #[test]
    fn shipped_files_load_and_equal_the_built_in_copy() {
        let data = CombatData::load(&dir()).unwrap();
        assert_eq!(CombatData::embedded().unwrap(), data);
        // Ids 1..=8 keep the meaning loadgen and the tests rely on.
        let names: Vec<&str> = (1..=8)
            .map(|id| data.skill(id).unwrap().name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "Strike",
                "Fireball",
                "Frost Bolt",
                "Heal",
                "Vanish",
                "Divine Shield",
                "Crippling Shot",
                "Shield Bash"
            ]
        );
        assert!(data.skills.iter().any(|s| s.kind == SkillKind::Area));
        assert!(data.items.iter().any(|i| i.kind == ItemKind::Consumable));
        assert!(data.loot_table(1).is_some());
        assert!(data.item(9999).is_none());
    }

    #[test]
    fn every_rule_names_the_file_and_the_field() {
        expect(SKILLS, "skills[1].id", |t| {
            t.replacen("id: 2,", "id: 1,", 1)
        });
        expect(SKILLS, "skills[0].power", |t| {
            t.replacen("power: 10.0", "power: -1.0", 1)
        });
        expect(SKILLS, "skills[0].target", |t| {
            t.replacen("target: Enemy", "target: Friend", 1)
        });
        expect(SKILLS, "skills[4].buff", |t| {
            t.replacen(
                "buff: Some((buff: Invisible, duration_ms: 5000, intensity: 1)),",
                "",
                1,
            )
        });
        expect(SKILLS, "skills[0].radius", |t| {
            t.replacen("radius: 0.0", "radius: 5.0", 1)
        });
        expect(ITEMS, "items[0].slot", |t| {
            t.replacen("slot: Some(Weapon)", "slot: Some(Chest)", 1)
        });
        expect(ITEMS, "items[0].max_stack", |t| {
            t.replacen("max_stack: 1,", "max_stack: 5,", 1)
        });
        expect(ITEMS, "items[1].id", |t| t.replacen("id: 2,", "id: 1,", 1));
        expect(LOOT, "tables[0].entries[0].item", |t| {
            t.replacen("item: 10,", "item: 999,", 1)
        });
        expect(LOOT, "tables[0].entries[0].chance", |t| {
            t.replacen("chance: ", "chance: 1", 1)
        });
    }

    #[test]
    fn parse_errors_and_missing_files_name_the_file() {
        let t = [SKILLS, ITEMS, LOOT].map(text);
        let e = CombatData::from_ron_strs("d", &t[0], "(itemz: [])", &t[2])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("d/items.ron:"), "{e}");
        let e = CombatData::load(Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().contains("skills.ron"), "{e}");
    }

    #[test]
    fn bonuses_sum() {
        let a = StatBonus {
            p_atk: 1.0,
            hp_max: 10.0,
            ..StatBonus::default()
        };
        let b = StatBonus {
            p_atk: 2.5,
            m_def: 3.0,
            ..StatBonus::default()
        };
        let s = a.plus(b);
        assert_eq!(
            (s.p_atk, s.m_def, s.hp_max, s.mp_max),
            (3.5, 3.0, 10.0, 0.0)
        );
    }
}
