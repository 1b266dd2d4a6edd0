//! Per-core counters, shared read-only with the stats line and the
//! metrics endpoint.
//!
//! A core keeps its own plain counters on the hot path and publishes them
//! into its [`CoreStats`] atomics once per tick, so nothing per packet
//! touches memory another core reads.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! core_stats {
    ($($name:ident: $kind:literal, $help:literal,)*) => {
        /// Published counters of one core.
        #[derive(Debug, Default)]
        pub struct CoreStats {
            $(#[doc = $help] pub $name: AtomicU64,)*
        }

        /// A plain copy of [`CoreStats`].
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct CoreSnapshot {
            $(#[doc = $help] pub $name: u64,)*
        }

        impl CoreStats {
            /// Reads every counter.
            pub fn snapshot(&self) -> CoreSnapshot {
                CoreSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }

            /// Stores every counter.
            pub fn publish(&self, s: &CoreSnapshot) {
                $(self.$name.store(s.$name, Ordering::Relaxed);)*
            }
        }

        /// Metric names, help and kind, in [`CoreSnapshot`] field order.
        const METRICS: &[(&str, &str, &str)] = &[
            $((stringify!($name), $help, $kind),)*
        ];

        impl CoreSnapshot {
            fn values(&self) -> Vec<u64> {
                vec![$(self.$name,)*]
            }
        }
    };
}

core_stats! {
    datagrams_in: "counter", "Datagrams received.",
    bytes_in: "counter", "Bytes received.",
    datagrams_out: "counter", "Datagrams sent.",
    bytes_out: "counter", "Bytes sent.",
    connections: "gauge", "Live connections.",
    players: "gauge", "Players in this core's world.",
    entities: "gauge", "Entities this core simulates (players, NPCs, items; not ghosts).",
    ghosts: "gauge", "Ghosts this core shows of other cores' and other nodes' entities.",
    ticks: "counter", "Ticks run.",
    tick_overruns: "counter", "Ticks that took longer than the tick period, or started late by more than one.",
    tick_p50_us: "gauge", "Median tick time over the last stats interval, microseconds.",
    tick_p99_us: "gauge", "99th percentile tick time over the last stats interval, microseconds.",
    tick_max_us: "gauge", "Longest tick over the last stats interval, microseconds.",
    drop_malformed: "counter", "Dropped: datagrams that did not decode.",
    drop_short_connect: "counter", "Dropped: Connects shorter than the required padding.",
    drop_unknown_connection: "counter", "Dropped: datagrams for no known connection.",
    drop_auth: "counter", "Dropped: tag verification failed (tampered, truncated, wrong key).",
    drop_replay: "counter", "Dropped: replayed packets.",
    drop_forward_full: "counter", "Dropped: forwarded datagrams the peer core's channel had no room for.",
    drop_truncated: "counter", "Dropped: datagrams larger than the receive buffer.",
    drop_send_full: "counter", "Dropped: outgoing datagrams with no send slot even after a flush.",
    forwarded_out: "counter", "Datagrams that arrived on a core that does not own their connection and were forwarded.",
    forwarded_in: "counter", "Datagrams received from another core.",
    cookies_issued: "counter", "Cookies issued.",
    refused_core_full: "counter", "Connects refused (ConnectionDenied Full): this core holds protocol.max_connections_per_core.",
    refused_process_full: "counter", "Connects refused (Full): the process holds protocol.max_connections_per_process.",
    refused_address_full: "counter", "Connects refused (Full): the source address holds protocol.max_connections_per_address.",
    refused_rate_limited: "counter", "Verified Connects refused (Busy) by the source address's handshake rate limit.",
    refused_pending_full: "counter", "Connects refused (Busy): too many await the game layer's decision.",
    refused_bad_cookie: "counter", "Connects refused (BadCookie): forged, expired or another address's cookie.",
    refused_version: "counter", "Connects refused for their protocol version or an unpinned server key.",
    refused_ticket: "counter", "Connects refused for their ticket (TicketRejected, Banned) by the endpoint or the game layer.",
    drop_bad_client_key: "counter", "Dropped: Connects with a low-order client key.",
    connections_accepted: "counter", "Connections accepted.",
    migrations_out: "counter", "Connections migrated to another core.",
    migrations_in: "counter", "Connections migrated from another core.",
    syscalls: "counter", "Send system calls made.",
}

impl CoreSnapshot {
    /// The one-line summary logged every stats interval.
    pub fn line(&self, core: usize) -> String {
        format!(
            "core {core}: in {} pkts/{} B, out {} pkts/{} B, conns {}, tick p50 {} us p99 {} us max {} us, overruns {}, drops: malformed {} short-connect {} unknown {} auth {} replay {} forward-full {} truncated {}, forwarded {}",
            self.datagrams_in,
            self.bytes_in,
            self.datagrams_out,
            self.bytes_out,
            self.connections,
            self.tick_p50_us,
            self.tick_p99_us,
            self.tick_max_us,
            self.tick_overruns,
            self.drop_malformed,
            self.drop_short_connect,
            self.drop_unknown_connection,
            self.drop_auth,
            self.drop_replay,
            self.drop_forward_full,
            self.drop_truncated,
            self.forwarded_out,
        )
    }
}

/// Renders every core's counters in the Prometheus text format.
pub fn render_prometheus(cores: &[CoreSnapshot]) -> String {
    let mut out = String::new();
    let values: Vec<Vec<u64>> = cores.iter().map(CoreSnapshot::values).collect();
    for (i, (name, help, kind)) in METRICS.iter().enumerate() {
        let metric = if *kind == "counter" {
            format!("tos_{name}_total")
        } else {
            format!("tos_{name}")
        };
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        for (core, v) in values.iter().enumerate() {
            let _ = writeln!(out, "{metric}{{core=\"{core}\"}} {}", v[i]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_is_well_formed() {
        let s = CoreSnapshot {
            datagrams_in: 5,
            connections: 2,
            ..CoreSnapshot::default()
        };
        let text = render_prometheus(&[s, CoreSnapshot::default()]);
        assert!(
            text.contains("# TYPE tos_datagrams_in_total counter\n"),
            "{text}"
        );
        assert!(text.contains("tos_datagrams_in_total{core=\"0\"} 5\n"));
        assert!(text.contains("tos_connections{core=\"0\"} 2\n"));
        assert!(text.contains("tos_connections{core=\"1\"} 0\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("tos_"), "{line}");
            value.parse::<u64>().unwrap();
        }
        assert!(
            text.contains("# HELP tos_datagrams_in_total Datagrams received.\n"),
            "{text}"
        );
    }
}
