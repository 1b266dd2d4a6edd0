//! `tos-server`: the world server.
//!
//! ```text
//! tos-server [--config FILE] [--layout FILE] [--data-dir DIR]
//!            [--cores all|N|A,B,C] [--port PORT] [--log-level LEVEL] [--echo]
//!            [--cluster FILE --node NAME]
//! ```
//!
//! With `--cluster` the process is node `--node` of a cluster
//! (docs/DEPLOY.md): it serves only that node's quadrants, with the node's
//! layout from the cluster file, and needs NATS; without it the process is
//! a world of its own and needs no NATS.
//!
//! Without `--config` the embedded defaults are used (`config/server.ron`).
//! The data directory (default `./data`) holds the SQLite database and the
//! keys, created on first start. Exit codes: 0 after a clean shutdown
//! (SIGINT / SIGTERM, every character saved) and for `--help`, 1 when the
//! server cannot start (bad config, busy port, too few cores, database,
//! ...) or a core stopped for another reason, 2 for bad arguments, 3 when a
//! core panicked: the panic is logged (`core N panicked: ...`), that core
//! and every other one save their characters, the store is flushed, and
//! the process exits (panic policy: SECURITY.md).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tos_config::{CoreSelection, ServerConfig, ShardLayout};
use tos_engine::{runtime, signals};

/// The Tales of Shadowland world server.
///
/// Without --config the embedded defaults are used (config/server.ron).
#[derive(Debug, Parser)]
#[command(name = "tos-server", version, about = "The Tales of Shadowland world server", long_about = None)]
struct Args {
    /// Server settings (RON; docs/CONFIG.md). Default: the embedded defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// Which core owns which quadrants (RON; docs/ENGINE.md).
    #[arg(long, value_name = "FILE")]
    layout: Option<String>,
    /// Where the SQLite database and the keys live (created on first start).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// all, a count N, or a list of core ids A,B,C.
    #[arg(long, value_name = "all|N|A,B,C", value_parser = cores)]
    cores: Option<CoreSelection>,
    /// UDP port (overrides network.bind's port).
    #[arg(long)]
    port: Option<u16>,
    /// Log level (a tracing filter).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
    /// Benchmark mode: echo client messages back, no world.
    #[arg(long, conflicts_with = "cluster")]
    echo: bool,
    /// Run as one node of a cluster (RON; docs/DEPLOY.md). Needs --node;
    /// the node's layout comes from this file (no --layout).
    #[arg(
        long,
        value_name = "FILE",
        requires = "node",
        conflicts_with = "layout"
    )]
    cluster: Option<String>,
    /// This node's name in the cluster file. Needs --cluster.
    #[arg(long, value_name = "NAME", requires = "cluster")]
    node: Option<String>,
}

fn cores(v: &str) -> Result<CoreSelection, String> {
    if v == "all" {
        return Ok(CoreSelection::All);
    }
    if v.contains(',') {
        return v
            .split(',')
            .map(|c| c.trim().parse().map_err(|_| format!("bad core {c:?}")))
            .collect::<Result<_, _>>()
            .map(CoreSelection::List);
    }
    v.parse()
        .map(CoreSelection::Count)
        .map_err(|_| format!("expected all, a count or a list, not {v:?}"))
}

fn main() -> ExitCode {
    // Bad arguments exit with 2, --help and --version with 0 (clap's codes).
    let args = Args::parse();
    let level = args.log_level.clone();
    let filter = match tracing_subscriber::EnvFilter::try_new(&level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("bad --log-level {level:?}: {e}");
            return ExitCode::from(2);
        }
    };
    // Colour only on a terminal: files and pipes get plain text (the
    // public key is copied out of the log).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();

    let mut config = match &args.config {
        Some(path) => match ServerConfig::load(std::path::Path::new(path)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("tos-server: {e}");
                return ExitCode::from(1);
            }
        },
        None => ServerConfig::default(),
    };
    if let Some(cores) = args.cores {
        config.runtime.cores = cores;
    }
    if let Some(port) = args.port {
        match config.network.bind_addr() {
            Ok(mut a) => {
                a.set_port(port);
                config.network.bind = a.to_string();
            }
            Err(_) => {
                eprintln!("tos-server: bad bind address {:?}", config.network.bind);
                return ExitCode::from(1);
            }
        }
    }
    if args.echo {
        config.runtime.echo_mode = true;
    }
    if let Some(dir) = args.data_dir {
        config.runtime.data_dir = dir;
    }
    if let Err(e) = config.validate(args.config.as_deref().unwrap_or("command line")) {
        eprintln!("tos-server: {e}");
        return ExitCode::from(1);
    }
    if let Err(e) = signals::install() {
        eprintln!("tos-server: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    let layout = match &args.layout {
        Some(path) => match ShardLayout::load(std::path::Path::new(path)) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("tos-server: {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    let node = match (&args.cluster, &args.node) {
        (Some(path), Some(name)) => {
            match tos_engine::cluster::NodeSetup::load(std::path::Path::new(path), name, &config) {
                Ok(node) => Some(node),
                Err(e) => {
                    eprintln!("tos-server: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        _ => None,
    };
    let server = match runtime::start_node(&config, layout.as_ref(), node.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tos-server: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(addr = %server.local_addr(), cores = server.core_count(), steering = server.steering(), "tos-server running");
    while !signals::requested() && !server.any_core_stopped() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let failed = !signals::requested();
    let panicked = server.panicked_cores();
    tracing::info!("shutting down");
    let grace = Duration::from_millis(u64::from(config.runtime.shutdown_grace_ms));
    let clean = server.shutdown(grace);
    if !panicked.is_empty() {
        tracing::error!(
            cores = ?panicked,
            "exiting after a panic on core(s) {panicked:?}: characters saved and the store flushed"
        );
        eprintln!(
            "tos-server: core(s) {panicked:?} panicked; characters saved, store flushed, exiting with status 3"
        );
        return ExitCode::from(3);
    }
    if failed || !clean {
        eprintln!(
            "tos-server: {}",
            if failed {
                "a core stopped unexpectedly"
            } else {
                "cores did not stop in time"
            }
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
