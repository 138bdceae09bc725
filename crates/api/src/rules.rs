//! `GET/PUT /api/v1/rules`: the alert rules in force, changed through the log.
//!
//! A change is a `RulesSet` v1 message on `alerts._rules`; the alerter reads
//! the last one before each batch. Until the first change, the configured
//! rules are in force.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use vigia_domain::{RULES_SET, RULES_SUBJECT, Rule, RulesSet};

use crate::{ApiState, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Rules {
    #[schema(value_type = Vec<Object>)]
    rules: Vec<Rule>,
    /// `config` until the first change through the API, then `log`.
    source: &'static str,
    /// When the rules in force were set (unix ms), for `log`.
    set_at: Option<i64>,
    set_by: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"rules": [{"id": "hot", "pattern": "brasil.>", "op": "gt", "threshold": 80.0, "hysteresis": 2.0}]}))]
pub(crate) struct RulesIn {
    /// Each rule: `id`, `pattern` (NATS-style), `op` (gt, gte, lt, lte, eq, neq), `threshold`, `hysteresis`.
    #[schema(value_type = Vec<Object>)]
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RulesParams {
    /// Who changes the rules (kept in the log).
    by: Option<String>,
}

async fn current(state: &ApiState) -> Result<Rules, Problem> {
    let last = state
        .bus
        .last_on(vigia_bus::ALERTS, RULES_SUBJECT)
        .await
        .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; retry shortly")))?;
    Ok(match last.and_then(|m| serde_json::from_slice::<RulesSet>(&m.payload).ok()) {
        Some(set) => Rules { rules: set.rules, source: "log", set_at: Some(set.ts_ms), set_by: set.by },
        None => Rules { rules: state.default_rules.clone(), source: "config", set_at: None, set_by: None },
    })
}

/// The alert rules in force.
#[utoipa::path(get, path = "/rules", tag = "alerts", responses((status = 200, body = Rules)))]
pub(crate) async fn get_rules(State(state): State<ApiState>) -> Result<Json<Rules>, Problem> {
    Ok(Json(current(&state).await?))
}

/// Replace the alert rules (admin scope). Takes effect from the alerter's next batch.
#[utoipa::path(put, path = "/rules", tag = "alerts", params(RulesParams), request_body = RulesIn,
    responses((status = 200, body = Rules), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn put_rules(
    State(state): State<ApiState>,
    Query(p): Query<RulesParams>,
    body: Result<Json<RulesIn>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Rules>, Problem> {
    let Json(body) = body.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{}: send {{\"rules\": [{{\"id\", \"pattern\", \"op\", \"threshold\", \"hysteresis\"}}]}}",
                e.body_text()
            ),
        )
        .field("rules")
    })?;
    let set = RulesSet { v: 1, rules: body.rules, ts_ms: crate::stats::now_ms(), by: p.by };
    set.validate().map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.to_string()).field("rules"))?;
    let mut headers = vigia_bus::HeaderMap::new();
    headers.insert(vigia_domain::EVENT_HEADER, RULES_SET);
    headers.insert(vigia_domain::VERSION_HEADER, "1");
    let payload = serde_json::to_vec(&set).expect("rules serialise");
    state
        .bus
        .publisher()
        .publish(RULES_SUBJECT.to_owned(), Some(headers), payload.into(), None)
        .await
        .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; retry the request")))?;
    Ok(Json(Rules { rules: set.rules, source: "log", set_at: Some(set.ts_ms), set_by: set.by }))
}
