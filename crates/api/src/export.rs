//! `GET /api/v1/events.csv`: the same query as `GET /events`, as CSV.
//!
//! Sorted by time (the default), the export walks the time range one hour
//! block at a time and streams each hour out before reading the next, so
//! memory stays bounded by one hour of matching events whatever the total.
//! Any other sort needs every match at once and is capped like a query.

use std::collections::VecDeque;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use vigia_domain::{BLOCK_SPAN_MS, EventField, EventQuery, SortDirection, StoredEvent, Value};

use crate::{ApiState, Problem};

const HEADER: &str = "id,tag,timestamp,time,value,unit,status,reason\n";

/// Export stored events as CSV.
///
/// Takes the filters and `sort` of `GET /events`. Without `limit` every match
/// is exported; with `limit=offset,count` that page.
#[utoipa::path(
    get,
    path = "/events.csv",
    tag = "events",
    params(
        ("tag" = Option<String>, Query, description = "as in GET /events"),
        ("value" = Option<String>, Query, description = "as in GET /events"),
        ("status" = Option<String>, Query, description = "as in GET /events"),
        ("timestamp" = Option<String>, Query, description = "as in GET /events"),
        ("sort" = Option<String>, Query, description = "`timestamp:desc` (default) or `timestamp:asc` stream in bounded memory"),
        ("limit" = Option<String>, Query, description = "`offset,count`; every match when absent")
    ),
    responses(
        (status = 200, description = "CSV: id,tag,timestamp,time,value,unit,status,reason", content_type = "text/csv", body = String),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")
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

/// The hour blocks to walk: the query's time bounds, else what the registry has seen.
async fn range(state: &ApiState, query: &EventQuery) -> Result<Option<(i64, i64)>, Problem> {
    let (from, to) = query.time_bounds();
    let (mut lo, mut hi) = (from, to);
    if lo.is_none() || hi.is_none() {
        let sensors = state.store.sensors().await.map_err(crate::store_problem)?;
        lo = lo.or_else(|| sensors.iter().map(|s| s.first_seen).min());
        hi = hi.or_else(|| sensors.iter().map(|s| s.last_seen).max());
    }
    Ok(match (lo, hi) {
        (Some(lo), Some(hi)) if lo <= hi => Some((lo.div_euclid(BLOCK_SPAN_MS), hi.div_euclid(BLOCK_SPAN_MS))),
        _ => None,
    })
}

/// Streams the header, then each hour's matching events in query order.
fn hourly(
    state: ApiState,
    query: EventQuery,
    lo: i64,
    hi: i64,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> {
    let hours: VecDeque<i64> = match query.sort[0].direction {
        SortDirection::Asc => (lo..=hi).collect(),
        SortDirection::Desc => (lo..=hi).rev().collect(),
    };
    let start = (state, query, hours, true);
    futures::stream::unfold(start, |(state, query, mut hours, first)| async move {
        if first {
            return Some((Ok(HEADER.to_owned()), (state, query, hours, false)));
        }
        loop {
            let hour = hours.pop_front()?;
            let start = hour * BLOCK_SPAN_MS;
            let prefix = query.tag_prefix();
            let events = match state.store.events_window(prefix.as_deref(), Some(start), Some(start), usize::MAX).await
            {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(error = %e, "CSV export cut short by the store.");
                    return Some((Err(std::io::Error::other(e.to_string())), (state, query, VecDeque::new(), false)));
                }
            };
            let mut hits: Vec<&StoredEvent> = events.iter().filter(|e| query.matches(e)).collect();
            if hits.is_empty() {
                continue;
            }
            hits.sort_unstable_by(|a, b| query.compare(a, b));
            let mut out = String::new();
            for e in hits {
                row(&mut out, e);
            }
            return Some((Ok(out), (state, query, hours, false)));
        }
    })
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
