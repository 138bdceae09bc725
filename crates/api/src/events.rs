//! `GET /api/v1/events` and `GET /api/v1/events/{id}`: stored events out.
//!
//! The query language lives in the domain crate (`EventQuery`); this module
//! only turns HTTP into it and events into JSON. The store narrows by tag
//! prefix and time window (whole time blocks), the query does the rest.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use vigia_domain::{EventId, EventQuery, QueryError, StoredEvent, Value, decode_message};

use crate::wire::EventIdPath;
use crate::{ApiState, Problem};

/// A stored event.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventOut {
    #[schema(schema_with = crate::wire::event_id_schema)]
    id: String,
    tag: String,
    #[schema(value_type = crate::wire::ReadingValue)]
    value: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
    /// `ok`, or `error` when the reading could not be used (see `reason`).
    #[schema(schema_with = crate::wire::event_status_schema)]
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
    /// Present (and true) when the reading was recorded after the fact: a CSV
    /// import, or older than `[backfill] freshness_secs` when it reached the
    /// log. Counted and rolled up like any other; it opens no alerts.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    backfill: bool,
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
            meta: r.meta.to_map(),
            raw,
            raw_hex,
            backfill: r.backfill,
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
    params(EventQueryParams),
    responses(
        (status = 200, description = "One page", body = EventPage,
            headers(("X-Total-Count" = usize, description = "Events matching the filters"))),
        (status = 400, description = "Unknown field, operator or bad value", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Too many events to scan (narrow by tag or time), or a cursor not issued for this query",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")
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

/// The query parameters of `GET /events` and `GET /events.csv`. The handlers
/// read the query as pairs (filters repeat) and `EventQuery` parses them;
/// this struct only documents the grammar, one pattern per parameter.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "documents the query that the handlers read as pairs")]
pub(crate) struct EventQueryParams {
    /// `[op:]tag-or-pattern` with op `eq` (default) or `neq` and a NATS pattern
    /// (`brasil.sudeste.*`, `brasil.>`), `like:` a LIKE pattern (`brasil.%.sensor0_`),
    /// or `lt`/`gt`/`lte`/`gte:` text compared with the tag.
    #[param(value_type = Option<crate::wire::FilterTagParam>, inline)]
    tag: Option<String>,
    /// `[op:]value`: `eq`/`neq` with a number or a text (`eq:open`), `like:` a LIKE pattern,
    /// `lt`/`gt`/`lte`/`gte:` a number (`gt:50`).
    #[param(value_type = Option<crate::wire::FilterValueParam>, inline)]
    value: Option<String>,
    /// `[eq:|neq:]ok` or `[eq:|neq:]error`.
    #[param(value_type = Option<crate::wire::FilterStatusParam>, inline)]
    status: Option<String>,
    /// `[op:]unit`: `eq`/`neq` with a text (`eq:kWh`; `eq:` for none) or `like:` a LIKE pattern.
    #[param(value_type = Option<crate::wire::FilterUnitParam>, inline)]
    unit: Option<String>,
    /// `[op:]time` with op `eq`, `neq`, `lt`, `gt`, `lte` or `gte` (`gte:2026-11-23T00:00:00Z`);
    /// repeat for a range.
    #[param(value_type = Option<crate::wire::FilterTimestampParam>, inline)]
    timestamp: Option<String>,
    /// `field[:asc|:desc]`, comma-separated, each field once; default `timestamp:desc`.
    #[param(value_type = Option<crate::wire::SortParam>, inline)]
    sort: Option<String>,
    /// `count` (1 to 10,000) or `offset,count` (offset up to 100,000), e.g. `0,100`.
    #[param(value_type = Option<crate::wire::LimitParam>, inline)]
    limit: Option<String>,
    /// `next_cursor` of the previous page, unchanged, with the same `sort`; no offset in `limit`.
    #[param(value_type = Option<crate::wire::CursorParam>, inline)]
    cursor: Option<String>,
}

/// The query of `GET /events` and `GET /events.csv`, or a problem naming the
/// parameter: 400 for a query that does not fit the grammar, 422 for a cursor
/// this query cannot follow (the grammar cannot tell a cursor that was issued
/// for this query from one that was not).
pub(crate) fn parse_query(pairs: &[(String, String)]) -> Result<EventQuery, Problem> {
    EventQuery::from_pairs(pairs).map_err(|e| {
        let status = match e {
            QueryError::BadCursor { .. }
            | QueryError::CursorSortMismatch { .. }
            | QueryError::CursorWithOffset { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        Problem::new(status, e.to_string()).field(e.param())
    })
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
    params(EventIdPath),
    responses(
        (status = 200, body = EventOut),
        (status = 400, description = "Not an event id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No stored event has this id", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log or the store did not answer", body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn get_event(
    State(state): State<ApiState>,
    Path(EventIdPath { id }): Path<EventIdPath>,
) -> Result<Json<EventOut>, Problem> {
    let event = find_event(&state, &id).await?;
    Ok(Json((&event).into()))
}

/// The stored event with `id`: the log says its tag and time, the store its current state.
pub(crate) async fn find_event(state: &ApiState, id: &str) -> Result<StoredEvent, Problem> {
    let not_found = || Problem::new(StatusCode::NOT_FOUND, format!("no stored event has id {id}")).field("id");
    // Numbers too large for a sequence or an index fit the grammar but name no event.
    let id: EventId = crate::wire::event_id(id)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e).field("id"))?
        .ok_or_else(not_found)?;
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
    let events = state.store.tag_events(&tag, ts, ts, crate::SCAN_CAP).await.map_err(crate::store_problem)?;
    events.into_iter().find(|e| e.id == id).ok_or_else(not_found)
}
