//! `/api/v1/sensors` and `/api/v1/alerts`: the sensor registry and the alert
//! projection, read as stored.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use vigia_domain::Tag;

use crate::{ApiState, Problem};

/// A sensor as the registry knows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Sensor {
    tag: String,
    /// Unix ms of the oldest and newest reading.
    first_seen: i64,
    last_seen: i64,
    /// Readings stored.
    count: i64,
    /// The newest reading's value: a number, a text, or null when empty.
    #[schema(value_type = Option<Object>)]
    last_value: serde_json::Value,
    last_status: String,
}

impl From<vigia_store::SensorRow> for Sensor {
    fn from(s: vigia_store::SensorRow) -> Self {
        let last_value = match (s.last_value, s.last_text) {
            (Some(n), _) => serde_json::json!(n),
            (None, Some(t)) => serde_json::json!(t),
            (None, None) => serde_json::Value::Null,
        };
        Sensor {
            tag: s.tag,
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            count: s.count,
            last_value,
            last_status: s.last_status,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SensorParams {
    /// Only sensors under this prefix, e.g. `brasil.sudeste`.
    prefix: Option<String>,
}

/// Every known sensor, ordered by tag.
#[utoipa::path(get, path = "/sensors", tag = "sensors", params(SensorParams),
    responses((status = 200, body = Vec<Sensor>)))]
pub(crate) async fn sensors(
    State(state): State<ApiState>,
    Query(p): Query<SensorParams>,
) -> Result<Json<Vec<Sensor>>, Problem> {
    let rows = state.store.sensors().await.map_err(crate::store_problem)?;
    let prefix = p.prefix.map(|p| format!("{}.", p.trim_end_matches('.')));
    Ok(Json(
        rows.into_iter()
            .filter(|s| prefix.as_deref().is_none_or(|p| format!("{}.", s.tag).starts_with(p)))
            .map(Sensor::from)
            .collect(),
    ))
}

/// One sensor.
#[utoipa::path(get, path = "/sensors/{tag}", tag = "sensors",
    params(("tag" = String, Path, description = "The sensor's tag", example = "brasil.sudeste.sensor01")),
    responses((status = 200, body = Sensor), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn sensor(State(state): State<ApiState>, Path(tag): Path<String>) -> Result<Json<Sensor>, Problem> {
    let tag = Tag::parse(&tag).map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, format!("{e}: use a tag such as brasil.sudeste.sensor01")).field("tag")
    })?;
    match state.store.sensor(tag.as_str()).await.map_err(crate::store_problem)? {
        Some(s) => Ok(Json(s.into())),
        None => Err(Problem::new(StatusCode::NOT_FOUND, format!("no reading of `{tag}` was stored yet")).field("tag")),
    }
}

/// An alert with its lifecycle.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Alert {
    /// `<sequence>-<index>` of the reading that opened it, with the tag and rule.
    id: String,
    tag: String,
    rule: String,
    op: String,
    threshold: f64,
    /// `open`, `acknowledged` or `cleared`.
    status: String,
    opened_at: i64,
    opened_value: f64,
    cleared_at: Option<i64>,
    cleared_value: Option<f64>,
    acknowledged_at: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertParams {
    /// `open`, `acknowledged` or `cleared`; every alert when absent.
    status: Option<String>,
    /// Only alerts of tags under this prefix.
    prefix: Option<String>,
    /// At most this many, newest first (default 100, at most 10,000).
    count: Option<usize>,
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/alerts", tag = "alerts", params(AlertParams),
    responses((status = 200, body = Vec<Alert>), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn alerts(
    State(state): State<ApiState>,
    Query(p): Query<AlertParams>,
) -> Result<Json<Vec<Alert>>, Problem> {
    if let Some(s) = p.status.as_deref()
        && !["open", "acknowledged", "cleared"].contains(&s)
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("`{s}` is not a status: use open, acknowledged or cleared"),
        )
        .field("status"));
    }
    let count = p.count.unwrap_or(100);
    if count > 10_000 {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "count is at most 10000").field("count"));
    }
    let prefix = p.prefix.map(|p| format!("{}.", p.trim_end_matches('.')));
    let rows = state.store.alerts(p.status.as_deref()).await.map_err(crate::store_problem)?;
    Ok(Json(
        rows.into_iter()
            .filter(|a| prefix.as_deref().is_none_or(|p| format!("{}.", a.tag).starts_with(p)))
            .take(count)
            .map(|a| Alert {
                id: format!("{}-{}", a.opened_seq, a.opened_idx),
                tag: a.tag,
                rule: a.rule,
                op: a.op,
                threshold: a.threshold,
                status: a.status,
                opened_at: a.opened_at,
                opened_value: a.opened_value,
                cleared_at: a.cleared_at,
                cleared_value: a.cleared_value,
                acknowledged_at: a.acknowledged_at,
            })
            .collect(),
    ))
}
