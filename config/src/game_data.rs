//! Game data files in `config/data/`: character templates
//! (`characters.ron`), the level table and class growth (`levels.ron`), and
//! character name rules (`names.ron`), loaded and validated together, with
//! the combat files (`skills.ron`, `items.ron`, `loot.ron`, module
//! `combat_data`).

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::check::Checker;
use crate::parse::{from_ron, read_file};
use crate::{CombatData, ConfigError, WorldConfig};

/// File names inside the data directory.
const CHARACTERS: &str = "characters.ron";
const LEVELS: &str = "levels.ron";
const NAMES: &str = "names.ron";

/// The six base stats of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseStats {
    /// Intelligence: magic attack.
    pub int: u16,
    /// Strength: physical attack.
    pub str: u16,
    /// Constitution: HP, HP regeneration, resistances.
    pub con: u16,
    /// Mentality: MP, MP regeneration, magic defence.
    pub men: u16,
    /// Dexterity: attack speed, accuracy, evasion.
    pub dex: u16,
    /// Wit: casting speed.
    pub wit: u16,
}

/// One playable class a new character can be created as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharacterTemplate {
    /// Unique id, sent by the client when creating a character.
    pub id: u16,
    /// Display name, such as "Human Fighter".
    pub name: String,
    /// Class name; must have a growth entry in `levels.ron`.
    pub class: String,
    /// Race name.
    pub race: String,
    /// Faction id.
    pub faction: u8,
    /// Base stats.
    pub stats: BaseStats,
    /// HP at level 1.
    pub base_hp: f64,
    /// MP at level 1.
    pub base_mp: f64,
    /// CP at level 1.
    pub base_cp: f64,
    /// Walking speed, world units per second.
    pub move_speed: f64,
    /// Where new characters appear, `(x, y, z)` in world units; one is
    /// picked per new character.
    pub spawn_points: Vec<(f64, f64, f64)>,
    /// A new character appears anywhere within this distance (world units,
    /// on the ground plane) of its spawn point: a starting area rather than
    /// one crowded spot. 0 (the default) is the point itself.
    #[serde(default)]
    pub spawn_radius: f64,
    /// Appearance bytes the client may send at creation (hair, face, ...).
    pub appearance_bytes: u8,
    /// What a new character starts with: `(item template, count)`, into
    /// its first bag slots in order (items of `items.ron`, a count within
    /// the item's `max_stack`, at most [`MAX_STARTING_ITEMS`] entries).
    #[serde(default)]
    pub starting_items: Vec<(u16, u16)>,
}

/// The most starting-item entries of a template (the game layer's bag has
/// 40 slots; a starting kit is a handful).
pub const MAX_STARTING_ITEMS: usize = 16;

/// One level: the experience needed to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelEntry {
    /// The level, 1 for the first entry and one more for each next one.
    pub level: u16,
    /// Cumulative experience needed to reach this level (0 for level 1).
    pub exp: u64,
}

/// How a class grows per level, and its regeneration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassGrowth {
    /// The class name templates refer to.
    pub class: String,
    /// HP added per level above 1.
    pub hp_per_level: f64,
    /// MP added per level above 1.
    pub mp_per_level: f64,
    /// CP added per level above 1.
    pub cp_per_level: f64,
    /// HP regained per second at level 1.
    pub hp_regen: f64,
    /// MP regained per second at level 1.
    pub mp_regen: f64,
    /// CP regained per second at level 1.
    pub cp_regen: f64,
    /// Added to each regeneration rate per level above 1.
    pub regen_per_level: f64,
}

/// Rules for character names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRules {
    /// Shortest name, in characters.
    pub min_len: u8,
    /// Longest name, in characters (at most 32).
    pub max_len: u8,
    /// Whether digits are allowed after the first letter.
    pub allow_digits: bool,
    /// Names refused outright, compared case-insensitively.
    pub reserved: Vec<String>,
    /// Names containing any of these (case-insensitively) are refused.
    pub forbidden_substrings: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CharactersFile {
    templates: Vec<CharacterTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelsFile {
    levels: Vec<LevelEntry>,
    classes: Vec<ClassGrowth>,
}

/// A character's maxima and regeneration at one level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelStats {
    /// The level these are for.
    pub level: u16,
    /// Maximum HP.
    pub hp_max: f64,
    /// Maximum MP.
    pub mp_max: f64,
    /// Maximum CP.
    pub cp_max: f64,
    /// HP per second.
    pub hp_regen: f64,
    /// MP per second.
    pub mp_regen: f64,
    /// CP per second.
    pub cp_regen: f64,
}

/// Why a character name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// Wrong length or characters (see [`NameRules`]).
    Invalid,
    /// Reserved or containing a forbidden word.
    Reserved,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Invalid => "name has the wrong length or characters",
            Self::Reserved => "name is not available",
        })
    }
}

impl std::error::Error for NameError {}

/// Everything in `config/data/`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct GameData {
    /// Character templates, in file order.
    pub templates: Vec<CharacterTemplate>,
    /// Levels 1..=max, in order.
    pub levels: Vec<LevelEntry>,
    /// Growth per class.
    pub classes: Vec<ClassGrowth>,
    /// Character name rules, with `reserved` and `forbidden_substrings`
    /// lower-cased.
    pub names: NameRules,
    /// Skills, item templates and loot tables (`skills.ron`, `items.ron`,
    /// `loot.ron`; see [`CombatData`]).
    pub combat: CombatData,
    /// NPC templates, spawn groups and patrol routes (`npcs.ron`,
    /// `spawns.ron`, `patrols.ron`).
    pub npcs: crate::NpcData,
}

fn finite_at_least(
    check: &Checker<'_>,
    field: &str,
    value: f64,
    low: f64,
) -> Result<(), ConfigError> {
    check.require(
        value.is_finite() && value >= low,
        field,
        format!("a finite number of at least {low}"),
        value,
    )
}

impl GameData {
    /// Loads `characters.ron`, `levels.ron` and `names.ron` from `dir`;
    /// errors name the file (as `dir/file`) and the dotted field.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = |file: &str| dir.join(file);
        let characters = read_file(&path(CHARACTERS))?;
        let levels = read_file(&path(LEVELS))?;
        let names = read_file(&path(NAMES))?;
        let mut data =
            Self::from_ron_strs(&dir.display().to_string(), &characters, &levels, &names)?;
        data.combat = CombatData::load(dir)?;
        data.npcs = crate::NpcData::load(dir)?;
        data.check_references(&dir.display().to_string())?;
        data.check_starting_items(&path(CHARACTERS).display().to_string())?;
        Ok(data)
    }

    /// The checks across files: every skill an NPC template names is in
    /// `skills.ron` and every loot table in `loot.ron` (errors name
    /// `npcs.ron` and the field; `loot.ron`'s items are checked against
    /// `items.ron` with the combat files).
    pub fn check_references(&self, dir: &str) -> Result<(), ConfigError> {
        let npcs = if dir.is_empty() {
            "npcs.ron".to_string()
        } else {
            format!("{dir}/npcs.ron")
        };
        let check = Checker::new(&npcs);
        for (i, t) in self.npcs.templates.iter().enumerate() {
            for (k, skill) in t.skills.iter().enumerate() {
                check.require(
                    self.combat.skill(*skill).is_some(),
                    format!("templates[{i}].skills[{k}]"),
                    "a skill id of skills.ron",
                    skill,
                )?;
            }
            if let Some(loot) = t.loot {
                check.require(
                    self.combat.loot_table(loot).is_some(),
                    format!("templates[{i}].loot"),
                    "a loot table id of loot.ron",
                    loot,
                )?;
            }
        }
        Ok(())
    }

    /// Parses and validates the three files' text; errors name
    /// `dir/characters.ron` and so on. The combat files and the NPC part
    /// are the built-in ones ([`CombatData::embedded`],
    /// [`crate::NpcData::embedded`]); [`GameData::load`] reads them from the
    /// directory too.
    pub fn from_ron_strs(
        dir: &str,
        characters: &str,
        levels: &str,
        names: &str,
    ) -> Result<Self, ConfigError> {
        let origin = |file: &str| {
            if dir.is_empty() {
                file.to_owned()
            } else {
                format!("{}/{file}", dir.trim_end_matches('/'))
            }
        };
        let (characters_origin, levels_origin, names_origin) =
            (origin(CHARACTERS), origin(LEVELS), origin(NAMES));
        let characters: CharactersFile = from_ron(characters, &characters_origin)?;
        let levels: LevelsFile = from_ron(levels, &levels_origin)?;
        let mut names: NameRules = from_ron(names, &names_origin)?;
        validate_levels(&levels, &Checker::new(&levels_origin))?;
        validate_templates(&characters, &levels, &Checker::new(&characters_origin))?;
        validate_names(&names, &Checker::new(&names_origin))?;
        for word in names
            .reserved
            .iter_mut()
            .chain(names.forbidden_substrings.iter_mut())
        {
            *word = word.to_lowercase();
        }
        let data = Self {
            templates: characters.templates,
            levels: levels.levels,
            classes: levels.classes,
            names,
            combat: CombatData::embedded()?,
            npcs: crate::NpcData::embedded()?,
        };
        data.check_starting_items(&characters_origin)?;
        Ok(data)
    }

    /// Checks every template's starting items against the item templates
    /// (`combat`); the error names `origin` (characters.ron) and the field.
    fn check_starting_items(&self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker::new(origin);
        for (t, template) in self.templates.iter().enumerate() {
            let kit = &template.starting_items;
            check.require(
                kit.len() <= MAX_STARTING_ITEMS,
                format!("templates[{t}].starting_items"),
                format!("at most {MAX_STARTING_ITEMS} entries"),
                kit.len(),
            )?;
            for (i, &(item, count)) in kit.iter().enumerate() {
                let field = format!("templates[{t}].starting_items[{i}]");
                let Some(def) = self.combat.item(item) else {
                    return Err(check.invalid(field, "an item of items.ron", item));
                };
                check.require(
                    (1..=def.max_stack).contains(&count),
                    field,
                    format!("a count of 1..={} (the item's max_stack)", def.max_stack),
                    count,
                )?;
            }
        }
        Ok(())
    }

    /// Checks every spawn point lies inside `world` (centred on the
    /// origin); the error names `characters.ron` under `dir`.
    pub fn check_world(&self, dir: &str, world: &WorldConfig) -> Result<(), ConfigError> {
        let origin = format!("{}/{CHARACTERS}", dir.trim_end_matches('/'));
        let check = Checker::new(&origin);
        let half = world.extent().map(|e| e / 2.0);
        for (t, template) in self.templates.iter().enumerate() {
            let r = template.spawn_radius;
            for (s, &(x, y, z)) in template.spawn_points.iter().enumerate() {
                // The whole starting area must be inside, not just its centre.
                let inside = [(x, r), (y, r), (z, 0.0)]
                    .iter()
                    .zip(half)
                    .all(|((v, r), h)| -h <= *v - r && *v + r < h);
                check.require(
                    inside,
                    format!("templates[{t}].spawn_points[{s}]"),
                    format!(
                        "inside the world: -{} <= x, y < {}, -{} <= z < {}",
                        half[0], half[0], half[2], half[2]
                    ),
                    format_args!("({x}, {y}, {z})"),
                )?;
            }
        }
        self.npcs.check_world(dir, world)
    }

    /// The game data built into the server: the files of `config/data/` at
    /// build time (what `tos-server` uses unless `runtime.game_data_dir`
    /// names a directory).
    pub fn embedded() -> Result<Self, ConfigError> {
        let data = Self::from_ron_strs(
            "config/data (built in)",
            include_str!("../data/characters.ron"),
            include_str!("../data/levels.ron"),
            include_str!("../data/names.ron"),
        )?;
        data.check_references("config/data (built in)")?;
        Ok(data)
    }

    /// Where a new character of `template` appears: spawn point
    /// `seed % points`, moved by up to `spawn_radius` in a direction and at
    /// a distance drawn from `seed` (uniform over the disc).
    pub fn spawn_position(template: &CharacterTemplate, seed: u64) -> [f32; 3] {
        let points = &template.spawn_points;
        let Some(&(x, y, z)) = points.get((seed % points.len().max(1) as u64) as usize) else {
            return [0.0; 3];
        };
        // Two well-mixed fractions from the seed (the workspace's SplitMix64).
        let mut rng = tos_protocol::rng::SplitMix64::new(seed);
        let mut fraction = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let a = fraction() * std::f64::consts::TAU;
        let d = template.spawn_radius * fraction().sqrt();
        [(x + d * a.cos()) as f32, (y + d * a.sin()) as f32, z as f32]
    }

    /// The template with `id`.
    pub fn template(&self, id: u16) -> Option<&CharacterTemplate> {
        self.templates.iter().find(|template| template.id == id)
    }

    /// The growth of `class`.
    pub fn class(&self, class: &str) -> Option<&ClassGrowth> {
        self.classes.iter().find(|growth| growth.class == class)
    }

    /// The highest level.
    pub fn max_level(&self) -> u16 {
        // Validation guarantees level i is entry i - 1, so this is the count.
        self.levels.last().map_or(1, |entry| entry.level)
    }

    /// Cumulative experience needed to reach `level` (`None` past the table).
    pub fn exp_for_level(&self, level: u16) -> Option<u64> {
        let index = usize::from(level).checked_sub(1)?;
        self.levels.get(index).map(|entry| entry.exp)
    }

    /// The level a character with `exp` experience has: the highest level
    /// whose requirement is at most `exp`.
    pub fn level_for_exp(&self, exp: u64) -> u16 {
        // Requirements strictly increase, so the table is sorted.
        let reached = self.levels.partition_point(|entry| entry.exp <= exp);
        self.levels
            .get(reached.saturating_sub(1))
            .map_or(1, |entry| entry.level)
    }

    /// Maxima and regeneration of `template` at `level` (clamped to
    /// `1..=max_level()`): base + growth × (level − 1).
    pub fn stats_at(&self, template: &CharacterTemplate, level: u16) -> Option<LevelStats> {
        let growth = self.class(&template.class)?;
        let level = level.clamp(1, self.max_level());
        let above = f64::from(level - 1);
        let regen = growth.regen_per_level * above;
        Some(LevelStats {
            level,
            hp_max: template.base_hp + growth.hp_per_level * above,
            mp_max: template.base_mp + growth.mp_per_level * above,
            cp_max: template.base_cp + growth.cp_per_level * above,
            hp_regen: growth.hp_regen + regen,
            mp_regen: growth.mp_regen + regen,
            cp_regen: growth.cp_regen + regen,
        })
    }

    /// Checks a new character's name: length in characters within
    /// `min_len..=max_len`, ASCII letters (and digits if allowed), starting
    /// with a letter ([`NameError::Invalid`]); not reserved and containing
    /// no forbidden word, case-insensitively ([`NameError::Reserved`]).
    pub fn check_name(&self, name: &str) -> Result<(), NameError> {
        let rules = &self.names;
        let len = name.len();
        let well_formed = len >= usize::from(rules.min_len)
            && len <= usize::from(rules.max_len)
            && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || (rules.allow_digits && b.is_ascii_digit()));
        if !well_formed {
            return Err(NameError::Invalid);
        }
        // Only ASCII is left, so byte length is the character count.
        let lower = name.to_ascii_lowercase();
        let reserved = rules.reserved.contains(&lower)
            || rules
                .forbidden_substrings
                .iter()
                .any(|word| lower.contains(word.as_str()));
        if reserved {
            return Err(NameError::Reserved);
        }
        Ok(())
    }
}

fn validate_levels(file: &LevelsFile, check: &Checker<'_>) -> Result<(), ConfigError> {
    check.require(
        !file.levels.is_empty() && file.levels.len() <= usize::from(u16::MAX),
        "levels",
        "1 to 65535 levels",
        file.levels.len(),
    )?;
    check.require(
        file.levels[0].exp == 0,
        "levels[0].exp",
        "0 (level 1 needs no experience)",
        file.levels[0].exp,
    )?;
    for (i, entry) in file.levels.iter().enumerate() {
        check.require(
            usize::from(entry.level) == i + 1,
            format!("levels[{i}].level"),
            format!("{} (levels are listed in order from 1)", i + 1),
            entry.level,
        )?;
        if i > 0 {
            let previous = file.levels[i - 1].exp;
            check.require(
                entry.exp > previous,
                format!("levels[{i}].exp"),
                format!("more than levels[{}].exp ({previous})", i - 1),
                entry.exp,
            )?;
        }
    }
    check.require(
        !file.classes.is_empty(),
        "classes",
        "at least one class",
        "none",
    )?;
    let mut seen = HashSet::new();
    for (i, growth) in file.classes.iter().enumerate() {
        let field = |name: &str| format!("classes[{i}].{name}");
        check.require(
            !growth.class.trim().is_empty(),
            field("class"),
            "a non-empty class name",
            format_args!("{:?}", growth.class),
        )?;
        check.require(
            seen.insert(growth.class.as_str()),
            field("class"),
            "a class name not listed before",
            format_args!("{:?}", growth.class),
        )?;
        for (name, value) in [
            ("hp_per_level", growth.hp_per_level),
            ("mp_per_level", growth.mp_per_level),
            ("cp_per_level", growth.cp_per_level),
            ("hp_regen", growth.hp_regen),
            ("mp_regen", growth.mp_regen),
            ("cp_regen", growth.cp_regen),
            ("regen_per_level", growth.regen_per_level),
        ] {
            finite_at_least(check, &field(name), value, 0.0)?;
        }
    }
    Ok(())
}

fn validate_templates(
    file: &CharactersFile,
    levels: &LevelsFile,
    check: &Checker<'_>,
) -> Result<(), ConfigError> {
    check.require(
        !file.templates.is_empty(),
        "templates",
        "at least one template",
        "none",
    )?;
    let mut ids = HashSet::new();
    for (i, template) in file.templates.iter().enumerate() {
        let field = |name: &str| format!("templates[{i}].{name}");
        check.require(
            ids.insert(template.id),
            field("id"),
            "an id not used by an earlier template",
            template.id,
        )?;
        for (name, value) in [("name", &template.name), ("race", &template.race)] {
            check.require(
                !value.trim().is_empty(),
                field(name),
                "a non-empty name",
                format_args!("{value:?}"),
            )?;
        }
        check.require(
            levels.classes.iter().any(|c| c.class == template.class),
            field("class"),
            "a class listed in levels.ron `classes`",
            format_args!("{:?}", template.class),
        )?;
        let stats = &template.stats;
        for (name, value) in [
            ("int", stats.int),
            ("str", stats.str),
            ("con", stats.con),
            ("men", stats.men),
            ("dex", stats.dex),
            ("wit", stats.wit),
        ] {
            check.at_least(&field(&format!("stats.{name}")), value, 1)?;
        }
        for (name, value) in [
            ("base_hp", template.base_hp),
            ("base_mp", template.base_mp),
            ("base_cp", template.base_cp),
            ("move_speed", template.move_speed),
        ] {
            check.positive(&field(name), value)?;
        }
        check.require(
            !template.spawn_points.is_empty(),
            field("spawn_points"),
            "at least one spawn point",
            "none",
        )?;
        for (s, &(x, y, z)) in template.spawn_points.iter().enumerate() {
            check.require(
                x.is_finite() && y.is_finite() && z.is_finite(),
                field(&format!("spawn_points[{s}]")),
                "finite coordinates",
                format_args!("({x}, {y}, {z})"),
            )?;
        }
        check.require(
            template.spawn_radius.is_finite() && template.spawn_radius >= 0.0,
            field("spawn_radius"),
            "a finite distance of at least 0",
            template.spawn_radius,
        )?;
        check.in_range(&field("appearance_bytes"), template.appearance_bytes, 0, 64)?;
    }
    Ok(())
}

fn validate_names(rules: &NameRules, check: &Checker<'_>) -> Result<(), ConfigError> {
    check.in_range("min_len", rules.min_len, 1, 32)?;
    check.in_range("max_len", rules.max_len, rules.min_len, 32)?;
    for (list, words) in [
        ("reserved", &rules.reserved),
        ("forbidden_substrings", &rules.forbidden_substrings),
    ] {
        for (i, word) in words.iter().enumerate() {
            check.require(
                !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric()),
                format!("{list}[{i}]"),
                "a non-empty word of ASCII letters and digits",
                format_args!("{word:?}"),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
    }

    fn shipped_text(file: &str) -> String {
        std::fs::read_to_string(shipped_dir().join(file)).unwrap()
    }

    fn shipped() -> GameData {
        GameData::load(&shipped_dir()).unwrap()
    }

    #[test]
    fn an_npc_naming_a_missing_skill_or_loot_table_is_refused_by_name() {
        let mut data = shipped();
        assert!(data.check_references("config/data").is_ok());
        data.npcs.templates[0].skills.push(60_000);
        let k = data.npcs.templates[0].skills.len() - 1;
        match data.check_references("config/data") {
            Err(ConfigError::Invalid { origin, field, .. }) => {
                assert_eq!(origin, "config/data/npcs.ron");
                assert_eq!(field, format!("templates[0].skills[{k}]"));
            }
            other => panic!("expected an Invalid error, got {other:?}"),
        }
        let mut data = shipped();
        data.npcs.templates[1].loot = Some(60_000);
        match data.check_references("config/data") {
            Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "templates[1].loot"),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    /// Loads the shipped files with `file` edited by `edit`, and returns the
    /// error's origin, field and display text.
    fn broken(file: &str, edit: impl Fn(String) -> String) -> (String, String, String) {
        let mut texts = [CHARACTERS, LEVELS, NAMES].map(shipped_text);
        let index = [CHARACTERS, LEVELS, NAMES]
            .iter()
            .position(|f| *f == file)
            .unwrap();
        let edited = edit(texts[index].clone());
        assert_ne!(edited, texts[index], "the edit changed nothing");
        texts[index] = edited;
        match GameData::from_ron_strs("config/data", &texts[0], &texts[1], &texts[2]) {
            Err(error @ ConfigError::Invalid { .. }) => {
                let display = error.to_string();
                let ConfigError::Invalid { origin, field, .. } = error else {
                    unreachable!()
                };
                (origin, field, display)
            }
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    fn expect(file: &str, field: &str, edit: impl Fn(String) -> String) {
        let (origin, found_field, display) = broken(file, edit);
        assert_eq!(origin, format!("config/data/{file}"));
        assert_eq!(found_field, field, "{display}");
        assert!(
            display.starts_with(&format!("config/data/{file}: invalid `{field}`")),
            "{display}"
        );
    }

    #[test]
    fn shipped_files_load_and_fit_the_default_world() {
        let data = shipped();
        assert!(data.templates.len() >= 4);
        assert_eq!(data.max_level(), 20);
        data.check_world("config/data", &WorldConfig::default())
            .unwrap();
        for template in &data.templates {
            assert!(data.stats_at(template, 1).is_some(), "{}", template.name);
        }
    }

    #[test]
    fn starting_items_must_be_items_within_their_stack() {
        let fighter = |s: String| {
            s.replacen(
                "starting_items: [(1, 1), (8, 5)]",
                "starting_items: [(1, 1), (999, 5)]",
                1,
            )
        };
        expect(CHARACTERS, "templates[0].starting_items[1]", fighter);
        // Healing potions stack to 20.
        let too_many = |s: String| s.replacen("(8, 5)]", "(8, 21)]", 1);
        expect(CHARACTERS, "templates[0].starting_items[1]", too_many);
        let zero = |s: String| s.replacen("[(1, 1),", "[(1, 0),", 1);
        expect(CHARACTERS, "templates[0].starting_items[0]", zero);
        let kit = shipped().template(1).unwrap().starting_items.clone();
        assert_eq!(
            kit,
            [(1, 1), (8, 5)],
            "a fighter starts with a sword and potions"
        );
    }

    #[test]
    fn lookups() {
        let data = shipped();
        let fighter = data.template(1).unwrap();
        assert_eq!(fighter.name, "Human Fighter");
        assert!(data.template(999).is_none());
        assert_eq!(
            GameData::embedded().unwrap(),
            data,
            "the built-in copy is the shipped one"
        );
        // New characters spread over the starting area, never outside it.
        let (cx, cy, _) = fighter.spawn_points[0];
        let spots: Vec<[f32; 3]> = (0..200)
            .map(|s| GameData::spawn_position(fighter, s))
            .collect();
        for p in &spots {
            let d = (f64::from(p[0]) - cx).hypot(f64::from(p[1]) - cy);
            assert!(d <= fighter.spawn_radius + 1.0, "{p:?}");
        }
        let far = spots
            .iter()
            .filter(|p| {
                (f64::from(p[0]) - cx).hypot(f64::from(p[1]) - cy) > fighter.spawn_radius / 2.0
            })
            .count();
        assert!(
            far > 50,
            "spread over the disc, not bunched at its centre: {far}"
        );
        assert_eq!(data.exp_for_level(1), Some(0));
        assert_eq!(data.exp_for_level(2), Some(68));
        assert_eq!(data.exp_for_level(0), None);
        assert_eq!(data.exp_for_level(21), None);
        assert_eq!(data.level_for_exp(0), 1);
        assert_eq!(data.level_for_exp(67), 1);
        assert_eq!(data.level_for_exp(68), 2);
        assert_eq!(data.level_for_exp(835_853), 19);
        assert_eq!(data.level_for_exp(u64::MAX), 20);
        let one = data.stats_at(fighter, 1).unwrap();
        assert_eq!((one.hp_max, one.mp_max, one.cp_max), (80.0, 30.0, 32.0));
        assert_eq!(one.hp_regen, 2.0);
        let ten = data.stats_at(fighter, 10).unwrap();
        assert_eq!(ten.hp_max, 80.0 + 12.0 * 9.0);
        assert!((ten.hp_regen - (2.0 + 0.05 * 9.0)).abs() < 1e-9);
        // Clamped to the table.
        assert_eq!(data.stats_at(fighter, 0).unwrap().level, 1);
        assert_eq!(data.stats_at(fighter, 500).unwrap().level, 20);
    }

    #[test]
    fn names() {
        let data = shipped();
        assert_eq!(data.check_name("Aria"), Ok(()));
        assert_eq!(data.check_name("Bob42"), Ok(()));
        for bad in [
            "",
            "Al",
            "A234567890123456X",
            "4ria",
            "Ari a",
            "Ária",
            "Ari_a",
            "Ari-a",
        ] {
            assert_eq!(data.check_name(bad), Err(NameError::Invalid), "{bad}");
        }
        for reserved in ["Admin", "gm", "SYSTEM", "SuperAdmin", "GameMasterX"] {
            let result = data.check_name(reserved);
            assert!(result.is_err(), "{reserved}");
        }
        assert_eq!(data.check_name("System"), Err(NameError::Reserved));
        assert_eq!(data.check_name("xAdMiNx"), Err(NameError::Reserved));
    }

    #[test]
    fn every_rule_names_the_file_and_the_field() {
        // characters.ron
        expect(CHARACTERS, "templates[1].id", |t| {
            t.replacen("id: 2,", "id: 1,", 1)
        });
        expect(CHARACTERS, "templates[0].stats.con", |t| {
            t.replacen("con: 43", "con: 0", 1)
        });
        expect(CHARACTERS, "templates[0].spawn_points", |t| {
            t.replacen(
                "spawn_points: [(-100000.0, 0.0, 0.0)]",
                "spawn_points: []",
                1,
            )
        });
        expect(CHARACTERS, "templates[2].spawn_points[0]", |t| {
            t.replacen("(900.0, 1000.0, 0.0)", "(900.0, inf, 0.0)", 1)
        });
        expect(CHARACTERS, "templates[0].spawn_radius", |t| {
            t.replacen("spawn_radius: 95000.0", "spawn_radius: -1.0", 1)
        });
        expect(CHARACTERS, "templates[0].base_hp", |t| {
            t.replacen("base_hp: 80.0", "base_hp: 0.0", 1)
        });
        expect(CHARACTERS, "templates[0].move_speed", |t| {
            t.replacen("move_speed: 115.0", "move_speed: -1.0", 1)
        });
        expect(CHARACTERS, "templates[0].class", |t| {
            t.replacen("class: \"Fighter\"", "class: \"Bard\"", 1)
        });
        expect(CHARACTERS, "templates[0].name", |t| {
            t.replacen("\"Human Fighter\"", "\" \"", 1)
        });
        expect(CHARACTERS, "templates[0].appearance_bytes", |t| {
            t.replacen("appearance_bytes: 8", "appearance_bytes: 200", 1)
        });
        expect(CHARACTERS, "templates", |_| "(templates: [])".into());
        // levels.ron
        expect(LEVELS, "levels[0].exp", |t| {
            t.replacen("(level: 1, exp: 0)", "(level: 1, exp: 5)", 1)
        });
        expect(LEVELS, "levels[3].exp", |t| {
            t.replacen("(level: 4, exp: 1168)", "(level: 4, exp: 363)", 1)
        });
        expect(LEVELS, "levels[2].level", |t| {
            t.replacen("(level: 3, exp: 363),\n", "", 1)
        });
        expect(LEVELS, "levels", |t| {
            let start = t.find("levels: [").unwrap();
            let end = t[start..].find(']').unwrap() + start + 1;
            format!("{}levels: []{}", &t[..start], &t[end..])
        });
        expect(LEVELS, "classes[1].class", |t| {
            t.replacen("class: \"Mystic\"", "class: \"Fighter\"", 1)
        });
        expect(LEVELS, "classes[0].hp_regen", |t| {
            t.replacen("hp_regen: 2.0", "hp_regen: -2.0", 1)
        });
        // names.ron
        expect(NAMES, "min_len", |t| {
            t.replacen("min_len: 3", "min_len: 0", 1)
        });
        expect(NAMES, "max_len", |t| {
            t.replacen("max_len: 16", "max_len: 2", 1)
        });
        expect(NAMES, "max_len", |t| {
            t.replacen("max_len: 16", "max_len: 33", 1)
        });
        expect(NAMES, "reserved[0]", |t| {
            t.replacen(
                "\"admin\", \"administrator\"",
                "\"ad min\", \"administrator\"",
                1,
            )
        });
        expect(NAMES, "forbidden_substrings[0]", |t| {
            t.replacen(
                "forbidden_substrings: [\"admin\"",
                "forbidden_substrings: [\"\"",
                1,
            )
        });
    }

    #[test]
    fn spawn_points_outside_the_world_are_refused() {
        let mut data = shipped();
        // A starting area that reaches past the edge is refused too.
        let mut edge = shipped();
        edge.templates[0].spawn_points[0] = (400_000.0, 0.0, 0.0);
        let error = edge
            .check_world("config/data", &WorldConfig::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("templates[0].spawn_points[0]"), "{error}");
        data.templates[1].spawn_points.push((500_000.0, 0.0, 0.0));
        let error = data
            .check_world("config/data", &WorldConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("config/data/characters.ron: invalid `templates[1].spawn_points[1]`"),
            "{error}"
        );
    }

    #[test]
    fn parse_errors_and_missing_files_name_the_file() {
        let texts = [CHARACTERS, LEVELS, NAMES].map(shipped_text);
        let error = GameData::from_ron_strs("d", &texts[0], "(levels: [], clases: [])", &texts[2])
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("d/levels.ron:"), "{error}");
        assert!(error.contains("clases"), "{error}");
        let error = GameData::load(Path::new("/nonexistent-dir")).unwrap_err();
        assert!(matches!(error, ConfigError::Io { .. }));
        assert!(error.to_string().contains("characters.ron"), "{error}");
    }
}
