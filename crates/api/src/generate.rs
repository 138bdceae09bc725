//! `POST /api/v1/simulate?count=N` (and `/generate/{n}`, which an existing
//! client calls): N random readings from the simulator's fleet, published
//! through the log like a device's, acknowledged before the answer.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use crate::{ApiState, Problem};

const MAX: u64 = 1_000_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SimulateParams {
    /// Readings to publish, 1 to 1,000,000 (default 100).
    count: Option<u64>,
    /// Sensors to spread them over (default 200).
    sensors: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Generated {
    readings: u64,
    messages: u64,
    millis: u64,
}

/// Publish random readings (acknowledged by the stream before the answer).
#[utoipa::path(post, path = "/simulate", tag = "events", params(SimulateParams),
    responses((status = 200, body = Generated), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn simulate(
    State(state): State<ApiState>,
    Query(p): Query<SimulateParams>,
) -> Result<Json<Generated>, Problem> {
    generate(&state, p.count.unwrap_or(100), p.sensors.unwrap_or(200)).await
}

/// The same as `POST /simulate?count={n}`, under the path an existing client uses.
#[utoipa::path(post, path = "/generate/{n}", tag = "events",
    params(("n" = u64, Path, description = "Readings to publish")),
    responses((status = 200, body = Generated), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn generate_n(State(state): State<ApiState>, Path(n): Path<u64>) -> Result<Json<Generated>, Problem> {
    generate(&state, n, 200).await
}

async fn generate(state: &ApiState, count: u64, sensors: usize) -> Result<Json<Generated>, Problem> {
    if !(1..=MAX).contains(&count) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("count is 1 to {MAX}")).field("count"));
    }
    if !(1..=100_000).contains(&sensors) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "sensors is 1 to 100000").field("sensors"));
    }
    let config = vigia_sim::SimConfig {
        sensors,
        rate: 0.0,
        roots: state.roots.clone(),
        count: Some(count),
        batch: 0,
        ..vigia_sim::SimConfig::default()
    };
    let report = vigia_sim::run(state.bus.publisher(), config, CancellationToken::new())
        .await
        .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; retry the request")))?;
    Ok(Json(Generated {
        readings: report.readings,
        messages: report.messages,
        millis: report.elapsed.as_millis() as u64,
    }))
}
