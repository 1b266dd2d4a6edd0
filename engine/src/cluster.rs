//! A node's membership in a cluster: loading its part of the cluster file,
//! starting the [`NatsLink`] (on its own thread, never a core's), claiming
//! the node's quadrants in the directory, and the `tos-cluster` thread that
//! carries the cores' plain-value requests (leases, whispers to other
//! nodes, players crossing to other nodes) to the link and routes the
//! answers, incoming whispers and arriving players back to each core's
//! bounded reply channel.
//!
//! Arriving players: an offer from another node is decoded and checked
//! here (the record is well formed, its position is this node's ground,
//! no arrival of that character waits already) before the link takes the
//! lease. A taken player waits in `arrivals` under its ticket's secret
//! until a core claims it (the client connected with the ticket) or
//! `transfer_timeout_ms` passes; then core 0 saves it where it crossed and
//! releases its lease. Both tables are bounded by the link's
//! `max_pending` offers and by [`MAX_ARRIVALS`].
//!
//! Arriving NPCs: an offer whose lease is a transit lease
//! (`tos_cluster::is_transit`) carries an NPC record; it is decoded and its
//! ground checked here before the link takes the lease, then the NPC goes
//! to the core that owns its ground (`npc_offers`, bounded like `offers`).
//! NPCs this node's cores hand away get a transit key from this thread
//! (this node's index and a serial), unique in the cluster.
//!
//! Ghosts near node borders: each core hands its batches for other nodes
//! to this thread over a bounded channel of their own; the thread writes
//! them in `tos_game::node_ghosts`'s layout and publishes them. Batches
//! from other nodes are decoded here and passed to every core (each keeps
//! what its viewers can see). The ghost vectors circulate between the
//! cores and this thread's small pool, so a core allocates none in steady
//! state; a batch that finds a queue full is dropped and counted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select};
use tos_cluster::wire::{CombatLine, EffectLine};
use tos_cluster::{
    Cluster, DirectoryAnswer, DirectoryError, LinkCommand, LinkConfig, LinkError, LinkEvent,
    NatsLink, wire::WhisperLine,
};
use tos_config::{ServerConfig, ShardLayout};
use tos_game::cluster::{
    ClusterAnswer, ClusterCommand, ClusterOp, ClusterReply, ClusterView, CombatOutcome,
    CoreCluster, CrossingOutcome, LeaseAnswer, NodeInfo, WhisperAnswer,
};
use tos_game::counters::GameCounters;
use tos_game::transfer::{MAX_RECORD_LEN, TransferRecord, TransferSecret};
use tos_game::{OnlineRegistry, node_ghosts};
use tos_protocol::quant::Quantizer;
use tos_shards::{
    Buff, BuffEffect, CarriedNpc, GhostState, NodeGhosts, RemoteEffect, combat::Strike,
};

/// Capacity of the cores' command queue to the cluster thread, and of each
/// core's reply channel: enters, leaves and whispers, never per tick.
const QUEUE: usize = 4_096;

/// How long start waits for NATS to answer the quadrant claim before the
/// node starts anyway (the claim is then made when NATS comes up).
const CLAIM_WAIT: Duration = Duration::from_secs(5);

/// How long a stopping cluster thread waits for its last answers
/// (releases of the characters the cores logged out on shutdown).
const STOP_DRAIN: Duration = Duration::from_secs(2);

/// Players handed to this node waiting for their clients, at most; an
/// offer past it is refused (`Busy`) and the sender keeps the player.
const MAX_ARRIVALS: usize = 4_096;

// A crossing's record always fits what the link carries.
const _: () = assert!(MAX_RECORD_LEN <= tos_cluster::wire::MAX_PAYLOAD);

/// Ghost batches per core that may wait for the cluster thread (a few
/// ticks' worth: older ones would be stale).
const GHOST_QUEUE_PER_CORE: usize = 8;

/// Ghost vectors the cluster thread keeps for reuse, at most.
const GHOST_POOL: usize = 64;

/// Request numbers of the cluster thread's own requests (quadrant claims)
/// start here, far above any core request it forwards.
const OWN_REQUESTS: u64 = 1 << 62;

/// The node's part of a validated cluster file.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// The whole cluster file.
    pub cluster: Cluster,
    /// This node's index in it.
    pub index: usize,
}

impl NodeSetup {
    /// Loads and validates the cluster file and finds `node` in it; checks
    /// that the node's settings run the cluster's world.
    pub fn load(path: &Path, node: &str, config: &ServerConfig) -> Result<Self, String> {
        let cluster = Cluster::load(path).map_err(|e| e.to_string())?;
        let index = cluster.node_index(node).ok_or_else(|| {
            let names: Vec<&str> = cluster.nodes().iter().map(|n| n.name.as_str()).collect();
            format!(
                "{}: no node {node:?} (the file has {names:?})",
                path.display()
            )
        })?;
        if cluster.file().world != config.world {
            return Err(format!(
                "{}: the cluster's world differs from the settings' world section",
                path.display()
            ));
        }
        Ok(Self { cluster, index })
    }

    /// The node's shard layout (which of its cores owns which quadrant).
    pub fn layout(&self) -> Option<&ShardLayout> {
        self.cluster.layout(self.index)
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.cluster.nodes()[self.index].name
    }

    /// The quadrants this node owns.
    pub fn quadrants(&self) -> Vec<[u16; 3]> {
        self.cluster.quadrants_of(self.index).collect()
    }

    /// The network ids this node's shards hand out: after the cores of
    /// the nodes before it in the file, among the cores of all nodes.
    pub fn net_id_space(&self) -> tos_shards::NetIdSpace {
        let cores = |i: usize| u32::from(self.cluster.layout(i).map_or(1, |l| l.cores));
        let all = self.cluster.nodes().len();
        tos_shards::NetIdSpace {
            first: (0..self.index).map(cores).sum(),
            stride: (0..all).map(cores).sum(),
        }
    }

    /// Whether this node owns the quadrant at `quadrant`.
    pub fn owns(&self, quadrant: [u16; 3]) -> bool {
        self.cluster.owner(quadrant) == Some(self.index)
    }
}

/// The running cluster side of a node; dropping it stops the thread and
/// the link (unreleased leases then expire after the lease TTL).
#[derive(Debug)]
pub struct ClusterNode {
    view: Arc<ClusterView>,
    replies: Vec<Receiver<ClusterReply>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Why the node could not join its cluster.
#[derive(Debug)]
pub enum JoinError {
    /// The link could not start (bad URL or name, no thread).
    Link(LinkError),
    /// Another node holds one of this node's quadrants.
    QuadrantConflict {
        /// The other node.
        owner: String,
    },
    /// A thread could not start.
    Thread(std::io::Error),
    /// The cluster file gives this node another static key than its key
    /// file holds: clients sent here would be refused.
    KeyMismatch,
    /// The cluster's world geometry is invalid.
    World(String),
}

impl core::fmt::Display for JoinError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Link(e) => write!(f, "cluster link: {e}"),
            Self::QuadrantConflict { owner } => write!(
                f,
                "cluster: node {owner:?} has claimed quadrants of this node in the directory \
                 (two cluster files disagree, or a node was renamed: unclaim them first)"
            ),
            Self::Thread(e) => write!(f, "cannot start the cluster thread: {e}"),
            Self::KeyMismatch => write!(
                f,
                "cluster: this node's static_key in the cluster file is not the key of its \
                 key file (security.server_static_key_file); clients sent here would fail"
            ),
            Self::World(e) => write!(f, "cluster: the world's geometry: {e}"),
        }
    }
}

impl ClusterNode {
    /// Starts the link and the cluster thread for `cores` cores, claims the
    /// node's quadrants (waiting up to [`CLAIM_WAIT`] for NATS; if it does
    /// not answer the node starts and claims when NATS comes up).
    pub fn start(
        setup: &NodeSetup,
        cores: usize,
        registry: Arc<OnlineRegistry>,
        counters: Arc<GameCounters>,
        own_key: [u8; 32],
    ) -> Result<Self, JoinError> {
        if setup
            .cluster
            .static_key(setup.index)
            .is_some_and(|k| k != own_key)
        {
            return Err(JoinError::KeyMismatch);
        }
        let quantizer = setup
            .cluster
            .file()
            .world
            .quantizer()
            .map_err(|e| JoinError::World(e.to_string()))?;
        let config = LinkConfig::for_node(&setup.cluster, setup.index)
            .ok_or(JoinError::Link(LinkError::Config("no such node".into())))?;
        let link = NatsLink::start(config).map_err(JoinError::Link)?;
        let quadrants = setup.quadrants();
        let claimed = claim(&link, &quadrants)?;
        let (commands_tx, commands) = bounded(QUEUE);
        let (ghosts_tx, ghosts) = bounded(GHOST_QUEUE_PER_CORE * cores.max(1));
        let mut to_cores = Vec::with_capacity(cores);
        let mut replies = Vec::with_capacity(cores);
        for _ in 0..cores {
            let (tx, rx) = bounded(QUEUE);
            to_cores.push(tx);
            replies.push(rx);
        }
        let nodes = setup
            .cluster
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, n)| NodeInfo {
                name: n.name.clone(),
                address: n.address.clone(),
                // Without a key in the file the nodes share one key file.
                static_key: setup.cluster.static_key(i).unwrap_or(own_key),
            })
            .collect();
        let grid = setup.cluster.grid();
        let owners = (0..grid.iter().map(|&n| usize::from(n)).product::<usize>())
            .map(|i| {
                let [gx, gy, _] = grid.map(usize::from);
                let q = [i % gx, i / gx % gy, i / (gx * gy)]
                    .map(|c| u16::try_from(c).unwrap_or(u16::MAX));
                setup
                    .cluster
                    .owner(q)
                    .and_then(|o| u16::try_from(o).ok())
                    .unwrap_or(u16::MAX)
            })
            .collect();
        let view = Arc::new(ClusterView {
            me: setup.index,
            nodes,
            owners,
            grid,
            commands: commands_tx,
            ghosts: ghosts_tx,
            up: AtomicBool::new(link.is_up()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let router = Router {
            link,
            node: setup.name().to_owned(),
            commands,
            ghosts,
            to_cores,
            registry,
            counters,
            ghost_pool: Vec::new(),
            view: Arc::clone(&view),
            quantizer,
            transfer_timeout: setup.cluster.transfer_timeout(),
            offers: HashMap::new(),
            npc_offers: HashMap::new(),
            layout: setup
                .layout()
                .and_then(|l| l.resolve(setup.cluster.grid()).ok()),
            next_transit: 1,
            arrivals: HashMap::new(),
            handoffs: HashMap::new(),
            waiting: HashMap::new(),
            next: 1,
            quadrants,
            claimed,
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("tos-cluster".into())
            .spawn(move || router.run())
            .map_err(JoinError::Thread)?;
        Ok(Self {
            view,
            replies,
            stop,
            thread: Some(thread),
        })
    }

    /// Core `core`'s end of the cluster.
    pub fn core(&self, core: usize) -> Option<CoreCluster> {
        Some(CoreCluster {
            view: Arc::clone(&self.view),
            replies: self.replies.get(core)?.clone(),
        })
    }

    /// Stops the cluster thread after it has passed on what the cores
    /// queued (their last releases) for up to `grace`.
    pub fn stop(mut self, grace: Duration) {
        self.stop_inner(grace);
    }

    fn stop_inner(&mut self, grace: Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + grace;
        // The releases the cores queued on their way out go first.
        while !self.view.commands.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = thread.join();
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.stop_inner(Duration::from_millis(500));
    }
}

/// Claims `quadrants` at start. Ok(true): claimed; Ok(false): NATS did not
/// answer in time (claimed later by the thread).
fn claim(link: &NatsLink, quadrants: &[[u16; 3]]) -> Result<bool, JoinError> {
    let deadline = Instant::now() + CLAIM_WAIT;
    let mut sent = false;
    while Instant::now() < deadline {
        if !sent && link.is_up() {
            link.send(LinkCommand::ClaimQuadrants {
                request: OWN_REQUESTS,
                quadrants: quadrants.to_vec(),
            })
            .map_err(JoinError::Link)?;
            sent = true;
        }
        // Other events before the claim's answer (Up) need no action here.
        if let Ok(LinkEvent::Reply {
            request: OWN_REQUESTS,
            result,
        }) = link.events().recv_timeout(Duration::from_millis(50))
        {
            match result {
                Ok(_) => return Ok(true),
                Err(LinkError::Directory(DirectoryError::Conflict { owner })) => {
                    return Err(JoinError::QuadrantConflict { owner });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: claiming quadrants failed; retrying");
                    sent = false;
                }
            }
        }
    }
    tracing::warn!("cluster: NATS did not answer at start; quadrants are claimed when it does");
    Ok(false)
}

/// What a forwarded request is waiting for.
#[derive(Debug)]
enum Waiting {
    /// A core's lease request.
    Lease {
        core: u16,
        request: u64,
    },
    /// A core's whisper: first the directory lookup, then the publish.
    WhisperLookup {
        core: u16,
        request: u64,
        from: String,
        text: String,
    },
    WhisperSend {
        core: u16,
        request: u64,
    },
    /// A release (nobody waits for it).
    Release,
    /// This node's quadrant claim after NATS came back.
    Claim,
}

/// A player handed to this node, waiting for its client.
#[derive(Debug)]
struct Arrival {
    record: Box<TransferRecord>,
    deadline: Instant,
}

/// The thread between the cores and the link.
struct Router {
    link: NatsLink,
    node: String,
    commands: Receiver<ClusterCommand>,
    /// The cores' ghost batches for other nodes.
    ghosts: Receiver<NodeGhosts>,
    to_cores: Vec<Sender<ClusterReply>>,
    registry: Arc<OnlineRegistry>,
    counters: Arc<GameCounters>,
    /// Ghost vectors for batches from other nodes.
    ghost_pool: Vec<Vec<GhostState>>,
    /// What the cores share (NATS up or down is written here).
    view: Arc<ClusterView>,
    /// Positions to quadrants, to check an offer's ground.
    quantizer: Quantizer,
    transfer_timeout: Duration,
    /// Offers accepted, waiting for the lease (by the link's token).
    offers: HashMap<u64, Box<TransferRecord>>,
    /// NPC offers accepted, waiting for the transit lease (by token).
    npc_offers: HashMap<u64, Box<CarriedNpc>>,
    /// This node's cores (which core runs an arriving NPC's ground).
    layout: Option<tos_config::ResolvedLayout>,
    /// The next transit lease serial for an NPC leaving this node.
    next_transit: u64,
    /// Players whose lease this node took, waiting for their clients.
    arrivals: HashMap<TransferSecret, Arrival>,
    /// Hand-offs asked by the cores, by the link's number: (core, request).
    handoffs: HashMap<u64, (u16, u64)>,
    waiting: HashMap<u64, Waiting>,
    next: u64,
    quadrants: Vec<[u16; 3]>,
    claimed: bool,
    stop: Arc<AtomicBool>,
}

impl Router {
    fn run(mut self) {
        tracing::info!(node = %self.node, "cluster thread running");
        // A handle of its own: the arms below need `self` mutably.
        let events = self.link.events().clone();
        let ghosts = self.ghosts.clone();
        while !self.stop.load(Ordering::SeqCst) {
            select! {
                recv(self.commands) -> command => match command {
                    Ok(command) => self.command(command),
                    Err(_) => return,
                },
                recv(ghosts) -> batch => match batch {
                    Ok(batch) => self.ghosts_out(batch),
                    Err(_) => return,
                },
                recv(events) -> event => match event {
                    Ok(event) => self.event(event),
                    Err(_) => return,
                },
                default(Duration::from_millis(50)) => {}
            }
            self.expire_arrivals(Instant::now());
        }
        // Stopping: let the releases the cores sent on their way out reach
        // the directory (briefly), so a clean shutdown frees its characters
        // at once instead of after the lease TTL.
        let deadline = Instant::now() + STOP_DRAIN;
        while !self.waiting.is_empty() && Instant::now() < deadline {
            if let Ok(event) = events.recv_timeout(Duration::from_millis(20)) {
                self.event(event);
            }
        }
    }

    fn forward(&mut self, command: impl FnOnce(u64) -> LinkCommand, waiting: Waiting) -> bool {
        let id = self.next;
        self.next += 1;
        match self.link.send(command(id)) {
            Ok(()) => {
                self.waiting.insert(id, waiting);
                true
            }
            Err(_) => false,
        }
    }

    fn answer(&self, core: u16, request: u64, answer: ClusterAnswer) {
        self.to_core(core, ClusterReply::Answer { request, answer });
    }

    fn to_core(&self, core: u16, reply: ClusterReply) {
        if let Some(tx) = self.to_cores.get(usize::from(core)) {
            if let Err(TrySendError::Full(_)) = tx.try_send(reply) {
                // A core that does not drain 4096 replies is stuck; its
                // request stays unanswered (the client retries).
                tracing::warn!(core, "cluster: a core's reply channel is full");
            }
        }
    }

    fn command(&mut self, command: ClusterCommand) {
        let ClusterCommand { request, core, op } = command;
        match op {
            ClusterOp::Acquire { character, name } => {
                let sent = self.forward(
                    |id| LinkCommand::Acquire {
                        request: id,
                        character,
                        name,
                    },
                    Waiting::Lease { core, request },
                );
                if !sent {
                    self.answer(
                        core,
                        request,
                        ClusterAnswer::Lease(LeaseAnswer::Unavailable),
                    );
                }
            }
            ClusterOp::Release { character } => {
                let sent = self.forward(
                    |id| LinkCommand::Release {
                        request: id,
                        character,
                    },
                    Waiting::Release,
                );
                if !sent {
                    tracing::warn!(
                        character,
                        "cluster: a release could not be queued; the lease expires instead"
                    );
                }
            }
            ClusterOp::HandOff {
                to,
                character,
                payload,
            } => self.hand_off(core, request, to, |handoff, to| LinkCommand::HandOff {
                handoff,
                to,
                character,
                payload,
            }),
            ClusterOp::HandOffNpc { to, payload } => {
                let key = tos_cluster::transit_key(self.view.me as u16, self.next_transit);
                self.next_transit += 1;
                self.hand_off(core, request, to, |handoff, to| {
                    LinkCommand::HandOffTransit {
                        handoff,
                        to,
                        key,
                        payload,
                    }
                })
            }
            ClusterOp::Effect { to, effect } => {
                let Some(to) = self.view.nodes.get(to).map(|n| n.name.clone()) else {
                    return;
                };
                let line = effect_line(&self.node, &effect);
                if self.link.send(LinkCommand::Effect { to, line }).is_err() {
                    self.counters
                        .zone_effects_dropped_total
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            ClusterOp::CombatEcho { to, outcome } => {
                let Some(to) = self.view.nodes.get(to).map(|n| n.name.clone()) else {
                    return;
                };
                let line = CombatLine {
                    from_node: self.node.clone(),
                    source: outcome.source,
                    target: outcome.target,
                    skill: outcome.skill,
                    amount: outcome.amount,
                    flags: outcome.flags,
                };
                let _ = self.link.send(LinkCommand::Combat { to, line });
            }
            ClusterOp::Chat { from, text, near } => {
                let broadcast = tos_cluster::wire::ChatBroadcast {
                    from_node: self.node.clone(),
                    from,
                    text,
                    near,
                };
                if self.link.send(LinkCommand::Chat(broadcast)).is_err() {
                    tracing::debug!("cluster: a chat line for other nodes was dropped");
                }
            }
            ClusterOp::ClaimArrival { secret } => {
                let arrival = self.arrivals.remove(&secret).map(|a| a.record);
                self.answer(core, request, ClusterAnswer::Arrival(arrival));
            }
            ClusterOp::Whisper { from, to, text } => {
                let sent = self.forward(
                    |id| LinkCommand::FindPlayer {
                        request: id,
                        name: to,
                    },
                    Waiting::WhisperLookup {
                        core,
                        request,
                        from,
                        text,
                    },
                );
                if !sent {
                    self.answer(
                        core,
                        request,
                        ClusterAnswer::Whisper(WhisperAnswer::Unavailable),
                    );
                }
            }
        }
    }

    fn event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Up => {
                tracing::info!(node = %self.node, "cluster: NATS is up");
                self.view.set_up(true);
                if !self.claimed {
                    let quadrants = self.quadrants.clone();
                    self.forward(
                        |id| LinkCommand::ClaimQuadrants {
                            request: id,
                            quadrants,
                        },
                        Waiting::Claim,
                    );
                }
            }
            LinkEvent::Down => {
                self.view.set_up(false);
                tracing::warn!(node = %self.node, "cluster: NATS is down; entering needs a lease and is refused until it returns");
            }
            LinkEvent::Reply { request, result } => self.reply(request, result),
            LinkEvent::Combat(line) => {
                let outcome = CombatOutcome {
                    source: line.source,
                    target: line.target,
                    skill: line.skill,
                    amount: line.amount,
                    flags: line.flags,
                };
                for core in 0..self.to_cores.len() {
                    self.to_core(core as u16, ClusterReply::Combat(outcome));
                }
            }
            LinkEvent::Effect(line) => match remote_effect(&line) {
                // Every core gets it: the one that runs the target applies it.
                Some(effect) => {
                    let from = self
                        .view
                        .nodes
                        .iter()
                        .position(|n| n.name == line.from_node);
                    for core in 0..self.to_cores.len() {
                        self.to_core(core as u16, ClusterReply::Effect { effect, from });
                    }
                }
                None => {
                    tracing::warn!(from = %line.from_node, "cluster: an effect naming no buff was refused");
                    self.counters
                        .zone_effects_dropped_total
                        .fetch_add(1, Ordering::Relaxed);
                }
            },
            LinkEvent::Ghosts(payload) => self.ghosts_in(&payload),
            LinkEvent::Chat(line) => {
                for core in 0..self.to_cores.len() {
                    self.to_core(
                        core as u16,
                        ClusterReply::Chat {
                            from: line.from.clone(),
                            text: line.text.clone(),
                            near: line.near,
                        },
                    );
                }
            }
            LinkEvent::Whisper(line) => {
                match self.registry.core_of(line.to) {
                    Some(core) => self.to_core(
                        core,
                        ClusterReply::Whisper {
                            from: line.from,
                            to: line.to,
                            text: line.text,
                        },
                    ),
                    // Left meanwhile: dropped like a whisper to someone who
                    // logged out between two cores.
                    None => tracing::debug!(to = line.to, "cluster: whisper for nobody here"),
                }
            }
            LinkEvent::LeaseLost { character, owner } => {
                tracing::warn!(character, owner = %owner, "cluster: lease lost to another node");
                if let Some(core) = self.registry.core_of(character) {
                    self.to_core(core, ClusterReply::LeaseLost { character });
                }
            }
            LinkEvent::Offer {
                token,
                from,
                character,
                payload,
                ..
            } => self.offer(token, &from, character, &payload),
            LinkEvent::Taken { token, .. } if self.npc_offers.contains_key(&token) => {
                if let Some(npc) = self.npc_offers.remove(&token) {
                    let core = self.core_of(npc.position);
                    self.to_core(core, ClusterReply::NpcArrived(npc));
                }
            }
            LinkEvent::Taken { token, character } => {
                if let Some(record) = self.offers.remove(&token) {
                    tracing::debug!(
                        character,
                        "cluster: a player arrives; waiting for its client"
                    );
                    let deadline = Instant::now() + self.transfer_timeout;
                    self.to_core(0, ClusterReply::Arrived(record.clone()));
                    self.arrivals
                        .insert(record.secret, Arrival { record, deadline });
                }
            }
            LinkEvent::NotTaken { token, reason } => {
                tracing::info!(
                    ?reason,
                    "cluster: an accepted offer was not taken after all"
                );
                self.offers.remove(&token);
                self.npc_offers.remove(&token);
            }
            LinkEvent::Handoff {
                handoff,
                character,
                outcome,
            } => {
                let Some((core, request)) = self.handoffs.remove(&handoff) else {
                    return;
                };
                let outcome = match outcome {
                    tos_cluster::HandoffOutcome::Delivered => CrossingOutcome::Delivered,
                    tos_cluster::HandoffOutcome::Kept(why) => {
                        CrossingOutcome::Kept(format!("{why:?}"))
                    }
                    tos_cluster::HandoffOutcome::Superseded { owner } => {
                        tracing::warn!(character, owner = %owner, "cluster: a crossing player's lease is a third node's");
                        CrossingOutcome::Superseded
                    }
                };
                self.answer(core, request, ClusterAnswer::Crossing(outcome));
            }
        }
    }

    /// A core's ghosts for another node: written and published.
    fn ghosts_out(&mut self, batch: NodeGhosts) {
        let me = self.view.me;
        let to = self
            .view
            .nodes
            .get(usize::from(batch.node))
            .map(|n| n.name.clone());
        let mut payload = Vec::new();
        node_ghosts::encode(me as u16, &batch, &mut payload);
        self.recycle(batch.ghosts);
        let sent = match to {
            Some(to) if usize::from(batch.node) != me => {
                self.link.send(LinkCommand::Ghosts { to, payload }).is_ok()
            }
            _ => false,
        };
        let counter = if sent {
            &self.counters.zone_ghost_batches_out_total
        } else {
            &self.counters.zone_ghost_batches_dropped_total
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Another node's ghosts: checked, then passed to every core.
    fn ghosts_in(&mut self, payload: &[u8]) {
        let mut ghosts = self.ghost_pool.pop().unwrap_or_default();
        let checked = match node_ghosts::decode(payload, &mut ghosts) {
            Ok((from, tick))
                if usize::from(from) < self.view.nodes.len()
                    && usize::from(from) != self.view.me =>
            {
                Ok((from, tick))
            }
            Ok((from, _)) => Err(format!("it names node {from}")),
            Err(e) => Err(e.to_string()),
        };
        let (from, tick) = match checked {
            Ok(v) => v,
            Err(why) => {
                tracing::debug!(%why, "cluster: a ghost batch was refused");
                self.counters
                    .zone_ghost_batches_malformed_total
                    .fetch_add(1, Ordering::Relaxed);
                return self.recycle(ghosts);
            }
        };
        self.counters
            .zone_ghost_batches_in_total
            .fetch_add(1, Ordering::Relaxed);
        let last = self.to_cores.len().saturating_sub(1);
        for core in 0..self.to_cores.len() {
            let list = if core == last {
                core::mem::take(&mut ghosts)
            } else {
                let mut copy = self.ghost_pool.pop().unwrap_or_default();
                copy.clear();
                copy.extend_from_slice(&ghosts);
                copy
            };
            let batch = NodeGhosts {
                node: from,
                tick,
                ghosts: list,
            };
            // Ghosts take at most half of a core's reply channel: a core
            // that falls behind loses ghosts, not lease answers.
            let tx = &self.to_cores[core];
            let sent = if tx.len() < QUEUE / 2 {
                tx.try_send(ClusterReply::Ghosts(batch))
            } else {
                Err(TrySendError::Full(ClusterReply::Ghosts(batch)))
            };
            if let Err(e) = sent {
                self.counters
                    .zone_ghost_batches_dropped_total
                    .fetch_add(1, Ordering::Relaxed);
                if let ClusterReply::Ghosts(batch) = e.into_inner() {
                    self.recycle(batch.ghosts);
                }
            }
        }
    }

    fn recycle(&mut self, mut ghosts: Vec<GhostState>) {
        if self.ghost_pool.len() < GHOST_POOL {
            ghosts.clear();
            self.ghost_pool.push(ghosts);
        }
    }

    /// Sends a core's hand-off to node `to` (`command` gets the link's
    /// number and the node's name); the outcome comes back as
    /// `LinkEvent::Handoff`, or at once as `Kept` when it cannot be sent.
    fn hand_off(
        &mut self,
        core: u16,
        request: u64,
        to: usize,
        command: impl FnOnce(u64, String) -> LinkCommand,
    ) {
        let id = self.next;
        self.next += 1;
        let kept = |why: &str| ClusterAnswer::Crossing(CrossingOutcome::Kept(why.to_owned()));
        let Some(to) = self.view.nodes.get(to).map(|n| n.name.clone()) else {
            return self.answer(core, request, kept("no such node"));
        };
        match self.link.send(command(id, to)) {
            Ok(()) => {
                self.handoffs.insert(id, (core, request));
            }
            Err(e) => self.answer(core, request, kept(&e.to_string())),
        }
    }

    /// The core of this node that simulates `p` (0 without a layout).
    fn core_of(&self, p: [f32; 3]) -> u16 {
        let core = match (&self.layout, self.quantizer.quadrant_coords(p)) {
            (Some(layout), Ok(q)) => layout.owner(q),
            _ => 0,
        };
        if usize::from(core) < self.to_cores.len() {
            core
        } else {
            0
        }
    }

    /// Whether `p` is this node's ground.
    fn here(&self, p: [f32; 3]) -> bool {
        self.quantizer
            .quadrant_coords(p)
            .ok()
            .and_then(|q| self.view.owner_index(q))
            == Some(self.view.me)
    }

    /// Another node offers an NPC: checked before the transit lease is
    /// taken, so a taken NPC always has ground here to run on.
    fn npc_offer(&mut self, token: u64, from: &str, payload: &[u8]) {
        let refuse = |link: &NatsLink, reason| {
            let _ = link.send(LinkCommand::Refuse { token, reason });
        };
        let npc = match CarriedNpc::decode(payload) {
            Ok(npc) => npc,
            Err(e) => {
                tracing::warn!(from, error = %e, "cluster: a malformed NPC record was refused");
                return refuse(&self.link, tos_cluster::RefuseReason::Malformed);
            }
        };
        let twice = self.npc_offers.values().any(|n| n.net_id == npc.net_id);
        if !self.here(npc.position) || twice {
            tracing::warn!(
                from,
                net_id = npc.net_id,
                twice,
                "cluster: an NPC record not for this node was refused"
            );
            return refuse(&self.link, tos_cluster::RefuseReason::Rejected);
        }
        if self.npc_offers.len() >= MAX_ARRIVALS {
            return refuse(&self.link, tos_cluster::RefuseReason::Busy);
        }
        if self.link.send(LinkCommand::Accept { token }).is_ok() {
            self.npc_offers.insert(token, Box::new(npc));
        }
    }

    /// Another node offers a player: checked before the lease is taken.
    fn offer(&mut self, token: u64, from: &str, character: u64, payload: &[u8]) {
        let refuse = |link: &NatsLink, reason| {
            let _ = link.send(LinkCommand::Refuse { token, reason });
        };
        if tos_cluster::is_transit(character) {
            return self.npc_offer(token, from, payload);
        }
        let record = match TransferRecord::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(from, error = %e, "cluster: a malformed player record was refused");
                return refuse(&self.link, tos_cluster::RefuseReason::Malformed);
            }
        };
        let here = self.here(record.state.position);
        let mut waiting = self
            .offers
            .values()
            .chain(self.arrivals.values().map(|a| &a.record));
        let twice = waiting.any(|r| r.character() == character);
        if record.character() != character || !here || twice {
            tracing::warn!(
                from,
                character,
                here,
                twice,
                "cluster: a player record not for this node was refused"
            );
            return refuse(&self.link, tos_cluster::RefuseReason::Rejected);
        }
        if self.arrivals.len() + self.offers.len() >= MAX_ARRIVALS {
            return refuse(&self.link, tos_cluster::RefuseReason::Busy);
        }
        if self.link.send(LinkCommand::Accept { token }).is_ok() {
            self.offers.insert(token, Box::new(record));
        }
    }

    /// Arrivals whose client did not come in time: core 0 saves them where
    /// they crossed and gives their leases back.
    fn expire_arrivals(&mut self, now: Instant) {
        if self.arrivals.is_empty() {
            return;
        }
        let expired: Vec<TransferSecret> = self
            .arrivals
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for secret in expired {
            if let Some(a) = self.arrivals.remove(&secret) {
                self.to_core(0, ClusterReply::Unclaimed(a.record));
            }
        }
    }

    fn reply(&mut self, request: u64, result: Result<DirectoryAnswer, LinkError>) {
        let Some(waiting) = self.waiting.remove(&request) else {
            return;
        };
        match waiting {
            Waiting::Lease { core, request } => {
                let answer = match result {
                    Ok(DirectoryAnswer::Acquired { .. }) => LeaseAnswer::Taken,
                    Err(LinkError::Directory(DirectoryError::Conflict { owner })) => {
                        LeaseAnswer::HeldBy(owner)
                    }
                    Ok(other) => {
                        tracing::error!(?other, "cluster: a lease answer of the wrong kind");
                        LeaseAnswer::Unavailable
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster: a lease could not be taken");
                        LeaseAnswer::Unavailable
                    }
                };
                self.answer(core, request, ClusterAnswer::Lease(answer));
            }
            Waiting::WhisperLookup {
                core,
                request,
                from,
                text,
            } => match result {
                Ok(DirectoryAnswer::Player(Some((node, character)))) => {
                    let line = WhisperLine {
                        from_node: self.node.clone(),
                        from,
                        to: character,
                        text,
                    };
                    let sent = self.forward(
                        |id| LinkCommand::Whisper {
                            request: id,
                            to: node,
                            line,
                        },
                        Waiting::WhisperSend { core, request },
                    );
                    if !sent {
                        self.answer(
                            core,
                            request,
                            ClusterAnswer::Whisper(WhisperAnswer::Unavailable),
                        );
                    }
                }
                Ok(DirectoryAnswer::Player(None)) => self.answer(
                    core,
                    request,
                    ClusterAnswer::Whisper(WhisperAnswer::NoSuchPlayer),
                ),
                _ => self.answer(
                    core,
                    request,
                    ClusterAnswer::Whisper(WhisperAnswer::Unavailable),
                ),
            },
            Waiting::WhisperSend { core, request } => {
                let answer = match result {
                    Ok(_) => WhisperAnswer::Sent,
                    Err(_) => WhisperAnswer::Unavailable,
                };
                self.answer(core, request, ClusterAnswer::Whisper(answer));
            }
            Waiting::Release => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "cluster: a release failed; the lease expires instead");
                }
            }
            Waiting::Claim => match result {
                Ok(_) => {
                    self.claimed = true;
                    tracing::info!(node = %self.node, quadrants = self.quadrants.len(), "cluster: quadrants claimed");
                }
                Err(e) => {
                    tracing::error!(error = %e, "cluster: claiming this node's quadrants failed")
                }
            },
        }
    }
}

/// Longest buff another node's effect may put on (ticks): an hour at 60 Hz.
const MAX_CARRIED_BUFF_TICKS: u32 = 3_600 * 60;

/// A core's effect on another node's entity, as the cluster carries it.
fn effect_line(node: &str, e: &RemoteEffect) -> EffectLine {
    EffectLine {
        from_node: node.to_owned(),
        target: e.target,
        source: e.source,
        skill: e.skill,
        strike: e.strike.map(|s| (s.power, s.attack, s.dex, s.magic)),
        damage: e.damage,
        heal: e.heal,
        buff: e
            .buff
            .map(|b| (b.buff as u8, b.duration_ticks, b.intensity)),
    }
}

/// Another node's effect as this node's cores apply it (`to_core` does not
/// matter: every core gets it); `None` when it names no buff.
fn remote_effect(line: &EffectLine) -> Option<RemoteEffect> {
    let buff = match line.buff {
        Some((buff, ticks, intensity)) => Some(BuffEffect {
            buff: Buff::from_u8(buff)?,
            duration_ticks: ticks.min(MAX_CARRIED_BUFF_TICKS),
            intensity,
        }),
        None => None,
    };
    Some(RemoteEffect {
        to_core: 0,
        target: line.target,
        source: line.source,
        source_client: None,
        skill: line.skill,
        strike: line.strike.map(|(power, attack, dex, magic)| Strike {
            power,
            attack,
            dex,
            magic,
        }),
        damage: line.damage,
        heal: line.heal,
        buff,
    })
}
