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

    /// A store write failed (the batch will be retried).
    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }
}

const CONSUMERS: [(&str, &str); 3] =
    [("READINGS", "persister"), ("READINGS", "alerter"), ("ALERTS", "alert-projector")];

/// Metrics for Prometheus.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let mut out = String::new();
    gauge(&mut out, "vigia_up_seconds", "Seconds since the API started.", &[], state.started.elapsed().as_secs_f64());
    for name in [vigia_bus::READINGS, vigia_bus::ALERTS, vigia_bus::DEADLETTER] {
        if let Ok(mut stream) = state.bus.jetstream().get_stream(name).await
            && let Ok(info) = stream.info().await
        {
            let labels = [("stream", name)];
            gauge(&mut out, "vigia_stream_messages", "Messages in the stream.", &labels, info.state.messages as f64);
            gauge(&mut out, "vigia_stream_bytes", "Bytes in the stream.", &labels, info.state.bytes as f64);
            gauge(&mut out, "vigia_stream_last_sequence", "Last sequence.", &labels, info.state.last_sequence as f64);
        }
    }
    for (stream, name) in CONSUMERS {
        if let Ok(mut c) = state.bus.consumer(stream, name).await
            && let Ok(info) = c.info().await
        {
            let labels = [("stream", stream), ("consumer", name)];
            gauge(&mut out, "vigia_consumer_pending", "Messages not yet delivered.", &labels, info.num_pending as f64);
            gauge(
                &mut out,
                "vigia_consumer_ack_pending",
                "Delivered, not yet acked.",
                &labels,
                info.num_ack_pending as f64,
            );
            gauge(
                &mut out,
                "vigia_consumer_redelivered",
                "Messages redelivered.",
                &labels,
                info.num_redelivered as f64,
            );
        }
    }
    let p = &PERSISTER;
    counter(
        &mut out,
        "vigia_persister_batches_total",
        "Batches stored by this process.",
        p.batches.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "vigia_persister_events_total",
        "Events stored by this process.",
        p.events.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "vigia_persister_store_errors_total",
        "Failed store writes (retried).",
        p.store_errors.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP vigia_persister_batch_seconds Store time per batch.\n# TYPE vigia_persister_batch_seconds summary\n\
         vigia_persister_batch_seconds_sum {}\nvigia_persister_batch_seconds_count {}",
        p.batch_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        p.batches.load(Ordering::Relaxed)
    );
    // The ingest rate of the last complete minute, every root, errors included.
    let minute = crate::stats::now_ms().div_euclid(60_000) * 60_000;
    if let Ok(rows) = state.store.traffic("m", minute - 60_000, minute).await {
        let total: i64 = rows.iter().map(|r| r.ok + r.errors).sum();
        gauge(
            &mut out,
            "vigia_ingest_events_per_minute",
            "Events timestamped in the last complete minute.",
            &[],
            total as f64,
        );
    }
    let store_ok = state.store.ping().await.is_ok();
    gauge(&mut out, "vigia_store_up", "1 when the store answers.", &[], if store_ok { 1.0 } else { 0.0 });
    if let Ok(ledger) = state.store.ledger(vigia_store::READINGS_LEDGER).await {
        gauge(&mut out, "vigia_messages_stored", "READINGS messages applied to the store.", &[], ledger.count() as f64);
    }
    if let Ok(counters) = state.store.counters_under(None, 1).await {
        for c in counters {
            let labels = [("root", c.prefix.as_str())];
            gauge(&mut out, "vigia_events_ok", "Stored events with status ok.", &labels, c.ok as f64);
            gauge(&mut out, "vigia_events_error", "Stored events with status error.", &labels, c.errors as f64);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

fn gauge(out: &mut String, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
    if !out.contains(&format!("# TYPE {name} ")) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    }
    let labels: Vec<String> =
        labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}
