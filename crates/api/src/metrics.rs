//! `GET /metrics`: Prometheus text exposition, read at scrape time from the
//! log (stream and consumer state) and the projections (ledger, counters), so
//! every number is the system's own and no worker has to report anything.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::ApiState;

/// What the persister of this process reports (in `vigia up` and `vigia
/// persist` it is the same process as the API only in `up`): a process-wide
/// registry, like Prometheus clients keep.
#[derive(Debug)]
pub struct PersisterStats {
    batches: AtomicU64,
    events: AtomicU64,
    batch_nanos: AtomicU64,
    store_errors: AtomicU64,
}

/// The persister's numbers in this process.
pub static PERSISTER: PersisterStats = PersisterStats {
    batches: AtomicU64::new(0),
    events: AtomicU64::new(0),
    batch_nanos: AtomicU64::new(0),
    store_errors: AtomicU64::new(0),
};

impl PersisterStats {
    /// A batch was stored: its events and how long the store took.
    pub fn batch(&self, events: u64, took: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.batch_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// What has been stored so far: `/metrics` reads it, and `vigia bench`
    /// reports the flushes of its pipeline phase from two of these.
    pub fn totals(&self) -> PersisterTotals {
        PersisterTotals {
            flushes: self.batches.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            store_time: Duration::from_nanos(self.batch_nanos.load(Ordering::Relaxed)),
        }
    }

    /// A store write failed (the batch will be retried).
    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The persister's running totals in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PersisterTotals {
    /// Flushes (transactions) stored.
    pub flushes: u64,
    /// Events they held.
    pub events: u64,
    /// Time the store took for them.
    pub store_time: Duration,
}

impl PersisterTotals {
    /// What was stored after `earlier`.
    pub fn since(self, earlier: PersisterTotals) -> PersisterTotals {
        PersisterTotals {
            flushes: self.flushes.saturating_sub(earlier.flushes),
            events: self.events.saturating_sub(earlier.events),
            store_time: self.store_time.saturating_sub(earlier.store_time),
        }
    }
}

const CONSUMERS: [(&str, &str); 3] =
    [("READINGS", "persister"), ("READINGS", "alerter"), ("ALERTS", "alert-projector")];

/// Metrics for Prometheus.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let mut out = Exposition::default();
    out.gauge("vigia_up_seconds", "Seconds since the API started.", &[], state.started.elapsed().as_secs_f64());
    for name in [vigia_bus::READINGS, vigia_bus::ALERTS, vigia_bus::DEADLETTER] {
        if let Ok(mut stream) = state.bus.jetstream().get_stream(name).await
            && let Ok(info) = stream.info().await
        {
            let labels = [("stream", name)];
            out.gauge("vigia_stream_messages", "Messages in the stream.", &labels, info.state.messages as f64);
            out.gauge("vigia_stream_bytes", "Bytes in the stream.", &labels, info.state.bytes as f64);
            out.gauge("vigia_stream_last_sequence", "Last sequence.", &labels, info.state.last_sequence as f64);
        }
    }
    for (stream, name) in CONSUMERS {
        if let Ok(mut c) = state.bus.consumer(stream, name).await
            && let Ok(info) = c.info().await
        {
            let labels = [("stream", stream), ("consumer", name)];
            out.gauge("vigia_consumer_pending", "Messages not yet delivered.", &labels, info.num_pending as f64);
            out.gauge("vigia_consumer_ack_pending", "Delivered, not yet acked.", &labels, info.num_ack_pending as f64);
            out.gauge("vigia_consumer_redelivered", "Messages redelivered.", &labels, info.num_redelivered as f64);
        }
    }
    let stored = PERSISTER.totals();
    out.counter("vigia_persister_batches_total", "Batches stored by this process.", stored.flushes);
    out.counter("vigia_persister_events_total", "Events stored by this process.", stored.events);
    out.counter(
        "vigia_persister_store_errors_total",
        "Failed store writes (retried).",
        PERSISTER.store_errors.load(Ordering::Relaxed),
    );
    let seconds = stored.store_time.as_secs_f64();
    out.summary("vigia_persister_batch_seconds", "Store time per batch.", seconds, stored.flushes);
    // The ingest rate of the last complete minute, every root, errors included.
    let minute = crate::stats::now_ms().div_euclid(60_000) * 60_000;
    if let Ok(rows) = state.store.traffic("m", minute - 60_000, minute).await {
        let total: i64 = rows.iter().map(|r| r.ok + r.errors).sum();
        out.gauge(
            "vigia_ingest_events_per_minute",
            "Events timestamped in the last complete minute.",
            &[],
            total as f64,
        );
    }
    let store_ok = state.store.ping().await.is_ok();
    out.gauge("vigia_store_up", "1 when the store answers.", &[], if store_ok { 1.0 } else { 0.0 });
    if let Ok(ledger) = state.store.ledger(vigia_store::READINGS_LEDGER).await {
        out.gauge("vigia_messages_stored", "READINGS messages applied to the store.", &[], ledger.count() as f64);
    }
    if let Ok(counters) = state.store.counters_under(None, 1).await {
        for c in counters {
            let labels = [("root", c.prefix.as_str())];
            out.gauge("vigia_events_ok", "Stored events with status ok.", &labels, c.ok as f64);
            out.gauge("vigia_events_error", "Stored events with status error.", &labels, c.errors as f64);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out.render())
}

/// Metric families in the order first seen, each rendered as one group
/// (HELP, TYPE, then all its samples), as the text format requires.
#[derive(Default)]
struct Exposition {
    families: Vec<Family>,
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    /// Rendered sample lines.
    samples: Vec<String>,
}

impl Exposition {
    fn family(&mut self, name: &'static str, help: &'static str, kind: &'static str) -> &mut Family {
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family { name, help, kind, samples: Vec::new() });
                self.families.len() - 1
            }
        };
        &mut self.families[i]
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> =
            labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
        let line = if labels.is_empty() {
            format!("{name} {value}")
        } else {
            format!("{name}{{{}}} {value}", labels.join(","))
        };
        self.family(name, help, "gauge").samples.push(line);
    }

    fn counter(&mut self, name: &'static str, help: &'static str, value: u64) {
        self.family(name, help, "counter").samples.push(format!("{name} {value}"));
    }

    fn summary(&mut self, name: &'static str, help: &'static str, sum: f64, count: u64) {
        let samples = &mut self.family(name, help, "summary").samples;
        samples.push(format!("{name}_sum {sum}"));
        samples.push(format!("{name}_count {count}"));
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", f.name, f.help, f.name, f.kind);
            for sample in &f.samples {
                let _ = writeln!(out, "{sample}");
            }
        }
        out
    }
}
