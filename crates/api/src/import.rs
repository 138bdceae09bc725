//! `POST /api/v1/events/import`: CSV backfill through the log.
//!
//! Each row becomes its own message on `<tag>` with the message id
//! `csv:<tag>:<ts_ms>`, so uploading the same file again within the stream's
//! duplicate window stores nothing new and the report says which rows were
//! duplicates. Rows that cannot be stored at all (no tag, no time) are
//! reported with their line and reason; a bad value is stored as an error
//! event, like a device's.

use std::collections::VecDeque;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use vigia_domain::{ImportHeader, ImportRow};

use crate::{ApiState, Problem};

/// The largest file accepted.
pub(crate) const MAX_IMPORT: usize = 256 * 1024 * 1024;
/// Publishes awaiting their acknowledgement at once.
const IN_FLIGHT: usize = 1024;
/// Rejected rows listed in the report (all are counted).
const LISTED: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportParams {
    /// Tag prefix for `equipmentId` files (`plant1.area3` makes `plant1.area3.EQ-12495`); with
    /// `tag` files, rows outside it are rejected. `prefix` is accepted as a synonym.
    #[serde(alias = "prefix")]
    root: Option<String>,
    /// Answer once the persister has stored every accepted row.
    #[serde(default)]
    wait: bool,
}

/// A row that was not imported.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Rejected {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<&'static str>,
    reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImportReport {
    /// Rows newly written to the log.
    accepted: u64,
    /// Rows the log already had (same tag and time, uploaded before within the duplicate window).
    duplicates: u64,
    /// Rows refused; the first 1000 are listed in `errors`.
    rejected: u64,
    errors: Vec<Rejected>,
    /// True once every accepted row is stored (only with `?wait=true`).
    stored: bool,
}

/// Import readings from CSV.
///
/// Send the file as the body (`text/csv`) or as the first file of a
/// `multipart/form-data` upload. Header `tag,timestamp,value` or
/// `equipmentId,timestamp,value` (with `root`), optionally `unit`, any order.
#[utoipa::path(
    post,
    path = "/events/import",
    tag = "events",
    params(ImportParams),
    request_body(content = String, content_type = "text/csv",
        example = "equipmentId,timestamp,value\nEQ-12495,2023-02-15T01:30:00.000-05:00,78.42\n"),
    responses(
        (status = 200, description = "The report", body = ImportReport),
        (status = 400, description = "Bad header, root or encoding", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn import(
    State(state): State<ApiState>,
    Query(params): Query<ImportParams>,
    request: Request,
) -> Result<Json<ImportReport>, Problem> {
    let body = file_of(request).await?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(body.as_ref());
    let header = reader.headers().map_err(|e| bad(format!("the header row is not CSV ({e})")))?.clone();
    let fields: Vec<&str> = header.iter().collect();
    let header = ImportHeader::parse(&fields).map_err(|e| bad(e.to_string()))?;
    let root = params.root.as_deref().map(str::trim).filter(|r| !r.is_empty());
    header.check_root(root).map_err(|e| bad(e.to_string()).field("root"))?;

    let publisher = state.bus.publisher();
    let mut report = ImportReport { accepted: 0, duplicates: 0, rejected: 0, errors: Vec::new(), stored: false };
    let mut pending = VecDeque::new();
    let mut seqs = Vec::new();
    for record in reader.records() {
        let row = match record {
            Err(e) => Err(Rejected {
                line: e.position().map_or(0, |p| p.line()),
                column: None,
                reason: format!("not CSV: {e}"),
            }),
            Ok(r) => {
                let line = r.position().map_or(0, |p| p.line());
                let cells: Vec<&str> = r.iter().collect();
                header.row(line, &cells, root).map_err(|e| Rejected {
                    line: e.line,
                    column: e.column,
                    reason: e.reason,
                })
            }
        };
        let row: ImportRow = match row {
            Ok(row) => row,
            Err(rejected) => {
                report.rejected += 1;
                if report.errors.len() < LISTED {
                    report.errors.push(rejected);
                }
                continue;
            }
        };
        let (headers, payload) = vigia_bus::Publisher::batch_message(std::slice::from_ref(&row.item));
        let ack = publisher
            .send(row.tag.to_string(), Some(headers), payload, Some(&row.msg_id))
            .await
            .map_err(|e| unavailable(e.to_string(), &report))?;
        pending.push_back(ack);
        if pending.len() >= IN_FLIGHT {
            settle(pending.pop_front(), &mut report, &mut seqs).await?;
        }
    }
    while let Some(ack) = pending.pop_front() {
        settle(Some(ack), &mut report, &mut seqs).await?;
    }
    if params.wait && !seqs.is_empty() {
        crate::ingest::wait_stored(&state, &seqs).await?;
        report.stored = true;
    }
    Ok(Json(report))
}

async fn settle(
    ack: Option<async_nats::jetstream::context::PublishAckFuture>,
    report: &mut ImportReport,
    seqs: &mut Vec<u64>,
) -> Result<(), Problem> {
    let Some(ack) = ack else { return Ok(()) };
    let ack = ack.await.map_err(|e| unavailable(e.to_string(), report))?;
    if ack.duplicate {
        report.duplicates += 1;
    } else {
        report.accepted += 1;
        seqs.push(ack.sequence);
    }
    Ok(())
}

fn bad(detail: String) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, detail)
}

fn unavailable(reason: String, report: &ImportReport) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the log stopped confirming publishes ({reason}) after {} rows; upload the file again: rows already stored \
             are recognised as duplicates within the duplicate window",
            report.accepted + report.duplicates
        ),
    )
}

/// The CSV bytes: the body itself, or the first file of a multipart upload.
async fn file_of(request: Request) -> Result<Bytes, Problem> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_multipart {
        return Bytes::from_request(request, &())
            .await
            .map_err(|e| bad(format!("could not read the body ({e}); files are at most {MAX_IMPORT} bytes")));
    }
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| bad(e.to_string()))?;
    while let Some(field) = multipart.next_field().await.map_err(|e| bad(e.to_string()))? {
        if field.file_name().is_some() || field.name() == Some("file") {
            return field.bytes().await.map_err(|e| bad(e.to_string()));
        }
    }
    Err(bad("the multipart upload has no file: send the CSV as a part named `file`".into()))
}
