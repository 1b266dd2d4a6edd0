//! The world through the real server: players enter, move, get snapshots
//! that acknowledge their inputs, are corrected when they cheat, and are
//! handed to the other core (entity and connection) when they walk across
//! the border between the two cores' stripes. 127.0.0.1 only, bounded.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tos_config::{CoreSelection, ServerConfig};
use tos_engine::runtime::{self, ServerHandle};
use tos_engine::world::dev_spawn_position;
use tos_protocol::connection::{ClientConfig, Connection, Event, ServerKey, TransportConfig};
use tos_protocol::integrity::IntegrityTable;
use tos_protocol::wire::game::{ClientMessage, MovementClaim, ServerMessage};
use tos_protocol::wire::{Channel, Writer};
use tos_shards::SnapshotReceiver;

fn server() -> ServerHandle {
    let mut c = ServerConfig::default();
    c.network.bind = "127.0.0.1:0".into();
    c.network.metrics_addr = None;
    c.runtime.cores = CoreSelection::Count(2);
    c.runtime.pin_threads = false;
    runtime::start(&c).expect("server starts")
}

struct Player {
    socket: UdpSocket,
    conn: Connection,
    character_id: u64,
    entity: Option<u32>,
    receiver: SnapshotReceiver,
    snapshots: u32,
    corrections: Vec<[f32; 3]>,
    position: [f32; 3],
    seq: u32,
}

impl Player {
    fn new(server: &ServerHandle, character_id: u64) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let cfg = ClientConfig {
            transport: Arc::new(TransportConfig::default()),
            server_key: ServerKey::Pinned(server.static_public_key()),
            ticket: b"t".to_vec(),
            integrity: Some(Arc::new(IntegrityTable::generate(
                &server.integrity_secret(),
                tos_engine::settings::CLIENT_VERSION,
            ))),
            seed: [character_id as u8; 32],
        };
        Self {
            socket,
            conn: Connection::connect(cfg, server.local_addr(), Instant::now()).unwrap(),
            character_id,
            entity: None,
            receiver: SnapshotReceiver::new(),
            snapshots: 0,
            corrections: Vec::new(),
            position: dev_spawn_position(character_id),
            seq: 0,
        }
    }

    fn send(&mut self, channel: Channel, msg: ClientMessage<'_>) {
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        msg.encode(&mut w).unwrap();
        let n = w.position();
        self.conn.send(channel, &buf[..n]).unwrap();
    }

    fn claim(&mut self, velocity: [f32; 3], dt: f32) {
        self.seq += 1;
        self.position = [
            self.position[0] + velocity[0] * dt,
            self.position[1] + velocity[1] * dt,
            self.position[2],
        ];
        let claim = MovementClaim {
            input_seq: self.seq,
            position: self.position,
            velocity,
            yaw: 0.0,
            anim: 1,
        };
        self.send(Channel::Unreliable, ClientMessage::SyncEntity(claim));
    }

    fn pump(&mut self) {
        let now = Instant::now();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            self.conn.handle_datagram(now, from, &mut buf[..n]);
        }
        if self.conn.next_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
        let mut enter = false;
        while let Some(e) = self.conn.poll_event() {
            match e {
                Event::Connected => enter = true,
                Event::Message { data, .. } => match ServerMessage::decode(data) {
                    Ok(ServerMessage::WorldEntered { entity_id, .. }) => {
                        self.entity = Some(entity_id)
                    }
                    Ok(ServerMessage::DeltaSync(d)) => {
                        self.receiver.apply(&d).expect("every snapshot applies");
                        self.snapshots += 1;
                    }
                    Ok(ServerMessage::Correction { position, .. }) => {
                        self.corrections.push(position);
                        self.position = position;
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        if enter {
            let id = self.character_id;
            self.send(
                Channel::ReliableOrdered,
                ClientMessage::EnterToWorld {
                    character_id: id,
                    name: "t",
                },
            );
        }
        while let Some(t) = self.conn.poll_transmit(now, &mut buf) {
            let _ = self.socket.send_to(&buf[..t.size], t.destination);
        }
    }
}

/// Runs for `limit`, claiming movement at 60 Hz with `velocity(step)`.
fn play(
    players: &mut [Player],
    limit: Duration,
    mut velocity: impl FnMut(usize, u32) -> [f32; 3],
    mut done: impl FnMut(&[Player]) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    let mut next = Instant::now();
    let mut step = 0u32;
    while Instant::now() < end {
        for p in players.iter_mut() {
            p.pump();
        }
        if Instant::now() >= next {
            next += Duration::from_micros(16_667);
            step += 1;
            for (i, p) in players.iter_mut().enumerate() {
                if p.entity.is_some() {
                    let v = velocity(i, step);
                    p.claim(v, 1.0 / 60.0);
                }
            }
        }
        if done(players) {
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    false
}

#[test]
fn players_enter_move_and_see_their_inputs_acknowledged() {
    let server = server();
    let mut players: Vec<Player> = (1..=4u64)
        .map(|i| Player::new(&server, (i * 7919) | 1 << 63))
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
        // Each sees the others (they spawned within one battle radius) and itself.
        assert!(
            p.receiver.visible_count() >= 4,
            "{}",
            p.receiver.visible_count()
        );
        let me = p.entity.unwrap();
        assert!(
            p.receiver.state(me).is_some(),
            "a player sees its own entity"
        );
        assert!(
            p.corrections.is_empty(),
            "honest movement is never corrected"
        );
    }
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn a_speed_hack_is_corrected() {
    let server = server();
    let mut players = vec![Player::new(&server, 424_242 | 1 << 63)];
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
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn walking_across_the_border_hands_the_player_to_the_other_core() {
    let server = server();
    // Stripes of 8 quadrant columns each: the border is x = 0. Find a
    // battle character that enters just west of it.
    let character_id = (1..100_000u64)
        .map(|i| i | 1 << 63)
        .find(|&id| {
            let p = dev_spawn_position(id);
            (-1_500.0..-500.0).contains(&p[0])
        })
        .expect("a spawn near the border");
    let mut players = vec![Player::new(&server, character_id)];
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
    let stats = server.stats();
    assert_eq!(stats[0].players, 0, "{stats:?}");
    assert_eq!(stats[1].players, 1, "{stats:?}");
    assert!(stats[0].migrations_out >= 1);
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn obstacles_from_a_data_file_stop_players() {
    let mut c = ServerConfig::default();
    c.network.bind = "127.0.0.1:0".into();
    c.network.metrics_addr = None;
    c.runtime.cores = CoreSelection::Count(1);
    c.runtime.pin_threads = false;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/data");
    c.authority.obstacles_file = Some(format!("{dir}/obstacles-example.ron"));
    c.authority.heightfield_file = Some(format!("{dir}/heightfield-example.ron"));
    let server = runtime::start(&c).expect("server starts with the example data");
    // The example wall spans x 6000..6200, y -4000..6000: pick a battle
    // character that enters a little west of it and walk east.
    let character_id = (1..100_000u64)
        .map(|i| i | 1 << 63)
        .find(|&id| {
            let p = dev_spawn_position(id);
            (3_000.0..5_000.0).contains(&p[0]) && (-2_000.0..4_000.0).contains(&p[1])
        })
        .expect("a spawn west of the wall");
    let mut players = vec![Player::new(&server, character_id)];
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
    assert!(server.shutdown(Duration::from_secs(2)));

    let mut bad = c.clone();
    bad.authority.obstacles_file = Some("/nonexistent/walls.ron".into());
    let e = runtime::start(&bad).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/walls.ron"), "{e}");
}
