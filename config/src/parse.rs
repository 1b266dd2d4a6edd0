//! Reading RON text into our types, with errors that name file, line and field.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::ConfigError;

/// Reads a whole file as text.
pub(crate) fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Parses `text` as a `T`, reporting errors against `origin` (every RON
/// file of the project is read through here, so errors read the same).
pub fn from_ron<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    ron::Options::default()
        .from_str(text)
        .map_err(|error| ConfigError::Parse {
            origin: origin.to_owned(),
            line: error.position.line,
            column: error.position.col,
            message: describe(&error.code),
        })
}

/// ron's own wording for unknown names says which Rust type they were found
/// in; operators know the file's sections, not our type names, so unknown
/// fields and variants are reworded here, naming the section.
fn describe(code: &ron::Error) -> String {
    match code {
        ron::Error::NoSuchStructField {
            expected,
            found,
            outer,
        } => format!(
            "unknown field `{found}`{}; expected one of: {}",
            place(outer.as_deref()),
            list(expected)
        ),
        ron::Error::NoSuchEnumVariant {
            expected,
            found,
            outer,
        } => format!(
            "unknown variant `{found}`{}; expected one of: {}",
            place(outer.as_deref()),
            list(expected)
        ),
        other => other.to_string(),
    }
}

/// " in the `network` section", from a Rust type name.
fn place(type_name: Option<&str>) -> String {
    let Some(type_name) = type_name else {
        return String::new();
    };
    match SECTIONS.iter().find(|(name, _)| *name == type_name) {
        Some((_, section)) => format!(" in {section}"),
        None => format!(" in `{type_name}`"),
    }
}

/// Where each type appears in the files, for [`place`].
const SECTIONS: &[(&str, &str)] = &[
    ("ServerConfig", "the top level of the server settings"),
    ("NetworkConfig", "the `network` section"),
    ("RuntimeConfig", "the `runtime` section"),
    ("CoreSelection", "`runtime.cores`"),
    ("ProtocolConfig", "the `protocol` section"),
    ("SecurityConfig", "the `security` section"),
    ("AoiConfig", "the `aoi` section"),
    ("InterestDistances", "`aoi.distances`"),
    ("SyncConfig", "the `sync` section"),
    ("WorldConfig", "the `world` section"),
    ("AuthorityConfig", "the `authority` section"),
    ("AccountsConfig", "the `accounts` section"),
    ("CharactersFile", "the top level of characters.ron"),
    (
        "CharacterTemplate",
        "a character template in characters.ron",
    ),
    ("BaseStats", "a template's `stats` in characters.ron"),
    ("LevelsFile", "the top level of levels.ron"),
    ("LevelEntry", "a level in levels.ron"),
    ("ClassGrowth", "a class's growth in levels.ron"),
    ("NameRules", "names.ron"),
    ("SkillsFile", "the top level of skills.ron"),
    ("SkillTemplate", "a skill in skills.ron"),
    ("SkillBuff", "a skill's `buff` in skills.ron"),
    ("ItemsFile", "the top level of items.ron"),
    ("ItemTemplate", "an item in items.ron"),
    ("StatBonus", "an item's `bonus` in items.ron"),
    ("ConsumableEffect", "an item's `consumable` in items.ron"),
    ("LootFile", "the top level of loot.ron"),
    ("LootTable", "a loot table in loot.ron"),
    ("LootEntry", "a loot table entry in loot.ron"),
    ("IoBackend", "`network.io_backend`"),
    ("Steering", "`network.steering`"),
    ("ShardLayout", "the top level of the shard layout"),
    ("LayoutKind", "the layout's `kind`"),
    ("ShardSpec", "an `Explicit` shard"),
];

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "(none)".to_owned();
    }
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads 64 hex digits (a 32-byte key, as settings and cluster files write
/// keys); the error says what is wrong.
pub fn parse_hex32(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "expected 64 hex digits, found {} characters",
            text.len()
        ));
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        // Checked above: every pair is two hex digits.
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    Ok(out)
}

#[cfg(test)]
mod hex_tests {
    #[test]
    fn keys_parse_and_bad_keys_say_why() {
        let key = "00ff".repeat(16);
        let parsed = super::parse_hex32(&key).unwrap();
        assert_eq!(parsed[0], 0);
        assert_eq!(parsed[1], 0xff);
        assert!(super::parse_hex32("abc").is_err());
        assert!(super::parse_hex32(&"zz".repeat(32)).is_err());
    }
}
