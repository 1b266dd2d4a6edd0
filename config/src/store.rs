//! The `store` section: which database holds accounts and characters, and
//! how the store threads batch and retry their writes.

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::check::Checker;

/// Which database the store threads talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreBackend {
    /// An embedded SQLite file (WAL mode): nothing to install, one process.
    Sqlite,
    /// A PostgreSQL server at `store.postgres_url`: the store for a fleet.
    Postgres,
}

/// Database choice, write-behind timing and the bounds that protect the
/// server when the database is slow or down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `Sqlite` (the embedded default) or `Postgres`.
    pub backend: StoreBackend,
    /// SQLite database file, relative to the data directory unless absolute.
    pub sqlite_file: String,
    /// PostgreSQL connection URL, such as
    /// `"postgres://tos@db.internal:5432/tos"`; required with `Postgres`.
    pub postgres_url: Option<String>,
    /// PostgreSQL schema holding the tables; `None` uses the connection's
    /// default search path (normally `public`).
    pub postgres_schema: Option<String>,
    /// How long a changed character may wait before it is written, in ms:
    /// all pending saves go in one transaction this often (and so this is
    /// the most a crash of the database side can lose).
    pub save_interval_ms: u32,
    /// Characters whose latest state may wait unwritten at once. Saves for
    /// characters already pending always fit (latest wins); new ones beyond
    /// this are refused and the store reports itself saturated.
    pub max_pending_saves: u32,
    /// Above this many pending saves the store reports itself saturated and
    /// the game refuses new logins, at most `max_pending_saves`.
    pub saturation_pending_saves: u32,
    /// Commands the channel from the cores to the store holds; a full
    /// channel hands the command back to the core ("server busy").
    pub queue_capacity: u32,
    /// First wait before retrying a failed batch, in ms; doubles each time.
    pub retry_initial_ms: u32,
    /// Longest wait between two retries of a failed batch, in ms.
    pub retry_max_ms: u32,
    /// Longest SQLite waits for a lock held by another connection, in ms.
    pub busy_timeout_ms: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sqlite,
            sqlite_file: "tos.sqlite3".into(),
            postgres_url: None,
            postgres_schema: None,
            save_interval_ms: 1000,
            max_pending_saves: 100_000,
            saturation_pending_saves: 50_000,
            queue_capacity: 65_536,
            retry_initial_ms: 100,
            retry_max_ms: 5000,
            busy_timeout_ms: 5000,
        }
    }
}

impl StoreConfig {
    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.require(
            !self.sqlite_file.trim().is_empty(),
            "store.sqlite_file",
            "a non-empty file name",
            format_args!("{:?}", self.sqlite_file),
        )?;
        if self.backend == StoreBackend::Postgres {
            check.require(
                self.postgres_url.as_deref().is_some_and(|url| {
                    url.starts_with("postgres://") || url.starts_with("postgresql://")
                }),
                "store.postgres_url",
                "Some(\"postgres://user@host:port/database\") when backend is Postgres",
                format_args!("{:?}", self.postgres_url),
            )?;
        }
        if let Some(schema) = &self.postgres_schema {
            // The schema name is put into SQL as an identifier, so only plain
            // identifiers are accepted.
            check.require(
                !schema.is_empty()
                    && schema.len() <= 63
                    && schema
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !schema.as_bytes()[0].is_ascii_digit(),
                "store.postgres_schema",
                "None, or Some(\"name\") of ASCII letters, digits and '_' (not first), at most 63",
                format_args!("Some({schema:?})"),
            )?;
        }
        check.in_range("store.save_interval_ms", self.save_interval_ms, 1, 60_000)?;
        check.at_least("store.max_pending_saves", self.max_pending_saves, 1)?;
        check.in_range(
            "store.saturation_pending_saves",
            self.saturation_pending_saves,
            1,
            self.max_pending_saves.max(1),
        )?;
        check.at_least("store.queue_capacity", self.queue_capacity, 1)?;
        check.at_least("store.retry_initial_ms", self.retry_initial_ms, 1)?;
        check.at_least(
            "store.retry_max_ms",
            self.retry_max_ms,
            self.retry_initial_ms,
        )?;
        check.at_least("store.busy_timeout_ms", self.busy_timeout_ms, 1)?;
        Ok(())
    }
}
