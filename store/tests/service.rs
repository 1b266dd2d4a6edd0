//! The store service (write-behind, acknowledgements, shutdown, failures),
//! run on SQLite and on PostgreSQL.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Duration;

use common::{Fixture, Flaky, FlakyControl, account, has_state, new_character, state, wait_for};
use crossbeam_channel::{Receiver, TrySendError};
use tos_store::{
    AccountId, CharacterId, Store, StoreCommand, StoreHandle, StoreReply, StoreRequest,
    StoreResponse, StoreSettings,
};

suite!(
    saves_coalesce_and_flush_acks_after_commit,
    saves_are_written_within_the_interval,
    save_now_is_acknowledged_once_durable,
    shutdown_flushes_everything,
    loads_see_pending_saves,
    requests_are_answered,
    failed_batches_are_retried_and_nothing_is_lost,
    full_queue_hands_the_command_back,
);

/// Settings whose interval never fires during a test, so only explicit
/// flushes write (no timing in the assertions).
fn manual() -> StoreSettings {
    StoreSettings {
        save_interval_ms: 600_000,
        batch_delay_ms: 600_000,
        retry_initial_ms: 5,
        retry_max_ms: 50,
        ..StoreSettings::default()
    }
}

/// `n` characters on one new account.
fn characters(f: &Fixture, n: u32) -> (AccountId, Vec<CharacterId>) {
    let mut b = f.open();
    let acc = account(&mut *b, "service").id;
    let ids = (0..n)
        .map(|i| {
            b.create_character(&new_character(acc, &format!("s{i}")), 10_000, 1)
                .unwrap()
                .id
        })
        .collect();
    (acc, ids)
}

fn reply(rx: &Receiver<StoreReply>, id: u64) -> Result<StoreResponse, tos_store::StoreError> {
    let r = rx.recv_timeout(Duration::from_secs(60)).expect("a reply");
    assert_eq!(r.request_id, id);
    r.result
}

fn flush(store: &StoreHandle, id: u64) -> Result<StoreResponse, tos_store::StoreError> {
    let (tx, rx) = crossbeam_channel::bounded(4);
    store
        .try_send(StoreCommand::Flush {
            request_id: id,
            reply: tx,
        })
        .unwrap();
    reply(&rx, id)
}

fn saves_coalesce_and_flush_acks_after_commit(f: &Fixture) {
    let (_, ids) = characters(f, 100);
    let store = Store::start(manual(), f.open()).unwrap();
    for round in 0..3 {
        for (i, &id) in ids.iter().enumerate() {
            store
                .try_send(StoreCommand::Save(state(id, i as u32 + round * 1000)))
                .unwrap();
        }
    }
    assert!(matches!(flush(&store, 7), Ok(StoreResponse::Done)));
    // Acknowledged means committed: a fresh connection sees the latest.
    let mut check = f.open();
    for (i, &id) in ids.iter().enumerate() {
        let r = check.load_character(id).unwrap().unwrap();
        assert!(has_state(&r, &state(id, i as u32 + 2000)));
    }
    let m = store.metrics();
    assert_eq!(
        m.saves_total.load(Relaxed),
        100,
        "300 saves coalesced into 100"
    );
    assert_eq!(m.save_batches_total.load(Relaxed), 1);
    assert_eq!(m.pending_saves.load(Relaxed), 0);
    // Flushing nothing is acknowledged too.
    assert!(matches!(flush(&store, 8), Ok(StoreResponse::Done)));
    store.shutdown_and_join();
}

fn saves_are_written_within_the_interval(f: &Fixture) {
    let (_, ids) = characters(f, 1);
    let settings = StoreSettings {
        save_interval_ms: 50,
        ..manual()
    };
    let store = Store::start(settings, f.open()).unwrap();
    let s = state(ids[0], 42);
    store.try_send(StoreCommand::Save(s.clone())).unwrap();
    let mut check = f.open();
    wait_for("the interval write", || {
        has_state(&check.load_character(ids[0]).unwrap().unwrap(), &s)
    });
    wait_for("the batch counter", || {
        store.metrics().save_batches_total.load(Relaxed) == 1
    });
    store.shutdown_and_join();
}

fn save_now_is_acknowledged_once_durable(f: &Fixture) {
    let (_, ids) = characters(f, 2);
    let store = Store::start(manual(), f.open()).unwrap();
    store
        .try_send(StoreCommand::Save(state(ids[1], 5)))
        .unwrap();
    let (tx, rx) = crossbeam_channel::bounded(4);
    let s = state(ids[0], 9);
    store
        .try_send(StoreCommand::SaveNow {
            request_id: 31,
            state: s.clone(),
            reply: tx,
        })
        .unwrap();
    assert!(matches!(reply(&rx, 31), Ok(StoreResponse::Done)));
    let mut check = f.open();
    assert!(has_state(
        &check.load_character(ids[0]).unwrap().unwrap(),
        &s
    ));
    // Everything pending went in the same transaction.
    assert!(has_state(
        &check.load_character(ids[1]).unwrap().unwrap(),
        &state(ids[1], 5)
    ));
    store.shutdown_and_join();
}

fn shutdown_flushes_everything(f: &Fixture) {
    let (_, ids) = characters(f, 50);
    let store = Store::start(manual(), f.open()).unwrap();
    for (i, &id) in ids.iter().enumerate() {
        store
            .try_send(StoreCommand::Save(state(id, i as u32 + 3)))
            .unwrap();
    }
    store.shutdown_and_join();
    let mut check = f.open();
    for (i, &id) in ids.iter().enumerate() {
        assert!(has_state(
            &check.load_character(id).unwrap().unwrap(),
            &state(id, i as u32 + 3)
        ));
    }
}

fn loads_see_pending_saves(f: &Fixture) {
    let (acc, ids) = characters(f, 1);
    let store = Store::start(manual(), f.open()).unwrap();
    let s = state(ids[0], 77);
    store.try_send(StoreCommand::Save(s.clone())).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(4);
    let load = StoreRequest::LoadCharacter { id: ids[0] };
    store
        .try_send(StoreCommand::Request {
            request_id: 1,
            request: load,
            reply: tx.clone(),
        })
        .unwrap();
    match reply(&rx, 1) {
        Ok(StoreResponse::Loaded(Some(r))) => assert!(has_state(&r, &s)),
        other => panic!("{other:?}"),
    }
    let list = StoreRequest::ListCharacters { account: acc };
    store
        .try_send(StoreCommand::Request {
            request_id: 2,
            request: list,
            reply: tx,
        })
        .unwrap();
    match reply(&rx, 2) {
        Ok(StoreResponse::Characters(v)) => assert!(has_state(&v[0], &s)),
        other => panic!("{other:?}"),
    }
    // Not yet written: the interval is long.
    assert_eq!(store.metrics().saves_total.load(Relaxed), 0);
    store.shutdown_and_join();
}

fn requests_are_answered(f: &Fixture) {
    let store = Store::start(manual(), f.open()).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(16);
    let send = |id: u64, request: StoreRequest| {
        store
            .try_send(StoreCommand::Request {
                request_id: id,
                request,
                reply: tx.clone(),
            })
            .unwrap();
    };
    send(
        1,
        StoreRequest::CreateAccount {
            name: "Req".into(),
            password_hash: None,
        },
    );
    let Ok(StoreResponse::AccountCreated(acc)) = reply(&rx, 1) else {
        panic!("account")
    };
    send(
        2,
        StoreRequest::CreateAccount {
            name: "req".into(),
            password_hash: None,
        },
    );
    assert!(matches!(
        reply(&rx, 2),
        Err(tos_store::StoreError::NameTaken)
    ));
    send(3, StoreRequest::AccountByName { name: "REQ".into() });
    assert!(matches!(reply(&rx, 3), Ok(StoreResponse::Account(Some(a))) if a.id == acc));
    send(
        4,
        StoreRequest::CreateCharacter {
            new: new_character(acc, "Req1"),
            max_per_account: 1,
        },
    );
    let Ok(StoreResponse::Character(c)) = reply(&rx, 4) else {
        panic!("character")
    };
    send(
        5,
        StoreRequest::CreateCharacter {
            new: new_character(acc, "Req2"),
            max_per_account: 1,
        },
    );
    assert!(matches!(
        reply(&rx, 5),
        Err(tos_store::StoreError::TooManyCharacters)
    ));
    send(
        6,
        StoreRequest::DeleteCharacter {
            account: acc,
            id: c.id,
        },
    );
    assert!(matches!(reply(&rx, 6), Ok(StoreResponse::Done)));
    send(
        7,
        StoreRequest::RestoreCharacter {
            account: acc,
            id: c.id,
            window_secs: 3600,
        },
    );
    assert!(matches!(reply(&rx, 7), Ok(StoreResponse::Character(r)) if r.deleted_at.is_none()));
    send(8, StoreRequest::PurgeDeleted { older_than: 0 });
    assert!(matches!(reply(&rx, 8), Ok(StoreResponse::Purged(0))));
    assert_eq!(store.metrics().requests_total.load(Relaxed), 8);
    assert_eq!(store.metrics().request_failures_total.load(Relaxed), 0);
    store.shutdown_and_join();
}

fn failed_batches_are_retried_and_nothing_is_lost(f: &Fixture) {
    let (_, ids) = characters(f, 20);
    let control = Arc::new(FlakyControl::default());
    control.down.store(true, SeqCst);
    let backend = Flaky {
        inner: f.open(),
        control: Arc::clone(&control),
    };
    let settings = StoreSettings {
        save_interval_ms: 10,
        saturation_pending_saves: 10,
        ..manual()
    };
    let store = Store::start(settings, Box::new(backend)).unwrap();
    let client = store.client();
    for (i, &id) in ids.iter().enumerate() {
        client
            .try_send(StoreCommand::Save(state(id, i as u32)))
            .unwrap();
    }
    wait_for("the saturation flag", || client.is_saturated());
    wait_for("several failed attempts", || {
        store.metrics().save_failures_total.load(Relaxed) >= 3
    });
    // A flush while down waits for the retry that succeeds.
    let (tx, rx) = crossbeam_channel::bounded(4);
    client
        .try_send(StoreCommand::Flush {
            request_id: 99,
            reply: tx,
        })
        .unwrap();
    // Newer saves keep replacing older ones while down.
    for (i, &id) in ids.iter().enumerate() {
        client
            .try_send(StoreCommand::Save(state(id, i as u32 + 500)))
            .unwrap();
    }
    assert!(
        rx.try_recv().is_err(),
        "no acknowledgement while the database is down"
    );
    control.down.store(false, SeqCst);
    assert!(matches!(reply(&rx, 99), Ok(StoreResponse::Done)));
    let mut check = f.open();
    for (i, &id) in ids.iter().enumerate() {
        let r = check.load_character(id).unwrap().unwrap();
        assert!(has_state(&r, &state(id, i as u32 + 500)), "{r:?}");
    }
    let m = store.metrics();
    assert!(!client.is_saturated());
    assert!(m.retries_total.load(Relaxed) >= 2);
    assert!(
        control.reconnects.load(SeqCst) >= 2,
        "reconnects before retrying"
    );
    assert_eq!(m.saves_refused_total.load(Relaxed), 0);
    let mut text = String::new();
    m.render_prometheus(&mut text);
    assert!(text.contains("tos_store_save_failures_total "), "{text}");
    assert!(text.contains("tos_store_saturated 0"), "{text}");
    store.shutdown_and_join();
}

fn full_queue_hands_the_command_back(f: &Fixture) {
    let (_, ids) = characters(f, 1);
    let control = Arc::new(FlakyControl::default());
    control.stall.store(true, SeqCst);
    let backend = Flaky {
        inner: f.open(),
        control: Arc::clone(&control),
    };
    let settings = StoreSettings {
        queue_capacity: 4,
        ..manual()
    };
    let store = Store::start(settings, Box::new(backend)).unwrap();
    let (tx, _rx) = crossbeam_channel::bounded(4);
    // The flush stalls the thread inside the save...
    store
        .try_send(StoreCommand::Save(state(ids[0], 1)))
        .unwrap();
    store
        .try_send(StoreCommand::Flush {
            request_id: 1,
            reply: tx,
        })
        .unwrap();
    // ...so the channel fills and the command comes back.
    let mut returned = None;
    for i in 0..1000 {
        match store.try_send(StoreCommand::Save(state(ids[0], i))) {
            Ok(()) => {}
            Err(TrySendError::Full(cmd)) => {
                returned = Some(cmd);
                break;
            }
            Err(TrySendError::Disconnected(_)) => panic!("store ended"),
        }
    }
    assert!(matches!(returned, Some(StoreCommand::Save(_))));
    control.stall.store(false, SeqCst);
    store.shutdown_and_join();
}
