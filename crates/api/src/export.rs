//! `GET /api/v1/events.csv`: the same query as `GET /events`, as CSV.
//!
//! Sorted by time (the default), the export walks the time range a window
//! of hour blocks at a time and streams each window out before reading the
//! next, so memory stays bounded by one window of events whatever the total.
//! Any other sort needs every match at once and is capped like a query.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use vigia_domain::{BLOCK_SPAN_MS, EventField, EventQuery, SortDirection, StoredEvent, Value};

use crate::{ApiState, Problem};

const HEADER: &str = "id,tag,timestamp,time,value,unit,status,reason\n";

/// Export stored events as CSV.
///
/// Takes the query of `GET /events`. Without `limit` every match is
/// exported; with `limit=offset,count` that page. Sorted by `timestamp`
/// alone (the default), the export streams in bounded memory.
#[utoipa::path(
    get,
    path = "/events.csv",
    tag = "events",
    params(crate::events::EventQueryParams),
    responses(
        (status = 200, description = "CSV: id,tag,timestamp,time,value,unit,status,reason", content_type = "text/csv", body = String),
        (status = 400, description = "Unknown field, operator or bad value", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Too many events to sort (narrow by tag or time), or a cursor not issued for this query",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn export(
    State(state): State<ApiState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Problem> {
    let mut query = crate::events::parse_query(&pairs)?;
    let limited = pairs.iter().any(|(k, _)| k == "limit");
    if !limited {
        query.count = u64::MAX;
    }
    let by_time = query.sort.len() == 1 && query.sort[0].field == EventField::Timestamp;
    let body = if by_time && !limited {
        let (lo, hi) = match range(&state, &query).await? {
            Some(r) => r,
            None => return Ok(csv_response(Body::from(HEADER))),
        };
        Body::from_stream(hourly(state, query, lo, hi))
    } else {
        let (from, to) = query.time_bounds();
        let prefix = query.tag_prefix();
        let events = state
            .store
            .events_window(prefix.as_deref(), from, to, crate::SCAN_CAP)
            .await
            .map_err(crate::store_problem)?;
        let page = query.select(&events);
        let mut out = String::from(HEADER);
        for e in page.events {
            row(&mut out, e);
        }
        Body::from(out)
    };
    Ok(csv_response(body))
}

fn csv_response(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"events.csv\""),
        ],
        body,
    )
        .into_response()
}

/// The hour blocks to walk: the query's time bounds within what the registry
/// has seen (no event lies outside it, and a bound such as `lte:1e99` must
/// not become trillions of empty hours).
async fn range(state: &ApiState, query: &EventQuery) -> Result<Option<(i64, i64)>, Problem> {
    let (from, to) = query.time_bounds();
    let sensors = state.store.sensors().await.map_err(crate::store_problem)?;
    let seen_lo = sensors.iter().map(|s| s.first_seen).min();
    let seen_hi = sensors.iter().map(|s| s.last_seen).max();
    let lo = match (from, seen_lo) {
        (Some(f), Some(s)) => Some(f.max(s)),
        (f, s) => f.or(s),
    };
    let hi = match (to, seen_hi) {
        (Some(t), Some(s)) => Some(t.min(s)),
        (t, s) => t.or(s),
    };
    Ok(match (lo, hi) {
        (Some(lo), Some(hi)) if lo <= hi => Some((lo.div_euclid(BLOCK_SPAN_MS), hi.div_euclid(BLOCK_SPAN_MS))),
        _ => None,
    })
}

/// Events one window may hold; a fuller window is split, down to one hour.
const WINDOW_CAP: usize = 20_000;
/// The widest window, in hours (about 120 years).
const MAX_WINDOW_HOURS: i64 = 1 << 20;

/// Streams the header, then the matching events window by window in query
/// order. A window starts at one hour, doubles while it finds little (so
/// empty years cost a few reads, not one per hour) and halves when it holds
/// more than [`WINDOW_CAP`] events; a single hour is always read whole. Memory
/// stays bounded by one window, however long the range.
fn hourly(
    state: ApiState,
    query: EventQuery,
    lo: i64,
    hi: i64,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> {
    let asc = query.sort[0].direction == SortDirection::Asc;
    let start = Walk { state, query, lo, hi, hours: 1, header: true };
    futures::stream::unfold(start, move |mut walk| async move {
        if walk.header {
            walk.header = false;
            return Some((Ok(HEADER.to_owned()), walk));
        }
        loop {
            if walk.lo > walk.hi {
                return None;
            }
            let span = walk.hours.min(walk.hi - walk.lo + 1);
            let (first, last) = if asc { (walk.lo, walk.lo + span - 1) } else { (walk.hi - span + 1, walk.hi) };
            let cap = if span == 1 { usize::MAX } else { WINDOW_CAP };
            let prefix = walk.query.tag_prefix();
            let read = walk
                .state
                .store
                .events_window(prefix.as_deref(), Some(first * BLOCK_SPAN_MS), Some(last * BLOCK_SPAN_MS), cap)
                .await;
            let events = match read {
                Ok(events) => events,
                Err(vigia_store::StoreError::TooMany { .. }) => {
                    walk.hours = (span / 2).max(1);
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "CSV export cut short by the store.");
                    (walk.lo, walk.hi) = (1, 0); // Nothing more after an error.
                    return Some((Err(std::io::Error::other(e.to_string())), walk));
                }
            };
            if asc {
                walk.lo = last + 1;
            } else {
                walk.hi = first - 1;
            }
            let mut hits: Vec<&StoredEvent> = events.iter().filter(|e| walk.query.matches(e)).collect();
            if events.len() < WINDOW_CAP / 4 {
                walk.hours = (span * 2).min(MAX_WINDOW_HOURS);
            }
            if hits.is_empty() {
                continue;
            }
            hits.sort_unstable_by(|a, b| walk.query.compare(a, b));
            let mut out = String::new();
            for e in hits {
                row(&mut out, e);
            }
            return Some((Ok(out), walk));
        }
    })
}

/// Where the export's walk stands: the hours left, `lo..=hi`, and the next window's width.
struct Walk {
    state: ApiState,
    query: EventQuery,
    lo: i64,
    hi: i64,
    hours: i64,
    header: bool,
}

fn row(out: &mut String, e: &StoredEvent) {
    let r = &e.reading;
    let time = chrono::DateTime::from_timestamp_millis(r.ts_ms).map(|t| t.to_rfc3339()).unwrap_or_default();
    let value = match &r.value {
        Value::Number(n) => n.to_string(),
        Value::Text(t) => t.clone(),
        Value::Empty => String::new(),
    };
    let cells = [
        e.id.to_string(),
        r.tag.to_string(),
        r.ts_ms.to_string(),
        time,
        value,
        r.unit.clone().unwrap_or_default(),
        r.status.as_str().to_owned(),
        r.reason.clone().unwrap_or_default(),
    ];
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote(out, cell);
    }
    out.push('\n');
}

/// RFC 4180 quoting, plus a leading `'` before `=`, `+`, `-`, `@` so a
/// spreadsheet never runs a cell as a formula.
fn quote(out: &mut String, cell: &str) {
    let formula = cell.starts_with(['=', '+', '@']) || (cell.starts_with('-') && cell.parse::<f64>().is_err());
    let needs = formula || cell.contains([',', '"', '\n', '\r']);
    if !needs {
        out.push_str(cell);
        return;
    }
    out.push('"');
    if formula {
        out.push('\'');
    }
    out.push_str(&cell.replace('"', "\"\""));
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        let q = |s: &str| {
            let mut out = String::new();
            quote(&mut out, s);
            out
        };
        assert_eq!(q("plain"), "plain");
        assert_eq!(q("-3.5"), "-3.5");
        assert_eq!(q("a,b"), "\"a,b\"");
        assert_eq!(q("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(q("=SUM(A1)"), "\"'=SUM(A1)\"");
        assert_eq!(q("-cmd"), "\"'-cmd\"");
    }
}
