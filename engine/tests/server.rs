//! The server binary's runtime end to end on 127.0.0.1: real sockets, two
//! cores, both I/O backends, steering, migration, garbage, shutdown.
//! Bounded in count and time.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tos_config::{CoreSelection, IoBackend, ServerConfig, Steering};
use tos_engine::runtime::{self, ServerHandle};
use tos_protocol::connection::{ClientConfig, Connection, Event, ServerKey, TransportConfig};
use tos_protocol::integrity::IntegrityTable;
use tos_protocol::wire::Channel;
use tos_protocol::wire::control::DisconnectReason;

fn config(backend: IoBackend, steering: Steering) -> ServerConfig {
    let mut c = ServerConfig::default();
    c.network.bind = "127.0.0.1:0".into();
    c.network.io_backend = backend;
    c.network.steering = steering;
    c.network.metrics_addr = Some("127.0.0.1:0".into());
    c.runtime.cores = CoreSelection::Count(2);
    c.runtime.pin_threads = false;
    c.runtime.echo_mode = true;
    // Keys go to a directory of this test, never into the source tree.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    c.runtime.data_dir = std::env::temp_dir()
        .join(format!("tos-engine-tests-{}-{n}", std::process::id()))
        .display()
        .to_string();
    c
}

/// A protocol client on its own UDP socket.
struct Client {
    socket: UdpSocket,
    conn: Connection,
    received: Vec<(Channel, Vec<u8>)>,
    events: Vec<String>,
    connected: bool,
    disconnected: Option<(DisconnectReason, bool)>,
}

impl Client {
    fn new(server: &ServerHandle, seed: u8) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let table = IntegrityTable::generate(
            &server.integrity_secret(),
            tos_engine::settings::CLIENT_VERSION,
        );
        let cfg = ClientConfig {
            transport: Arc::new(TransportConfig::default()),
            server_key: ServerKey::Pinned(server.static_public_key()),
            ticket: b"test".to_vec(),
            integrity: Some(Arc::new(table)),
            seed: [seed; 32],
        };
        let addr = server.local_addr();
        Self {
            socket,
            conn: Connection::connect(cfg, addr, Instant::now()).unwrap(),
            received: Vec::new(),
            events: Vec::new(),
            connected: false,
            disconnected: None,
        }
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
        while let Some(t) = self.conn.poll_transmit(now, &mut buf) {
            let _ = self.socket.send_to(&buf[..t.size], t.destination);
        }
        while let Some(e) = self.conn.poll_event() {
            match e {
                Event::Connected => self.connected = true,
                Event::Message { channel, data } => self.received.push((channel, data.to_vec())),
                Event::Disconnected { reason, by_peer } => {
                    self.disconnected = Some((reason, by_peer))
                }
                other => self.events.push(format!("{other:?}")),
            }
        }
    }
}

fn pump_until(
    clients: &mut [Client],
    limit: Duration,
    mut done: impl FnMut(&mut [Client]) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        for c in clients.iter_mut() {
            c.pump();
        }
        if done(clients) {
            return true;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    false
}

fn connect(server: &ServerHandle, n: u8) -> Vec<Client> {
    let mut clients: Vec<Client> = (0..n).map(|i| Client::new(server, i + 1)).collect();
    assert!(
        pump_until(&mut clients, Duration::from_secs(10), |cs| cs
            .iter()
            .all(|c| c.connected)),
        "clients did not connect"
    );
    clients
}

fn echo_round(clients: &mut [Client], rounds: u32) {
    for (i, c) in clients.iter_mut().enumerate() {
        for r in 0..rounds {
            let msg = format!("client {i} msg {r}");
            c.conn
                .send(Channel::ReliableOrdered, msg.as_bytes())
                .unwrap();
            c.conn.send(Channel::Unreliable, msg.as_bytes()).unwrap();
        }
    }
    let ok = pump_until(clients, Duration::from_secs(15), |cs| {
        cs.iter().all(|c| {
            c.received
                .iter()
                .filter(|(ch, _)| *ch == Channel::ReliableOrdered)
                .count()
                >= rounds as usize
        })
    });
    assert!(ok, "echoes did not come back");
    for (i, c) in clients.iter().enumerate() {
        let reliable: Vec<_> = c
            .received
            .iter()
            .filter(|(ch, _)| *ch == Channel::ReliableOrdered)
            .map(|(_, d)| d.clone())
            .collect();
        let expected: Vec<_> = (0..rounds)
            .map(|r| format!("client {i} msg {r}").into_bytes())
            .collect();
        assert_eq!(
            reliable[..rounds as usize],
            expected[..],
            "client {i}: in order, exactly once"
        );
    }
}

fn exercise(backend: IoBackend) {
    let server = runtime::start(&config(backend, Steering::Auto)).expect("server starts");
    assert_eq!(server.steering(), "cbpf");
    let mut clients = connect(&server, 8);
    echo_round(&mut clients, 50);
    // Steering: every connection lives on the core its id names, and with
    // cBPF no datagram needed forwarding.
    std::thread::sleep(Duration::from_millis(50));
    let stats = server.stats();
    let mut per_core: HashMap<usize, u64> = HashMap::new();
    for c in &clients {
        *per_core
            .entry(c.conn.connection_id() as u8 as usize % 2)
            .or_default() += 1;
    }
    for (core, s) in stats.iter().enumerate() {
        assert_eq!(
            s.connections,
            per_core.get(&core).copied().unwrap_or(0),
            "core {core}: {s:?}"
        );
        assert_eq!(s.forwarded_out, 0, "core {core} forwarded: {s:?}");
        assert!(s.datagrams_in > 0);
    }
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn echo_over_io_uring_with_cbpf_steering() {
    exercise(IoBackend::IoUring);
}

#[test]
fn echo_over_recvmmsg_with_cbpf_steering() {
    exercise(IoBackend::Mmsg);
}

/// Streams `total` reliable messages from the first client, asking the
/// server to move its connection to the other core halfway.
fn stream_across_a_migration(server: &ServerHandle, clients: &mut [Client], total: u32) -> u8 {
    let before = clients[0].conn.connection_id();
    let target = 1 - (before as u8 % 2);
    let mut sent = 0u32;
    let mut migrated = false;
    let ok = pump_until(clients, Duration::from_secs(30), |cs| {
        while sent < total
            && cs[0]
                .conn
                .send(Channel::ReliableOrdered, &sent.to_le_bytes())
                .is_ok()
        {
            sent += 1;
            if sent == total / 2 && !migrated {
                migrated = server.migrate(before, target);
            }
        }
        cs[0].received.len() >= total as usize
    });
    assert!(
        ok && migrated,
        "received {} of {total}",
        clients[0].received.len()
    );
    let got: Vec<u32> = clients[0]
        .received
        .iter()
        .map(|(_, d)| u32::from_le_bytes(d[..4].try_into().unwrap()))
        .collect();
    assert_eq!(
        got,
        (0..total).collect::<Vec<_>>(),
        "exactly once, in order, across the move"
    );
    assert_eq!(
        clients[0].conn.connection_id() as u8,
        target,
        "the client now uses the new core's id"
    );
    target
}

#[test]
fn software_steering_forwards_to_the_owning_core() {
    let server = runtime::start(&config(IoBackend::Auto, Steering::Software)).unwrap();
    assert_eq!(server.steering(), "software");
    // Without cBPF the kernel hashes each flow to one socket, and the core
    // behind it issues the cookie: a connection starts on the core its
    // datagrams reach. After a migration they keep arriving there, and are
    // forwarded to the new owner.
    let mut clients = connect(&server, 4);
    for c in &clients {
        assert!(c.conn.connection_id() as u8 <= 1);
    }
    stream_across_a_migration(&server, &mut clients, 1_000);
    echo_round(&mut clients[1..], 10);
    std::thread::sleep(Duration::from_millis(50));
    let stats = server.stats();
    let forwarded: u64 = stats.iter().map(|s| s.forwarded_out).sum();
    let received: u64 = stats.iter().map(|s| s.forwarded_in).sum();
    assert!(forwarded > 0, "{stats:?}");
    assert_eq!(
        forwarded, received,
        "every forwarded datagram reached its core"
    );
    for (core, s) in stats.iter().enumerate() {
        let owned = clients
            .iter()
            .filter(|c| c.conn.connection_id() as u8 as usize % 2 == core)
            .count() as u64;
        assert_eq!(s.connections, owned);
    }
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn migration_between_cores_loses_nothing() {
    let server = runtime::start(&config(IoBackend::Auto, Steering::Auto)).unwrap();
    let mut clients = connect(&server, 1);
    let target = stream_across_a_migration(&server, &mut clients, 2_000);
    std::thread::sleep(Duration::from_millis(50));
    let stats = server.stats();
    assert_eq!(stats.iter().map(|s| s.migrations_out).sum::<u64>(), 1);
    assert_eq!(stats[usize::from(target)].connections, 1);
    // Only datagrams sent under the old id, before the client learnt the
    // new one, needed forwarding; after that cBPF steers them directly.
    let forwarded: u64 = stats.iter().map(|s| s.forwarded_out).sum();
    assert_eq!(forwarded, stats.iter().map(|s| s.forwarded_in).sum::<u64>());
    assert!(forwarded < 200, "{stats:?}");
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn garbage_and_floods_do_not_hurt_legitimate_clients() {
    let server = runtime::start(&config(IoBackend::Auto, Steering::Auto)).unwrap();
    let mut clients = connect(&server, 2);
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let mut rng = tos_protocol::rng::SplitMix64::new(0x1234_5678_9abc_def0);
    let mut rand = || rng.next_u64();
    let legit_id = clients[0].conn.connection_id();
    for i in 0..6_000u32 {
        let len = (rand() % 1300) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
        match i % 6 {
            // Truncated headers.
            0 => d.truncate((rand() % 14) as usize),
            // A valid-looking sealed header for a real connection, bad tag.
            1 if d.len() > 40 => {
                d[..4].copy_from_slice(&legit_id.to_le_bytes());
                d[4] = 0;
                d[5] = 0x03;
            }
            // Connect-shaped: handshake flag, full size (a flood of bogus Connects).
            2 => {
                d.resize(1200, 0);
                d[4] = 0;
                d[5] = 0x40;
                d[14] = 0;
            }
            _ => {}
        }
        let _ = attacker.send_to(&d, addr);
        if i % 200 == 0 {
            for c in clients.iter_mut() {
                c.pump();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Genuine Connect floods from one source: each gets a small cookie, no state.
    let mut flood_conn = Connection::connect(
        ClientConfig {
            transport: Arc::new(TransportConfig::default()),
            server_key: ServerKey::Pinned(server.static_public_key()),
            ticket: vec![],
            integrity: None,
            seed: [99; 32],
        },
        addr,
        Instant::now(),
    )
    .unwrap();
    let mut buf = [0u8; 1500];
    let t = flood_conn.poll_transmit(Instant::now(), &mut buf).unwrap();
    for _ in 0..2_000 {
        let _ = attacker.send_to(&buf[..t.size], addr);
    }
    echo_round(&mut clients, 20);
    assert!(
        clients
            .iter()
            .all(|c| c.disconnected.is_none() && c.conn.is_established())
    );
    std::thread::sleep(Duration::from_millis(100));
    let stats = server.stats();
    let total_conns: u64 = stats.iter().map(|s| s.connections).sum();
    assert_eq!(total_conns, 2, "no state for the garbage: {stats:?}");
    let drops: u64 = stats
        .iter()
        .map(|s| s.drop_malformed + s.drop_unknown_connection + s.drop_short_connect)
        .sum();
    assert!(drops > 1_000, "{stats:?}");
    assert!(stats.iter().map(|s| s.cookies_issued).sum::<u64>() > 0);
    // Bad tags on the real connection are counted on it (published with the stats line).
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn shutdown_disconnects_every_client_within_two_seconds() {
    let server = runtime::start(&config(IoBackend::Auto, Steering::Auto)).unwrap();
    let mut clients = connect(&server, 4);
    let started = Instant::now();
    assert!(server.shutdown(Duration::from_secs(2)));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(pump_until(&mut clients, Duration::from_secs(2), |cs| cs
        .iter()
        .all(
            |c| c.disconnected == Some((DisconnectReason::ServerShutdown, true))
        )));
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let server = runtime::start(&config(IoBackend::Auto, Steering::Auto)).unwrap();
    let mut clients = connect(&server, 1);
    echo_round(&mut clients, 5);
    std::thread::sleep(Duration::from_millis(50));
    let addr = server.metrics_addr().unwrap();
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.0 200 OK"), "{body}");
    assert!(body.contains("# TYPE tos_datagrams_in_total counter"));
    let total: u64 = body
        .lines()
        .filter(|l| l.starts_with("tos_connections{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 1);
    assert!(server.shutdown(Duration::from_secs(2)));
}

/// The metrics text of a running server.
fn metrics(server: &ServerHandle) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.metrics_addr().unwrap()).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// A counter summed over the cores.
fn counter(body: &str, name: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn a_full_server_refuses_with_full_and_counts_it() {
    // Issue 11, finding 4: a clear "server full" refusal at a configured
    // capacity, counted in the metrics.
    let mut c = config(IoBackend::Auto, Steering::Auto);
    c.protocol.max_connections_per_process = 2;
    let server = runtime::start(&c).unwrap();
    let mut clients = connect(&server, 2);
    let mut third = vec![Client::new(&server, 9)];
    assert!(
        pump_until(&mut third, Duration::from_secs(10), |cs| cs[0]
            .events
            .iter()
            .any(|e| e.contains("Denied"))),
        "{:?}",
        third[0].events
    );
    assert!(
        third[0].events.iter().any(|e| e.contains("Full")),
        "{:?}",
        third[0].events
    );
    assert!(!third[0].connected);
    std::thread::sleep(Duration::from_millis(50));
    let body = metrics(&server);
    assert!(
        counter(&body, "tos_refused_process_full_total") >= 1,
        "{body}"
    );
    assert!(body.contains("# TYPE tos_refused_rate_limited_total counter"));
    // The two players are unharmed.
    echo_round(&mut clients, 3);
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn failure_counters_never_go_down_when_their_connection_closes() {
    // Issue 11, finding 9: tos_drop_auth_total was a sum over the live
    // connections, so it fell when the connection that caused it closed.
    let server = runtime::start(&config(IoBackend::Auto, Steering::Auto)).unwrap();
    let mut clients = connect(&server, 1);
    // Tampered copies of one of the client's packets: each fails its tag.
    clients[0]
        .conn
        .send(Channel::ReliableOrdered, b"tamper me")
        .unwrap();
    let now = Instant::now();
    let mut buf = [0u8; 2048];
    let t = clients[0].conn.poll_transmit(now, &mut buf).unwrap();
    for i in 0..5 {
        let mut bad = buf[..t.size].to_vec();
        let at = bad.len() - 1 - i;
        bad[at] ^= 0x40;
        clients[0].socket.send_to(&bad, t.destination).unwrap();
    }
    let _ = clients[0].socket.send_to(&buf[..t.size], t.destination);
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&metrics(&server), "tos_drop_auth_total") < 5 {
        assert!(Instant::now() < deadline, "{}", metrics(&server));
        clients[0].pump();
        std::thread::sleep(Duration::from_millis(20));
    }
    // The client leaves; the connection is removed; the count stays.
    clients[0]
        .conn
        .close(Instant::now(), DisconnectReason::Graceful);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        clients[0].pump();
        let body = metrics(&server);
        if counter(&body, "tos_connections") == 0 {
            assert_eq!(counter(&body, "tos_drop_auth_total"), 5, "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the connection was not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn startup_errors_are_clear() {
    let mut c = config(IoBackend::Auto, Steering::Auto);
    c.runtime.cores = CoreSelection::Count(10_000);
    let e = runtime::start(&c).unwrap_err().to_string();
    assert!(e.contains("too few cores"), "{e}");
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = config(IoBackend::Auto, Steering::Auto);
    c.network.bind = holder.local_addr().unwrap().to_string();
    let e = runtime::start(&c).unwrap_err().to_string();
    assert!(e.contains("port busy"), "{e}");
}
