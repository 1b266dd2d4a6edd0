//! [`GameCore`]: one core's game layer. It owns the core's [`Shard`] and
//! the sessions of the clients connected to this core, and turns what the
//! runtime reports (tickets, connections, messages, snapshot fates, peer
//! messages, ticks) into shard inputs, store and auth requests, and
//! [`Output`]s for the runtime to carry out.
//!
//! Requests to the store and the auth pool leave over bounded channels
//! (`try_send`: a full queue is a "server busy" refusal, never a wait) and
//! their replies come back on this core's own reply channels, drained by
//! [`GameCore::handle_replies`]; each reply finds its session through the
//! `pending` table, which holds at most one request per session (the
//! session states admit one request at a time) plus one per pending
//! ticket.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use tos_auth::{AuthJob, AuthJobKind, AuthReply, AuthResult, TicketKind};
use tos_protocol::connection::SendError;
use tos_protocol::endpoint::ConnectionHandle;
use tos_protocol::wire::control::DenyReason;
use tos_protocol::wire::game::{
    CharacterSummary, ClientMessage, MovementClaim, RefusalReason, ServerMessage, WorldParams,
    client_type, encode_character_list,
};
use tos_protocol::wire::{Channel, Writer};
use tos_shards::{Character, ClientId, Faction, GhostBatch, Handoff, Shard, ShardError};
use tos_store::{
    AccountId, CharacterId, CharacterRecord, CharacterState, NewCharacter, StoreError,
    StoreRequest, StoreResponse,
};

use crate::counters::bump;
use crate::persist;
use crate::registry::OnlineEntry;
use crate::seam::{Output, PeerMessage, SessionTransfer};
use crate::services::Services;
use crate::session::{
    AccountRef, Authenticated, Connected, InGame, PlayingCharacter, Selection, Session,
    request_type,
};
use crate::store_link::{StoreAnswer, StoreLink};

mod play;
mod zone;
mod zone_effects;
mod zone_npcs;

/// Accounts made from external tickets are stored under this prefix.
pub const EXTERNAL_PREFIX: &str = "ext:";

/// Snapshot tokens remembered per client (a few round trips of ticks).
const TOKENS: usize = 64;

/// One connection's game state.
#[derive(Debug)]
struct Slot {
    session: Session,
    tokens: [(u64, u32); TOKENS],
    head: usize,
}

impl Slot {
    fn new(session: Session) -> Self {
        Self {
            session,
            tokens: [(u64::MAX, 0); TOKENS],
            head: 0,
        }
    }

    fn remember(&mut self, token: u64, tick: u32) {
        self.tokens[self.head % TOKENS] = (token, tick);
        self.head = self.head.wrapping_add(1);
    }

    fn tick_of(&self, token: u64) -> Option<u32> {
        self.tokens
            .iter()
            .find(|(t, _)| *t == token)
            .map(|(_, tick)| *tick)
    }
}

/// A request waiting for the store or the auth pool.
#[derive(Debug)]
enum Pending {
    /// Register: is the name free?
    RegisterLookup {
        handle: ConnectionHandle,
        name: String,
        password: String,
    },
    /// Register: the password is being hashed.
    RegisterHash {
        handle: ConnectionHandle,
        name: String,
    },
    /// Register: the account is being created.
    RegisterCreate {
        handle: ConnectionHandle,
        name: String,
    },
    /// Login: the account is being looked up.
    LoginLookup {
        handle: ConnectionHandle,
        password: String,
    },
    /// Login: the password is being checked.
    LoginVerify {
        handle: ConnectionHandle,
        account: Option<AccountRef>,
    },
    /// A session ticket is being signed for a logged-in account.
    Issue {
        handle: ConnectionHandle,
        account: AccountRef,
        expires_at: u64,
    },
    /// A Connect's ticket is being verified.
    TicketCheck { handle: ConnectionHandle },
    /// An external ticket's account is being looked up (then created).
    ExternalLookup {
        handle: ConnectionHandle,
        name: String,
    },
    /// An external ticket's account is being created.
    ExternalCreate {
        handle: ConnectionHandle,
        name: String,
    },
    /// A character request of the selection screen (`character_id` of a
    /// delete or restore).
    Selection {
        handle: ConnectionHandle,
        what: Selection,
        character_id: u64,
    },
    /// EnterToWorld: the character is being loaded.
    Load {
        handle: ConnectionHandle,
        character_id: u64,
    },
    /// EnterToWorld: the loaded character's cluster lease is being taken.
    Lease {
        handle: ConnectionHandle,
        transfer: Box<SessionTransfer>,
    },
    /// A player crossing to node `to`: its hand-off is in flight.
    Crossing {
        handle: ConnectionHandle,
        client: ClientId,
        secret: crate::transfer::TransferSecret,
        to: usize,
    },
    /// An NPC handed to another node: the hand-off is in flight, the NPC
    /// exists only here meanwhile.
    NpcCrossing {
        departure: Box<tos_shards::NodeDeparture>,
    },
    /// A Connect's transfer ticket: the arrival it names is being claimed.
    Arrival { handle: ConnectionHandle },
    /// EnterToWorld of a character on node `to`'s ground: its lease is
    /// being taken here, to hand it over.
    Redirect {
        handle: ConnectionHandle,
        record: Box<crate::transfer::TransferRecord>,
        to: usize,
    },
    /// The same: its hand-off to node `to` is in flight.
    Redirecting {
        handle: ConnectionHandle,
        secret: crate::transfer::TransferSecret,
        to: usize,
        character: u64,
    },
    /// A whisper to a player on another node: the directory is asked where.
    Whisper {
        handle: ConnectionHandle,
        request: u8,
        to: String,
        text: String,
    },
}

/// A queued output: a message whose bytes wait in the arena, or another
/// output.
#[derive(Debug)]
enum Queued {
    Message {
        handle: ConnectionHandle,
        channel: Channel,
        start: usize,
        len: usize,
    },
    Other(Output),
}

/// The most bytes one queued message may take (a full character list fits).
const MESSAGE_MAX: usize = 1_100;

/// One core's game layer.
pub struct GameCore {
    core: u16,
    shard: Shard,
    services: Services,
    next_client: Arc<AtomicU32>,
    budget: usize,
    sessions: HashMap<ConnectionHandle, Slot>,
    /// Players in this core's world, dense: snapshots and saves walk it.
    in_world: Vec<(ClientId, ConnectionHandle)>,
    /// The same, by client (corrections, action results, hand-offs).
    by_client: HashMap<ClientId, ConnectionHandle>,
    /// Connections accepted with a valid ticket: the account they start
    /// with once established.
    ticketed: HashMap<ConnectionHandle, AccountRef>,
    pending: HashMap<u64, Pending>,
    next_request: u64,
    store: StoreLink,
    auth_tx: Sender<AuthReply>,
    auth_rx: Receiver<AuthReply>,
    queue: VecDeque<Queued>,
    arena: Vec<u8>,
    /// Messages for other cores handed back (inbox full); sent again on
    /// the next tick.
    bounced: Vec<(u16, PeerMessage, Option<ConnectionHandle>)>,
    snap_cursor: usize,
    snap_tick: u32,
    tick: u32,
    unix: u64,
    save_every: u32,
    next_save: u32,
    spawn_seed: u64,
    handoffs: Vec<Handoff>,
    /// This tick's effects on other cores' and other nodes' entities
    /// (kept for its capacity).
    effects: Vec<tos_shards::RemoteEffect>,
    ghosts: Vec<GhostBatch>,
    /// This tick's ghost batches for other cluster nodes.
    node_ghosts: Vec<tos_shards::NodeGhosts>,
    /// Buffers of the gameplay paths (events, chat listeners, inventory
    /// messages).
    play: play::PlayBuffers,
    tick_hz: u32,
    /// How long a pick-up reservation waits for the shard's verdict, ticks.
    pickup_timeout: u32,
    /// The node's cluster, when the process is one node of several.
    cluster: Option<crate::cluster::CoreCluster>,
    /// Players crossing to other nodes and arriving from them.
    zone: zone::Zone,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl core::fmt::Debug for GameCore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GameCore")
            .field("core", &self.core)
            .field("sessions", &self.sessions.len())
            .field("in_world", &self.in_world.len())
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl GameCore {
    /// The game layer of core `core` around its `shard`. `budget` is the
    /// most bytes a snapshot may take; `tick_hz` converts the save
    /// interval into ticks.
    pub fn new(
        core: u16,
        shard: Shard,
        services: Services,
        next_client: Arc<AtomicU32>,
        budget: usize,
        tick_hz: u32,
    ) -> Self {
        let (auth_tx, auth_rx) = crossbeam_channel::bounded(4_096);
        let save_every = (u64::from(services.settings.save_interval_ms) * u64::from(tick_hz)
            / 1_000)
            .clamp(1, u64::from(u32::MAX)) as u32;
        Self {
            core,
            shard,
            store: StoreLink::new(services.store.clone()),
            services,
            next_client,
            budget,
            sessions: HashMap::new(),
            in_world: Vec::new(),
            by_client: HashMap::new(),
            ticketed: HashMap::new(),
            pending: HashMap::new(),
            next_request: 1,
            auth_tx,
            auth_rx,
            queue: VecDeque::with_capacity(1_024),
            arena: Vec::with_capacity(64 * 1_024),
            bounced: Vec::new(),
            snap_cursor: 0,
            snap_tick: 0,
            tick: 0,
            unix: unix_now(),
            save_every,
            next_save: 0,
            spawn_seed: u64::from(core) << 48,
            handoffs: Vec::new(),
            effects: Vec::new(),
            ghosts: Vec::new(),
            node_ghosts: Vec::new(),
            play: play::PlayBuffers::new(),
            tick_hz,
            // Two seconds: a verdict normally comes the next tick; one that
            // never comes (the player crossed into another core meanwhile)
            // must not hold inventory room for long.
            pickup_timeout: tick_hz.saturating_mul(2).max(2),
            cluster: None,
            zone: zone::Zone::default(),
            _not_send: core::marker::PhantomData,
        }
    }

    /// Makes this core part of a cluster node: characters take their
    /// lease in the directory before they enter, and the shard holds
    /// players back at the borders of quadrants other nodes simulate.
    /// False (and nothing changed) if the view's grid is not this world's.
    pub fn join_cluster(&mut self, cluster: crate::cluster::CoreCluster) -> bool {
        if cluster.view.grid != self.shard.world().grid()
            || !self
                .shard
                .set_foreign_quadrants(cluster.view.foreign_table())
        {
            return false;
        }
        self.cluster = Some(cluster);
        true
    }

    /// The shard (read-only, for diagnostics and tests).
    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// Players in this core's world.
    pub fn players(&self) -> usize {
        self.in_world.len()
    }

    /// Sessions on this core (any state).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    // ------------------------------------------------------------------
    // Outputs
    // ------------------------------------------------------------------

    /// The next thing for the runtime to do. Message bytes are written into
    /// `buf` (at least one datagram's payload, 2 KiB is plenty).
    pub fn poll_output(&mut self, buf: &mut [u8]) -> Option<Output> {
        if let Some(q) = self.queue.pop_front() {
            if self.queue.is_empty() {
                // Reuse the arena from the start once everything queued
                // has been taken (after copying this message out).
                let out = self.take_queued(q, buf);
                self.arena.clear();
                return Some(out);
            }
            return Some(self.take_queued(q, buf));
        }
        while self.snap_cursor < self.in_world.len() {
            let (client, handle) = self.in_world[self.snap_cursor];
            self.snap_cursor += 1;
            let budget = self.budget.min(buf.len());
            let n = self
                .shard
                .write_snapshot(client, self.snap_tick, budget, buf);
            if n > 0 {
                return Some(Output::Send {
                    handle,
                    channel: Channel::Unreliable,
                    len: n,
                    snapshot_tick: Some(self.snap_tick),
                });
            }
        }
        None
    }

    fn take_queued(&self, q: Queued, buf: &mut [u8]) -> Output {
        match q {
            Queued::Message {
                handle,
                channel,
                start,
                len,
            } => {
                let len = len.min(buf.len());
                buf[..len].copy_from_slice(&self.arena[start..start + len]);
                Output::Send {
                    handle,
                    channel,
                    len,
                    snapshot_tick: None,
                }
            }
            Queued::Other(o) => o,
        }
    }

    /// Queues a message to one client (reliable unless `channel` says).
    fn send(&mut self, handle: ConnectionHandle, channel: Channel, msg: &ServerMessage<'_>) {
        let start = self.arena.len();
        self.arena.resize(start + MESSAGE_MAX, 0);
        let mut w = Writer::new(&mut self.arena[start..]);
        let len = if msg.encode(&mut w).is_ok() {
            w.position()
        } else {
            0
        };
        self.arena.truncate(start + len);
        if len == 0 {
            // Only a message larger than MESSAGE_MAX gets here: a bug.
            tracing::error!(?msg, "a server message did not encode");
            return;
        }
        self.queue.push_back(Queued::Message {
            handle,
            channel,
            start,
            len,
        });
    }

    fn reliable(&mut self, handle: ConnectionHandle, msg: &ServerMessage<'_>) {
        self.send(handle, Channel::ReliableOrdered, msg);
    }

    fn refuse(&mut self, handle: ConnectionHandle, request: u8, reason: RefusalReason) {
        self.services.counters.refused(reason);
        self.reliable(handle, &ServerMessage::Refused { request, reason });
    }

    fn output(&mut self, o: Output) {
        self.queue.push_back(Queued::Other(o));
    }

    // ------------------------------------------------------------------
    // Connections
    // ------------------------------------------------------------------

    /// A client proved its address with a Connect carrying `ticket` (empty:
    /// it will Register or Login). A ticket is checked on the auth pool;
    /// the decision comes back as [`Output::Accept`] or [`Output::Refuse`].
    pub fn handle_incoming(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        ticket: &[u8],
        address: SocketAddr,
    ) {
        if ticket.is_empty() {
            self.output(Output::Accept { handle });
            return;
        }
        if crate::transfer::TransferSecret::is_transfer_ticket(ticket) {
            // One-time and unguessable: checked by the cluster thread, not
            // the signature verifier (and not rate-limited per address: a
            // whole town may cross at once from one NAT).
            return self.check_transfer_ticket(handle, ticket);
        }
        if !self.services.limits.allow(address.ip(), None, now) {
            self.services.counters.refused(RefusalReason::RateLimited);
            bump(&self.services.counters.tickets_rejected_total);
            self.output(Output::Refuse {
                handle,
                reason: DenyReason::TicketRejected,
            });
            return;
        }
        let kind = AuthJobKind::VerifyTicket {
            ticket: ticket.to_vec(),
            now: self.unix,
        };
        if !self.submit_auth(kind, Pending::TicketCheck { handle }) {
            self.output(Output::Refuse {
                handle,
                reason: DenyReason::Busy,
            });
        }
    }

    /// A connection completed its handshake.
    pub fn handle_connected(&mut self, handle: ConnectionHandle, address: SocketAddr) {
        if self.arrive(handle) {
            return;
        }
        match self.ticketed.remove(&handle) {
            Some(account) => {
                self.sessions.insert(
                    handle,
                    Slot::new(Session::Authenticated(Authenticated::new(
                        address,
                        account.clone(),
                    ))),
                );
                self.issue_ticket(handle, account);
            }
            None => {
                self.sessions.insert(
                    handle,
                    Slot::new(Session::Connected(Connected::new(address))),
                );
            }
        }
    }

    /// A connection ended (or its handle went stale): its player leaves the
    /// world and its character is saved at once.
    pub fn handle_closed(&mut self, handle: ConnectionHandle) {
        self.ticketed.remove(&handle);
        if self.zone_closed(handle) {
            return;
        }
        let Some(mut slot) = self.sessions.remove(&handle) else {
            return;
        };
        if let Session::InGame(g) = std::mem::replace(&mut slot.session, Session::Closing) {
            self.leave_world(&g, handle);
        }
    }

    /// The measured round trip of a connection (every second or so).
    pub fn handle_rtt(&mut self, handle: ConnectionHandle, rtt_ms: u32) {
        if let Some(Session::InGame(g)) = self.sessions.get(&handle).map(|s| &s.session) {
            if self.shard.set_rtt(g.client, rtt_ms).is_err() {
                bump(&self.services.counters.shard_refused_total);
            }
        }
    }

    /// What `send` said about a snapshot (or any message) this layer asked
    /// for.
    pub fn handle_sent(
        &mut self,
        handle: ConnectionHandle,
        snapshot_tick: Option<u32>,
        result: Result<u64, SendError>,
    ) {
        match (result, snapshot_tick) {
            (Ok(token), Some(tick)) => {
                if let Some(slot) = self.sessions.get_mut(&handle) {
                    slot.remember(token, tick);
                }
            }
            (Ok(_), None) => {}
            (Err(_), _) => bump(&self.services.counters.send_failed_total),
        }
    }

    /// A snapshot was acknowledged or declared lost.
    pub fn handle_snapshot_fate(&mut self, handle: ConnectionHandle, token: u64, acked: bool) {
        let Some(slot) = self.sessions.get(&handle) else {
            return;
        };
        let Session::InGame(g) = &slot.session else {
            return;
        };
        let Some(tick) = slot.tick_of(token) else {
            return;
        };
        if acked {
            self.shard.on_snapshot_acked(g.client, tick);
        } else {
            self.shard.on_snapshot_lost(g.client, tick);
        }
    }

    // ------------------------------------------------------------------
    // Client messages
    // ------------------------------------------------------------------

    /// A message from a client.
    pub fn handle_message(&mut self, now: Instant, handle: ConnectionHandle, data: &[u8]) {
        let Some(slot) = self.sessions.get(&handle) else {
            return;
        };
        let msg = match ClientMessage::decode(data) {
            Ok(m) => m,
            Err(e) => {
                bump(&self.services.counters.malformed_total);
                let request = data.first().copied().unwrap_or(0);
                // A chat line over the length limit does not decode; it
                // gets its own reason (the only field that can be too long
                // in a Chat from a well-meaning client).
                let reason = if request == client_type::CHAT
                    && matches!(e, tos_protocol::wire::WireError::LengthExceeded { .. })
                {
                    RefusalReason::ChatTooLong
                } else {
                    RefusalReason::Malformed
                };
                self.refuse(handle, request, reason);
                return;
            }
        };
        if let Err(reason) = slot.session.admits(&msg) {
            let request = request_type(&msg);
            self.refuse(handle, request, reason);
            return;
        }
        match msg {
            ClientMessage::Pong(_) | ClientMessage::RekeyResponse(_) => {}
            ClientMessage::Register { account, password } => {
                self.register(now, handle, account, password)
            }
            ClientMessage::Login { account, password } => {
                self.login(now, handle, account, password)
            }
            ClientMessage::CharacterList => self.list(handle),
            ClientMessage::CharacterCreate {
                name,
                template,
                appearance,
            } => self.create(handle, name, template, appearance),
            ClientMessage::CharacterDelete { character_id } => {
                self.delete_or_restore(handle, character_id, Selection::Delete)
            }
            ClientMessage::CharacterRestore { character_id } => {
                self.delete_or_restore(handle, character_id, Selection::Restore)
            }
            ClientMessage::EnterToWorld { character_id, .. } => self.enter(handle, character_id),
            ClientMessage::LeaveWorld => self.leave(handle),
            ClientMessage::SyncEntity(claim) => self.claim(handle, claim),
            ClientMessage::SyncEntityQuantized(q) => {
                let quantizer = self.shard.world().quantizer();
                if let Ok(position) = quantizer.dequantize_position(q.position) {
                    let claim = MovementClaim {
                        input_seq: q.input_seq,
                        position,
                        velocity: q
                            .velocity
                            .map(|v| tos_protocol::quant::dequantize_velocity(v, 1.0)),
                        yaw: tos_protocol::quant::dequantize_angle(q.yaw),
                        anim: q.anim,
                    };
                    self.claim(handle, claim);
                } else {
                    bump(&self.services.counters.malformed_total);
                }
            }
            ClientMessage::PickUp { .. }
            | ClientMessage::UseItem { .. }
            | ClientMessage::Equip { .. }
            | ClientMessage::Unequip { .. }
            | ClientMessage::Chat { .. }
            | ClientMessage::DropItem { .. }
            | ClientMessage::Inspect { .. } => self.gameplay(now, handle, &msg),
            ClientMessage::Action {
                input_seq,
                action_id,
                target,
            } => {
                if let Some(client) = self.client_of(handle) {
                    if self
                        .shard
                        .push_action(client, input_seq, action_id, target)
                        .is_err()
                    {
                        // Input queue full: the action is refused by the
                        // shard's own rules next tick; count it here.
                        bump(&self.services.counters.malformed_total);
                    }
                }
            }
        }
    }

    fn client_of(&self, handle: ConnectionHandle) -> Option<ClientId> {
        match self.sessions.get(&handle).map(|s| &s.session) {
            Some(Session::InGame(g)) => Some(g.client),
            _ => None,
        }
    }

    fn claim(&mut self, handle: ConnectionHandle, claim: MovementClaim) {
        if let Some(client) = self.client_of(handle) {
            // A full input queue drops the claim (the next one supersedes
            // it); counted, as a flood of claims is worth seeing.
            if self.shard.push_claim(client, claim).is_err() {
                bump(&self.services.counters.shard_refused_total);
            }
        }
    }

    /// Moves a session to a new state by value (rustls-style transitions
    /// need ownership).
    fn transition(&mut self, handle: ConnectionHandle, f: impl FnOnce(Session) -> Session) {
        if let Some(slot) = self.sessions.get_mut(&handle) {
            let old = std::mem::replace(&mut slot.session, Session::Closing);
            slot.session = f(old);
        }
    }

    fn address_of(&self, handle: ConnectionHandle) -> Option<SocketAddr> {
        match &self.sessions.get(&handle)?.session {
            Session::Connected(s) => Some(s.address),
            Session::Authenticating(s) => Some(s.address),
            Session::Authenticated(s) => Some(s.address),
            Session::Entering(s) => Some(s.address),
            Session::InGame(s) => Some(s.address),
            Session::Closing => None,
        }
    }

    fn register(&mut self, now: Instant, handle: ConnectionHandle, name: &str, password: &str) {
        let request = client_type::REGISTER;
        if !self.services.settings.allow_register {
            return self.login_refused(handle, request, RefusalReason::WrongState);
        }
        if !crate::names::account_name_ok(name) {
            return self.login_refused(handle, request, RefusalReason::AccountNameInvalid);
        }
        let (min, max) = (
            self.services.settings.password_min,
            self.services.settings.password_max,
        );
        if !(min..=max).contains(&password.len()) {
            return self.login_refused(handle, request, RefusalReason::PasswordInvalid);
        }
        // Look the name up before paying for a hash: a taken name is
        // refused at once (registration reveals that a name exists anyway).
        let pending = Pending::RegisterLookup {
            handle,
            name: name.to_string(),
            password: password.to_string(),
        };
        self.look_up_account(now, handle, name, true, pending);
    }

    fn login(&mut self, now: Instant, handle: ConnectionHandle, name: &str, password: &str) {
        let request = client_type::LOGIN;
        if !crate::names::account_name_ok(name)
            || password.len() > self.services.settings.password_max
        {
            return self.login_refused(handle, request, RefusalReason::BadCredentials);
        }
        let pending = Pending::LoginLookup {
            handle,
            password: password.to_string(),
        };
        self.look_up_account(now, handle, name, false, pending);
    }

    /// The common start of Register and Login: rate limits, the store's
    /// health, then the account lookup, the session moving to
    /// Authenticating.
    fn look_up_account(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        name: &str,
        registering: bool,
        pending: Pending,
    ) {
        let request = if registering {
            client_type::REGISTER
        } else {
            client_type::LOGIN
        };
        if !self.login_allowed(now, handle, name) {
            return self.login_refused(handle, request, RefusalReason::RateLimited);
        }
        if self.store.saturated() {
            return self.login_refused(handle, request, RefusalReason::StoreUnavailable);
        }
        let lookup = StoreRequest::AccountByName {
            name: name.to_string(),
        };
        if self.submit_store(lookup, pending) {
            let name = name.to_string();
            self.transition(handle, |s| match s {
                Session::Connected(c) => {
                    Session::Authenticating(c.authenticating(name, registering))
                }
                other => other,
            });
        } else {
            self.login_refused(handle, request, RefusalReason::ServerBusy);
        }
    }

    fn login_allowed(&self, now: Instant, handle: ConnectionHandle, name: &str) -> bool {
        match self.address_of(handle) {
            Some(a) => self.services.limits.allow(a.ip(), Some(name), now),
            None => false,
        }
    }

    fn login_refused(&mut self, handle: ConnectionHandle, request: u8, reason: RefusalReason) {
        bump(&self.services.counters.logins_failed_total);
        self.transition(handle, |s| match s {
            Session::Authenticating(a) => Session::Connected(a.failed()),
            other => other,
        });
        self.refuse(handle, request, reason);
    }

    fn issue_ticket(&mut self, handle: ConnectionHandle, account: AccountRef) {
        let lifetime = self.services.settings.ticket_lifetime_secs;
        let kind = AuthJobKind::IssueTicket {
            account_id: account.id,
            name: account.name.clone(),
            now: self.unix,
            lifetime,
        };
        let expires_at = self.unix + lifetime;
        if !self.submit_auth(
            kind,
            Pending::Issue {
                handle,
                account: account.clone(),
                expires_at,
            },
        ) {
            // No ticket this time: the client is logged in all the same and
            // can log in with its password to reconnect.
            self.authenticated(handle, account, &[], 0);
        }
    }

    fn authenticated(
        &mut self,
        handle: ConnectionHandle,
        account: AccountRef,
        ticket: &[u8],
        expires_at: u64,
    ) {
        let id = account.id;
        self.transition(handle, |s| match s {
            Session::Authenticating(a) => Session::Authenticated(a.succeeded(account)),
            other => other,
        });
        self.reliable(
            handle,
            &ServerMessage::Authenticated {
                account_id: id,
                ticket,
                expires_at,
            },
        );
    }

    fn account_of(&self, handle: ConnectionHandle) -> Option<AccountRef> {
        match &self.sessions.get(&handle)?.session {
            Session::Authenticated(a) => Some(a.account.clone()),
            Session::InGame(g) => Some(g.account.clone()),
            _ => None,
        }
    }

    fn set_busy(&mut self, handle: ConnectionHandle, what: Option<Selection>) {
        if let Some(Session::Authenticated(a)) =
            self.sessions.get_mut(&handle).map(|s| &mut s.session)
        {
            a.busy = what;
        }
    }

    fn selection_request(
        &mut self,
        handle: ConnectionHandle,
        what: Selection,
        character_id: u64,
        op: StoreRequest,
    ) {
        let request = selection_type(what);
        if self.store.saturated() {
            return self.refuse(handle, request, RefusalReason::StoreUnavailable);
        }
        let pending = Pending::Selection {
            handle,
            what,
            character_id,
        };
        if self.submit_store(op, pending) {
            self.set_busy(handle, Some(what));
        } else {
            self.refuse(handle, request, RefusalReason::ServerBusy);
        }
    }

    fn list(&mut self, handle: ConnectionHandle) {
        let Some(account) = self.account_of(handle) else {
            return;
        };
        let op = StoreRequest::ListCharacters {
            account: AccountId(account.id),
        };
        self.selection_request(handle, Selection::List, 0, op);
    }

    fn create(&mut self, handle: ConnectionHandle, name: &str, template: u16, appearance: &[u8]) {
        let request = client_type::CHARACTER_CREATE;
        let Some(account) = self.account_of(handle) else {
            return;
        };
        if let Err(e) = self.services.data.check_name(name) {
            let reason = match e {
                tos_config::NameError::Reserved => RefusalReason::NameReserved,
                _ => RefusalReason::NameInvalid,
            };
            return self.refuse(handle, request, reason);
        }
        let data = Arc::clone(&self.services.data);
        let Some(t) = data.template(template) else {
            return self.refuse(handle, request, RefusalReason::UnknownTemplate);
        };
        if appearance.len() > usize::from(t.appearance_bytes) {
            return self.refuse(handle, request, RefusalReason::Malformed);
        }
        let Some(stats) = data.stats_at(t, 1) else {
            return self.refuse(handle, request, RefusalReason::UnknownTemplate);
        };
        // Spread new characters over the template's starting area.
        self.spawn_seed = self
            .spawn_seed
            .wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(self.unix);
        let point = tos_config::GameData::spawn_position(t, self.spawn_seed);
        let new = NewCharacter {
            account: AccountId(account.id),
            name: name.to_string(),
            template,
            faction: t.faction,
            appearance: appearance.to_vec(),
            position: point,
            yaw: 0.0,
            level: 1,
            exp: 0,
            hp: stats.hp_max as f32,
            mp: stats.mp_max as f32,
            items: crate::inventory::starting_items(&t.starting_items, &self.services.items),
        };
        let op = StoreRequest::CreateCharacter {
            new,
            max_per_account: u32::from(self.services.settings.max_characters),
        };
        self.selection_request(handle, Selection::Create, 0, op);
    }

    fn delete_or_restore(&mut self, handle: ConnectionHandle, character_id: u64, what: Selection) {
        let Some(account) = self.account_of(handle) else {
            return;
        };
        if self.services.registry.is_online(character_id) {
            return self.refuse(handle, selection_type(what), RefusalReason::CharacterInUse);
        }
        let (account, id) = (AccountId(account.id), CharacterId(character_id));
        let op = if what == Selection::Delete {
            StoreRequest::DeleteCharacter { account, id }
        } else {
            StoreRequest::RestoreCharacter {
                account,
                id,
                window_secs: i64::try_from(self.services.settings.delete_restore_secs)
                    .unwrap_or(i64::MAX),
            }
        };
        self.selection_request(handle, what, character_id, op);
    }

    fn enter(&mut self, handle: ConnectionHandle, character_id: u64) {
        let request = client_type::ENTER_TO_WORLD;
        if self.store.saturated() {
            return self.refuse(handle, request, RefusalReason::StoreUnavailable);
        }
        let pending = Pending::Load {
            handle,
            character_id,
        };
        let op = StoreRequest::LoadCharacter {
            id: CharacterId(character_id),
        };
        if self.submit_store(op, pending) {
            self.transition(handle, |s| match s {
                Session::Authenticated(a) => Session::Entering(a.enter(character_id)),
                other => other,
            });
        } else {
            self.refuse(handle, request, RefusalReason::ServerBusy);
        }
    }

    fn leave(&mut self, handle: ConnectionHandle) {
        let frozen = match self.sessions.get(&handle).map(|s| &s.session) {
            Some(Session::InGame(g)) => self.is_frozen(g.client),
            _ => false,
        };
        if frozen {
            // Its hand-off to another node is being decided: which node
            // saves it is not known yet. Asked again in a moment, it works.
            return self.refuse(handle, client_type::LEAVE_WORLD, RefusalReason::ServerBusy);
        }
        let Some(slot) = self.sessions.get_mut(&handle) else {
            return;
        };
        let Session::InGame(g) = std::mem::replace(&mut slot.session, Session::Closing) else {
            return;
        };
        self.leave_world(&g, handle);
        if let Some(slot) = self.sessions.get_mut(&handle) {
            slot.session = Session::Authenticated(g.leave());
        }
    }

    /// Saves a character now and takes it out of the world and the
    /// registry.
    fn leave_world(&mut self, g: &InGame, handle: ConnectionHandle) {
        if let Some(net) = self.shard.player_of(g.client) {
            if let Some(state) = persist::state_in(&self.shard, net, &g.character) {
                self.save_now(state);
            }
        }
        if self.shard.remove_player(g.client).is_err() {
            // Only a bug gets here: the session said InGame, the shard
            // does not know the client.
            tracing::error!(client = g.client.0, "a leaving player was not in the shard");
            bump(&self.services.counters.shard_refused_total);
        }
        self.in_world.retain(|&(c, h)| c != g.client && h != handle);
        self.by_client.remove(&g.client);
        self.release_character(g.character.id);
        bump(&self.services.counters.leaves_total);
    }

    /// A character left the world here: out of the registry, and its
    /// cluster lease given back (if the release cannot be queued the lease
    /// expires after the cluster's lease TTL instead).
    fn release_character(&mut self, character: u64) {
        self.services.registry.release(character);
        if let Some(cluster) = &self.cluster {
            let command = crate::cluster::ClusterCommand {
                request: 0,
                core: self.core,
                op: crate::cluster::ClusterOp::Release { character },
            };
            if !cluster.view.send(command) {
                bump(&self.services.counters.cluster_busy_total);
            }
        }
    }

    fn save_now(&mut self, state: CharacterState) {
        bump(&self.services.counters.saves_queued_total);
        if !self.store.save_now(state.clone()) {
            // The store's command queue is full: the coalescing save path
            // has its own bound and is retried by the store; try it.
            if !self.store.save(state) {
                bump(&self.services.counters.saves_deferred_total);
                tracing::error!("store queue full: a logout save could not be queued");
            }
        }
    }

    // ------------------------------------------------------------------
    // Replies from the store and the auth pool
    // ------------------------------------------------------------------

    /// Drains the replies that arrived from the store and the auth pool.
    /// Call every loop turn.
    pub fn handle_replies(&mut self, now: Instant) {
        while let Ok(reply) = self.auth_rx.try_recv() {
            if let Some(p) = self.pending.remove(&reply.request_id) {
                self.on_auth(now, p, reply.result);
            }
        }
        while let Some((id, answer)) = self.store.try_recv() {
            if let Some(p) = self.pending.remove(&id) {
                self.on_store(p, answer);
            }
        }
        while let Some(reply) = self
            .cluster
            .as_ref()
            .and_then(|c| c.replies.try_recv().ok())
        {
            self.on_cluster(reply);
        }
    }

    fn submit_auth(&mut self, kind: AuthJobKind, pending: Pending) -> bool {
        let request_id = self.next_request;
        let job = AuthJob {
            request_id,
            reply: self.auth_tx.clone(),
            kind,
        };
        if self.services.auth.try_submit(job).is_err() {
            bump(&self.services.counters.service_busy_total);
            return false;
        }
        self.next_request += 1;
        self.pending.insert(request_id, pending);
        true
    }

    /// Sends `op` to the cluster thread, its answer to come back for
    /// `pending`; `pending` comes back (counted) when there is no cluster
    /// or its queue is full.
    fn submit_cluster(
        &mut self,
        op: crate::cluster::ClusterOp,
        pending: Pending,
    ) -> Result<(), Pending> {
        let request = self.next_request;
        let command = crate::cluster::ClusterCommand {
            request,
            core: self.core,
            op,
        };
        if !self.cluster.as_ref().is_some_and(|c| c.view.send(command)) {
            bump(&self.services.counters.cluster_busy_total);
            return Err(pending);
        }
        self.next_request += 1;
        self.pending.insert(request, pending);
        Ok(())
    }

    fn submit_store(&mut self, op: StoreRequest, pending: Pending) -> bool {
        let request_id = self.next_request;
        if !self.store.request(request_id, op) {
            bump(&self.services.counters.service_busy_total);
            return false;
        }
        self.next_request += 1;
        self.pending.insert(request_id, pending);
        true
    }

    fn on_auth(&mut self, _now: Instant, pending: Pending, result: AuthResult) {
        match (pending, result) {
            (Pending::RegisterHash { handle, name }, AuthResult::Hashed(Ok(phc))) => {
                let op = StoreRequest::CreateAccount {
                    name: name.clone(),
                    password_hash: Some(phc),
                };
                if !self.submit_store(op, Pending::RegisterCreate { handle, name }) {
                    self.login_refused(handle, client_type::REGISTER, RefusalReason::ServerBusy);
                }
            }
            (Pending::RegisterHash { handle, .. }, _) => {
                self.login_refused(handle, client_type::REGISTER, RefusalReason::Internal)
            }
            (Pending::LoginVerify { handle, account }, AuthResult::Verified(Ok(true))) => {
                match account {
                    Some(account) => {
                        bump(&self.services.counters.logins_total);
                        self.issue_ticket(handle, account);
                    }
                    None => self.login_refused(
                        handle,
                        client_type::LOGIN,
                        RefusalReason::BadCredentials,
                    ),
                }
            }
            (Pending::LoginVerify { handle, .. }, _) => {
                self.login_refused(handle, client_type::LOGIN, RefusalReason::BadCredentials)
            }
            (
                Pending::Issue {
                    handle,
                    account,
                    expires_at,
                },
                AuthResult::Issued(Ok(ticket)),
            ) => self.authenticated(handle, account, &ticket, expires_at),
            (
                Pending::Issue {
                    handle, account, ..
                },
                _,
            ) => self.authenticated(handle, account, &[], 0),
            (Pending::TicketCheck { handle }, AuthResult::Ticket(Ok(claims))) => {
                match claims.kind {
                    TicketKind::Session => {
                        bump(&self.services.counters.tickets_accepted_total);
                        self.ticketed.insert(
                            handle,
                            AccountRef {
                                id: claims.account_id,
                                name: claims.account_name,
                            },
                        );
                        self.output(Output::Accept { handle });
                    }
                    TicketKind::External => {
                        // A studio's login backend vouches for this name:
                        // find (or create, without a password) its account.
                        // External accounts live in their own namespace
                        // (`ext:` is not a valid registered name), so a
                        // ticket can never open a password account.
                        let name = format!("{EXTERNAL_PREFIX}{}", claims.account_name);
                        let op = StoreRequest::AccountByName { name: name.clone() };
                        if !self.submit_store(op, Pending::ExternalLookup { handle, name }) {
                            self.output(Output::Refuse {
                                handle,
                                reason: DenyReason::Busy,
                            });
                        }
                    }
                }
            }
            (Pending::TicketCheck { handle }, result) => {
                let reason = match result {
                    AuthResult::Ticket(Err(tos_auth::TicketError::Expired)) => {
                        RefusalReason::TicketExpired
                    }
                    _ => RefusalReason::TicketInvalid,
                };
                self.services.counters.refused(reason);
                bump(&self.services.counters.tickets_rejected_total);
                self.output(Output::Refuse {
                    handle,
                    reason: DenyReason::TicketRejected,
                });
            }
            (p, _) => tracing::warn!(?p, "an auth reply of the wrong kind"),
        }
    }

    fn on_store(&mut self, pending: Pending, answer: StoreAnswer) {
        match pending {
            Pending::RegisterLookup {
                handle,
                name,
                password,
            } => match answer {
                Ok(StoreResponse::Account(None)) => {
                    let kind = AuthJobKind::HashPassword { password };
                    if !self.submit_auth(kind, Pending::RegisterHash { handle, name }) {
                        self.login_refused(
                            handle,
                            client_type::REGISTER,
                            RefusalReason::ServerBusy,
                        );
                    }
                }
                Ok(StoreResponse::Account(Some(_))) => {
                    self.login_refused(handle, client_type::REGISTER, RefusalReason::AccountExists)
                }
                _ => self.login_refused(
                    handle,
                    client_type::REGISTER,
                    RefusalReason::StoreUnavailable,
                ),
            },
            Pending::RegisterCreate { handle, name } => match answer {
                Ok(StoreResponse::AccountCreated(AccountId(id))) => {
                    bump(&self.services.counters.registrations_total);
                    self.issue_ticket(handle, AccountRef { id, name });
                }
                Err(StoreError::NameTaken) => {
                    self.login_refused(handle, client_type::REGISTER, RefusalReason::AccountExists)
                }
                _ => self.login_refused(
                    handle,
                    client_type::REGISTER,
                    RefusalReason::StoreUnavailable,
                ),
            },
            Pending::LoginLookup { handle, password } => match answer {
                Ok(StoreResponse::Account(account)) => {
                    let (phc, account) = match account {
                        Some(a) => (
                            a.password_hash.clone(),
                            // An account made from an external ticket has no
                            // password: checked against the dummy, refused.
                            a.password_hash.as_ref().map(|_| AccountRef {
                                id: a.id.0,
                                name: a.name.clone(),
                            }),
                        ),
                        None => (None, None),
                    };
                    let kind = AuthJobKind::VerifyPassword { password, phc };
                    if !self.submit_auth(kind, Pending::LoginVerify { handle, account }) {
                        self.login_refused(handle, client_type::LOGIN, RefusalReason::ServerBusy);
                    }
                }
                _ => {
                    self.login_refused(handle, client_type::LOGIN, RefusalReason::StoreUnavailable)
                }
            },
            Pending::ExternalLookup { handle, name } => match answer {
                Ok(StoreResponse::Account(Some(a))) => self.external_ok(
                    handle,
                    AccountRef {
                        id: a.id.0,
                        name: a.name,
                    },
                ),
                Ok(StoreResponse::Account(None)) => {
                    let op = StoreRequest::CreateAccount {
                        name: name.clone(),
                        password_hash: None,
                    };
                    if !self.submit_store(op, Pending::ExternalCreate { handle, name }) {
                        self.output(Output::Refuse {
                            handle,
                            reason: DenyReason::Busy,
                        });
                    }
                }
                _ => self.output(Output::Refuse {
                    handle,
                    reason: DenyReason::Busy,
                }),
            },
            Pending::ExternalCreate { handle, name } => match answer {
                Ok(StoreResponse::AccountCreated(AccountId(id))) => {
                    bump(&self.services.counters.registrations_total);
                    self.external_ok(handle, AccountRef { id, name });
                }
                _ => self.output(Output::Refuse {
                    handle,
                    reason: DenyReason::Busy,
                }),
            },
            Pending::Selection {
                handle,
                what,
                character_id,
            } => {
                self.set_busy(handle, None);
                self.on_selection(handle, what, character_id, answer);
            }
            Pending::Load {
                handle,
                character_id,
            } => self.on_loaded(handle, character_id, answer),
            other => tracing::warn!(?other, "a store reply for an auth request"),
        }
    }

    fn external_ok(&mut self, handle: ConnectionHandle, account: AccountRef) {
        bump(&self.services.counters.tickets_accepted_total);
        self.ticketed.insert(handle, account);
        self.output(Output::Accept { handle });
    }

    fn on_selection(
        &mut self,
        handle: ConnectionHandle,
        what: Selection,
        character_id: u64,
        answer: StoreAnswer,
    ) {
        let request = selection_type(what);
        let done = |id: u64| ServerMessage::CharacterDone {
            request,
            character_id: id,
        };
        match (what, answer) {
            (Selection::List, Ok(StoreResponse::Characters(list))) => self.send_list(handle, &list),
            (Selection::Create, Ok(StoreResponse::Character(record))) => {
                bump(&self.services.counters.characters_created_total);
                self.reliable(handle, &done(record.id.0));
            }
            (Selection::Delete, Ok(StoreResponse::Done)) => {
                bump(&self.services.counters.characters_deleted_total);
                self.reliable(handle, &done(character_id));
            }
            (Selection::Restore, Ok(StoreResponse::Character(record))) => {
                bump(&self.services.counters.characters_restored_total);
                self.reliable(handle, &done(record.id.0));
            }
            (_, Err(e)) => self.refuse(handle, request, refusal_of(&e)),
            (_, Ok(other)) => {
                tracing::error!(?other, "a store reply of the wrong kind");
                self.refuse(handle, request, RefusalReason::Internal)
            }
        }
    }

    fn send_list(&mut self, handle: ConnectionHandle, list: &[CharacterRecord]) {
        let window = self.services.settings.delete_restore_secs as i64;
        let now = self.unix as i64;
        let summaries: Vec<CharacterSummary<'_>> = list
            .iter()
            // Past the restore window a deleted character is gone for good.
            .filter(|r| r.deleted_at.is_none_or(|d| now - d <= window))
            .map(|r| CharacterSummary {
                character_id: r.id.0,
                name: &r.name,
                template: r.template,
                level: r.level,
                faction: r.faction,
                deleted_at: r.deleted_at.map_or(0, |d| d.max(0) as u64),
                position: r.position,
            })
            .collect();
        let start = self.arena.len();
        self.arena.resize(start + MESSAGE_MAX, 0);
        let mut w = Writer::new(&mut self.arena[start..]);
        let len = match encode_character_list(
            &mut w,
            self.services.settings.max_characters,
            &summaries,
        ) {
            Ok(()) => w.position(),
            Err(_) => 0,
        };
        self.arena.truncate(start + len);
        if len == 0 {
            tracing::error!("a character list did not encode");
            self.refuse(handle, client_type::CHARACTER_LIST, RefusalReason::Internal);
            return;
        }
        self.queue.push_back(Queued::Message {
            handle,
            channel: Channel::ReliableOrdered,
            start,
            len,
        });
    }

    fn enter_failed(&mut self, handle: ConnectionHandle, reason: RefusalReason) {
        self.transition(handle, |s| match s {
            Session::Entering(e) => Session::Authenticated(e.failed()),
            other => other,
        });
        self.refuse(handle, client_type::ENTER_TO_WORLD, reason);
    }

    fn on_loaded(&mut self, handle: ConnectionHandle, character_id: u64, answer: StoreAnswer) {
        let Some(Session::Entering(entering)) = self.sessions.get(&handle).map(|s| &s.session)
        else {
            return;
        };
        let account = entering.account.clone();
        let record = match answer {
            Ok(StoreResponse::Loaded(Some(r))) => r,
            Ok(StoreResponse::Loaded(None)) => {
                return self.enter_failed(handle, RefusalReason::NoSuchCharacter);
            }
            _ => return self.enter_failed(handle, RefusalReason::StoreUnavailable),
        };
        if record.account.0 != account.id {
            // Someone else's character: indistinguishable from none.
            return self.enter_failed(handle, RefusalReason::NoSuchCharacter);
        }
        if record.deleted_at.is_some() {
            return self.enter_failed(handle, RefusalReason::CharacterDeleted);
        }
        if let Some(cluster) = &self.cluster {
            if self.shard.is_foreign(record.position) {
                bump(&self.services.counters.cluster_wrong_node_total);
                let quadrant = self.shard.world().quadrant_of(record.position);
                let to = cluster
                    .view
                    .owner_index(quadrant)
                    .filter(|&n| n != cluster.view.me);
                if let (Some(to), true) = (to, cluster.view.is_up()) {
                    // Sent to the node of its ground, like a crossing.
                    return self.redirect(handle, account, &record, to);
                }
                // No NATS, no hand-off: the client is refused and the log
                // says where the character's ground is served.
                let owner = cluster.view.owner(quadrant).cloned();
                tracing::info!(
                    character_id,
                    ?quadrant,
                    node = owner.as_ref().map_or("?", |n| n.name.as_str()),
                    address = owner.as_ref().map_or("?", |n| n.address.as_str()),
                    "a character's saved position is another node's: connect there"
                );
                return self.enter_failed(handle, RefusalReason::EnterFailed);
            }
        }
        let claimed = self.services.registry.claim(OnlineEntry {
            character_id,
            name: record.name.clone(),
            account_id: account.id,
            core: self.core,
        });
        if !claimed {
            return self.enter_failed(handle, RefusalReason::CharacterInUse);
        }
        let character = self.playing(
            record.name.clone(),
            record.template,
            record.faction,
            record.state(),
        );
        let transfer = SessionTransfer { account, character };
        if self.cluster.is_some() {
            return self.take_lease(handle, transfer);
        }
        self.sessions.remove(&handle);
        self.place(handle, transfer);
    }

    /// A character as it plays, from its saved (or handed-over) state.
    fn playing(
        &self,
        name: String,
        template: u16,
        faction: u8,
        saved: CharacterState,
    ) -> PlayingCharacter {
        let data = &self.services.data;
        let (hp_max, mp_max) = data
            .template(template)
            .and_then(|t| data.stats_at(t, saved.level))
            .map_or((saved.hp.max(1.0), saved.mp.max(0.0)), |s| {
                (s.hp_max as f32, s.mp_max as f32)
            });
        let (inventory, lost) = crate::inventory::Inventory::from_saved(
            &saved.items,
            crate::inventory::CAPACITY,
            crate::inventory::WEIGHT_LIMIT,
        );
        if lost > 0 {
            // Only a hand-edited row gets here; the next save writes the
            // inventory as loaded.
            tracing::error!(
                character_id = saved.id.0,
                lost,
                "saved items found no inventory slot"
            );
        }
        PlayingCharacter {
            id: saved.id.0,
            name,
            template,
            faction,
            hp_max,
            mp_max,
            saved,
            saved_items: 0,
            inventory: Box::new(inventory),
            chat: crate::chat::ChatLimiter::default(),
        }
    }

    /// Asks the cluster thread for the character's lease; the character
    /// enters when it is taken ([`GameCore::on_cluster`]).
    fn take_lease(&mut self, handle: ConnectionHandle, transfer: SessionTransfer) {
        if self.cluster.is_none() {
            return;
        }
        let character = transfer.character.id;
        let op = crate::cluster::ClusterOp::Acquire {
            character,
            name: transfer.character.name.clone(),
        };
        let pending = Pending::Lease {
            handle,
            transfer: Box::new(transfer),
        };
        if self.submit_cluster(op, pending).is_err() {
            self.services.registry.release(character);
            self.enter_failed(handle, RefusalReason::ServerBusy);
        }
    }

    /// A message from the cluster thread.
    fn on_cluster(&mut self, reply: crate::cluster::ClusterReply) {
        use crate::cluster::{ClusterAnswer, ClusterReply, WhisperAnswer};
        match reply {
            ClusterReply::Answer { request, answer } => {
                match (self.pending.remove(&request), answer) {
                    (Some(Pending::Lease { handle, transfer }), ClusterAnswer::Lease(lease)) => {
                        self.on_lease(handle, *transfer, lease)
                    }
                    (
                        Some(Pending::Crossing {
                            handle,
                            client,
                            secret,
                            to,
                        }),
                        ClusterAnswer::Crossing(outcome),
                    ) => self.on_crossing(handle, client, secret, to, outcome),
                    (
                        Some(Pending::NpcCrossing { departure }),
                        ClusterAnswer::Crossing(outcome),
                    ) => self.on_npc_crossing(*departure, outcome),
                    (Some(Pending::Arrival { handle }), ClusterAnswer::Arrival(arrival)) => {
                        self.on_arrival(handle, arrival)
                    }
                    (
                        Some(Pending::Redirect { handle, record, to }),
                        ClusterAnswer::Lease(lease),
                    ) => self.on_redirect_lease(handle, &record, to, lease),
                    (
                        Some(Pending::Redirecting {
                            handle,
                            secret,
                            to,
                            character,
                        }),
                        ClusterAnswer::Crossing(outcome),
                    ) => self.on_redirected(handle, secret, to, character, outcome),
                    (
                        Some(Pending::Whisper {
                            handle,
                            request,
                            to,
                            text,
                        }),
                        ClusterAnswer::Whisper(w),
                    ) => match w {
                        WhisperAnswer::Sent => {
                            bump(&self.services.counters.whispers_total);
                            let echo = ServerMessage::ChatMessage {
                                channel: tos_protocol::wire::game::ChatChannel::WhisperSent,
                                from: &to,
                                text: &text,
                            };
                            self.reliable(handle, &echo);
                        }
                        WhisperAnswer::NoSuchPlayer => {
                            self.refuse(handle, request, RefusalReason::NoSuchPlayer)
                        }
                        WhisperAnswer::Unavailable => {
                            self.refuse(handle, request, RefusalReason::ServerBusy)
                        }
                    },
                    (Some(other), answer) => {
                        tracing::error!(?other, ?answer, "a cluster answer of the wrong kind");
                    }
                    (None, _) => {}
                }
            }
            ClusterReply::Whisper { from, to, text } => {
                self.chat_arrived(crate::chat::ChatLine {
                    channel: tos_protocol::wire::game::ChatChannel::Whisper,
                    from,
                    text,
                    audience: crate::chat::Audience::Character(to),
                    forwards: 0,
                });
            }
            ClusterReply::LeaseLost { character } => self.lease_lost(character),
            ClusterReply::Unclaimed(record) => self.unclaimed(*record),
            ClusterReply::Arrived(record) => self.save_now(record.state),
            ClusterReply::NpcArrived(npc) => self.npc_arrived(*npc),
            ClusterReply::Effect { effect, from } => self.effect_from_node(effect, from),
            ClusterReply::Combat(outcome) => self.combat_from_node(outcome),
            ClusterReply::Chat { from, text, near } => self.chat_from_node(from, text, near),
            ClusterReply::Ghosts(batch) => {
                self.shard.accept_node_ghosts(batch);
            }
        }
    }

    fn on_lease(
        &mut self,
        handle: ConnectionHandle,
        transfer: SessionTransfer,
        lease: crate::cluster::LeaseAnswer,
    ) {
        use crate::cluster::LeaseAnswer;
        let character = transfer.character.id;
        let entering = matches!(
            self.sessions.get(&handle).map(|s| &s.session),
            Some(Session::Entering(_))
        );
        match lease {
            LeaseAnswer::Taken if entering => {
                self.sessions.remove(&handle);
                self.place(handle, transfer);
            }
            // The client left while the lease was taken: give it back.
            LeaseAnswer::Taken => self.release_character(character),
            LeaseAnswer::HeldBy(node) => {
                tracing::info!(character, node = %node, "refused: the character is live on another node");
                self.services.registry.release(character);
                self.enter_failed(handle, RefusalReason::CharacterInUse);
            }
            LeaseAnswer::Unavailable => {
                // The rule: no lease, no entering (a character could else
                // be live on two nodes once NATS returns).
                bump(&self.services.counters.cluster_unavailable_total);
                self.services.registry.release(character);
                self.enter_failed(handle, RefusalReason::ServerBusy);
            }
        }
    }

    /// Another node holds the lease of a character playing here: it stops
    /// here without a save (the other node's state is the one that counts).
    fn lease_lost(&mut self, character: u64) {
        let found = self
            .in_world
            .iter()
            .copied()
            .find(|&(_, h)| self.in_game_character(h) == Some(character));
        let Some((client, handle)) = found else {
            return;
        };
        tracing::warn!(
            character,
            "lease lost to another node: the character stops here unsaved"
        );
        let _ = self.shard.remove_player(client);
        self.in_world.retain(|&(c, _)| c != client);
        self.by_client.remove(&client);
        self.sessions.remove(&handle);
        self.services.registry.release(character);
        bump(&self.services.counters.cluster_leases_lost_total);
        self.output(Output::Close {
            handle,
            reason: tos_protocol::wire::control::DisconnectReason::Kicked,
        });
    }

    fn in_game_character(&self, handle: ConnectionHandle) -> Option<u64> {
        match self.sessions.get(&handle).map(|s| &s.session) {
            Some(Session::InGame(g)) => Some(g.character.id),
            _ => None,
        }
    }

    /// Puts a loaded character into this core's world, or sends it with its
    /// connection to the core that owns its position.
    fn place(&mut self, handle: ConnectionHandle, transfer: SessionTransfer) {
        let c = &transfer.character;
        let character = Character {
            character_id: c.id,
            position: c.saved.position,
            yaw: c.saved.yaw,
            faction: Faction(c.faction),
            hp: c.saved.hp,
            mp: c.saved.mp,
            hp_max: c.hp_max,
            mp_max: c.mp_max,
            level: c.saved.level,
            exp: c.saved.exp,
            template: c.template,
            stats: self
                .services
                .data
                .template(c.template)
                .map_or(tos_shards::combat::DEFAULT_STATS, |t| t.stats),
        };
        let client = ClientId(self.next_client.fetch_add(1, Ordering::Relaxed));
        match self.shard.add_player(client, &character) {
            Ok(_) => {
                let entity_id = self.shard.player_of(client).unwrap_or(0);
                let position = self
                    .shard
                    .entity(entity_id)
                    .map_or(character.position, |e| e.record.position);
                let SessionTransfer { account, character } = transfer;
                let character_id = character.id;
                let address = SocketAddr::from(([0, 0, 0, 0], 0));
                let session = Session::InGame(InGame {
                    address,
                    account,
                    character,
                    client,
                });
                self.sessions.insert(handle, Slot::new(session));
                self.in_world.push((client, handle));
                self.by_client.insert(client, handle);
                self.services.registry.moved(character_id, self.core);
                bump(&self.services.counters.enters_total);
                // The velocity step is the one claims are dequantized with.
                let world = WorldParams::from_quantizer(
                    self.shard.world().quantizer(),
                    1.0,
                    self.shard.movement_rules().max_speed,
                );
                self.reliable(
                    handle,
                    &ServerMessage::WorldEntered {
                        entity_id,
                        server_tick: self.tick,
                        character_id,
                        position,
                        yaw: character_yaw(&self.shard, entity_id),
                        world,
                    },
                );
                self.entered(handle, client);
            }
            Err(ShardError::WrongShard { owner }) => {
                self.output(Output::ToCore {
                    core: owner,
                    msg: PeerMessage::Enter {
                        session: Box::new(transfer),
                    },
                    connection: Some(handle),
                });
            }
            Err(e) => {
                let reason = if matches!(e, ShardError::ClientsFull { .. }) {
                    RefusalReason::ServerFull
                } else {
                    RefusalReason::EnterFailed
                };
                tracing::warn!(error = %e, "a character could not enter");
                self.release_character(transfer.character.id);
                let SessionTransfer { account, .. } = transfer;
                // Back to the selection screen with a refusal.
                let address = SocketAddr::from(([0, 0, 0, 0], 0));
                self.sessions.insert(
                    handle,
                    Slot::new(Session::Authenticated(Authenticated::new(address, account))),
                );
                self.refuse(handle, client_type::ENTER_TO_WORLD, reason);
            }
        }
    }

    // ------------------------------------------------------------------
    // Other cores
    // ------------------------------------------------------------------

    /// A message from another core's game layer; `connection` is the handle
    /// its player's connection got here, when one moved with it.
    pub fn handle_peer(&mut self, msg: PeerMessage, connection: Option<ConnectionHandle>) {
        match msg {
            PeerMessage::Ghosts(batch) => self.shard.accept_ghosts(batch),
            PeerMessage::Chat(line) => self.chat_arrived(*line),
            PeerMessage::Effect(e) => {
                // The target may have died or moved on since the caster saw
                // its ghost: counted, nothing to undo.
                if self.shard.apply_remote_effect(e).is_err() {
                    bump(&self.services.counters.shard_refused_total);
                }
            }
            PeerMessage::Enter { session } => match connection {
                Some(handle) => self.place(handle, *session),
                None => self.release_character(session.character.id),
            },
            PeerMessage::Handoff { handoff, session } => {
                let client = handoff.client.as_ref().map(|c| c.client());
                match self.shard.accept_handoff(*handoff) {
                    Ok(_) => {
                        if let (Some(client), Some(handle), Some(s)) = (client, connection, session)
                        {
                            let SessionTransfer { account, character } = *s;
                            self.services.registry.moved(character.id, self.core);
                            let address = SocketAddr::from(([0, 0, 0, 0], 0));
                            self.sessions.insert(
                                handle,
                                Slot::new(Session::InGame(InGame {
                                    address,
                                    account,
                                    character,
                                    client,
                                })),
                            );
                            self.in_world.push((client, handle));
                            self.by_client.insert(client, handle);
                        }
                    }
                    Err(rejected) => {
                        // Never lose it: send it back where it came from.
                        let back = rejected.handoff;
                        let to = back.from_core;
                        self.output(Output::ToCore {
                            core: to,
                            msg: PeerMessage::Handoff {
                                handoff: Box::new(back),
                                session,
                            },
                            connection,
                        });
                    }
                }
            }
        }
    }

    /// A message for another core came back (its inbox was full);
    /// `connection` is the handle its connection got back here. Messages
    /// that carry a player or an entity are sent again on the next tick.
    pub fn handle_bounced(
        &mut self,
        core: u16,
        msg: PeerMessage,
        connection: Option<ConnectionHandle>,
    ) {
        if msg.must_arrive() {
            bump(&self.services.counters.peer_bounced_total);
            self.bounced.push((core, msg, connection));
        } else {
            bump(&self.services.counters.peer_dropped_total);
        }
    }

    // ------------------------------------------------------------------
    // The tick
    // ------------------------------------------------------------------

    /// Runs the world's tick: moves, actions, hand-offs, ghosts, saves; the
    /// snapshots follow through [`GameCore::poll_output`].
    pub fn handle_tick(&mut self, tick: u32) {
        self.tick = tick;
        self.unix = unix_now();
        for (core, msg, connection) in std::mem::take(&mut self.bounced) {
            self.output(Output::ToCore {
                core,
                msg,
                connection,
            });
        }
        self.open_borders();
        self.shard.tick(tick);
        let mut buf = [0u8; 64];
        // Corrections go reliably: a claim rejected within a round trip of a
        // correction is not corrected again.
        for i in 0..self.shard.corrections().len() {
            let c = self.shard.corrections()[i];
            if c.reason == tos_shards::MoveRejection::NodeBorder {
                bump(&self.services.counters.cluster_border_held_total);
            }
            if let Some(handle) = self.handle_of(c.client) {
                let n = encode_small(&c.message(), &mut buf);
                self.queue_bytes(handle, &buf[..n]);
            }
        }
        for i in 0..self.shard.action_results().len() {
            let a = self.shard.action_results()[i];
            if let Some(handle) = self.handle_of(a.client) {
                let n = encode_small(&a.message(), &mut buf);
                self.queue_bytes(handle, &buf[..n]);
                self.action_settled(a.client, a.input_seq);
            }
        }
        // Loot, experience, level-ups, combat: before the hand-offs below
        // move any session away.
        self.handle_events();
        // Players stepping onto other nodes' ground, and old connections
        // of players sent there; NPCs walking there.
        self.zone_tick();
        self.npc_zone_tick();
        // Entities crossing into other cores' quadrants, with their players.
        self.handoffs.extend(self.shard.take_handoffs());
        let mut handoffs = std::mem::take(&mut self.handoffs);
        for h in handoffs.drain(..) {
            let to = h.to_core;
            let moving = h.client.as_ref().map(|c| c.client()).and_then(|client| {
                let handle = self.handle_of(client)?;
                self.in_world.retain(|&(c, _)| c != client);
                self.by_client.remove(&client);
                let slot = self.sessions.remove(&handle)?;
                match slot.session {
                    Session::InGame(g) => Some((
                        handle,
                        SessionTransfer {
                            account: g.account,
                            character: g.character,
                        },
                    )),
                    _ => None,
                }
            });
            let (connection, session) = match moving {
                Some((handle, s)) => (Some(handle), Some(Box::new(s))),
                None => (None, None),
            };
            self.output(Output::ToCore {
                core: to,
                msg: PeerMessage::Handoff {
                    handoff: Box::new(h),
                    session,
                },
                connection,
            });
        }
        self.handoffs = handoffs;
        self.ghosts.clear();
        self.shard.publish_ghosts(&mut self.ghosts);
        for batch in self.ghosts.drain(..) {
            let core = batch.to_core;
            self.queue.push_back(Queued::Other(Output::ToCore {
                core,
                msg: PeerMessage::Ghosts(batch),
                connection: None,
            }));
        }
        if let Some(cluster) = &self.cluster {
            self.shard.take_node_ghosts(&mut self.node_ghosts);
            let up = cluster.view.is_up();
            for batch in self.node_ghosts.drain(..) {
                // While NATS is down nothing can carry them: the other
                // node's ghosts of ours age out there.
                let unsent = if up {
                    cluster.view.send_ghosts(batch).err()
                } else {
                    Some(batch)
                };
                if let Some(batch) = unsent {
                    bump(&self.services.counters.zone_ghost_batches_dropped_total);
                    self.shard.recycle_ghosts(batch.ghosts);
                }
            }
        }
        let cores = self.shard.world().cores();
        let mut effects = std::mem::take(&mut self.effects);
        effects.extend(self.shard.take_remote_effects());
        for e in effects.drain(..) {
            match tos_shards::peer_node(cores, e.to_core) {
                Some(node) => self.effect_to_node(usize::from(node), e),
                None => self.queue.push_back(Queued::Other(Output::ToCore {
                    core: e.to_core,
                    msg: PeerMessage::Effect(e),
                    connection: None,
                })),
            }
        }
        self.effects = effects;
        // A tick number can be skipped when a core runs late, so passes run
        // on the first tick at or past each multiple of the interval (all
        // cores share the tick grid, so their passes stay together and the
        // store writes them in one transaction).
        if tick >= self.next_save {
            self.save_changed();
            self.next_save = (tick / self.save_every + 1) * self.save_every;
        }
        self.snap_cursor = 0;
        self.snap_tick = tick;
    }

    fn queue_bytes(&mut self, handle: ConnectionHandle, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        self.queue.push_back(Queued::Message {
            handle,
            channel: Channel::ReliableOrdered,
            start,
            len: bytes.len(),
        });
    }

    fn handle_of(&self, client: ClientId) -> Option<ConnectionHandle> {
        self.by_client.get(&client).copied()
    }

    /// Hands every character that changed since its last save to the
    /// store's write-behind queue.
    fn save_changed(&mut self) {
        for i in 0..self.in_world.len() {
            let (client, handle) = self.in_world[i];
            if self.is_frozen(client) {
                // Its record is on its way to another node: the outcome
                // decides which node saves it.
                continue;
            }
            let Some(net) = self.shard.player_of(client) else {
                continue;
            };
            let Some(slot) = self.sessions.get_mut(&handle) else {
                continue;
            };
            let Session::InGame(g) = &mut slot.session else {
                continue;
            };
            // Pick-up reservations whose verdict never came, and spent
            // cooldowns: once per save interval is soon enough.
            g.character.inventory.expire(self.tick);
            let Some(info) = self.shard.entity(net) else {
                continue;
            };
            let state = persist::current_state(&info, &g.character);
            if !persist::changed(&g.character, &state) {
                continue;
            }
            let state = persist::with_items(state, &g.character);
            if self.store.save(state.clone()) {
                g.character.saved = state;
                g.character.saved_items = g.character.inventory.revision();
                bump(&self.services.counters.saves_queued_total);
            } else {
                // Still marked changed: tried again next interval.
                bump(&self.services.counters.saves_deferred_total);
            }
        }
    }

    /// The server is stopping: every character on this core is saved at
    /// once and leaves the world (the runtime then closes the connections
    /// and flushes the store).
    pub fn shutdown(&mut self) {
        let handles: Vec<ConnectionHandle> = self.in_world.iter().map(|(_, h)| *h).collect();
        for handle in handles {
            self.handle_closed(handle);
        }
    }
}

fn character_yaw(shard: &Shard, net: u32) -> f32 {
    shard.entity(net).map_or(0.0, |e| e.record.rotation[1])
}

fn encode_small(msg: &ServerMessage<'_>, out: &mut [u8]) -> usize {
    let mut w = Writer::new(out);
    if msg.encode(&mut w).is_err() {
        return 0;
    }
    w.position()
}

fn selection_type(what: Selection) -> u8 {
    match what {
        Selection::List => client_type::CHARACTER_LIST,
        Selection::Create => client_type::CHARACTER_CREATE,
        Selection::Delete => client_type::CHARACTER_DELETE,
        Selection::Restore => client_type::CHARACTER_RESTORE,
    }
}

/// The refusal a store error means to a client.
fn refusal_of(e: &StoreError) -> RefusalReason {
    match e {
        StoreError::NameTaken => RefusalReason::NameTaken,
        StoreError::TooManyCharacters => RefusalReason::TooManyCharacters,
        StoreError::NotFound => RefusalReason::NoSuchCharacter,
        StoreError::NotDeleted => RefusalReason::CharacterNotDeleted,
        StoreError::RestoreExpired => RefusalReason::RestoreExpired,
        _ => RefusalReason::StoreUnavailable,
    }
}
