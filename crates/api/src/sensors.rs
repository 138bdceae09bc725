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
use vigia_domain::{DescriptionError, Location, SENSOR_DESCRIBED, SensorDescription, Tag, Threshold};
use vigia_store::SensorRow;

use crate::wire::{LocationDto, TagPath, ThresholdDto};
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
    /// The newest reading's value.
    #[schema(value_type = crate::wire::ReadingValue)]
    last_value: serde_json::Value,
    /// The newest reading's status (`ok` or `error`); null before the first.
    #[schema(schema_with = last_status_schema)]
    last_status: Option<String>,
    name: Option<String>,
    unit: Option<String>,
    location: Option<LocationDto>,
    /// The sensor's own alert thresholds, on top of the global rules.
    thresholds: Vec<ThresholdDto>,
}

fn last_status_schema() -> utoipa::openapi::schema::ObjectBuilder {
    use utoipa::openapi::schema::{SchemaType, Type};
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some([serde_json::json!("ok"), serde_json::json!("error"), serde_json::Value::Null]))
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
        location: meta.location.map(LocationDto::from),
        thresholds: meta.thresholds.into_iter().map(ThresholdDto::from).collect(),
        tag,
    }
}

/// Registry rows and descriptions joined by tag, under `prefix`.
async fn joined(state: &ApiState, prefix: Option<&str>) -> Result<Vec<Sensor>, Problem> {
    let under = |tag: &str| prefix.is_none_or(|p| vigia_domain::is_under(tag, p.trim_end_matches('.')));
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
    #[param(value_type = Option<crate::wire::PrefixParam>, inline)]
    prefix: Option<String>,
}

/// Every known sensor (with readings or a description), ordered by tag.
#[utoipa::path(get, path = "/sensors", tag = "sensors", params(SensorParams),
    responses((status = 200, body = Vec<Sensor>),
        (status = 400, description = "Not a tag prefix", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn sensors(
    State(state): State<ApiState>,
    Query(p): Query<SensorParams>,
) -> Result<Json<Vec<Sensor>>, Problem> {
    let prefix = crate::wire::prefix("prefix", p.prefix.as_deref())?;
    Ok(Json(joined(&state, prefix.as_deref()).await?))
}

fn parse_tag(tag: &str) -> Result<Tag, Problem> {
    Tag::parse(tag).map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, format!("{e}: use a tag such as brasil.sudeste.sensor01")).field("tag")
    })
}

/// One sensor.
#[utoipa::path(get, path = "/sensors/{tag}", tag = "sensors", params(TagPath),
    responses((status = 200, body = Sensor),
        (status = 400, description = "Not a tag", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No readings and no description", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn sensor_by_tag(
    State(state): State<ApiState>,
    Path(TagPath { tag }): Path<TagPath>,
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
    /// At most 200 characters.
    #[schema(max_length = 200)]
    name: Option<String>,
    /// At most 200 characters.
    #[schema(max_length = 200)]
    unit: Option<String>,
    #[serde(default, deserialize_with = "crate::wire::optional_object")]
    location: Option<LocationDto>,
    /// The sensor's own thresholds, each id once.
    #[serde(default, deserialize_with = "crate::wire::objects")]
    thresholds: Vec<ThresholdDto>,
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
#[utoipa::path(put, path = "/sensors/{tag}", tag = "sensors", params(TagPath, DescribeParams), request_body = SensorIn,
    responses((status = 202, description = "In the log; `null` until projected", body = crate::wire::Null),
        (status = 200, description = "Projected (`?wait=true`): the sensor as it now stands", body = Sensor),
        (status = 400, description = "Not a tag, or a bad description", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A threshold id given twice", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not confirm the description: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "In the log, not projected within 10 s (`?wait=true`); it will be", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn put_sensor(
    State(state): State<ApiState>,
    Path(TagPath { tag }): Path<TagPath>,
    Query(p): Query<DescribeParams>,
    body: Result<Json<serde_json::Map<String, serde_json::Value>>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Option<Sensor>>), Problem> {
    let tag = parse_tag(&tag)?;
    let body: SensorIn = crate::wire::object_body(body).map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, format!("{e}: send name, unit, location {{lat, lon}} and thresholds"))
    })?;
    let d = SensorDescription {
        v: 1,
        tag,
        name: body.name,
        unit: body.unit,
        location: body.location.map(Location::from),
        thresholds: body.thresholds.into_iter().map(Threshold::from).collect(),
        ts_ms: crate::stats::now_ms(),
        by: p.by,
        deleted: false,
    };
    describe(&state, d, p.wait).await
}

/// Forget a sensor's description (its readings stay).
///
/// This removes only what operators said (name, unit, location, thresholds).
/// A sensor with readings stays in the registry, so `GET /sensors/{tag}`
/// goes on answering `200` with the description fields null; a sensor known
/// only by its description answers `404` once the deletion is projected.
/// Without `?wait=true` the `202` comes before that, so a `GET` right after
/// it may still show the description.
#[utoipa::path(delete, path = "/sensors/{tag}", tag = "sensors", params(TagPath, DescribeParams),
    responses((status = 202, description = "In the log; `null` until projected", body = crate::wire::Null),
        (status = 200, description = "Projected (`?wait=true`): the sensor as its readings leave it, or `null` when it has none",
            body = Option<Sensor>),
        (status = 400, description = "Not a tag", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not confirm the deletion: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "In the log, not projected within 10 s (`?wait=true`); it will be", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete_sensor(
    State(state): State<ApiState>,
    Path(TagPath { tag }): Path<TagPath>,
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
    d.validate().map_err(|e| {
        let (status, field) = match &e {
            DescriptionError::TooLong { field } => (StatusCode::BAD_REQUEST, *field),
            DescriptionError::BadLocation => (StatusCode::BAD_REQUEST, "location"),
            DescriptionError::Threshold(rule) => (crate::rules::rule_status(rule), "thresholds"),
        };
        Problem::new(status, e.to_string()).field(field)
    })?;
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
    responses((status = 200, description = "RFC 7946 FeatureCollection", content_type = "application/geo+json", body = Object),
        (status = 400, description = "Not a tag prefix", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn geojson(
    State(state): State<ApiState>,
    Query(p): Query<SensorParams>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], Json<serde_json::Value>), Problem> {
    let prefix = crate::wire::prefix("prefix", p.prefix.as_deref())?;
    let features: Vec<serde_json::Value> = joined(&state, prefix.as_deref())
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
