//! [`StoreMetrics`]: what the store threads count, as atomics shared with
//! the engine's metrics endpoint, rendered in Prometheus text format.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;

/// Counters and gauges of one store. Counters only ever go up; gauges are
/// overwritten by the store thread.
#[derive(Debug)]
pub struct StoreMetrics {
    /// Gauge: commands waiting in the channel from the cores.
    pub queue_depth: AtomicU64,
    /// Gauge: characters whose latest state is not yet written.
    pub pending_saves: AtomicU64,
    /// Character states written (one per character per batch).
    pub saves_total: AtomicU64,
    /// Batches (transactions) written.
    pub save_batches_total: AtomicU64,
    /// Batch attempts that failed (each is kept and retried).
    pub save_failures_total: AtomicU64,
    /// Retries of failed batches.
    pub retries_total: AtomicU64,
    /// Saves refused because `max_pending_saves` distinct characters were
    /// already waiting (the only way a save is lost while running).
    pub saves_refused_total: AtomicU64,
    /// Requests (account, character, load) served, ok or not.
    pub requests_total: AtomicU64,
    /// Requests that failed for a database reason (not a refusal such as
    /// a taken name).
    pub request_failures_total: AtomicU64,
    /// Replies dropped because a core's reply channel was full or closed.
    pub replies_dropped_total: AtomicU64,
    /// Gauge: microseconds the last successful batch took.
    pub last_batch_latency_us: AtomicU64,
    /// Gauge: states in the last successful batch.
    pub last_batch_size: AtomicU64,
    /// Whether pending saves are over the high-water mark; the game
    /// refuses new logins while it is set.
    pub saturated: AtomicBool,
    /// Batch latency in microseconds; only the store thread records.
    latency_us: Mutex<Option<Histogram<u64>>>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreMetrics {
    /// All zero.
    pub fn new() -> Self {
        Self {
            queue_depth: AtomicU64::new(0),
            pending_saves: AtomicU64::new(0),
            saves_total: AtomicU64::new(0),
            save_batches_total: AtomicU64::new(0),
            save_failures_total: AtomicU64::new(0),
            retries_total: AtomicU64::new(0),
            saves_refused_total: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            request_failures_total: AtomicU64::new(0),
            replies_dropped_total: AtomicU64::new(0),
            last_batch_latency_us: AtomicU64::new(0),
            last_batch_size: AtomicU64::new(0),
            saturated: AtomicBool::new(false),
            // 1 us .. 10 min at 3 significant digits; the bounds are valid,
            // so `ok()` never discards anything in practice.
            latency_us: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).ok()),
        }
    }

    /// Records a successful batch of `size` states that took `micros`.
    pub(crate) fn record_batch(&self, size: usize, micros: u64) {
        self.saves_total.fetch_add(size as u64, Relaxed);
        self.save_batches_total.fetch_add(1, Relaxed);
        self.last_batch_latency_us.store(micros, Relaxed);
        self.last_batch_size.store(size as u64, Relaxed);
        if let Ok(mut guard) = self.latency_us.lock() {
            if let Some(h) = guard.as_mut() {
                h.saturating_record(micros.max(1));
            }
        }
    }

    /// Batch latency at `quantile` (0..=1) in microseconds, 0 before any.
    pub fn batch_latency_us(&self, quantile: f64) -> u64 {
        self.latency_us
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|h| h.value_at_quantile(quantile)))
            .unwrap_or(0)
    }

    /// Appends `tos_store_*` lines in Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        let counters: [(&str, &str, &AtomicU64); 9] = [
            (
                "saves_total",
                "Character states written.",
                &self.saves_total,
            ),
            (
                "save_batches_total",
                "Save transactions committed.",
                &self.save_batches_total,
            ),
            (
                "save_failures_total",
                "Save transactions that failed (kept and retried).",
                &self.save_failures_total,
            ),
            (
                "retries_total",
                "Retries of failed save batches.",
                &self.retries_total,
            ),
            (
                "saves_refused_total",
                "Saves refused because max_pending_saves was reached.",
                &self.saves_refused_total,
            ),
            (
                "requests_total",
                "Account and character requests served.",
                &self.requests_total,
            ),
            (
                "request_failures_total",
                "Requests that failed for a database reason.",
                &self.request_failures_total,
            ),
            (
                "replies_dropped_total",
                "Replies dropped because a reply channel was full.",
                &self.replies_dropped_total,
            ),
            (
                "last_batch_size",
                "States in the last save batch.",
                &self.last_batch_size,
            ),
        ];
        for (name, help, value) in counters {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP tos_store_{name} {help}");
            let _ = writeln!(out, "# TYPE tos_store_{name} {kind}");
            let _ = writeln!(out, "tos_store_{name} {}", value.load(Relaxed));
        }
        let gauges: [(&str, &str, u64); 4] = [
            (
                "queue_depth",
                "Commands waiting in the store channel.",
                self.queue_depth.load(Relaxed),
            ),
            (
                "pending_saves",
                "Characters whose latest state is not yet written.",
                self.pending_saves.load(Relaxed),
            ),
            (
                "saturated",
                "1 while pending saves are over the high-water mark (logins refused).",
                u64::from(self.saturated.load(Relaxed)),
            ),
            (
                "last_batch_latency_microseconds",
                "Microseconds the last save batch took.",
                self.last_batch_latency_us.load(Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP tos_store_{name} {help}");
            let _ = writeln!(out, "# TYPE tos_store_{name} gauge");
            let _ = writeln!(out, "tos_store_{name} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP tos_store_batch_latency_seconds Save batch latency."
        );
        let _ = writeln!(out, "# TYPE tos_store_batch_latency_seconds summary");
        for q in [0.5, 0.99, 1.0] {
            let secs = self.batch_latency_us(q) as f64 / 1e6;
            let _ = writeln!(
                out,
                "tos_store_batch_latency_seconds{{quantile=\"{q}\"}} {secs}"
            );
        }
    }
}
