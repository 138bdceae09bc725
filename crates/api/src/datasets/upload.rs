//! `POST /api/v1/datasets`: the file into the object store, then a load job.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};
use vigia_domain::{DatasetName, LoadJob, columns};
use vigia_store::{DatasetRecord, JobRecord};

use super::{ColumnOut, dataset_name};
use crate::{ApiState, Problem, store_problem};

/// The largest file accepted. It is streamed, never held whole.
pub(crate) const MAX_UPLOAD: usize = 4 * 1024 * 1024 * 1024;
/// The header row must end within this many bytes.
const MAX_HEADER: usize = 1024 * 1024;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadParams {
    /// The dataset's name (table `dataset_<name>`). Required with a
    /// `text/csv` body; a multipart upload may give a `name` field or let
    /// the file's name serve instead.
    #[param(value_type = crate::wire::DatasetNameParam, inline, required = true)]
    name: Option<String>,
}

/// What an upload started.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Upload {
    dataset: String,
    /// The load job: `GET /api/v1/jobs/{job}`.
    job: String,
    /// `queued`, or `duplicate` when this very file was uploaded before (nothing new is loaded).
    status: String,
    digest: String,
    size: u64,
    /// The columns the header gives, sanitised where needed.
    columns: Vec<ColumnOut>,
}

/// The first line names columns (a letter or digit somewhere) and is not
/// JSON: `header_cells` refuses the rest, and the document says the same.
pub(crate) const HEADER_LINE: &str = r"^(?![\s\uFEFF]*[\[{])[^\r\n]*[A-Za-z0-9][^\r\n]*(?:\r?\n|$)";

/// A CSV file with a header row.
#[derive(Debug)]
struct AnyCsv;

impl utoipa::PartialSchema for AnyCsv {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(HEADER_LINE))
            .into()
    }
}

impl utoipa::ToSchema for AnyCsv {}

/// Upload a CSV dataset.
///
/// The body is the file (`text/csv`), or a `multipart/form-data` upload
/// with an optional `name` field before the file part. The file is kept in
/// the JetStream object store bucket `datasets` (chunked, SHA-256), and a
/// load job is queued; 202 answers with the job. The same file uploaded
/// again (same digest) is recognised and not loaded twice: 200 with the
/// dataset that has it. A different file under a name in use is 409.
#[utoipa::path(post, path = "/datasets", tag = "datasets", params(UploadParams),
    request_body(content = inline(AnyCsv), content_type = "text/csv",
        example = "PassengerId,Name,Sex,Fare\n1,\"Braund, Mr. Owen Harris\",male,7.25\n"),
    responses(
        (status = 202, description = "Stored and queued; `Location` is the job", body = Upload),
        (status = 200, description = "This file was uploaded before: nothing new is loaded", body = Upload),
        (status = 400, description = "No name, a bad name or no header row", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another file has this name", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 4 GiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS or the store did not answer; upload again", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn upload(
    State(state): State<ApiState>,
    Query(params): Query<UploadParams>,
    request: Request,
) -> Result<(StatusCode, HeaderMap, Json<Upload>), Problem> {
    let named = params.name.as_deref().filter(|n| !n.trim().is_empty()).map(|n| dataset_name("name", n)).transpose()?;
    let job_id = format!("load-{:016x}", rand::random::<u64>());
    let object = format!("{job_id}.csv");
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let mut reader = vigia_bus::ChunkReader::new(rx);
    let (fed, stored) = tokio::join!(feed(request, tx), state.bus.put_dataset_object(&object, &mut reader));
    let remove = || async {
        let _ = state.bus.delete_dataset_object(&object).await;
    };
    let fed = match fed {
        Ok(fed) => fed,
        Err(problem) => {
            remove().await;
            return Err(problem);
        }
    };
    let stored = stored.map_err(|e| unavailable(&e.to_string()))?;
    let checked = (|| {
        let name = match (named, fed.name_field.as_deref(), fed.file_name.as_deref()) {
            (Some(n), _, _) => n,
            (None, Some(n), _) => dataset_name("name", n)?,
            (None, None, Some(file)) => DatasetName::from_file_name(file).map_err(|e| {
                Problem::new(StatusCode::BAD_REQUEST, format!("{e}; or give one with ?name=")).field("name")
            })?,
            (None, None, None) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "name the dataset: POST /api/v1/datasets?name=titanic (or a multipart `name` field)",
                )
                .field("name"));
            }
        };
        let cells = header_cells(&fed.head)?;
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        let columns =
            columns(&cells).map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.to_string()).field("file"))?;
        Ok((name, columns))
    })();
    let (name, columns) = match checked {
        Ok(x) => x,
        Err(problem) => {
            remove().await;
            return Err(problem);
        }
    };
    let out_columns = || columns.iter().map(ColumnOut::from).collect();

    if let Some(existing) = state.store.dataset_by_digest(&stored.digest).await.map_err(store_problem)? {
        remove().await;
        let body = Upload {
            dataset: existing.name.clone(),
            job: existing.job.clone(),
            status: "duplicate".into(),
            digest: stored.digest,
            size: stored.size,
            columns: out_columns(),
        };
        return Ok((StatusCode::OK, location(&format!("/api/v1/datasets/{}", existing.name)), Json(body)));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let dataset = DatasetRecord {
        name: name.to_string(),
        object: object.clone(),
        digest: stored.digest.clone(),
        size: stored.size as i64,
        columns: columns.iter().map(|c| c.name.clone()).collect(),
        headers: columns.iter().map(|c| c.header.clone()).collect(),
        job: job_id.clone(),
        state: "queued".into(),
        rows: None,
        created_ms: now,
    };
    let job = JobRecord::queued(&job_id, &name, now);
    if !state.store.register_dataset(&dataset, &job).await.map_err(store_problem)? {
        remove().await;
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("a different file is already called `{name}`: DELETE /api/v1/datasets/{name} first, or choose another name"),
        )
        .field("name"));
    }
    let queued = state
        .bus
        .queue_job(vigia_bus::LOAD_JOB_SUBJECT, &job_id, LoadJob::new(&job_id, &name, &object).encode().into())
        .await;
    if let Err(e) = queued {
        // Undo, so that uploading again is not taken for a duplicate of a load that never ran.
        let _ = state.store.delete_dataset(&name).await;
        remove().await;
        return Err(unavailable(&e.to_string()));
    }
    tracing::info!(dataset = %name, job = job_id, size = stored.size, "Dataset uploaded; load queued.");
    let body = Upload {
        dataset: name.to_string(),
        job: job_id.clone(),
        status: "queued".into(),
        digest: stored.digest,
        size: stored.size,
        columns: out_columns(),
    };
    Ok((StatusCode::ACCEPTED, location(&format!("/api/v1/jobs/{job_id}")), Json(body)))
}

fn location(path: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(path) {
        headers.insert(header::LOCATION, v);
    }
    headers
}

fn unavailable(reason: &str) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("the upload could not be kept ({reason}); upload it again"))
}

/// The header row's cells, from the first bytes of the file.
fn header_cells(head: &[u8]) -> Result<Vec<String>, Problem> {
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, detail).field("file");
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    if text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}').starts_with(['{', '[']) {
        return Err(bad("this looks like JSON, not CSV: send a CSV file whose first line names the columns".into()));
    }
    if !head.is_empty() && !line.iter().any(u8::is_ascii_alphanumeric) {
        return Err(
            bad("the first line names no column: it must name the columns, e.g. `PassengerId,Name,Sex`".into()),
        );
    }
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(head);
    let mut record = csv::ByteRecord::new();
    match csv.read_byte_record(&mut record) {
        Ok(true) => Ok(record.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect()),
        Ok(false) => Err(bad("the file is empty: send a CSV file whose first line names the columns".into())),
        Err(e) => Err(bad(format!("the header row is not CSV ({e})"))),
    }
}

/// What the request said besides the file's bytes.
struct Fed {
    /// The first bytes of the file, through the end of the header row.
    head: Vec<u8>,
    name_field: Option<String>,
    file_name: Option<String>,
}

/// Sends the file's bytes on `tx`: the body, or the file part of a multipart
/// upload (a `name` text field may come before it). Refuses files over
/// [`MAX_UPLOAD`] and header rows over [`MAX_HEADER`].
async fn feed(request: Request, tx: mpsc::Sender<std::io::Result<Bytes>>) -> Result<Fed, Problem> {
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, detail);
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut fed = Fed { head: Vec::new(), name_field: None, file_name: None };
    let mut sink = Sink { tx, total: 0 };
    if !is_multipart {
        let mut body = request.into_body().into_data_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| bad(format!("could not read the body: {e}")))?;
            sink.send(chunk, &mut fed.head).await?;
        }
        return sink.finish(fed);
    }
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| bad(e.to_string()))?;
    while let Some(mut field) = multipart.next_field().await.map_err(|e| bad(e.to_string()))? {
        if field.file_name().is_none() && field.name() != Some("file") {
            if field.name() == Some("name") {
                fed.name_field = Some(field.text().await.map_err(|e| bad(e.to_string()))?.trim().to_owned());
            }
            continue;
        }
        fed.file_name = field.file_name().map(str::to_owned);
        while let Some(chunk) = field.chunk().await.map_err(|e| bad(e.to_string()))? {
            sink.send(chunk, &mut fed.head).await?;
        }
        return sink.finish(fed);
    }
    Err(bad("the multipart upload has no file: send the CSV as a part named `file`".into()))
}

struct Sink {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    total: usize,
}

impl Sink {
    async fn send(&mut self, chunk: Bytes, head: &mut Vec<u8>) -> Result<(), Problem> {
        self.total += chunk.len();
        if self.total > MAX_UPLOAD {
            let _ = self.tx.send(Err(std::io::Error::other("too large"))).await;
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the file is over {MAX_UPLOAD} bytes: split it and upload the parts as datasets of their own"),
            ));
        }
        if !head.contains(&b'\n') {
            head.extend_from_slice(&chunk[..chunk.len().min(MAX_HEADER + 1 - head.len().min(MAX_HEADER))]);
            if head.len() > MAX_HEADER && !head.contains(&b'\n') {
                let _ = self.tx.send(Err(std::io::Error::other("header too long"))).await;
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("the header row is longer than {MAX_HEADER} bytes: is this a CSV file?"),
                )
                .field("file"));
            }
        }
        self.tx.send(Ok(chunk)).await.map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the object store stopped reading the upload; upload it again",
            )
        })
    }

    fn finish(self, fed: Fed) -> Result<Fed, Problem> {
        drop(self.tx);
        Ok(fed)
    }
}
