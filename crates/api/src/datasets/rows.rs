//! `GET /api/v1/datasets/{name}`: a dataset's rows, filtered, sorted, paged.
//!
//! The rows of a loaded dataset are read once into the cache (in file
//! order) and every query then runs in memory with `vigia_domain`'s
//! `DatasetQuery`; a dataset too big for the cache is read for each query.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use vigia_domain::{DatasetName, DatasetQuery};
use vigia_store::DatasetRecord;

use super::cache::Rows;
use super::{dataset_name, not_found};
use crate::wire::DatasetNamePath;
use crate::{ApiState, Problem, store_problem};

/// Rows read from the store per query.
const PAGE: u64 = 10_000;

/// One page of a dataset.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DatasetPage {
    dataset: String,
    /// Field names in the file's order; each row has all of them.
    columns: Vec<String>,
    /// Rows that match the filters, over all pages.
    total: u64,
    offset: u64,
    count: u64,
    /// Each row with its position in the file (`_row`, from 0) and its cells as text.
    #[schema(value_type = Vec<Object>)]
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Rows of a dataset. Filter with `<column>=<op>:<value>` for any column
/// (case-insensitive names; ops `eq, neq, like, lt, gt, lte, gte`; a bare
/// value means `eq`; numeric comparison when both sides are numbers; `like`
/// is a case-insensitive substring, or a SQL pattern with `%`), sort with
/// `sort=Name:desc,Sex:asc`, page with `limit=<offset>,<count>`. File order by default.
#[utoipa::path(get, path = "/datasets/{name}", tag = "datasets",
    params(DatasetNamePath, crate::wire::DatasetRowsParams),
    responses((status = 200, body = DatasetPage),
        (status = 400, description = "An unknown column, a bad sort or limit: `field` names the parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not loaded yet (or the load failed): see its job", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn query_dataset(
    State(state): State<ApiState>,
    Path(DatasetNamePath { name }): Path<DatasetNamePath>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<DatasetPage>, Problem> {
    let name = dataset_name("name", &name)?;
    let dataset = state.store.dataset(&name).await.map_err(store_problem)?.ok_or_else(|| not_found(&name))?;
    if dataset.state != "ready" {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "dataset `{name}` is {} (job {}): poll GET /api/v1/jobs/{} until it is done",
                dataset.state, dataset.job, dataset.job
            ),
        )
        .field("name"));
    }
    let columns = dataset.columns();
    let query = DatasetQuery::from_pairs(&pairs, &columns)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.to_string()).field(e.param()))?;
    let rows = rows(&state, &name, &dataset).await?;
    let (total, page) = query.run(&rows);
    let rows = page
        .into_iter()
        .map(|i| {
            let mut o = serde_json::Map::with_capacity(columns.len() + 1);
            o.insert("_row".into(), i.into());
            for (c, cell) in columns.iter().zip(&rows[i]) {
                o.insert(c.name.clone(), serde_json::Value::String(cell.clone()));
            }
            o
        })
        .collect::<Vec<_>>();
    Ok(Json(DatasetPage {
        dataset: name.to_string(),
        columns: columns.into_iter().map(|c| c.name).collect(),
        total,
        offset: query.offset,
        count: rows.len() as u64,
        rows,
    }))
}

/// Every row of a loaded dataset, from the cache or the store.
async fn rows(state: &ApiState, name: &DatasetName, dataset: &DatasetRecord) -> Result<Rows, Problem> {
    if let Some(rows) = state.datasets.get(name.as_str(), &dataset.job) {
        return Ok(rows);
    }
    let columns = dataset.columns();
    let expected = dataset.rows.unwrap_or(0).max(0) as u64;
    let mut all: Vec<Vec<String>> = Vec::with_capacity(expected as usize);
    loop {
        let page = state.store.dataset_rows(name, &columns, all.len() as u64, PAGE).await.map_err(store_problem)?;
        let n = page.len() as u64;
        for (position, cells) in page {
            if position != all.len() as u64 {
                return Err(Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("dataset `{name}` is damaged: row {} is missing; upload it again", all.len()),
                ));
            }
            all.push(cells);
        }
        if n < PAGE {
            break;
        }
    }
    if all.len() as u64 != expected {
        return Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("dataset `{name}` has {} rows stored, {expected} loaded; upload it again", all.len()),
        ));
    }
    let rows = Arc::new(all);
    state.datasets.put(name.as_str(), &dataset.job, rows.clone());
    Ok(rows)
}
