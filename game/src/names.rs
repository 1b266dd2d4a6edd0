//! Account-name rules (password lengths are settings, `accounts.*_password_len`;
//! character names are game data: `tos_config::GameData::check_name`).

/// Shortest account name.
pub const ACCOUNT_MIN: usize = 3;
/// Longest account name (the wire allows no more).
pub const ACCOUNT_MAX: usize = 32;
/// Whether `name` is a valid account name: 3–32 ASCII letters, digits,
/// `_`, `-` or `.`, starting with a letter or digit. Names are compared
/// case-insensitively by the store.
pub fn account_name_ok(name: &str) -> bool {
    (ACCOUNT_MIN..=ACCOUNT_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        assert!(account_name_ok("abc"));
        assert!(account_name_ok("Player_01.x-y"));
        assert!(!account_name_ok("ab"));
        assert!(!account_name_ok(&"a".repeat(33)));
        assert!(!account_name_ok("_abc"));
        assert!(!account_name_ok("a b c"));
        assert!(!account_name_ok("ÄÖÜ"));
    }
}
