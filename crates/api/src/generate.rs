//! `POST /api/v1/simulate?count=N` (and `/generate/{n}`, which an existing
//! client calls): N random readings from the simulator's fleet, published
//! through the log like a device's, acknowledged before the answer.
//!
//! Both answer only once every reading is acknowledged, one message per
//! reading (about 175 µs each on a 2-core machine), so N is capped at
//! 100,000 (about 17 s): a larger request would outlive any HTTP client's
//! timeout. The simulator CLI (`vigia sim --count N --rate 0`) has no cap.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use crate::{ApiState, Problem};

/// The most readings one request publishes.
const MAX: u64 = 100_000;
/// The most sensors the readings are spread over.
const MAX_SENSORS: usize = 100_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SimulateParams {
    /// Readings to publish (default 100).
    #[param(minimum = 1, maximum = 100_000)]
    count: Option<u64>,
    /// Sensors to spread them over (default 200).
    #[param(minimum = 1, maximum = 100_000)]
    sensors: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Generated {
    readings: u64,
    messages: u64,
    millis: u64,
}

/// Publish random readings (acknowledged by the stream before the answer).
///
/// Synchronous: the answer comes once every reading is acknowledged, about
/// 17 s for the maximum of 100,000. For more, run the simulator CLI
/// (`vigia sim --count N --rate 0`) or send several requests.
#[utoipa::path(post, path = "/simulate", tag = "events", params(SimulateParams),
    responses((status = 200, body = Generated),
        (status = 400, description = "A count or sensors out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log stopped confirming publishes", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn simulate(
    State(state): State<ApiState>,
    Query(p): Query<SimulateParams>,
) -> Result<Json<Generated>, Problem> {
    generate(&state, p.count.unwrap_or(100), "count", p.sensors.unwrap_or(200)).await
}

/// The same as `POST /simulate?count={n}`, under the path an existing client uses.
///
/// Synchronous, and capped at 100,000 readings like `/simulate`.
#[utoipa::path(post, path = "/generate/{n}", tag = "events",
    params(("n" = u64, Path, description = "Readings to publish", minimum = 1, maximum = 100_000)),
    responses((status = 200, body = Generated),
        (status = 400, description = "`n` out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log stopped confirming publishes", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn generate_n(State(state): State<ApiState>, Path(n): Path<u64>) -> Result<Json<Generated>, Problem> {
    generate(&state, n, "n", 200).await
}

async fn generate(state: &ApiState, count: u64, field: &str, sensors: usize) -> Result<Json<Generated>, Problem> {
    if count == 0 {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("{field} is 1 to {MAX}")).field(field));
    }
    if count > MAX {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{field} is at most {MAX}: the answer waits until every reading is acknowledged; for more, run \
                 the simulator (`vigia sim --count {count} --rate 0`) or send several requests"
            ),
        )
        .field(field));
    }
    if !(1..=MAX_SENSORS).contains(&sensors) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("sensors is 1 to {MAX_SENSORS}")).field("sensors"));
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
