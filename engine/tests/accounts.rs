//! Accounts, characters and sessions through the real server: register,
//! log in, session tickets, character rules, one session per character,
//! and every bad request refused with its reason and counted, the server
//! unharmed. 127.0.0.1 only, bounded.

mod common;

use std::time::Duration;

use common::{Player, TestServer, enter, play, spec};
use tos_protocol::wire::Channel;
use tos_protocol::wire::game::{ClientMessage, RefusalReason, ServerMessage, client_type};

fn refusal(bytes: &[u8]) -> (u8, RefusalReason) {
    match ServerMessage::decode(bytes) {
        Ok(ServerMessage::Refused { request, reason }) => (request, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn refused(p: &mut Player, msg: ClientMessage<'_>) -> RefusalReason {
    let (request, reason) = refusal(&p.ask(msg));
    assert_eq!(request, tos_game::session::request_type(&msg), "{msg:?}");
    reason
}

fn authenticated(bytes: &[u8]) -> (u64, Vec<u8>) {
    match ServerMessage::decode(bytes) {
        Ok(ServerMessage::Authenticated {
            account_id, ticket, ..
        }) => (account_id, ticket.to_vec()),
        other => panic!("expected Authenticated, got {other:?}"),
    }
}

fn done(bytes: &[u8]) -> u64 {
    match ServerMessage::decode(bytes) {
        Ok(ServerMessage::CharacterDone { character_id, .. }) => character_id,
        other => panic!("expected CharacterDone, got {other:?}"),
    }
}

/// (id, name, deleted) of each listed character.
fn listed(bytes: &[u8]) -> Vec<(u64, String, bool)> {
    match ServerMessage::decode(bytes) {
        Ok(ServerMessage::CharacterList(list)) => list
            .entries()
            .map(|e| {
                let e = e.expect("entries decode");
                (e.character_id, e.name.to_string(), e.deleted_at != 0)
            })
            .collect(),
        other => panic!("expected CharacterList, got {other:?}"),
    }
}

const PASSWORD: &str = "correct horse battery";

fn register(p: &mut Player, account: &str) -> u64 {
    let bytes = p.ask(ClientMessage::Register {
        account,
        password: PASSWORD,
    });
    authenticated(&bytes).0
}

fn create(p: &mut Player, name: &str) -> Result<u64, RefusalReason> {
    let bytes = p.ask(ClientMessage::CharacterCreate {
        name,
        template: 1,
        appearance: &[1, 2],
    });
    match ServerMessage::decode(&bytes) {
        Ok(ServerMessage::CharacterDone { character_id, .. }) => Ok(character_id),
        Ok(ServerMessage::Refused { reason, .. }) => Err(reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn register_login_and_bad_credentials() {
    let server = TestServer::start(1);
    let counters = &server.handle().game().unwrap().services.counters;
    let mut p = Player::raw(server.handle());
    p.connect();
    // Wrong state: nothing but Register and Login before logging in.
    assert_eq!(
        refused(&mut p, ClientMessage::CharacterList),
        RefusalReason::WrongState
    );
    let enter_msg = ClientMessage::EnterToWorld {
        character_id: 1,
        name: "",
    };
    assert_eq!(refused(&mut p, enter_msg), RefusalReason::WrongState);
    // Unknown account and bad input.
    let login = |account, password| ClientMessage::Login { account, password };
    assert_eq!(
        refused(&mut p, login("nobody", PASSWORD)),
        RefusalReason::BadCredentials
    );
    let reg = |account, password| ClientMessage::Register { account, password };
    assert_eq!(
        refused(&mut p, reg("a b", PASSWORD)),
        RefusalReason::AccountNameInvalid
    );
    assert_eq!(
        refused(&mut p, reg("shorty", "short")),
        RefusalReason::PasswordInvalid
    );
    let id = register(&mut p, "Alice");
    assert!(id > 0);
    // Logged in: Register and Login are now in the wrong state.
    assert_eq!(
        refused(&mut p, reg("other", PASSWORD)),
        RefusalReason::WrongState
    );

    let mut q = Player::raw(server.handle());
    q.connect();
    assert_eq!(
        refused(&mut q, reg("aLiCe", PASSWORD)),
        RefusalReason::AccountExists,
        "names are unique whatever their case"
    );
    assert_eq!(
        refused(&mut q, login("alice", "not the password")),
        RefusalReason::BadCredentials
    );
    let (again, ticket) = authenticated(&q.ask(login("ALICE", PASSWORD)));
    assert_eq!(again, id, "logs into the same account");
    assert!(!ticket.is_empty(), "a session ticket is issued");

    assert!(counters.refusals_of(RefusalReason::BadCredentials) >= 2);
    assert!(counters.refusals_of(RefusalReason::WrongState) >= 3);
    assert!(counters.refusals_of(RefusalReason::AccountExists) >= 1);
}

#[test]
fn malformed_messages_are_refused_and_the_server_carries_on() {
    let server = TestServer::start(1);
    let mut p = Player::raw(server.handle());
    p.connect();
    // Register with an account name that is not UTF-8.
    let mut bytes = vec![client_type::REGISTER, 3, 0xff, 0xfe, 0xfd, 8];
    bytes.extend_from_slice(b"password");
    p.inbox.clear();
    p.send_raw(Channel::ReliableOrdered, &bytes);
    assert!(p.pump_until(Duration::from_secs(5), |p| !p.inbox.is_empty()));
    assert_eq!(refusal(&p.inbox[0]).1, RefusalReason::Malformed);
    // An overlong name (more than the wire allows).
    let long = "x".repeat(40);
    let mut bytes = vec![client_type::REGISTER, 40];
    bytes.extend_from_slice(long.as_bytes());
    bytes.push(8);
    bytes.extend_from_slice(b"password");
    p.inbox.clear();
    p.send_raw(Channel::ReliableOrdered, &bytes);
    assert!(p.pump_until(Duration::from_secs(5), |p| !p.inbox.is_empty()));
    assert_eq!(refusal(&p.inbox[0]).1, RefusalReason::Malformed);
    // An unknown message type.
    p.inbox.clear();
    p.send_raw(Channel::ReliableOrdered, &[0xee, 1, 2, 3]);
    assert!(p.pump_until(Duration::from_secs(5), |p| !p.inbox.is_empty()));
    assert_eq!(refusal(&p.inbox[0]).1, RefusalReason::Malformed);
    // Still serving.
    assert!(register(&mut p, "survivor") > 0);
    let counters = &server.handle().game().unwrap().services.counters;
    assert!(
        counters
            .malformed_total
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}

#[test]
fn character_rules_limits_and_ownership() {
    let server = TestServer::start(1);
    let mut p = Player::raw(server.handle());
    p.connect();
    register(&mut p, "bob");
    // Names: charset, length, reserved; templates must exist.
    assert_eq!(create(&mut p, "1abc"), Err(RefusalReason::NameInvalid));
    assert_eq!(create(&mut p, "ab"), Err(RefusalReason::NameInvalid));
    assert_eq!(
        create(&mut p, &"a".repeat(17)),
        Err(RefusalReason::NameInvalid)
    );
    assert_eq!(create(&mut p, "Admin"), Err(RefusalReason::NameReserved));
    let bytes = p.ask(ClientMessage::CharacterCreate {
        name: "Templateless",
        template: 999,
        appearance: &[],
    });
    assert_eq!(refusal(&bytes).1, RefusalReason::UnknownTemplate);
    // Seven characters, not eight.
    let mut ids = Vec::new();
    for i in 0..7 {
        let name = format!("Bob{}", (b'a' + i) as char);
        ids.push(create(&mut p, &name).expect("created"));
    }
    assert_eq!(
        create(&mut p, "Bobh"),
        Err(RefusalReason::TooManyCharacters)
    );
    let list = listed(&p.ask(ClientMessage::CharacterList));
    assert_eq!(list.len(), 7);
    assert!(list.iter().all(|(_, _, deleted)| !deleted));

    // Someone else can neither take a name nor touch bob's characters.
    let mut q = Player::raw(server.handle());
    q.connect();
    register(&mut q, "carol");
    assert_eq!(create(&mut q, "BOBA"), Err(RefusalReason::NameTaken));
    let del = ClientMessage::CharacterDelete {
        character_id: ids[0],
    };
    assert_eq!(refused(&mut q, del), RefusalReason::NoSuchCharacter);
    let enter_bobs = ClientMessage::EnterToWorld {
        character_id: ids[0],
        name: "",
    };
    assert_eq!(refused(&mut q, enter_bobs), RefusalReason::NoSuchCharacter);

    // Delete, enter a deleted one, restore.
    assert_eq!(done(&p.ask(del)), ids[0]);
    let list = listed(&p.ask(ClientMessage::CharacterList));
    assert!(
        list.iter()
            .any(|(id, _, deleted)| *id == ids[0] && *deleted)
    );
    let enter_deleted = ClientMessage::EnterToWorld {
        character_id: ids[0],
        name: "",
    };
    assert_eq!(
        refused(&mut p, enter_deleted),
        RefusalReason::CharacterDeleted
    );
    let restore = ClientMessage::CharacterRestore {
        character_id: ids[0],
    };
    assert_eq!(done(&p.ask(restore)), ids[0]);
    assert_eq!(refused(&mut p, restore), RefusalReason::CharacterNotDeleted);
    // Still a slot short of eight: the deleted one came back.
    assert_eq!(
        create(&mut p, "Bobh"),
        Err(RefusalReason::TooManyCharacters)
    );
}

#[test]
fn one_live_session_per_character() {
    let server = TestServer::start(1);
    let first = enter(server.handle(), spec("dana", 1));
    let id = first.entered.unwrap().character_id;
    let mut second = Player::raw(server.handle());
    second.connect();
    let (_, _) = authenticated(&second.ask(ClientMessage::Login {
        account: "dana",
        password: PASSWORD,
    }));
    let enter_msg = ClientMessage::EnterToWorld {
        character_id: id,
        name: "",
    };
    assert_eq!(
        refused(&mut second, enter_msg),
        RefusalReason::CharacterInUse
    );
    // Deleting a character that is playing is refused too.
    let del = ClientMessage::CharacterDelete { character_id: id };
    assert_eq!(refused(&mut second, del), RefusalReason::CharacterInUse);
    first.leave();
    std::thread::sleep(Duration::from_millis(200));
    let bytes = second.ask(enter_msg);
    assert!(
        matches!(
            ServerMessage::decode(&bytes),
            Ok(ServerMessage::WorldEntered { character_id, .. }) if character_id == id
        ),
        "enters once the first session left: {:?}",
        ServerMessage::decode(&bytes)
    );
    // In the world: selection messages are in the wrong state.
    assert_eq!(
        refused(&mut second, ClientMessage::CharacterList),
        RefusalReason::WrongState
    );
    // LeaveWorld goes back to the selection screen.
    second.send(Channel::ReliableOrdered, ClientMessage::LeaveWorld);
    std::thread::sleep(Duration::from_millis(200));
    let list = listed(&second.ask(ClientMessage::CharacterList));
    assert_eq!(list.len(), 1);
}

#[test]
fn a_session_ticket_reconnects_without_a_password() {
    let server = TestServer::start(1);
    let first = enter(server.handle(), spec("erin", 1));
    let ticket = first.ticket.clone().expect("a ticket");
    assert!(!ticket.is_empty());
    first.leave();
    std::thread::sleep(Duration::from_millis(200));
    // With the ticket, the flow never sends a password.
    let mut s = spec("erin", 1);
    s.password = "wrong password, never sent".into();
    s.ticketed = true;
    let mut p = Player::with_ticket(server.handle(), s, ticket.clone());
    assert!(
        p.pump_until(Duration::from_secs(10), |p| p.entered.is_some()
            || p.failed.is_some()),
        "no answer"
    );
    assert!(p.entered.is_some(), "{:?} {:?}", p.failed, p.refusals);

    // A ticket with one byte changed is refused in the handshake.
    let mut bad = ticket.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let mut s = spec("erin", 1);
    s.ticketed = true;
    let mut q = Player::with_ticket(server.handle(), s, bad);
    assert!(q.pump_until(Duration::from_secs(10), |q| q.denied));
    let counters = &server.handle().game().unwrap().services.counters;
    assert!(
        counters
            .tickets_rejected_total
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[test]
fn characters_survive_a_graceful_restart() {
    let mut server = TestServer::start(2);
    let mut players = vec![enter(server.handle(), spec("frank", 1))];
    let start = players[0].position;
    play(
        &mut players,
        Duration::from_secs(2),
        |_, _| [300.0, 0.0, 0.0],
        |_| false,
    );
    // Let the last claims be applied and acknowledged.
    play(
        &mut players,
        Duration::from_millis(300),
        |_, _| [0.0; 3],
        |_| false,
    );
    let acked = players[0].acked_position().expect("claims acknowledged");
    assert!(
        acked[0] > start[0] + 300.0,
        "walked: {start:?} -> {acked:?}"
    );
    // Stop with the player in the world: it is saved on the way out.
    assert!(server.stop(), "stops cleanly");
    drop(players);
    server.restart();
    let p = enter(server.handle(), spec("frank", 1));
    let d = (p.position[0] - acked[0]).hypot(p.position[1] - acked[1]);
    assert!(
        d < 50.0,
        "found where it was left: acked {acked:?}, found {:?}",
        p.position
    );
}

#[test]
fn external_tickets_from_a_studio_backend_log_in() {
    use ed25519_dalek::SigningKey;
    use tos_auth::{TicketClaims, TicketKind, encode_ticket};
    let studio = SigningKey::from_bytes(&[42u8; 32]);
    let public: String = studio
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let server = TestServer::start_with(1, |c| c.accounts.external_ticket_keys = vec![public]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = TicketClaims {
        kind: TicketKind::External,
        account_id: 0,
        account_name: "alice".into(),
        issued_at: now,
        expires_at: now + 600,
    };
    let ticket = encode_ticket(&studio, &claims, [1; 8]).unwrap();
    let mut s = spec("gina", 1);
    s.ticketed = true;
    let mut p = Player::with_ticket(server.handle(), s.clone(), ticket.clone());
    assert!(
        p.pump_until(Duration::from_secs(10), |p| p.entered.is_some()
            || p.failed.is_some()
            || p.denied)
    );
    assert!(
        p.entered.is_some(),
        "{:?} {:?} {}",
        p.failed,
        p.refusals,
        p.denied
    );

    // A local account named like the external one is a different account:
    // its password opens nothing of the external player's.
    let mut local = Player::raw(server.handle());
    local.connect();
    let (local_id, _) = authenticated(&local.ask(ClientMessage::Register {
        account: "alice",
        password: PASSWORD,
    }));
    let listed_local = listed(&local.ask(ClientMessage::CharacterList));
    assert!(listed_local.is_empty(), "{listed_local:?}");
    assert!(local_id > 0);

    // Expired, or signed by a key nobody trusts: denied.
    let old = TicketClaims {
        issued_at: now - 7200,
        expires_at: now - 3600,
        ..claims.clone()
    };
    let expired = encode_ticket(&studio, &old, [2; 8]).unwrap();
    let mut q = Player::with_ticket(server.handle(), s.clone(), expired);
    assert!(q.pump_until(Duration::from_secs(10), |q| q.denied));
    let stranger = SigningKey::from_bytes(&[9u8; 32]);
    let forged = encode_ticket(&stranger, &claims, [3; 8]).unwrap();
    let mut r = Player::with_ticket(server.handle(), s, forged);
    assert!(r.pump_until(Duration::from_secs(10), |r| r.denied));
}

#[test]
fn login_attempts_are_rate_limited_per_account() {
    let server = TestServer::start_with(1, |c| {
        c.accounts.login_attempts_per_minute_per_account = 3;
    });
    let mut p = Player::raw(server.handle());
    p.connect();
    let login = ClientMessage::Login {
        account: "henry",
        password: "wrong password",
    };
    let mut reasons = Vec::new();
    for _ in 0..6 {
        reasons.push(refused(&mut p, login));
    }
    assert!(reasons.contains(&RefusalReason::RateLimited), "{reasons:?}");
    assert_eq!(reasons[0], RefusalReason::BadCredentials);
}
