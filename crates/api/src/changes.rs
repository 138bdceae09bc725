//! `PUT`/`PATCH`/`DELETE /api/v1/events/{id}`: corrections and retractions,
//! published to the log (`ReadingCorrected` / `ReadingRetracted` v1 on the
//! reading's tag) and applied by the persister, so counters, rollups and the
//! registry stay equal to a scan and replay rebuilds the same store.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use vigia_domain::{ItemValue, READING_CORRECTED, READING_RETRACTED, ReadingChange, StoredEvent, Value};

use crate::events::{EventOut, find_event};
use crate::wire::EventIdPath;
use crate::{ApiState, Problem};

/// A corrected value and unit. Tag and timestamp are the reading's identity:
/// to move a reading, retract it and record a new one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"value": 41.8, "unit": "C"}))]
pub(crate) struct CorrectionIn {
    /// A number, a numeric string, a text, or null (an error reading).
    #[serde(default, alias = "valor")]
    #[schema(value_type = crate::wire::ReadingValue)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    unit: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChangeParams {
    /// Answer once the persister has applied the change.
    #[serde(default)]
    wait: bool,
}

/// The change as the log recorded it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChangeAccepted {
    /// Stream sequence of the change message.
    seq: u64,
    /// The event changed.
    target: String,
    /// The event after the change (with `?wait=true`; absent after a retraction).
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<EventOut>,
}

fn item(value: Option<serde_json::Value>) -> Result<Option<ItemValue>, Problem> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => Ok(n.as_f64().map(ItemValue::Number)),
        Some(serde_json::Value::String(s)) => Ok(Some(ItemValue::Text(s))),
        Some(_) => Err(Problem::new(StatusCode::BAD_REQUEST, "use a number, a string, or null").field("value")),
    }
}

fn current(e: &StoredEvent) -> Option<ItemValue> {
    match &e.reading.value {
        Value::Number(n) => Some(ItemValue::Number(*n)),
        Value::Text(t) => Some(ItemValue::Text(t.clone())),
        Value::Empty => None,
    }
}

/// Correct a reading: replace its value and unit.
#[utoipa::path(put, path = "/events/{id}", tag = "events",
    params(EventIdPath, ChangeParams), request_body = CorrectionIn,
    responses((status = 202, description = "In the log", body = ChangeAccepted),
        (status = 200, description = "Applied (`?wait=true`)", body = ChangeAccepted),
        (status = 400, description = "Not an event id, or a bad body or `wait`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No stored event has this id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The event is timed past the year 9999 (stored before times were bounded)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not confirm the change: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "In the log, not applied within 10 s (`?wait=true`); it will be", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn put_event(
    State(state): State<ApiState>,
    Path(EventIdPath { id }): Path<EventIdPath>,
    Query(p): Query<ChangeParams>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Map<String, serde_json::Value>>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<ChangeAccepted>), Problem> {
    let body: CorrectionIn = crate::wire::object_body(body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("{e}: send {{\"value\", \"unit\"}}")))?;
    let target = find_event(&state, &id).await?;
    let value = item(body.value)?;
    change(&state, &headers, p.wait, target, READING_CORRECTED, value, body.unit).await
}

/// Correct part of a reading: only the fields given change.
#[utoipa::path(patch, path = "/events/{id}", tag = "events",
    params(EventIdPath, ChangeParams), request_body = CorrectionIn,
    responses((status = 202, description = "In the log", body = ChangeAccepted),
        (status = 200, description = "Applied (`?wait=true`)", body = ChangeAccepted),
        (status = 400, description = "Not an event id, or a bad body or `wait`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No stored event has this id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The event is timed past the year 9999 (stored before times were bounded)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not confirm the change: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "In the log, not applied within 10 s (`?wait=true`); it will be", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn patch_event(
    State(state): State<ApiState>,
    Path(EventIdPath { id }): Path<EventIdPath>,
    Query(p): Query<ChangeParams>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Map<String, serde_json::Value>>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<ChangeAccepted>), Problem> {
    let Json(mut body) = body.map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, format!("{}: send {{\"value\"}} and/or {{\"unit\"}}", e.body_text()))
    })?;
    if let Some(k) = body.keys().find(|k| !["value", "valor", "unit"].contains(&k.as_str())) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("`{k}` cannot be changed: only value and unit can"))
            .field(k.clone()));
    }
    let target = find_event(&state, &id).await?;
    let value = match body.remove("value").or_else(|| body.remove("valor")) {
        Some(v) => item(Some(v))?,
        None => current(&target),
    };
    let unit = match body.remove("unit") {
        Some(serde_json::Value::String(u)) => Some(u),
        Some(serde_json::Value::Null) => None,
        Some(_) => return Err(Problem::new(StatusCode::BAD_REQUEST, "unit is a string or null").field("unit")),
        None => target.reading.unit.clone(),
    };
    change(&state, &headers, p.wait, target, READING_CORRECTED, value, unit).await
}

/// Retract a reading: it leaves every projection; the log keeps both.
#[utoipa::path(delete, path = "/events/{id}", tag = "events",
    params(EventIdPath, ChangeParams),
    responses((status = 202, description = "In the log", body = ChangeAccepted),
        (status = 200, description = "Applied (`?wait=true`)", body = ChangeAccepted),
        (status = 400, description = "Not an event id, or a bad body or `wait`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No stored event has this id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The event is timed past the year 9999 (stored before times were bounded)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not confirm the change: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "In the log, not applied within 10 s (`?wait=true`); it will be", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete_event(
    State(state): State<ApiState>,
    Path(EventIdPath { id }): Path<EventIdPath>,
    Query(p): Query<ChangeParams>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<ChangeAccepted>), Problem> {
    let target = find_event(&state, &id).await?;
    change(&state, &headers, p.wait, target, READING_RETRACTED, None, None).await
}

async fn change(
    state: &ApiState,
    headers: &HeaderMap,
    wait: bool,
    target: StoredEvent,
    kind: &'static str,
    value: Option<ItemValue>,
    unit: Option<String>,
) -> Result<(StatusCode, Json<ChangeAccepted>), Problem> {
    if target.reading.ts_ms > crate::wire::LAST_MS {
        // Stored before times were bounded; the persister's day arithmetic has no room for it.
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("event {} is timed past the year 9999 and cannot be changed", target.id),
        )
        .field("id"));
    }
    let body = ReadingChange { v: 1, target: target.id, ts: target.reading.ts_ms, value, unit };
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty() && k.len() <= 200);
    let mut h = vigia_bus::HeaderMap::new();
    h.insert(vigia_domain::EVENT_HEADER, kind);
    h.insert(vigia_domain::VERSION_HEADER, "1");
    let payload = serde_json::to_vec(&body).expect("changes serialise");
    let stored =
        state.bus.publisher().publish(target.reading.tag.to_string(), Some(h), payload.into(), key).await.map_err(
            |e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; nothing was written, retry the request")),
        )?;
    let mut accepted = ChangeAccepted { seq: stored.seq, target: target.id.to_string(), event: None };
    if !wait {
        return Ok((StatusCode::ACCEPTED, Json(accepted)));
    }
    crate::ingest::wait_stored(state, &[stored.seq]).await?;
    if kind == READING_CORRECTED {
        accepted.event = Some((&find_event(state, &accepted.target).await?).into());
    }
    Ok((StatusCode::OK, Json(accepted)))
}
