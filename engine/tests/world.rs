//! The world through the real server: players log in, enter, move, get
//! snapshots that acknowledge their inputs, are corrected when they cheat,
//! and are handed to the other core (entity, connection and session) when
//! they walk across the border between the two cores' stripes.
//! 127.0.0.1 only, bounded.

mod common;

use std::time::Duration;

use common::{TestServer, enter, play, spec};

/// The battle-grounds templates of `config/data/characters.ron` (they start
/// near the battle centre, a few metres apart).
const ARENA: [u16; 2] = [3, 4];

#[test]
fn players_enter_move_and_see_their_inputs_acknowledged() {
    let server = TestServer::start(2);
    let mut players: Vec<_> = (0..4)
        .map(|i| enter(server.handle(), spec(&format!("walker{i}"), ARENA[i % 2])))
        .collect();
    let ok = play(
        &mut players,
        Duration::from_secs(10),
        |_, _| [300.0, 0.0, 0.0],
        |ps| {
            ps.iter()
                .all(|p| p.snapshots > 60 && p.receiver.input_ack() > 30)
        },
    );
    assert!(
        ok,
        "snapshots: {:?}",
        players
            .iter()
            .map(|p| (p.snapshots, p.receiver.input_ack()))
            .collect::<Vec<_>>()
    );
    for p in &players {
        // Each sees the others (they start within the battle grounds) and itself.
        assert!(
            p.receiver.visible_count() >= 4,
            "{}",
            p.receiver.visible_count()
        );
        let me = p.entity().unwrap();
        assert!(
            p.receiver.state(me).is_some(),
            "a player sees its own entity"
        );
        assert!(
            p.corrections.is_empty(),
            "honest movement is never corrected"
        );
    }
}

#[test]
fn a_speed_hack_is_corrected() {
    let server = TestServer::start(2);
    let mut players = vec![enter(server.handle(), spec("speeder", ARENA[0]))];
    let ok = play(
        &mut players,
        Duration::from_secs(10),
        |_, step| {
            if step > 30 {
                [20_000.0, 0.0, 0.0]
            } else {
                [0.0; 3]
            }
        },
        |ps| !ps[0].corrections.is_empty(),
    );
    assert!(ok, "no correction for 20x speed");
}

/// Creates a character for `account`, logs out, and moves it to `at` in
/// the database (as a game master would), so the next login enters there.
fn character_at(server: &TestServer, account: &str, at: [f32; 3]) -> u64 {
    let p = enter(server.handle(), spec(account, ARENA[0]));
    let id = p.entered.unwrap().character_id;
    p.leave();
    // The logout save lands before the edit (it is written at once).
    std::thread::sleep(Duration::from_millis(300));
    server.place(id, at);
    id
}

#[test]
fn walking_across_the_border_hands_the_player_to_the_other_core() {
    let server = TestServer::start(2);
    // Stripes of 8 quadrant columns each: the border is x = 0.
    let id = character_at(&server, "borderer", [-1_000.0, 1_000.0, 0.0]);
    let mut players = vec![enter(server.handle(), spec("borderer", ARENA[0]))];
    assert_eq!(players[0].entered.unwrap().character_id, id);
    assert!(
        (players[0].position[0] + 1_000.0).abs() < 1.0,
        "entered where the database put it: {:?}",
        players[0].position
    );
    let ok = play(
        &mut players,
        Duration::from_secs(15),
        |_, _| [900.0, 0.0, 0.0],
        |ps| ps[0].position[0] > 1_000.0 && ps[0].snapshots > 30,
    );
    assert!(
        ok,
        "the walk did not finish: x = {}",
        players[0].position[0]
    );
    let before_snapshots = players[0].snapshots;
    // Keep playing east of the border: snapshots keep coming from core 1.
    play(
        &mut players,
        Duration::from_secs(2),
        |_, _| [0.0; 3],
        |_| false,
    );
    let p = &players[0];
    assert_eq!(
        p.conn.connection_id() as u8,
        1,
        "the connection moved to core 1"
    );
    assert!(
        p.snapshots > before_snapshots + 30,
        "snapshots continued after the hand-off"
    );
    assert!(
        p.corrections.is_empty(),
        "crossing is not cheating: {:?}",
        p.corrections
    );
    std::thread::sleep(Duration::from_millis(50));
    let stats = server.handle().stats();
    assert_eq!(stats[0].players, 0, "{stats:?}");
    assert_eq!(stats[1].players, 1, "{stats:?}");
    assert!(stats[0].migrations_out >= 1);
    // The session moved with it: leaving from core 1 saves the character
    // where it stands, and the next login finds it there.
    let walker = players.pop().unwrap();
    let x = walker.position[0];
    walker.leave();
    std::thread::sleep(Duration::from_millis(300));
    let again = enter(server.handle(), spec("borderer", ARENA[0]));
    assert!(
        (again.position[0] - x).abs() < 200.0,
        "saved across the hand-off: left at x = {x}, found at {:?}",
        again.position
    );
}

#[test]
fn obstacles_from_a_data_file_stop_players() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/data");
    let server = TestServer::start_with(1, |c| {
        // Obstacles only: the example heightfield raises the ground there
        // above the wall's top, and a player would walk over it.
        c.authority.obstacles_file = Some(format!("{dir}/obstacles-example.ron"));
    });
    // The example wall spans x 6000..6200, y -4000..6000: start a little
    // west of it and walk east.
    character_at(&server, "waller", [4_000.0, 1_000.0, 0.0]);
    let mut players = vec![enter(server.handle(), spec("waller", ARENA[0]))];
    let ok = play(
        &mut players,
        Duration::from_secs(10),
        |_, _| [900.0, 0.0, 0.0],
        |ps| !ps[0].corrections.is_empty(),
    );
    assert!(
        ok,
        "walking through the wall was not corrected (x = {})",
        players[0].position[0]
    );
    assert!(
        players[0].corrections.iter().all(|p| p[0] < 6_000.0),
        "{:?}",
        players[0].corrections
    );

    let mut bad = server.config.clone();
    bad.authority.obstacles_file = Some("/nonexistent/walls.ron".into());
    let e = tos_engine::runtime::start(&bad).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/walls.ron"), "{e}");
}
