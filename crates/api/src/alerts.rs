//! `/api/v1/alerts`: the alert projection, and acknowledgements through the log.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use vigia_domain::Tag;

use crate::{ApiState, Problem};

/// An alert with its lifecycle.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Alert {
    /// `<sequence>-<index>-<rule>`: the reading that opened it and the rule.
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertParams {
    /// `open`, `acknowledged` or `cleared`; every alert when absent.
    status: Option<String>,
    /// Only alerts of tags under this prefix.
    prefix: Option<String>,
    /// Skip this many (default 0).
    offset: Option<usize>,
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
            .skip(p.offset.unwrap_or(0))
            .take(count)
            .map(Alert::from)
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AckParams {
    /// Answer once the acknowledgement is projected.
    #[serde(default)]
    wait: bool,
    /// Who acknowledges (free text, kept with the alert).
    by: Option<String>,
}

/// Acknowledge an alert.
///
/// Publishes `AlertAcknowledged` to `alerts._ack.<tag>`; the alert projector
/// applies it. Acknowledging twice is harmless: one message id per alert.
#[utoipa::path(post, path = "/alerts/{id}/ack", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id, `<sequence>-<index>-<rule>`", example = "42-0-value-above-50"), AckParams),
    responses(
        (status = 202, description = "In the log", body = Alert),
        (status = 200, description = "Projected (with `?wait=true`)", body = Alert),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn ack(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(p): Query<AckParams>,
) -> Result<(StatusCode, Json<Alert>), Problem> {
    let bad_id = || {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not an alert id: use `<sequence>-<index>-<rule>` as /alerts lists it"),
        )
        .field("id")
    };
    let mut parts = id.splitn(3, '-');
    let (Some(seq), Some(idx), Some(rule)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad_id()) };
    let opened_by: vigia_domain::EventId = format!("{seq}-{idx}").parse().map_err(|_| bad_id())?;
    let not_found = || Problem::new(StatusCode::NOT_FOUND, format!("no alert has id `{id}`")).field("id");
    let alert = state.store.alert(rule, opened_by).await.map_err(crate::store_problem)?.ok_or_else(not_found)?;
    if p.by.as_ref().is_some_and(|b| b.len() > 200) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "`by` is at most 200 bytes").field("by"));
    }
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
