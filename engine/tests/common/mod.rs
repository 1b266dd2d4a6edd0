//! A real server on 127.0.0.1 with its own data directory, and players
//! that log in through `tos-client`'s flow, walk, and watch snapshots.
#![allow(dead_code, unreachable_pub, reason = "each test file uses a part")]

use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tos_client::SnapshotReceiver;
use tos_client::{Entered, FlowEvent, LoginFlow, LoginSpec};
use tos_config::{CoreSelection, ServerConfig};
use tos_engine::runtime::{self, ServerHandle};
use tos_protocol::connection::{ClientConfig, Connection, Event, ServerKey, TransportConfig};
use tos_protocol::integrity::IntegrityTable;
use tos_protocol::wire::game::{ClientMessage, MovementClaim, RefusalReason, ServerMessage};
use tos_protocol::wire::{Channel, Writer};
use tos_store::{Backend, CharacterId, CharacterState, SqliteBackend};

pub mod play;
mod quiet;

/// A server and the data directory it owns (removed when dropped).
pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub dir: tempfile::TempDir,
    pub config: ServerConfig,
}

/// The test config: `cores` cores, 127.0.0.1, no metrics, cheap Argon2
/// (tests log in many times; the parameters are checked elsewhere).
pub fn config(cores: usize, dir: &std::path::Path) -> ServerConfig {
    let mut c = ServerConfig::default();
    c.network.bind = "127.0.0.1:0".into();
    c.network.metrics_addr = None;
    c.runtime.cores = CoreSelection::Count(cores);
    c.runtime.pin_threads = false;
    c.runtime.data_dir = dir.display().to_string();
    c.accounts.argon2_m_cost_kib = 1024;
    c.accounts.argon2_t_cost = 1;
    c.accounts.login_attempts_per_minute_per_address = 100_000;
    c
}

impl TestServer {
    pub fn start(cores: usize) -> Self {
        Self::start_with(cores, |_| {})
    }

    pub fn start_with(cores: usize, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut c = config(cores, dir.path());
        tweak(&mut c);
        let handle = runtime::start(&c).expect("server starts");
        Self {
            handle: Some(handle),
            dir,
            config: c,
        }
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("running")
    }

    /// Stops the server (every character saved); true if it was clean.
    pub fn stop(&mut self) -> bool {
        self.handle
            .take()
            .is_some_and(|h| h.shutdown(Duration::from_secs(3)))
    }

    /// Starts the server again on the same data directory.
    pub fn restart(&mut self) {
        assert!(self.handle.is_none(), "stop first");
        self.handle = Some(runtime::start(&self.config).expect("server restarts"));
    }

    /// The SQLite file.
    pub fn database(&self) -> PathBuf {
        self.dir.path().join(&self.config.store.sqlite_file)
    }

    /// Moves a character that is not in the world (a game master's edit).
    pub fn place(&self, character_id: u64, position: [f32; 3]) {
        place_in(&self.database(), character_id, position);
    }
}

/// The shipped game data without spawn groups, as a `game_data_dir`
/// setting (see `quiet::quiet_game_data`).
pub fn quiet_game_data(dir: &std::path::Path) -> String {
    quiet::quiet_game_data(dir).display().to_string()
}

/// Moves a character that is not in the world to `position`, in the SQLite
/// database at `database` (the server holding it stopped, or sharing it).
pub fn place_in(database: &std::path::Path, character_id: u64, position: [f32; 3]) {
    let mut db = SqliteBackend::open(database, Duration::from_secs(5)).expect("the database opens");
    let state = db
        .load_character(CharacterId(character_id))
        .expect("loads")
        .expect("the character exists");
    let s = CharacterState {
        position,
        ..state.state()
    };
    db.save_states(&[s], 0).expect("saved");
}

/// A character's saved position in the SQLite database at `database`.
#[allow(dead_code)]
pub fn saved_position_in(database: &std::path::Path, character_id: u64) -> [f32; 3] {
    let mut db = SqliteBackend::open(database, Duration::from_secs(5)).expect("the database opens");
    db.load_character(CharacterId(character_id))
        .expect("loads")
        .expect("the character exists")
        .state()
        .position
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown(Duration::from_secs(3));
        }
    }
}

/// The login a test player uses: account `name`, one character named after
/// it, of `template`.
pub fn spec(account: &str, template: u16) -> LoginSpec {
    let mut name: Vec<char> = account
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    if let Some(f) = name.first_mut() {
        *f = f.to_ascii_uppercase();
    }
    LoginSpec {
        account: account.to_string(),
        password: "correct horse battery".to_string(),
        register: true,
        character_name: name.into_iter().collect(),
        template,
        appearance: vec![1, 2, 3],
        ticketed: false,
        login_only: false,
    }
}

/// A player on its own socket.
pub struct Player {
    pub socket: UdpSocket,
    pub conn: Connection,
    pub flow: LoginFlow,
    pub entered: Option<Entered>,
    pub ticket: Option<Vec<u8>>,
    pub failed: Option<(u8, RefusalReason)>,
    pub refusals: Vec<(u8, RefusalReason)>,
    pub receiver: SnapshotReceiver,
    pub snapshots: u32,
    pub corrections: Vec<[f32; 3]>,
    pub position: [f32; 3],
    pub seq: u32,
    pub disconnected: bool,
    pub denied: bool,
    /// Other messages, decoded, for tests that drive by hand.
    pub inbox: Vec<Vec<u8>>,
    /// Driven by hand: the login flow is not started.
    pub manual: bool,
    /// Recent claims (sequence, position), to know which one the server
    /// acknowledged.
    pub claims: std::collections::VecDeque<(u32, [f32; 3])>,
}

impl Player {
    pub fn new(server: &ServerHandle, spec: LoginSpec) -> Self {
        Self::with_ticket(server, spec, Vec::new())
    }

    pub fn with_ticket(server: &ServerHandle, spec: LoginSpec, ticket: Vec<u8>) -> Self {
        Self::to(
            server.local_addr(),
            server.static_public_key(),
            server.integrity_secret(),
            spec,
            ticket,
        )
    }

    /// A player of the server at `addr` with static key `key` whose
    /// integrity tables come from `integrity` (a server in this process
    /// or another one).
    pub fn to(
        addr: std::net::SocketAddr,
        key: [u8; 32],
        integrity: [u8; 32],
        spec: LoginSpec,
        ticket: Vec<u8>,
    ) -> Self {
        // Loopback for a server on loopback; else any address (a server in
        // a network namespace of the test's own).
        let local = if addr.ip().is_loopback() {
            "127.0.0.1:0"
        } else {
            "0.0.0.0:0"
        };
        let socket = UdpSocket::bind(local).unwrap();
        socket.set_nonblocking(true).unwrap();
        let mut seed = [7u8; 32];
        let port = socket.local_addr().unwrap().port();
        seed[..2].copy_from_slice(&port.to_le_bytes());
        let cfg = ClientConfig {
            transport: Arc::new(TransportConfig::default()),
            server_key: ServerKey::Pinned(key),
            ticket,
            integrity: Some(Arc::new(IntegrityTable::generate(
                &integrity,
                tos_engine::settings::CLIENT_VERSION,
            ))),
            seed,
        };
        Self {
            socket,
            conn: Connection::connect(cfg, addr, Instant::now()).unwrap(),
            flow: LoginFlow::new(spec),
            entered: None,
            ticket: None,
            failed: None,
            refusals: Vec::new(),
            receiver: SnapshotReceiver::new(),
            snapshots: 0,
            corrections: Vec::new(),
            position: [0.0; 3],
            seq: 0,
            disconnected: false,
            denied: false,
            inbox: Vec::new(),
            manual: false,
            claims: std::collections::VecDeque::new(),
        }
    }

    /// A player whose messages the test sends by hand.
    pub fn raw(server: &ServerHandle) -> Self {
        let mut p = Self::new(server, spec("unused", 1));
        p.manual = true;
        p
    }

    /// Pumps until the connection is established.
    pub fn connect(&mut self) {
        assert!(
            self.pump_until(Duration::from_secs(10), |p| p.conn.is_established()),
            "no connection"
        );
    }

    /// Sends `msg` reliably and returns the next non-snapshot message.
    pub fn ask(&mut self, msg: ClientMessage<'_>) -> Vec<u8> {
        self.inbox.clear();
        self.send(Channel::ReliableOrdered, msg);
        assert!(
            self.pump_until(Duration::from_secs(10), |p| !p.inbox.is_empty()),
            "no answer to {msg:?}"
        );
        self.inbox.remove(0)
    }

    /// The position of the newest claim the server says it applied.
    pub fn acked_position(&self) -> Option<[f32; 3]> {
        let ack = self.receiver.input_ack();
        self.claims
            .iter()
            .rev()
            .find(|(seq, _)| *seq == ack)
            .map(|(_, p)| *p)
    }

    pub fn send(&mut self, channel: Channel, msg: ClientMessage<'_>) {
        let mut buf = [0u8; 512];
        let mut w = Writer::new(&mut buf);
        msg.encode(&mut w).unwrap();
        let n = w.position();
        self.conn.send(channel, &buf[..n]).unwrap();
    }

    pub fn send_raw(&mut self, channel: Channel, bytes: &[u8]) {
        self.conn.send(channel, bytes).unwrap();
    }

    pub fn claim(&mut self, velocity: [f32; 3], dt: f32) {
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
        self.claims.push_back((self.seq, self.position));
        if self.claims.len() > 1_024 {
            self.claims.pop_front();
        }
    }

    pub fn entity(&self) -> Option<u32> {
        self.entered.map(|e| e.entity_id)
    }

    pub fn pump(&mut self) {
        let now = Instant::now();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            self.conn.handle_datagram(now, from, &mut buf[..n]);
        }
        if self.conn.next_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
        let mut messages = Vec::new();
        while let Some(e) = self.conn.poll_event() {
            match e {
                Event::Connected if !self.manual => self.flow.on_connected(),
                Event::Message { data, .. } => messages.push(data.to_vec()),
                Event::Disconnected { .. } => self.disconnected = true,
                Event::Denied { .. } => self.denied = true,
                _ => {}
            }
        }
        for data in messages {
            self.on_message(&data);
        }
        let mut out = [0u8; 512];
        while let Some(n) = self.flow.poll_send(&mut out) {
            let _ = self.conn.send(Channel::ReliableOrdered, &out[..n]);
        }
        while let Some(t) = self.conn.poll_transmit(now, &mut buf) {
            let _ = self.socket.send_to(&buf[..t.size], t.destination);
        }
    }

    fn on_message(&mut self, data: &[u8]) {
        let Ok(msg) = ServerMessage::decode(data) else {
            panic!("the server sent a message that does not decode: {data:02x?}");
        };
        if let ServerMessage::Refused { request, reason } = msg {
            self.refusals.push((request, reason));
        }
        let event = if self.manual {
            None
        } else {
            self.flow.handle_message(&msg)
        };
        match event {
            Some(FlowEvent::Authenticated { ticket, .. }) => self.ticket = Some(ticket),
            Some(FlowEvent::Entered(e)) => {
                self.entered = Some(e);
                self.position = e.position;
            }
            Some(FlowEvent::Failed { request, reason }) => self.failed = Some((request, reason)),
            _ => {}
        }
        match msg {
            ServerMessage::DeltaSync(d) => {
                self.receiver.apply(&d).expect("every snapshot applies");
                self.snapshots += 1;
            }
            ServerMessage::Correction { position, .. } => {
                self.corrections.push(position);
                self.position = position;
            }
            _ => self.inbox.push(data.to_vec()),
        }
    }

    /// Pumps until `done` or `limit`; true if done.
    pub fn pump_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            self.pump();
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    /// Closes the connection gracefully and lets the goodbye out.
    pub fn leave(mut self) {
        let now = Instant::now();
        self.conn
            .close(now, tos_protocol::wire::control::DisconnectReason::Graceful);
        let mut buf = [0u8; 2048];
        while let Some(t) = self.conn.poll_transmit(now, &mut buf) {
            let _ = self.socket.send_to(&buf[..t.size], t.destination);
        }
    }
}

/// Runs for `limit`, claiming movement at 60 Hz with `velocity(player, step)`
/// for every player in the world; true once `done`.
pub fn play(
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
                if p.entered.is_some() {
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

/// Logs a player in and into the world, or panics with what went wrong.
pub fn enter(server: &ServerHandle, spec: LoginSpec) -> Player {
    let mut p = Player::new(server, spec);
    let ok = p.pump_until(Duration::from_secs(20), |p| {
        p.entered.is_some() || p.failed.is_some() || p.denied
    });
    assert!(
        ok && p.entered.is_some(),
        "did not enter: failed {:?}, refusals {:?}, denied {}",
        p.failed,
        p.refusals,
        p.denied
    );
    p
}
