//! `/api/v1/datasets` and `/api/v1/jobs`: arbitrary CSV files, kept in the
//! JetStream object store and loaded into `dataset_<name>` by `vigia load`.
//!
//! An upload streams the body into the `datasets` bucket (never held whole),
//! reads the header on the way to name the columns, recognises a file
//! already uploaded by its SHA-256 digest, registers the dataset and queues
//! a load job on `JOBS`; it answers 202 with the job. Queries are in `rows`.

mod cache;
pub(crate) mod rows;
pub(crate) mod upload;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use vigia_domain::DatasetName;
use vigia_store::{DatasetRecord, JobProgress};

pub use cache::DatasetCache;
pub(crate) use upload::MAX_UPLOAD;

use crate::wire::{DatasetNamePath, JobIdPath};
use crate::{ApiState, Problem, store_problem};

/// A column: its field name in the table and the header cell it came from.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ColumnOut {
    name: String,
    header: String,
    /// True when the header was not a usable field name and was sanitised.
    renamed: bool,
}

impl From<&vigia_domain::Column> for ColumnOut {
    fn from(c: &vigia_domain::Column) -> Self {
        ColumnOut { renamed: c.renamed(), name: c.name.clone(), header: c.header.clone() }
    }
}

/// A dataset as registered.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DatasetOut {
    name: String,
    /// The SurrealDB table holding its rows.
    table: String,
    /// `queued`, `loading`, `ready` or `failed`.
    state: String,
    /// Rows loaded, once ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<i64>,
    columns: Vec<ColumnOut>,
    /// `SHA-256=<base64url>` of the uploaded file.
    digest: String,
    size: i64,
    /// The object holding the file in the `datasets` bucket.
    object: String,
    /// The load job (`GET /api/v1/jobs/{id}`).
    job: String,
    created_ms: i64,
}

impl From<&DatasetRecord> for DatasetOut {
    fn from(d: &DatasetRecord) -> Self {
        DatasetOut {
            table: format!("dataset_{}", d.name),
            name: d.name.clone(),
            state: d.state.clone(),
            rows: d.rows,
            columns: d.columns().iter().map(ColumnOut::from).collect(),
            digest: d.digest.clone(),
            size: d.size,
            object: d.object.clone(),
            job: d.job.clone(),
            created_ms: d.created_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DatasetList {
    datasets: Vec<DatasetOut>,
}

/// A load job and its progress.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobOut {
    id: String,
    kind: String,
    dataset: String,
    /// `queued`, `running`, `done` or `failed`.
    state: String,
    /// Times a loader started it; more than 1 after a retry or a killed loader.
    attempts: i64,
    /// Chunks the latest attempt found committed and skipped.
    resumed_chunks: i64,
    chunks_done: u64,
    rows_loaded: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunks_total: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows_total: Option<i64>,
    chunk_rows: i64,
    parallelism: i64,
    /// Why the latest attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    queued_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_ms: Option<i64>,
    /// Rows per second from the first start to the finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    rows_per_second: Option<f64>,
}

impl From<JobProgress> for JobOut {
    fn from(p: JobProgress) -> Self {
        let j = p.job;
        let rows_per_second = match (j.started_ms, j.finished_ms, j.rows_total) {
            (Some(s), Some(f), Some(rows)) if j.state == "done" => Some(rows as f64 * 1000.0 / (f - s).max(1) as f64),
            _ => None,
        };
        JobOut {
            id: j.id,
            kind: j.kind,
            dataset: j.dataset,
            state: j.state,
            attempts: j.attempts,
            resumed_chunks: j.resumed_chunks,
            chunks_done: p.chunks_done,
            rows_loaded: p.rows_loaded,
            chunks_total: j.chunks_total,
            rows_total: j.rows_total,
            chunk_rows: j.chunk_rows,
            parallelism: j.parallelism,
            error: j.error,
            queued_ms: j.queued_ms,
            started_ms: j.started_ms,
            finished_ms: j.finished_ms,
            rows_per_second,
        }
    }
}

pub(crate) fn dataset_name(field: &str, raw: &str) -> Result<DatasetName, Problem> {
    DatasetName::parse(raw).map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.to_string()).field(field))
}

pub(crate) fn not_found(name: &DatasetName) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("no dataset `{name}`: GET /api/v1/datasets lists them, POST /api/v1/datasets?name={name} uploads one"),
    )
    .field("name")
}

/// Every dataset, by name.
#[utoipa::path(get, path = "/datasets", tag = "datasets",
    responses((status = 200, body = DatasetList),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list(State(state): State<ApiState>) -> Result<Json<DatasetList>, Problem> {
    let all = state.store.datasets().await.map_err(store_problem)?;
    Ok(Json(DatasetList { datasets: all.iter().map(DatasetOut::from).collect() }))
}

/// Removes a dataset: its table's rows, its registration and its file in the object store.
#[utoipa::path(delete, path = "/datasets/{name}", tag = "datasets",
    params(crate::wire::DatasetNamePath),
    responses((status = 204, description = "Removed"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    Path(DatasetNamePath { name }): Path<DatasetNamePath>,
) -> Result<StatusCode, Problem> {
    let name = dataset_name("name", &name)?;
    let dataset = state.store.dataset(&name).await.map_err(store_problem)?.ok_or_else(|| not_found(&name))?;
    state.store.delete_dataset(&name).await.map_err(store_problem)?;
    state.datasets.forget(name.as_str());
    if let Err(e) = state.bus.delete_dataset_object(&dataset.object).await {
        tracing::warn!(dataset = %name, object = dataset.object, error = %e, "The dataset is gone; its file was not removed.");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A load job and its progress.
#[utoipa::path(get, path = "/jobs/{id}", tag = "datasets",
    params(JobIdPath),
    responses((status = 200, body = JobOut),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn job(
    State(state): State<ApiState>,
    Path(JobIdPath { id }): Path<JobIdPath>,
) -> Result<Json<JobOut>, Problem> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!(
                "`{id}` is not a job id: use the `job` that POST /api/v1/datasets answered, e.g. load-1a2b3c4d5e6f7a8b"
            ),
        )
        .field("id"));
    }
    let job = state.store.job(&id).await.map_err(store_problem)?.ok_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, format!("no job `{id}`: POST /api/v1/datasets answers with the job id"))
            .field("id")
    })?;
    Ok(Json(JobOut::from(job)))
}
