//! What every core's game layer shares: the store, the auth pool, the game
//! data, the online registry, the login rate limits, the settings and the
//! counters. Built once at start; each core holds a clone (all `Arc`s).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tos_auth::{AuthPool, RateLimiter};
use tos_config::GameData;
use tos_store::StoreClient;

use crate::counters::GameCounters;
use crate::inventory::ItemBook;
use crate::registry::OnlineRegistry;

/// The game rules an operator sets (from `accounts` and `store` in the
/// server config).
#[derive(Debug, Clone)]
pub struct GameSettings {
    /// Whether clients may register accounts (off when a studio's own
    /// login backend mints external tickets).
    pub allow_register: bool,
    /// Characters per account.
    pub max_characters: u8,
    /// How long a deleted character can be restored, in seconds.
    pub delete_restore_secs: u64,
    /// How long a session ticket lives, in seconds.
    pub ticket_lifetime_secs: u64,
    /// A changed character is saved at most this long after it changed.
    pub save_interval_ms: u32,
    /// Shortest password accepted at registration, in bytes.
    pub password_min: usize,
    /// Longest password, in bytes.
    pub password_max: usize,
}

impl Default for GameSettings {
    fn default() -> Self {
        Self {
            allow_register: true,
            max_characters: 7,
            delete_restore_secs: 7 * 24 * 3600,
            ticket_lifetime_secs: 24 * 3600,
            save_interval_ms: 1_000,
            password_min: 8,
            password_max: 128,
        }
    }
}

/// Rate limits on login attempts, per account name and per source address.
#[derive(Debug)]
pub struct LoginLimits {
    per_account: Mutex<RateLimiter<String>>,
    per_address: Mutex<RateLimiter<IpAddr>>,
}

impl LoginLimits {
    /// Limits of `per_account` and `per_address` attempts a minute; each
    /// table tracks at most `max_keys` keys (memory bounded whatever an
    /// attacker sends).
    pub fn new(per_account: u32, per_address: u32, max_keys: usize) -> Self {
        Self {
            per_account: Mutex::new(RateLimiter::per_minute(per_account, max_keys)),
            per_address: Mutex::new(RateLimiter::per_minute(per_address, max_keys)),
        }
    }

    /// Whether one more attempt from `address` for `account` (if any) is
    /// allowed now. Both buckets are charged.
    pub fn allow(&self, address: IpAddr, account: Option<&str>, now: Instant) -> bool {
        let by_address = self
            .per_address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(address, now)
            .is_ok();
        let by_account = account.is_none_or(|name| {
            self.per_account
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .check(name.to_ascii_lowercase(), now)
                .is_ok()
        });
        by_address && by_account
    }
}

/// Everything the cores' game layers share.
#[derive(Debug, Clone)]
pub struct Services {
    /// The store (its database thread).
    pub store: StoreClient,
    /// The password and ticket workers.
    pub auth: Arc<AuthPool>,
    /// Character templates, levels, names.
    pub data: Arc<GameData>,
    /// The game-layer rules of every item template (from `data`).
    pub items: Arc<ItemBook>,
    /// Who is online.
    pub registry: Arc<OnlineRegistry>,
    /// Login rate limits.
    pub limits: Arc<LoginLimits>,
    /// Rules.
    pub settings: Arc<GameSettings>,
    /// Counters.
    pub counters: Arc<GameCounters>,
}
