//! The `runtime` section: cores, tick rate, stats and shutdown.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::check::Checker;
use crate::{ConfigError, MAX_CORES};

/// Threads, cores and the tick.
/// Smallest cross-core channel: a burst of hand-offs in one tick needs room.
pub const MIN_CHANNEL_CAPACITY: u32 = 16;
/// Largest cross-core channel (each forwarded datagram slot is ~1.3 KB and
/// the channels are preallocated: 16,384 slots are ~21 MB per core).
pub const MAX_CHANNEL_CAPACITY: u32 = 16_384;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Which CPU cores run a world thread (one thread per core).
    pub cores: CoreSelection,
    /// Pin each world thread to its core, so its caches, socket and memory
    /// stay local to it.
    pub pin_threads: bool,
    /// World ticks per second on every core.
    pub tick_hz: u32,
    /// How often each core logs its counters, in milliseconds.
    pub stats_interval_ms: u32,
    /// Capacity of each bounded channel between two cores (hand-offs,
    /// migrations, forwarded datagrams), in messages.
    pub cross_core_channel_capacity: u32,
    /// On shutdown, how long cores keep ticking so clients are told to
    /// disconnect and reliable messages drain, in milliseconds.
    pub shutdown_grace_ms: u32,
    /// Benchmark mode: run the network and protocol path only and echo each
    /// client's messages back, with no world; measures the I/O floor.
    pub echo_mode: bool,
    /// The data directory: the SQLite file, the server's static key, the
    /// ticket signing key and the integrity secret are created there on
    /// first start and reused afterwards (`tos-server --data-dir`).
    pub data_dir: String,
    /// A directory with the game data files (`characters.ron`,
    /// `levels.ron`, `names.ron`); `None` uses the files built into the
    /// server (`config/data/` of its source).
    pub game_data_dir: Option<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cores: CoreSelection::All,
            pin_threads: true,
            tick_hz: 60,
            stats_interval_ms: 10_000,
            cross_core_channel_capacity: 4096,
            shutdown_grace_ms: 2000,
            echo_mode: false,
            data_dir: "data".into(),
            game_data_dir: None,
        }
    }
}

impl RuntimeConfig {
    /// Time between two ticks (`1 / tick_hz`; zero if `tick_hz` is zero,
    /// which validation rejects).
    pub fn tick_period(&self) -> Duration {
        Duration::from_secs(1)
            .checked_div(self.tick_hz)
            .unwrap_or(Duration::ZERO)
    }

    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        self.cores.validate(check)?;
        check.in_range("runtime.tick_hz", self.tick_hz, 1, 1000)?;
        check.at_least("runtime.stats_interval_ms", self.stats_interval_ms, 1)?;
        check.in_range(
            "runtime.cross_core_channel_capacity",
            self.cross_core_channel_capacity,
            MIN_CHANNEL_CAPACITY,
            MAX_CHANNEL_CAPACITY,
        )?;
        if self.data_dir.trim().is_empty() {
            return Err(check.invalid("runtime.data_dir", "a directory path", "an empty string"));
        }
        Ok(())
    }
}

/// Which CPU cores run a world thread.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CoreSelection {
    /// Every core the process may run on (its affinity mask).
    #[default]
    All,
    /// Exactly these core ids, as the OS numbers them (`lscpu -p=CPU`);
    /// shard `i` of the layout runs on the `i`-th core listed.
    List(Vec<usize>),
    /// The first `n` cores the process may run on.
    Count(usize),
}

impl CoreSelection {
    fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        match self {
            Self::All => Ok(()),
            Self::Count(count) => check.in_range("runtime.cores.Count", *count, 1, MAX_CORES),
            Self::List(cores) => {
                check.require(
                    (1..=MAX_CORES).contains(&cores.len()),
                    "runtime.cores.List",
                    format!("1 to {MAX_CORES} core ids"),
                    format_args!("{} core ids", cores.len()),
                )?;
                for (position, core) in cores.iter().enumerate() {
                    if cores[..position].contains(core) {
                        return Err(check.invalid(
                            format!("runtime.cores.List[{position}]"),
                            "each core id listed once",
                            format!("core {core} listed twice"),
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}
