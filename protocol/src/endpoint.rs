//! The server side of the protocol for one core: stateless cookies, the
//! connection table, and routing of datagrams to connections.
//!
//! Sans-IO like [`crate::connection`]: `handle_datagram(now, from, bytes)`
//! returns where the datagram went (so the engine can forward one that
//! belongs to another core), `poll_transmit(now, buf)` yields every
//! datagram to send (stateless replies first, then each connection's),
//! `poll_event()` yields new connection attempts and connection events,
//! `handle_timeout(now)` runs every connection's timers.
//!
//! # Admission
//!
//! A Connect shorter than [`CONNECT_LEN`] is dropped. A first Connect gets a
//! Cookie (63 bytes) and the server keeps nothing. A Connect that brings a
//! valid cookie back proves the client's address: only then does the
//! endpoint create state, and it hands the auth ticket to the application
//! ([`EndpointEvent::Incoming`]), which accepts or refuses it. Before that
//! proof no reply is larger than the datagram that caused it.
//!
//! # The sealed ticket
//!
//! A Connect's ticket is sealed under `es` (see [`crate::crypto`]). After
//! the cookie verified (and the core has room), the endpoint computes
//! `es = X25519(server static, client ephemeral)` once, keeps it in the
//! pending connection for the key schedule, and opens the ticket; the
//! application sees only the plaintext. A ticket that does not open, or a
//! non-empty ticket in an unpinned Connect, is denied with
//! [`DenyReason::TicketRejected`] and counted in
//! [`EndpointStats::tickets_rejected`]; a client key that is a low-order
//! point is dropped and counted in [`EndpointStats::bad_client_keys`].
//! The endpoint remembers the cookie's connection id of a rejected ticket
//! for the cookie's lifetime (at most 4,096 ids), so that replaying that
//! Connect is denied again without another X25519.
//!
//! # Admission control
//!
//! Before the X25519 of a cookie-verified Connect (the address is proven,
//! so a spoofed source cannot spend a victim's allowance), three limits
//! apply, each refusal counted in [`EndpointStats`]:
//!
//! - a token bucket per source IP address: at most
//!   [`EndpointConfig::handshake_rate`] verified Connects per second, with
//!   bursts of [`EndpointConfig::handshake_burst`] (ConnectionDenied
//!   `Busy`, [`EndpointStats::rate_limited`]);
//! - this core's [`EndpointConfig::max_connections`] (`Full`,
//!   [`EndpointStats::full_refused`]);
//! - the process-wide [`Admission`] shared by every core: at most
//!   [`Admission::max_connections`] connections in the process and
//!   [`Admission::max_per_address`] per source IP address (`Full`,
//!   [`EndpointStats::process_full`] / [`EndpointStats::address_full`]).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::connection::{Connection, Event, PendingState, Transmit, TransportConfig};
use crate::cookie::{CookieError, CookieKey};
use crate::crypto::{self, KeyPair};
use crate::integrity::IntegrityTable;
use crate::wire::control::{
    AcceptedParams, CONNECT_LEN, ConnectionDenied, DenyReason, Handshake, KeyMode, MAX_TICKET_LEN,
    PROTOCOL_VERSION,
};
use crate::wire::datagram::{self, Datagram};

/// Settings of one core's endpoint.
#[derive(Clone)]
pub struct EndpointConfig {
    /// Transport settings for every connection.
    pub transport: Arc<TransportConfig>,
    /// This core's number: the low byte of every id it allocates.
    pub core_id: u8,
    /// The server's long-term X25519 secret (clients pin its public key).
    pub static_secret: [u8; 32],
    /// Master secret of the cookie keys, shared by all cores.
    pub cookie_secret: [u8; 32],
    /// Cookie lifetime.
    pub cookie_ttl: Duration,
    /// Cookie key rotation period.
    pub cookie_rotation: Duration,
    /// The instant cookie timestamps count from; the same for all cores.
    pub epoch: Instant,
    /// Most connections on this core.
    pub max_connections: usize,
    /// Most connections awaiting the application's decision.
    pub max_pending: usize,
    /// Whether clients that did not pin the server key are let in.
    pub allow_unpinned: bool,
    /// The integrity table clients are challenged with.
    pub integrity: Option<Arc<IntegrityTable>>,
    /// Tick rate announced to clients.
    pub tick_hz: u16,
    /// How long a migrated connection's old id keeps routing here.
    pub migration_grace: Duration,
    /// Seed of the endpoint's random numbers.
    pub seed: [u8; 32],
    /// Cookie-verified Connects per second allowed from one IP address
    /// (token bucket refill rate; 0 turns the limit off).
    pub handshake_rate: u32,
    /// Token bucket size: verified Connects one address may send at once.
    pub handshake_burst: u32,
    /// Process-wide limits, shared by every core's endpoint.
    pub admission: Arc<Admission>,
}

/// Process-wide admission limits: the connections of every core together,
/// and per source IP address. Shared by the endpoints of all cores
/// (touched once per admitted and once per removed connection).
#[derive(Debug)]
pub struct Admission {
    max_connections: usize,
    max_per_address: u32,
    /// Addresses the per-address limits (connections and handshake rate)
    /// do not apply to: an operator's own test or bot hosts.
    exempt: Vec<IpAddr>,
    state: Mutex<AdmissionState>,
}

#[derive(Debug, Default)]
struct AdmissionState {
    live: usize,
    per_address: HashMap<IpAddr, u32>,
}

/// Why [`Admission::try_admit`] said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionRefusal {
    /// The process holds its most connections.
    ProcessFull,
    /// This address holds its most connections.
    AddressFull,
}

impl Admission {
    /// Limits: `max_connections` in the process, `max_per_address` per IP
    /// address (0: no per-address limit).
    pub fn new(max_connections: usize, max_per_address: u32) -> Self {
        Self {
            max_connections,
            max_per_address,
            exempt: Vec::new(),
            state: Mutex::new(AdmissionState::default()),
        }
    }

    /// The same limits, with addresses the per-address limits do not apply
    /// to (the process-wide count still does).
    pub fn with_exempt(mut self, exempt: Vec<IpAddr>) -> Self {
        self.exempt = exempt;
        self
    }

    /// Whether the per-address limits skip `ip`.
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt.contains(&ip)
    }

    /// Most connections in the process.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Most connections per IP address (0: unlimited).
    pub fn max_per_address(&self) -> u32 {
        self.max_per_address
    }

    /// Connections admitted and not yet removed, all cores together.
    pub fn live(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .live
    }

    /// Connections admitted from `ip` and not yet removed.
    pub fn live_from(&self, ip: IpAddr) -> u32 {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.per_address.get(&ip).copied().unwrap_or(0)
    }

    /// Counts a new connection from `ip`, or says why not.
    pub fn try_admit(&self, ip: IpAddr) -> Result<(), AdmissionRefusal> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.live >= self.max_connections {
            return Err(AdmissionRefusal::ProcessFull);
        }
        let limit = if self.is_exempt(ip) {
            0
        } else {
            self.max_per_address
        };
        let n = state.per_address.entry(ip).or_insert(0);
        if limit != 0 && *n >= limit {
            return Err(AdmissionRefusal::AddressFull);
        }
        *n += 1;
        state.live += 1;
        Ok(())
    }

    /// Forgets a connection counted by [`Admission::try_admit`].
    pub fn release(&self, ip: IpAddr) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.live = state.live.saturating_sub(1);
        if let Some(n) = state.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                state.per_address.remove(&ip);
            }
        }
    }
}

impl Default for Admission {
    /// No process-wide limit beyond the cores' own; 16 per address.
    fn default() -> Self {
        Self::new(usize::MAX, DEFAULT_MAX_PER_ADDRESS)
    }
}

/// Default most connections per IP address (NAT'd households and cafés
/// share one; a flood from one address is held at this many).
pub const DEFAULT_MAX_PER_ADDRESS: u32 = 16;
/// Default verified Connects per second per IP address.
pub const DEFAULT_HANDSHAKE_RATE: u32 = 20;
/// Default burst of verified Connects per IP address.
pub const DEFAULT_HANDSHAKE_BURST: u32 = 40;
/// Default most connections per core: near the measured capacity of a
/// core (about 900 players, PERFORMANCE.md), not what fits in memory.
pub const DEFAULT_MAX_CONNECTIONS_PER_CORE: usize = 1_000;
/// Most source addresses whose handshake buckets an endpoint remembers;
/// full buckets (idle addresses) are forgotten every second.
pub const MAX_BUCKETS: usize = 16_384;

/// A token bucket of one source address.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f32,
    last: Instant,
}

impl core::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("core_id", &self.core_id)
            .field("max_connections", &self.max_connections)
            .field("allow_unpinned", &self.allow_unpinned)
            .finish_non_exhaustive()
    }
}

impl EndpointConfig {
    /// Defaults around the given secrets.
    pub fn new(
        static_secret: [u8; 32],
        cookie_secret: [u8; 32],
        epoch: Instant,
        seed: [u8; 32],
    ) -> Self {
        Self {
            transport: Arc::new(TransportConfig::default()),
            core_id: 0,
            static_secret,
            cookie_secret,
            cookie_ttl: Duration::from_secs(10),
            cookie_rotation: Duration::from_secs(5),
            epoch,
            max_connections: DEFAULT_MAX_CONNECTIONS_PER_CORE,
            max_pending: 1_024,
            allow_unpinned: false,
            integrity: None,
            tick_hz: 60,
            migration_grace: Duration::from_secs(5),
            seed,
            handshake_rate: DEFAULT_HANDSHAKE_RATE,
            handshake_burst: DEFAULT_HANDSHAKE_BURST,
            admission: Arc::new(Admission::default()),
        }
    }
}

/// Names a connection of an endpoint; stale handles name nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionHandle {
    index: u32,
    generation: u32,
}

impl ConnectionHandle {
    /// The slot index (stable while the connection lives).
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// Where a datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramOutcome {
    /// Fed to this connection.
    Connection(ConnectionHandle),
    /// A stateless reply (Cookie or Denied) was queued, or nothing was due.
    Handshake,
    /// It belongs to another core's connection: forward it there.
    WrongCore(u8),
    /// It was dropped and counted.
    Dropped(DropReason),
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// It did not decode (bad header, bad CRC, bad layout).
    Malformed,
    /// A Connect shorter than the required padding.
    ShortConnect,
    /// A handshake packet only a client may receive.
    UnexpectedHandshake,
    /// No connection has this id.
    UnknownConnection,
    /// The stateless reply queue was full.
    ReplyQueueFull,
}

/// Counters of an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams handled.
    pub datagrams: u64,
    /// Dropped: malformed.
    pub malformed: u64,
    /// Dropped: short Connect.
    pub short_connects: u64,
    /// Dropped: handshake packets a server never receives.
    pub unexpected_handshakes: u64,
    /// Dropped: unknown connection id.
    pub unknown_connection: u64,
    /// Dropped: stateless reply queue full.
    pub reply_queue_full: u64,
    /// Cookies issued.
    pub cookies_issued: u64,
    /// Cookies refused (forged, expired, wrong address).
    pub bad_cookies: u64,
    /// Connects refused for their version.
    pub version_refused: u64,
    /// Connects refused for a missing key pin.
    pub unpinned_refused: u64,
    /// Connects refused because the core is full (`Full`).
    pub full_refused: u64,
    /// Connects refused because too many await the application's decision
    /// (`Busy`).
    pub pending_refused: u64,
    /// Connects refused because the process holds its most connections.
    pub process_full: u64,
    /// Connects refused because their address holds its most connections.
    pub address_full: u64,
    /// Verified Connects refused by their address's handshake rate limit.
    pub rate_limited: u64,
    /// Connects with a cookie naming another core whose cookie did not
    /// verify here (dropped, not forwarded).
    pub bad_forward_cookies: u64,
    /// Authentication failures of every connection this endpoint held,
    /// closed ones included (never goes down).
    pub auth_failures: u64,
    /// Replays refused by every connection this endpoint held, closed ones
    /// included (never goes down).
    pub replays: u64,
    /// Connections accepted by the application.
    pub accepted: u64,
    /// Connections refused by the application.
    pub refused: u64,
    /// Connects denied because their sealed ticket did not open (or an
    /// unpinned Connect carried a ticket).
    pub tickets_rejected: u64,
    /// Connects dropped because the client's key is a low-order point.
    pub bad_client_keys: u64,
    /// Datagrams for another core.
    pub wrong_core: u64,
}

/// Something the application should handle.
#[derive(Debug)]
pub enum EndpointEvent<'a> {
    /// A client proved its address; accept or refuse its ticket with
    /// [`Endpoint::accept`] / [`Endpoint::refuse`].
    Incoming {
        /// The new connection.
        handle: ConnectionHandle,
        /// The auth ticket from its Connect, opened: the plaintext the
        /// client configured (empty if it sent none).
        ticket: &'a [u8],
        /// Its address.
        address: SocketAddr,
    },
    /// A connection's event.
    Connection {
        /// Which connection.
        handle: ConnectionHandle,
        /// What happened.
        event: Event<'a>,
    },
    /// The connection is gone from the table; its handle is now stale.
    Removed {
        /// Which connection.
        handle: ConnectionHandle,
    },
}

struct Slot {
    generation: u32,
    connection: Option<Connection>,
    ticket: Vec<u8>,
    incoming_reported: bool,
    /// Awaiting the application's accept or refuse (counted in `pending`).
    pending: bool,
    /// A migrated connection's previous id, routed here until it expires.
    alias: Option<u32>,
}

/// A queued stateless reply.
struct Reply {
    to: SocketAddr,
    bytes: [u8; 64],
    len: usize,
}

const MAX_REPLIES: usize = 1_024;
/// Most remembered connection ids whose ticket was rejected.
const MAX_REJECTED: usize = 4_096;

/// One core's server endpoint.
pub struct Endpoint {
    config: EndpointConfig,
    static_key: KeyPair,
    cookies: CookieKey,
    rng: ChaCha20Rng,
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_id: HashMap<u32, u32>,
    /// Old ids that route to a connection until the instant.
    aliases: VecDeque<(u32, Instant)>,
    /// Ids of connections moved to another core: forward until the instant.
    forwards: HashMap<u32, (u8, Instant)>,
    replies: VecDeque<Reply>,
    /// Cookie ids whose Connect had a ticket that did not open, until the
    /// instant (the cookie's lifetime): a replay of that Connect is denied
    /// again without another X25519.
    rejected: HashMap<u32, Instant>,
    rejected_order: VecDeque<(u32, Instant)>,
    /// Slots with events or news to report.
    dirty: VecDeque<u32>,
    pending: usize,
    live: usize,
    transmit_cursor: usize,
    transmit_left: Option<usize>,
    stats: EndpointStats,
    /// Handshake token buckets by source IP address.
    buckets: HashMap<IpAddr, Bucket>,
    next_bucket_sweep: Option<Instant>,
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("core_id", &self.config.core_id)
            .field("connections", &self.live)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint with no connections.
    pub fn new(config: EndpointConfig) -> Self {
        let cookies = CookieKey::new(
            config.cookie_secret,
            config.cookie_rotation.as_millis() as u64,
            config.cookie_ttl.as_millis() as u64,
        );
        Self {
            static_key: KeyPair::from_secret(config.static_secret),
            cookies,
            rng: ChaCha20Rng::from_seed(config.seed),
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            aliases: VecDeque::new(),
            forwards: HashMap::new(),
            replies: VecDeque::new(),
            rejected: HashMap::new(),
            rejected_order: VecDeque::new(),
            dirty: VecDeque::new(),
            pending: 0,
            live: 0,
            transmit_cursor: 0,
            transmit_left: None,
            stats: EndpointStats::default(),
            buckets: HashMap::new(),
            next_bucket_sweep: None,
            config,
        }
    }

    /// The transport settings of this endpoint's connections.
    pub fn config_transport(&self) -> TransportConfig {
        (*self.config.transport).clone()
    }

    /// The public key clients pin.
    pub fn static_public_key(&self) -> [u8; 32] {
        self.static_key.public()
    }

    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Live connections (pending ones included).
    pub fn connection_count(&self) -> usize {
        self.live
    }

    /// The connection behind a handle.
    pub fn connection(&self, handle: ConnectionHandle) -> Option<&Connection> {
        let slot = self.slots.get(handle.index())?;
        (slot.generation == handle.generation)
            .then_some(slot.connection.as_ref())
            .flatten()
    }

    /// The connection behind a handle, mutably (to send or close).
    pub fn connection_mut(&mut self, handle: ConnectionHandle) -> Option<&mut Connection> {
        let slot = self.slots.get_mut(handle.index())?;
        if slot.generation != handle.generation {
            return None;
        }
        let conn = slot.connection.as_mut()?;
        // Whatever the caller does may produce events (close does).
        self.dirty.push_back(handle.index);
        Some(conn)
    }

    /// The connection using (or moving to) `connection_id`.
    pub fn handle_by_id(&self, connection_id: u32) -> Option<ConnectionHandle> {
        let index = *self.by_id.get(&connection_id)?;
        self.slots[index as usize].connection.as_ref()?;
        Some(self.handle_of(index))
    }

    /// Queues a message on a connection. Unlike [`Endpoint::connection_mut`]
    /// it marks the connection for [`Endpoint::poll_event`] only when the
    /// send produced an event (a dropped unreliable message reported lost),
    /// so per-tick sends to every client add no event-polling work.
    pub fn send(
        &mut self,
        handle: ConnectionHandle,
        channel: crate::wire::Channel,
        data: &[u8],
    ) -> Result<u64, crate::connection::SendError> {
        let slot = self
            .slots
            .get_mut(handle.index())
            .filter(|s| s.generation == handle.generation);
        let Some(conn) = slot.and_then(|s| s.connection.as_mut()) else {
            return Err(crate::connection::SendError::Closed);
        };
        let token = conn.send(channel, data)?;
        if conn.has_events() {
            self.dirty.push_back(handle.index);
        }
        Ok(token)
    }

    /// Handles of every live connection.
    pub fn handles(&self) -> impl Iterator<Item = ConnectionHandle> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.connection.is_some())
            .map(|(i, s)| ConnectionHandle {
                index: i as u32,
                generation: s.generation,
            })
    }

    fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.config.epoch).as_millis() as u64
    }

    /// A fresh id owned by this core: random upper bits, core in the low byte.
    pub fn allocate_id(&mut self) -> u32 {
        loop {
            let id = (self.rng.next_u32() & !0xff) | u32::from(self.config.core_id);
            if id > 0xff && !self.by_id.contains_key(&id) && !self.forwards.contains_key(&id) {
                return id;
            }
        }
    }

    fn queue_reply(&mut self, to: SocketAddr, hs: Handshake<'_>, id: u32) -> DatagramOutcome {
        if self.replies.len() >= MAX_REPLIES {
            self.stats.reply_queue_full += 1;
            return DatagramOutcome::Dropped(DropReason::ReplyQueueFull);
        }
        let mut reply = Reply {
            to,
            bytes: [0; 64],
            len: 0,
        };
        match hs.encode(id, 0, &mut reply.bytes) {
            Ok(n) => {
                reply.len = n;
                self.replies.push_back(reply);
                DatagramOutcome::Handshake
            }
            Err(_) => DatagramOutcome::Dropped(DropReason::Malformed),
        }
    }

    fn deny(&mut self, to: SocketAddr, id: u32, reason: DenyReason) -> DatagramOutcome {
        self.queue_reply(to, Handshake::Denied(ConnectionDenied { reason }), id)
    }

    /// Feeds a datagram from `from`; it may be decrypted in place.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> DatagramOutcome {
        self.stats.datagrams += 1;
        let len = datagram.len();
        let header = match datagram::classify(datagram) {
            Ok(Datagram::Handshake(header, Handshake::Connect(c))) => {
                if len < CONNECT_LEN {
                    self.stats.short_connects += 1;
                    return DatagramOutcome::Dropped(DropReason::ShortConnect);
                }
                if c.version != PROTOCOL_VERSION {
                    self.stats.version_refused += 1;
                    return self.deny(from, header.connection_id, DenyReason::Version);
                }
                if c.key_mode == KeyMode::Unpinned && !self.config.allow_unpinned {
                    self.stats.unpinned_refused += 1;
                    return self.deny(from, header.connection_id, DenyReason::KeyNotPinned);
                }
                let now_ms = self.now_ms(now);
                let Some(cookie) = c.cookie else {
                    let id = self.allocate_id();
                    let cookie = self.cookies.issue(now_ms, from, &c.client_nonce, id);
                    self.stats.cookies_issued += 1;
                    return self.queue_reply(from, Handshake::Cookie(cookie), header.connection_id);
                };
                // The cookie's MAC first, whichever core it names (the
                // cookie secret is shared): a spoofed Connect is refused
                // here and never fills another core's inbox.
                if let Err(e) = self.cookies.verify(now_ms, from, &c.client_nonce, &cookie) {
                    let _: CookieError = e;
                    if cookie.connection_id as u8 != self.config.core_id {
                        self.stats.bad_forward_cookies += 1;
                    }
                    self.stats.bad_cookies += 1;
                    return self.deny(from, header.connection_id, DenyReason::BadCookie);
                }
                if cookie.connection_id as u8 != self.config.core_id {
                    self.stats.wrong_core += 1;
                    return DatagramOutcome::WrongCore(cookie.connection_id as u8);
                }
                // The address is proven from here on.
                if let Some(&index) = self.by_id.get(&cookie.connection_id) {
                    let handle = self.handle_of(index);
                    if let Some(conn) = self.slots[index as usize].connection.as_mut() {
                        if conn.remote_address() == from {
                            conn.repeat_accepted();
                        }
                    }
                    return DatagramOutcome::Connection(handle);
                }
                if self.live >= self.config.max_connections {
                    self.stats.full_refused += 1;
                    return self.deny(from, cookie.connection_id, DenyReason::Full);
                }
                if self.pending >= self.config.max_pending {
                    self.stats.pending_refused += 1;
                    return self.deny(from, cookie.connection_id, DenyReason::Busy);
                }
                if self
                    .rejected
                    .get(&cookie.connection_id)
                    .is_some_and(|&until| now < until)
                {
                    // A replay of a Connect whose ticket was rejected.
                    self.stats.tickets_rejected += 1;
                    return self.deny(from, cookie.connection_id, DenyReason::TicketRejected);
                }
                // Per-address rate, then the process-wide counts, all
                // before the X25519 below.
                if !self.take_handshake_token(from.ip(), now) {
                    self.stats.rate_limited += 1;
                    return self.deny(from, cookie.connection_id, DenyReason::Busy);
                }
                match self.config.admission.try_admit(from.ip()) {
                    Ok(()) => {}
                    Err(refusal) => {
                        match refusal {
                            AdmissionRefusal::ProcessFull => self.stats.process_full += 1,
                            AdmissionRefusal::AddressFull => self.stats.address_full += 1,
                        }
                        return self.deny(from, cookie.connection_id, DenyReason::Full);
                    }
                }
                // es once, here: it opens the ticket and later keys the
                // connection (accept does not compute it again).
                let Ok(es) = self.static_key.agree(&c.client_public) else {
                    self.config.admission.release(from.ip());
                    self.stats.bad_client_keys += 1;
                    return DatagramOutcome::Dropped(DropReason::Malformed);
                };
                let mut ticket = [0u8; MAX_TICKET_LEN];
                let ticket_len = match c.key_mode {
                    _ if c.ticket.is_empty() => Ok(0),
                    KeyMode::Unpinned => Err(crypto::OpenError),
                    KeyMode::Pinned => {
                        let sealed = &mut ticket[..c.ticket.len()];
                        sealed.copy_from_slice(c.ticket);
                        let aad = crypto::ticket_aad(
                            c.version,
                            c.key_mode,
                            &c.client_public,
                            &c.client_nonce,
                        );
                        crypto::open_ticket(&es, &c.client_nonce, &aad, sealed)
                    }
                };
                let Ok(ticket_len) = ticket_len else {
                    self.config.admission.release(from.ip());
                    self.stats.tickets_rejected += 1;
                    self.remember_rejected(cookie.connection_id, now);
                    return self.deny(from, cookie.connection_id, DenyReason::TicketRejected);
                };
                let mut seed = [0u8; 32];
                self.rng.fill_bytes(&mut seed);
                let pending = PendingState {
                    client_public: c.client_public,
                    client_nonce: c.client_nonce,
                    key_mode: c.key_mode,
                    es,
                    deadline: now + self.config.transport.handshake_timeout,
                };
                let mut conn = Connection::new_server_pending(
                    Arc::clone(&self.config.transport),
                    pending,
                    cookie.connection_id,
                    from,
                    seed,
                    self.config.integrity.clone(),
                    now,
                );
                conn.admitted_ip = Some(from.ip());
                let handle = self.insert(conn, &ticket[..ticket_len], true);
                return DatagramOutcome::Connection(handle);
            }
            Ok(Datagram::Handshake(..)) => {
                self.stats.unexpected_handshakes += 1;
                return DatagramOutcome::Dropped(DropReason::UnexpectedHandshake);
            }
            Ok(Datagram::Sealed { header, .. }) => header,
            Err(_) => {
                self.stats.malformed += 1;
                return DatagramOutcome::Dropped(DropReason::Malformed);
            }
        };
        let Some(&index) = self.by_id.get(&header.connection_id) else {
            if let Some(&(core, until)) = self.forwards.get(&header.connection_id) {
                if now < until {
                    self.stats.wrong_core += 1;
                    return DatagramOutcome::WrongCore(core);
                }
            }
            if header.connection_id as u8 != self.config.core_id {
                self.stats.wrong_core += 1;
                return DatagramOutcome::WrongCore(header.connection_id as u8);
            }
            self.stats.unknown_connection += 1;
            return DatagramOutcome::Dropped(DropReason::UnknownConnection);
        };
        let handle = self.handle_of(index);
        if let Some(conn) = self.slots[index as usize].connection.as_mut() {
            let before = conn.stats();
            conn.handle_datagram(now, from, datagram);
            let after = conn.stats();
            // Folded into the endpoint's totals as they happen, so the
            // totals never go down when a connection closes.
            self.stats.auth_failures += after.auth_failures - before.auth_failures;
            self.stats.replays += after.replays - before.replays;
            if conn.has_events() || conn.is_closed() {
                self.dirty.push_back(index);
            }
        }
        DatagramOutcome::Connection(handle)
    }

    /// Takes one handshake token of `ip`'s bucket; false if it is empty or
    /// no bucket can be kept for it.
    fn take_handshake_token(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.config.handshake_rate;
        if rate == 0 || self.config.admission.is_exempt(ip) {
            return true;
        }
        let burst = self.config.handshake_burst.max(1) as f32;
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_BUCKETS {
            self.sweep_buckets(now);
            if self.buckets.len() >= MAX_BUCKETS {
                return false;
            }
        }
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f32();
        bucket.tokens = (bucket.tokens + elapsed * rate as f32).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets the buckets that have refilled (their addresses are idle).
    fn sweep_buckets(&mut self, now: Instant) {
        let rate = self.config.handshake_rate as f32;
        let burst = self.config.handshake_burst.max(1) as f32;
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.last).as_secs_f32() * rate < burst
        });
    }

    /// Source addresses with a handshake bucket (bounded by [`MAX_BUCKETS`]).
    pub fn handshake_buckets(&self) -> usize {
        self.buckets.len()
    }

    fn remember_rejected(&mut self, id: u32, now: Instant) {
        if self.rejected_order.len() >= MAX_REJECTED {
            if let Some((old, _)) = self.rejected_order.pop_front() {
                self.rejected.remove(&old);
            }
        }
        let until = now + self.config.cookie_ttl;
        self.rejected.insert(id, until);
        self.rejected_order.push_back((id, until));
    }

    fn handle_of(&self, index: u32) -> ConnectionHandle {
        ConnectionHandle {
            index,
            generation: self.slots[index as usize].generation,
        }
    }

    fn insert(
        &mut self,
        conn: Connection,
        ticket: &[u8],
        report_incoming: bool,
    ) -> ConnectionHandle {
        let id = conn.connection_id();
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    connection: None,
                    ticket: Vec::new(),
                    incoming_reported: false,
                    pending: false,
                    alias: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.connection = Some(conn);
        slot.ticket.clear();
        slot.ticket.extend_from_slice(ticket);
        slot.incoming_reported = !report_incoming;
        slot.pending = report_incoming;
        slot.alias = None;
        if report_incoming {
            self.pending += 1;
        }
        self.by_id.insert(id, index);
        self.live += 1;
        self.dirty.push_back(index);
        ConnectionHandle {
            index,
            generation: slot.generation,
        }
    }

    /// Accepts a pending connection: ConnectionAccepted goes out.
    pub fn accept(&mut self, handle: ConnectionHandle, now: Instant) -> bool {
        let params = AcceptedParams {
            heartbeat_interval_ms: self.config.transport.heartbeat_interval.as_millis() as u32,
            heartbeat_timeout_ms: self.config.transport.idle_timeout.as_millis() as u32,
            tick_hz: self.config.tick_hz,
            mtu: self.config.transport.mtu as u16,
            max_message_bytes: self.config.transport.max_message_bytes as u32,
        };
        let Some(slot) = self.slots.get_mut(handle.index()) else {
            return false;
        };
        if slot.generation != handle.generation {
            return false;
        }
        if !slot.pending {
            return false;
        }
        let Some(conn) = slot.connection.as_mut() else {
            return false;
        };
        let ok = conn.accept(&self.static_key, params, now);
        slot.pending = false;
        self.pending -= 1;
        if ok {
            self.stats.accepted += 1;
        }
        self.dirty.push_back(handle.index);
        ok
    }

    /// Refuses a pending connection: ConnectionDenied goes out and the
    /// connection is removed.
    pub fn refuse(&mut self, handle: ConnectionHandle, reason: DenyReason) {
        let Some(slot) = self.slots.get(handle.index()) else {
            return;
        };
        if slot.generation != handle.generation {
            return;
        }
        let Some(conn) = slot.connection.as_ref() else {
            return;
        };
        let (to, id) = (conn.remote_address(), conn.connection_id());
        self.stats.refused += 1;
        self.deny(to, id, reason);
        self.remove(handle.index);
    }

    fn remove(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        let Some(conn) = slot.connection.take() else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1);
        if slot.pending {
            slot.pending = false;
            self.pending -= 1;
        }
        let alias = slot.alias.take();
        self.unmap(index, &conn, alias);
        self.free.push(index);
        self.live -= 1;
        if let Some(ip) = conn.admitted_ip {
            self.config.admission.release(ip);
        }
    }

    /// Forgets every id routing to slot `index`: the connection's current
    /// and pending ids and its migration alias (each only if it still
    /// routes here). O(1), not a scan of the id map.
    fn unmap(&mut self, index: u32, conn: &Connection, alias: Option<u32>) {
        for id in [
            Some(conn.connection_id()),
            conn.pending_connection_id(),
            alias,
        ]
        .into_iter()
        .flatten()
        {
            if self.by_id.get(&id) == Some(&index) {
                self.by_id.remove(&id);
            }
        }
    }

    /// Moves a connection out of this endpoint to `target_core`, which
    /// inserts it with [`Endpoint::insert_migrated`]. Datagrams that still
    /// carry its id are reported as [`DatagramOutcome::WrongCore`] for the
    /// migration grace period so the engine forwards them.
    pub fn take_connection(
        &mut self,
        handle: ConnectionHandle,
        target_core: u8,
        now: Instant,
    ) -> Option<Connection> {
        let slot = self.slots.get_mut(handle.index())?;
        if slot.generation != handle.generation || slot.connection.is_none() {
            return None;
        }
        let conn = slot.connection.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        if slot.pending {
            slot.pending = false;
            self.pending -= 1;
        }
        let index = handle.index;
        let alias = slot.alias.take();
        self.unmap(index, &conn, alias);
        self.free.push(index);
        self.live -= 1;
        let until = now + self.config.migration_grace;
        self.forwards
            .insert(conn.connection_id(), (target_core, until));
        if let Some(p) = conn.pending_connection_id() {
            self.forwards.insert(p, (target_core, until));
        }
        Some(conn)
    }

    /// Takes in a connection moved from another core: it gets an id of this
    /// core, and the client is told. Its old id keeps routing here during
    /// the grace period.
    pub fn insert_migrated(&mut self, mut conn: Connection, now: Instant) -> ConnectionHandle {
        let new_id = self.allocate_id();
        let old_id = conn.connection_id();
        conn.migrate_to(new_id);
        let handle = self.insert(conn, &[], false);
        self.by_id.insert(new_id, handle.index);
        self.slots[handle.index()].alias = Some(old_id);
        self.aliases
            .push_back((old_id, now + self.config.migration_grace));
        handle
    }

    /// Runs every connection's due timers, and expires old aliases.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(id, until)) = self.aliases.front() {
            if now < until {
                break;
            }
            self.aliases.pop_front();
            // Keep the id only if it is still some connection's current id.
            if let Some(&index) = self.by_id.get(&id) {
                let current = self.slots[index as usize]
                    .connection
                    .as_ref()
                    .map(Connection::connection_id);
                if current != Some(id) {
                    self.by_id.remove(&id);
                }
                let slot = &mut self.slots[index as usize];
                if slot.alias == Some(id) {
                    slot.alias = None;
                }
            }
        }
        self.forwards.retain(|_, (_, until)| now < *until);
        if self.next_bucket_sweep.is_none_or(|t| now >= t) {
            self.sweep_buckets(now);
            self.next_bucket_sweep = Some(now + Duration::from_secs(1));
        }
        while let Some(&(id, until)) = self.rejected_order.front() {
            if now < until {
                break;
            }
            self.rejected_order.pop_front();
            if self.rejected.get(&id) == Some(&until) {
                self.rejected.remove(&id);
            }
        }
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(conn) = slot.connection.as_mut() else {
                continue;
            };
            if conn.next_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
                if conn.has_events() || conn.is_closed() {
                    self.dirty.push_back(index as u32);
                }
            }
        }
    }

    /// The earliest timer of any connection (a scan; engines that tick at a
    /// fixed rate can call [`Endpoint::handle_timeout`] every tick instead).
    pub fn next_timeout(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.connection.as_ref()?.next_timeout())
            .min()
    }

    /// The next datagram to send: stateless replies first, then each
    /// connection's, round robin.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(reply) = self.replies.pop_front() {
            let n = reply.len.min(buf.len());
            buf[..n].copy_from_slice(&reply.bytes[..n]);
            return Some(Transmit {
                destination: reply.to,
                size: n,
            });
        }
        let total = self.slots.len();
        if total == 0 {
            return None;
        }
        let mut left = self.transmit_left.unwrap_or(total);
        while left > 0 {
            let index = self.transmit_cursor % total;
            if let Some(conn) = self.slots[index].connection.as_mut() {
                if let Some(t) = conn.poll_transmit(now, buf) {
                    self.transmit_left = Some(left);
                    if conn.has_events() || conn.is_closed() {
                        self.dirty.push_back(index as u32);
                    }
                    return Some(t);
                }
            }
            self.transmit_cursor = (index + 1) % total;
            left -= 1;
        }
        self.transmit_left = None;
        None
    }

    /// The next event: a new connection attempt, a connection's event, or
    /// a removal.
    pub fn poll_event(&mut self) -> Option<EndpointEvent<'_>> {
        let (index, incoming) = loop {
            let &index = self.dirty.front()?;
            let Some(slot) = self.slots.get(index as usize) else {
                self.dirty.pop_front();
                continue;
            };
            let Some(conn) = slot.connection.as_ref() else {
                self.dirty.pop_front();
                continue;
            };
            if !slot.incoming_reported {
                break (index, true);
            }
            if conn.has_events() {
                break (index, false);
            }
            let closed = conn.is_closed();
            self.dirty.pop_front();
            if closed {
                let handle = self.handle_of(index);
                self.remove(index);
                return Some(EndpointEvent::Removed { handle });
            }
        };
        let handle = self.handle_of(index);
        let slot = &mut self.slots[index as usize];
        if incoming {
            slot.incoming_reported = true;
            let address = slot.connection.as_ref().map(Connection::remote_address)?;
            return Some(EndpointEvent::Incoming {
                handle,
                ticket: &slot.ticket,
                address,
            });
        }
        let event = slot.connection.as_mut()?.poll_event()?;
        Some(EndpointEvent::Connection { handle, event })
    }
}
