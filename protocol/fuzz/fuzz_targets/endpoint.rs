//! Drives a server `Endpoint` with arbitrary datagram sequences, and checks
//! the anti-amplification rule on everything it sends.
//!
//! One input is one session against a fresh endpoint (fixed secrets, seed
//! and epoch; the epoch `Instant` is captured once per process, so a run is
//! a function of its input). The input is a program of operations, read
//! byte by byte; a truncated operation ends the program:
//!
//! | op byte (low 3 bits) | what it does |
//! |---|---|
//! | 0-1 | a raw datagram: 2 bytes little-endian length (mod 1501), then that many bytes (fewer if the input ends), from address `op >> 3 & 3` |
//! | 2-3 | a well-formed Connect (valid CRC) without a cookie, from address `op >> 3 & 3`: 1 byte `f` (`f & 1`: a wrong protocol version, `f & 2`: unpinned), 4 bytes header connection id, 32 bytes client public key, 16 bytes nonce, 1 byte ticket length (≤ 64) and the ticket |
//! | 4 | time passes: 1 byte × 50 ms (up to 12.75 s: cookies expire at 10 s, handshakes time out), then `handle_timeout` |
//! | 5 | echo a cookie: 1 byte `f`, 1 byte ticket length (≤ 64) and the ticket; the last cookie the endpoint sent goes back in a Connect built from the Connect that earned it, from address `f & 3` (so also from the wrong address), with the cookie's MAC or timestamp altered when `f & 4` / `f & 8` |
//! | 6 | the honest client takes a step: 1 byte `f`; it queues a message (`f & 3`: none, unreliable, ordered, unordered), runs its timers, and its datagrams go to the endpoint from address 0, or, when `f & 4`, are held back (the latest kept) instead |
//! | 7 | replay the held datagram: 1 byte address, 1 byte position, 1 byte xor mask (0: unchanged, so an authentic packet from a new address: NAT rebinding) |
//!
//! The first input byte configures the endpoint: bit 0 allows unpinned
//! clients, bit 1 sets an integrity table, bits 2-3 the most connections
//! (1-4), bit 4 the most pending connections (1-2). The application accepts
//! an Incoming connection when its ticket's first byte is even and refuses
//! it otherwise.
//!
//! Checked after every operation, beyond "nothing panics":
//! - every datagram sent to an address that has not validated itself (no
//!   Incoming event for it: no cookie round trip, and no live connection
//!   whose verified packets come from it) was caused by a datagram from that
//!   address in this very operation, and is no larger than it (and the
//!   replies to one datagram, together, are no larger either);
//! - the endpoint sends only to addresses that sent it something.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tos_protocol::connection::{ClientConfig, Connection, ServerKey, TransportConfig};
use tos_protocol::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use tos_protocol::integrity::IntegrityTable;
use tos_protocol::wire::Channel;
use tos_protocol::wire::control::{
    CONNECT_LEN, Connect, Cookie, DenyReason, Handshake, KeyMode, PROTOCOL_VERSION,
};
use tos_protocol::wire::datagram::{Datagram, classify};

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 3565);
/// Address 0 is the honest client's; the others belong to nobody.
const ADDRS: [SocketAddr; 4] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)), 40_000),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)), 40_000),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)), 40_001),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 7, 9)), 9),
];
const MAX_DATAGRAM: usize = 1500;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// What a Connect carried, to build the Connect that echoes its cookie.
#[derive(Clone, Copy)]
struct ConnectInfo {
    key_mode: KeyMode,
    client_public: [u8; 32],
    client_nonce: [u8; 16],
}

struct Session {
    endpoint: Endpoint,
    now: Instant,
    /// Addresses that completed a cookie round trip (an Incoming event).
    proven: [bool; 4],
    /// The last Connect without a cookie from each address.
    last_connect: [Option<ConnectInfo>; 4],
    /// The last cookie the endpoint sent, with the Connect that earned it.
    last_cookie: Option<(Cookie, ConnectInfo)>,
    client: Connection,
    held: Option<([u8; MAX_DATAGRAM], usize)>,
    buf: [u8; MAX_DATAGRAM],
}

/// Reads the input front to back.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

fn addr_index(addr: SocketAddr) -> usize {
    ADDRS
        .iter()
        .position(|&a| a == addr)
        .unwrap_or_else(|| panic!("the endpoint sent to {addr}, which never sent it anything"))
}

impl Session {
    fn new(flags: u8) -> Self {
        let epoch = *EPOCH.get_or_init(Instant::now);
        let transport = Arc::new(TransportConfig::default());
        let mut config = EndpointConfig::new([0x42; 32], [0x24; 32], epoch, [7; 32]);
        config.transport = Arc::clone(&transport);
        config.allow_unpinned = flags & 1 != 0;
        if flags & 2 != 0 {
            config.integrity = Some(Arc::new(IntegrityTable::generate(&[0x17; 32], 1)));
        }
        config.max_connections = 1 + usize::from(flags >> 2 & 3);
        config.max_pending = 1 + usize::from(flags >> 4 & 1);
        let integrity = config.integrity.clone();
        let endpoint = Endpoint::new(config);
        let client = Connection::connect(
            ClientConfig {
                transport,
                server_key: ServerKey::Pinned(endpoint.static_public_key()),
                ticket: b"player-ticket".to_vec(),
                integrity,
                seed: [9; 32],
            },
            SERVER,
            epoch,
        )
        .expect("a valid client config");
        Self {
            endpoint,
            now: epoch,
            proven: [false; 4],
            last_connect: [None; 4],
            last_cookie: None,
            client,
            held: None,
            buf: [0; MAX_DATAGRAM],
        }
    }

    /// Feeds one datagram from address `from`, then settles.
    fn feed(&mut self, from: usize, datagram: &[u8]) {
        let mut bytes = [0u8; MAX_DATAGRAM];
        let len = datagram.len().min(MAX_DATAGRAM);
        bytes[..len].copy_from_slice(&datagram[..len]);
        if let Ok(Datagram::Handshake(_, Handshake::Connect(c))) = classify(&bytes[..len])
            && c.cookie.is_none()
        {
            self.last_connect[from] = Some(ConnectInfo {
                key_mode: c.key_mode,
                client_public: c.client_public,
                client_nonce: c.client_nonce,
            });
        }
        let _ = self
            .endpoint
            .handle_datagram(self.now, ADDRS[from], &mut bytes[..len]);
        self.settle(Some((from, len)));
    }

    /// Handles the endpoint's events and sends everything it has to send,
    /// checking each datagram against the amplification rule. `cause` is
    /// the datagram just fed (address index, length), if any.
    fn settle(&mut self, cause: Option<(usize, usize)>) {
        let mut decisions = [None; 8];
        let mut n = 0;
        while let Some(e) = self.endpoint.poll_event() {
            if let EndpointEvent::Incoming {
                handle,
                ticket,
                address,
            } = e
            {
                self.proven[addr_index(address)] = true;
                let accept = ticket.first().is_none_or(|b| b % 2 == 0);
                if n < decisions.len() {
                    decisions[n] = Some((handle, accept));
                    n += 1;
                }
            }
        }
        for (handle, accept) in decisions.into_iter().flatten() {
            if accept {
                let _ = self.endpoint.accept(handle, self.now);
            } else {
                self.endpoint.refuse(handle, DenyReason::TicketRejected);
            }
        }
        // Addresses live connections take as their peer's: reached only by
        // a cookie round trip or a verified packet (NAT rebinding).
        let mut validated = self.proven;
        for h in self.endpoint.handles() {
            if let Some(c) = self.endpoint.connection(h)
                && let Some(i) = ADDRS.iter().position(|&a| a == c.remote_address())
            {
                validated[i] = true;
            }
        }
        let mut sent_unvalidated = 0usize;
        let mut to_client = Vec::new();
        let mut transmits = 0;
        while let Some(t) = self.endpoint.poll_transmit(self.now, &mut self.buf) {
            transmits += 1;
            assert!(transmits < 10_000, "poll_transmit never returns None");
            assert!(t.size <= MAX_DATAGRAM, "a {}-byte datagram", t.size);
            let to = addr_index(t.destination);
            if !validated[to] {
                let Some((from, len)) = cause.filter(|&(from, _)| from == to) else {
                    panic!(
                        "{} bytes sent to unvalidated {} without a datagram from it",
                        t.size, t.destination
                    );
                };
                sent_unvalidated += t.size;
                assert!(
                    t.size <= len && sent_unvalidated <= len,
                    "amplification: {} bytes ({} in all) sent to unvalidated {} \
                     in reply to {} bytes",
                    t.size,
                    sent_unvalidated,
                    ADDRS[from],
                    len
                );
            }
            if let Ok(Datagram::Handshake(_, Handshake::Cookie(cookie))) =
                classify(&self.buf[..t.size])
                && let Some(info) = self.last_connect[to]
            {
                self.last_cookie = Some((cookie, info));
            }
            if to == 0 {
                to_client.push(self.buf[..t.size].to_vec());
            }
        }
        // The honest client hears what was sent to its address.
        for mut d in to_client {
            self.client.handle_datagram(self.now, SERVER, &mut d);
        }
        while self.client.poll_event().is_some() {}
    }

    fn connect(&mut self, from: usize, input: &mut Input<'_>) -> Option<()> {
        let f = input.byte()?;
        let id = u32::from_le_bytes(input.bytes(4).try_into().ok()?);
        let client_public: [u8; 32] = input.bytes(32).try_into().ok()?;
        let client_nonce: [u8; 16] = input.bytes(16).try_into().ok()?;
        let len = usize::from(input.byte()?) % 65;
        let ticket = input.bytes(len);
        let mut d = [0u8; CONNECT_LEN];
        let n = Handshake::Connect(Connect {
            version: if f & 1 != 0 {
                PROTOCOL_VERSION.wrapping_add(1)
            } else {
                PROTOCOL_VERSION
            },
            key_mode: if f & 2 != 0 {
                KeyMode::Unpinned
            } else {
                KeyMode::Pinned
            },
            client_public,
            client_nonce,
            cookie: None,
            ticket,
        })
        .encode(id, 0, &mut d)
        .ok()?;
        self.feed(from, &d[..n]);
        Some(())
    }

    fn echo_cookie(&mut self, input: &mut Input<'_>) -> Option<()> {
        let f = input.byte()?;
        let len = usize::from(input.byte()?) % 65;
        let ticket = input.bytes(len);
        let (mut cookie, info) = self.last_cookie?;
        if f & 4 != 0 {
            cookie.mac[usize::from(f >> 4) % 32] ^= 0x01;
        }
        if f & 8 != 0 {
            cookie.timestamp_ms = cookie.timestamp_ms.wrapping_add(u64::from(f >> 4) + 1);
        }
        let mut d = [0u8; CONNECT_LEN];
        let n = Handshake::Connect(Connect {
            version: PROTOCOL_VERSION,
            key_mode: info.key_mode,
            client_public: info.client_public,
            client_nonce: info.client_nonce,
            cookie: Some(cookie),
            ticket,
        })
        .encode(cookie.connection_id, 1, &mut d)
        .ok()?;
        self.feed(usize::from(f & 3), &d[..n]);
        Some(())
    }

    fn client_step(&mut self, f: u8) {
        let data = [f; 48];
        let channel = match f & 3 {
            1 => Some(Channel::Unreliable),
            2 => Some(Channel::ReliableOrdered),
            3 => Some(Channel::ReliableUnordered),
            _ => None,
        };
        if let Some(channel) = channel {
            let _ = self.client.send(channel, &data);
        }
        if self.client.next_timeout().is_some_and(|t| t <= self.now) {
            self.client.handle_timeout(self.now);
        }
        let mut out = [0u8; MAX_DATAGRAM];
        for _ in 0..16 {
            let Some(t) = self.client.poll_transmit(self.now, &mut out) else {
                break;
            };
            if f & 4 != 0 {
                let mut held = [0u8; MAX_DATAGRAM];
                held[..t.size].copy_from_slice(&out[..t.size]);
                self.held = Some((held, t.size));
            } else {
                self.feed(0, &out[..t.size]);
            }
        }
    }

    fn replay_held(&mut self, input: &mut Input<'_>) -> Option<()> {
        let from = usize::from(input.byte()?) % ADDRS.len();
        let at = usize::from(input.byte()?);
        let mask = input.byte()?;
        let (mut d, len) = self.held?;
        if len > 0 {
            d[at % len] ^= mask;
        }
        self.feed(from, &d[..len]);
        Some(())
    }

    fn run(&mut self, input: &mut Input<'_>) -> Option<()> {
        loop {
            let op = input.byte()?;
            match op & 7 {
                0 | 1 => {
                    let lo = input.byte()?;
                    let hi = input.byte()?;
                    let len = usize::from(u16::from_le_bytes([lo, hi])) % (MAX_DATAGRAM + 1);
                    let d = input.bytes(len);
                    self.feed(usize::from(op >> 3 & 3), d);
                }
                2 | 3 => self.connect(usize::from(op >> 3 & 3), input)?,
                4 => {
                    let steps = input.byte()?;
                    self.now += Duration::from_millis(50) * u32::from(steps);
                    self.endpoint.handle_timeout(self.now);
                    self.settle(None);
                }
                5 => self.echo_cookie(input)?,
                6 => {
                    let f = input.byte()?;
                    self.client_step(f);
                }
                _ => self.replay_held(input)?,
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(flags) = input.byte() else { return };
    let mut session = Session::new(flags);
    let _ = session.run(&mut input);
});
