//! `/api/v1/alerts`: the alert projection, and acknowledgements through the log.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use vigia_domain::Tag;

use crate::wire::AlertIdPath;
use crate::{ApiState, Problem};

/// An alert with its lifecycle.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Alert {
    /// `<sequence>-<index>-<rule>`: the reading that opened it and the rule.
    #[schema(schema_with = crate::wire::alert_id_schema)]
    id: String,
    tag: String,
    rule: String,
    #[schema(value_type = crate::wire::OpDto)]
    op: String,
    threshold: f64,
    #[schema(schema_with = status_schema)]
    status: String,
    opened_at: i64,
    opened_value: f64,
    cleared_at: Option<i64>,
    cleared_value: Option<f64>,
    acknowledged_at: Option<i64>,
    acknowledged_by: Option<String>,
}

impl From<vigia_store::AlertRecord> for Alert {
    fn from(a: vigia_store::AlertRecord) -> Self {
        Alert {
            id: format!("{}-{}-{}", a.opened_seq, a.opened_idx, a.rule),
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
            acknowledged_by: a.acknowledged_by,
        }
    }
}

fn status_schema() -> utoipa::openapi::schema::ObjectBuilder {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["open", "acknowledged", "cleared"]))
}

/// The most alerts one page holds.
const MAX_COUNT: usize = 10_000;
/// The deepest offset: bounds the work of a page.
const MAX_OFFSET: usize = 1_000_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertParams {
    #[serde(default, deserialize_with = "crate::wire::empty_as_none")]
    #[param(value_type = Option<crate::wire::AlertStatusParam>, inline)]
    status: Option<String>,
    /// Only alerts of tags under this prefix.
    #[param(value_type = Option<crate::wire::PrefixParam>, inline)]
    prefix: Option<String>,
    /// Skip this many (default 0).
    #[param(minimum = 0, maximum = 1_000_000)]
    offset: Option<usize>,
    /// At most this many, newest first (default 100).
    #[param(minimum = 0, maximum = 10_000)]
    count: Option<usize>,
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/alerts", tag = "alerts", params(AlertParams),
    responses((status = 200, body = Vec<Alert>),
        (status = 400, description = "A bad status, prefix, offset or count", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn alerts(
    State(state): State<ApiState>,
    Query(p): Query<AlertParams>,
) -> Result<Json<Vec<Alert>>, Problem> {
    if let Some(s) = p.status.as_deref()
        && !["open", "acknowledged", "cleared"].contains(&s)
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("`{s}` is not a status: use open, acknowledged or cleared, or leave it out for every alert"),
        )
        .field("status"));
    }
    let count = p.count.unwrap_or(100);
    if count > MAX_COUNT {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("count is at most {MAX_COUNT}")).field("count"));
    }
    let offset = p.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("offset is at most {MAX_OFFSET}: filter by status or prefix"),
        )
        .field("offset"));
    }
    let prefix = crate::wire::prefix("prefix", p.prefix.as_deref())?.map(|p| format!("{p}."));
    let rows = state.store.alerts(p.status.as_deref()).await.map_err(crate::store_problem)?;
    Ok(Json(
        rows.into_iter()
            .filter(|a| prefix.as_deref().is_none_or(|p| format!("{}.", a.tag).starts_with(p)))
            .skip(offset)
            .take(count)
            .map(Alert::from)
            .collect(),
    ))
}

/// Splits `<sequence>-<index>-<rule>` ([`crate::wire::ALERT_ID`]). `None` for
/// numbers too large to name any reading (the caller's 404).
pub(crate) fn alert_id(id: &str) -> Result<Option<(vigia_domain::EventId, &str)>, ()> {
    let mut parts = id.splitn(3, '-');
    let (Some(seq), Some(idx), Some(rule)) = (parts.next(), parts.next(), parts.next()) else { return Err(()) };
    if rule.is_empty() || !rule.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(());
    }
    let opened_by = crate::wire::event_id(&format!("{seq}-{idx}")).map_err(|_| ())?;
    Ok(opened_by.map(|e| (e, rule)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AckParams {
    /// Answer once the acknowledgement is projected.
    #[serde(default)]
    wait: bool,
    /// Who acknowledges (free text of at most 200 characters, kept with the alert).
    #[param(max_length = 200)]
    by: Option<String>,
}

/// Acknowledge an alert.
///
/// Publishes `AlertAcknowledged` to `alerts._ack.<tag>`; the alert projector
/// applies it. Acknowledging twice is harmless: one message id per alert.
#[utoipa::path(post, path = "/alerts/{id}/ack", tag = "alerts",
    params(AlertIdPath, AckParams),
    responses(
        (status = 202, description = "In the log", body = Alert),
        (status = 200, description = "Projected (with `?wait=true`)", body = Alert),
        (status = 400, description = "Not an alert id, or a bad `by` or `wait`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No alert has this id", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log or the store did not answer: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "In the log, not projected within 10 s (`?wait=true`); it will be", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn ack(
    State(state): State<ApiState>,
    Path(AlertIdPath { id }): Path<AlertIdPath>,
    Query(p): Query<AckParams>,
) -> Result<(StatusCode, Json<Alert>), Problem> {
    let bad_id = || {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not an alert id: use `<sequence>-<index>-<rule>` as /alerts lists it"),
        )
        .field("id")
    };
    let not_found = || Problem::new(StatusCode::NOT_FOUND, format!("no alert has id `{id}`")).field("id");
    let (opened_by, rule) = alert_id(&id).map_err(|()| bad_id())?.ok_or_else(not_found)?;
    if p.by.as_ref().is_some_and(|b| b.chars().count() > 200) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "`by` is at most 200 characters").field("by"));
    }
    let alert = state.store.alert(rule, opened_by).await.map_err(crate::store_problem)?.ok_or_else(not_found)?;
    let tag = Tag::parse(&alert.tag).map_err(|_| not_found())?;
    let ack = vigia_domain::AlertAck {
        v: 1,
        tag,
        rule: rule.to_owned(),
        opened_by,
        ts_ms: crate::stats::now_ms(),
        by: p.by.clone(),
    };
    let mut headers = vigia_bus::HeaderMap::new();
    headers.insert(vigia_domain::EVENT_HEADER, vigia_domain::ALERT_ACKNOWLEDGED);
    headers.insert(vigia_domain::VERSION_HEADER, "1");
    let payload = serde_json::to_vec(&ack).expect("an acknowledgement serialises");
    state
        .bus
        .publisher()
        .publish(ack.subject(), Some(headers), payload.into(), Some(&ack.message_id()))
        .await
        .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; retry the request")))?;
    if !p.wait {
        return Ok((StatusCode::ACCEPTED, Json(alert.into())));
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = state.store.alert(rule, opened_by).await.map_err(crate::store_problem)?.ok_or_else(not_found)?;
        if now.acknowledged_at.is_some() {
            return Ok((StatusCode::OK, Json(now.into())));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "acknowledged in the log, not yet projected within 10 s; it will be",
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
