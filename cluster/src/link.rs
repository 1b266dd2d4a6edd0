//! `NatsLink`: this node's connection to the cluster, on a thread of its
//! own. The rest of the process talks to it only through two bounded
//! channels of plain values: [`LinkCommand`]s in, [`LinkEvent`]s out, the
//! way quinn's endpoint and connections exchange events. Inside the thread
//! a tokio current-thread runtime drives `async-nats`; tokio appears
//! nowhere else in the process.
//!
//! # Hand-offs: exactly one owner
//!
//! An entity moves with its character's lease (see [`crate::directory`]).
//! The sender offers the entity and the lease revision it holds; the
//! receiver takes the lease by compare-and-swap on that revision, and only
//! then runs the entity and acknowledges. If the acknowledgement does not
//! come back in time (lost message, slow or dead receiver, NATS trouble),
//! the sender settles the hand-off through the directory: it swaps the
//! lease back to itself at the same revision. Exactly one of the two swaps
//! can succeed, so:
//!
//! - the sender's swap wins: the receiver's later swap fails, the receiver
//!   drops the offer ([`LinkEvent::NotTaken`]) and the sender keeps the
//!   entity ([`HandoffOutcome::Kept`]);
//! - the receiver's swap won (only the ack was lost): the sender's swap
//!   fails, it reads the lease, finds the receiver and forgets the entity
//!   ([`HandoffOutcome::Delivered`]).
//!
//! Never both, never neither. Until the outcome arrives the sender must keep
//! the entity frozen (not simulated, not saved). While the directory cannot
//! be reached the settlement is retried, so an outcome may wait for NATS to
//! come back; a hand-off asked for while NATS is down is refused at once
//! with [`KeptReason::NatsDown`] and nothing is sent.
//!
//! An entity without a character (an NPC) moves the same way with a
//! **transit lease** made for the one hand-off
//! ([`LinkCommand::HandOffTransit`]): the sender creates it (a key with
//! [`TRANSIT_BIT`] set, `t.<hex>` in the leases bucket), offers, and the
//! two compare-and-swaps decide as above. Nobody renews a transit lease or
//! lists it online; it ages out of the bucket one lease TTL after its last
//! swap. One case the directory cannot decide: a sender whose settlement
//! cannot reach NATS for longer than that TTL finds no lease at all, and
//! keeps the NPC (a copy exists twice only if the receiver had taken it and
//! its acknowledgement was the message lost).
//!
//! # Bounds
//!
//! Commands and events travel on bounded crossbeam channels. At most
//! `max_pending` operations run at once and at most `max_pending` offers
//! wait for the game layer; past that, commands stay in their channel
//! ([`LinkError::Busy`] when it is full) and offers are refused as
//! [`RefuseReason::Busy`]. An event that does not fit the event channel is
//! kept in a backlog, and while the backlog is not empty the link starts no
//! new work; since every operation yields at most two events, the backlog
//! is bounded by the number of operations in flight.
//!
//! Ghost batches, skill effects and their outcomes are the exception:
//! published without an answer (ghosts: at most 64 waiting on the
//! connection) and passed on only when the event channel has room, never
//! backlogged. A lost batch is counted ([`LinkStats::ghosts_lost`]); the
//! next tick's replaces it. A lost effect or outcome is counted
//! ([`LinkStats::effects_lost`]): at most once, like a whisper.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::{
    Client, ConnectOptions, Request, client::RequestErrorKind, connection::State as ConnState,
};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::directory::{Directory, DirectoryError, LeaseState, Storage};
use crate::file::{Cluster, check_name};
use crate::wire::{self, HandoffOffer, HandoffReply, RefuseReason};

/// What the link needs to know; [`LinkConfig::for_node`] fills it from the
/// cluster file.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The cluster's name: prefix of subjects and buckets.
    pub cluster: String,
    /// This node's name.
    pub node: String,
    /// The NATS server to connect to.
    pub nats_url: String,
    /// Lease lifetime without renewal; renewals run every quarter of it.
    pub lease_ttl: Duration,
    /// How long a sender waits for an acknowledgement before settling the
    /// hand-off through the directory. Also how long an offer waits for
    /// the game layer's answer.
    pub handoff_timeout: Duration,
    /// Where the directory's buckets keep their data.
    pub storage: Storage,
    /// Capacity of the command channel.
    pub command_capacity: usize,
    /// Capacity of the event channel.
    pub event_capacity: usize,
    /// Most operations in flight, and most offers waiting for the game.
    pub max_pending: usize,
    /// Fault injection for tests: take hand-offs but never send the
    /// acknowledgement, as if every ack were lost on the way.
    pub drop_acks: bool,
}

impl LinkConfig {
    /// Defaults for a node of a cluster named `cluster`.
    pub fn new(cluster: &str, node: &str, nats_url: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            nats_url: nats_url.to_owned(),
            lease_ttl: Duration::from_secs(30),
            handoff_timeout: Duration::from_secs(2),
            storage: Storage::File,
            command_capacity: 1024,
            event_capacity: 1024,
            max_pending: 256,
            drop_acks: false,
        }
    }

    /// The settings of node `index` of a validated cluster file.
    pub fn for_node(cluster: &Cluster, index: usize) -> Option<Self> {
        let node = cluster.nodes().get(index)?;
        let mut config = Self::new(cluster.name(), &node.name, &node.nats_url);
        config.lease_ttl = cluster.lease_ttl();
        config.handoff_timeout = cluster.handoff_timeout();
        Some(config)
    }
}

/// What the process asks of the link. `handoff`, `token` and `request`
/// numbers come back in the matching events.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkCommand {
    /// Offer an entity whose character lease this node holds to node `to`.
    /// Answered by [`LinkEvent::Handoff`]; keep the entity frozen until then.
    HandOff {
        /// The caller's number for this hand-off.
        handoff: u64,
        /// The receiving node.
        to: String,
        /// The character whose lease moves.
        character: u64,
        /// The entity's record (at most [`wire::MAX_PAYLOAD`] bytes).
        payload: Vec<u8>,
    },
    /// Offer an entity that has no character (an NPC) to node `to`, under
    /// a transit lease made for this hand-off (`key`: unique in the
    /// cluster, [`TRANSIT_BIT`] set). Answered by [`LinkEvent::Handoff`]
    /// like [`LinkCommand::HandOff`]; keep the entity frozen until then.
    HandOffTransit {
        /// The caller's number for this hand-off.
        handoff: u64,
        /// The receiving node.
        to: String,
        /// The transit lease's key ([`transit_key`]).
        key: u64,
        /// The entity's record (at most [`wire::MAX_PAYLOAD`] bytes).
        payload: Vec<u8>,
    },
    /// Take an offered entity ([`LinkEvent::Offer`]): answered by
    /// [`LinkEvent::Taken`] (run it) or [`LinkEvent::NotTaken`] (drop it).
    Accept {
        /// The offer's token.
        token: u64,
    },
    /// Refuse an offered entity; the sender keeps it.
    Refuse {
        /// The offer's token.
        token: u64,
        /// Why, as the sender will see it.
        reason: RefuseReason,
    },
    /// Take the lease of a character logging in here, and list the player
    /// as online here. Answered by [`DirectoryAnswer::Acquired`] or
    /// [`DirectoryError::Conflict`] naming the node that holds it.
    Acquire {
        /// The caller's number for this request.
        request: u64,
        /// The character.
        character: u64,
        /// Its name, for the online registry.
        name: String,
    },
    /// Give up the lease of a character logging out here.
    Release {
        /// The caller's number for this request.
        request: u64,
        /// The character.
        character: u64,
    },
    /// Which node holds a character's lease.
    FindLease {
        /// The caller's number for this request.
        request: u64,
        /// The character.
        character: u64,
    },
    /// Where a player is online, by name (for whispers).
    FindPlayer {
        /// The caller's number for this request.
        request: u64,
        /// The player's character name, any case.
        name: String,
    },
    /// Record this node as the owner of these quadrants.
    ClaimQuadrants {
        /// The caller's number for this request.
        request: u64,
        /// The quadrants, `(x, y, z)`.
        quadrants: Vec<[u16; 3]>,
    },
    /// Remove this node's claims on these quadrants.
    UnclaimQuadrants {
        /// The caller's number for this request.
        request: u64,
        /// The quadrants, `(x, y, z)`.
        quadrants: Vec<[u16; 3]>,
    },
    /// Which node claimed a quadrant.
    FindQuadrant {
        /// The caller's number for this request.
        request: u64,
        /// The quadrant, `(x, y, z)`.
        quadrant: [u16; 3],
    },
    /// Send a whisper to a player on node `to` (core NATS, at most once:
    /// a node that is not running does not get it). Answered by
    /// [`DirectoryAnswer::Sent`] once published, or [`LinkError::NatsDown`].
    Whisper {
        /// The caller's number for this request.
        request: u64,
        /// The recipient's node.
        to: String,
        /// The line.
        line: wire::WhisperLine,
    },
    /// Publish a shout, or a say near a node border, to every other node
    /// (core NATS, at most once, no answer). Dropped and counted while
    /// NATS is down.
    Chat(wire::ChatBroadcast),
    /// Publish a skill's effect on an entity of node `to` (core NATS, at
    /// most once, no answer). Dropped and counted while NATS is down.
    Effect {
        /// The target's node.
        to: String,
        /// The effect.
        line: wire::EffectLine,
    },
    /// Publish what another node's effect did to the caster's node `to`
    /// (core NATS, at most once, no answer).
    Combat {
        /// The caster's node.
        to: String,
        /// The outcome.
        line: wire::CombatLine,
    },
    /// Publish a batch of ghosts to node `to` (core NATS, at most once, no
    /// answer: the next tick's batch replaces a lost one). Dropped and
    /// counted while NATS is down or too many publishes wait.
    Ghosts {
        /// The receiving node.
        to: String,
        /// The batch, in the game layer's own layout.
        payload: Vec<u8>,
    },
    /// Delete the cluster's directory buckets (tests, decommissioning).
    DropDirectory {
        /// The caller's number for this request.
        request: u64,
    },
}

/// What the link tells the process.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// NATS answers (at start, and after every reconnect).
    Up,
    /// NATS is unreachable; async-nats keeps reconnecting.
    Down,
    /// How a [`LinkCommand::HandOff`] ended.
    Handoff {
        /// The caller's number.
        handoff: u64,
        /// The character.
        character: u64,
        /// What to do with the entity.
        outcome: HandoffOutcome,
    },
    /// Another node offers an entity. Answer with [`LinkCommand::Accept`]
    /// or [`LinkCommand::Refuse`] within the hand-off timeout; do not run it
    /// before [`LinkEvent::Taken`].
    Offer {
        /// The token to answer with.
        token: u64,
        /// The sending node.
        from: String,
        /// The character.
        character: u64,
        /// Its name.
        name: String,
        /// The entity's record.
        payload: Vec<u8>,
    },
    /// This node now holds the lease of an accepted offer: run the entity.
    Taken {
        /// The offer's token.
        token: u64,
        /// The character.
        character: u64,
    },
    /// An offer was not taken after all (the sender settled first, or it
    /// waited too long): drop it; the sender keeps the entity.
    NotTaken {
        /// The offer's token.
        token: u64,
        /// Why.
        reason: RefuseReason,
    },
    /// The answer to a directory request.
    Reply {
        /// The caller's number.
        request: u64,
        /// The answer.
        result: Result<DirectoryAnswer, LinkError>,
    },
    /// A whisper from another node for a player here.
    Whisper(wire::WhisperLine),
    /// Another node's shout, or say near the border.
    Chat(wire::ChatBroadcast),
    /// Another node's skill effect on an entity here.
    Effect(wire::EffectLine),
    /// What this node's skill effect did on another node.
    Combat(wire::CombatLine),
    /// A batch of another node's ghosts (the game layer's own layout).
    /// Never backlogged: dropped and counted when the event channel is
    /// full, as the next tick's batch replaces it.
    Ghosts(Vec<u8>),
    /// A lease this node held now belongs to another node (it expired
    /// while NATS was away and another node took it): stop running the
    /// character without saving it.
    LeaseLost {
        /// The character.
        character: u64,
        /// The node that holds it now.
        owner: String,
    },
}

/// How a hand-off ended, for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoffOutcome {
    /// The receiver holds the lease and runs the entity: forget it.
    Delivered,
    /// This node still holds the lease: unfreeze the entity and keep it.
    Kept(KeptReason),
    /// A third node holds the lease now (the lease expired during a long
    /// NATS outage and the character logged in elsewhere): drop the entity.
    Superseded {
        /// The node that holds it.
        owner: String,
    },
}

/// Why the sender keeps an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptReason {
    /// NATS was down; nothing was sent.
    NatsDown,
    /// This node holds no lease for the character (acquire it first).
    NotHeld,
    /// The character is already being handed off.
    InProgress,
    /// The record could not be encoded (too large).
    Encode(wire::WireError),
    /// No node listens on the receiver's subject (it is not running).
    NoResponder,
    /// The receiver refused.
    Refused(RefuseReason),
    /// No acknowledgement in time; the directory says the lease stayed here.
    AckTimeout,
}

/// Answers to directory requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryAnswer {
    /// The lease is held here at this revision.
    Acquired {
        /// The lease revision.
        revision: u64,
    },
    /// The lease was given up.
    Released,
    /// A character's lease holder, if any: node and revision.
    Lease(Option<(String, u64)>),
    /// Where a player is online, if anywhere: node and character.
    Player(Option<(String, u64)>),
    /// The quadrants are claimed by this node.
    Claimed,
    /// This node's claims were removed.
    Unclaimed,
    /// A quadrant's claimed owner, if any.
    Quadrant(Option<String>),
    /// The directory buckets were deleted.
    Dropped,
    /// A whisper was published.
    Sent,
}

/// Why the link could not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// NATS is not connected: nothing was attempted.
    #[error("NATS is down")]
    NatsDown,
    /// The command channel is full: retry later.
    #[error("link busy: command queue full")]
    Busy,
    /// The link's thread has stopped.
    #[error("link closed")]
    Closed,
    /// This node holds no lease for that character.
    #[error("no lease held for this character")]
    NotHeld,
    /// The settings cannot work (bad name or URL, thread not started).
    #[error("bad link setting: {0}")]
    Config(String),
    /// The directory refused or failed.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// Set in the "character" of a transit lease: an entity without a
/// character (an NPC) in a hand-off. Character ids from the store are
/// positive `i64`s, so they never have it.
pub const TRANSIT_BIT: u64 = 1 << 63;

/// A transit lease key unique in the cluster: the sending node's index in
/// the cluster file and that node's own serial number for it.
pub fn transit_key(node: u16, serial: u64) -> u64 {
    TRANSIT_BIT | (u64::from(node) << 47) | (serial & ((1 << 47) - 1))
}

/// Whether `character` is a transit lease key ([`transit_key`]).
pub fn is_transit(character: u64) -> bool {
    character & TRANSIT_BIT != 0
}

/// Counters of the link, for the stats line.
#[derive(Debug, Default)]
struct Counters {
    offers_in: AtomicU64,
    malformed_in: AtomicU64,
    refused_busy: AtomicU64,
    delivered: AtomicU64,
    kept: AtomicU64,
    settled: AtomicU64,
    events_backlogged: AtomicU64,
    ghosts_out: AtomicU64,
    ghosts_in: AtomicU64,
    ghosts_lost: AtomicU64,
    chat_lost: AtomicU64,
    effects_lost: AtomicU64,
}

/// A snapshot of the link's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Offers received.
    pub offers_in: u64,
    /// Offers that could not be decoded.
    pub malformed_in: u64,
    /// Offers refused because too many were waiting.
    pub refused_busy: u64,
    /// Hand-offs sent and delivered.
    pub delivered: u64,
    /// Hand-offs that ended with the sender keeping the entity.
    pub kept: u64,
    /// Hand-offs settled through the directory (no ack in time).
    pub settled: u64,
    /// Events that waited in the backlog because the channel was full.
    pub events_backlogged: u64,
    /// Ghost batches published.
    pub ghosts_out: u64,
    /// Ghost batches received and passed on.
    pub ghosts_in: u64,
    /// Ghost batches dropped here (NATS down, too many publishes waiting,
    /// the event channel full, over-long).
    pub ghosts_lost: u64,
    /// Shouts and says for other nodes not sent (NATS down, too long).
    pub chat_lost: u64,
    /// Effects and their outcomes lost here: for other nodes, not sent
    /// (NATS down, malformed); from other nodes, not passed on (the event
    /// channel full).
    pub effects_lost: u64,
}

/// The running link; dropping it stops the thread.
#[derive(Debug)]
pub struct NatsLink {
    commands: Sender<LinkCommand>,
    events: Receiver<LinkEvent>,
    wake: Arc<Notify>,
    stop: Arc<AtomicBool>,
    up: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl NatsLink {
    /// Starts the link's thread. Returns at once: the connection is made in
    /// the background ([`LinkEvent::Up`] when it is), so a node starts even
    /// while NATS is down.
    pub fn start(config: LinkConfig) -> Result<Self, LinkError> {
        check_name(&config.cluster).map_err(|w| LinkError::Config(format!("cluster: {w}")))?;
        check_name(&config.node).map_err(|w| LinkError::Config(format!("node: {w}")))?;
        async_nats::ServerAddr::from_str(&config.nats_url)
            .map_err(|e| LinkError::Config(format!("nats_url {:?}: {e}", config.nats_url)))?;
        if config.max_pending == 0 || config.command_capacity == 0 || config.event_capacity == 0 {
            return Err(LinkError::Config("capacities must be at least 1".into()));
        }
        let (commands, command_rx) = crossbeam_channel::bounded(config.command_capacity);
        let (event_tx, events) = crossbeam_channel::bounded(config.event_capacity);
        let wake = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let up = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let shared = Shared {
            config: config.clone(),
            commands: command_rx,
            events: event_tx,
            wake: wake.clone(),
            stop: stop.clone(),
            up: up.clone(),
            counters: counters.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("nats-{}", config.node))
            .spawn(move || run_thread(shared))
            .map_err(|e| LinkError::Config(format!("cannot start the link thread: {e}")))?;
        Ok(Self {
            commands,
            events,
            wake,
            stop,
            up,
            counters,
            thread: Some(thread),
        })
    }

    /// Queues a command without blocking.
    pub fn send(&self, command: LinkCommand) -> Result<(), LinkError> {
        match self.commands.try_send(command) {
            Ok(()) => {
                self.wake.notify_one();
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(LinkError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(LinkError::Closed),
        }
    }

    /// The events, to poll with `try_recv` (or wait on with `recv_timeout`).
    pub fn events(&self) -> &Receiver<LinkEvent> {
        &self.events
    }

    /// Whether NATS answered at the last check (every 20 ms).
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// The link's counters.
    pub fn stats(&self) -> LinkStats {
        let c = &self.counters;
        LinkStats {
            offers_in: c.offers_in.load(Relaxed),
            malformed_in: c.malformed_in.load(Relaxed),
            refused_busy: c.refused_busy.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            kept: c.kept.load(Relaxed),
            settled: c.settled.load(Relaxed),
            events_backlogged: c.events_backlogged.load(Relaxed),
            ghosts_out: c.ghosts_out.load(Relaxed),
            ghosts_in: c.ghosts_in.load(Relaxed),
            ghosts_lost: c.ghosts_lost.load(Relaxed),
            chat_lost: c.chat_lost.load(Relaxed),
            effects_lost: c.effects_lost.load(Relaxed),
        }
    }
}

impl Drop for NatsLink {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        self.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the thread receives from [`NatsLink::start`].
struct Shared {
    config: LinkConfig,
    commands: Receiver<LinkCommand>,
    events: Sender<LinkEvent>,
    wake: Arc<Notify>,
    stop: Arc<AtomicBool>,
    up: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

/// A lease this node holds.
#[derive(Debug)]
struct Held {
    name: String,
    revision: u64,
    online_revision: Option<u64>,
    handing_off: bool,
}

/// An offer waiting for the game layer.
#[derive(Debug)]
struct Pending {
    reply: Option<async_nats::Subject>,
    character: u64,
    name: String,
    revision: u64,
    received: Instant,
}

/// The link's state, shared by the tasks of its one thread.
struct State {
    held: HashMap<u64, Held>,
    offers: HashMap<u64, Pending>,
    next_token: u64,
    in_flight: usize,
    backlog: VecDeque<LinkEvent>,
    directory: Option<Directory>,
    renewing: bool,
    /// Ghost publishes not finished yet (bounded by [`MAX_GHOST_PUBLISHES`]).
    ghost_publishes: usize,
}

/// Ghost publishes that may wait on the connection at once; past it a
/// batch is dropped (the connection is stalled: the next tick's batch
/// would be stale by the time it went out anyway).
const MAX_GHOST_PUBLISHES: usize = 64;

/// Largest ghost batch carried (bytes): NATS's default message limit.
pub const MAX_GHOST_BATCH: usize = 1024 * 1024;

/// Everything a task needs.
#[derive(Clone)]
struct Ctx {
    shared: Rc<Shared>,
    client: Client,
    js: async_nats::jetstream::Context,
    state: Rc<RefCell<State>>,
}

fn run_thread(shared: Shared) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("nats link: cannot build its runtime: {e}");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(Rc::new(shared)));
}

/// Retry pause while the directory cannot be reached during a settlement.
const SETTLE_RETRY: Duration = Duration::from_millis(200);

/// How often the connection state, the backlog and offer ages are checked.
const HOUSEKEEPING: Duration = Duration::from_millis(20);

async fn run(shared: Rc<Shared>) {
    let options = ConnectOptions::new()
        .name(format!(
            "tos-{}-{}",
            shared.config.cluster, shared.config.node
        ))
        .retry_on_initial_connect()
        .max_reconnects(None)
        // Reconnect quickly: while NATS is away, crossings are refused.
        .reconnect_delay_callback(|attempts| Duration::from_millis(100 * attempts.min(10) as u64))
        .connection_timeout(Duration::from_secs(2));
    let client = match options.connect(shared.config.nats_url.as_str()).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("nats link: cannot connect: {e}");
            return;
        }
    };
    let subject = handoff_subject(&shared.config.cluster, &shared.config.node);
    // Every subject this node listens on; without all of them the link
    // cannot do its work, so one failure stops it.
    let (cluster, node) = (&shared.config.cluster, &shared.config.node);
    let subjects = [
        subject,
        whisper_subject(cluster, node),
        chat_subject(cluster),
        effect_subject(cluster, node),
        combat_subject(cluster, node),
        ghost_subject(cluster, node),
    ];
    let mut subscribers = Vec::with_capacity(subjects.len());
    for subject in subjects {
        match client.subscribe(subject).await {
            Ok(subscriber) => subscribers.push(subscriber),
            Err(e) => {
                tracing::error!("nats link: cannot subscribe: {e}");
                return;
            }
        }
    }
    let [
        mut offers,
        mut whispers,
        mut chat,
        mut effects,
        mut combat,
        mut ghosts,
    ]: [_; 6] = match subscribers.try_into() {
        Ok(all) => all,
        Err(_) => return,
    };
    let mut js = async_nats::jetstream::new(client.clone());
    // A directory call must fail well before a hand-off would time out.
    js.set_timeout(shared.config.handoff_timeout);
    let ctx = Ctx {
        shared: shared.clone(),
        client,
        js,
        state: Rc::new(RefCell::new(State {
            held: HashMap::new(),
            offers: HashMap::new(),
            next_token: 1,
            in_flight: 0,
            backlog: VecDeque::new(),
            directory: None,
            renewing: false,
            ghost_publishes: 0,
        })),
    };
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let renew_every = (shared.config.lease_ttl / 4).max(Duration::from_millis(100));
    let mut renewals = tokio::time::interval(renew_every);
    renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_up = false;

    loop {
        if shared.stop.load(Relaxed) {
            return;
        }
        ctx.flush_backlog();
        if !ctx.take_commands() {
            return;
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            message = offers.next() => match message {
                Some(message) => ctx.offer_in(message).await,
                None => return,
            },
            message = whispers.next() => match message {
                Some(message) => match wire::decode::<wire::WhisperLine>(&message.payload) {
                    Ok(line) => ctx.emit(LinkEvent::Whisper(line)),
                    Err(_) => {
                        ctx.shared.counters.malformed_in.fetch_add(1, Relaxed);
                    }
                },
                None => return,
            },
            message = chat.next() => match message {
                Some(message) => match wire::decode::<wire::ChatBroadcast>(&message.payload) {
                    // Every node gets every line, its own included.
                    Ok(line) if line.from_node == ctx.config().node => {}
                    Ok(line) => ctx.emit(LinkEvent::Chat(line)),
                    Err(_) => {
                        ctx.shared.counters.malformed_in.fetch_add(1, Relaxed);
                    }
                },
                None => return,
            },
            message = effects.next() => match message {
                Some(message) => ctx.effect_in(&message.payload, LinkEvent::Effect),
                None => return,
            },
            message = combat.next() => match message {
                Some(message) => ctx.effect_in(&message.payload, LinkEvent::Combat),
                None => return,
            },
            message = ghosts.next() => match message {
                Some(message) => ctx.ghosts_in(&message.payload),
                None => return,
            },
            _ = housekeeping.tick() => {
                let up = ctx.client.connection_state() == ConnState::Connected;
                shared.up.store(up, Relaxed);
                if up != was_up {
                    was_up = up;
                    ctx.emit(if up { LinkEvent::Up } else { LinkEvent::Down });
                }
                ctx.expire_offers().await;
            }
            _ = renewals.tick() => ctx.spawn_renewals(),
        }
    }
}

fn whisper_subject(cluster: &str, node: &str) -> String {
    format!("{cluster}.whisper.{node}")
}

fn effect_subject(cluster: &str, node: &str) -> String {
    format!("{cluster}.effects.{node}")
}

fn combat_subject(cluster: &str, node: &str) -> String {
    format!("{cluster}.combat.{node}")
}

fn chat_subject(cluster: &str) -> String {
    format!("{cluster}.chat")
}

fn ghost_subject(cluster: &str, node: &str) -> String {
    format!("{cluster}.ghosts.{node}")
}

fn handoff_subject(cluster: &str, node: &str) -> String {
    format!("{cluster}.handoff.{node}")
}

impl Ctx {
    fn config(&self) -> &LinkConfig {
        &self.shared.config
    }

    fn is_up(&self) -> bool {
        self.client.connection_state() == ConnState::Connected
    }

    /// Passes a ghost batch on, or drops it (counted) when the event
    /// channel is busy: ghosts are never backlogged.
    fn ghosts_in(&self, payload: &[u8]) {
        let counters = &self.shared.counters;
        let passed =
            payload.len() <= MAX_GHOST_BATCH && self.pass_on(LinkEvent::Ghosts(payload.to_vec()));
        let counter = if passed {
            &counters.ghosts_in
        } else {
            &counters.ghosts_lost
        };
        counter.fetch_add(1, Relaxed);
    }

    /// An effect or an outcome from another node: decoded and passed on,
    /// or counted as malformed or lost.
    fn effect_in<T: wire::WireValue>(&self, payload: &[u8], event: fn(T) -> LinkEvent) {
        let counters = &self.shared.counters;
        let counter = match wire::decode::<T>(payload) {
            Ok(line) => {
                if self.pass_on(event(line)) {
                    return;
                }
                &counters.effects_lost
            }
            Err(_) => &counters.malformed_in,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Passes on an event nobody asked for and that loses nothing when
    /// dropped (a ghost batch, an effect, its outcome): only when the event
    /// channel has room, never into the backlog, so a flood from other
    /// nodes cannot grow this node's memory. False when it was dropped.
    fn pass_on(&self, event: LinkEvent) -> bool {
        self.state.borrow().backlog.is_empty() && self.shared.events.try_send(event).is_ok()
    }

    /// Publishes a ghost batch without waiting for it (nobody answers).
    fn publish_ghosts(&self, to: String, payload: Vec<u8>) {
        let counters = &self.shared.counters;
        {
            let mut state = self.state.borrow_mut();
            if !self.is_up()
                || check_name(&to).is_err()
                || payload.len() > MAX_GHOST_BATCH
                || state.ghost_publishes >= MAX_GHOST_PUBLISHES
            {
                counters.ghosts_lost.fetch_add(1, Relaxed);
                return;
            }
            state.ghost_publishes += 1;
        }
        let ctx = self.clone();
        tokio::task::spawn_local(async move {
            let subject = ghost_subject(&ctx.config().cluster, &to);
            let sent = ctx.client.publish(subject, Bytes::from(payload)).await;
            let counters = &ctx.shared.counters;
            match sent {
                Ok(()) => counters.ghosts_out.fetch_add(1, Relaxed),
                Err(_) => counters.ghosts_lost.fetch_add(1, Relaxed),
            };
            ctx.state.borrow_mut().ghost_publishes -= 1;
        });
    }

    /// Sends an event, or keeps it in the backlog when the channel is full.
    fn emit(&self, event: LinkEvent) {
        let mut state = self.state.borrow_mut();
        if !state.backlog.is_empty() {
            state.backlog.push_back(event);
            self.shared.counters.events_backlogged.fetch_add(1, Relaxed);
            return;
        }
        match self.shared.events.try_send(event) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(event)) => {
                state.backlog.push_back(event);
                self.shared.counters.events_backlogged.fetch_add(1, Relaxed);
            }
        }
    }

    /// Publishes a line at most once (chat, effects and their outcomes):
    /// one that could not be encoded (`None`), finds NATS down or fails to
    /// go is dropped and counted in `lost`.
    fn publish_lossy(
        &self,
        subject: String,
        bytes: Option<Vec<u8>>,
        lost: fn(&Counters) -> &AtomicU64,
    ) {
        let bytes = match bytes {
            Some(bytes) if self.is_up() => bytes,
            _ => {
                lost(&self.shared.counters).fetch_add(1, Relaxed);
                return;
            }
        };
        let ctx = self.clone();
        tokio::task::spawn_local(async move {
            if ctx
                .client
                .publish(subject, Bytes::from(bytes))
                .await
                .is_err()
            {
                lost(&ctx.shared.counters).fetch_add(1, Relaxed);
            }
        });
    }

    fn flush_backlog(&self) {
        let mut state = self.state.borrow_mut();
        while let Some(event) = state.backlog.pop_front() {
            match self.shared.events.try_send(event) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(event)) => {
                    state.backlog.push_front(event);
                    return;
                }
            }
        }
    }

    /// Starts queued commands while there is room; false once the owner
    /// has dropped its end.
    fn take_commands(&self) -> bool {
        loop {
            {
                let state = self.state.borrow();
                if !state.backlog.is_empty() || state.in_flight >= self.config().max_pending {
                    return true;
                }
            }
            match self.shared.commands.try_recv() {
                Ok(command) => self.command(command),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Runs `work` as a task counted against `max_pending`.
    fn spawn<F: std::future::Future<Output = ()> + 'static>(&self, work: F) {
        self.state.borrow_mut().in_flight += 1;
        let ctx = self.clone();
        tokio::task::spawn_local(async move {
            work.await;
            ctx.state.borrow_mut().in_flight -= 1;
            // Room for the next command.
            ctx.shared.wake.notify_one();
        });
    }

    /// Counts a finished hand-off (a character's or a transit lease's) and
    /// tells the game its outcome.
    fn handed_off(&self, handoff: u64, character: u64, outcome: HandoffOutcome) {
        let counter = match outcome {
            HandoffOutcome::Delivered => &self.shared.counters.delivered,
            _ => &self.shared.counters.kept,
        };
        counter.fetch_add(1, Relaxed);
        self.emit(LinkEvent::Handoff {
            handoff,
            character,
            outcome,
        });
    }

    fn command(&self, command: LinkCommand) {
        let ctx = self.clone();
        match command {
            LinkCommand::HandOff {
                handoff,
                to,
                character,
                payload,
            } => self.spawn(async move {
                let outcome = ctx.hand_off(handoff, &to, character, payload).await;
                ctx.handed_off(handoff, character, outcome);
            }),
            LinkCommand::HandOffTransit {
                handoff,
                to,
                key,
                payload,
            } => self.spawn(async move {
                let outcome = ctx.hand_off_transit(handoff, &to, key, payload).await;
                ctx.handed_off(handoff, key, outcome);
            }),
            LinkCommand::Accept { token } => self.spawn(async move { ctx.accept(token).await }),
            LinkCommand::Refuse { token, reason } => {
                let pending = self.state.borrow_mut().offers.remove(&token);
                if let Some(pending) = pending {
                    self.spawn(async move {
                        ctx.reply(pending.reply, HandoffReply::Refused(reason))
                            .await
                    });
                }
            }
            LinkCommand::Acquire {
                request,
                character,
                name,
            } => self.spawn(async move {
                let result = ctx.acquire(character, &name).await;
                ctx.emit(LinkEvent::Reply { request, result });
            }),
            LinkCommand::Release { request, character } => self.spawn(async move {
                let result = ctx.release(character).await;
                ctx.emit(LinkEvent::Reply { request, result });
            }),
            LinkCommand::FindLease { request, character } => self.spawn(async move {
                let result = async {
                    let lease = ctx.directory().await?.lease(character).await?;
                    Ok(DirectoryAnswer::Lease(lease.map(|(v, r)| (v.node, r))))
                }
                .await;
                ctx.emit(LinkEvent::Reply { request, result });
            }),
            LinkCommand::FindPlayer { request, name } => self.spawn(async move {
                let result = async {
                    let player = ctx.directory().await?.player(&name).await?;
                    Ok(DirectoryAnswer::Player(
                        player.map(|p| (p.node, p.character)),
                    ))
                }
                .await;
                ctx.emit(LinkEvent::Reply { request, result });
            }),
            LinkCommand::ClaimQuadrants { request, quadrants } => self.spawn(async move {
                let result = async {
                    ctx.directory().await?.claim_quadrants(&quadrants).await?;
                    Ok(DirectoryAnswer::Claimed)
                }
                .await;
                ctx.emit(LinkEvent::Reply { request, result });
            }),
            LinkCommand::UnclaimQuadrants { request, quadrants } => self.spawn(async move {
                let result = async {
                    ctx.directory().await?.unclaim_quadrants(&quadrants).await?;
                    Ok(DirectoryAnswer::Unclaimed)
                }
                .await;
                ctx.emit(LinkEvent::Reply { request, result });
            }),
            LinkCommand::FindQuadrant { request, quadrant } => self.spawn(async move {
                let result = async {
                    let owner = ctx.directory().await?.quadrant_owner(quadrant).await?;
                    Ok(DirectoryAnswer::Quadrant(owner))
                }
                .await;
                ctx.emit(LinkEvent::Reply { request, result });
            }),
            LinkCommand::Whisper { request, to, line } => self.spawn(async move {
                let result = async {
                    if !ctx.is_up() {
                        return Err(LinkError::NatsDown);
                    }
                    check_name(&to).map_err(|w| LinkError::Config(format!("node: {w}")))?;
                    let bytes = wire::encode(&line)
                        .map_err(|e| LinkError::Config(format!("whisper: {e}")))?;
                    let subject = whisper_subject(&ctx.config().cluster, &to);
                    ctx.client
                        .publish(subject, Bytes::from(bytes))
                        .await
                        .map_err(|_| LinkError::NatsDown)?;
                    Ok(DirectoryAnswer::Sent)
                }
                .await;
                ctx.emit(LinkEvent::Reply { request, result });
            }),
            LinkCommand::Ghosts { to, payload } => self.publish_ghosts(to, payload),
            LinkCommand::Effect { to, line } => {
                let subject = effect_subject(&ctx.config().cluster, &to);
                let bytes = wire::encode(&line).ok().filter(|_| check_name(&to).is_ok());
                self.publish_lossy(subject, bytes, |c| &c.effects_lost);
            }
            LinkCommand::Combat { to, line } => {
                let subject = combat_subject(&ctx.config().cluster, &to);
                let bytes = wire::encode(&line).ok().filter(|_| check_name(&to).is_ok());
                self.publish_lossy(subject, bytes, |c| &c.effects_lost);
            }
            LinkCommand::Chat(line) => {
                let subject = chat_subject(&ctx.config().cluster);
                self.publish_lossy(subject, wire::encode(&line).ok(), |c| &c.chat_lost);
            }
            LinkCommand::DropDirectory { request } => self.spawn(async move {
                let result = async {
                    if !ctx.is_up() {
                        return Err(LinkError::NatsDown);
                    }
                    Directory::drop_buckets(&ctx.js, &ctx.config().cluster).await?;
                    ctx.state.borrow_mut().directory = None;
                    Ok(DirectoryAnswer::Dropped)
                }
                .await;
                ctx.emit(LinkEvent::Reply { request, result });
            }),
        }
    }

    /// The directory, opening its buckets on first use after a connect.
    async fn directory(&self) -> Result<Directory, LinkError> {
        if !self.is_up() {
            return Err(LinkError::NatsDown);
        }
        if let Some(directory) = self.state.borrow().directory.clone() {
            return Ok(directory);
        }
        let config = self.config();
        let directory = Directory::open(
            &self.js,
            &config.cluster,
            &config.node,
            config.lease_ttl,
            config.storage,
        )
        .await?;
        self.state.borrow_mut().directory = Some(directory.clone());
        Ok(directory)
    }

    /// The directory, waiting for NATS while it is away (settlements).
    async fn directory_patiently(&self) -> Directory {
        loop {
            match self.directory().await {
                Ok(directory) => return directory,
                Err(_) => tokio::time::sleep(SETTLE_RETRY).await,
            }
        }
    }

    async fn acquire(&self, character: u64, name: &str) -> Result<DirectoryAnswer, LinkError> {
        if let Some(held) = self.state.borrow().held.get(&character) {
            return Ok(DirectoryAnswer::Acquired {
                revision: held.revision,
            });
        }
        let directory = self.directory().await?;
        let revision = directory.acquire(character, name).await?;
        // The lease is what matters; a missing online entry only delays
        // whispers until the next renewal sets it.
        let online_revision = directory.set_online(name, character).await.ok();
        self.state.borrow_mut().held.insert(
            character,
            Held {
                name: name.to_owned(),
                revision,
                online_revision,
                handing_off: false,
            },
        );
        Ok(DirectoryAnswer::Acquired { revision })
    }

    async fn release(&self, character: u64) -> Result<DirectoryAnswer, LinkError> {
        let (revision, name, online) = {
            let state = self.state.borrow();
            let held = state.held.get(&character).ok_or(LinkError::NotHeld)?;
            if held.handing_off {
                return Err(LinkError::NotHeld);
            }
            (held.revision, held.name.clone(), held.online_revision)
        };
        let directory = self.directory().await?;
        match directory.release(character, revision).await {
            // Moved: it expired or was taken meanwhile; either way it is
            // no longer ours to release.
            Ok(()) | Err(DirectoryError::Moved) => {}
            Err(e) => return Err(e.into()),
        }
        self.state.borrow_mut().held.remove(&character);
        if let Some(online) = online {
            let _ = directory.clear_online(&name, online).await;
        }
        Ok(DirectoryAnswer::Released)
    }

    async fn hand_off(
        &self,
        handoff: u64,
        to: &str,
        character: u64,
        payload: Vec<u8>,
    ) -> HandoffOutcome {
        if !self.is_up() {
            return HandoffOutcome::Kept(KeptReason::NatsDown);
        }
        let (name, revision) = {
            let mut state = self.state.borrow_mut();
            let Some(held) = state.held.get_mut(&character) else {
                return HandoffOutcome::Kept(KeptReason::NotHeld);
            };
            if held.handing_off {
                return HandoffOutcome::Kept(KeptReason::InProgress);
            }
            (held.name.clone(), held.revision)
        };
        let offer = HandoffOffer {
            from: self.config().node.clone(),
            handoff,
            character,
            name: name.clone(),
            lease_revision: revision,
            payload,
        };
        let bytes = match wire::encode(&offer) {
            Ok(bytes) => bytes,
            Err(e) => return HandoffOutcome::Kept(KeptReason::Encode(e)),
        };
        self.set_handing_off(character, true);
        let request = Request::new()
            .payload(Bytes::from(bytes))
            .timeout(Some(self.config().handoff_timeout));
        let subject = handoff_subject(&self.config().cluster, to);
        let answer = self.client.send_request(subject, request).await;
        let outcome = match answer {
            Ok(message) => match wire::decode::<HandoffReply>(&message.payload) {
                Ok(HandoffReply::Accepted { .. }) => {
                    self.state.borrow_mut().held.remove(&character);
                    return HandoffOutcome::Delivered;
                }
                // The receiver found the lease moved: only the directory
                // knows where it is now.
                Ok(HandoffReply::Refused(RefuseReason::Superseded))
                | Ok(HandoffReply::Refused(RefuseReason::DirectoryDown)) => None,
                Ok(HandoffReply::Refused(reason)) => Some(KeptReason::Refused(reason)),
                Err(_) => None,
            },
            // Nobody subscribed: the offer reached no one.
            Err(e) if e.kind() == RequestErrorKind::NoResponders => Some(KeptReason::NoResponder),
            Err(_) => None,
        };
        match outcome {
            Some(reason) => {
                self.set_handing_off(character, false);
                HandoffOutcome::Kept(reason)
            }
            None => {
                self.shared.counters.settled.fetch_add(1, Relaxed);
                self.settle(character, &name, revision, to).await
            }
        }
    }

    /// A hand-off under a transit lease: created here, then offered like
    /// a character's; held only while the hand-off runs (never renewed).
    async fn hand_off_transit(
        &self,
        handoff: u64,
        to: &str,
        key: u64,
        payload: Vec<u8>,
    ) -> HandoffOutcome {
        if !is_transit(key) {
            return HandoffOutcome::Kept(KeptReason::NotHeld);
        }
        let Ok(directory) = self.directory().await else {
            return HandoffOutcome::Kept(KeptReason::NatsDown);
        };
        let revision = match directory.acquire(key, "").await {
            Ok(revision) => revision,
            Err(DirectoryError::Conflict { .. } | DirectoryError::Moved) => {
                return HandoffOutcome::Kept(KeptReason::InProgress);
            }
            Err(_) => return HandoffOutcome::Kept(KeptReason::NatsDown),
        };
        self.state.borrow_mut().held.insert(
            key,
            Held {
                name: String::new(),
                revision,
                online_revision: None,
                handing_off: false,
            },
        );
        let outcome = self.hand_off(handoff, to, key, payload).await;
        // Kept or delivered, the transit lease has done its work here: it
        // is not renewed and ages out of the bucket.
        self.state.borrow_mut().held.remove(&key);
        outcome
    }

    fn set_handing_off(&self, character: u64, on: bool) {
        if let Some(held) = self.state.borrow_mut().held.get_mut(&character) {
            held.handing_off = on;
        }
    }

    /// Decides an unacknowledged hand-off through the directory: swap the
    /// lease back to this node at the offered revision; if that fails the
    /// receiver (or a third node) has it. Retries while NATS is away.
    async fn settle(&self, character: u64, name: &str, revision: u64, to: &str) -> HandoffOutcome {
        let me = self.config().node.clone();
        loop {
            let directory = self.directory_patiently().await;
            let taken_back = directory.swap(character, name, revision).await;
            let current = match taken_back {
                Ok(new_revision) => {
                    self.keep(character, new_revision);
                    return HandoffOutcome::Kept(KeptReason::AckTimeout);
                }
                Err(DirectoryError::Moved) => directory.lease_state(character).await,
                Err(_) => {
                    // Did our swap land before its answer was lost? The
                    // next round's swap says "moved" and the lease says us.
                    tokio::time::sleep(SETTLE_RETRY).await;
                    continue;
                }
            };
            match current {
                Ok(LeaseState::Held(lease, _)) if lease.node == to => {
                    self.state.borrow_mut().held.remove(&character);
                    return HandoffOutcome::Delivered;
                }
                Ok(LeaseState::Held(lease, new_revision)) if lease.node == me => {
                    self.keep(character, new_revision);
                    return HandoffOutcome::Kept(KeptReason::AckTimeout);
                }
                Ok(LeaseState::Held(lease, _)) => {
                    self.state.borrow_mut().held.remove(&character);
                    return HandoffOutcome::Superseded { owner: lease.node };
                }
                // Released: only a holder releases, and this node does not
                // while a hand-off is open, so the receiver took it (its ack
                // was lost) and the player has logged out there since. Its
                // save is the newest state: forget the entity here.
                Ok(LeaseState::Released) => {
                    self.state.borrow_mut().held.remove(&character);
                    return HandoffOutcome::Delivered;
                }
                // Expired during a long outage: nobody holds it, and the
                // entity is still here, so take the lease again.
                Ok(LeaseState::Absent) => match directory.acquire(character, name).await {
                    Ok(new_revision) => {
                        self.keep(character, new_revision);
                        return HandoffOutcome::Kept(KeptReason::AckTimeout);
                    }
                    Err(DirectoryError::Conflict { owner }) if owner == to => {
                        self.state.borrow_mut().held.remove(&character);
                        return HandoffOutcome::Delivered;
                    }
                    Err(DirectoryError::Conflict { owner }) => {
                        self.state.borrow_mut().held.remove(&character);
                        return HandoffOutcome::Superseded { owner };
                    }
                    Err(_) => tokio::time::sleep(SETTLE_RETRY).await,
                },
                Err(_) => tokio::time::sleep(SETTLE_RETRY).await,
            }
        }
    }

    fn keep(&self, character: u64, revision: u64) {
        if let Some(held) = self.state.borrow_mut().held.get_mut(&character) {
            held.revision = revision;
            held.handing_off = false;
        }
    }

    async fn offer_in(&self, message: async_nats::Message) {
        self.shared.counters.offers_in.fetch_add(1, Relaxed);
        let offer = match wire::decode::<HandoffOffer>(&message.payload) {
            Ok(offer) => offer,
            Err(e) => {
                self.shared.counters.malformed_in.fetch_add(1, Relaxed);
                tracing::debug!("nats link: malformed offer: {e}");
                self.reply(
                    message.reply,
                    HandoffReply::Refused(RefuseReason::Malformed),
                )
                .await;
                return;
            }
        };
        let full = self.state.borrow().offers.len() >= self.config().max_pending;
        if full {
            self.shared.counters.refused_busy.fetch_add(1, Relaxed);
            self.reply(message.reply, HandoffReply::Refused(RefuseReason::Busy))
                .await;
            return;
        }
        let token = {
            let mut state = self.state.borrow_mut();
            {
                let token = state.next_token;
                state.next_token += 1;
                state.offers.insert(
                    token,
                    Pending {
                        reply: message.reply,
                        character: offer.character,
                        name: offer.name.clone(),
                        revision: offer.lease_revision,
                        received: Instant::now(),
                    },
                );
                token
            }
        };
        self.emit(LinkEvent::Offer {
            token,
            from: offer.from,
            character: offer.character,
            name: offer.name,
            payload: offer.payload,
        });
    }

    async fn reply(&self, to: Option<async_nats::Subject>, reply: HandoffReply) {
        let Some(to) = to else { return };
        if let Ok(bytes) = wire::encode(&reply) {
            // A lost reply is settled by the sender through the directory.
            let _ = self.client.publish(to, Bytes::from(bytes)).await;
        }
    }

    /// Takes an accepted offer's lease by compare-and-swap, retrying while
    /// the directory is away (a swap may have landed with its answer lost).
    async fn accept(&self, token: u64) {
        // Out of the state first: the else branch emits, which borrows it.
        let pending = self.state.borrow_mut().offers.remove(&token);
        let Some(pending) = pending else {
            self.emit(LinkEvent::NotTaken {
                token,
                reason: RefuseReason::Expired,
            });
            return;
        };
        let me = self.config().node.clone();
        let taken = loop {
            let directory = self.directory_patiently().await;
            match directory
                .swap(pending.character, &pending.name, pending.revision)
                .await
            {
                Ok(revision) => break Some((directory, revision)),
                Err(DirectoryError::Moved) => match directory.lease(pending.character).await {
                    Ok(Some((lease, revision))) if lease.node == me => {
                        break Some((directory, revision));
                    }
                    Ok(_) => break None,
                    Err(_) => tokio::time::sleep(SETTLE_RETRY).await,
                },
                Err(_) => tokio::time::sleep(SETTLE_RETRY).await,
            }
        };
        let Some((directory, revision)) = taken else {
            self.reply(
                pending.reply,
                HandoffReply::Refused(RefuseReason::Superseded),
            )
            .await;
            self.emit(LinkEvent::NotTaken {
                token,
                reason: RefuseReason::Superseded,
            });
            return;
        };
        if is_transit(pending.character) {
            // An NPC: nothing to renew or list online.
            self.emit(LinkEvent::Taken {
                token,
                character: pending.character,
            });
            if !self.config().drop_acks {
                self.reply(pending.reply, HandoffReply::Accepted { revision })
                    .await;
            }
            return;
        }
        let online_revision = directory
            .set_online(&pending.name, pending.character)
            .await
            .ok();
        self.state.borrow_mut().held.insert(
            pending.character,
            Held {
                name: pending.name.clone(),
                revision,
                online_revision,
                handing_off: false,
            },
        );
        self.emit(LinkEvent::Taken {
            token,
            character: pending.character,
        });
        if !self.config().drop_acks {
            self.reply(pending.reply, HandoffReply::Accepted { revision })
                .await;
        }
    }

    /// Refuses offers the game layer left waiting past the hand-off
    /// timeout: the sender is settling by now.
    async fn expire_offers(&self) {
        let timeout = self.config().handoff_timeout;
        let expired: Vec<(u64, Option<async_nats::Subject>)> = {
            let mut state = self.state.borrow_mut();
            let old: Vec<u64> = state
                .offers
                .iter()
                .filter(|(_, p)| p.received.elapsed() > timeout)
                .map(|(&t, _)| t)
                .collect();
            old.into_iter()
                .filter_map(|t| state.offers.remove(&t).map(|p| (t, p.reply)))
                .collect()
        };
        for (token, reply) in expired {
            self.reply(reply, HandoffReply::Refused(RefuseReason::Expired))
                .await;
            self.emit(LinkEvent::NotTaken {
                token,
                reason: RefuseReason::Expired,
            });
        }
    }

    /// Renews every lease held here (and its online entry), unless the
    /// previous round still runs or NATS is away.
    fn spawn_renewals(&self) {
        {
            let mut state = self.state.borrow_mut();
            if state.renewing || state.held.is_empty() || !self.is_up() {
                return;
            }
            state.renewing = true;
        }
        let ctx = self.clone();
        tokio::task::spawn_local(async move {
            ctx.renew_all().await;
            ctx.state.borrow_mut().renewing = false;
        });
    }

    async fn renew_all(&self) {
        let Ok(directory) = self.directory().await else {
            return;
        };
        let me = self.config().node.clone();
        let batch: Vec<(u64, String, u64, Option<u64>)> = self
            .state
            .borrow()
            .held
            .iter()
            .filter(|(c, h)| !h.handing_off && !is_transit(**c))
            .map(|(&c, h)| (c, h.name.clone(), h.revision, h.online_revision))
            .collect();
        // Renewals go out 64 at a time: one round trip each, overlapped.
        for chunk in batch.chunks(64) {
            let results = futures_util::future::join_all(chunk.iter().map(
                |(character, name, revision, online)| {
                    let directory = &directory;
                    async move {
                        let lease = directory.swap(*character, name, *revision).await;
                        let online = match online {
                            Some(r) => directory.renew_online(name, *character, *r).await,
                            None => directory.set_online(name, *character).await,
                        };
                        (lease, online)
                    }
                },
            ))
            .await;
            for ((character, name, revision, _), (lease, online)) in chunk.iter().zip(results) {
                match lease {
                    Ok(new_revision) => {
                        self.renewed(*character, *revision, new_revision, online.ok())
                    }
                    Err(DirectoryError::Moved) => {
                        // Expired (NATS was away past the TTL) or taken.
                        match directory.lease(*character).await {
                            Ok(None) => {
                                if let Ok(r) = directory.acquire(*character, name).await {
                                    self.renewed(*character, *revision, r, online.ok());
                                }
                            }
                            Ok(Some((lease, r))) if lease.node == me => {
                                self.renewed(*character, *revision, r, online.ok());
                            }
                            Ok(Some((lease, _))) => {
                                let lost = {
                                    let mut state = self.state.borrow_mut();
                                    let still = state
                                        .held
                                        .get(character)
                                        .is_some_and(|h| h.revision == *revision && !h.handing_off);
                                    if still {
                                        state.held.remove(character);
                                    }
                                    still
                                };
                                if lost {
                                    self.emit(LinkEvent::LeaseLost {
                                        character: *character,
                                        owner: lease.node,
                                    });
                                }
                            }
                            Err(_) => {}
                        }
                    }
                    Err(_) => {}
                }
            }
        }
    }

    /// Records a renewal, unless a hand-off started meanwhile.
    fn renewed(&self, character: u64, old: u64, new: u64, online: Option<u64>) {
        if let Some(held) = self.state.borrow_mut().held.get_mut(&character) {
            if held.revision == old && !held.handing_off {
                held.revision = new;
                held.online_revision = online;
            }
        }
    }
}
