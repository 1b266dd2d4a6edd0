//! [`StoreError`]: every way a store operation can fail, as one enum the
//! game layer can match on without knowing which database is behind it.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The account or character name is already used (names are compared
    /// case-insensitively, and deleted characters keep their names).
    #[error("name already taken")]
    NameTaken,
    /// The account already has `max_per_account` characters (deleted ones
    /// still waiting to be purged count; see `Backend::create_character`).
    #[error("too many characters on this account")]
    TooManyCharacters,
    /// No such character on this account.
    #[error("not found")]
    NotFound,
    /// Restoring a character that is not deleted.
    #[error("character is not deleted")]
    NotDeleted,
    /// Restoring a character deleted longer ago than the restore window.
    #[error("restore window has passed")]
    RestoreExpired,
    /// A value the caller passed cannot be stored (too long, out of range).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A row read back from the database does not fit the data model
    /// (corrupt blob, out-of-range number); never a panic.
    #[error("corrupt data in the database: {0}")]
    Corrupt(String),
    /// The database schema is newer than this build understands.
    #[error("database schema version {found} is newer than this build's {supported}")]
    SchemaTooNew {
        /// Version recorded in the database.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// The store is shutting down or its thread has ended.
    #[error("store is shut down")]
    Closed,
    /// An error from SQLite.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An error from PostgreSQL (including a lost connection).
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),
    /// An I/O error (spawning a thread, creating a directory).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Injected by tests and tools that simulate a failing database.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed (the database
    /// was down, busy or slow), as opposed to a refusal that will repeat.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Sqlite(_) | Self::Postgres(_) | Self::Io(_) | Self::Unavailable(_)
        )
    }
}
