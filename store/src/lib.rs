//! # tos-store: every database read and write of the world server
//!
//! The game layer runs on pinned core threads that must never wait on a
//! database. They send [`StoreCommand`]s over a bounded channel to the store
//! thread and get plain [`StoreReply`] values back on their own reply
//! channels: no callbacks, no futures.
//!
//! Map of the crate:
//!
//! - module `model`: the data model — [`Account`], [`NewCharacter`],
//!   [`CharacterRecord`], [`CharacterState`] (what write-behind saves) and
//!   their ids;
//! - module `backend`: the [`Backend`] trait (synchronous, object-safe,
//!   called only on store threads) and the name-key rule ([`name_key`]);
//! - module `items`: the byte layout of a character's items in its row
//!   ([`encode_items`], [`decode_items`]; also what a node hand-off carries);
//! - module `sqlite`: [`SqliteBackend`], the embedded default (WAL file);
//! - module `pg`: [`PostgresBackend`], the store for a fleet;
//! - module `service`: [`Store::start`], [`StoreHandle`], [`StoreClient`],
//!   the command and reply types, write-behind, retries and saturation;
//! - module `metrics`: [`StoreMetrics`] and its Prometheus rendering;
//! - module `error`: [`StoreError`];
//! - [`open_backend`]: a migrated backend from the `store` config section.
//!
//! Schema, migrations, policy and benchmarks: `docs/PERSISTENCE.md`.

mod backend;
mod error;
mod items;
mod metrics;
mod model;
mod pg;
mod service;
mod sqlite;

use std::path::Path;
use std::time::Duration;

pub use backend::{Backend, name_key};
pub use error::StoreError;
pub use items::{MAX_SAVED_ITEMS, decode_items, encode_items};
pub use metrics::StoreMetrics;
pub use model::{
    Account, AccountId, CHARACTER_STATE_VERSION, CharacterId, CharacterRecord, CharacterState,
    ItemPlace, MAX_APPEARANCE_BYTES, NewCharacter, SavedItem,
};
pub use pg::{PostgresBackend, is_plain_identifier};
pub use service::{
    RequestId, Store, StoreClient, StoreCommand, StoreHandle, StoreReply, StoreRequest,
    StoreResponse, StoreSettings,
};
pub use sqlite::SqliteBackend;
pub use tos_config::{StoreBackend, StoreConfig};

/// Opens the backend the `store` section names and migrates it. A relative
/// `sqlite_file` is taken relative to `data_dir`. Blocking: call it at
/// start-up, before the cores run.
pub fn open_backend(config: &StoreConfig, data_dir: &Path) -> Result<Box<dyn Backend>, StoreError> {
    let mut backend: Box<dyn Backend> = match config.backend {
        StoreBackend::Sqlite => {
            let path = data_dir.join(&config.sqlite_file);
            let timeout = Duration::from_millis(u64::from(config.busy_timeout_ms));
            Box::new(SqliteBackend::open(&path, timeout)?)
        }
        StoreBackend::Postgres => {
            let url = config
                .postgres_url
                .as_deref()
                .ok_or_else(|| StoreError::Invalid("store.postgres_url is not set".into()))?;
            Box::new(PostgresBackend::connect(
                url,
                config.postgres_schema.as_deref(),
            )?)
        }
    };
    backend.migrate()?;
    Ok(backend)
}
