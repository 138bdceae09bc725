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
use vigia_domain::{RULES_SET, RULES_SUBJECT, Rule, RuleError, RulesSet};

use crate::wire::RuleDto;
use crate::{ApiState, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Rules {
    rules: Vec<RuleDto>,
    /// `config` until the first change through the API, then `log`.
    #[schema(schema_with = source_schema)]
    source: &'static str,
    /// When the rules in force were set (unix ms), for `log`.
    set_at: Option<i64>,
    set_by: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"rules": [{"id": "hot", "pattern": "brasil.>", "op": "gt", "threshold": 80.0, "hysteresis": 2.0}]}))]
pub(crate) struct RulesIn {
    /// The rules, each id once; an empty list turns alerting off.
    #[serde(deserialize_with = "crate::wire::objects")]
    rules: Vec<RuleDto>,
}

fn source_schema() -> utoipa::openapi::schema::ObjectBuilder {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["config", "log"]))
}

/// 422 for an id given twice, which fits the schema (JSON Schema cannot ask
/// for unique ids); 400 for the rest, which the schema already refuses.
pub(crate) fn rule_status(e: &RuleError) -> StatusCode {
    match e {
        RuleError::Duplicate(_) => StatusCode::UNPROCESSABLE_ENTITY,
        RuleError::BadId(_) | RuleError::BadNumbers(_) => StatusCode::BAD_REQUEST,
    }
}

fn rules_out(rules: Vec<Rule>) -> Vec<RuleDto> {
    rules.into_iter().map(RuleDto::from).collect()
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
        Some(set) => Rules { rules: rules_out(set.rules), source: "log", set_at: Some(set.ts_ms), set_by: set.by },
        None => Rules { rules: rules_out(state.default_rules.clone()), source: "config", set_at: None, set_by: None },
    })
}

/// The alert rules in force.
#[utoipa::path(get, path = "/rules", tag = "alerts",
    responses((status = 200, body = Rules),
        (status = 503, description = "The log did not answer", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn get_rules(State(state): State<ApiState>) -> Result<Json<Rules>, Problem> {
    Ok(Json(current(&state).await?))
}

/// Replace the alert rules (admin scope). Takes effect from the alerter's next batch.
#[utoipa::path(put, path = "/rules", tag = "alerts", params(RulesParams), request_body = RulesIn,
    responses((status = 200, body = Rules),
        (status = 400, description = "A bad rule", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A rule id given twice", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log did not confirm the change: nothing was written", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn put_rules(
    State(state): State<ApiState>,
    Query(p): Query<RulesParams>,
    body: Result<Json<serde_json::Map<String, serde_json::Value>>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Rules>, Problem> {
    let body: RulesIn = crate::wire::object_body(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("{e}: send {{\"rules\": [{{\"id\", \"pattern\", \"op\", \"threshold\", \"hysteresis\"}}]}}"),
        )
        .field("rules")
    })?;
    let rules = body
        .rules
        .into_iter()
        .map(RuleDto::into_rule)
        .collect::<Result<Vec<Rule>, String>>()
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e).field("rules"))?;
    let set = RulesSet { v: 1, rules, ts_ms: crate::stats::now_ms(), by: p.by };
    set.validate().map_err(|e| Problem::new(rule_status(&e), e.to_string()).field("rules"))?;
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
    Ok(Json(Rules { rules: rules_out(set.rules), source: "log", set_at: Some(set.ts_ms), set_by: set.by }))
}
