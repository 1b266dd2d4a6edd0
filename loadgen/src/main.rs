//! `loadgen`: thousands of real protocol clients against a `tos-server`,
//! and the report that proves the server's numbers.
//!
//! Every simulated player runs the client side of the protocol state
//! machine — handshake with the pinned server key, encryption, acks,
//! heartbeat, integrity answers, rekey — multiplexed over a few sockets per
//! loadgen thread, thread-per-core like the server.
//!
//! ```text
//! loadgen --spawn-server --players 500 --seconds 20            # one-command demo
//! loadgen --server 127.0.0.1:3565 --server-key HEX --players 1000
//! loadgen --cluster config/cluster-2nodes.ron --server-key HEX --players 200
//! ```
//! Run `loadgen --help` for every option.

#![recursion_limit = "256"]

mod attack;
mod play;
mod player;
mod report;
mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tos_config::{CoreSelection, ServerConfig};
use tos_protocol::connection::{ClientConfig, ServerKey, TransportConfig};
use tos_protocol::integrity::IntegrityTable;

use player::Mode;
use report::{Live, Recorder, RunInfo, Sample};

/// loadgen: simulated players against a tos-server.
///
/// Every player is a real protocol client (handshake with the pinned key,
/// encryption, reliability, integrity answers) that logs in, enters the
/// world and plays; the summary proves the server's numbers.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
struct Args {
    /// Run a server in this process on 127.0.0.1 (demo).
    #[arg(
        long = "spawn-server",
        conflicts_with_all = ["server", "cluster"],
        required_unless_present_any = ["server", "cluster"]
    )]
    spawn: bool,
    /// Target server (loopback only unless --allow-remote).
    #[arg(long, value_name = "HOST:PORT", requires = "server_key")]
    server: Option<SocketAddr>,
    /// The server's static public key (64 hex digits; the server logs it at start).
    #[arg(long, value_name = "HEX", value_parser = hex32)]
    server_key: Option<[u8; 32]>,
    /// A cluster of tos-server nodes (its cluster file): players connect to
    /// the first node (or --server), start near the border between the
    /// nodes and walk across it and back, each crossing a zone transfer.
    /// Every node must hold the --server-key (nodes sharing a data
    /// directory do).
    #[arg(long, value_name = "FILE", requires = "server_key")]
    cluster: Option<std::path::PathBuf>,
    /// Secret the server's integrity tables come from (64 hex digits).
    #[arg(long, value_name = "HEX", value_parser = hex32)]
    integrity_secret: Option<[u8; 32]>,
    /// Permit a non-loopback --server.
    #[arg(long)]
    allow_remote: bool,
    /// Players (1..=200000).
    #[arg(long, default_value_t = 100)]
    players: usize,
    /// Run length, seconds (0..=3600).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Movement claims per second per player.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// Play the game, or echo probes (server --echo).
    #[arg(long, value_enum, default_value_t = Mode::World)]
    mode: Mode,
    /// Loadgen threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// UDP sockets per loadgen thread.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Pin loadgen threads to these CPUs.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Cores for --spawn-server.
    #[arg(long, default_value_t = 1)]
    server_cores: usize,
    /// Pin the spawned server's cores to these CPUs.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    server_cpus: Vec<usize>,
    /// Fraction of players converging on one battle.
    #[arg(long, value_name = "F", default_value_t = 0.1)]
    battle: f64,
    /// Fraction of misbehaving players (speed hacks, garbage).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    cheaters: f64,
    /// Spread connects over this many seconds (0: a connect storm).
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    ramp: f64,
    /// Check that snapshots decode but keep no world state (lighter
    /// clients, to load a server from fewer loadgen cores); default: apply
    /// them. Players that keep no world do not hunt, loot or fight.
    #[arg(long)]
    decode_only: bool,
    /// Write the summary as JSON (`-`: standard output).
    #[arg(long, value_name = "FILE|-")]
    json: Option<String>,
    /// Write the per-second time series.
    #[arg(long, value_name = "FILE")]
    csv: Option<String>,
    /// Write a chart of players, packets/s and p99 latency.
    #[arg(long, value_name = "FILE")]
    svg: Option<String>,
    /// Log level (a tracing filter).
    #[arg(long, default_value = "warn")]
    log_level: String,
    /// Accounts are named P0, P1, ...; each is registered on first use,
    /// logged in afterwards, and gets a character when it has none.
    #[arg(long, value_name = "P", default_value = "lg", value_parser = account_prefix)]
    account_prefix: String,
    /// Password of those accounts (8 to 128 bytes).
    #[arg(long, value_name = "PW", default_value = "loadgen-password", value_parser = password)]
    password: String,
    /// Data directory of --spawn-server (default: a new temporary one);
    /// reuse it to find the characters again.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Where players' last positions are remembered between runs (default
    /// DATA-DIR/loadgen-P.positions, or ./loadgen-P.positions with --server).
    #[arg(long, value_name = "FILE")]
    positions: Option<String>,
    /// Players only walk (and send an action now and then) instead of
    /// hunting, looting and chatting: the load of the earlier capacity
    /// figures.
    #[arg(long)]
    no_play: bool,
    /// Players log in and stay connected without entering the world (to
    /// measure a login storm alone).
    #[arg(long)]
    login_only: bool,
    /// --spawn-server hashes passwords with the cheapest Argon2id settings
    /// (8 KiB, 1 pass): capacity runs measure the world, not the login storm.
    #[arg(long)]
    fast_passwords: bool,
    /// Attack while the players play (docs/SECURITY.md).
    #[arg(long, value_name = "KIND", value_parser = attack_kind)]
    attack: Option<attack::Kind>,
    /// The attack's datagrams per second.
    #[arg(long, value_name = "PPS", default_value_t = 50_000)]
    attack_rate: u64,
    /// Seconds after the start the attack begins (default: --ramp + 1).
    #[arg(long, value_name = "S")]
    attack_start: Option<f64>,
    /// After the run, wait up to this long for the server to drop every
    /// connection (one idle timeout plus the closing period).
    #[arg(long, value_name = "S", default_value_t = 25.0)]
    attack_settle: f64,
    /// Pin the attack thread (default: the first --cpus).
    #[arg(long, value_name = "N")]
    attack_cpu: Option<usize>,
    /// With --server: read the server's memory from this process (default:
    /// loadgen's own, with --spawn-server).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// With --server: its metrics endpoint, for the connections it holds
    /// after an attack.
    #[arg(long, value_name = "ADDR")]
    server_metrics: Option<SocketAddr>,
}

fn hex32(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    if s.len() != 64 {
        return Err("expected 64 hex digits".into());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| "bad hex digit".to_string())?;
    }
    Ok(out)
}

fn account_prefix(p: &str) -> Result<String, String> {
    if p.is_empty()
        || p.len() > 12
        || !p.as_bytes()[0].is_ascii_alphabetic()
        || !p.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(
            "1-12 ASCII letters and digits, starting with a letter (it also names the characters)"
                .into(),
        );
    }
    Ok(p.to_string())
}

fn password(p: &str) -> Result<String, String> {
    if !(8..=128).contains(&p.len()) {
        return Err("8 to 128 bytes".into());
    }
    Ok(p.to_string())
}

fn attack_kind(k: &str) -> Result<attack::Kind, String> {
    attack::Kind::parse(k).ok_or_else(|| {
        let names: Vec<&str> = attack::Kind::ALL.iter().map(|k| k.name()).collect();
        format!("one of {}", names.join(", "))
    })
}

/// The checks that involve several options.
fn check_args(a: &Args) -> Result<(), String> {
    if !(a.seconds > 0.0 && a.seconds <= 3600.0) {
        return Err("--seconds must be in (0, 3600]".into());
    }
    if a.players == 0 || a.players > 200_000 || a.threads == 0 || a.sockets == 0 {
        return Err("--players (1..=200000), --threads and --sockets must be positive".into());
    }
    if !(0.0..=1.0).contains(&(a.battle + a.cheaters)) || a.battle < 0.0 || a.cheaters < 0.0 {
        return Err("--battle and --cheaters are fractions that add up to at most 1".into());
    }
    if !(a.ramp >= 0.0 && a.ramp.is_finite()) {
        return Err("--ramp must be a non-negative number of seconds".into());
    }
    if a.cluster.is_some() && a.mode == Mode::Echo {
        return Err("--cluster plays the world: not with --mode echo".into());
    }
    if let Some(s) = a.server {
        if !s.ip().is_loopback() && !a.allow_remote {
            return Err(format!(
                "refusing to load {s}: not a loopback address (pass --allow-remote to target another host you own)"
            ));
        }
    }
    Ok(())
}

fn write_out(path: &str, text: &str) -> Result<(), String> {
    if path == "-" {
        println!("{text}");
        return Ok(());
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {path}: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = check_args(&args) {
        eprintln!("loadgen: {e}");
        return ExitCode::from(2);
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(1)
        }
    }
}

/// Reads the cluster file and finds where its players walk: the border
/// along x between two nodes nearest the vanguards' spawn point (the battle
/// grounds, where crossing players' characters start), in world units.
fn cluster_plan(path: &std::path::Path, args: &Args) -> Result<worker::ClusterPlan, String> {
    let cluster = tos_cluster::Cluster::load(path).map_err(|e| e.to_string())?;
    let nodes: Vec<SocketAddr> = (0..cluster.nodes().len())
        .filter_map(|i| cluster.address(i))
        .collect();
    if nodes.len() < 2 {
        return Err(format!(
            "{}: a cluster of one node has no border to cross",
            path.display()
        ));
    }
    if let Some(n) = nodes.iter().find(|n| !n.ip().is_loopback()) {
        if !args.allow_remote {
            return Err(format!(
                "refusing to load {n} of the cluster: not a loopback address (pass --allow-remote to target hosts you own)"
            ));
        }
    }
    let world = cluster
        .file()
        .world
        .quantizer()
        .map_err(|e| e.to_string())?;
    let border_x = border_x(&world, |q| cluster.owner(q), player::BATTLE_CENTRE)
        .ok_or_else(|| {
            format!(
                "{}: no border between nodes along x in the row of the battle grounds ({:.0} m, {:.0} m)",
                path.display(),
                player::BATTLE_CENTRE[0] / 100.0,
                player::BATTLE_CENTRE[1] / 100.0
            )
        })?;
    Ok(worker::ClusterPlan { nodes, border_x })
}

/// The x (world units) of the quadrant edge nearest `near` where the owner
/// changes, in the row of quadrants holding `near`.
fn border_x(
    world: &tos_protocol::quant::Quantizer,
    owner: impl Fn([u16; 3]) -> Option<usize>,
    near: [f32; 3],
) -> Option<f32> {
    let row = world.quadrant_coords(world.clamp(near)).ok()?;
    let [gx, _, _] = world.grid();
    let (min, size) = (world.min()[0], world.quadrant_size()[0]);
    (1..gx)
        .filter(|&x| owner([x - 1, row[1], row[2]]) != owner([x, row[1], row[2]]))
        .map(|x| (min + f64::from(x) * size) as f32)
        .min_by(|a, b| (a - near[0]).abs().total_cmp(&(b - near[0]).abs()))
}

/// Reads remembered positions: one `index x y z` line per player.
fn read_positions(path: &std::path::Path) -> HashMap<usize, [f32; 3]> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let i = it.next()?.parse().ok()?;
            let mut p = [0f32; 3];
            for v in &mut p {
                *v = it.next()?.parse().ok()?;
            }
            Some((i, p))
        })
        .collect()
}

fn write_positions(
    path: &std::path::Path,
    mut known: HashMap<usize, [f32; 3]>,
    now: &[(usize, [f32; 3])],
) -> Result<(), String> {
    for (i, p) in now {
        known.insert(*i, *p);
    }
    let mut rows: Vec<_> = known.into_iter().collect();
    rows.sort_by_key(|(i, _)| *i);
    let text: String = rows
        .iter()
        .map(|(i, p)| format!("{i} {} {} {}\n", p[0], p[1], p[2]))
        .collect();
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn run(args: &Args) -> Result<(), String> {
    // The spawned server's data directory: given, or a new temporary one.
    let data_dir = match (&args.data_dir, args.spawn) {
        (Some(d), _) => Some(std::path::PathBuf::from(d)),
        (None, true) => Some(std::env::temp_dir().join(format!(
            "loadgen-data-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        ))),
        (None, false) => None,
    };
    let positions_path = match &args.positions {
        Some(p) => std::path::PathBuf::from(p),
        None => data_dir
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("."))
            .join(format!("loadgen-{}.positions", args.account_prefix)),
    };
    let remembered = read_positions(&positions_path);
    // The server: spawned here, or given.
    let spawned = if args.spawn {
        let mut c = ServerConfig::default();
        c.network.bind = "127.0.0.1:0".into();
        c.network.metrics_addr = None;
        c.runtime.cores = if args.server_cpus.is_empty() {
            CoreSelection::Count(args.server_cores)
        } else {
            CoreSelection::List(args.server_cpus.clone())
        };
        c.runtime.pin_threads = !args.server_cpus.is_empty();
        c.runtime.echo_mode = args.mode == Mode::Echo;
        if let Some(d) = &data_dir {
            c.runtime.data_dir = d.display().to_string();
        }
        // Every player logs in from 127.0.0.1: the per-address login limit
        // is for the internet, not for this run.
        c.accounts.login_attempts_per_minute_per_address = 1_000_000;
        if args.fast_passwords {
            c.accounts.argon2_m_cost_kib = 8;
            c.accounts.argon2_t_cost = 1;
            c.accounts.argon2_p_cost = 1;
        }
        // Likewise the per-address connection and handshake limits (attack
        // modes come from other 127/8 addresses, which stay limited), and
        // runs may go past the default per-core capacity.
        c.protocol.admission_exempt_addresses = vec!["127.0.0.1".into()];
        c.protocol.max_connections_per_core = c
            .protocol
            .max_connections_per_core
            .max(args.players as u32 + 64);
        // Tick percentiles once a second, for the time series.
        c.runtime.stats_interval_ms = 1_000;
        Some(tos_engine::runtime::start(&c).map_err(|e| format!("cannot start the server: {e}"))?)
    } else {
        None
    };
    let cluster = match &args.cluster {
        Some(path) => Some(Arc::new(cluster_plan(path, args)?)),
        None => None,
    };
    let (server, key, integrity) = match (&spawned, &cluster) {
        (Some(s), _) => (
            s.local_addr(),
            s.static_public_key(),
            Some(s.integrity_secret()),
        ),
        (None, Some(c)) => (
            args.server.unwrap_or(c.nodes[0]),
            args.server_key.unwrap_or_else(|| unreachable!("checked")),
            args.integrity_secret,
        ),
        (None, None) => (
            args.server.unwrap_or_else(|| unreachable!("checked")),
            args.server_key.unwrap_or_else(|| unreachable!("checked")),
            args.integrity_secret,
        ),
    };
    // Players play with the server's built-in game data (skills, items):
    // a server run with other data files gets requests it may refuse.
    // Crossing players only walk: hunting would lead them off the border.
    let kit = if args.no_play || args.mode == Mode::Echo || cluster.is_some() {
        None
    } else {
        let data =
            tos_config::GameData::embedded().map_err(|e| format!("built-in game data: {e}"))?;
        Some(Arc::new(play::Kit::new(&data)))
    };
    let client = ClientConfig {
        transport: Arc::new(TransportConfig::default()),
        server_key: ServerKey::Pinned(key),
        // Players log in with a password on the connection (no ticket).
        ticket: Vec::new(),
        integrity: integrity.map(|s| {
            Arc::new(IntegrityTable::generate(
                &s,
                tos_engine::settings::CLIENT_VERSION,
            ))
        }),
        seed: [0x5a; 32],
    };
    let live = Arc::new(Live::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now() + Duration::from_millis(50);
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let per = args.players.div_ceil(args.threads);
    let remembered_arc = Arc::new(remembered.clone());
    let mut handles = Vec::new();
    for t in 0..args.threads {
        let first = t * per;
        if first >= args.players {
            break;
        }
        let plan = worker::Plan {
            cpu: args.cpus.get(t).copied(),
            first_player: first,
            players: per.min(args.players - first),
            total_players: args.players,
            sockets: args.sockets,
            server,
            client: client.clone(),
            mode: args.mode,
            rate_hz: args.rate,
            battle_fraction: args.battle,
            cheater_fraction: args.cheaters,
            start,
            ramp: Duration::from_secs_f64(args.ramp),
            deadline,
            apply_snapshots: !args.decode_only,
            account_prefix: args.account_prefix.clone(),
            login_only: args.login_only,
            password: args.password.clone(),
            remembered: Arc::clone(&remembered_arc),
            kit: kit.clone(),
            cluster: cluster.clone(),
        };
        let (live, stop) = (Arc::clone(&live), Arc::clone(&stop));
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || worker::run(plan, live, stop))
                .map_err(|e| e.to_string())?,
        );
    }
    // The attack, on a thread of its own, until the end of the run.
    let attack_thread = match args.attack {
        None => None,
        Some(kind) => {
            let plan = attack::Plan {
                kind,
                rate: args.attack_rate,
                server,
                client: client.clone(),
                cpu: args.attack_cpu.or_else(|| args.cpus.first().copied()),
                start: start
                    + Duration::from_secs_f64(args.attack_start.unwrap_or(args.ramp + 1.0)),
                // A second before the players stop, so that their
                // goodbyes are not drowned in the flood.
                stop_at: deadline - Duration::from_secs(1),
            };
            let stop = Arc::clone(&stop);
            Some(
                std::thread::Builder::new()
                    .name("loadgen-attack".into())
                    .spawn(move || attack::run(plan, stop))
                    .map_err(|e| e.to_string())?,
            )
        }
    };
    let mut server_after = attack::ServerAfter::default();
    let probe = attack::Probe {
        pid: args.server_pid,
        metrics: args.server_metrics,
    };
    let watched = args.attack.is_some() && (spawned.is_some() || args.server_pid.is_some());
    let rss_before_at =
        start + Duration::from_secs_f64(args.attack_start.unwrap_or(args.ramp + 1.0));
    // Progress line and time series, once a second.
    let mut series = vec![Sample::default()];
    let (mut last_out, mut last_in) = (0u64, 0u64);
    let mut last_t = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(
            Duration::from_millis(1000).min(deadline.saturating_duration_since(Instant::now())),
        );
        let now = Instant::now();
        let (out, inn) = (
            live.packets_out.load(Ordering::Relaxed),
            live.packets_in.load(Ordering::Relaxed),
        );
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-9);
        if dt < 0.5 {
            // A sliver at the deadline: its rates would be noise.
            continue;
        }
        let sample = Sample {
            t: now.saturating_duration_since(start).as_secs_f64(),
            connected: live.players_now(),
            packets_out_per_s: (out - last_out) as f64 / dt,
            packets_in_per_s: (inn - last_in) as f64 / dt,
            p99_ms: live.take_window_p99_ms(),
            server_tick_p99_ms: spawned.as_ref().map(|s| {
                s.stats().iter().map(|c| c.tick_p99_us).max().unwrap_or(0) as f64 / 1000.0
            }),
        };
        eprintln!(
            "[{:>5.1}s] players connected {:>6}/{}  packets/s out {:>8.0} in {:>8.0}  p99 (this second) {:>7.2} ms  disconnects {}",
            sample.t,
            sample.connected,
            args.players,
            sample.packets_out_per_s,
            sample.packets_in_per_s,
            sample.p99_ms,
            live.disconnected.load(Ordering::Relaxed)
        );
        series.push(sample);
        (last_out, last_in) = (out, inn);
        last_t = now;
        if watched {
            let rss = probe.rss_kib();
            if now <= rss_before_at {
                server_after.rss_before_kib = rss;
            }
            server_after.rss_peak_kib = server_after.rss_peak_kib.max(rss);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = Recorder::default();
    let mut ended = Vec::new();
    for h in handles {
        match h.join() {
            Ok((r, positions)) => {
                total.merge(&r);
                ended.extend(positions);
            }
            Err(_) => return Err("a loadgen thread panicked".into()),
        }
    }
    let server_ticks = spawned.as_ref().map(|s| {
        let worst = series
            .iter()
            .filter_map(|x| x.server_tick_p99_ms)
            .fold(0.0f64, f64::max);
        let overruns = s.stats().iter().map(|c| c.tick_overruns).sum();
        (worst, overruns)
    });
    let attack_counts = attack_thread.and_then(|t| t.join().ok());
    if attack_counts.is_some() && watched {
        // What the attack left behind: connections when it stopped, and
        // after the settle time (idle connections time out in 15 s).
        let connections = || -> u64 {
            match &spawned {
                Some(s) => s.stats().iter().map(|c| c.connections).sum(),
                None => probe.metrics_connections().unwrap_or(0),
            }
        };
        server_after.connections_at_attack_end = connections();
        server_after.legit_connected_after = live.connected.load(Ordering::Relaxed);
        let settle_start = Instant::now();
        let settle = Duration::from_secs_f64(args.attack_settle.max(0.0));
        while settle_start.elapsed() < settle && connections() > 0 {
            std::thread::sleep(Duration::from_millis(200));
            server_after.rss_peak_kib = server_after.rss_peak_kib.max(probe.rss_kib());
        }
        server_after.settle_seconds = settle_start.elapsed().as_secs_f64();
        server_after.connections_after = connections();
        server_after.rss_after_kib = probe.rss_kib();
    }
    if let Some(s) = spawned {
        s.shutdown(Duration::from_secs(2));
    }
    if args.mode == Mode::World {
        write_positions(&positions_path, remembered, &ended)?;
    }
    let info = RunInfo {
        mode: if args.mode == Mode::World {
            "world"
        } else {
            "echo"
        },
        players: args.players,
        seconds: args.seconds,
        rate_hz: args.rate,
        server: server.to_string(),
        threads: args.threads,
        server_ticks,
    };
    print!("{}", report::table(&info, &total));
    let attack_json = match (args.attack, &attack_counts) {
        (Some(kind), Some(c)) => {
            print!("{}", attack::table(kind, args.attack_rate, c));
            if watched {
                print!("{}", server_after.line());
            }
            Some(attack::json(kind, args.attack_rate, c, &server_after))
        }
        _ => None,
    };
    if let Some(p) = &args.json {
        let mut j = report::json(&info, &total);
        if let (Some(a), Some(m)) = (attack_json, j.as_object_mut()) {
            m.insert("attack".into(), a);
        }
        write_out(p, &j.to_string())?;
    }
    if let Some(p) = &args.csv {
        write_out(p, &report::csv(&series))?;
    }
    if let Some(p) = &args.svg {
        write_out(
            p,
            &report::svg(
                &series,
                &format!("loadgen: {} players, {} mode", args.players, info.mode),
            ),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_clusters_border_is_x_zero() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/cluster-2nodes.ron");
        let cluster = tos_cluster::Cluster::load(&path).expect("the shipped example loads");
        let world = cluster.file().world.quantizer().expect("a world");
        let x = border_x(&world, |q| cluster.owner(q), player::BATTLE_CENTRE);
        // West owns quadrants x 0..8 of 16 in a world centred on the origin.
        assert_eq!(x, Some(0.0));
        // The battle grounds, where crossers start, are near it.
        assert!(player::BATTLE_CENTRE[0].abs() < 3_000.0);
    }

    #[test]
    fn a_cluster_without_a_border_along_x_has_none() {
        let world = tos_config::WorldConfig::default().quantizer().unwrap();
        assert_eq!(border_x(&world, |_| Some(0), [0.0; 3]), None);
        // Split by y only: no owner change along x in any row.
        let by_y = |q: [u16; 3]| Some(usize::from(q[1] >= 8));
        assert_eq!(border_x(&world, by_y, [0.0; 3]), None);
        // Split at quadrant 5: x = -409,600 + 5 × 51,200.
        let at5 = |q: [u16; 3]| Some(usize::from(q[0] >= 5));
        assert_eq!(border_x(&world, at5, [0.0; 3]), Some(-153_600.0));
    }
}
