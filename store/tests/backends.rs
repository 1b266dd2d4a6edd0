//! The backend suite: every behaviour of [`Backend`], run on SQLite and on
//! PostgreSQL (skipped with a message when no server answers).

#[macro_use]
mod common;

use common::{Fixture, account, has_state, new_character, state};
use tos_store::{AccountId, CharacterId, ItemPlace, SavedItem, StoreError};

suite!(
    migrations_are_idempotent,
    accounts_are_unique_ignoring_case,
    characters_create_and_list,
    character_names_are_unique_ignoring_case,
    character_limit_counts_deleted_until_purged,
    delete_and_restore,
    save_batch_loads_back_exactly,
    corrupt_rows_are_errors_not_panics,
    invalid_input_is_refused,
    items_are_saved_with_the_state,
    corrupt_items_are_errors,
    version_1_rows_migrate_with_no_items,
);

fn migrations_are_idempotent(f: &Fixture) {
    let mut b = f.open();
    assert_eq!(b.schema_version().unwrap(), 2);
    b.migrate().unwrap();
    b.migrate().unwrap();
    assert_eq!(b.schema_version().unwrap(), 2);
    // A second connection (another process starting) migrates too.
    let mut other = f.open();
    assert_eq!(other.schema_version().unwrap(), 2);
    let id = account(&mut *b, "after-migrations").id;
    assert!(other.list_characters(id).unwrap().is_empty());
}

fn accounts_are_unique_ignoring_case(f: &Fixture) {
    let mut b = f.open();
    let alice = b
        .create_account("Alice", Some("$argon2id$hash"), 1234)
        .unwrap();
    assert!(matches!(
        b.create_account("alice", None, 1),
        Err(StoreError::NameTaken)
    ));
    assert!(matches!(
        b.create_account("ALICE", None, 1),
        Err(StoreError::NameTaken)
    ));
    let found = b.account_by_name("aLiCe").unwrap().unwrap();
    assert_eq!(found.id, alice);
    assert_eq!(found.name, "Alice");
    assert_eq!(found.password_hash.as_deref(), Some("$argon2id$hash"));
    assert_eq!(found.created_at, 1234);
    assert!(b.account_by_name("bob").unwrap().is_none());
    // Ticket accounts have no password; Unicode case folds too.
    let ticket = b.create_account("Ärger", None, 5).unwrap();
    assert_ne!(ticket, alice);
    assert!(matches!(
        b.create_account("äRGER", None, 1),
        Err(StoreError::NameTaken)
    ));
    assert_eq!(
        b.account_by_name("ärger").unwrap().unwrap().password_hash,
        None
    );
}

fn characters_create_and_list(f: &Fixture) {
    let mut b = f.open();
    let acc = account(&mut *b, "owner").id;
    let other = account(&mut *b, "someone-else").id;
    let first = b
        .create_character(&new_character(acc, "Aragorn"), 7, 2000)
        .unwrap();
    let second = b
        .create_character(&new_character(acc, "Legolas"), 7, 2001)
        .unwrap();
    b.create_character(&new_character(other, "Gimli"), 7, 2002)
        .unwrap();
    let n = new_character(acc, "Aragorn");
    assert_eq!(first.account, acc);
    assert_eq!(first.name, "Aragorn");
    assert_eq!(first.template, n.template);
    assert_eq!(first.faction, n.faction);
    assert_eq!(first.appearance, n.appearance);
    assert_eq!(first.position, n.position);
    assert_eq!((first.yaw, first.hp, first.mp), (n.yaw, n.hp, n.mp));
    assert_eq!((first.level, first.exp), (n.level, n.exp));
    assert_eq!(
        (first.created_at, first.last_saved_at, first.deleted_at),
        (2000, 2000, None)
    );
    let list = b.list_characters(acc).unwrap();
    assert_eq!(list, vec![first.clone(), second]);
    assert_eq!(b.load_character(first.id).unwrap(), Some(first));
    assert_eq!(b.load_character(CharacterId(999_999)).unwrap(), None);
    assert!(matches!(
        b.create_character(&new_character(AccountId(999_999), "Nobody"), 7, 1),
        Err(StoreError::NotFound)
    ));
}

fn character_names_are_unique_ignoring_case(f: &Fixture) {
    let mut b = f.open();
    let acc = account(&mut *b, "one").id;
    let other = account(&mut *b, "two").id;
    let c = b
        .create_character(&new_character(acc, "Frodo"), 7, 1)
        .unwrap();
    assert!(matches!(
        b.create_character(&new_character(acc, "frodo"), 7, 1),
        Err(StoreError::NameTaken)
    ));
    assert!(matches!(
        b.create_character(&new_character(other, "FRODO"), 7, 1),
        Err(StoreError::NameTaken)
    ));
    // A deleted character keeps its name.
    b.delete_character(acc, c.id, 10).unwrap();
    assert!(matches!(
        b.create_character(&new_character(other, "Frodo"), 7, 1),
        Err(StoreError::NameTaken)
    ));
    // A refused creation leaves nothing behind.
    assert_eq!(b.list_characters(other).unwrap().len(), 0);
}

fn character_limit_counts_deleted_until_purged(f: &Fixture) {
    let mut b = f.open();
    let acc = account(&mut *b, "limited").id;
    let a = b.create_character(&new_character(acc, "A1"), 2, 1).unwrap();
    b.create_character(&new_character(acc, "A2"), 2, 1).unwrap();
    assert!(matches!(
        b.create_character(&new_character(acc, "A3"), 2, 1),
        Err(StoreError::TooManyCharacters)
    ));
    b.delete_character(acc, a.id, 100).unwrap();
    // Deleted characters still count (they may be restored).
    assert!(matches!(
        b.create_character(&new_character(acc, "A3"), 2, 1),
        Err(StoreError::TooManyCharacters)
    ));
    assert_eq!(
        b.purge_deleted(100).unwrap(),
        0,
        "deleted at 100 is not older than 100"
    );
    assert_eq!(b.purge_deleted(101).unwrap(), 1);
    assert_eq!(b.load_character(a.id).unwrap(), None);
    b.create_character(&new_character(acc, "A1"), 2, 1).unwrap();
}

fn delete_and_restore(f: &Fixture) {
    let mut b = f.open();
    let acc = account(&mut *b, "deleter").id;
    let thief = account(&mut *b, "thief").id;
    let c = b
        .create_character(&new_character(acc, "Boromir"), 7, 1)
        .unwrap();
    assert!(matches!(
        b.delete_character(thief, c.id, 50),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        b.delete_character(acc, CharacterId(424_242), 50),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        b.restore_character(acc, c.id, 50, 100),
        Err(StoreError::NotDeleted)
    ));
    b.delete_character(acc, c.id, 100).unwrap();
    // Deleting again keeps the first time.
    b.delete_character(acc, c.id, 150).unwrap();
    let listed = b.list_characters(acc).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].deleted_at, Some(100));
    assert!(matches!(
        b.restore_character(thief, c.id, 120, 100),
        Err(StoreError::NotFound)
    ));
    let restored = b.restore_character(acc, c.id, 200, 100).unwrap();
    assert_eq!(restored.deleted_at, None);
    assert_eq!(b.load_character(c.id).unwrap().unwrap().deleted_at, None);
    b.delete_character(acc, c.id, 300).unwrap();
    assert!(matches!(
        b.restore_character(acc, c.id, 401, 100),
        Err(StoreError::RestoreExpired)
    ));
    assert_eq!(
        b.load_character(c.id).unwrap().unwrap().deleted_at,
        Some(300)
    );
}

fn save_batch_loads_back_exactly(f: &Fixture) {
    let mut b = f.open();
    let acc = account(&mut *b, "many").id;
    let ids: Vec<CharacterId> = (0..1000)
        .map(|i| {
            b.create_character(&new_character(acc, &format!("c{i}")), 10_000, 1)
                .unwrap()
                .id
        })
        .collect();
    let mut states: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| state(id, i as u32 * 37))
        .collect();
    // Extremes survive the round trip.
    states[0].exp = i64::MAX as u64;
    states[0].level = u16::MAX;
    states[1].position = [f32::MIN_POSITIVE, -0.0, f32::MAX];
    // A state for a character that does not exist is skipped, not an error.
    states.push(state(CharacterId(9_999_999), 1));
    b.save_states(&states, 777).unwrap();
    let mut listed = b.list_characters(acc).unwrap();
    listed.sort_by_key(|r| r.id);
    assert_eq!(listed.len(), 1000);
    for (record, s) in listed.iter().zip(&states) {
        assert!(has_state(record, s), "{record:?} != {s:?}");
        assert_eq!(record.last_saved_at, 777);
    }
    // A fresh connection sees the same.
    let mut other = f.open();
    assert!(has_state(
        &other.load_character(ids[1]).unwrap().unwrap(),
        &states[1]
    ));
    // Empty batches are fine.
    b.save_states(&[], 1).unwrap();
}

fn corrupt_rows_are_errors_not_panics(f: &Fixture) {
    let mut b = f.open();
    let acc = account(&mut *b, "corrupt").id;
    let c = b
        .create_character(&new_character(acc, "Gollum"), 7, 1)
        .unwrap();
    let blob = match f {
        Fixture::Sqlite { .. } => format!("X'{}'", "ab".repeat(64)),
        Fixture::Postgres { .. } => format!("'\\x{}'::bytea", "ab".repeat(64)),
    };
    f.exec(&format!(
        "UPDATE characters SET appearance = {blob} WHERE id = {}",
        c.id.0
    ));
    assert!(matches!(
        b.load_character(c.id),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        b.list_characters(acc),
        Err(StoreError::Corrupt(_))
    ));
    let empty = match f {
        Fixture::Sqlite { .. } => "X''",
        Fixture::Postgres { .. } => "''::bytea",
    };
    f.exec(&format!(
        "UPDATE characters SET appearance = {empty}, level = -1 WHERE id = {}",
        c.id.0
    ));
    assert!(matches!(
        b.load_character(c.id),
        Err(StoreError::Corrupt(_))
    ));
}

fn invalid_input_is_refused(f: &Fixture) {
    let mut b = f.open();
    let acc = account(&mut *b, "invalid").id;
    let mut n = new_character(acc, "Sauron");
    n.appearance = vec![0; 33];
    assert!(matches!(
        b.create_character(&n, 7, 1),
        Err(StoreError::Invalid(_))
    ));
    let mut n = new_character(acc, "Sauron");
    n.exp = u64::MAX;
    assert!(matches!(
        b.create_character(&n, 7, 1),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        b.create_account("  ", None, 1),
        Err(StoreError::Invalid(_))
    ));
    let mut s = state(CharacterId(1), 1);
    s.exp = u64::MAX;
    assert!(matches!(
        b.save_states(&[s], 1),
        Err(StoreError::Invalid(_))
    ));
}

fn items_are_saved_with_the_state(f: &Fixture) {
    let mut b = f.open();
    let acc = account(&mut *b, "hoarder").id;
    let c = b
        .create_character(&new_character(acc, "Smaug"), 7, 1)
        .unwrap();
    assert!(c.items.is_empty(), "a new character carries nothing");
    // One created with a starting kit has it at once.
    let mut kit = new_character(acc, "Bilbo");
    kit.items = vec![
        SavedItem {
            place: ItemPlace::Bag(0),
            template: 1,
            count: 1,
        },
        SavedItem {
            place: ItemPlace::Bag(1),
            template: 8,
            count: 5,
        },
    ];
    let bilbo = b.create_character(&kit, 7, 1).unwrap();
    assert_eq!(bilbo.items, kit.items);
    assert_eq!(
        b.load_character(bilbo.id).unwrap().unwrap().items,
        kit.items
    );
    // A potion stack in slot 0, a sword worn.
    let mut s = state(c.id, 1);
    s.items = vec![
        SavedItem {
            place: ItemPlace::Bag(0),
            template: 100,
            count: 5,
        },
        SavedItem {
            place: ItemPlace::Worn(0),
            template: 2,
            count: 1,
        },
    ];
    b.save_states(std::slice::from_ref(&s), 10).unwrap();
    assert!(has_state(&b.load_character(c.id).unwrap().unwrap(), &s));
    // The sword goes back into the bag in the next save: the row holds it
    // in exactly one place.
    s.items[1].place = ItemPlace::Bag(1);
    s.items[0].count = 4;
    b.save_states(std::slice::from_ref(&s), 11).unwrap();
    let back = f.open().load_character(c.id).unwrap().unwrap();
    assert!(has_state(&back, &s), "{back:?}");
    assert_eq!(back.items.iter().filter(|i| i.template == 2).count(), 1);
    // The list shows the same.
    assert!(has_state(&b.list_characters(acc).unwrap()[0], &s));
    // A batch whose last state is invalid writes nothing of the batch.
    let mut other = s.clone();
    other.items.clear();
    let mut bad = state(c.id, 2);
    bad.items[0].count = 0;
    assert!(matches!(
        b.save_states(&[other, bad], 12),
        Err(StoreError::Invalid(_))
    ));
    assert!(has_state(&b.load_character(c.id).unwrap().unwrap(), &s));
}

fn corrupt_items_are_errors(f: &Fixture) {
    let mut b = f.open();
    let acc = account(&mut *b, "corrupt-items").id;
    let c = b
        .create_character(&new_character(acc, "Mimic"), 7, 1)
        .unwrap();
    // Format 1, then one item with place 9.
    let blob = match f {
        Fixture::Sqlite { .. } => "X'01090064000500'".to_string(),
        Fixture::Postgres { .. } => "'\\x01090064000500'::bytea".to_string(),
    };
    f.exec(&format!(
        "UPDATE characters SET items = {blob} WHERE id = {}",
        c.id.0
    ));
    assert!(matches!(
        b.load_character(c.id),
        Err(StoreError::Corrupt(_))
    ));
}

/// A database written by a build of schema version 1 (no items column)
/// migrates to version 2; its characters load with no items.
fn version_1_rows_migrate_with_no_items(f: &Fixture) {
    let (v1, blob, int) = match f {
        Fixture::Sqlite { .. } => (
            include_str!("../migrations/sqlite/0001_initial.sql"),
            "X''",
            "INTEGER",
        ),
        Fixture::Postgres { .. } => (
            include_str!("../migrations/postgres/0001_initial.sql"),
            "''::bytea",
            "BIGINT",
        ),
    };
    f.exec(&format!(
        "CREATE TABLE schema_version (version {int} PRIMARY KEY, applied_at {int} NOT NULL);
         {v1}
         INSERT INTO schema_version (version, applied_at) VALUES (1, 0);
         INSERT INTO accounts (id, name, name_key, password_hash, created_at)
             VALUES (1, 'old', 'old', NULL, 1);
         INSERT INTO characters (id, account_id, name, name_key, template, faction, appearance,
             level, exp, pos_x, pos_y, pos_z, yaw, hp, mp, created_at, last_saved_at)
             VALUES (5, 1, 'Elder', 'elder', 1, 1, {blob}, 9, 4242, 1, 2, 3, 0, 10, 5, 1, 1);"
    ));
    let mut b = f.open();
    assert_eq!(b.schema_version().unwrap(), 2);
    let r = b.load_character(CharacterId(5)).unwrap().unwrap();
    assert_eq!((r.level, r.exp, r.items.len()), (9, 4242, 0));
    // And it saves items from now on.
    let mut s = state(r.id, 3);
    s.items = common::items(4);
    b.save_states(std::slice::from_ref(&s), 2).unwrap();
    assert!(has_state(&b.load_character(r.id).unwrap().unwrap(), &s));
}

/// A PostgreSQL connection the server killed comes back on `reconnect`.
#[test]
fn postgres_reconnects_after_the_connection_is_killed() {
    use tos_store::Backend;
    let Some(f) = Fixture::postgres() else { return };
    let mut b = f.pg_backend();
    b.migrate().unwrap();
    let acc = account(&mut b, "reconnect").id;
    let c = b
        .create_character(&new_character(acc, "Phoenix"), 7, 1)
        .unwrap();
    b.save_states(&[state(c.id, 1)], 1).unwrap();
    let pid: i32 = b
        .client()
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mut killer = f.pg_backend();
    killer
        .client()
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    common::wait_for("the connection to die", || {
        b.save_states(&[state(c.id, 2)], 2).is_err()
    });
    b.reconnect().unwrap();
    b.save_states(&[state(c.id, 3)], 3).unwrap();
    assert!(has_state(
        &b.load_character(c.id).unwrap().unwrap(),
        &state(c.id, 3)
    ));
}

/// A PostgreSQL URL with nothing listening is an error, not a hang or panic.
#[test]
fn postgres_unreachable_is_a_transient_error() {
    match tos_store::PostgresBackend::connect("postgres://postgres@127.0.0.1:1/test", None) {
        Err(e) => assert!(e.is_transient(), "{e}"),
        Ok(_) => panic!("connected to port 1"),
    }
}
