//! Test fixtures: a fresh database per test, on SQLite (temp file) or
//! PostgreSQL (a schema of its own, dropped afterwards), and a backend
//! wrapper that fails on demand.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use tos_store::{
    Account, AccountId, Backend, CharacterId, CharacterRecord, CharacterState, ItemPlace,
    NewCharacter, PostgresBackend, SavedItem, SqliteBackend, StoreError,
};

/// Where PostgreSQL tests connect unless `TOS_TEST_POSTGRES_URL` says.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn pg_url() -> String {
    std::env::var("TOS_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// A database for one test.
pub enum Fixture {
    Sqlite { dir: tempfile::TempDir },
    Postgres { url: String, schema: String },
}

impl Fixture {
    pub fn sqlite() -> Self {
        Fixture::Sqlite {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A fresh schema on the test server, or `None` (after printing why)
    /// when no server answers — unless `TOS_REQUIRE_SERVICES=1`.
    pub fn postgres() -> Option<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let url = pg_url();
        if let Err(e) = PostgresBackend::connect(&url, None) {
            let msg = format!("skipped: PostgreSQL not reachable at {url} ({e})");
            if std::env::var("TOS_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{msg}");
            }
            eprintln!("{msg}");
            return None;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let schema = format!(
            "tos_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, SeqCst),
            nanos
        );
        Some(Fixture::Postgres { url, schema })
    }

    /// A new, migrated connection to this test's database.
    pub fn open(&self) -> Box<dyn Backend> {
        let mut b: Box<dyn Backend> = match self {
            Fixture::Sqlite { .. } => Box::new(self.sqlite_backend()),
            Fixture::Postgres { .. } => Box::new(self.pg_backend()),
        };
        b.migrate().expect("migrate");
        b
    }

    pub fn sqlite_backend(&self) -> SqliteBackend {
        match self {
            Fixture::Sqlite { dir } => {
                SqliteBackend::open(&dir.path().join("tos.sqlite3"), Duration::from_secs(10))
                    .expect("open sqlite")
            }
            Fixture::Postgres { .. } => panic!("not sqlite"),
        }
    }

    pub fn pg_backend(&self) -> PostgresBackend {
        match self {
            Fixture::Postgres { url, schema } => {
                PostgresBackend::connect(url, Some(schema)).expect("connect postgres")
            }
            Fixture::Sqlite { .. } => panic!("not postgres"),
        }
    }

    /// Runs raw SQL (to plant bad rows).
    pub fn exec(&self, sql: &str) {
        match self {
            Fixture::Sqlite { .. } => self
                .sqlite_backend()
                .connection()
                .execute_batch(sql)
                .expect("sqlite exec"),
            Fixture::Postgres { .. } => self
                .pg_backend()
                .client()
                .batch_execute(sql)
                .expect("postgres exec"),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Fixture::Postgres { url, schema } = self {
            if let Ok(mut b) = PostgresBackend::connect(url, None) {
                let _ = b
                    .client()
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}

/// Runs each named test function (taking `&Fixture`) on SQLite and on
/// PostgreSQL.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { let f = crate::common::Fixture::sqlite(); super::$name(&f); } )*
        }
        mod postgres {
            $( #[test] fn $name() {
                if let Some(f) = crate::common::Fixture::postgres() { super::$name(&f); }
            } )*
        }
    };
}

pub fn new_character(account: AccountId, name: &str) -> NewCharacter {
    NewCharacter {
        account,
        name: name.to_owned(),
        template: 7,
        faction: 2,
        appearance: vec![1, 2, 3, 250],
        position: [100.5, -200.25, 30.0],
        yaw: 1.5,
        level: 1,
        exp: 0,
        hp: 100.0,
        mp: 50.0,
        items: Vec::new(),
    }
}

pub fn state(id: CharacterId, n: u32) -> CharacterState {
    let f = n as f32;
    CharacterState {
        id,
        position: [f * 1.25, -f * 0.5, f + 0.125],
        yaw: (f * 0.01) % std::f32::consts::TAU,
        hp: 1000.0 - f,
        mp: f * 0.75,
        level: (n % 65_536) as u16,
        exp: u64::from(n) * 1_000_003 + 17,
        items: items(n),
    }
}

/// Between 0 and 4 items, some in the bag, some worn, varying with `n`.
pub fn items(n: u32) -> Vec<SavedItem> {
    (0..n % 5)
        .map(|k| SavedItem {
            place: if k % 2 == 0 {
                ItemPlace::Bag((k * 3) as u8)
            } else {
                ItemPlace::Worn(k as u8)
            },
            template: ((n + k) % 65_536) as u16,
            count: (1 + (n + k) % 999) as u16,
        })
        .collect()
}

/// Whether `record` carries exactly `s`.
pub fn has_state(record: &CharacterRecord, s: &CharacterState) -> bool {
    record.id == s.id
        && record.position == s.position
        && record.yaw == s.yaw
        && record.hp == s.hp
        && record.mp == s.mp
        && record.level == s.level
        && record.exp == s.exp
        && record.items == s.items
}

pub fn account(b: &mut dyn Backend, name: &str) -> Account {
    b.create_account(
        name,
        Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
        1000,
    )
    .expect("create account");
    b.account_by_name(name).expect("lookup").expect("exists")
}

/// Polls `cond` every 10 ms for up to 30 s (generous: the machine is shared).
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

/// Switches a [`Flaky`] backend's behaviour from the test thread.
#[derive(Debug, Default)]
pub struct FlakyControl {
    /// While set, every save fails.
    pub down: AtomicBool,
    /// While set, saves wait (to hold the store thread busy).
    pub stall: AtomicBool,
    /// Saves that will fail before saves work again.
    pub fail_next: AtomicU32,
    pub reconnects: AtomicU32,
}

/// A real backend that fails its saves on demand.
pub struct Flaky {
    pub inner: Box<dyn Backend>,
    pub control: Arc<FlakyControl>,
}

impl Backend for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    fn migrate(&mut self) -> Result<(), StoreError> {
        self.inner.migrate()
    }
    fn schema_version(&mut self) -> Result<i64, StoreError> {
        self.inner.schema_version()
    }
    fn create_account(
        &mut self,
        n: &str,
        h: Option<&str>,
        now: i64,
    ) -> Result<AccountId, StoreError> {
        self.inner.create_account(n, h, now)
    }
    fn account_by_name(&mut self, n: &str) -> Result<Option<Account>, StoreError> {
        self.inner.account_by_name(n)
    }
    fn list_characters(&mut self, a: AccountId) -> Result<Vec<CharacterRecord>, StoreError> {
        self.inner.list_characters(a)
    }
    fn create_character(
        &mut self,
        n: &NewCharacter,
        m: u32,
        now: i64,
    ) -> Result<CharacterRecord, StoreError> {
        self.inner.create_character(n, m, now)
    }
    fn delete_character(
        &mut self,
        a: AccountId,
        id: CharacterId,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner.delete_character(a, id, now)
    }
    fn restore_character(
        &mut self,
        a: AccountId,
        id: CharacterId,
        now: i64,
        w: i64,
    ) -> Result<CharacterRecord, StoreError> {
        self.inner.restore_character(a, id, now, w)
    }
    fn load_character(&mut self, id: CharacterId) -> Result<Option<CharacterRecord>, StoreError> {
        self.inner.load_character(id)
    }
    fn save_states(&mut self, states: &[CharacterState], now: i64) -> Result<(), StoreError> {
        while self.control.stall.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.control.down.load(SeqCst) {
            return Err(StoreError::Unavailable("injected: database down".into()));
        }
        if self
            .control
            .fail_next
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        self.inner.save_states(states, now)
    }
    fn purge_deleted(&mut self, t: i64) -> Result<u64, StoreError> {
        self.inner.purge_deleted(t)
    }
    fn reconnect(&mut self) -> Result<(), StoreError> {
        self.control.reconnects.fetch_add(1, SeqCst);
        self.inner.reconnect()
    }
}
