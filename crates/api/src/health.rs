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
    uptime_secs: u64,
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

const CONSUMERS: [(&str, &str); 3] =
    [("READINGS", "persister"), ("READINGS", "alerter"), ("ALERTS", "alert-projector")];

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
    let ok = nats_ok && store.ok;
    let health = Health {
        status: if ok { "ok" } else { "degraded" },
        nats: Component { ok: nats_ok, error: (!nats_ok).then(|| "not connected".into()) },
        store,
        consumers,
        uptime_secs: state.started.elapsed().as_secs(),
    };
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(health))
}
