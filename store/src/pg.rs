//! [`PostgresBackend`]: the store for a fleet, one connection to a
//! PostgreSQL server (the sync `postgres` crate), optionally confined to a
//! schema of its own.
//!
//! The write-behind batch is one statement, `UPDATE characters ... FROM
//! unnest($1::bigint[], ...)`: ten arrays travel in one round trip whatever
//! the batch size, where a statement per character would pay a network
//! round trip each (10,000 round trips per second for a full world).

use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, GenericClient, NoTls, Row, Statement};

use crate::backend::{
    CHARACTER_COLUMNS, RawCharacter, check_new_character, from_sql_u64, name_key, to_sql_u64,
};
use crate::{
    Account, AccountId, Backend, CHARACTER_STATE_VERSION, CharacterId, CharacterRecord,
    CharacterState, NewCharacter, StoreError,
};

/// Migrations, one per version, applied in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_initial.sql")),
    (2, include_str!("../migrations/postgres/0002_items.sql")),
];

/// Advisory lock key held while migrating, so that processes starting
/// together apply each version once ("tos" + 1).
const MIGRATION_LOCK: i64 = 0x746f_7301;

/// How long a connection attempt may take before the retry loop moves on.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const SAVE_SQL: &str = "UPDATE characters AS c SET
        pos_x = s.x, pos_y = s.y, pos_z = s.z, yaw = s.yaw, hp = s.hp, mp = s.mp,
        level = s.level, exp = s.exp, last_saved_at = $9, state_version = $10, items = s.items
    FROM unnest($1::bigint[], $2::real[], $3::real[], $4::real[], $5::real[], $6::real[],
                $7::real[], $8::integer[], $11::bigint[], $12::bytea[])
        AS s(id, x, y, z, yaw, hp, mp, level, exp, items)
    WHERE c.id = s.id";

/// A PostgreSQL database.
pub struct PostgresBackend {
    url: String,
    schema: Option<String>,
    client: Client,
    /// The batch UPDATE, prepared once per connection.
    save_stmt: Option<Statement>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("PostgresBackend")
            .field("schema", &self.schema)
            .field("closed", &self.client.is_closed())
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a plain identifier safe to put into SQL unquoted.
pub fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

fn is_unique_violation(err: &postgres::Error) -> bool {
    err.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

impl PostgresBackend {
    /// Connects to `url` (for instance `postgres://tos@db:5432/tos`). With
    /// `schema`, the schema is created if missing and every table lives in
    /// it (tests use a fresh one each). Call [`Backend::migrate`] before use.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        if let Some(s) = schema {
            if !is_plain_identifier(s) {
                return Err(StoreError::Invalid(format!("schema name {s:?}")));
            }
        }
        let client = Self::open(url, schema)?;
        Ok(Self {
            url: url.to_owned(),
            schema: schema.map(str::to_owned),
            client,
            save_stmt: None,
        })
    }

    fn open(url: &str, schema: Option<&str>) -> Result<Client, StoreError> {
        let mut config: postgres::Config = url.parse()?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("tos-store");
        let mut client = config.connect(NoTls)?;
        if let Some(schema) = schema {
            // `schema` was checked to be a plain identifier.
            client.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
            ))?;
        }
        Ok(client)
    }

    /// The schema the tables live in, if one was given.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Raw access for tests and tools (for instance to plant corrupt rows
    /// or drop a test schema).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

fn read_character(row: &Row) -> Result<CharacterRecord, StoreError> {
    RawCharacter {
        id: row.try_get(0)?,
        account: row.try_get(1)?,
        name: row.try_get(2)?,
        template: row.try_get(3)?,
        faction: row.try_get(4)?,
        appearance: row.try_get(5)?,
        level: row.try_get(6)?,
        exp: row.try_get(7)?,
        position: [row.try_get(8)?, row.try_get(9)?, row.try_get(10)?],
        yaw: row.try_get(11)?,
        hp: row.try_get(12)?,
        mp: row.try_get(13)?,
        created_at: row.try_get(14)?,
        deleted_at: row.try_get(15)?,
        last_saved_at: row.try_get(16)?,
        items: row.try_get(17)?,
    }
    .into_record()
}

fn load(client: &mut impl GenericClient, id: i64) -> Result<Option<CharacterRecord>, StoreError> {
    let sql = format!("SELECT {CHARACTER_COLUMNS} FROM characters WHERE id = $1");
    client
        .query_opt(&sql, &[&id])?
        .map(|row| read_character(&row))
        .transpose()
}

impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version    BIGINT PRIMARY KEY,
                 applied_at BIGINT NOT NULL
             )",
        )?;
        let supported = MIGRATIONS.last().map_or(0, |m| m.0);
        for &(version, sql) in MIGRATIONS {
            let mut tx = self.client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            let current: i64 = tx
                .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
                .try_get(0)?;
            if current > supported {
                return Err(StoreError::SchemaTooNew {
                    found: current,
                    supported,
                });
            }
            if current >= version {
                continue;
            }
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_at)
                 VALUES ($1, EXTRACT(EPOCH FROM now())::bigint)",
                &[&version],
            )?;
            tx.commit()?;
            tracing::info!(version, "postgres schema migrated");
        }
        Ok(())
    }

    fn schema_version(&mut self) -> Result<i64, StoreError> {
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])?
            .try_get(0)?;
        if !exists {
            return Ok(0);
        }
        Ok(self
            .client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
            .try_get(0)?)
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
        let result = self.client.query_one(
            "INSERT INTO accounts (name, name_key, password_hash, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[&name, &name_key(name), &password_hash, &now],
        );
        match result {
            Ok(row) => Ok(AccountId(from_sql_u64(row.try_get(0)?, "account id")?)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::NameTaken),
            Err(e) => Err(e.into()),
        }
    }

    fn account_by_name(&mut self, name: &str) -> Result<Option<Account>, StoreError> {
        let row = self.client.query_opt(
            "SELECT id, name, password_hash, created_at FROM accounts WHERE name_key = $1",
            &[&name_key(name)],
        )?;
        row.map(|r| {
            Ok(Account {
                id: AccountId(from_sql_u64(r.try_get(0)?, "account id")?),
                name: r.try_get(1)?,
                password_hash: r.try_get(2)?,
                created_at: r.try_get(3)?,
            })
        })
        .transpose()
    }

    fn list_characters(&mut self, account: AccountId) -> Result<Vec<CharacterRecord>, StoreError> {
        let account = to_sql_u64(account.0, "account id")?;
        let sql =
            format!("SELECT {CHARACTER_COLUMNS} FROM characters WHERE account_id = $1 ORDER BY id");
        self.client
            .query(&sql, &[&account])?
            .iter()
            .map(read_character)
            .collect()
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
        let items = crate::items::encode_items(&new.items)?;
        let mut tx = self.client.transaction()?;
        // Locking the account row serialises creations for one account
        // (across processes too), so the count below cannot be raced.
        if tx
            .query_opt(
                "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
                &[&account],
            )?
            .is_none()
        {
            return Err(StoreError::NotFound);
        }
        let count: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM characters WHERE account_id = $1",
                &[&account],
            )?
            .try_get(0)?;
        if count >= i64::from(max_per_account) {
            return Err(StoreError::TooManyCharacters);
        }
        let inserted = tx.query_one(
            "INSERT INTO characters (account_id, name, name_key, template, faction, appearance,
                 level, exp, pos_x, pos_y, pos_z, yaw, hp, mp, created_at, last_saved_at,
                 state_version, items)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16,
                 $17)
             RETURNING id",
            &[
                &account,
                &new.name,
                &name_key(&new.name),
                &i32::from(new.template),
                &i32::from(new.faction),
                &new.appearance,
                &i32::from(new.level),
                &exp,
                &new.position[0],
                &new.position[1],
                &new.position[2],
                &new.yaw,
                &new.hp,
                &new.mp,
                &now,
                &i32::from(CHARACTER_STATE_VERSION),
                &items,
            ],
        );
        let id: i64 = match inserted {
            Ok(row) => row.try_get(0)?,
            Err(e) if is_unique_violation(&e) => return Err(StoreError::NameTaken),
            Err(e) => return Err(e.into()),
        };
        let record = load(&mut tx, id)?.ok_or(StoreError::NotFound)?;
        tx.commit()?;
        Ok(record)
    }

    fn delete_character(
        &mut self,
        account: AccountId,
        id: CharacterId,
        now: i64,
    ) -> Result<(), StoreError> {
        let changed = self.client.execute(
            "UPDATE characters SET deleted_at = COALESCE(deleted_at, $1)
             WHERE id = $2 AND account_id = $3",
            &[
                &now,
                &to_sql_u64(id.0, "character id")?,
                &to_sql_u64(account.0, "account id")?,
            ],
        )?;
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
        let mut tx = self.client.transaction()?;
        let row = tx.query_opt(
            "SELECT deleted_at FROM characters WHERE id = $1 AND account_id = $2 FOR UPDATE",
            &[&id, &account],
        )?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        match row.try_get::<_, Option<i64>>(0)? {
            None => return Err(StoreError::NotDeleted),
            Some(at) if now.saturating_sub(at) > window_secs => {
                return Err(StoreError::RestoreExpired);
            }
            Some(_) => {}
        }
        tx.execute(
            "UPDATE characters SET deleted_at = NULL WHERE id = $1",
            &[&id],
        )?;
        let record = load(&mut tx, id)?.ok_or(StoreError::NotFound)?;
        tx.commit()?;
        Ok(record)
    }

    fn load_character(&mut self, id: CharacterId) -> Result<Option<CharacterRecord>, StoreError> {
        load(&mut self.client, to_sql_u64(id.0, "character id")?)
    }

    fn save_states(&mut self, states: &[CharacterState], now: i64) -> Result<(), StoreError> {
        if states.is_empty() {
            return Ok(());
        }
        let n = states.len();
        let mut ids = Vec::with_capacity(n);
        let (mut x, mut y, mut z) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut yaw, mut hp, mut mp) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut level, mut exp) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut items = Vec::with_capacity(n);
        for s in states {
            ids.push(to_sql_u64(s.id.0, "character id")?);
            x.push(s.position[0]);
            y.push(s.position[1]);
            z.push(s.position[2]);
            yaw.push(s.yaw);
            hp.push(s.hp);
            mp.push(s.mp);
            level.push(i32::from(s.level));
            exp.push(to_sql_u64(s.exp, "exp")?);
            items.push(crate::items::encode_items(&s.items)?);
        }
        let stmt = match &self.save_stmt {
            Some(stmt) => stmt.clone(),
            None => {
                let stmt = self.client.prepare(SAVE_SQL)?;
                self.save_stmt = Some(stmt.clone());
                stmt
            }
        };
        // One statement is one implicit transaction: the batch is written
        // whole or not at all.
        self.client.execute(
            &stmt,
            &[
                &ids,
                &x,
                &y,
                &z,
                &yaw,
                &hp,
                &mp,
                &level,
                &now,
                &i32::from(CHARACTER_STATE_VERSION),
                &exp,
                &items,
            ],
        )?;
        Ok(())
    }

    fn purge_deleted(&mut self, older_than: i64) -> Result<u64, StoreError> {
        Ok(self.client.execute(
            "DELETE FROM characters WHERE deleted_at IS NOT NULL AND deleted_at < $1",
            &[&older_than],
        )?)
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        let healthy = !self.client.is_closed() && self.client.simple_query("SELECT 1").is_ok();
        if !healthy {
            self.client = Self::open(&self.url, self.schema.as_deref())?;
            // Prepared statements belong to the old connection.
            self.save_stmt = None;
            tracing::info!("postgres store reconnected");
        }
        Ok(())
    }
}
