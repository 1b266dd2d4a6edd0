//! Measurements: per-worker recorders, their merge, the live progress line,
//! and the final outputs (table, JSON, CSV time series, SVG chart).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tos_protocol::wire::control::DisconnectReason;

use crate::play::GameplayCounts;

fn hist() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits; recording never allocates.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

/// What one worker thread measured.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    /// Input-to-observed latency (world) or echo round trip (echo), µs.
    pub(crate) latency_us: Histogram<u64>,
    /// The same, since the worker last published (moved into
    /// [`Live::window_latency_us`] and cleared then), for per-second p99s.
    pub(crate) window_us: Histogram<u64>,
    /// Time from first Connect to Connected, µs.
    pub(crate) handshake_us: Histogram<u64>,
    /// Smoothed RTT per player at the end, µs.
    pub(crate) rtt_us: Histogram<u64>,
    /// Entity records per snapshot.
    pub(crate) entities: Histogram<u64>,
    pub(crate) inputs_sent: u64,
    pub(crate) snapshots: u64,
    pub(crate) snapshot_bytes: u64,
    /// Bytes the same snapshots would take at full precision, no deltas.
    pub(crate) naive_bytes: u64,
    pub(crate) decode_errors: u64,
    /// Update records whose baseline this client did not hold (skipped).
    pub(crate) missing_baselines: u64,
    pub(crate) corrections: u64,
    pub(crate) connected: u64,
    pub(crate) denied: u64,
    pub(crate) disconnects: [u64; 8],
    pub(crate) packets_out: u64,
    pub(crate) packets_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) garbage_sent: u64,
    /// Connection established to logged in (password or ticket).
    pub(crate) login_us: Histogram<u64>,
    /// Logged in to in the world (list, create if none, enter).
    pub(crate) enter_us: Histogram<u64>,
    /// Players whose login, character or enter was refused.
    pub(crate) logins_failed: u64,
    /// Refusal reasons seen (code → count).
    pub(crate) refusals: [u64; 64],
    /// Characters created this run (accounts that had none).
    pub(crate) characters_created: u64,
    /// Characters that already existed and whose last position this
    /// loadgen remembered from an earlier run.
    pub(crate) resumed_known: u64,
    /// Of those, found within the tolerance of where they were left.
    pub(crate) resumed_in_place: u64,
    /// How late each input went out after its scheduled time, µs: the
    /// loadgen's own lag (a saturated loadgen measures itself).
    pub(crate) send_lag_us: Histogram<u64>,
    /// Inputs not sent because the player was more than four periods
    /// behind its schedule.
    pub(crate) inputs_skipped: u64,
    /// CPU time of the loadgen's worker threads (user + system), µs.
    pub(crate) cpu_us: u64,
    /// What the players' gameplay came to.
    pub(crate) gameplay: GameplayCounts,
    /// Zone transfers completed (cluster runs).
    pub(crate) zone_transfers: u64,
    /// Zone transfers that failed (the player's session ended).
    pub(crate) transfer_failures: u64,
    /// Transfer gaps: the old node's last snapshot to the new node's
    /// first, µs.
    pub(crate) transfer_gap_us: Histogram<u64>,
    /// Players whose character stood on another node's ground at login,
    /// sent there with their session ticket (cluster runs).
    pub(crate) sent_elsewhere: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            latency_us: hist(),
            window_us: hist(),
            handshake_us: hist(),
            rtt_us: hist(),
            entities: hist(),
            inputs_sent: 0,
            snapshots: 0,
            snapshot_bytes: 0,
            naive_bytes: 0,
            decode_errors: 0,
            missing_baselines: 0,
            corrections: 0,
            connected: 0,
            denied: 0,
            disconnects: [0; 8],
            packets_out: 0,
            packets_in: 0,
            bytes_out: 0,
            bytes_in: 0,
            garbage_sent: 0,
            login_us: hist(),
            enter_us: hist(),
            logins_failed: 0,
            refusals: [0; 64],
            characters_created: 0,
            resumed_known: 0,
            resumed_in_place: 0,
            send_lag_us: hist(),
            inputs_skipped: 0,
            cpu_us: 0,
            gameplay: GameplayCounts::default(),
            zone_transfers: 0,
            transfer_failures: 0,
            transfer_gap_us: hist(),
            sent_elsewhere: 0,
        }
    }
}

impl Recorder {
    pub(crate) fn latency(&mut self, d: Duration) {
        let us = d.as_micros().max(1) as u64;
        let _ = self.latency_us.record(us);
        let _ = self.window_us.record(us);
    }

    pub(crate) fn handshake(&mut self, d: Duration) {
        let _ = self.handshake_us.record(d.as_micros().max(1) as u64);
    }

    pub(crate) fn entities_per_snapshot(&mut self, n: u64) {
        let _ = self.entities.record(n.max(1));
    }

    pub(crate) fn disconnect(&mut self, reason: DisconnectReason) {
        self.disconnects[(reason as usize).min(7)] += 1;
    }

    pub(crate) fn merge(&mut self, o: &Recorder) {
        let _ = self.latency_us.add(&o.latency_us);
        let _ = self.handshake_us.add(&o.handshake_us);
        let _ = self.rtt_us.add(&o.rtt_us);
        let _ = self.entities.add(&o.entities);
        self.inputs_sent += o.inputs_sent;
        self.snapshots += o.snapshots;
        self.snapshot_bytes += o.snapshot_bytes;
        self.naive_bytes += o.naive_bytes;
        self.decode_errors += o.decode_errors;
        self.missing_baselines += o.missing_baselines;
        self.corrections += o.corrections;
        self.connected += o.connected;
        self.denied += o.denied;
        for i in 0..8 {
            self.disconnects[i] += o.disconnects[i];
        }
        self.packets_out += o.packets_out;
        self.packets_in += o.packets_in;
        self.bytes_out += o.bytes_out;
        self.bytes_in += o.bytes_in;
        self.garbage_sent += o.garbage_sent;
        let _ = self.login_us.add(&o.login_us);
        let _ = self.enter_us.add(&o.enter_us);
        self.logins_failed += o.logins_failed;
        for i in 0..self.refusals.len() {
            self.refusals[i] += o.refusals[i];
        }
        self.characters_created += o.characters_created;
        self.resumed_known += o.resumed_known;
        self.resumed_in_place += o.resumed_in_place;
        let _ = self.send_lag_us.add(&o.send_lag_us);
        self.inputs_skipped += o.inputs_skipped;
        self.cpu_us += o.cpu_us;
        self.gameplay.merge(&o.gameplay);
        self.zone_transfers += o.zone_transfers;
        self.transfer_failures += o.transfer_failures;
        let _ = self.transfer_gap_us.add(&o.transfer_gap_us);
        self.sent_elsewhere += o.sent_elsewhere;
    }

    /// Whether the loadgen kept its input rate: at most 0.1% of inputs
    /// skipped and 99% of inputs out within one input period of their
    /// time. A capacity figure counts only when this holds.
    pub(crate) fn kept_rate(&self, rate_hz: u32) -> bool {
        let period_us = 1e6 / f64::from(rate_hz.max(1));
        self.inputs_skipped * 1000 <= self.inputs_sent && q(&self.send_lag_us, 0.99) <= period_us
    }
}

/// Live counters every worker publishes (every 100 ms) for the progress
/// line and the time series: relaxed atomics, and the latencies recorded
/// since the main thread last took them.
#[derive(Debug)]
pub(crate) struct Live {
    /// Handshakes completed.
    pub(crate) connected: AtomicU64,
    /// Connection attempts denied by the server (counted in
    /// `disconnected` too, but never connected).
    pub(crate) denied: AtomicU64,
    pub(crate) packets_out: AtomicU64,
    pub(crate) packets_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) disconnected: AtomicU64,
    /// Latencies of every worker since the last [`Live::take_window_p99_ms`].
    pub(crate) window_latency_us: Mutex<Histogram<u64>>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            connected: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            packets_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            window_latency_us: Mutex::new(hist()),
        }
    }
}

impl Live {
    pub(crate) fn add(&self, field: &AtomicU64, v: u64) {
        field.fetch_add(v, Ordering::Relaxed);
    }

    /// Adds a worker's window of latencies.
    pub(crate) fn add_window(&self, window: &Histogram<u64>) {
        if let Ok(mut h) = self.window_latency_us.lock() {
            let _ = h.add(window);
        }
    }

    /// The p99 of the latencies published since the last call, ms (0 when
    /// none), and starts a new window.
    pub(crate) fn take_window_p99_ms(&self) -> f64 {
        let Ok(mut h) = self.window_latency_us.lock() else {
            return 0.0;
        };
        let p99 = q(&h, 0.99) / 1000.0;
        h.reset();
        p99
    }

    /// Players connected now: connected and not yet disconnected.
    pub(crate) fn players_now(&self) -> u64 {
        let gone = self
            .disconnected
            .load(Ordering::Relaxed)
            .saturating_sub(self.denied.load(Ordering::Relaxed));
        self.connected.load(Ordering::Relaxed).saturating_sub(gone)
    }
}

/// One row of the time series: the second that ended at `t`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    pub(crate) t: f64,
    /// Players connected at `t`.
    pub(crate) connected: u64,
    /// Datagrams loadgen sent (client to server) per second.
    pub(crate) packets_out_per_s: f64,
    /// Datagrams loadgen received (server to client) per second.
    pub(crate) packets_in_per_s: f64,
    /// Latency p99 of this second alone (not of the run so far), ms.
    pub(crate) p99_ms: f64,
    /// The in-process server's worst core tick p99 over its last stats
    /// interval (one second), when loadgen spawned the server.
    pub(crate) server_tick_p99_ms: Option<f64>,
}

/// Percentiles reported everywhere.
pub(crate) const QUANTILES: [(f64, &str); 5] = [
    (0.5, "p50"),
    (0.9, "p90"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (1.0, "max"),
];

fn q(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    (if q >= 1.0 {
        h.max()
    } else {
        h.value_at_quantile(q)
    }) as f64
}

/// The run's context, printed with the results.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    pub(crate) mode: &'static str,
    pub(crate) players: usize,
    pub(crate) seconds: f64,
    pub(crate) rate_hz: u32,
    pub(crate) server: String,
    pub(crate) threads: usize,
    /// In-process server: the worst per-second core tick p99 of the run and
    /// the ticks that overran their frame.
    pub(crate) server_ticks: Option<(f64, u64)>,
}

/// The human-readable table.
pub(crate) fn table(info: &RunInfo, r: &Recorder) -> String {
    let mut s = String::new();
    let secs = info.seconds.max(1e-9);
    let players = info.players.max(1) as f64;
    let _ = writeln!(
        s,
        "loadgen: {} players, {} mode, {:.1} s, inputs at {} Hz, server {}, {} loadgen threads",
        info.players, info.mode, info.seconds, info.rate_hz, info.server, info.threads
    );
    let _ = writeln!(
        s,
        "{:<34} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", "p50", "p90", "p99", "p99.9", "max"
    );
    let mut row = |name: &str, h: &Histogram<u64>, scale: f64, unit: &str| {
        let v: Vec<String> = QUANTILES
            .iter()
            .map(|(x, _)| format!("{:.2}", q(h, *x) / scale))
            .collect();
        let _ = writeln!(
            s,
            "{:<34} {:>10} {:>10} {:>10} {:>10} {:>10}",
            format!("{name} ({unit})"),
            v[0],
            v[1],
            v[2],
            v[3],
            v[4]
        );
    };
    let latency_name = if info.mode == "world" {
        "input-to-observed latency"
    } else {
        "echo round trip"
    };
    row(latency_name, &r.latency_us, 1000.0, "ms");
    row("RTT (smoothed, per player)", &r.rtt_us, 1000.0, "ms");
    row("handshake", &r.handshake_us, 1000.0, "ms");
    if info.mode == "world" {
        row("login", &r.login_us, 1000.0, "ms");
        row("enter world", &r.enter_us, 1000.0, "ms");
        row("entities per snapshot", &r.entities, 1.0, "count");
        if r.zone_transfers > 0 {
            row("zone transfer gap", &r.transfer_gap_us, 1000.0, "ms");
        }
    }
    row("loadgen input send lag", &r.send_lag_us, 1000.0, "ms");
    let _ = writeln!(
        s,
        "loadgen: CPU {:.2} cores ({:.1} s over {:.1} s), inputs skipped {}, kept its rate: {}",
        r.cpu_us as f64 / 1e6 / secs,
        r.cpu_us as f64 / 1e6,
        secs,
        r.inputs_skipped,
        if r.kept_rate(info.rate_hz) {
            "yes"
        } else {
            "NO (the figures measure the loadgen too)"
        }
    );
    let _ = writeln!(
        s,
        "players connected: {} (denied {})",
        r.connected, r.denied
    );
    if let Some((p99, overruns)) = info.server_ticks {
        let _ = writeln!(
            s,
            "server (in-process): worst per-second core tick p99 {p99:.2} ms, ticks over the frame {overruns}"
        );
    }
    if info.mode == "world" {
        let refused: Vec<String> = r
            .refusals
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| {
                let name = u8::try_from(code)
                    .ok()
                    .and_then(|c| tos_protocol::wire::game::RefusalReason::from_u8(c).ok())
                    .map_or("unknown", |r| r.as_str());
                format!("{name} {n}")
            })
            .collect();
        let _ = writeln!(
            s,
            "logins failed: {} (refusals: {}); characters created: {}; found where they were left: {} of {} remembered",
            r.logins_failed,
            if refused.is_empty() {
                "none".to_string()
            } else {
                refused.join(", ")
            },
            r.characters_created,
            r.resumed_in_place,
            r.resumed_known
        );
    }
    let _ = writeln!(
        s,
        "packets/s: out {:.0}, in {:.0}; per player per second: out {:.1} pkts / {:.0} B, in {:.1} pkts / {:.0} B",
        r.packets_out as f64 / secs,
        r.packets_in as f64 / secs,
        r.packets_out as f64 / secs / players,
        r.bytes_out as f64 / secs / players,
        r.packets_in as f64 / secs / players,
        r.bytes_in as f64 / secs / players
    );
    if info.mode == "world" {
        let saved = if r.naive_bytes > 0 {
            100.0 * (1.0 - r.snapshot_bytes as f64 / r.naive_bytes as f64)
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "snapshots: {} ({} B), naive full-precision encoding of the same: {} B, saved {:.1}%",
            r.snapshots, r.snapshot_bytes, r.naive_bytes, saved
        );
        let _ = writeln!(s, "corrections (authority): {}", r.corrections);
        if r.zone_transfers + r.transfer_failures + r.sent_elsewhere > 0 {
            let _ = writeln!(
                s,
                "zone transfers: {} (failed {}); players sent to their character's node at login: {}",
                r.zone_transfers, r.transfer_failures, r.sent_elsewhere
            );
        }
        let g = &r.gameplay;
        let _ = writeln!(
            s,
            "gameplay: kills {}, deaths {}, items looted {}, level-ups {} (highest level {}), chat sent {} / received {}",
            g.kills,
            g.deaths,
            g.items_looted,
            g.level_ups,
            g.max_level,
            g.chat_messages,
            g.chat_received
        );
        let _ = writeln!(
            s,
            "          skills used {} (refused {}), hits {}, misses {}, potions {}, items worn {}, pick-ups refused {}; entered with gains of an earlier run: level > 1 {}, items {}",
            g.skills_used,
            g.skills_refused,
            g.hits,
            g.misses,
            g.potions_used,
            g.items_equipped,
            g.pickups_refused,
            g.entered_above_level_1,
            g.entered_with_items
        );
    }
    let _ = writeln!(
        s,
        "decode errors: {}, records skipped for a missing baseline: {}, garbage datagrams sent: {}",
        r.decode_errors, r.missing_baselines, r.garbage_sent
    );
    let names = [
        "graceful",
        "timeout",
        "server-shutdown",
        "integrity",
        "too-many-retries",
        "kicked/denied",
        "protocol",
        "handshake-timeout",
    ];
    let d: Vec<String> = names
        .iter()
        .zip(r.disconnects)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let _ = writeln!(
        s,
        "disconnects: {}",
        if d.is_empty() {
            "none".to_string()
        } else {
            d.join(", ")
        }
    );
    s
}

fn json_hist(h: &Histogram<u64>, scale: f64) -> Value {
    let mut m = serde_json::Map::new();
    for (x, n) in QUANTILES {
        m.insert(n.to_string(), json!(round3(q(h, x) / scale)));
    }
    m.insert("count".into(), json!(h.len()));
    Value::Object(m)
}

/// Three decimals are what the figures mean; more is noise in a report.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The machine-readable summary.
pub(crate) fn json(info: &RunInfo, r: &Recorder) -> Value {
    let secs = info.seconds.max(1e-9);
    let saved = if r.naive_bytes > 0 {
        1.0 - r.snapshot_bytes as f64 / r.naive_bytes as f64
    } else {
        0.0
    };
    let g = &r.gameplay;
    let mut v = json!({
        "mode": info.mode,
        "players": info.players,
        "seconds": round3(info.seconds),
        "rate_hz": info.rate_hz,
        "server": info.server,
        "latency_ms": json_hist(&r.latency_us, 1000.0),
        "rtt_ms": json_hist(&r.rtt_us, 1000.0),
        "handshake_ms": json_hist(&r.handshake_us, 1000.0),
        "entities_per_snapshot": json_hist(&r.entities, 1.0),
        "login_ms": json_hist(&r.login_us, 1000.0),
        "enter_ms": json_hist(&r.enter_us, 1000.0),
        "logins_failed": r.logins_failed,
        "characters_created": r.characters_created,
        "resumed_known": r.resumed_known,
        "resumed_in_place": r.resumed_in_place,
        "connected": r.connected,
        "denied": r.denied,
        "packets_out_per_s": round3(r.packets_out as f64 / secs),
        "packets_in_per_s": round3(r.packets_in as f64 / secs),
        "bytes_out_per_s": round3(r.bytes_out as f64 / secs),
        "bytes_in_per_s": round3(r.bytes_in as f64 / secs),
        "snapshots": r.snapshots,
        "snapshot_bytes": r.snapshot_bytes,
        "naive_bytes": r.naive_bytes,
        "bandwidth_saved": round3(saved),
        "corrections": r.corrections,
        "decode_errors": r.decode_errors,
        "missing_baselines": r.missing_baselines,
        "send_lag_ms": json_hist(&r.send_lag_us, 1000.0),
        "inputs_skipped": r.inputs_skipped,
        "loadgen_cpu_cores": round3(r.cpu_us as f64 / 1e6 / secs),
        "kept_rate": r.kept_rate(info.rate_hz),
        "disconnects": r.disconnects,
        "zone_transfers": r.zone_transfers,
        "transfer_gap_ms": json_hist(&r.transfer_gap_us, 1000.0),
        "transfer_failures": r.transfer_failures,
        "sent_elsewhere": r.sent_elsewhere,
        "gameplay": {
            "kills": g.kills,
            "deaths": g.deaths,
            "items_looted": g.items_looted,
            "level_ups": g.level_ups,
            "chat_messages": g.chat_messages,
            "chat_received": g.chat_received,
            "skills_used": g.skills_used,
            "skills_refused": g.skills_refused,
            "hits": g.hits,
            "misses": g.misses,
            "potions_used": g.potions_used,
            "items_equipped": g.items_equipped,
            "pickups_refused": g.pickups_refused,
            "entered_above_level_1": g.entered_above_level_1,
            "entered_with_items": g.entered_with_items,
            "max_level": g.max_level,
        },
    });
    if let (Some((p99, overruns)), Some(m)) = (info.server_ticks, v.as_object_mut()) {
        m.insert("server_tick_p99_ms".into(), json!(round3(p99)));
        m.insert("server_tick_overruns".into(), json!(overruns));
    }
    v
}

/// The time series as CSV.
pub(crate) fn csv(series: &[Sample]) -> String {
    let mut s = String::from(
        "seconds,players_connected,packets_out_per_second,packets_in_per_second,latency_p99_ms,server_tick_p99_ms\n",
    );
    for x in series {
        let tick = x
            .server_tick_p99_ms
            .map_or(String::new(), |v| format!("{v:.3}"));
        let _ = writeln!(
            s,
            "{:.1},{},{:.0},{:.0},{:.3},{tick}",
            x.t, x.connected, x.packets_out_per_s, x.packets_in_per_s, x.p99_ms
        );
    }
    s
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (a round axis top).
fn nice_ceil(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let base = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * base)
        .find(|&x| x >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * base)
}

/// An axis label: whole numbers when large, a few decimals when small.
fn label(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One line of a panel: its legend, colour and value.
type Line = (&'static str, &'static str, fn(&Sample) -> Option<f64>);

/// An SVG chart a person reads: one panel per quantity over the run's
/// seconds — players connected; packets per second each way; latency p99
/// of each second; and, when loadgen ran the server in-process, the
/// server's core tick p99 — each with a labelled value axis from 0 to a
/// round maximum, grid lines, a legend, and a shared time axis in seconds.
pub(crate) fn svg(series: &[Sample], title: &str) -> String {
    let with_ticks = series.iter().any(|s| s.server_tick_p99_ms.is_some());
    let mut panels: Vec<(&'static str, Vec<Line>)> = vec![
        (
            "players connected",
            vec![("players", "#1f77b4", |s| Some(s.connected as f64))],
        ),
        (
            "packets per second",
            vec![
                ("client to server", "#2ca02c", |s| Some(s.packets_out_per_s)),
                ("server to client", "#9467bd", |s| Some(s.packets_in_per_s)),
            ],
        ),
        (
            "latency p99 of each second (ms)",
            vec![("input to observed / echo", "#d62728", |s| Some(s.p99_ms))],
        ),
    ];
    if with_ticks {
        panels.push((
            "server tick p99 (ms, worst core, in-process server)",
            vec![("tick p99", "#ff7f0e", |s| s.server_tick_p99_ms)],
        ));
    }
    let (w, left, right, top_pad, panel_h, gap) = (900.0, 80.0, 30.0, 45.0, 150.0, 40.0);
    let h = top_pad + panels.len() as f64 * (panel_h + gap) + 20.0;
    let plot_w = w - left - right;
    let t_max = nice_ceil(series.last().map_or(1.0, |s| s.t).max(1.0));
    let x_of = |t: f64| left + t / t_max * plot_w;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"25\" font-size=\"16\">{}</text>\n",
        xml_escape(title)
    );
    for (i, (name, lines)) in panels.iter().enumerate() {
        let top = top_pad + i as f64 * (panel_h + gap) + 15.0;
        let bottom = top + panel_h - 15.0;
        let max = series
            .iter()
            .flat_map(|s| lines.iter().filter_map(|(_, _, f)| f(s)))
            .fold(0.0f64, f64::max);
        let y_max = nice_ceil(max);
        let y_of = |v: f64| bottom - v / y_max * (bottom - top);
        let _ = writeln!(
            out,
            "<text x=\"{left}\" y=\"{}\" font-weight=\"bold\">{name}</text>",
            top - 6.0
        );
        // Value axis: 0, ¼, ½, ¾ and the round maximum, with grid lines.
        for k in 0..=4 {
            let v = y_max * f64::from(k) / 4.0;
            let y = y_of(v);
            let _ = writeln!(
                out,
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"{}\"/>",
                w - right,
                if k == 0 { "#888" } else { "#e4e4e4" }
            );
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                left - 6.0,
                y + 4.0,
                label(v)
            );
        }
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"#888\"/>"
        );
        // Time axis: ten steps over the round run length.
        for k in 0..=10 {
            let t = t_max * f64::from(k) / 10.0;
            let x = x_of(t);
            let _ = writeln!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{bottom}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#888\"/>",
                bottom + 4.0
            );
            let _ = writeln!(
                out,
                "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                bottom + 16.0,
                label(t)
            );
        }
        for (k, (legend, color, f)) in lines.iter().enumerate() {
            let points: Vec<String> = series
                .iter()
                .filter_map(|s| f(s).map(|v| format!("{:.1},{:.1}", x_of(s.t), y_of(v))))
                .collect();
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
                points.join(" ")
            );
            let lx = w - right - 200.0;
            let ly = top - 6.0 - 14.0 * (lines.len() - 1 - k) as f64;
            let _ = writeln!(
                out,
                "<line x1=\"{lx}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{ly:.1}\">{legend} (max {})</text>",
                ly - 4.0,
                lx + 20.0,
                ly - 4.0,
                lx + 25.0,
                label(series.iter().filter_map(f).fold(0.0f64, f64::max))
            );
        }
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">time since the start (s)</text>",
        left + plot_w / 2.0,
        h - 8.0
    );
    out.push_str("</svg>\n");
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_well_formed() {
        let mut r = Recorder::default();
        r.latency(Duration::from_millis(5));
        r.latency(Duration::from_millis(40));
        r.disconnect(DisconnectReason::Timeout);
        let info = RunInfo {
            mode: "world",
            players: 2,
            seconds: 1.0,
            rate_hz: 60,
            server: "127.0.0.1:1".into(),
            threads: 1,
            server_ticks: Some((1.5, 0)),
        };
        let t = table(&info, &r);
        assert!(t.contains("tick p99 1.50 ms"), "{t}");
        assert!(t.contains("input-to-observed latency (ms)"), "{t}");
        assert!(t.contains("timeout 1"));
        let j = json(&info, &r);
        assert!(j["latency_ms"]["p99"].is_number(), "{j}");
        assert_eq!(j["server_tick_p99_ms"], 1.5, "{j}");
        assert!(j["login_ms"].is_object(), "{j}");
        assert_eq!(j["gameplay"]["kills"], 0, "{j}");
        assert_eq!(j["disconnects"][1], 1, "{j}");
        assert_eq!(j["zone_transfers"], 0, "{j}");
        assert!(j["transfer_gap_ms"]["p99"].is_number(), "{j}");
        assert_eq!(j["transfer_failures"], 0, "{j}");
        // A server address with a quote stays valid JSON.
        let odd = RunInfo {
            server: "a\"b".into(),
            ..info
        };
        let text = json(&odd, &r).to_string();
        let back: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back["server"], "a\"b");
        let series = [
            Sample {
                t: 0.0,
                ..Sample::default()
            },
            Sample {
                t: 1.0,
                connected: 2,
                packets_out_per_s: 100.0,
                packets_in_per_s: 120.0,
                p99_ms: 4.0,
                server_tick_p99_ms: Some(1.5),
            },
        ];
        assert_eq!(csv(&series).lines().count(), 3);
        assert!(csv(&series).contains("1.0,2,100,120,4.000,1.500"));
        let svg = svg(&series, "a < b");
        assert!(
            svg.starts_with("<svg")
                && svg.trim_end().ends_with("</svg>")
                && svg.contains("a &lt; b")
        );
        // Axes carry values; every quantity has its panel.
        for text in [
            ">players connected<",
            "client to server",
            "server to client",
            "latency p99 of each second",
            "server tick p99",
            ">5<",
            ">200<",
            "time since the start (s)",
        ] {
            assert!(svg.contains(text), "{text}");
        }
    }

    #[test]
    fn round_axis_tops() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(0.7), 1.0);
        assert_eq!(nice_ceil(1.2), 2.0);
        assert_eq!(nice_ceil(3.0), 5.0);
        assert_eq!(nice_ceil(120.0), 200.0);
        assert_eq!(nice_ceil(5000.0), 5000.0);
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(2.5), "2.5");
        assert_eq!(label(1500.0), "1500");
        let live = Live::default();
        let mut r = Recorder::default();
        r.latency(Duration::from_millis(3));
        live.add_window(&r.window_us);
        assert!((live.take_window_p99_ms() - 3.0).abs() < 0.01);
        assert_eq!(live.take_window_p99_ms(), 0.0);
    }
}
