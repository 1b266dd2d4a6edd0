//! [`SqliteBackend`]: the embedded default, one SQLite file in WAL mode.
//!
//! WAL lets readers (an operator's `sqlite3` shell, a backup) run beside
//! the store thread's writes; `synchronous=NORMAL` makes a commit cost no
//! fsync (the WAL is synced at checkpoints), so a power cut may lose the
//! last commits but never corrupts the file — the same "at most about one
//! save interval lost" the write-behind already accepts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::backend::{
    CHARACTER_COLUMNS, RawCharacter, check_new_character, from_sql_u64, name_key, to_sql_u64,
};
use crate::{
    Account, AccountId, Backend, CHARACTER_STATE_VERSION, CharacterId, CharacterRecord,
    CharacterState, NewCharacter, StoreError,
};

/// Migrations, one per version, applied in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_initial.sql")),
    (2, include_str!("../migrations/sqlite/0002_items.sql")),
];

/// Statements the write-behind runs thousands of times stay prepared in
/// rusqlite's statement cache; this is its size.
const STATEMENT_CACHE: usize = 32;

/// A SQLite database file.
#[derive(Debug)]
pub struct SqliteBackend {
    path: PathBuf,
    busy_timeout: Duration,
    conn: Connection,
}

impl SqliteBackend {
    /// Opens (creating if missing) the database at `path` in WAL mode with
    /// `synchronous=NORMAL`, foreign keys on and the given busy timeout.
    /// Call [`Backend::migrate`] before use.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Self::connect(path, busy_timeout)?;
        Ok(Self {
            path: path.to_path_buf(),
            busy_timeout,
            conn,
        })
    }

    fn connect(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        // journal_mode answers with the mode in effect, so it is a query.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite refused WAL mode");
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// The file this backend writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Raw access for tests and tools (for instance to plant corrupt rows).
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Whether the error is a UNIQUE constraint violation (a name clash).
fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _)
        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

fn read_character(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawCharacter> {
    // REAL columns come back as f64; they were written from f32, so the
    // narrowing is exact.
    let f = |i: usize| row.get::<_, f64>(i).map(|v| v as f32);
    Ok(RawCharacter {
        id: row.get(0)?,
        account: row.get(1)?,
        name: row.get(2)?,
        template: row.get(3)?,
        faction: row.get(4)?,
        appearance: row.get(5)?,
        level: row.get(6)?,
        exp: row.get(7)?,
        position: [f(8)?, f(9)?, f(10)?],
        yaw: f(11)?,
        hp: f(12)?,
        mp: f(13)?,
        created_at: row.get(14)?,
        deleted_at: row.get(15)?,
        last_saved_at: row.get(16)?,
        items: row.get(17)?,
    })
}

fn load(conn: &Connection, id: i64) -> Result<Option<CharacterRecord>, StoreError> {
    let sql = format!("SELECT {CHARACTER_COLUMNS} FROM characters WHERE id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let raw = stmt.query_row([id], read_character).optional()?;
    raw.map(RawCharacter::into_record).transpose()
}

impl Backend for SqliteBackend {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version    INTEGER PRIMARY KEY,
                 applied_at INTEGER NOT NULL
             )",
        )?;
        let supported = MIGRATIONS.last().map_or(0, |m| m.0);
        for &(version, sql) in MIGRATIONS {
            // IMMEDIATE takes the write lock first, so two processes
            // migrating at once apply each version once.
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: i64 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )?;
            if current > supported {
                return Err(StoreError::SchemaTooNew {
                    found: current,
                    supported,
                });
            }
            if current >= version {
                continue;
            }
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?1, strftime('%s','now'))",
                [version],
            )?;
            tx.commit()?;
            tracing::info!(version, "sqlite schema migrated");
        }
        Ok(())
    }

    fn schema_version(&mut self) -> Result<i64, StoreError> {
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version')",
            [],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(0);
        }
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?)
    }

    fn create_account(
        &mut self,
        name: &str,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<AccountId, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("empty account name".into()));
        }
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO accounts (name, name_key, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        match stmt.execute(params![name, name_key(name), password_hash, now]) {
            Ok(_) => Ok(AccountId(from_sql_u64(
                self.conn.last_insert_rowid(),
                "account id",
            )?)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::NameTaken),
            Err(e) => Err(e.into()),
        }
    }

    fn account_by_name(&mut self, name: &str) -> Result<Option<Account>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, password_hash, created_at FROM accounts WHERE name_key = ?1",
        )?;
        let row = stmt
            .query_row([name_key(name)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .optional()?;
        row.map(|(id, name, password_hash, created_at)| {
            Ok(Account {
                id: AccountId(from_sql_u64(id, "account id")?),
                name,
                password_hash,
                created_at,
            })
        })
        .transpose()
    }

    fn list_characters(&mut self, account: AccountId) -> Result<Vec<CharacterRecord>, StoreError> {
        let account = to_sql_u64(account.0, "account id")?;
        let sql =
            format!("SELECT {CHARACTER_COLUMNS} FROM characters WHERE account_id = ?1 ORDER BY id");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([account], read_character)?;
        let mut out = Vec::new();
        for raw in rows {
            out.push(raw?.into_record()?);
        }
        Ok(out)
    }

    fn create_character(
        &mut self,
        new: &NewCharacter,
        max_per_account: u32,
        now: i64,
    ) -> Result<CharacterRecord, StoreError> {
        check_new_character(new)?;
        let account = to_sql_u64(new.account.0, "account id")?;
        let exp = to_sql_u64(new.exp, "exp")?;
        // IMMEDIATE: the count and the insert happen under the write lock,
        // so two creations for one account cannot both pass the limit.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)",
            [account],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(StoreError::NotFound);
        }
        let count: i64 = tx.query_row(
            "SELECT COUNT(*) FROM characters WHERE account_id = ?1",
            [account],
            |r| r.get(0),
        )?;
        if count >= i64::from(max_per_account) {
            return Err(StoreError::TooManyCharacters);
        }
        let inserted = tx
            .prepare_cached(
                "INSERT INTO characters (account_id, name, name_key, template, faction, appearance,
                     level, exp, pos_x, pos_y, pos_z, yaw, hp, mp, created_at, last_saved_at,
                     state_version, items)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?16,
                     ?17)",
            )?
            .execute(params![
                account,
                new.name,
                name_key(&new.name),
                new.template,
                new.faction,
                new.appearance,
                new.level,
                exp,
                new.position[0],
                new.position[1],
                new.position[2],
                new.yaw,
                new.hp,
                new.mp,
                now,
                CHARACTER_STATE_VERSION,
                crate::items::encode_items(&new.items)?,
            ]);
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::NameTaken),
            Err(e) => return Err(e.into()),
        }
        let id = tx.last_insert_rowid();
        let record = load(&tx, id)?.ok_or(StoreError::NotFound)?;
        tx.commit()?;
        Ok(record)
    }

    fn delete_character(
        &mut self,
        account: AccountId,
        id: CharacterId,
        now: i64,
    ) -> Result<(), StoreError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE characters SET deleted_at = COALESCE(deleted_at, ?1)
                 WHERE id = ?2 AND account_id = ?3",
            )?
            .execute(params![
                now,
                to_sql_u64(id.0, "character id")?,
                to_sql_u64(account.0, "account id")?
            ])?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    fn restore_character(
        &mut self,
        account: AccountId,
        id: CharacterId,
        now: i64,
        window_secs: i64,
    ) -> Result<CharacterRecord, StoreError> {
        let id = to_sql_u64(id.0, "character id")?;
        let account = to_sql_u64(account.0, "account id")?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let deleted_at: Option<Option<i64>> = tx
            .query_row(
                "SELECT deleted_at FROM characters WHERE id = ?1 AND account_id = ?2",
                [id, account],
                |r| r.get(0),
            )
            .optional()?;
        match deleted_at {
            None => return Err(StoreError::NotFound),
            Some(None) => return Err(StoreError::NotDeleted),
            Some(Some(at)) if now.saturating_sub(at) > window_secs => {
                return Err(StoreError::RestoreExpired);
            }
            Some(Some(_)) => {}
        }
        tx.execute(
            "UPDATE characters SET deleted_at = NULL WHERE id = ?1",
            [id],
        )?;
        let record = load(&tx, id)?.ok_or(StoreError::NotFound)?;
        tx.commit()?;
        Ok(record)
    }

    fn load_character(&mut self, id: CharacterId) -> Result<Option<CharacterRecord>, StoreError> {
        load(&self.conn, to_sql_u64(id.0, "character id")?)
    }

    fn save_states(&mut self, states: &[CharacterState], now: i64) -> Result<(), StoreError> {
        if states.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE characters SET pos_x = ?2, pos_y = ?3, pos_z = ?4, yaw = ?5, hp = ?6,
                     mp = ?7, level = ?8, exp = ?9, last_saved_at = ?10, state_version = ?11,
                     items = ?12
                 WHERE id = ?1",
            )?;
            for s in states {
                stmt.execute(params![
                    to_sql_u64(s.id.0, "character id")?,
                    s.position[0],
                    s.position[1],
                    s.position[2],
                    s.yaw,
                    s.hp,
                    s.mp,
                    s.level,
                    to_sql_u64(s.exp, "exp")?,
                    now,
                    CHARACTER_STATE_VERSION,
                    crate::items::encode_items(&s.items)?,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn purge_deleted(&mut self, older_than: i64) -> Result<u64, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM characters WHERE deleted_at IS NOT NULL AND deleted_at < ?1",
            [older_than],
        )?;
        Ok(n as u64)
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        // A SQLite connection does not break like a socket; errors here are
        // locks or disk trouble. Re-opening clears a poisoned state
        // (for instance a file replaced under us) and costs little.
        if self.conn.execute_batch("SELECT 1").is_err() {
            self.conn = Self::connect(&self.path, self.busy_timeout)?;
        }
        Ok(())
    }
}
