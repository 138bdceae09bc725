//! `/api/v1/sensors`: the registry (what the readings say) joined with the
//! metadata operators give (name, unit, location, own thresholds), which is
//! changed through the log as `SensorDescribed` events.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use vigia_domain::{Location, SENSOR_DESCRIBED, SensorDescription, Tag, Threshold};
use vigia_store::SensorRow;

use crate::{ApiState, Problem};

/// A sensor: what its readings say, and what operators said about it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Sensor {
    tag: String,
    /// Unix ms of the oldest and newest reading; null before the first.
    first_seen: Option<i64>,
    last_seen: Option<i64>,
    /// Readings stored.
    count: i64,
    /// The newest reading's value: a number, a text, or null.
    #[schema(value_type = Option<Object>)]
    last_value: serde_json::Value,
    last_status: Option<String>,
    name: Option<String>,
    unit: Option<String>,
    #[schema(value_type = Option<Object>)]
    location: Option<Location>,
    /// The sensor's own alert thresholds, on top of the global rules.
    #[schema(value_type = Vec<Object>)]
    thresholds: Vec<Threshold>,
}

fn sensor(tag: String, row: Option<SensorRow>, meta: Option<SensorDescription>) -> Sensor {
    let last_value = match row.as_ref().map(|s| (s.last_value, s.last_text.clone())) {
        Some((Some(n), _)) => serde_json::json!(n),
        Some((None, Some(t))) => serde_json::json!(t),
        _ => serde_json::Value::Null,
    };
    let meta = meta.unwrap_or_else(|| SensorDescription {
        v: 1,
        tag: Tag::parse(&tag).expect("stored tags are valid"),
        name: None,
        unit: None,
        location: None,
        thresholds: Vec::new(),
        ts_ms: 0,
        by: None,
        deleted: false,
    });
    Sensor {
        first_seen: row.as_ref().map(|s| s.first_seen),
        last_seen: row.as_ref().map(|s| s.last_seen),
        count: row.as_ref().map_or(0, |s| s.count),
        last_status: row.map(|s| s.last_status),
        last_value,
        name: meta.name,
        unit: meta.unit,
        location: meta.location,
        thresholds: meta.thresholds,
        tag,
    }
}

/// Registry rows and descriptions joined by tag, under `prefix`.
async fn joined(state: &ApiState, prefix: Option<&str>) -> Result<Vec<Sensor>, Problem> {
    let under =
        |tag: &str| prefix.is_none_or(|p| format!("{tag}.").starts_with(&format!("{}.", p.trim_end_matches('.'))));
    let mut rows: BTreeMap<String, (Option<SensorRow>, Option<SensorDescription>)> = BTreeMap::new();
    for s in state.store.sensors().await.map_err(crate::store_problem)? {
        let tag = s.tag.clone();
        rows.entry(tag).or_default().0 = Some(s);
    }
    for d in state.store.descriptions().await.map_err(crate::store_problem)? {
        let tag = d.tag.to_string();
        rows.entry(tag).or_default().1 = Some(d);
    }
    Ok(rows.into_iter().filter(|(t, _)| under(t)).map(|(t, (row, meta))| sensor(t, row, meta)).collect())
}

/// One sensor by tag: its registry row and description, read by id.
async fn one(state: &ApiState, tag: &str) -> Result<Option<Sensor>, Problem> {
    let row = state.store.sensor(tag).await.map_err(crate::store_problem)?;
    let meta = state.store.description(tag).await.map_err(crate::store_problem)?;
    Ok((row.is_some() || meta.is_some()).then(|| sensor(tag.to_owned(), row, meta)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SensorParams {
    /// Only sensors under this prefix, e.g. `brasil.sudeste`.
    prefix: Option<String>,
}

/// Every known sensor (with readings or a description), ordered by tag.
#[utoipa::path(get, path = "/sensors", tag = "sensors", params(SensorParams), responses((status = 200, body = Vec<Sensor>)))]
pub(crate) async fn sensors(
    State(state): State<ApiState>,
    Query(p): Query<SensorParams>,
) -> Result<Json<Vec<Sensor>>, Problem> {
    Ok(Json(joined(&state, p.prefix.as_deref()).await?))
}

fn parse_tag(tag: &str) -> Result<Tag, Problem> {
    Tag::parse(tag).map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, format!("{e}: use a tag such as brasil.sudeste.sensor01")).field("tag")
    })
}

/// One sensor.
#[utoipa::path(get, path = "/sensors/{tag}", tag = "sensors",
    params(("tag" = String, Path, description = "The sensor's tag", example = "brasil.sudeste.sensor01")),
    responses((status = 200, body = Sensor), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn sensor_by_tag(
    State(state): State<ApiState>,
    Path(tag): Path<String>,
) -> Result<Json<Sensor>, Problem> {
    let tag = parse_tag(&tag)?;
    one(&state, tag.as_str()).await?.map(Json).ok_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, format!("`{tag}` has no readings and no description yet")).field("tag")
    })
}

/// What an operator says about a sensor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Boiler 3", "unit": "C", "location": {"lat": -23.55, "lon": -46.63},
    "thresholds": [{"id": "too-hot", "op": "gt", "threshold": 95.0, "hysteresis": 2.0}]}))]
pub(crate) struct SensorIn {
    name: Option<String>,
    unit: Option<String>,
    #[schema(value_type = Option<Object>)]
    location: Option<Location>,
    /// Each: `id`, `op` (gt, gte, lt, lte, eq, neq), `threshold`, `hysteresis`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    thresholds: Vec<Threshold>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DescribeParams {
    /// Answer once the description is projected.
    #[serde(default)]
    wait: bool,
    /// Who describes (kept in the log).
    by: Option<String>,
}

/// Describe a sensor: replaces its name, unit, location and own thresholds.
#[utoipa::path(put, path = "/sensors/{tag}", tag = "sensors", params(("tag" = String, Path), DescribeParams), request_body = SensorIn,
    responses((status = 202, description = "In the log"), (status = 200, description = "Projected (`?wait=true`)", body = Sensor),
        (status = 400, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn put_sensor(
    State(state): State<ApiState>,
    Path(tag): Path<String>,
    Query(p): Query<DescribeParams>,
    body: Result<Json<SensorIn>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Option<Sensor>>), Problem> {
    let tag = parse_tag(&tag)?;
    let Json(body) = body.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("{}: send name, unit, location {{lat, lon}} and thresholds", e.body_text()),
        )
    })?;
    let d = SensorDescription {
        v: 1,
        tag,
        name: body.name,
        unit: body.unit,
        location: body.location,
        thresholds: body.thresholds,
        ts_ms: crate::stats::now_ms(),
        by: p.by,
        deleted: false,
    };
    describe(&state, d, p.wait).await
}

/// Forget a sensor's description (its readings stay).
#[utoipa::path(delete, path = "/sensors/{tag}", tag = "sensors", params(("tag" = String, Path), DescribeParams),
    responses((status = 202, description = "In the log"), (status = 200, description = "Projected (`?wait=true`)")))]
pub(crate) async fn delete_sensor(
    State(state): State<ApiState>,
    Path(tag): Path<String>,
    Query(p): Query<DescribeParams>,
) -> Result<(StatusCode, Json<Option<Sensor>>), Problem> {
    let tag = parse_tag(&tag)?;
    let d = SensorDescription {
        v: 1,
        tag,
        name: None,
        unit: None,
        location: None,
        thresholds: Vec::new(),
        ts_ms: crate::stats::now_ms(),
        by: p.by,
        deleted: true,
    };
    describe(&state, d, p.wait).await
}

async fn describe(
    state: &ApiState,
    d: SensorDescription,
    wait: bool,
) -> Result<(StatusCode, Json<Option<Sensor>>), Problem> {
    d.validate().map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut headers = vigia_bus::HeaderMap::new();
    headers.insert(vigia_domain::EVENT_HEADER, SENSOR_DESCRIBED);
    headers.insert(vigia_domain::VERSION_HEADER, "1");
    let payload = serde_json::to_vec(&d).expect("descriptions serialise");
    state
        .bus
        .publisher()
        .publish(d.subject(), Some(headers), payload.into(), None)
        .await
        .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; retry the request")))?;
    if !wait {
        return Ok((StatusCode::ACCEPTED, Json(None)));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let current = state.store.description(d.tag.as_str()).await.map_err(crate::store_problem)?;
        let projected = if d.deleted { current.is_none() } else { current.is_some_and(|x| x.ts_ms >= d.ts_ms) };
        if projected {
            return Ok((StatusCode::OK, Json(one(state, d.tag.as_str()).await?)));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "in the log, not yet projected within 10 s; it will be",
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sensors with a location as a GeoJSON FeatureCollection, with their latest value.
#[utoipa::path(get, path = "/sensors.geojson", tag = "sensors", params(SensorParams),
    responses((status = 200, description = "RFC 7946 FeatureCollection", content_type = "application/geo+json", body = Object)))]
pub(crate) async fn geojson(
    State(state): State<ApiState>,
    Query(p): Query<SensorParams>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], Json<serde_json::Value>), Problem> {
    let features: Vec<serde_json::Value> = joined(&state, p.prefix.as_deref())
        .await?
        .into_iter()
        .filter_map(|s| {
            let l = s.location?;
            Some(serde_json::json!({
                "type": "Feature",
                "id": s.tag,
                "geometry": {"type": "Point", "coordinates": [l.lon, l.lat]},
                "properties": {"tag": s.tag, "name": s.name, "unit": s.unit, "last_value": s.last_value,
                    "last_status": s.last_status, "last_seen": s.last_seen, "count": s.count}
            }))
        })
        .collect();
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/geo+json")],
        Json(serde_json::json!({"type": "FeatureCollection", "features": features})),
    ))
}
