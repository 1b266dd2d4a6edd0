//! Shared test harness: a server endpoint and clients joined by a seeded
//! simulated link (loss, duplication, reordering, latency, jitter), driven
//! in virtual time by [`Sim::drive`].

#![allow(dead_code, unreachable_pub)]

pub mod spec;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tos_protocol::connection::{ClientConfig, Connection, Event, ServerKey, TransportConfig};
use tos_protocol::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, EndpointEvent};
use tos_protocol::wire::Channel;
use tos_protocol::wire::control::{DenyReason, DisconnectReason};

/// Link impairments, applied per datagram and direction.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    pub loss: f64,
    pub duplicate: f64,
    /// Probability a datagram gets extra delay (up to `reorder_delay`).
    pub reorder: f64,
    pub reorder_delay: Duration,
    pub latency: Duration,
    pub jitter: Duration,
}

impl LinkConfig {
    pub fn perfect(latency_ms: u64) -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            latency: Duration::from_millis(latency_ms),
            jitter: Duration::ZERO,
        }
    }

    pub fn hostile() -> Self {
        Self {
            loss: 0.30,
            duplicate: 0.10,
            reorder: 0.20,
            reorder_delay: Duration::from_millis(40),
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
        }
    }
}

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        // SplitMix64: the crate's one copy (the state stays a public `u64`
        // so tests can seed it as `Rng(seed)`).
        self.0 = self.0.wrapping_add(tos_protocol::rng::GOLDEN_GAMMA);
        tos_protocol::rng::mix64(self.0)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.next_u64() as u8;
        }
        out
    }
}

/// An event with its bytes copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    Connected,
    Message(Channel, Vec<u8>),
    UnreliableAcked(u64),
    UnreliableLost(u64),
    IdChanged(u32),
    Rekeyed(u32),
    ServerKey([u8; 32]),
    Denied(DenyReason),
    Disconnected(DisconnectReason, bool),
}

impl Owned {
    pub fn from_event(e: Event<'_>) -> Self {
        match e {
            Event::Connected => Owned::Connected,
            Event::Message { channel, data } => Owned::Message(channel, data.to_vec()),
            Event::UnreliableAcked { token } => Owned::UnreliableAcked(token),
            Event::UnreliableLost { token } => Owned::UnreliableLost(token),
            Event::ConnectionIdChanged { connection_id } => Owned::IdChanged(connection_id),
            Event::KeysRotated { generation } => Owned::Rekeyed(generation),
            Event::ServerKeyLearnt { key } => Owned::ServerKey(key),
            Event::Denied { reason } => Owned::Denied(reason),
            Event::Disconnected { reason, by_peer } => Owned::Disconnected(reason, by_peer),
        }
    }
}

#[derive(Debug)]
struct InFlight {
    at: Instant,
    seq: u64,
    to: SocketAddr,
    from: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

pub struct Client {
    pub conn: Connection,
    pub addr: SocketAddr,
    pub events: Vec<Owned>,
}

/// A server endpoint (or several, one per simulated core) and clients.
pub struct Sim {
    pub start: Instant,
    pub now: Instant,
    pub servers: Vec<Endpoint>,
    pub server_addr: SocketAddr,
    pub clients: Vec<Client>,
    pub link: LinkConfig,
    pub rng: Rng,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Server-side events per core: (handle, event).
    pub server_events: Vec<(usize, ConnectionHandle, Owned)>,
    /// What the server does with a ticket.
    pub ticket_policy: fn(&[u8]) -> Option<DenyReason>,
    /// Every datagram put on the link: (from, bytes) — for transcripts.
    pub record: Option<Vec<(SocketAddr, Vec<u8>)>>,
    pub buf: Vec<u8>,
    /// Datagrams the link delivered; drop filter applied before delivery.
    pub drop_all: bool,
    /// When set, the server application never answers Incoming events.
    pub hold_incoming: bool,
}

pub const STATIC_SECRET: [u8; 32] = [0x42; 32];

pub fn server_config(core: u8, transport: Arc<TransportConfig>, epoch: Instant) -> EndpointConfig {
    let mut cfg = EndpointConfig::new(STATIC_SECRET, [0x24; 32], epoch, [core; 32]);
    cfg.core_id = core;
    cfg.transport = transport;
    cfg
}

impl Sim {
    pub fn new(seed: u64, link: LinkConfig, transport: TransportConfig) -> Self {
        Self::with_cores(seed, link, transport, 1)
    }

    pub fn with_cores(seed: u64, link: LinkConfig, transport: TransportConfig, cores: u8) -> Self {
        let start = Instant::now();
        let transport = Arc::new(transport);
        let servers = (0..cores)
            .map(|c| Endpoint::new(server_config(c, Arc::clone(&transport), start)))
            .collect();
        Self {
            start,
            now: start,
            servers,
            server_addr: "127.0.0.1:3565".parse().unwrap(),
            clients: Vec::new(),
            link,
            rng: Rng(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            server_events: Vec::new(),
            ticket_policy: |_| None,
            record: None,
            buf: vec![0u8; 2048],
            drop_all: false,
            hold_incoming: false,
        }
    }

    pub fn client_config(&mut self, transport: Arc<TransportConfig>) -> ClientConfig {
        let pk = self.servers[0].static_public_key();
        ClientConfig {
            transport,
            server_key: ServerKey::Pinned(pk),
            ticket: b"player-ticket".to_vec(),
            integrity: None,
            seed: self.rng.bytes(),
        }
    }

    pub fn add_client(&mut self, config: ClientConfig) -> usize {
        let port = 40_000 + self.clients.len() as u16;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let conn = Connection::connect(config, self.server_addr, self.now).unwrap();
        self.clients.push(Client {
            conn,
            addr,
            events: Vec::new(),
        });
        self.clients.len() - 1
    }

    /// Puts a datagram on the link, applying loss, duplication and delay.
    pub fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        if let Some(r) = &mut self.record {
            r.push((from, bytes.to_vec()));
        }
        if self.drop_all || self.rng.chance(self.link.loss) {
            return;
        }
        let copies = if self.rng.chance(self.link.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.link.latency;
            if !self.link.jitter.is_zero() {
                delay += Duration::from_micros(self.rng.below(self.link.jitter.as_micros() as u64));
            }
            if self.rng.chance(self.link.reorder) {
                delay += Duration::from_micros(
                    self.rng
                        .below(self.link.reorder_delay.as_micros() as u64 + 1),
                );
            }
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now + delay,
                seq: self.seq,
                to,
                from,
                bytes: bytes.to_vec(),
            }));
        }
    }

    /// Which simulated core gets a datagram: by the connection id's low
    /// byte, as the kernel's cBPF program does.
    fn core_for(&self, bytes: &[u8]) -> usize {
        bytes
            .first()
            .map_or(0, |b| usize::from(*b) % self.servers.len())
    }

    fn deliver(&mut self, d: InFlight) {
        let mut bytes = d.bytes;
        if d.to == self.server_addr {
            let mut core = self.core_for(&bytes);
            for _ in 0..self.servers.len() {
                match self.servers[core].handle_datagram(self.now, d.from, &mut bytes) {
                    tos_protocol::endpoint::DatagramOutcome::WrongCore(c) => {
                        core = usize::from(c) % self.servers.len()
                    }
                    _ => break,
                }
            }
        } else if let Some(c) = self.clients.iter_mut().find(|c| c.addr == d.to) {
            c.conn.handle_datagram(self.now, d.from, &mut bytes);
        }
    }

    /// One round: deliver what is due, run timers, handle events, transmit.
    pub fn step(&mut self) {
        while self.queue.peek().is_some_and(|Reverse(d)| d.at <= self.now) {
            let Reverse(d) = self.queue.pop().unwrap();
            self.deliver(d);
        }
        let now = self.now;
        for s in &mut self.servers {
            s.handle_timeout(now);
        }
        for c in &mut self.clients {
            if c.conn.next_timeout().is_some_and(|t| t <= now) {
                c.conn.handle_timeout(now);
            }
        }
        self.pump_events();
        let server_addr = self.server_addr;
        let mut out = Vec::new();
        for s in &mut self.servers {
            while let Some(t) = s.poll_transmit(now, &mut self.buf) {
                out.push((server_addr, t.destination, self.buf[..t.size].to_vec()));
            }
        }
        for c in &mut self.clients {
            while let Some(t) = c.conn.poll_transmit(now, &mut self.buf) {
                out.push((c.addr, t.destination, self.buf[..t.size].to_vec()));
            }
        }
        for (from, to, bytes) in out {
            self.send(from, to, &bytes);
        }
        self.pump_events();
    }

    pub fn pump_events(&mut self) {
        let now = self.now;
        for (core, s) in self.servers.iter_mut().enumerate() {
            let mut decisions = Vec::new();
            while let Some(e) = s.poll_event() {
                match e {
                    EndpointEvent::Incoming { handle, ticket, .. } => {
                        if !self.hold_incoming {
                            decisions.push((handle, (self.ticket_policy)(ticket)));
                        }
                    }
                    EndpointEvent::Connection { handle, event } => {
                        self.server_events
                            .push((core, handle, Owned::from_event(event)))
                    }
                    EndpointEvent::Removed { .. } => {}
                }
            }
            for (h, d) in decisions {
                match d {
                    None => {
                        s.accept(h, now);
                    }
                    Some(reason) => s.refuse(h, reason),
                }
            }
        }
        for c in &mut self.clients {
            while let Some(e) = c.conn.poll_event() {
                c.events.push(Owned::from_event(e));
            }
        }
    }

    /// The next instant anything happens.
    fn next_time(&self) -> Option<Instant> {
        let mut t = self.queue.peek().map(|Reverse(d)| d.at);
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |y| y.min(x)));
            }
        };
        for s in &self.servers {
            at(s.next_timeout());
        }
        for c in &self.clients {
            at(c.conn.next_timeout());
        }
        t
    }

    /// Runs until `done` holds or `limit` of virtual time passes; returns
    /// whether `done` held.
    pub fn drive(&mut self, limit: Duration, mut done: impl FnMut(&mut Sim) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.step();
            if done(self) {
                return true;
            }
            let next = self
                .next_time()
                .unwrap_or(end)
                .max(self.now + Duration::from_micros(100));
            if next > end {
                self.now = end;
                self.step();
                return done(self);
            }
            self.now = next;
        }
    }

    /// Whether every server connection completed its handshake.
    pub fn server_established(&self) -> bool {
        self.servers.iter().all(|s| {
            s.handles()
                .all(|h| s.connection(h).is_some_and(|c| c.is_established()))
        })
    }

    pub fn established(&self, client: usize) -> bool {
        self.clients[client].conn.is_established()
    }

    /// The server-side handle of the only connection (single-core sims).
    pub fn server_handle(&self) -> ConnectionHandle {
        self.servers[0]
            .handles()
            .next()
            .expect("a server connection")
    }

    pub fn server_messages(&self) -> Vec<(Channel, Vec<u8>)> {
        self.server_events
            .iter()
            .filter_map(|(_, _, e)| match e {
                Owned::Message(c, d) => Some((*c, d.clone())),
                _ => None,
            })
            .collect()
    }
}
