//! The Rust API against a real `tos-server`: a `UdpClient` logs in, walks
//! with prediction, sees its own entity through interpolation, and comes
//! back with its session ticket instead of the password.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tos_client::{EntityEvent, LoginSpec, SessionConfig, SessionEvent, UdpClient};
use tos_protocol::integrity::IntegrityTable;

fn spec(account: &str) -> LoginSpec {
    LoginSpec {
        account: account.into(),
        password: "correct horse battery".into(),
        register: true,
        character_name: "Sessiontester".into(),
        template: 1,
        appearance: vec![1, 2, 3, 4],
        ticketed: false,
        login_only: false,
    }
}

fn config(server: &common::Server, login: LoginSpec) -> SessionConfig {
    let mut c = SessionConfig::new(server.key(), login);
    c.integrity = Some(Arc::new(IntegrityTable::generate(&server.integrity(), 1)));
    c
}

/// Pumps until `done` says so (or 20 s pass); returns the events.
fn pump(
    client: &mut UdpClient,
    mut each: impl FnMut(&mut UdpClient),
    mut done: impl FnMut(&SessionEvent) -> bool,
) -> Vec<SessionEvent> {
    let end = Instant::now() + Duration::from_secs(20);
    let mut all = Vec::new();
    while Instant::now() < end {
        client.poll(Instant::now()).expect("poll");
        each(client);
        while let Some(e) = client.poll_event() {
            let stop = done(&e);
            all.push(e);
            if stop {
                return all;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out; events: {all:?}");
}

#[test]
fn login_walk_interpolate_and_come_back_with_the_ticket() {
    let server = common::Server::start();
    let addr: SocketAddr = server.addr.parse().unwrap();
    let mut client =
        UdpClient::connect(addr, config(&server, spec("sessiontester")), Instant::now())
            .expect("connects");
    let events = pump(
        &mut client,
        |_| {},
        |e| matches!(e, SessionEvent::EnteredWorld(_)),
    );
    assert!(events.iter().any(|e| matches!(e, SessionEvent::Connected)));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::CharacterCreated { .. }))
    );
    let SessionEvent::EnteredWorld(entered) = *events.last().unwrap() else {
        unreachable!()
    };
    let ticket = client.session().ticket().to_vec();
    assert!(!ticket.is_empty(), "the server issued a session ticket");

    // Walk east for a second at 3 m/s, claiming every 16 ms.
    let mut pos = entered.position;
    let mut last = Instant::now();
    let start = last;
    let mut acked = 0u32;
    let mut me_seen = false;
    pump(
        &mut client,
        |c| {
            let now = Instant::now();
            let dt = now.duration_since(last).as_secs_f32();
            if dt >= 0.016 {
                last = now;
                pos[0] += 300.0 * dt;
                let _ = c
                    .session_mut()
                    .send_move(pos, [300.0, 0.0, 0.0], 0.0, 1, dt);
            }
        },
        |e| {
            match e {
                SessionEvent::Snapshot { input_ack, .. } => acked = acked.max(*input_ack),
                SessionEvent::Entity(EntityEvent::Created(s) | EntityEvent::Updated(s))
                    if s.id == entered.entity_id =>
                {
                    me_seen = true;
                }
                _ => {}
            }
            start.elapsed() > Duration::from_secs(1)
        },
    );
    let session = client.session();
    assert!(me_seen, "the player's own entity is in its snapshots");
    assert!(acked > 30, "the server acknowledged the claims: {acked}");
    assert!(
        session.prediction().len() < 30,
        "acknowledged claims are forgotten: {} pending",
        session.prediction().len()
    );
    // The player as drawn 3 ticks in the past: behind where it claims to
    // be, but not by more than a few ticks of walking (plus quantization).
    let clock = session.clock();
    let render = clock
        .render_tick(Instant::now(), 3.0)
        .expect("snapshots came");
    let drawn = session
        .interpolator()
        .sample(entered.entity_id, render, clock)
        .expect("the player is buffered");
    assert!(drawn.position[0] > entered.position[0] + 100.0, "{drawn:?}");
    assert!(drawn.position[0] <= pos[0] + 5.0, "{drawn:?} vs {pos:?}");
    assert!(pos[0] - drawn.position[0] < 300.0, "{drawn:?} vs {pos:?}");
    client.close(Instant::now()).unwrap();

    // Back with the ticket: no password, the same character.
    std::thread::sleep(Duration::from_millis(500));
    let mut login = spec("sessiontester");
    login.password = String::new();
    let mut c = config(&server, login);
    c.ticket = ticket;
    let mut again = UdpClient::connect(addr, c, Instant::now()).expect("connects");
    let events = pump(
        &mut again,
        |_| {},
        |e| {
            matches!(
                e,
                SessionEvent::EnteredWorld(_) | SessionEvent::LoginFailed { .. }
            )
        },
    );
    let Some(SessionEvent::EnteredWorld(back)) = events.last() else {
        panic!("{events:?}\n{}", server.log());
    };
    assert_eq!(back.character_id, entered.character_id);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SessionEvent::CharacterCreated { .. }))
    );
    again.close(Instant::now()).unwrap();
}

#[test]
fn the_player_chooses_the_character() {
    let server = common::Server::start();
    let addr: SocketAddr = server.addr.parse().unwrap();
    let mut c = config(&server, spec("chooser"));
    c.choose_character = true;
    let mut client = UdpClient::connect(addr, c, Instant::now()).expect("connects");
    // A new account: an empty list, and the session waits.
    let events = pump(
        &mut client,
        |_| {},
        |e| matches!(e, SessionEvent::Characters { .. }),
    );
    assert!(matches!(
        events.last(),
        Some(SessionEvent::Characters { count: 0 })
    ));
    assert!(client.session().characters().is_empty());
    // Claims need a character; a name the protocol cannot carry is refused
    // here, not sent.
    assert!(
        client
            .session_mut()
            .send_move([0.0; 3], [0.0; 3], 0.0, 0, 0.016)
            .is_err()
    );
    assert!(
        client
            .session_mut()
            .create_character(&"x".repeat(40), 1, &[])
            .is_err()
    );
    client
        .session_mut()
        .create_character("Chooser", 2, &[7, 7])
        .unwrap();
    let events = pump(
        &mut client,
        |_| {},
        |e| matches!(e, SessionEvent::Characters { .. }),
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::CharacterCreated { .. }))
    );
    let list = client.session().characters().to_vec();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "Chooser");
    assert_eq!(list[0].template, 2);
    // A character that is not the account's is refused; the list stays.
    client.session_mut().enter_character(u64::MAX).unwrap();
    let events = pump(
        &mut client,
        |_| {},
        |e| matches!(e, SessionEvent::Refused { .. }),
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SessionEvent::LoginFailed { .. }))
    );
    assert_eq!(client.session().characters().len(), 1);
    client
        .session_mut()
        .enter_character(list[0].character_id)
        .unwrap();
    let events = pump(
        &mut client,
        |_| {},
        |e| matches!(e, SessionEvent::EnteredWorld(_)),
    );
    let Some(SessionEvent::EnteredWorld(e)) = events.last() else {
        unreachable!()
    };
    assert_eq!(e.character_id, list[0].character_id);
    assert!(
        client.session_mut().enter_character(1).is_err(),
        "not at the list any more"
    );
    client.close(Instant::now()).unwrap();
}
