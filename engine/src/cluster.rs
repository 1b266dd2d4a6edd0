//! A node's membership in a cluster: loading its part of the cluster file,
//! starting the [`NatsLink`] (on its own thread, never a core's), claiming
//! the node's quadrants in the directory, and the `tos-cluster` thread that
//! carries the cores' plain-value requests (leases, whispers to other
//! nodes) to the link and routes the answers and incoming whispers back to
//! each core's bounded reply channel.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select};
use tos_cluster::{
    Cluster, DirectoryAnswer, DirectoryError, LinkCommand, LinkConfig, LinkError, LinkEvent,
    NatsLink, wire::WhisperLine,
};
use tos_config::{ServerConfig, ShardLayout};
use tos_game::OnlineRegistry;
use tos_game::cluster::{
    ClusterAnswer, ClusterCommand, ClusterOp, ClusterReply, ClusterView, CoreCluster, LeaseAnswer,
    NodeInfo, WhisperAnswer,
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
    ) -> Result<Self, JoinError> {
        let config = LinkConfig::for_node(&setup.cluster, setup.index)
            .ok_or(JoinError::Link(LinkError::Config("no such node".into())))?;
        let link = NatsLink::start(config).map_err(JoinError::Link)?;
        let quadrants = setup.quadrants();
        let claimed = claim(&link, &quadrants)?;
        let (commands_tx, commands) = bounded(QUEUE);
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
            .map(|n| NodeInfo {
                name: n.name.clone(),
                address: n.address.clone(),
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
        });
        let stop = Arc::new(AtomicBool::new(false));
        let router = Router {
            link,
            node: setup.name().to_owned(),
            commands,
            to_cores,
            registry,
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

/// The thread between the cores and the link.
struct Router {
    link: NatsLink,
    node: String,
    commands: Receiver<ClusterCommand>,
    to_cores: Vec<Sender<ClusterReply>>,
    registry: Arc<OnlineRegistry>,
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
        while !self.stop.load(Ordering::SeqCst) {
            select! {
                recv(self.commands) -> command => match command {
                    Ok(command) => self.command(command),
                    Err(_) => return,
                },
                recv(events) -> event => match event {
                    Ok(event) => self.event(event),
                    Err(_) => return,
                },
                default(Duration::from_millis(50)) => {}
            }
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
                tracing::warn!(node = %self.node, "cluster: NATS is down; entering needs a lease and is refused until it returns");
            }
            LinkEvent::Reply { request, result } => self.reply(request, result),
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
            // Hand-offs across processes are not built yet: nobody here
            // offers, and an offer from another build is refused.
            LinkEvent::Offer { token, .. } => {
                let _ = self.link.send(LinkCommand::Refuse {
                    token,
                    reason: tos_cluster::RefuseReason::Rejected,
                });
            }
            LinkEvent::Handoff { .. } | LinkEvent::Taken { .. } | LinkEvent::NotTaken { .. } => {}
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
