//! The `protocol` section: timers and limits of the UDP protocol.

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::check::Checker;

/// Biggest message a peer may ask us to hold. Every reassembly buffer is
/// bounded by it, so it is capped to keep one hostile client from pinning
/// much memory. (A compressed datagram payload decompresses to at most
/// 4,096 bytes, fixed by the protocol: there is no setting for it.)
const MAX_MESSAGE_BYTES_CAP: u32 = 16 * 1024 * 1024;

/// Rekeying more often than every MiB would spend more on handshakes than
/// on traffic.
const MIN_REKEY_BYTES: u64 = 1024 * 1024;

/// Timers and limits of the secure, reliable UDP protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// Each side sends a Ping (a heartbeat) this often, in ms, whether or not
    /// it sent anything else (PROTOCOL.md §20.1); the Pong gives an RTT
    /// sample and keeps NAT bindings alive.
    pub heartbeat_interval_ms: u32,
    /// Drop a connection that sent nothing for this long, in ms; must exceed
    /// the interval so a few lost heartbeats do not drop a client.
    pub heartbeat_timeout_ms: u32,
    /// Smallest retransmission timeout of a reliable message, in ms (the
    /// timeout adapts to measured round-trip time above this floor).
    pub reliable_rto_min_ms: u32,
    /// Retransmissions of one reliable message before the connection is
    /// dropped.
    pub reliable_max_retries: u32,
    /// Largest message, after reassembly of its fragments, in bytes.
    pub max_message_bytes: u32,
    /// Messages one connection may be reassembling at the same time.
    pub max_reassemblies_per_connection: u32,
    /// Drop a partly reassembled message after this long, in ms.
    pub fragment_timeout_ms: u32,
    /// Messages queued for sending on one connection before the sender is
    /// told to back off.
    pub send_queue_messages: u32,
    /// Rekey a connection after this many bytes under one key.
    pub rekey_after_bytes: u64,
    /// Rekey a connection after this many seconds under one key.
    pub rekey_after_secs: u32,
    /// After a rekey, how long packets under the old key are still
    /// accepted (late and reordered ones), in ms.
    pub rekey_grace_ms: u32,
    /// Connections one core accepts; further Connects are refused with
    /// ConnectionDenied `Full`. The default is near a core's measured
    /// capacity (about 900 players at 60 Hz, PERFORMANCE.md), not what
    /// would fit in memory.
    pub max_connections_per_core: u32,
    /// Connections the whole process accepts (all cores together); 0 means
    /// no limit beyond the cores' own. Refused with `Full`.
    pub max_connections_per_process: u32,
    /// Connections one source IP address may hold (all cores together); 0
    /// means no limit. Refused with `Full`.
    pub max_connections_per_address: u32,
    /// Cookie-verified Connects per second one source IP address may make
    /// (token bucket, checked before the X25519 work); 0 means no limit.
    /// Refused with `Busy`.
    pub handshakes_per_sec_per_address: u32,
    /// Verified Connects one address may make at once (the bucket's size).
    pub handshake_burst_per_address: u32,
    /// IP addresses the per-address limits do not apply to (an operator's
    /// own test or bot hosts), e.g. `["127.0.0.1"]`.
    pub admission_exempt_addresses: Vec<String>,
    /// How long an address-proving cookie stays valid, in ms.
    pub cookie_ttl_ms: u32,
    /// How often the cookie secret is replaced, in ms (the previous secret
    /// is still honoured, so cookies live one to two rotations).
    pub cookie_rotation_ms: u32,
    /// Payloads longer than this are LZ4-compressed when that makes them
    /// smaller, in bytes.
    pub compression_threshold_bytes: u32,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 5000,
            heartbeat_timeout_ms: 15_000,
            reliable_rto_min_ms: 250,
            reliable_max_retries: 10,
            max_message_bytes: 256 * 1024,
            max_reassemblies_per_connection: 8,
            fragment_timeout_ms: 10_000,
            send_queue_messages: 1024,
            rekey_after_bytes: 1 << 30,
            rekey_after_secs: 3600,
            rekey_grace_ms: 5000,
            max_connections_per_core: 1_000,
            max_connections_per_process: 0,
            max_connections_per_address: 16,
            handshakes_per_sec_per_address: 20,
            handshake_burst_per_address: 40,
            admission_exempt_addresses: Vec::new(),
            cookie_ttl_ms: 10_000,
            cookie_rotation_ms: 5000,
            compression_threshold_bytes: 512,
        }
    }
}

impl ProtocolConfig {
    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.at_least(
            "protocol.heartbeat_interval_ms",
            self.heartbeat_interval_ms,
            1,
        )?;
        check.require(
            self.heartbeat_timeout_ms > self.heartbeat_interval_ms,
            "protocol.heartbeat_timeout_ms",
            format!(
                "more than protocol.heartbeat_interval_ms ({})",
                self.heartbeat_interval_ms
            ),
            self.heartbeat_timeout_ms,
        )?;
        check.at_least("protocol.reliable_rto_min_ms", self.reliable_rto_min_ms, 1)?;
        check.at_least(
            "protocol.reliable_max_retries",
            self.reliable_max_retries,
            1,
        )?;
        check.in_range(
            "protocol.max_message_bytes",
            self.max_message_bytes,
            1,
            MAX_MESSAGE_BYTES_CAP,
        )?;
        check.at_least(
            "protocol.max_reassemblies_per_connection",
            self.max_reassemblies_per_connection,
            1,
        )?;
        check.at_least("protocol.fragment_timeout_ms", self.fragment_timeout_ms, 1)?;
        check.at_least("protocol.send_queue_messages", self.send_queue_messages, 1)?;
        check.at_least(
            "protocol.rekey_after_bytes",
            self.rekey_after_bytes,
            MIN_REKEY_BYTES,
        )?;
        check.at_least("protocol.rekey_after_secs", self.rekey_after_secs, 1)?;
        // Two rekeys inside one grace period would need three live keys.
        let rekey_period_ms = u64::from(self.rekey_after_secs) * 1000;
        check.require(
            self.rekey_grace_ms >= 1 && u64::from(self.rekey_grace_ms) < rekey_period_ms,
            "protocol.rekey_grace_ms",
            format!("1 or more, and less than protocol.rekey_after_secs in ms ({rekey_period_ms})"),
            self.rekey_grace_ms,
        )?;
        check.at_least(
            "protocol.max_connections_per_core",
            self.max_connections_per_core,
            1,
        )?;
        check.at_least("protocol.cookie_ttl_ms", self.cookie_ttl_ms, 1)?;
        check.at_least("protocol.cookie_rotation_ms", self.cookie_rotation_ms, 1)?;
        for (i, a) in self.admission_exempt_addresses.iter().enumerate() {
            check.require(
                a.parse::<std::net::IpAddr>().is_ok(),
                format!("protocol.admission_exempt_addresses[{i}]"),
                "an IP address such as \"127.0.0.1\"",
                format_args!("{a:?}"),
            )?;
        }
        Ok(())
    }
}
