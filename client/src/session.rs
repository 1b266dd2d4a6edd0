//! The sans-IO client session: one connection to a world server, from the
//! handshake with the pinned key through login and character selection to
//! the world — movement claims, actions, snapshots turned into entity
//! events — on the caller's clock and socket, in the style of the protocol
//! crate's [`Connection`]: feed datagrams and timeouts in with
//! `handle_*`, take datagrams and events out with `poll_*`.
//!
//! It composes the pieces of this crate: [`LoginFlow`] (the account and
//! character states, each a type), [`SnapshotReceiver`] and [`WorldView`]
//! (snapshots to entity events), [`ServerClock`], [`Interpolator`] and
//! [`Prediction`] (render time and reconciliation).
//!
//! Channels (PROTOCOL.md §6.5): login, character and EnterToWorld messages
//! and Actions travel ReliableOrdered (channel 1); movement claims
//! Unreliable (channel 0), since a newer claim supersedes a lost one.
//!
//! Zone transfer (PROTOCOL.md §6.6, ZoneTransfer): when the character walks
//! onto ground another node of the cluster owns, the server names that
//! node's address, key and a one-time ticket. The session closes the old
//! connection itself (a clean Disconnect, nothing reported), opens one to
//! the new node pinning its key with the ticket in the Connect, and waits
//! for that node's WorldEntered; the world view starts over there (old
//! entities are reported removed, baselines, prediction and the server
//! clock begin anew). While the new connection is not in the world yet,
//! claims and requests are refused with [`SessionError::Transferring`]:
//! nothing is queued, and since a claim supersedes every earlier one the
//! caller loses no movement by sending its current state once the session
//! is back ([`SessionEvent::ZoneTransferred`], or as soon as sends succeed
//! again). A reliable request made in the gap must be made again.
//! [`Session::poll_transmit`] gives each datagram's destination, which
//! changes with the transfer; datagrams from the old node's address go to
//! the old connection until its Disconnect is done.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tos_protocol::connection::{
    ClientConfig, Connection, Event, SendError, ServerKey, Transmit, TransportConfig,
};
use tos_protocol::integrity::IntegrityTable;
use tos_protocol::wire::control::{DenyReason, DisconnectReason};
use tos_protocol::wire::game::{
    CharacterStats, ChatChannel, ClientMessage, EquipSlot, MAX_CHAT_LEN, MAX_NAME_LEN,
    MAX_TRANSFER_TICKET_LEN, MovementClaim, RefusalReason, ServerMessage,
};
use tos_protocol::wire::{Channel, Writer};

use crate::flow::{Entered, FlowEvent, LoginFlow, LoginSpec};
use crate::gameplay::{ChatLine, EntityDetails, Gameplay, InventoryView};
use crate::interp::{Interpolator, PredictedInput, Prediction, ServerClock};
use crate::snapshot::{EntityEvent, SnapshotReceiver, WorldView};

/// How much a session does with each snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotHandling {
    /// Apply it, and report entity events and keep interpolation buffers:
    /// what a game needs.
    #[default]
    Events,
    /// Apply it to the receiver only (the world as quantized states, the
    /// input ack): a headless client such as a load generator's player.
    Apply,
    /// Only check that every record decodes, keep no world: the lightest
    /// client.
    DecodeOnly,
}

/// What a session needs to start.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The server's static X25519 public key (the server logs it at start:
    /// "server static public key (clients pin this)"). Always pinned: a
    /// client that trusts any key can be sent anywhere.
    pub server_key: [u8; 32],
    /// Account, password and the character to create if there is none.
    pub login: LoginSpec,
    /// A session ticket from an earlier login (empty: log in with the
    /// password). With a ticket the server starts the session logged in.
    pub ticket: Vec<u8>,
    /// This client build's integrity table, when the server checks
    /// integrity (`security.integrity_check`, on by default).
    pub integrity: Option<Arc<IntegrityTable>>,
    /// Transport settings (the defaults match the server's; shared by the
    /// sessions of a process that runs many).
    pub transport: Arc<TransportConfig>,
    /// Seed of the connection's keys and nonces; `None` draws one from the
    /// operating system (tests pass fixed seeds).
    pub seed: Option<[u8; 32]>,
    /// The server's tick rate (`runtime.tick_hz`), for the server clock.
    pub tick_hz: f64,
    /// What is done with snapshots.
    pub snapshots: SnapshotHandling,
    /// The player chooses the character: the session stops at the list
    /// ([`SessionEvent::Characters`]) until [`Session::enter_character`] or
    /// [`Session::create_character`]. Otherwise it enters the first live
    /// character, creating one from the login spec if there is none.
    pub choose_character: bool,
    /// How long a zone transfer may take, from the ZoneTransfer to the new
    /// node's first snapshot, before it counts as failed
    /// ([`TransferFailure::TimedOut`]). The default,
    /// [`DEFAULT_TRANSFER_TIMEOUT`], is the server's ticket lifetime
    /// (`cluster.transfer_timeout_ms`).
    pub transfer_timeout: Duration,
}

/// How long a zone transfer may take by default: the lifetime of the
/// server's transfer ticket (PROTOCOL.md §6.6, 10 s).
pub const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

impl SessionConfig {
    /// A config with default transport settings, no ticket, no integrity
    /// table, an OS seed and a 60 Hz server.
    pub fn new(server_key: [u8; 32], login: LoginSpec) -> Self {
        Self {
            server_key,
            login,
            ticket: Vec::new(),
            integrity: None,
            transport: Arc::new(TransportConfig::default()),
            seed: None,
            tick_hz: 60.0,
            snapshots: SnapshotHandling::Events,
            choose_character: false,
            transfer_timeout: DEFAULT_TRANSFER_TIMEOUT,
        }
    }
}

/// Why a session call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// The connection is closing or closed.
    Closed,
    /// Not in the world yet (claims and actions need a character).
    NotInWorld,
    /// Not at the character list (entering or creating needs it).
    NotSelecting,
    /// An argument the protocol cannot carry.
    Invalid(&'static str),
    /// The transport refused the message.
    Send(SendError),
    /// The operating system had no randomness for the seed.
    NoRandomness,
    /// A zone transfer is under way: the new node has not put the
    /// character in the world yet. Nothing was sent or queued; claims are
    /// superseding, so send the current state again once the session is
    /// back (PROTOCOL.md §6.6); make a reliable request again.
    Transferring,
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Closed => f.write_str("the session is closed"),
            Self::NotInWorld => f.write_str("not in the world yet"),
            Self::NotSelecting => f.write_str("not at the character list"),
            Self::Invalid(what) => f.write_str(what),
            Self::Send(e) => write!(f, "cannot send: {e}"),
            Self::NoRandomness => f.write_str("no randomness from the operating system"),
            Self::Transferring => f.write_str("a zone transfer is under way"),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<SendError> for SessionError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Closed => Self::Closed,
            other => Self::Send(other),
        }
    }
}

/// Why a zone transfer failed. The session has then ended; the server
/// saves the character where it crossed, and the player logs in again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferFailure {
    /// The ZoneTransfer's address is not an IP address and port (the
    /// session does no name lookups: it is sans-IO).
    BadAddress,
    /// The new node refused the connection (`TicketRejected`: the ticket
    /// was used, expired or unknown there).
    Denied(DenyReason),
    /// The new connection ended before the character was in the world
    /// there (a handshake timeout when the node does not answer).
    Disconnected(DisconnectReason),
    /// The new node refused the character.
    Refused(RefusalReason),
    /// No WorldEntered and snapshot from the new node within
    /// [`SessionConfig::transfer_timeout`].
    TimedOut,
}

impl TransferFailure {
    /// A number for the C ABI and logs: 1 bad address, 2 denied,
    /// 3 disconnected, 4 refused, 5 timed out.
    pub fn code(self) -> u32 {
        match self {
            Self::BadAddress => 1,
            Self::Denied(_) => 2,
            Self::Disconnected(_) => 3,
            Self::Refused(_) => 4,
            Self::TimedOut => 5,
        }
    }

    /// The deny, disconnect or refusal reason's own code (0 for the
    /// others).
    pub fn reason_code(self) -> u32 {
        match self {
            Self::Denied(r) => r as u32,
            Self::Disconnected(r) => r as u32,
            Self::Refused(r) => r as u32,
            Self::BadAddress | Self::TimedOut => 0,
        }
    }
}

/// What the game should know, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SessionEvent {
    /// The handshake completed (the server proved it holds the pinned key).
    Connected,
    /// Logged in; [`Session::ticket`] holds the session ticket.
    Authenticated {
        /// The account id.
        account_id: u64,
        /// When the ticket expires, unix seconds.
        expires_at: u64,
    },
    /// The account's characters are listed ([`Session::characters`]); the
    /// session waits for a choice (only with `choose_character`).
    Characters {
        /// How many.
        count: u32,
    },
    /// A character was created (the account had none, or the player
    /// asked for one).
    CharacterCreated {
        /// Its id.
        character_id: u64,
    },
    /// The character is in the world.
    EnteredWorld(Entered),
    /// An entity came into view, changed or left.
    Entity(EntityEvent),
    /// A snapshot was applied (after the entity events it caused).
    Snapshot {
        /// Its server tick.
        tick: u32,
        /// The newest claim of this client the server applied (this
        /// snapshot's; with a late snapshot, older than the newest).
        input_ack: u32,
        /// It arrived after a newer one (its records still applied).
        late: bool,
        /// Records in it.
        records: u32,
        /// Bytes of the DeltaSync message.
        bytes: u32,
        /// Update records skipped for want of their baseline.
        missing_baselines: u32,
    },
    /// The server rejected a claim: the character is at `position`; the
    /// predicted position after replaying later claims is `predicted`.
    Correction {
        /// The rejected claim's sequence.
        input_seq: u32,
        /// The authoritative position.
        position: [f32; 3],
        /// The authoritative velocity.
        velocity: [f32; 3],
        /// `position` plus the claims sent after the rejected one.
        predicted: [f32; 3],
    },
    /// The outcome of an action.
    ActionResult {
        /// The action's sequence.
        input_seq: u32,
        /// 0 done, otherwise a refusal code (PROTOCOL.md §6.3).
        result: u8,
    },
    /// The inventory or equipment changed ([`Session::inventory`]); sent
    /// at entry and after every pick-up, use, equip or unequip.
    InventoryChanged {
        /// Occupied slots.
        items: u32,
    },
    /// The character's level, experience or statistics changed
    /// ([`Session::character_stats`]).
    StatsChanged {
        /// Why (`stats_cause`: entered, experience, level-up, equipment).
        cause: u8,
        /// The level now.
        level: u16,
        /// The level rose since the previous statistics.
        leveled_up: bool,
    },
    /// A hit, miss, heal or kill this character is part of (the source or
    /// the target). Observers see the rest through snapshots (HP fraction,
    /// casting, dead).
    Combat {
        /// Who acted (network id).
        source: u32,
        /// Whom it hit.
        target: u32,
        /// Which skill (action id).
        skill: u16,
        /// Damage, or healing with the HEAL flag.
        amount: f32,
        /// `combat_flags` bits (HIT, MISS, CRIT, HEAL, KILL, ...).
        flags: u8,
    },
    /// The server said what an entity is ([`Session::entity_details`]).
    Inspected {
        /// The entity.
        entity: u32,
    },
    /// A chat line arrived; [`Session::poll_chat`] returns it.
    Chat {
        /// Its channel.
        channel: ChatChannel,
    },
    /// The server refused a request (after login: the session goes on).
    Refused {
        /// The client message type refused.
        request: u8,
        /// Why.
        reason: RefusalReason,
    },
    /// Login, character creation or entering failed for good.
    LoginFailed {
        /// The client message type refused.
        request: u8,
        /// Why.
        reason: RefusalReason,
    },
    /// The server refused the connection.
    Denied {
        /// Why.
        reason: DenyReason,
    },
    /// The connection ended.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// Whether the server ended it.
        by_peer: bool,
    },
    /// The server moved the character to another node (ZoneTransfer): the
    /// old connection is closed, a new one to `to` is opening. Claims and
    /// requests fail with [`SessionError::Transferring`] until the new
    /// node has the character in the world.
    ZoneTransferStarted {
        /// The old node's address.
        from: SocketAddr,
        /// The new node's address.
        to: SocketAddr,
    },
    /// The character is in the world on the new node, which sent its
    /// first snapshot. Every entity of the old node was reported removed
    /// before the new node's entities (which follow this event, unless the
    /// first snapshot overtook WorldEntered); `entered` names the player's
    /// new entity (ids change between nodes).
    ZoneTransferred {
        /// Where the character stands on the new node, its new entity.
        entered: Entered,
        /// The old node's address.
        from: SocketAddr,
        /// The new node's address.
        to: SocketAddr,
        /// The transfer gap: from the last snapshot received from the old
        /// node (or the ZoneTransfer, if none came) to the first from the
        /// new one.
        gap: Duration,
    },
    /// A zone transfer failed; the session has ended (no Disconnected
    /// follows). The server saves the character where it crossed: log in
    /// again.
    ZoneTransferFailed {
        /// The address the session was sent to (unspecified when it did
        /// not parse).
        to: SocketAddr,
        /// Why.
        failure: TransferFailure,
    },
}

/// Counters of a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Snapshots applied.
    pub snapshots: u64,
    /// Snapshots that did not apply (malformed).
    pub bad_snapshots: u64,
    /// Messages that did not decode.
    pub bad_messages: u64,
    /// Corrections received.
    pub corrections: u64,
    /// Zone transfers completed (the new node's first snapshot arrived).
    pub zone_transfers: u64,
    /// Zone transfers that failed.
    pub transfer_failures: u64,
    /// The gap of the last completed transfer
    /// ([`SessionEvent::ZoneTransferred`]'s `gap`).
    pub last_transfer_gap: Option<Duration>,
}

/// A ZoneTransfer as it arrived, copied out of the message (which borrows
/// the connection being replaced).
#[derive(Debug, Clone, Copy)]
struct TransferOrder {
    /// `None`: the address is not an IP address and port.
    address: Option<SocketAddr>,
    static_key: [u8; 32],
    ticket: [u8; MAX_TRANSFER_TICKET_LEN],
    ticket_len: usize,
}

/// A zone transfer under way.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    from: SocketAddr,
    to: SocketAddr,
    /// Where the gap counts from: the old node's last snapshot.
    last_snapshot: Instant,
    /// The old node's newest snapshot tick (old entities are removed
    /// after it).
    old_tick: u32,
    deadline: Instant,
    /// The new node's WorldEntered.
    entered: Option<Entered>,
    /// When the new node's first snapshot arrived.
    first_snapshot: Option<Instant>,
    /// Sent away while entering (a login on another node's ground): the
    /// completion is also the character's EnteredWorld.
    at_login: bool,
}

/// Events buffered at most; beyond it the oldest entity updates are
/// dropped rather than memory growing without bound when a caller stops
/// polling (state events are never dropped).
const MAX_EVENTS: usize = 8192;

fn push_event(events: &mut VecDeque<SessionEvent>, e: SessionEvent) {
    if events.len() >= MAX_EVENTS {
        if let Some(k) = events
            .iter()
            .position(|e| matches!(e, SessionEvent::Entity(EntityEvent::Updated(_))))
        {
            events.remove(k);
        }
    }
    events.push_back(e);
}

/// One client's session with a world server.
#[derive(Debug)]
pub struct Session {
    conn: Connection,
    /// The previous node's connection after a zone transfer, until its
    /// Disconnect is done; its events are not reported.
    closing: Option<Connection>,
    transfer: Option<Transfer>,
    order: Option<TransferOrder>,
    failure: Option<TransferFailure>,
    last_snapshot_at: Option<Instant>,
    transport: Arc<TransportConfig>,
    integrity: Option<Arc<IntegrityTable>>,
    /// The configured seed (tests): transfer connections derive theirs
    /// from it; `None` draws each from the operating system.
    seed: Option<[u8; 32]>,
    /// Connections opened after the first (each transfer's), numbering
    /// their seeds.
    reconnects: u64,
    transfer_timeout: Duration,
    flow: LoginFlow,
    receiver: SnapshotReceiver,
    view: WorldView,
    clock: ServerClock,
    interp: Interpolator,
    prediction: Prediction,
    events: VecDeque<SessionEvent>,
    entered: Option<Entered>,
    ticket: Vec<u8>,
    input_seq: u32,
    ended: bool,
    stats: SessionStats,
    handling: SnapshotHandling,
    gameplay: Gameplay,
}

impl Session {
    /// Starts connecting to `server`; the first [`Session::poll_transmit`]
    /// yields the Connect.
    pub fn connect(
        config: SessionConfig,
        server: SocketAddr,
        now: Instant,
    ) -> Result<Self, SessionError> {
        let seed = connection_seed(config.seed, 0)?;
        let mut login = config.login;
        login.ticketed = !config.ticket.is_empty();
        let conn = Connection::connect(
            ClientConfig {
                transport: Arc::clone(&config.transport),
                server_key: ServerKey::Pinned(config.server_key),
                ticket: config.ticket,
                integrity: config.integrity.clone(),
                seed,
            },
            server,
            now,
        )?;
        Ok(Self {
            conn,
            closing: None,
            transfer: None,
            order: None,
            failure: None,
            last_snapshot_at: None,
            transport: config.transport,
            integrity: config.integrity,
            seed: config.seed,
            reconnects: 0,
            transfer_timeout: config.transfer_timeout,
            flow: if config.choose_character {
                LoginFlow::with_selection(login)
            } else {
                LoginFlow::new(login)
            },
            receiver: SnapshotReceiver::new(),
            view: WorldView::new(),
            clock: ServerClock::new(config.tick_hz),
            interp: Interpolator::new(),
            prediction: Prediction::new(),
            events: VecDeque::with_capacity(256),
            entered: None,
            ticket: Vec::new(),
            input_seq: 0,
            ended: false,
            stats: SessionStats::default(),
            handling: config.snapshots,
            gameplay: Gameplay::default(),
        })
    }

    /// A datagram from the network (from any address: after a zone
    /// transfer the old node's go to the old connection while it closes).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        let to_old = self
            .closing
            .as_ref()
            .is_some_and(|old| from == old.remote_address() && from != self.conn.remote_address());
        if to_old {
            if let Some(old) = self.closing.as_mut() {
                old.handle_datagram(now, from, datagram);
            }
            self.drain_closing();
            return;
        }
        self.conn.handle_datagram(now, from, datagram);
        self.process(now);
    }

    /// The moment [`Session::handle_timeout`] is due.
    pub fn next_timeout(&self) -> Option<Instant> {
        let mut next = self.conn.next_timeout();
        let mut earliest = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        earliest(self.closing.as_ref().and_then(Connection::next_timeout));
        earliest(self.transfer.map(|t| t.deadline));
        next
    }

    /// Timers: retransmissions, heartbeats, the handshake and idle
    /// timeouts, a zone transfer's deadline. Calling it early does no
    /// harm.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.conn.next_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
        if let Some(old) = self.closing.as_mut() {
            if old.next_timeout().is_some_and(|t| t <= now) {
                old.handle_timeout(now);
            }
        }
        self.drain_closing();
        self.process(now);
        if self.transfer.is_some_and(|t| t.deadline <= now) {
            self.fail_transfer(TransferFailure::TimedOut, now);
        }
    }

    /// The next datagram to send, written at the start of `buf` (at least
    /// the MTU, 1,200 bytes), and where to send it (the node the session
    /// talks to now, or the old node's Disconnect after a zone transfer).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(old) = self.closing.as_mut() {
            if let Some(t) = old.poll_transmit(now, buf) {
                return Some(t);
            }
        }
        self.conn.poll_transmit(now, buf)
    }

    /// Discards the old connection's events (its Disconnect is the
    /// session's own doing, not news) and forgets it once closed.
    fn drain_closing(&mut self) {
        if let Some(old) = self.closing.as_mut() {
            while old.poll_event().is_some() {}
            if old.is_closed() {
                self.closing = None;
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn push(&mut self, e: SessionEvent) {
        push_event(&mut self.events, e);
    }

    fn process(&mut self, now: Instant) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Connected => {
                    // A transfer's connection is not news: the transfer's
                    // own events say how it went.
                    if self.transfer.is_none() {
                        self.push(SessionEvent::Connected);
                    }
                    self.flow.on_connected();
                }
                Event::Message { data, .. } => {
                    // `data` borrows the connection; the handlers touch
                    // every other field but not `conn`.
                    let mut parts = Parts {
                        flow: &mut self.flow,
                        receiver: &mut self.receiver,
                        view: &mut self.view,
                        clock: &mut self.clock,
                        interp: &mut self.interp,
                        prediction: &mut self.prediction,
                        events: &mut self.events,
                        entered: &mut self.entered,
                        ticket: &mut self.ticket,
                        stats: &mut self.stats,
                        handling: self.handling,
                        gameplay: &mut self.gameplay,
                        transfer: &mut self.transfer,
                        order: &mut self.order,
                        failure: &mut self.failure,
                        last_snapshot_at: &mut self.last_snapshot_at,
                    };
                    parts.on_message(data, now);
                    if self.order.is_some() || self.failure.is_some() {
                        // The rest of this connection's events belong to a
                        // node the session is leaving.
                        break;
                    }
                }
                Event::Denied { reason } if self.transfer.is_some() => {
                    self.failure = Some(TransferFailure::Denied(reason));
                    break;
                }
                Event::Disconnected { reason, .. } if self.transfer.is_some() => {
                    self.failure = Some(TransferFailure::Disconnected(reason));
                    break;
                }
                Event::Denied { reason } => {
                    self.ended = true;
                    self.push(SessionEvent::Denied { reason });
                }
                Event::Disconnected { reason, by_peer } => {
                    self.ended = true;
                    self.push(SessionEvent::Disconnected { reason, by_peer });
                }
                _ => {}
            }
        }
        if let Some(failure) = self.failure.take() {
            self.fail_transfer(failure, now);
            return;
        }
        if let Some(order) = self.order.take() {
            self.start_transfer(order, now);
        }
        self.flush_flow();
    }

    /// Leaves this node for the one a ZoneTransfer named: closes the old
    /// connection (a clean Disconnect, sent by [`Session::poll_transmit`]),
    /// opens the new one with the ticket, and starts the world over.
    fn start_transfer(&mut self, order: TransferOrder, now: Instant) {
        let from = self.conn.remote_address();
        let Some(to) = order.address else {
            self.fail_transfer(TransferFailure::BadAddress, now);
            return;
        };
        self.reconnects += 1;
        let conn = connection_seed(self.seed, self.reconnects).and_then(|seed| {
            Connection::connect(
                ClientConfig {
                    transport: Arc::clone(&self.transport),
                    server_key: ServerKey::Pinned(order.static_key),
                    ticket: order.ticket[..order.ticket_len].to_vec(),
                    integrity: self.integrity.clone(),
                    seed,
                },
                to,
                now,
            )
            .map_err(SessionError::from)
        });
        let conn = match conn {
            Ok(c) => c,
            Err(_) => {
                self.fail_transfer(
                    TransferFailure::Disconnected(DisconnectReason::Graceful),
                    now,
                );
                return;
            }
        };
        let at_login = self.flow.entering();
        let mut old = std::mem::replace(&mut self.conn, conn);
        old.close(now, DisconnectReason::Graceful);
        // At most one old connection closes at a time: one a transfer
        // before this left is dropped (its Disconnect was sent).
        self.closing = Some(old);
        self.drain_closing();
        self.flow.transfer();
        // A transfer chained before the previous one completed keeps the
        // gap counting from the first node's last snapshot.
        let (last_snapshot, old_tick) = match self.transfer {
            Some(t) => (t.last_snapshot, t.old_tick),
            None => (
                self.last_snapshot_at.unwrap_or(now),
                self.receiver.newest_tick().unwrap_or(0),
            ),
        };
        self.transfer = Some(Transfer {
            from,
            to,
            last_snapshot,
            old_tick,
            deadline: now + self.transfer_timeout,
            entered: None,
            first_snapshot: None,
            at_login,
        });
        // The new node's baselines, acks and ticks have nothing to do with
        // the old one's; unacknowledged claims will never be acknowledged.
        self.receiver = SnapshotReceiver::new();
        self.prediction = Prediction::new();
        self.push(SessionEvent::ZoneTransferStarted { from, to });
    }

    /// A transfer failed: the session ends with one event saying why.
    fn fail_transfer(&mut self, failure: TransferFailure, now: Instant) {
        let to = self
            .transfer
            .take()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |t| t.to);
        self.stats.transfer_failures += 1;
        self.ended = true;
        self.conn.close(now, DisconnectReason::Graceful);
        // Closing reports a Disconnected of our own: not news.
        while self.conn.poll_event().is_some() {}
        self.push(SessionEvent::ZoneTransferFailed { to, failure });
    }

    /// Sends what the login flow queued (reliable ordered, like every
    /// account and character message).
    fn flush_flow(&mut self) {
        let mut buf = [0u8; 512];
        while let Some(n) = self.flow.poll_send(&mut buf) {
            let _ = self.conn.send(Channel::ReliableOrdered, &buf[..n]);
        }
    }

    /// The characters to choose from (with `choose_character`, after
    /// [`SessionEvent::Characters`]; empty otherwise).
    pub fn characters(&self) -> &[crate::flow::CharacterInfo] {
        self.flow.characters()
    }

    /// Enters the world with one of [`Session::characters`].
    pub fn enter_character(&mut self, character_id: u64) -> Result<(), SessionError> {
        if self.ended {
            return Err(SessionError::Closed);
        }
        if !self.flow.enter(character_id) {
            return Err(SessionError::NotSelecting);
        }
        self.flush_flow();
        Ok(())
    }

    /// Creates a character; the list comes again
    /// ([`SessionEvent::Characters`]) once it exists.
    pub fn create_character(
        &mut self,
        name: &str,
        template: u16,
        appearance: &[u8],
    ) -> Result<(), SessionError> {
        if self.ended {
            return Err(SessionError::Closed);
        }
        if name.is_empty()
            || name.len() > tos_protocol::wire::game::MAX_NAME_LEN
            || appearance.len() > tos_protocol::wire::game::MAX_APPEARANCE_LEN
        {
            return Err(SessionError::Invalid(
                "a character name is 1 to 32 bytes, an appearance at most 32",
            ));
        }
        if !self.flow.create(name, template, appearance) {
            return Err(SessionError::NotSelecting);
        }
        self.flush_flow();
        Ok(())
    }

    /// Claims a move (Unreliable, channel 0): the character is at
    /// `position` moving at `velocity` (units per second), facing `yaw`
    /// degrees, playing animation `anim` (0 idle, 1 walk); `dt` is the time
    /// the move covered, kept for reconciliation. Returns its input
    /// sequence, which snapshots acknowledge (`input_ack`).
    pub fn send_move(
        &mut self,
        position: [f32; 3],
        velocity: [f32; 3],
        yaw: f32,
        anim: u8,
        dt: f32,
    ) -> Result<u32, SessionError> {
        self.in_world()?;
        let seq = self.input_seq.wrapping_add(1);
        let claim = MovementClaim {
            input_seq: seq,
            position,
            velocity,
            yaw,
            anim,
        };
        self.send(ClientMessage::SyncEntity(claim))?;
        self.input_seq = seq;
        self.prediction.push(PredictedInput {
            input_seq: seq,
            velocity,
            dt,
            position,
        });
        Ok(seq)
    }

    /// Asks for action `action_id` on `target` (0: none) — ReliableOrdered.
    /// Returns its input sequence; an ActionResult answers it.
    pub fn send_action(&mut self, action_id: u16, target: u32) -> Result<u32, SessionError> {
        self.in_world()?;
        let seq = self.input_seq.wrapping_add(1);
        self.send(ClientMessage::Action {
            input_seq: seq,
            action_id,
            target,
        })?;
        self.input_seq = seq;
        Ok(seq)
    }

    /// Asks to pick up the item entity `item` (a network id seen in
    /// snapshots, type 6). Returns its input sequence: an ActionResult with
    /// it answers (0: picked up, then an InventoryChanged follows), or a
    /// Refused (PickUp) when the inventory has no room.
    pub fn send_pickup(&mut self, item: u32) -> Result<u32, SessionError> {
        self.in_world()?;
        let seq = self.input_seq.wrapping_add(1);
        self.send(ClientMessage::PickUp {
            input_seq: seq,
            item,
        })?;
        self.input_seq = seq;
        Ok(seq)
    }

    /// Uses (consumes) the item in inventory slot `slot`: answered by an
    /// InventoryChanged, or a Refused (UseItem).
    pub fn send_use_item(&mut self, slot: u8) -> Result<(), SessionError> {
        self.in_world()?;
        self.send(ClientMessage::UseItem { slot })
    }

    /// Wears the item in inventory slot `slot` in `equip_slot`: answered by
    /// InventoryChanged and StatsChanged, or a Refused (Equip).
    pub fn send_equip(&mut self, slot: u8, equip_slot: EquipSlot) -> Result<(), SessionError> {
        self.in_world()?;
        self.send(ClientMessage::Equip {
            slot,
            equip_slot: equip_slot as u8,
        })
    }

    /// Takes off what is worn in `equip_slot`.
    pub fn send_unequip(&mut self, equip_slot: EquipSlot) -> Result<(), SessionError> {
        self.in_world()?;
        self.send(ClientMessage::Unequip {
            equip_slot: equip_slot as u8,
        })
    }

    /// Says (`ChatChannel::Say`, players nearby), shouts (`Shout`, the
    /// whole zone) or whispers (`Whisper` to the character named `target`;
    /// empty otherwise) `text` (at most `MAX_CHAT_LEN` bytes). A refusal
    /// (too long, too fast, nobody of that name) comes back as Refused
    /// (Chat).
    pub fn send_chat(
        &mut self,
        channel: ChatChannel,
        target: &str,
        text: &str,
    ) -> Result<(), SessionError> {
        self.in_world()?;
        if channel == ChatChannel::WhisperSent {
            return Err(SessionError::Invalid("WhisperSent is the server's"));
        }
        if text.len() > MAX_CHAT_LEN || target.len() > MAX_NAME_LEN {
            return Err(SessionError::Invalid("chat text or target too long"));
        }
        self.send(ClientMessage::Chat {
            channel,
            target,
            text,
        })
    }

    /// Asks what entity `entity` (in view) is: its template, level and
    /// name arrive as [`SessionEvent::Inspected`], then
    /// [`Session::entity_details`]; a Refused (Inspect, `NoSuchEntity`)
    /// when it is out of sight.
    pub fn send_inspect(&mut self, entity: u32) -> Result<(), SessionError> {
        self.in_world()?;
        self.send(ClientMessage::Inspect { entity })
    }

    /// What the server last said entity `entity` is, if it was inspected.
    pub fn entity_details(&self, entity: u32) -> Option<&EntityDetails> {
        self.gameplay.details(entity)
    }

    /// The inventory and equipment as the server last sent them.
    pub fn inventory(&self) -> &InventoryView {
        self.gameplay.inventory()
    }

    /// The character's level, experience and statistics (after entry).
    pub fn character_stats(&self) -> Option<&CharacterStats> {
        self.gameplay.stats()
    }

    /// The oldest chat line not yet taken.
    pub fn poll_chat(&mut self) -> Option<ChatLine> {
        self.gameplay.poll_chat()
    }

    /// Chat lines dropped because nobody took them
    /// ([`crate::gameplay::MAX_CHAT_LINES`] are kept).
    pub fn chat_dropped(&self) -> u64 {
        self.gameplay.chat_dropped()
    }

    fn in_world(&self) -> Result<(), SessionError> {
        if self.ended {
            return Err(SessionError::Closed);
        }
        if self.transfer.is_some_and(|t| t.entered.is_none()) {
            return Err(SessionError::Transferring);
        }
        if self.entered.is_none() {
            return Err(SessionError::NotInWorld);
        }
        Ok(())
    }

    /// Sends `msg` on its channel (`ClientMessage::channel`, PROTOCOL.md
    /// §6.5).
    fn send(&mut self, msg: ClientMessage<'_>) -> Result<(), SessionError> {
        // The largest client message in the world is a chat line: type,
        // channel, two length-prefixed strings.
        let mut buf = [0u8; 8 + MAX_NAME_LEN + MAX_CHAT_LEN];
        let mut w = Writer::new(&mut buf);
        msg.encode(&mut w).map_err(|_| {
            SessionError::Send(SendError::TooLarge {
                max: 8 + MAX_NAME_LEN + MAX_CHAT_LEN,
            })
        })?;
        let n = w.position();
        self.conn.send(msg.channel(), &buf[..n])?;
        Ok(())
    }

    /// Closes the connection gracefully: the Disconnect goes out with the
    /// next [`Session::poll_transmit`]. The server saves the character.
    pub fn close(&mut self, now: Instant) {
        self.ended = true;
        // Leaving mid-transfer is the caller's choice, not a failure.
        self.transfer = None;
        self.conn.close(now, DisconnectReason::Graceful);
        // The connection reports its own Disconnected at once: hand it on.
        self.process(now);
    }

    /// Whether the session ended (closed, denied or disconnected).
    pub fn is_ended(&self) -> bool {
        self.ended || self.conn.is_closed()
    }

    /// Whether the handshake completed and the connection is up.
    pub fn is_connected(&self) -> bool {
        self.conn.is_established()
    }

    /// Whether a zone transfer is under way (from the ZoneTransfer to the
    /// new node's first snapshot).
    pub fn is_transferring(&self) -> bool {
        self.transfer.is_some()
    }

    /// The address of the node the session talks to now (it changes with
    /// a zone transfer).
    pub fn server_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Where the character entered, once in the world.
    pub fn entered(&self) -> Option<&Entered> {
        self.entered.as_ref()
    }

    /// The session ticket from the last login (empty before it, or if the
    /// server issued none): reconnect with it instead of the password.
    pub fn ticket(&self) -> &[u8] {
        &self.ticket
    }

    /// The snapshot receiver (the world as quantized states).
    pub fn receiver(&self) -> &SnapshotReceiver {
        &self.receiver
    }

    /// Entities in view.
    pub fn entities_in_view(&self) -> usize {
        self.view.len()
    }

    /// The server clock.
    pub fn clock(&self) -> &ServerClock {
        &self.clock
    }

    /// The interpolation buffers of the entities in view.
    pub fn interpolator(&self) -> &Interpolator {
        &self.interp
    }

    /// The claims the server has not acknowledged yet.
    pub fn prediction(&self) -> &Prediction {
        &self.prediction
    }

    /// The input sequence of the last claim or action sent.
    pub fn last_input_seq(&self) -> u32 {
        self.input_seq
    }

    /// The underlying connection (statistics, round-trip time): after a
    /// zone transfer, the new node's.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }
}

/// The session's fields a message touches (all but the connection, which
/// the message borrows from).
struct Parts<'s> {
    flow: &'s mut LoginFlow,
    receiver: &'s mut SnapshotReceiver,
    view: &'s mut WorldView,
    clock: &'s mut ServerClock,
    interp: &'s mut Interpolator,
    prediction: &'s mut Prediction,
    events: &'s mut VecDeque<SessionEvent>,
    entered: &'s mut Option<Entered>,
    ticket: &'s mut Vec<u8>,
    stats: &'s mut SessionStats,
    handling: SnapshotHandling,
    gameplay: &'s mut Gameplay,
    transfer: &'s mut Option<Transfer>,
    order: &'s mut Option<TransferOrder>,
    failure: &'s mut Option<TransferFailure>,
    last_snapshot_at: &'s mut Option<Instant>,
}

impl Parts<'_> {
    fn push(&mut self, e: SessionEvent) {
        push_event(self.events, e);
    }

    /// A snapshot from the new node of a transfer: the first one starts
    /// the world over (the old node's entities removed, the server clock
    /// anew) and, with the new node's WorldEntered in, completes the
    /// transfer, before its own entities are reported (so the caller knows
    /// its new entity id when they come).
    fn on_transfer_snapshot(&mut self, now: Instant) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if t.first_snapshot.is_some() {
            return;
        }
        t.first_snapshot = Some(now);
        let old_tick = t.old_tick;
        *self.clock = ServerClock::new(self.clock.tick_hz());
        self.gameplay.forget_entities();
        let (interp, events) = (&mut *self.interp, &mut *self.events);
        self.view.clear(old_tick, |e| {
            interp.push(&e);
            push_event(events, SessionEvent::Entity(e));
        });
        self.complete_transfer();
    }

    /// Completes a transfer once the new node has said WorldEntered and
    /// sent a snapshot (in either order: they travel on different
    /// channels).
    fn complete_transfer(&mut self) {
        let Some(t) = *self.transfer else {
            return;
        };
        let (Some(entered), Some(first)) = (t.entered, t.first_snapshot) else {
            return;
        };
        let gap = first.saturating_duration_since(t.last_snapshot);
        self.stats.zone_transfers += 1;
        self.stats.last_transfer_gap = Some(gap);
        *self.transfer = None;
        self.push(SessionEvent::ZoneTransferred {
            entered,
            from: t.from,
            to: t.to,
            gap,
        });
        if t.at_login {
            // The application asked to enter: this is where it did.
            self.push(SessionEvent::EnteredWorld(entered));
        }
    }

    fn on_message(&mut self, data: &[u8], now: Instant) {
        let Ok(msg) = ServerMessage::decode(data) else {
            self.stats.bad_messages += 1;
            return;
        };
        if let ServerMessage::DeltaSync(_) = msg {
            *self.last_snapshot_at = Some(now);
            self.on_transfer_snapshot(now);
        }
        match msg {
            ServerMessage::DeltaSync(d) if self.handling == SnapshotHandling::DecodeOnly => {
                let mut r = tos_protocol::wire::Reader::new(d.records);
                let decodes = (0..d.record_count)
                    .all(|_| tos_protocol::delta::DeltaRecord::decode(&mut r).is_ok());
                if !decodes {
                    self.stats.bad_snapshots += 1;
                    return;
                }
                self.stats.snapshots += 1;
                self.clock.on_snapshot(d.tick, now);
                self.prediction.ack(d.input_ack);
                self.push(SessionEvent::Snapshot {
                    tick: d.tick,
                    input_ack: d.input_ack,
                    late: false,
                    records: d.record_count,
                    bytes: data.len() as u32,
                    missing_baselines: 0,
                });
            }
            ServerMessage::DeltaSync(d) => match self.receiver.apply(&d) {
                Ok(info) => {
                    self.stats.snapshots += 1;
                    self.clock.on_snapshot(info.tick, now);
                    if !info.late {
                        self.prediction.ack(info.input_ack);
                    }
                    if self.handling == SnapshotHandling::Events {
                        let (view, receiver, interp, events) = (
                            &mut *self.view,
                            &*self.receiver,
                            &mut *self.interp,
                            &mut *self.events,
                        );
                        view.diff(receiver, info.tick, |e| {
                            interp.push(&e);
                            push_event(events, SessionEvent::Entity(e));
                        });
                    }
                    self.push(SessionEvent::Snapshot {
                        tick: info.tick,
                        input_ack: info.input_ack,
                        late: info.late,
                        records: info.records,
                        bytes: data.len() as u32,
                        missing_baselines: info.missing_baselines,
                    });
                }
                Err(_) => self.stats.bad_snapshots += 1,
            },
            ServerMessage::ZoneTransfer {
                address,
                static_key,
                ticket,
            } => {
                if !self.flow.in_game() && !self.flow.entering() {
                    // Only a character in the world crosses a border, or
                    // one entering on another node's ground is sent there.
                    self.stats.bad_messages += 1;
                    return;
                }
                let mut t = [0u8; MAX_TRANSFER_TICKET_LEN];
                // The decoder bounds the ticket to MAX_TRANSFER_TICKET_LEN.
                let n = ticket.len().min(MAX_TRANSFER_TICKET_LEN);
                t[..n].copy_from_slice(&ticket[..n]);
                *self.order = Some(TransferOrder {
                    address: address.parse().ok(),
                    static_key,
                    ticket: t,
                    ticket_len: n,
                });
            }
            ServerMessage::Correction {
                input_seq,
                position,
                velocity,
            } => {
                self.stats.corrections += 1;
                let predicted = self.prediction.reconcile(input_seq, position);
                self.push(SessionEvent::Correction {
                    input_seq,
                    position,
                    velocity,
                    predicted,
                });
            }
            ServerMessage::ActionResult { input_seq, result } => {
                self.push(SessionEvent::ActionResult { input_seq, result });
            }
            ServerMessage::Refused { request, reason }
                if self.entered.is_some() && !self.flow.transferring() =>
            {
                self.push(SessionEvent::Refused { request, reason });
            }
            ServerMessage::Inventory(_)
            | ServerMessage::CharacterStats(_)
            | ServerMessage::CombatEvent { .. }
            | ServerMessage::ChatMessage { .. }
            | ServerMessage::EntityInfo { .. } => {
                if let Some(e) = self.gameplay.handle_message(&msg) {
                    self.push(e);
                }
            }
            other => match self.flow.handle_message(&other) {
                Some(FlowEvent::Authenticated {
                    account_id,
                    ticket,
                    expires_at,
                }) => {
                    *self.ticket = ticket;
                    self.push(SessionEvent::Authenticated {
                        account_id,
                        expires_at,
                    });
                }
                Some(FlowEvent::Created { character_id }) => {
                    self.push(SessionEvent::CharacterCreated { character_id });
                }
                Some(FlowEvent::Entered(e)) => {
                    // Nonsense geometry leaves entities unreported rather
                    // than misplaced.
                    let _ = self.view.set_world(&e.world);
                    *self.entered = Some(e);
                    match self.transfer.as_mut() {
                        // The new node's WorldEntered: reported with the
                        // transfer's completion.
                        Some(t) => {
                            t.entered = Some(e);
                            self.complete_transfer();
                        }
                        None => self.push(SessionEvent::EnteredWorld(e)),
                    }
                }
                Some(FlowEvent::Failed { reason, .. }) if self.transfer.is_some() => {
                    *self.failure = Some(TransferFailure::Refused(reason));
                }
                Some(FlowEvent::Failed { request, reason }) => {
                    self.push(SessionEvent::LoginFailed { request, reason });
                }
                Some(FlowEvent::Characters(list)) => {
                    self.push(SessionEvent::Characters {
                        count: list.len() as u32,
                    });
                }
                Some(FlowEvent::Refused { request, reason }) => {
                    self.push(SessionEvent::Refused { request, reason });
                }
                None => {
                    if let ServerMessage::Refused { request, reason } = other {
                        self.push(SessionEvent::Refused { request, reason });
                    }
                }
            },
        }
    }
}

/// The seed of a session's `n`th connection (0: the first; each zone
/// transfer opens another): the configured seed varied by `n`, or fresh
/// randomness from the operating system.
fn connection_seed(configured: Option<[u8; 32]>, n: u64) -> Result<[u8; 32], SessionError> {
    match configured {
        Some(mut s) => {
            for (b, x) in s[24..].iter_mut().zip(n.to_le_bytes()) {
                *b ^= x;
            }
            Ok(s)
        }
        None => {
            let mut s = [0u8; 32];
            rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut s)
                .map_err(|_| SessionError::NoRandomness)?;
            Ok(s)
        }
    }
}
