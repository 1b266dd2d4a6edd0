//! The `sync` section: adaptive sync rates and the snapshot byte budget.

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::check::Checker;

/// How often each entity is sent to each client, and how many bytes a
/// client's snapshot may use per tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Share of ticks on which a moving entity is sent (1.0 = every tick).
    pub moving_rate: f64,
    /// Share of ticks on which a stationary entity is sent (0.10 = about
    /// 6 Hz at a 60 Hz tick).
    pub stationary_rate: f64,
    /// Share of ticks on which a distant entity is sent (0.30 = about 18 Hz).
    pub distant_rate: f64,
    /// An entity farther than this fraction of its interest distance counts
    /// as distant.
    pub distant_fraction: f64,
    /// Every entity in view is sent in full at least this often, in ms.
    pub full_sync_interval_ms: u32,
    /// Bytes of snapshot per client per tick; entities that do not fit wait
    /// for a later tick, most starved first. At most `network.mtu`.
    pub snapshot_budget_bytes: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            moving_rate: 1.0,
            stationary_rate: 0.10,
            distant_rate: 0.30,
            distant_fraction: 0.5,
            full_sync_interval_ms: 5000,
            snapshot_budget_bytes: 1200,
        }
    }
}

impl SyncConfig {
    pub(crate) fn validate(&self, check: &Checker<'_>, mtu: u16) -> Result<(), ConfigError> {
        check.fraction("sync.moving_rate", self.moving_rate)?;
        check.fraction("sync.stationary_rate", self.stationary_rate)?;
        check.fraction("sync.distant_rate", self.distant_rate)?;
        check.fraction("sync.distant_fraction", self.distant_fraction)?;
        check.at_least("sync.full_sync_interval_ms", self.full_sync_interval_ms, 1)?;
        check.require(
            (1..=u32::from(mtu)).contains(&self.snapshot_budget_bytes),
            "sync.snapshot_budget_bytes",
            format!("1..={mtu} (at most network.mtu)"),
            self.snapshot_budget_bytes,
        )?;
        Ok(())
    }
}
