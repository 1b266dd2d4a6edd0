//! The `authority` section: limits the server enforces on movement claims.

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::check::Checker;

/// Limits on what a client may claim about its own movement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorityConfig {
    /// Fastest a player may move, in units per second.
    pub max_speed: f64,
    /// Factor on `max_speed` tolerated before a move is corrected, to absorb
    /// jitter in when inputs arrive. At least 1.0.
    pub speed_tolerance: f64,
    /// Extra time allowed for a move to arrive, in ms, on top of the
    /// client's measured round trip.
    pub rtt_tolerance_ms: u32,
    /// Most of the client's measured round trip, in ms, that widens its
    /// movement credit. A client controls its measured RTT (it can delay
    /// its Pongs and acks), so this caps what delaying them can earn.
    pub max_rtt_credit_ms: u32,
    /// Highest step a walking player may climb in one move, in units.
    pub max_step_height: f64,
    /// Terrain heights used to check moves; `None` checks speed only.
    pub heightfield_file: Option<String>,
    /// Solid obstacles moves may not pass through; `None` means none.
    pub obstacles_file: Option<String>,
}

impl Default for AuthorityConfig {
    fn default() -> Self {
        Self {
            max_speed: 1000.0,
            speed_tolerance: 1.25,
            rtt_tolerance_ms: 100,
            max_rtt_credit_ms: 250,
            max_step_height: 60.0,
            heightfield_file: None,
            obstacles_file: None,
        }
    }
}

impl AuthorityConfig {
    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.positive("authority.max_speed", self.max_speed)?;
        check.require(
            self.speed_tolerance.is_finite() && self.speed_tolerance >= 1.0,
            "authority.speed_tolerance",
            "a finite number of at least 1.0",
            self.speed_tolerance,
        )?;
        check.in_range(
            "authority.max_rtt_credit_ms",
            self.max_rtt_credit_ms,
            0,
            5_000,
        )?;
        check.require(
            self.max_step_height.is_finite() && self.max_step_height >= 0.0,
            "authority.max_step_height",
            "a finite number of at least 0.0",
            self.max_step_height,
        )?;
        check.optional_path(
            "authority.heightfield_file",
            self.heightfield_file.as_deref(),
        )?;
        check.optional_path("authority.obstacles_file", self.obstacles_file.as_deref())?;
        Ok(())
    }
}
