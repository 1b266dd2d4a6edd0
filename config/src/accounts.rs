//! The `accounts` section: password hashing, auth workers, tickets,
//! registration, character slots and login rate limits.

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::check::Checker;

/// Accounts, passwords, tickets and login limits (used by the game layer
/// and the `tos-auth` crate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Argon2id memory per password hash, in KiB (OWASP: 19456 = 19 MiB).
    pub argon2_m_cost_kib: u32,
    /// Argon2id passes over that memory.
    pub argon2_t_cost: u32,
    /// Argon2id lanes.
    pub argon2_p_cost: u32,
    /// Threads hashing and verifying passwords and tickets, off the cores.
    pub auth_workers: u32,
    /// Auth jobs queued before logins are refused as "server busy".
    pub auth_queue: u32,
    /// How long a session ticket (reconnects, zone transfers) is valid.
    pub session_ticket_lifetime_secs: u64,
    /// File holding the 32-byte Ed25519 seed that signs session tickets;
    /// created (mode 0600) on first start. `None` uses `ticket_signing.key`
    /// in the data directory, so session tickets survive restarts.
    pub ticket_key_file: Option<String>,
    /// Ed25519 public keys (64 hex digits each) of studio login backends
    /// whose external tickets are accepted.
    pub external_ticket_keys: Vec<String>,
    /// Let clients create accounts with a name and password.
    pub allow_register: bool,
    /// Shortest password accepted at registration, in bytes.
    pub min_password_len: u32,
    /// Longest password accepted, in bytes (bounds hashing work per login).
    pub max_password_len: u32,
    /// Characters one account may own.
    pub max_characters: u32,
    /// How long a deleted character can still be restored.
    pub delete_restore_secs: u64,
    /// Login attempts per minute per account name (all burst at once).
    pub login_attempts_per_minute_per_account: u32,
    /// Login attempts per minute per source IP address.
    pub login_attempts_per_minute_per_address: u32,
    /// Account names and addresses the rate limiters track at most; the
    /// least recently seen is forgotten beyond this.
    pub rate_limit_max_keys: u32,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            argon2_m_cost_kib: 19_456,
            argon2_t_cost: 2,
            argon2_p_cost: 1,
            auth_workers: 2,
            auth_queue: 1024,
            session_ticket_lifetime_secs: 86_400,
            ticket_key_file: None,
            external_ticket_keys: Vec::new(),
            allow_register: true,
            min_password_len: 8,
            max_password_len: 128,
            max_characters: 7,
            delete_restore_secs: 604_800,
            login_attempts_per_minute_per_account: 10,
            login_attempts_per_minute_per_address: 30,
            rate_limit_max_keys: 65_536,
        }
    }
}

/// Whether `key` is 64 hex digits (an Ed25519 public key; whether the
/// point is valid is checked when the key is loaded).
fn is_hex_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

impl AccountsConfig {
    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.in_range("accounts.argon2_p_cost", self.argon2_p_cost, 1, 16)?;
        // Argon2 needs at least 8 KiB per lane; 4 GiB is far beyond sane.
        let min_m = 8 * self.argon2_p_cost;
        check.in_range(
            "accounts.argon2_m_cost_kib",
            self.argon2_m_cost_kib,
            min_m,
            4 * 1024 * 1024,
        )?;
        check.in_range("accounts.argon2_t_cost", self.argon2_t_cost, 1, 100)?;
        check.in_range("accounts.auth_workers", self.auth_workers, 1, 256)?;
        check.at_least("accounts.auth_queue", self.auth_queue, 1)?;
        check.in_range(
            "accounts.session_ticket_lifetime_secs",
            self.session_ticket_lifetime_secs,
            60,
            30 * 86_400,
        )?;
        check.optional_path("accounts.ticket_key_file", self.ticket_key_file.as_deref())?;
        for (index, key) in self.external_ticket_keys.iter().enumerate() {
            check.require(
                is_hex_key(key.trim()),
                format!("accounts.external_ticket_keys[{index}]"),
                "64 hex digits (an Ed25519 public key)",
                format_args!("{key:?}"),
            )?;
        }
        check.in_range("accounts.min_password_len", self.min_password_len, 1, 1024)?;
        check.in_range(
            "accounts.max_password_len",
            self.max_password_len,
            self.min_password_len,
            1024,
        )?;
        check.in_range("accounts.max_characters", self.max_characters, 1, 64)?;
        check.at_least(
            "accounts.login_attempts_per_minute_per_account",
            self.login_attempts_per_minute_per_account,
            1,
        )?;
        check.at_least(
            "accounts.login_attempts_per_minute_per_address",
            self.login_attempts_per_minute_per_address,
            1,
        )?;
        check.at_least("accounts.rate_limit_max_keys", self.rate_limit_max_keys, 1)?;
        Ok(())
    }
}
