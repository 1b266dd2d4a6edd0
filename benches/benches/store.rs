//! Write-behind cost: characters saved per second in one batched
//! transaction of 10,000 states (without items, and with a played
//! character's 12 items), on SQLite and on PostgreSQL, and the share
//! of one store thread a 10,000-player world saved every second costs
//! (time per 10k batch / 1 s; the budget is ≤ 10%).
//!
//! `cargo bench -p tos-benches --bench store`
//!
//! PostgreSQL is read from `TOS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) in a schema of its own,
//! dropped at the end; it is skipped with a message when unreachable. On
//! PostgreSQL the store's single `UPDATE ... FROM unnest(...)` statement is
//! measured beside the alternative it was chosen over (one prepared UPDATE
//! per character inside one transaction).
//!
//! A plain timing harness rather than criterion: one sample is a 10k-row
//! transaction (tens of ms), and the figure wanted is the median of a few
//! dozen, with the per-row alternative beside it.

use std::time::{Duration, Instant};

use tos_store::{
    AccountId, Backend, CharacterId, CharacterState, ItemPlace, NewCharacter, PostgresBackend,
    SavedItem, SqliteBackend,
};

const BATCH: usize = 10_000;
const SAMPLES: usize = 30;

/// Every character's state for `round`, each carrying `items` items (a
/// bag of potions and loot and a few worn pieces: 12 is a played
/// character's typical load).
fn states(ids: &[CharacterId], round: u32, items: usize) -> Vec<CharacterState> {
    ids.iter()
        .enumerate()
        .map(|(i, &id)| {
            let f = (i as u32 + round) as f32;
            CharacterState {
                id,
                position: [f, f * 0.5, 10.0],
                yaw: f * 0.001,
                hp: 100.0 + f,
                mp: 50.0,
                level: (round % 100) as u16,
                exp: u64::from(round) * 1000 + i as u64,
                items: (0..items)
                    .map(|k| SavedItem {
                        place: if k < 4 {
                            ItemPlace::Worn(k as u8)
                        } else {
                            ItemPlace::Bag(k as u8)
                        },
                        template: (1 + k % 12) as u16,
                        count: (1 + (round as usize + k) % 20) as u16,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Median and 90th percentile of `SAMPLES` runs of `save`.
fn measure(name: &str, mut save: impl FnMut(u32)) {
    save(0); // warm: caches, prepared statements
    let mut times: Vec<Duration> = (1..=SAMPLES as u32)
        .map(|round| {
            let t = Instant::now();
            save(round);
            t.elapsed()
        })
        .collect();
    times.sort();
    let median = times[SAMPLES / 2];
    let p90 = times[SAMPLES * 9 / 10];
    let per_sec = BATCH as f64 / median.as_secs_f64();
    println!(
        "store/{name}: batch of {BATCH}: median {:.2} ms (p90 {:.2} ms) = {:.0} characters/s; \
         a 10,000-player world saved every second costs {:.1}% of one thread",
        median.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        per_sec,
        median.as_secs_f64() * 100.0,
    );
}

fn new_character(account: AccountId, i: usize) -> NewCharacter {
    NewCharacter {
        account,
        name: format!("bench{i}"),
        template: 1,
        faction: 1,
        appearance: vec![0; 16],
        position: [0.0; 3],
        yaw: 0.0,
        level: 1,
        exp: 0,
        hp: 100.0,
        mp: 50.0,
        items: Vec::new(),
    }
}

fn sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut b = SqliteBackend::open(&dir.path().join("bench.sqlite3"), Duration::from_secs(5))
        .expect("open sqlite");
    b.migrate().expect("migrate");
    let acc = b.create_account("bench", None, 0).expect("account");
    let ids: Vec<_> = (0..BATCH)
        .map(|i| {
            b.create_character(&new_character(acc, i), u32::MAX, 0)
                .expect("character")
                .id
        })
        .collect();
    measure("sqlite", |round| {
        b.save_states(&states(&ids, round, 0), i64::from(round))
            .expect("save")
    });
    measure("sqlite-12-items", |round| {
        b.save_states(&states(&ids, round, 12), i64::from(round))
            .expect("save")
    });
}

fn postgres() {
    let url = std::env::var("TOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("tos_bench_{}", std::process::id());
    let mut b = match PostgresBackend::connect(&url, Some(&schema)) {
        Ok(b) => b,
        Err(e) => {
            println!("store/postgres: skipped: PostgreSQL not reachable at {url} ({e})");
            return;
        }
    };
    b.migrate().expect("migrate");
    let acc = b.create_account("bench", None, 0).expect("account");
    // Bulk insert: 10,000 separate creations would measure setup, not saves.
    b.client()
        .execute(
            "INSERT INTO characters (account_id, name, name_key, template, faction, appearance,
                 level, exp, pos_x, pos_y, pos_z, yaw, hp, mp, created_at, last_saved_at)
             SELECT $1, 'bench' || g, 'bench' || g, 1, 1, '\\x00'::bytea, 1, 0, 0, 0, 0, 0, 100, 50, 0, 0
             FROM generate_series(1, $2::int) AS g",
            &[&(acc.0 as i64), &(BATCH as i32)],
        )
        .expect("bulk insert");
    let ids: Vec<CharacterId> = b
        .client()
        .query("SELECT id FROM characters ORDER BY id", &[])
        .expect("ids")
        .iter()
        .map(|r| CharacterId(r.get::<_, i64>(0) as u64))
        .collect();
    measure("postgres-unnest", |round| {
        b.save_states(&states(&ids, round, 0), i64::from(round))
            .expect("save")
    });
    measure("postgres-unnest-12-items", |round| {
        b.save_states(&states(&ids, round, 12), i64::from(round))
            .expect("save")
    });
    // The alternative: one prepared UPDATE per character, one transaction.
    let client = b.client();
    let stmt = client
        .prepare(
            "UPDATE characters SET pos_x = $2, pos_y = $3, pos_z = $4, yaw = $5, hp = $6, mp = $7,
                 level = $8, exp = $9, last_saved_at = $10 WHERE id = $1",
        )
        .expect("prepare");
    measure("postgres-per-row", |round| {
        let mut tx = client.transaction().expect("begin");
        for s in states(&ids, round, 0) {
            tx.execute(
                &stmt,
                &[
                    &(s.id.0 as i64),
                    &s.position[0],
                    &s.position[1],
                    &s.position[2],
                    &s.yaw,
                    &s.hp,
                    &s.mp,
                    &i32::from(s.level),
                    &(s.exp as i64),
                    &i64::from(round),
                ],
            )
            .expect("update");
        }
        tx.commit().expect("commit");
    });
    let _ = client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench`-less args;
    // only measure under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("store bench: run with `cargo bench -p tos-benches --bench store`");
        return;
    }
    sqlite();
    postgres();
}
