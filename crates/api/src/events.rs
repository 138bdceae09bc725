//! `GET /api/v1/events` and `GET /api/v1/events/{id}`: stored events out.
//!
//! The query language lives in the domain crate (`EventQuery`); this module
//! only turns HTTP into it and events into JSON. The store narrows by tag
//! prefix and time window (whole time blocks), the query does the rest.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use vigia_domain::{EventId, EventQuery, StoredEvent, Value, decode_message};

use crate::{ApiState, Problem};

/// A stored event.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventOut {
    /// `<stream sequence>-<index in the message>`.
    id: String,
    tag: String,
    /// A number, a text, or null when the reading had no value.
    #[schema(value_type = Option<Object>)]
    value: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
    /// `ok` or `error`.
    status: &'static str,
    /// Why the event is an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Unix milliseconds.
    timestamp: i64,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    meta: std::collections::BTreeMap<String, String>,
    /// The undecodable payload as UTF-8 text, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<String>,
    /// The undecodable payload in hex, when it is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_hex: Option<String>,
}

impl From<&StoredEvent> for EventOut {
    fn from(e: &StoredEvent) -> Self {
        let r = &e.reading;
        let value = match &r.value {
            Value::Number(n) => serde_json::json!(n),
            Value::Text(t) => serde_json::json!(t),
            Value::Empty => serde_json::Value::Null,
        };
        let (raw, raw_hex) = match r.raw.as_deref().map(std::str::from_utf8) {
            None => (None, None),
            Some(Ok(text)) => (Some(text.to_owned()), None),
            Some(Err(_)) => (None, r.raw.as_deref().map(|b| b.iter().map(|x| format!("{x:02x}")).collect())),
        };
        EventOut {
            id: e.id.to_string(),
            tag: r.tag.to_string(),
            value,
            unit: r.unit.clone(),
            status: r.status.as_str(),
            reason: r.reason.clone(),
            timestamp: r.ts_ms,
            meta: r.meta.clone(),
            raw,
            raw_hex,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventPage {
    events: Vec<EventOut>,
    /// Events matching the filters, over every page (also in `X-Total-Count`).
    total: usize,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Query stored events.
///
/// Filters are `field=op:value` with fields `tag`, `value`, `status`, `unit`,
/// `timestamp` and ops `eq, neq, like, lt, gt, lte, gte` (`eq` when no op is
/// given); tags take NATS patterns (`brasil.sudeste.*`, `brasil.>`). Sort
/// with `sort=timestamp:desc,value:asc` (default `timestamp:desc`). Page with
/// `limit=offset,count` (or `limit=count`; count up to 10,000, offset up to
/// 100,000) or, for deep pages, with the `next_cursor` of the previous page.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(
        ("tag" = Option<String>, Query, description = "e.g. `eq:brasil.sudeste.*`, `like:brasil.%.sensor0_`"),
        ("value" = Option<String>, Query, description = "e.g. `gt:50`, `eq:open`"),
        ("status" = Option<String>, Query, description = "`eq:ok` or `eq:error`"),
        ("unit" = Option<String>, Query, description = "e.g. `eq:kWh`"),
        ("timestamp" = Option<String>, Query, description = "e.g. `gte:2026-11-23T00:00:00Z`; repeat for a range"),
        ("sort" = Option<String>, Query, description = "e.g. `timestamp:desc,value:asc`"),
        ("limit" = Option<String>, Query, description = "`offset,count` or `count`, e.g. `0,100`"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")
    ),
    responses(
        (status = 200, description = "One page", body = EventPage,
            headers(("X-Total-Count" = usize, description = "Events matching the filters"))),
        (status = 400, description = "Unknown field, operator or bad value", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Too many events to scan: narrow by tag or time", body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn list_events(
    State(state): State<ApiState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<(HeaderMap, Json<EventPage>), Problem> {
    let query = parse_query(&pairs)?;
    let (from, to) = query.time_bounds();
    if let (Some(lo), Some(hi)) = (from, to)
        && lo > hi
    {
        return Ok(page(Vec::new(), 0, None));
    }
    let prefix = query.tag_prefix();
    let candidates =
        state.store.events_window(prefix.as_deref(), from, to, crate::SCAN_CAP).await.map_err(crate::store_problem)?;
    let total = candidates.iter().filter(|e| query.matches(e)).count();
    let selected = query.select(&candidates);
    let events = selected.events.into_iter().map(EventOut::from).collect();
    Ok(page(events, total, selected.next_cursor))
}

/// The query of `GET /events` and `GET /events.csv`, or a 400 naming the parameter.
pub(crate) fn parse_query(pairs: &[(String, String)]) -> Result<EventQuery, Problem> {
    EventQuery::from_pairs(pairs).map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.to_string()).field(e.param()))
}

fn page(events: Vec<EventOut>, total: usize, next_cursor: Option<String>) -> (HeaderMap, Json<EventPage>) {
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(total));
    (headers, Json(EventPage { events, total, next_cursor }))
}

/// One stored event by id.
///
/// The log says which tag the event belongs to (the message at that sequence);
/// the store gives the event as projected.
#[utoipa::path(
    get,
    path = "/events/{id}",
    tag = "events",
    params(("id" = String, Path, description = "`<sequence>-<index>`", example = "42-0")),
    responses(
        (status = 200, body = EventOut),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn get_event(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<EventOut>, Problem> {
    let event = find_event(&state, &id).await?;
    Ok(Json((&event).into()))
}

/// The stored event with `id`: the log says its tag and time, the store its current state.
pub(crate) async fn find_event(state: &ApiState, id: &str) -> Result<StoredEvent, Problem> {
    let id: EventId = id.parse().map_err(|e: String| Problem::new(StatusCode::BAD_REQUEST, e).field("id"))?;
    let not_found = || Problem::new(StatusCode::NOT_FOUND, format!("no stored event has id {id}")).field("id");
    let message = state.bus.readings_message(id.seq).await.map_err(|_| not_found())?;
    let readings = decode_message(
        &message.subject,
        message.event.as_deref(),
        message.version.as_deref(),
        &message.payload,
        message.published_ms,
    )
    .into_readings();
    let reading = readings.get(id.idx as usize).ok_or_else(not_found)?;
    // The reading's time names its hour block: read that block, not the tag's history.
    let (tag, ts) = (reading.tag.to_string(), reading.ts_ms);
    let events = state
        .store
        .events_window(Some(&tag), Some(ts), Some(ts), crate::SCAN_CAP)
        .await
        .map_err(crate::store_problem)?;
    events.into_iter().find(|e| e.id == id).ok_or_else(not_found)
}
