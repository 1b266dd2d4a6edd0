//! Starting and stopping a server: core selection, sockets bound in core
//! order, cBPF steering, the channel mesh, one pinned thread per core, the
//! metrics endpoint, and a graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};
use tos_config::{CoreSelection, IoBackend, ServerConfig, ShardLayout, Steering};
use tos_game::boot::{Boot, BootError};
use tos_shards::{Shard, WorldData};

use tos_protocol::endpoint::Endpoint;

use crate::core::{CoreMessage, CoreRunner, CoreSettings, Mode};
use crate::io::{BackendChoice, IoConfig, attach_steering_cbpf, bind_reuseport, select_backend};
use crate::settings::{SecretError, Secrets, endpoint_config, transport_config};
use crate::stats::{CoreSnapshot, CoreStats};

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configured address does not parse.
    BadAddress(String),
    /// The port is in use by another socket.
    PortBusy {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A socket operation failed.
    Socket(std::io::Error),
    /// More cores were asked for than this machine offers.
    TooFewCores {
        /// Cores asked for.
        wanted: usize,
        /// Cores available to this process.
        available: usize,
    },
    /// A listed core does not exist or is not available to this process.
    UnknownCore(usize),
    /// More than 255 cores (a connection id's low byte names the core).
    TooManyCores(usize),
    /// cBPF steering was required and could not be attached.
    Steering(std::io::Error),
    /// io_uring was required and could not be set up.
    Backend(std::io::Error),
    /// A secret file could not be loaded.
    Secret(SecretError),
    /// The metrics address could not be bound.
    Metrics {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A core thread failed to start.
    Thread(String),
    /// The shard layout does not fit the world or the cores.
    Layout(String),
    /// A core's shard could not be built.
    World(String),
    /// The game layer (data directory, store, keys, game data) could not
    /// start.
    Game(BootError),
    /// A setting is out of its allowed range (a config built in code that
    /// skipped validation).
    Config(String),
    /// The node could not join its cluster (link, quadrant claims).
    Cluster(String),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadAddress(a) => write!(f, "bad bind address {a:?}"),
            Self::PortBusy { addr, source } => write!(f, "port busy: cannot bind {addr}: {source}"),
            Self::Socket(e) => write!(f, "socket error: {e}"),
            Self::TooFewCores { wanted, available } => {
                write!(
                    f,
                    "too few cores: {wanted} requested, {available} available to this process"
                )
            }
            Self::UnknownCore(c) => write!(f, "core {c} is not available to this process"),
            Self::TooManyCores(n) => write!(f, "{n} cores requested; at most 255 are supported"),
            Self::Steering(e) => write!(f, "cannot attach the cBPF steering program: {e}"),
            Self::Backend(e) => write!(f, "cannot set up io_uring: {e}"),
            Self::Secret(e) => write!(f, "{e}"),
            Self::Metrics { addr, source } => {
                write!(f, "cannot bind the metrics address {addr}: {source}")
            }
            Self::Thread(e) => write!(f, "cannot start a core thread: {e}"),
            Self::Layout(e) => write!(f, "bad shard layout: {e}"),
            Self::World(e) => write!(f, "cannot build the world: {e}"),
            Self::Game(e) => write!(f, "{e}"),
            Self::Config(e) => write!(f, "bad configuration: {e}"),
            Self::Cluster(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    static_public: [u8; 32],
    integrity_secret: [u8; 32],
    cores: Vec<JoinHandle<()>>,
    commands: Vec<Sender<CoreMessage>>,
    stats: Arc<Vec<Arc<CoreStats>>>,
    stop: Arc<AtomicBool>,
    metrics_stop: Arc<AtomicBool>,
    metrics: Option<(SocketAddr, JoinHandle<()>)>,
    steering: &'static str,
    game: Option<Box<Boot>>,
    cluster: Option<Box<crate::cluster::ClusterNode>>,
    panicked: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl ServerHandle {
    /// Cores whose loop panicked (each saved what it could and set the
    /// stop flag; see [`CoreRunner::run`]).
    pub fn panicked_cores(&self) -> Vec<usize> {
        self.panicked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The UDP address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The public key clients pin.
    pub fn static_public_key(&self) -> [u8; 32] {
        self.static_public
    }

    /// The secret integrity tables derive from (for test clients).
    pub fn integrity_secret(&self) -> [u8; 32] {
        self.integrity_secret
    }

    /// The metrics endpoint's address, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(a, _)| *a)
    }

    /// How datagrams reach their core: "cbpf" or "software".
    pub fn steering(&self) -> &'static str {
        self.steering
    }

    /// Number of cores.
    pub fn core_count(&self) -> usize {
        self.cores.len()
    }

    /// Every core's published counters.
    pub fn stats(&self) -> Vec<CoreSnapshot> {
        self.stats.iter().map(|s| s.snapshot()).collect()
    }

    /// Asks the owning core to move a connection to `target`.
    pub fn migrate(&self, connection_id: u32, target: u8) -> bool {
        let owner = (connection_id as u8) as usize % self.commands.len().max(1);
        self.commands[owner]
            .try_send(CoreMessage::MigrateRequest {
                connection_id,
                target,
            })
            .is_ok()
    }

    /// The game layer's shared services (store, registry, counters), when
    /// the server runs the world.
    pub fn game(&self) -> Option<&Boot> {
        self.game.as_deref()
    }

    /// Stops every core: each saves its characters, sends Disconnect to its
    /// clients and flushes; then the store writes everything still pending
    /// and stops. Returns whether every core stopped within `grace`.
    pub fn shutdown(mut self, grace: Duration) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        let mut all = true;
        for t in self.cores.drain(..) {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                all = false;
            }
        }
        // After the cores: their lease releases are in its queue.
        if let Some(cluster) = self.cluster.take() {
            cluster.stop(Duration::from_secs(1));
        }
        // After the cores: their last saves are in the store's queue.
        if let Some(game) = self.game.take() {
            game.stop();
        }
        self.metrics_stop.store(true, Ordering::SeqCst);
        if let Some((_, t)) = self.metrics.take() {
            let _ = t.join();
        }
        all
    }

    /// Whether any core thread has exited (it should only on shutdown).
    pub fn any_core_stopped(&self) -> bool {
        self.cores.iter().any(JoinHandle::is_finished)
    }
}

/// The cores this process may run on: the main thread's affinity mask
/// (the process's, not the calling thread's, which may be pinned).
fn available_cores() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: for a pid the kernel reports the mask of the thread whose id
    // equals it (the main thread) and writes at most the size given.
    let rc = unsafe {
        libc::sched_getaffinity(
            libc::getpid(),
            core::mem::size_of::<libc::cpu_set_t>(),
            &mut set,
        )
    };
    let mut ids: Vec<usize> = Vec::new();
    if rc == 0 {
        for cpu in 0..libc::CPU_SETSIZE as usize {
            // SAFETY: cpu is below CPU_SETSIZE, the set's capacity.
            if unsafe { libc::CPU_ISSET(cpu, &set) } {
                ids.push(cpu);
            }
        }
    }
    if ids.is_empty() {
        ids = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
    }
    if ids.is_empty() {
        ids = (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    ids
}

/// Resolves the configured core selection against this machine.
pub fn select_cores(selection: &CoreSelection) -> Result<Vec<usize>, StartError> {
    let available = available_cores();
    let cores = match selection {
        CoreSelection::All => available.clone(),
        CoreSelection::Count(n) => {
            if *n > available.len() {
                return Err(StartError::TooFewCores {
                    wanted: *n,
                    available: available.len(),
                });
            }
            available[..*n].to_vec()
        }
        CoreSelection::List(list) => {
            for c in list {
                if !available.contains(c) {
                    return Err(StartError::UnknownCore(*c));
                }
            }
            list.clone()
        }
    };
    if cores.is_empty() {
        return Err(StartError::TooFewCores {
            wanted: 1,
            available: available.len(),
        });
    }
    if cores.len() > 255 {
        return Err(StartError::TooManyCores(cores.len()));
    }
    Ok(cores)
}

/// Non-player entities populating the default world (spread over it; each
/// core simulates those in its quadrants). This background population has
/// no NPC template: it wanders (obeying walls and slopes) but never fights,
/// and keeps the performance figures comparable with earlier releases; the
/// NPCs that fight come from the spawn groups of `spawns.ron`, on top.
pub const DEFAULT_WORLD_ENTITIES: usize = 2_000;

/// Starts a server as configured, with the world cut into stripes, one per
/// core.
pub fn start(config: &ServerConfig) -> Result<ServerHandle, StartError> {
    start_with_layout(config, None)
}

/// Starts a server as configured, with a shard layout (`None`: stripes).
pub fn start_with_layout(
    config: &ServerConfig,
    layout: Option<&ShardLayout>,
) -> Result<ServerHandle, StartError> {
    start_node(config, layout, None)
}

/// Starts a server as one node of a cluster (`node`), or alone (`None`).
/// A node runs with its layout from the cluster file (`layout` is then
/// ignored), spawns only the NPCs of its own quadrants, and joins the
/// cluster (NATS link, quadrant claims) before its cores start.
pub fn start_node(
    config: &ServerConfig,
    layout: Option<&ShardLayout>,
    node: Option<&crate::cluster::NodeSetup>,
) -> Result<ServerHandle, StartError> {
    let layout = match node {
        Some(node) => node.layout().or(layout),
        None => layout,
    };
    let bind = config
        .network
        .bind_addr()
        .map_err(|_| StartError::BadAddress(config.network.bind.clone()))?;
    let cores = select_cores(&config.runtime.cores)?;
    // Validated at load (16..=16384) and honoured as configured; a config
    // built in code is checked here rather than silently clamped.
    let capacity = config.runtime.cross_core_channel_capacity;
    if !(tos_config::MIN_CHANNEL_CAPACITY..=tos_config::MAX_CHANNEL_CAPACITY).contains(&capacity) {
        return Err(StartError::Config(format!(
            "runtime.cross_core_channel_capacity must be {}..={}, not {capacity}",
            tos_config::MIN_CHANNEL_CAPACITY,
            tos_config::MAX_CHANNEL_CAPACITY
        )));
    }
    let layout = match layout {
        Some(l) => l.clone(),
        None => ShardLayout {
            cores: cores.len() as u16,
            ..ShardLayout::default()
        },
    };
    if usize::from(layout.cores) != cores.len() {
        return Err(StartError::Layout(format!(
            "the layout is for {} cores but {} were selected",
            layout.cores,
            cores.len()
        )));
    }
    let resolved = layout
        .resolve(config.world.quadrant_grid())
        .map_err(|e| StartError::Layout(e.to_string()))?;
    let mut world_data = WorldData::populated(&config.world, DEFAULT_WORLD_ENTITIES, 1);
    if let Some(path) = &config.authority.heightfield_file {
        world_data.heightfield = tos_shards::data::load_heightfield(std::path::Path::new(path))
            .map_err(|e| StartError::World(e.to_string()))?;
    }
    if let Some(path) = &config.authority.obstacles_file {
        world_data.obstacles = tos_shards::data::load_obstacles(std::path::Path::new(path))
            .map_err(|e| StartError::World(e.to_string()))?;
    }
    let next_client = Arc::new(std::sync::atomic::AtomicU32::new(1));
    let config_arc = Arc::new(config.clone());
    let data_dir = std::path::PathBuf::from(&config.runtime.data_dir);
    let secrets = Secrets::load(config, &data_dir).map_err(StartError::Secret)?;
    // The game layer's services (store, auth workers, game data, keys) start
    // before the cores so that nothing of it runs on a core's thread.
    let game = if config.runtime.echo_mode {
        None
    } else {
        Some(Box::new(
            tos_game::boot::start(config, &data_dir).map_err(StartError::Game)?,
        ))
    };
    // The shards' NPC templates, patrols and spawn groups, skills, loot
    // tables and level table are the game data the game layer loaded and
    // checked (`runtime.game_data_dir`, or the built-in files).
    if let Some(game) = &game {
        let data = &game.services.data;
        data.npcs
            .check_world(
                config
                    .runtime
                    .game_data_dir
                    .as_deref()
                    .unwrap_or("config/data (built in)"),
                &config.world,
            )
            .map_err(|e| StartError::World(e.to_string()))?;
        world_data = world_data.with_npcs(&data.npcs);
        world_data.apply_game_data(data);
    }
    // A node simulates only its own quadrants: the other nodes spawn theirs.
    // Its network ids are its own residue class, so the ghosts it shows of
    // other nodes' entities never share an id with its own.
    if let Some(node) = node {
        world_data.net_ids = node.net_id_space();
        let quantizer = config
            .world
            .quantizer()
            .map_err(|e| StartError::World(e.to_string()))?;
        world_data.spawns.retain(|s| {
            quantizer
                .quadrant_coords(quantizer.clamp(s.position))
                .is_ok_and(|q| node.owns(q))
        });
    }
    // A plain bind first: it fails if any socket (reuseport or not) holds
    // the port, which the reuseport binds below would silently join.
    let addr = match std::net::UdpSocket::bind(bind) {
        Ok(probe) => {
            let a = probe.local_addr().map_err(StartError::Socket)?;
            drop(probe);
            a
        }
        Err(source) => return Err(StartError::PortBusy { addr: bind, source }),
    };
    let recv_buf = config.network.recv_buffer_bytes as usize;
    let send_buf = config.network.send_buffer_bytes as usize;
    // Bind in core order: the reuseport group's index is the bind order,
    // which is what the cBPF program's result selects.
    let mut sockets = Vec::with_capacity(cores.len());
    for _ in &cores {
        let s = bind_reuseport(addr, recv_buf, send_buf)
            .map_err(|source| StartError::PortBusy { addr, source })?;
        sockets.push(s);
    }
    let steering = match config.network.steering {
        Steering::Software => "software",
        Steering::Cbpf | Steering::Auto => {
            match attach_steering_cbpf(&sockets[0], cores.len() as u32) {
                Ok(()) => "cbpf",
                Err(e) if config.network.steering == Steering::Cbpf => {
                    return Err(StartError::Steering(e));
                }
                Err(e) => {
                    tracing::warn!(
                        "cBPF steering unavailable ({e}); datagrams that reach the wrong core are forwarded in software"
                    );
                    "software"
                }
            }
        }
    };
    tracing::info!(%addr, cores = ?cores, steering, "binding");

    let epoch = Instant::now();
    let transport = Arc::new(transport_config(config));
    let capacity = capacity as usize;
    let meshes = crate::core::mesh(cores.len(), capacity);
    let senders = meshes.first().map(|m| m.peers.clone()).unwrap_or_default();
    let admission = crate::settings::admission(config);
    let stop = Arc::new(AtomicBool::new(false));
    let stats: Arc<Vec<Arc<CoreStats>>> = Arc::new(
        (0..cores.len())
            .map(|_| Arc::new(CoreStats::default()))
            .collect(),
    );
    let static_public = Endpoint::new(endpoint_config(
        config,
        &secrets,
        0,
        epoch,
        Arc::clone(&transport),
    ))
    .static_public_key();
    let key_file = config
        .security
        .server_static_key_file
        .clone()
        .unwrap_or_else(|| {
            data_dir
                .join(crate::settings::STATIC_KEY_FILE)
                .display()
                .to_string()
        });
    tracing::info!(key = %hex(&static_public), file = %key_file, "server static public key (clients pin this)");

    let choice = match config.network.io_backend {
        IoBackend::Auto => BackendChoice::Auto,
        IoBackend::IoUring => BackendChoice::IoUring,
        IoBackend::Mmsg => BackendChoice::Mmsg,
    };
    let io_config = IoConfig {
        recv_batch: usize::from(config.network.recv_batch),
        send_batch: usize::from(config.network.send_batch),
        ..IoConfig::default()
    };
    let mode = if config.runtime.echo_mode {
        Mode::Echo
    } else {
        Mode::World
    };
    // The cluster thread and its NATS link start before the cores and run
    // on threads of their own; a conflicting quadrant claim stops here.
    let cluster = match (node, &game) {
        (Some(node), Some(game)) => {
            let joined = crate::cluster::ClusterNode::start(
                node,
                cores.len(),
                Arc::clone(&game.services.registry),
                Arc::clone(&game.services.counters),
                static_public,
            )
            .map_err(|e| StartError::Cluster(e.to_string()))?;
            let quadrants = node.quadrants();
            tracing::info!(
                node = node.name(),
                quadrants = quadrants.len(),
                first = ?quadrants.first(),
                last = ?quadrants.last(),
                "cluster node: serving these quadrants; the others belong to other nodes"
            );
            Some(Box::new(joined))
        }
        (Some(_), None) => {
            return Err(StartError::Cluster(
                "a cluster node runs the world (not --echo)".into(),
            ));
        }
        (None, _) => None,
    };
    let mut threads = Vec::with_capacity(cores.len());
    let panicked_all = Arc::new(std::sync::Mutex::new(Vec::new()));
    let panicked = Arc::clone(&panicked_all);
    let (ready_tx, ready_rx) = bounded::<Result<(), String>>(cores.len());
    for (index, (socket, mesh)) in sockets.into_iter().zip(meshes).enumerate() {
        let core_id = cores[index];
        let pin = config.runtime.pin_threads;
        let shared = Arc::clone(&stats[index]);
        let stop = Arc::clone(&stop);
        let mut endpoint_cfg =
            endpoint_config(config, &secrets, index as u8, epoch, Arc::clone(&transport));
        endpoint_cfg.admission = Arc::clone(&admission);
        let settings = CoreSettings {
            core: index as u8,
            tick_period: config.runtime.tick_period(),
            epoch,
            stats_interval: Duration::from_millis(u64::from(config.runtime.stats_interval_ms)),
            mode,
        };
        let ready = ready_tx.clone();
        let panicked = Arc::clone(&panicked_all);
        let (cfg, layout, data, next_client) = (
            Arc::clone(&config_arc),
            resolved.clone(),
            world_data.clone(),
            Arc::clone(&next_client),
        );
        let services = game.as_ref().map(|g| g.services.clone());
        let core_cluster = cluster.as_ref().and_then(|c| c.core(index));
        let tick_hz = config.runtime.tick_hz;
        let budget = (config.sync.snapshot_budget_bytes as usize).min(transport.max_unfragmented());
        let t = std::thread::Builder::new()
            .name(format!("tos-core-{index}"))
            .spawn(move || {
                if pin && !core_affinity::set_for_current(core_affinity::CoreId { id: core_id }) {
                    tracing::warn!(core = index, cpu = core_id, "could not pin the thread");
                }
                let io = match select_backend(choice, socket, &io_config) {
                    Ok(io) => io,
                    Err(e) => {
                        let _ = ready.send(Err(format!("core {index}: {e}")));
                        return;
                    }
                };
                // The shard is per core and not Send: built here, on its thread.
                let world = match (mode, services) {
                    (Mode::World, Some(services)) => {
                        match Shard::new(index as u16, &cfg, &layout, data) {
                            Ok(shard) => {
                                let mut game = tos_game::GameCore::new(
                                    index as u16,
                                    shard,
                                    services,
                                    next_client,
                                    budget,
                                    tick_hz,
                                );
                                if let Some(c) = core_cluster {
                                    if !game.join_cluster(c) {
                                        let _ = ready.send(Err(format!(
                                            "core {index}: the cluster's grid is not this world's"
                                        )));
                                        return;
                                    }
                                }
                                Some(game)
                            }
                            Err(e) => {
                                let _ = ready.send(Err(format!("core {index}: world: {e}")));
                                return;
                            }
                        }
                    }
                    _ => None,
                };
                let _ = ready.send(Ok(()));
                let runner = CoreRunner::new(
                    settings,
                    io,
                    Endpoint::new(endpoint_cfg),
                    mesh,
                    shared,
                    stop,
                    world,
                );
                if !runner.run() {
                    panicked
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(index);
                }
            })
            .map_err(|e| StartError::Thread(e.to_string()))?;
        threads.push(t);
    }
    for _ in 0..cores.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.store(true, Ordering::SeqCst);
                return Err(StartError::Backend(std::io::Error::other(e)));
            }
            Err(_) => {
                return Err(StartError::Thread(
                    "a core thread died while starting".into(),
                ));
            }
        }
    }
    let metrics_stop = Arc::new(AtomicBool::new(false));
    let metrics = match config.network.metrics_socket_addr() {
        None => None,
        Some(Err(_)) => {
            stop.store(true, Ordering::SeqCst);
            return Err(StartError::BadAddress(
                config.network.metrics_addr.clone().unwrap_or_default(),
            ));
        }
        Some(Ok(a)) => {
            let listener = crate::metrics::bind(a).map_err(|source| {
                stop.store(true, Ordering::SeqCst);
                StartError::Metrics {
                    addr: a.to_string(),
                    source,
                }
            })?;
            let bound = listener.local_addr().map_err(StartError::Socket)?;
            let (cores_stats, ms) = (Arc::clone(&stats), Arc::clone(&metrics_stop));
            let extra = game.as_deref().map(Boot::metrics);
            let t = std::thread::Builder::new()
                .name("tos-metrics".into())
                .spawn(move || crate::metrics::serve(listener, cores_stats, extra, ms))
                .map_err(|e| StartError::Thread(e.to_string()))?;
            tracing::info!(%bound, "metrics endpoint");
            Some((bound, t))
        }
    };
    Ok(ServerHandle {
        addr,
        static_public,
        integrity_secret: secrets.integrity_secret,
        cores: threads,
        commands: senders,
        stats,
        stop,
        metrics_stop,
        metrics,
        steering,
        game,
        cluster,
        panicked,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
