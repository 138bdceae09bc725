//! `/health`: is NATS connected, does the store answer, how far behind are the consumers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` when NATS and the store answer, else `degraded`.
    status: &'static str,
    nats: Component,
    store: Component,
    consumers: Vec<ConsumerLag>,
    backlog: Backlog,
    uptime_secs: u64,
}

/// How far the store is behind the log, and how full the log is.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Backlog {
    /// READINGS messages the persister has still to finish.
    lag_messages: u64,
    /// Seconds the oldest of them has waited.
    lag_seconds: f64,
    /// `open`, or `refusing` while HTTP ingest answers 503 (see `[backpressure]`).
    ingest: &'static str,
    /// READINGS against its limits.
    stream: StreamUse,
    /// What is close to a limit, in words; empty when nothing is.
    warnings: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamUse {
    messages: u64,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_age_secs: Option<u64>,
    /// The fullest limit (`messages`, `bytes` or `age`) and how full it is, 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    fullest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fullest_share: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Component {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConsumerLag {
    stream: String,
    consumer: String,
    /// Messages not yet delivered.
    pending: u64,
    /// Delivered, not yet acknowledged.
    ack_pending: usize,
}

const CONSUMERS: [(&str, &str); 4] =
    [("READINGS", "persister"), ("READINGS", "alerter"), ("ALERTS", "alert-projector"), ("JOBS", "loader")];

/// Health of the pipeline.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Everything answers", body = Health),
        (status = 503, description = "NATS or the store does not answer", body = Health)
    )
)]
pub(crate) async fn health(State(state): State<ApiState>) -> (StatusCode, Json<Health>) {
    let nats_ok = state.bus.client().connection_state() == async_nats::connection::State::Connected;
    let store = match state.store.ping().await {
        Ok(()) => Component { ok: true, error: None },
        Err(e) => Component { ok: false, error: Some(e.to_string()) },
    };
    let mut consumers = Vec::new();
    for (stream, name) in CONSUMERS {
        if let Ok(mut c) = state.bus.consumer(stream, name).await
            && let Ok(info) = c.info().await
        {
            consumers.push(ConsumerLag {
                stream: stream.into(),
                consumer: name.into(),
                pending: info.num_pending,
                ack_pending: info.num_ack_pending,
            });
        }
    }
    let backlog = backlog(&state).await;
    let ok = nats_ok && store.ok;
    let health = Health {
        status: if ok { "ok" } else { "degraded" },
        nats: Component { ok: nats_ok, error: (!nats_ok).then(|| "not connected".into()) },
        store,
        consumers,
        backlog,
        uptime_secs: state.started.elapsed().as_secs(),
    };
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(health))
}

async fn backlog(state: &ApiState) -> Backlog {
    let r = state.pressure.reading(&state.bus).await;
    let limits = state.pressure.limits();
    let usage = r.usage.unwrap_or_default();
    let mut warnings = Vec::new();
    let refusing = r.lag.messages() > limits.max_lag_messages || r.lag_seconds > limits.max_lag_seconds;
    if refusing {
        warnings.push(format!(
            "the store is {} messages ({:.0} s) behind: HTTP ingest answers 503 until it catches up",
            r.lag.messages(),
            r.lag_seconds
        ));
    }
    if let Some((limit, share)) = r.fullest.filter(|(_, s)| *s >= limits.warn_stream_share) {
        warnings.push(format!(
            "READINGS is at {:.0}% of its {limit} limit: at 100% JetStream discards the oldest messages",
            share * 100.0
        ));
    }
    Backlog {
        lag_messages: r.lag.messages(),
        lag_seconds: r.lag_seconds,
        ingest: if refusing { "refusing" } else { "open" },
        stream: StreamUse {
            messages: usage.messages,
            bytes: usage.bytes,
            max_messages: usage.max_messages,
            max_bytes: usage.max_bytes,
            max_age_secs: usage.max_age_ms.map(|ms| (ms / 1000) as u64),
            fullest: r.fullest.map(|(l, _)| l.to_owned()),
            fullest_share: r.fullest.map(|(_, s)| s),
        },
        warnings,
    }
}
