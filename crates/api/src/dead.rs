//! `GET /api/v1/dead-letters`: messages a consumer could not apply, with
//! their bytes and the reason, newest first.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{ApiState, Problem};

/// A message set aside by a consumer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterOut {
    /// The stream it came from (`ALERTS`, `READINGS`).
    stream: String,
    /// The consumer that could not apply it.
    consumer: String,
    /// Its sequence in `stream`.
    seq: i64,
    subject: String,
    /// Why it could not be applied.
    reason: String,
    /// The payload as text, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<String>,
    /// The payload in hex, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_hex: Option<String>,
    /// Unix ms when the message reached its stream.
    at: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeadParams {
    /// Skip this many (default 0).
    #[param(minimum = 0, maximum = 1_000_000)]
    offset: Option<usize>,
    /// At most this many (default 100).
    #[param(minimum = 0, maximum = 1000)]
    count: Option<usize>,
}

/// The most dead letters one page holds.
const MAX_COUNT: usize = 1000;
/// The deepest offset: the store skips rows one by one.
const MAX_OFFSET: usize = 1_000_000;

/// Dead letters, newest first. Each is also on the `DEADLETTER` stream as
/// `deadletter.<stream>.<consumer>` with the original payload.
#[utoipa::path(get, path = "/dead-letters", tag = "operations", params(DeadParams),
    responses((status = 200, body = Vec<DeadLetterOut>),
        (status = 400, description = "A bad offset or count", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn dead_letters(
    State(state): State<ApiState>,
    Query(p): Query<DeadParams>,
) -> Result<Json<Vec<DeadLetterOut>>, Problem> {
    let count = p.count.unwrap_or(100);
    if count > MAX_COUNT {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("count is at most {MAX_COUNT}; page with offset"))
            .field("count"));
    }
    let offset = p.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("offset is at most {MAX_OFFSET}")).field("offset"));
    }
    let rows = state.store.dead_letters(offset, count).await.map_err(crate::store_problem)?;
    Ok(Json(
        rows.into_iter()
            .map(|d| DeadLetterOut {
                stream: d.stream,
                consumer: d.consumer,
                seq: d.seq,
                subject: d.subject,
                reason: d.reason,
                raw: d.raw,
                raw_hex: d.raw_hex,
                at: d.at,
            })
            .collect(),
    ))
}
