//! A loadgen thread: a few UDP sockets (io_uring or recvmmsg backends, the
//! engine's own), many players multiplexed over them, routed by the
//! connection id in each datagram's header.
//!
//! With a cluster (`--cluster`) players talk to several nodes from the same
//! sockets: a zone transfer gives a player a new connection (new ids, to
//! route too) to another address, and a player whose character stands on
//! another node's ground is sent there with its session ticket.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tos_engine::io::{Backend, BackendChoice, DatagramIo, IoConfig, select_backend};
use tos_protocol::connection::{ClientConfig, Connection, ServerKey};

use tos_client::{LoginSpec, Session, SessionConfig, SnapshotHandling};

use crate::play::{Kit, Play};
use crate::player::{Behaviour, Link, Mode, Player};
use crate::report::{Live, Recorder};

/// What one worker thread runs.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) cpu: Option<usize>,
    pub(crate) first_player: usize,
    pub(crate) players: usize,
    pub(crate) total_players: usize,
    pub(crate) sockets: usize,
    pub(crate) server: SocketAddr,
    pub(crate) client: ClientConfig,
    pub(crate) mode: Mode,
    pub(crate) rate_hz: u32,
    pub(crate) battle_fraction: f64,
    pub(crate) cheater_fraction: f64,
    pub(crate) start: Instant,
    pub(crate) ramp: Duration,
    pub(crate) deadline: Instant,
    pub(crate) apply_snapshots: bool,
    /// Accounts are named `{account_prefix}{player index}`.
    pub(crate) account_prefix: String,
    /// The password of every loadgen account.
    pub(crate) password: String,
    /// Players log in and go no further (a login storm alone).
    pub(crate) login_only: bool,
    /// Where an earlier run left each player's character (by index).
    pub(crate) remembered: Arc<HashMap<usize, [f32; 3]>>,
    /// What players play with; `None`: they only walk (`--no-play`).
    pub(crate) kit: Option<Arc<Kit>>,
    /// The cluster the players walk across (`--cluster`).
    pub(crate) cluster: Option<Arc<ClusterPlan>>,
}

/// What players of a cluster run need: the nodes and the border.
#[derive(Debug, Clone)]
pub(crate) struct ClusterPlan {
    /// Every node's client address, in cluster file order.
    pub(crate) nodes: Vec<SocketAddr>,
    /// The x of the border players walk across, world units.
    pub(crate) border_x: f32,
}

/// The character template a player creates: wanderers and cheaters start
/// in the two factions' starting areas, fighters at the battle grounds
/// (`config/data/characters.ron`).
fn template(global: usize, behaviour: Behaviour) -> u16 {
    let faction = (global % 2) as u16;
    match behaviour {
        // Crossers too: the battle grounds lie on the default cluster's
        // border (x = 0).
        Behaviour::Fighter | Behaviour::Crosser => 3 + faction,
        _ => 1 + faction,
    }
}

/// A character name from an account name: its first letter upper-cased
/// (names are unique case-insensitively, so this is unique too).
fn character_name(account: &str) -> String {
    let mut c = account.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// The account and character of player `global`.
fn login_spec(plan: &Plan, global: usize, b: Behaviour) -> LoginSpec {
    let account = format!("{}{global}", plan.account_prefix);
    LoginSpec {
        character_name: character_name(&account),
        account,
        password: plan.password.clone(),
        register: true,
        template: template(global, b),
        appearance: vec![(global % 251) as u8; 4],
        ticketed: false,
        login_only: plan.login_only,
    }
}

/// The SDK session settings of a world-mode player: the loadgen's client
/// settings (pinned key, integrity table, seed) and its login.
fn session_config(cfg: ClientConfig, login: LoginSpec, apply_snapshots: bool) -> SessionConfig {
    let key = match cfg.server_key {
        ServerKey::Pinned(k) => k,
        // loadgen always pins (main.rs); an all-zero key fails the
        // handshake rather than trusting any server.
        ServerKey::Unpinned => [0; 32],
    };
    let mut c = SessionConfig::new(key, login);
    c.transport = cfg.transport;
    c.integrity = cfg.integrity;
    c.seed = Some(cfg.seed);
    // A headless player: the world as the receiver holds it, no entity
    // events or interpolation buffers (no one draws them).
    c.snapshots = if apply_snapshots {
        SnapshotHandling::Apply
    } else {
        SnapshotHandling::DecodeOnly
    };
    c
}

/// What a worker measured, and where its players' characters ended.
pub(crate) type Outcome = (Recorder, Vec<(usize, [f32; 3])>);

fn behaviour(i: usize, battle: f64, cheat: f64, cluster: bool) -> Behaviour {
    // Deterministic spread: the fractions hold for any player count.
    let x = (i as f64 * 0.618_033_988_75).fract();
    if x < cheat {
        Behaviour::Cheater
    } else if cluster {
        Behaviour::Crosser
    } else if x < cheat + battle {
        Behaviour::Fighter
    } else {
        Behaviour::Wanderer
    }
}

struct Slot {
    player: Option<Player>,
    wake: Instant,
}

/// Runs the plan to its deadline and returns what it measured.
pub(crate) fn run(plan: Plan, live: Arc<Live>, stop: Arc<AtomicBool>) -> Outcome {
    if let Some(cpu) = plan.cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            tracing::warn!(cpu, "could not pin a loadgen thread");
        }
    }
    let bind: SocketAddr = if plan.server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap_or_else(|_| unreachable!());
    let bind = if plan.server.ip().is_loopback() {
        SocketAddr::new(plan.server.ip(), 0)
    } else {
        bind
    };
    let io_config = IoConfig::default();
    let mut sockets: Vec<Backend> = Vec::new();
    for _ in 0..plan.sockets.max(1) {
        let s = match UdpSocket::bind(bind) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("loadgen: cannot bind a UDP socket: {e}");
                return (Recorder::default(), Vec::new());
            }
        };
        match select_backend(BackendChoice::Auto, s, &io_config) {
            Ok(b) => sockets.push(b),
            Err(e) => {
                tracing::error!("loadgen: no I/O backend: {e}");
                return (Recorder::default(), Vec::new());
            }
        }
    }
    let mut rec = Recorder::default();
    let mut slots: Vec<Slot> = (0..plan.players)
        .map(|k| {
            let global = plan.first_player + k;
            let offset = plan
                .ramp
                .mul_f64(global as f64 / plan.total_players.max(1) as f64);
            Slot {
                player: None,
                wake: plan.start + offset,
            }
        })
        .collect();
    let mut routes: HashMap<(usize, u32), usize> = HashMap::with_capacity(plan.players * 3);
    let mut buf = vec![0u8; 2048];
    let mut published = Recorder::default();
    let mut last_publish = Instant::now();
    let mut dirty: Vec<usize> = Vec::with_capacity(plan.players);
    while Instant::now() < plan.deadline && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Receive and route.
        let mut got = 0usize;
        for (si, io) in sockets.iter_mut().enumerate() {
            let _ = io.recv_batch(|from, data| {
                got += 1;
                rec.packets_in += 1;
                rec.bytes_in += data.len() as u64;
                if data.len() < 4 {
                    return;
                }
                let id = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                if let Some(&pi) = routes.get(&(si, id)) {
                    if let Some(p) = slots[pi].player.as_mut() {
                        p.link.handle_datagram(now, from, data);
                        dirty.push(pi);
                    }
                }
            });
        }
        for pi in dirty.drain(..) {
            slots[pi].wake = now;
        }
        // Players whose time has come.
        for (pi, slot) in slots.iter_mut().enumerate() {
            if slot.wake > now {
                continue;
            }
            if slot.player.is_none() {
                let global = plan.first_player + pi;
                let mut cfg = plan.client.clone();
                let mut seed = cfg.seed;
                seed[..8].copy_from_slice(&(global as u64).to_le_bytes());
                cfg.seed = seed;
                let b = behaviour(
                    global,
                    plan.battle_fraction,
                    plan.cheater_fraction,
                    plan.cluster.is_some(),
                );
                // Cheaters misbehave instead; players that keep no world
                // (decode-only) cannot see what to hunt.
                let play = match (&plan.kit, plan.mode, b) {
                    (Some(kit), Mode::World, Behaviour::Wanderer | Behaviour::Fighter)
                        if plan.apply_snapshots && !plan.login_only =>
                    {
                        Some(Play::new(
                            Arc::clone(kit),
                            character_name(&format!("{}{global}", plan.account_prefix)),
                            now,
                            Duration::from_millis((global as u64 * 7_919) % 20_000),
                        ))
                    }
                    _ => None,
                };
                let link = match plan.mode {
                    Mode::Echo => Connection::connect(cfg, plan.server, now)
                        .map(Link::Echo)
                        .ok(),
                    Mode::World => {
                        let login = login_spec(&plan, global, b);
                        Session::connect(
                            session_config(cfg, login, plan.apply_snapshots),
                            plan.server,
                            now,
                        )
                        .map(Link::World)
                        .ok()
                    }
                };
                // Only a configuration error fails here: this player idles.
                match link {
                    Some(link) => {
                        let p = Player::new(
                            link,
                            pi % sockets.len(),
                            b,
                            plan.rate_hz,
                            global as u64 * 0x9e37_79b9 + 7,
                            plan.remembered.get(&global).copied(),
                            now,
                        )
                        .with_play(play)
                        .with_border(plan.cluster.as_ref().map(|c| c.border_x));
                        routes.insert((p.socket, p.key), pi);
                        slot.player = Some(p);
                    }
                    None => {
                        slot.wake = plan.deadline;
                        continue;
                    }
                }
            }
            let Some(p) = slot.player.as_mut() else {
                continue;
            };
            if p.link.next_timeout().is_some_and(|t| t <= now) {
                p.link.handle_timeout(now);
            }
            p.act(now, &mut rec);
            let io = &mut sockets[p.socket];
            while let Some(t) = p.link.poll_transmit(now, &mut buf) {
                if io.queue_send(t.destination, &buf[..t.size]).is_err() {
                    let _ = io.flush();
                    let _ = io.queue_send(t.destination, &buf[..t.size]);
                }
                rec.packets_out += 1;
                rec.bytes_out += t.size as u64;
            }
            if let Some(n) = p.maybe_garbage(&mut buf) {
                let _ = io.queue_send(p.server(), &buf[..n]);
                rec.garbage_sent += 1;
            }
            p.handle_events(now, &mut rec);
            if p.wants_other_node {
                if let Some(c) = &plan.cluster {
                    let global = plan.first_player + pi;
                    let login = login_spec(&plan, global, p.behaviour());
                    let io = &mut sockets[p.socket];
                    go_elsewhere(p, c, &plan, login, now, &mut buf, io);
                }
            }
            let id = p.link.connection().connection_id();
            if id != p.key {
                // New id (cookie, migration, zone transfer): route the
                // last few ids a player had, so that late datagrams of a
                // closing connection still reach it, and no more.
                p.key = id;
                routes.insert((p.socket, id), pi);
                if let Some(old) = p.remember_key(id) {
                    if routes.get(&(p.socket, old)) == Some(&pi) {
                        routes.remove(&(p.socket, old));
                    }
                }
            }
            slot.wake = if p.done {
                plan.deadline
            } else {
                let mut w = p.link.next_timeout().unwrap_or(plan.deadline);
                w = w.min(now + Duration::from_secs_f64(1.0 / f64::from(plan.rate_hz.max(1))));
                w
            };
        }
        for io in &mut sockets {
            let _ = io.flush();
        }
        if now.duration_since(last_publish) >= Duration::from_millis(100) {
            publish(&live, &mut rec, &mut published);
            last_publish = now;
        }
        if got == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // Goodbye, and the per-player figures.
    let now = Instant::now();
    let mut positions = Vec::new();
    for (pi, slot) in slots.iter_mut().enumerate() {
        if let Some(p) = slot.player.as_mut() {
            if let Some(at) = p.position() {
                positions.push((plan.first_player + pi, at));
            }
            let s = p.link.connection().stats();
            if p.link.connection().is_established() {
                let _ = rec.rtt_us.record(s.rtt_us.max(1));
            }
            rec.decode_errors += p.decode_errors();
            if let Some(play) = p.play() {
                rec.gameplay.merge(play.counts());
            }
            p.link.close(now);
            let io = &mut sockets[p.socket];
            while let Some(t) = p.link.poll_transmit(now, &mut buf) {
                if io.queue_send(t.destination, &buf[..t.size]).is_err() {
                    let _ = io.flush();
                }
            }
        }
    }
    for io in &mut sockets {
        let _ = io.flush();
    }
    publish(&live, &mut rec, &mut published);
    rec.cpu_us = thread_cpu_us();
    (rec, positions)
}

/// A player whose character stands on another node's ground (the node it
/// asked refused to enter it there) goes to the next node of the cluster
/// with its session ticket: no password hash, the same character. Each
/// node is tried once.
fn go_elsewhere(
    p: &mut Player,
    cluster: &ClusterPlan,
    plan: &Plan,
    login: LoginSpec,
    now: Instant,
    buf: &mut [u8],
    io: &mut Backend,
) {
    p.wants_other_node = false;
    let Link::World(session) = &mut p.link else {
        return;
    };
    let here = cluster
        .nodes
        .iter()
        .position(|&n| n == session.server_address())
        .unwrap_or(0);
    p.nodes_tried += 1;
    if p.nodes_tried >= cluster.nodes.len() || session.ticket().is_empty() {
        p.done = true;
        return;
    }
    let next = cluster.nodes[(here + 1) % cluster.nodes.len()];
    let ticket = session.ticket().to_vec();
    session.close(now);
    while let Some(t) = session.poll_transmit(now, buf) {
        if io.queue_send(t.destination, &buf[..t.size]).is_err() {
            let _ = io.flush();
        }
    }
    let mut cfg = plan.client.clone();
    cfg.seed[..8].copy_from_slice(&(p.nodes_tried as u64).to_le_bytes());
    cfg.seed[8..12].copy_from_slice(&p.key.to_le_bytes());
    let mut config = session_config(cfg, login, plan.apply_snapshots);
    config.ticket = ticket;
    match Session::connect(config, next, now) {
        Ok(s) => p.link = Link::World(s),
        Err(_) => p.done = true,
    }
}

fn publish(live: &Live, rec: &mut Recorder, last: &mut Recorder) {
    live.add(&live.connected, rec.connected - last.connected);
    live.add(&live.packets_out, rec.packets_out - last.packets_out);
    live.add(&live.packets_in, rec.packets_in - last.packets_in);
    live.add(&live.bytes_out, rec.bytes_out - last.bytes_out);
    live.add(&live.bytes_in, rec.bytes_in - last.bytes_in);
    let d: u64 = rec.disconnects.iter().sum::<u64>() - last.disconnects.iter().sum::<u64>();
    live.add(&live.disconnected, d);
    live.add(&live.denied, rec.denied - last.denied);
    if !rec.window_us.is_empty() {
        live.add_window(&rec.window_us);
        rec.window_us.reset();
    }
    last.connected = rec.connected;
    last.packets_out = rec.packets_out;
    last.packets_in = rec.packets_in;
    last.bytes_out = rec.bytes_out;
    last.bytes_in = rec.bytes_in;
    last.disconnects = rec.disconnects;
    last.denied = rec.denied;
}

/// CPU time (user + system) of the calling thread so far, µs (0 where the
/// kernel cannot say).
fn thread_cpu_us() -> u64 {
    let mut usage = core::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the pointer it is given,
    // which points to a zeroed, properly aligned value owned here.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: zero-initialised and, on success, filled by the kernel.
    let u = unsafe { usage.assume_init() };
    let us = |t: libc::timeval| (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64;
    us(u.ru_utime) + us(u.ru_stime)
}
