//! `GET /api/v1/counts`: the hierarchical counters as a tree.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{ApiState, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CountParams {
    /// Start from this prefix (`brasil`, `brasil.sudeste`); every root when empty or absent.
    #[param(value_type = Option<crate::wire::PrefixParam>, inline)]
    prefix: Option<String>,
    /// Levels below the prefix (or below the roots) to include. Default 2.
    #[param(minimum = 0, maximum = 8)]
    depth: Option<u32>,
}

/// Counts of one prefix, split by status, with the levels below it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(no_recursion)]
pub(crate) struct CountNode {
    prefix: String,
    total: i64,
    ok: i64,
    errors: i64,
    children: Vec<CountNode>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Counts {
    /// The roots, or the one prefix asked for.
    nodes: Vec<CountNode>,
    /// Sum over `nodes`.
    total: i64,
}

/// Hierarchical event counts per region and sensor.
#[utoipa::path(
    get,
    path = "/counts",
    tag = "aggregates",
    params(CountParams),
    responses(
        (status = 200, description = "The counter tree", body = Counts,
            example = json!({"total": 1000, "nodes": [{"prefix": "brasil", "total": 1000, "ok": 990, "errors": 10,
                "children": [{"prefix": "brasil.sudeste", "total": 700, "ok": 695, "errors": 5, "children": []}]}]})),
        (status = 400, description = "Bad prefix or depth", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store did not answer", body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn counts(
    State(state): State<ApiState>,
    Query(params): Query<CountParams>,
) -> Result<Json<Counts>, Problem> {
    let depth = params.depth.unwrap_or(2);
    if depth > 8 {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "depth is 0 to 8 levels below the prefix").field("depth"));
    }
    let prefix = crate::wire::prefix("prefix", params.prefix.as_deref())?;
    let base = prefix.as_deref().map_or(0, |p| p.split('.').count() as i64);
    let max_depth = base.max(1) + i64::from(depth);
    let rows = state.store.counters_under(prefix.as_deref(), max_depth).await.map_err(crate::store_problem)?;
    let top = if prefix.is_some() { base } else { 1 };
    let mut nodes: Vec<CountNode> = Vec::new();
    // Rows come ordered by prefix, so every node follows its parent.
    for r in rows {
        let node = CountNode { prefix: r.prefix, total: r.ok + r.errors, ok: r.ok, errors: r.errors, children: vec![] };
        if r.depth == top {
            nodes.push(node);
        } else if let Some(parent) = nodes.last_mut() {
            insert(parent, node);
        }
    }
    let total = nodes.iter().map(|n| n.total).sum();
    Ok(Json(Counts { nodes, total }))
}

fn insert(parent: &mut CountNode, node: CountNode) {
    match parent.children.last_mut() {
        Some(last) if node.prefix.starts_with(&format!("{}.", last.prefix)) => insert(last, node),
        _ => parent.children.push(node),
    }
}
