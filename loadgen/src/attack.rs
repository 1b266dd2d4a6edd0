//! Attack modes: `--attack KIND --attack-rate PPS`.
//!
//! One extra loadgen thread attacks the server while the legitimate players
//! play, so the report shows what the attack costs them (their latency)
//! and what the attack itself achieved (its own counts). Kinds:
//!
//! - `garbage`: random datagrams (1..=1200 bytes, half of them wearing a
//!   random connection id that names the server's core 0).
//! - `connect-flood`: well-formed first Connects (1200 bytes, no cookie)
//!   from 256 source addresses spread over 127.0.0.0/8; the server answers
//!   each with a 63-byte Cookie and keeps nothing.
//! - `handshake-flood`: complete handshakes (Connect, Cookie, Connect with
//!   the cookie, ConnectionAccepted) from one source address, then the
//!   connection is abandoned; up to 512 in flight.
//! - `silent-peer`: complete handshakes from 64 addresses; once
//!   established a peer never sends again (no acks, no Pongs).
//! - `fragment-bomb`: 8 established connections send sealed packets full
//!   of unreliable Fragment frames, each a new fragment id with one data
//!   byte, announcing 255 KiB (refused: more than the receive budget) or
//!   8 KiB + 1 (a real reassembly slot holding one byte).
//! - `rtt-inflation`: 16 established connections send small unreliable
//!   messages and hold every datagram they send (acks and Pongs included)
//!   for one second, so the server measures a round trip of a second or
//!   more.
//!
//! The rate is datagrams per second sent by the attack, all sources
//! together; the report gives the rate achieved.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tos_engine::io::{Backend, BackendChoice, DatagramIo, IoConfig, select_backend};
use tos_protocol::connection::{ClientConfig, Connection, Event};
use tos_protocol::rng::SplitMix64;
use tos_protocol::wire::control::{DenyReason, Fragment, Ping};
use tos_protocol::wire::frame::FrameBody;
use tos_protocol::wire::{Channel, Writer};

/// What the attack does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    FragmentBomb,
    ConnectFlood,
    HandshakeFlood,
    Garbage,
    SilentPeer,
    RttInflation,
}

impl Kind {
    pub(crate) const ALL: [Kind; 6] = [
        Kind::FragmentBomb,
        Kind::ConnectFlood,
        Kind::HandshakeFlood,
        Kind::Garbage,
        Kind::SilentPeer,
        Kind::RttInflation,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::FragmentBomb => "fragment-bomb",
            Kind::ConnectFlood => "connect-flood",
            Kind::HandshakeFlood => "handshake-flood",
            Kind::Garbage => "garbage",
            Kind::SilentPeer => "silent-peer",
            Kind::RttInflation => "rtt-inflation",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One attack run.
#[derive(Clone)]
pub(crate) struct Plan {
    pub kind: Kind,
    /// Datagrams per second to send.
    pub rate: u64,
    pub server: SocketAddr,
    /// A client configuration that passes the server's checks (pinned key,
    /// integrity table).
    pub client: ClientConfig,
    pub cpu: Option<usize>,
    pub start: Instant,
    pub stop_at: Instant,
}

/// What the attack did.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counts {
    pub sent: u64,
    pub sent_bytes: u64,
    pub received: u64,
    pub received_bytes: u64,
    pub cookies: u64,
    pub handshakes_started: u64,
    pub established: u64,
    pub denied_full: u64,
    pub denied_busy: u64,
    pub denied_other: u64,
    pub disconnected: u64,
    pub sources: u64,
    pub seconds: f64,
}

impl Counts {
    pub(crate) fn rate(&self) -> f64 {
        self.sent as f64 / self.seconds.max(1e-9)
    }
}

/// The attack's section of the text report.
pub(crate) fn table(kind: Kind, target: u64, c: &Counts) -> String {
    format!(
        "attack {}: target {} pkt/s, achieved {:.0} pkt/s over {:.1} s from {} source address(es)\n  \
         sent {} datagrams / {} B, received {} / {} B; cookies {}, handshakes started {}, established {}, \
         denied Full {} Busy {} other {}, disconnected by the server {}\n",
        kind.name(),
        target,
        c.rate(),
        c.seconds,
        c.sources,
        c.sent,
        c.sent_bytes,
        c.received,
        c.received_bytes,
        c.cookies,
        c.handshakes_started,
        c.established,
        c.denied_full,
        c.denied_busy,
        c.denied_other,
        c.disconnected,
    )
}

/// The attack as a JSON object (for the summary's `attack` field).
pub(crate) fn json(kind: Kind, target: u64, c: &Counts, server: &ServerAfter) -> serde_json::Value {
    serde_json::json!({
        "kind": kind.name(),
        "target_pps": target,
        "achieved_pps": (c.rate() * 10.0).round() / 10.0,
        "seconds": (c.seconds * 100.0).round() / 100.0,
        "sources": c.sources,
        "sent": c.sent,
        "sent_bytes": c.sent_bytes,
        "received": c.received,
        "received_bytes": c.received_bytes,
        "cookies": c.cookies,
        "handshakes_started": c.handshakes_started,
        "established": c.established,
        "denied_full": c.denied_full,
        "denied_busy": c.denied_busy,
        "denied_other": c.denied_other,
        "disconnected": c.disconnected,
        "server_rss_before_kib": server.rss_before_kib,
        "server_rss_peak_kib": server.rss_peak_kib,
        "server_rss_after_kib": server.rss_after_kib,
        "connections_at_attack_end": server.connections_at_attack_end,
        "connections_after": server.connections_after,
        "settle_seconds": (server.settle_seconds * 10.0).round() / 10.0,
        "legit_connected_after": server.legit_connected_after,
    })
}

/// What the server looked like around the attack (spawned server only).
#[derive(Debug, Default, Clone)]
pub(crate) struct ServerAfter {
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_after_kib: u64,
    pub connections_at_attack_end: u64,
    pub connections_after: u64,
    pub settle_seconds: f64,
    pub legit_connected_after: u64,
}

impl ServerAfter {
    pub(crate) fn line(&self) -> String {
        format!(
            "  server: RSS {} KiB before, {} KiB peak, {} KiB after; \
             connections {} when the attack stopped, {} after {:.1} s more ({} legitimate players connected)\n",
            self.rss_before_kib,
            self.rss_peak_kib,
            self.rss_after_kib,
            self.connections_at_attack_end,
            self.connections_after,
            self.settle_seconds,
            self.legit_connected_after,
        )
    }
}

/// Where the server's memory and connections are read: the spawned
/// server in this process, or a `tos-server` process by pid and metrics
/// address (`--server-pid`, `--server-metrics`), which keeps the
/// attacker's own memory out of the server's figures.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probe {
    pub pid: Option<u32>,
    pub metrics: Option<SocketAddr>,
}

impl Probe {
    /// The server's resident set size, KiB: the given process's, else this
    /// one's (which then includes loadgen and the attack).
    pub(crate) fn rss_kib(&self) -> u64 {
        match self.pid {
            Some(pid) => rss_kib_of(&format!("/proc/{pid}/status")),
            None => rss_kib_of("/proc/self/status"),
        }
    }

    /// Live connections summed over the cores, from the metrics endpoint.
    pub(crate) fn metrics_connections(&self) -> Option<u64> {
        use std::io::{Read, Write};
        let addr = self.metrics?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(
            text.lines()
                .filter(|l| l.starts_with("tos_connections{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum(),
        )
    }
}

/// `VmRSS` of a `/proc/PID/status` file, KiB.
fn rss_kib_of(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A socket bound to `ip` (an address of 127.0.0.0/8) with a batching
/// backend.
fn socket(ip: Ipv4Addr) -> Option<Backend> {
    let s = UdpSocket::bind(SocketAddr::from((ip, 0))).ok()?;
    select_backend(BackendChoice::Mmsg, s, &IoConfig::default()).ok()
}

/// The `i`-th attack source address: 127.A.B.C away from 127.0.0.1 (the
/// legitimate players' address), `base` picking a /16 per kind.
fn source_ip(base: u8, i: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, base, (i >> 8) as u8, (i as u8).max(2))
}

/// Paces sending: how many datagrams are due now.
struct Pace {
    rate: u64,
    start: Instant,
    sent: u64,
}

impl Pace {
    fn due(&self, now: Instant) -> u64 {
        let should =
            (now.saturating_duration_since(self.start).as_secs_f64() * self.rate as f64) as u64;
        should.saturating_sub(self.sent)
    }
}

/// Runs the attack until `stop_at` (or `stop`); returns its counts.
pub(crate) fn run(plan: Plan, stop: Arc<AtomicBool>) -> Counts {
    if let Some(cpu) = plan.cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            tracing::warn!(cpu, "could not pin the attack thread");
        }
    }
    while Instant::now() < plan.start {
        if stop.load(Ordering::Relaxed) {
            return Counts::default();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut a = Attack {
        counts: Counts::default(),
        pace: Pace {
            rate: plan.rate.max(1),
            start: Instant::now(),
            sent: 0,
        },
        rng: SplitMix64::new(0x7a11_ac4b ^ plan.rate),
        buf: vec![0u8; 2048],
        plan,
    };
    let began = Instant::now();
    match a.plan.kind {
        Kind::Garbage => a.garbage(&stop),
        Kind::ConnectFlood => a.connect_flood(&stop),
        Kind::HandshakeFlood => a.handshakes(&stop, 1, 512, false),
        Kind::SilentPeer => a.handshakes(&stop, 64, 512, true),
        Kind::FragmentBomb => a.connected(&stop, 8, Behaviour::FragmentBomb),
        Kind::RttInflation => a.connected(&stop, 16, Behaviour::Delay),
    }
    a.counts.seconds = began.elapsed().as_secs_f64();
    a.counts
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    FragmentBomb,
    Delay,
}

struct Attack {
    plan: Plan,
    counts: Counts,
    pace: Pace,
    rng: SplitMix64,
    buf: Vec<u8>,
}

/// One attacking client: a protocol connection on one of the sockets.
struct Peer {
    conn: Connection,
    socket: usize,
    /// Counted as established already.
    established: bool,
    /// Datagrams held back (rtt-inflation): due time, bytes.
    held: VecDeque<(Instant, Vec<u8>)>,
}

impl Attack {
    fn running(&self, stop: &AtomicBool) -> bool {
        !stop.load(Ordering::Relaxed) && Instant::now() < self.plan.stop_at
    }

    fn send(&mut self, io: &mut Backend, len: usize) {
        let server = self.plan.server;
        if io.queue_send(server, &self.buf[..len]).is_err() {
            let _ = io.flush();
            if io.queue_send(server, &self.buf[..len]).is_err() {
                return;
            }
        }
        self.counts.sent += 1;
        self.counts.sent_bytes += len as u64;
        self.pace.sent += 1;
    }

    /// Sleeps a little when ahead of the rate.
    fn idle(&self, now: Instant) {
        if self.pace.due(now) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn drain(&mut self, io: &mut Backend) {
        let counts = &mut self.counts;
        let _ = io.recv_batch(|_, data| {
            counts.received += 1;
            counts.received_bytes += data.len() as u64;
        });
    }

    fn garbage(&mut self, stop: &AtomicBool) {
        let Some(mut io) = socket(source_ip(7, 2)) else {
            return;
        };
        self.counts.sources = 1;
        while self.running(stop) {
            let now = Instant::now();
            let due = self.pace.due(now).min(256);
            for _ in 0..due {
                let r = self.rng.next_u64();
                let len = 1 + (r % 1200) as usize;
                for chunk in self.buf[..len].chunks_mut(8) {
                    let v = self.rng.next_u64().to_le_bytes();
                    chunk.copy_from_slice(&v[..chunk.len()]);
                }
                if r & (1 << 40) != 0 && len >= 4 {
                    // A connection id owned by core 0 (unknown: dropped).
                    self.buf[0] = 0;
                }
                self.send(&mut io, len);
            }
            let _ = io.flush();
            self.drain(&mut io);
            self.idle(now);
        }
    }

    fn connect_flood(&mut self, stop: &AtomicBool) {
        // One well-formed first Connect per source (1200 bytes).
        let mut sources = Vec::new();
        let now = Instant::now();
        for i in 0..256u32 {
            let Some(io) = socket(source_ip(8, i + 2)) else {
                continue;
            };
            let mut cfg = self.plan.client.clone();
            cfg.seed[..4].copy_from_slice(&i.to_le_bytes());
            let Ok(mut c) = Connection::connect(cfg, self.plan.server, now) else {
                continue;
            };
            let mut b = [0u8; 1500];
            let Some(t) = c.poll_transmit(now, &mut b) else {
                continue;
            };
            sources.push((io, b[..t.size].to_vec()));
        }
        self.counts.sources = sources.len() as u64;
        if sources.is_empty() {
            return;
        }
        let mut next = 0usize;
        while self.running(stop) {
            let now = Instant::now();
            let due = self.pace.due(now).min(1024);
            // Sixteen per source and system call.
            let mut left = due;
            while left > 0 {
                let (io, connect) = &mut sources[next % self.counts.sources as usize];
                let n = left.min(16);
                for _ in 0..n {
                    if io.queue_send(self.plan.server, connect).is_ok() {
                        self.counts.sent += 1;
                        self.counts.sent_bytes += connect.len() as u64;
                        self.pace.sent += 1;
                    }
                }
                let _ = io.flush();
                left -= n;
                next += 1;
            }
            // Count the cookies that came back, a few sockets per turn.
            for k in 0..8 {
                let at = (next + k) % sources.len();
                let counts = &mut self.counts;
                let _ = sources[at].0.recv_batch(|_, data| {
                    counts.received += 1;
                    counts.received_bytes += data.len() as u64;
                    counts.cookies += 1;
                });
            }
            self.idle(now);
        }
    }

    /// Starts handshakes from `addresses` source addresses, at most
    /// `in_flight` unfinished at once. `silent`: keep each established
    /// peer (it never sends again) instead of abandoning it.
    fn handshakes(&mut self, stop: &AtomicBool, addresses: u32, in_flight: usize, silent: bool) {
        let base = if silent { 9 } else { 10 };
        let mut sockets: Vec<Backend> = (0..addresses)
            .filter_map(|i| socket(source_ip(base, i + 2)))
            .collect();
        self.counts.sources = sockets.len() as u64;
        if sockets.is_empty() {
            return;
        }
        let mut peers: Vec<Option<Peer>> = Vec::new();
        let mut routes: HashMap<(usize, u32), usize> = HashMap::new();
        let mut kept: Vec<Connection> = Vec::new();
        let mut serial = 0u64;
        let mut turn = 0u64;
        let mut dirty: Vec<usize> = Vec::new();
        while self.running(stop) {
            let now = Instant::now();
            turn += 1;
            // Start new handshakes while the rate allows (about three
            // datagrams each).
            let live = peers.iter().filter(|p| p.is_some()).count();
            let mut start = (self.pace.due(now) / 3).min(64) as usize;
            start = start.min(in_flight.saturating_sub(live));
            for _ in 0..start {
                serial += 1;
                let mut cfg = self.plan.client.clone();
                cfg.seed[..8].copy_from_slice(&serial.to_le_bytes());
                let Ok(conn) = Connection::connect(cfg, self.plan.server, now) else {
                    continue;
                };
                self.counts.handshakes_started += 1;
                let socket = (serial % sockets.len() as u64) as usize;
                let slot = match peers.iter().position(Option::is_none) {
                    Some(i) => i,
                    None => {
                        peers.push(None);
                        peers.len() - 1
                    }
                };
                routes.insert((socket, conn.connection_id()), slot);
                peers[slot] = Some(Peer {
                    conn,
                    socket,
                    established: false,
                    held: VecDeque::new(),
                });
                dirty.push(slot);
            }
            // Receive.
            for (si, io) in sockets.iter_mut().enumerate() {
                let counts = &mut self.counts;
                let (peers, routes, dirty) = (&mut peers, &routes, &mut dirty);
                let _ = io.recv_batch(|from, data| {
                    counts.received += 1;
                    counts.received_bytes += data.len() as u64;
                    if data.len() < 4 {
                        return;
                    }
                    let id = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                    if let Some(&slot) = routes.get(&(si, id)) {
                        if let Some(p) = peers[slot].as_mut() {
                            p.conn.handle_datagram(now, from, data);
                            dirty.push(slot);
                        }
                    }
                });
            }
            // Events, timers, transmits of the peers that had news, and
            // every peer's timers once in a while.
            if turn % 64 == 0 {
                dirty.extend(0..peers.len());
            }
            dirty.sort_unstable();
            dirty.dedup();
            for slot in dirty.drain(..) {
                let Some(p) = peers[slot].as_mut() else {
                    continue;
                };
                if p.conn.next_timeout().is_some_and(|t| t <= now) {
                    p.conn.handle_timeout(now);
                }
                let mut finished = false;
                while let Some(e) = p.conn.poll_event() {
                    match e {
                        Event::Connected => {
                            if !p.established {
                                p.established = true;
                                self.counts.established += 1;
                            }
                            finished = true;
                        }
                        Event::Denied { reason } => {
                            match reason {
                                DenyReason::Full => self.counts.denied_full += 1,
                                DenyReason::Busy => self.counts.denied_busy += 1,
                                _ => self.counts.denied_other += 1,
                            }
                            finished = true;
                        }
                        Event::Disconnected { .. } => {
                            self.counts.disconnected += 1;
                            finished = true;
                        }
                        _ => {}
                    }
                }
                if !finished {
                    let io = &mut sockets[p.socket];
                    while let Some(t) = p.conn.poll_transmit(now, &mut self.buf) {
                        if io.queue_send(t.destination, &self.buf[..t.size]).is_ok() {
                            self.counts.sent += 1;
                            self.counts.sent_bytes += t.size as u64;
                            self.pace.sent += 1;
                        }
                    }
                    let id = p.conn.connection_id();
                    routes.insert((p.socket, id), slot);
                    if p.conn.is_closed() {
                        finished = true;
                    }
                }
                if finished {
                    if let Some(p) = peers[slot].take() {
                        routes.retain(|_, v| *v != slot);
                        if silent && p.established {
                            // Never polled again: no acks, no Pongs.
                            kept.push(p.conn);
                        }
                    }
                }
            }
            for io in &mut sockets {
                let _ = io.flush();
            }
            self.idle(now);
        }
        drop(kept);
    }

    /// Establishes `count` connections, then misbehaves on them at the
    /// rate.
    fn connected(&mut self, stop: &AtomicBool, count: u32, behaviour: Behaviour) {
        let base = if behaviour == Behaviour::FragmentBomb {
            11
        } else {
            12
        };
        let mut sockets: Vec<Backend> = (0..count)
            .filter_map(|i| socket(source_ip(base, i + 2)))
            .collect();
        self.counts.sources = sockets.len() as u64;
        let mut peers: Vec<Peer> = Vec::new();
        let now = Instant::now();
        for (i, _) in sockets.iter().enumerate() {
            let mut cfg = self.plan.client.clone();
            cfg.seed[..4].copy_from_slice(&(i as u32 + 0x100).to_le_bytes());
            if let Ok(conn) = Connection::connect(cfg, self.plan.server, now) {
                self.counts.handshakes_started += 1;
                peers.push(Peer {
                    conn,
                    socket: i,
                    established: false,
                    held: VecDeque::new(),
                });
            }
        }
        let delay = Duration::from_secs(1);
        let mut fragment_id = 0u16;
        let mut frames = vec![0u8; 1200];
        while self.running(stop) {
            let now = Instant::now();
            // Receive for every peer (one socket each).
            for p in &mut peers {
                let counts = &mut self.counts;
                let conn = &mut p.conn;
                let _ = sockets[p.socket].recv_batch(|from, data| {
                    counts.received += 1;
                    counts.received_bytes += data.len() as u64;
                    conn.handle_datagram(now, from, data);
                });
                if conn.next_timeout().is_some_and(|t| t <= now) {
                    conn.handle_timeout(now);
                }
                while let Some(e) = conn.poll_event() {
                    match e {
                        Event::Connected if !p.established => {
                            p.established = true;
                            self.counts.established += 1;
                        }
                        Event::Denied { reason } => match reason {
                            DenyReason::Full => self.counts.denied_full += 1,
                            DenyReason::Busy => self.counts.denied_busy += 1,
                            _ => self.counts.denied_other += 1,
                        },
                        Event::Disconnected { .. } => self.counts.disconnected += 1,
                        _ => {}
                    }
                }
            }
            // A closed peer comes back as a new connection.
            for p in &mut peers {
                if p.conn.is_closed() {
                    let mut cfg = self.plan.client.clone();
                    cfg.seed[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                    if let Ok(conn) = Connection::connect(cfg, self.plan.server, now) {
                        self.counts.handshakes_started += 1;
                        p.conn = conn;
                        p.established = false;
                        p.held.clear();
                    }
                }
            }
            // The misbehaviour, spread over the established peers.
            let ready: Vec<usize> = (0..peers.len())
                .filter(|&i| peers[i].conn.is_established())
                .collect();
            let due = if ready.is_empty() {
                0
            } else {
                self.pace.due(now).min(512)
            };
            for k in 0..due {
                let p = &mut peers[ready[k as usize % ready.len()]];
                match behaviour {
                    Behaviour::FragmentBomb => {
                        let mut w = Writer::new(&mut frames[..1170]);
                        loop {
                            fragment_id = fragment_id.wrapping_add(1);
                            let small = fragment_id % 2 == 0;
                            let f = Fragment {
                                channel: Channel::Unreliable,
                                message_id: 0,
                                fragment_id,
                                index: if small { 8 } else { 0 },
                                total_size: if small { 8 * 1024 + 1 } else { 255 * 1024 },
                                data: &[0x5a],
                            };
                            if f.encode_frame(&mut w).is_err() {
                                break;
                            }
                        }
                        let len = w.position();
                        if let Some(n) = p.conn.seal_raw_frames(&frames[..len], &mut self.buf) {
                            let io = &mut sockets[p.socket];
                            if io.queue_send(self.plan.server, &self.buf[..n]).is_ok() {
                                self.counts.sent += 1;
                                self.counts.sent_bytes += n as u64;
                                self.pace.sent += 1;
                            }
                        }
                    }
                    Behaviour::Delay => {
                        // A Ping of its own, and a small message, sealed
                        // now and sent a second late like everything else.
                        let mut w = Writer::new(&mut frames[..64]);
                        let _ = Ping {
                            id: self.rng.next_u64() as u32,
                        }
                        .encode_frame(&mut w);
                        let len = w.position();
                        if let Some(n) = p.conn.seal_raw_frames(&frames[..len], &mut self.buf) {
                            p.held.push_back((now + delay, self.buf[..n].to_vec()));
                            self.pace.sent += 1;
                        }
                    }
                }
            }
            // Each peer's own datagrams (acks, Pongs, heartbeats, the
            // handshake): at once, or a second late for rtt-inflation.
            for p in &mut peers {
                let io = &mut sockets[p.socket];
                while let Some(t) = p.conn.poll_transmit(now, &mut self.buf) {
                    if behaviour == Behaviour::Delay && p.established {
                        p.held.push_back((now + delay, self.buf[..t.size].to_vec()));
                    } else if io.queue_send(t.destination, &self.buf[..t.size]).is_ok() {
                        self.counts.sent += 1;
                        self.counts.sent_bytes += t.size as u64;
                    }
                }
                while p.held.front().is_some_and(|(due, _)| *due <= now) {
                    let Some((_, d)) = p.held.pop_front() else {
                        break;
                    };
                    if io.queue_send(self.plan.server, &d).is_ok() {
                        self.counts.sent += 1;
                        self.counts.sent_bytes += d.len() as u64;
                    }
                }
                let _ = io.flush();
            }
            self.idle(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
        assert_eq!(Kind::parse("nope"), None);
    }

    #[test]
    fn sources_avoid_the_legitimate_address() {
        for i in 0..1000 {
            assert_ne!(source_ip(8, i), Ipv4Addr::new(127, 0, 0, 1));
            assert!(source_ip(8, i).is_loopback());
        }
    }

    #[test]
    fn pace_counts_what_is_due() {
        let start = Instant::now();
        let mut p = Pace {
            rate: 1000,
            start,
            sent: 0,
        };
        assert_eq!(p.due(start + Duration::from_millis(10)), 10);
        p.sent = 10;
        assert_eq!(p.due(start + Duration::from_millis(10)), 0);
    }
}
