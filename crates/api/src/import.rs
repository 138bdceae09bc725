//! `POST /api/v1/events/import`: CSV backfill through the log.
//!
//! Each row becomes its own message on `<tag>` with the message id
//! `csv:<tag>:<ts_ms>`. A row whose tag and time are already stored is not
//! published at all, and the message id catches uploads racing within the
//! stream's duplicate window, so uploading the same file again, however much
//! later, stores nothing new; the report counts those rows as duplicates. Rows that cannot be stored at all (no tag, no time) are
//! reported with their line and reason; a bad value is stored as an error
//! event, like a device's.

use std::collections::{HashMap, HashSet, VecDeque};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{StatusCode, header};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};
use vigia_domain::{BLOCK_SPAN_MS, ImportHeader, ImportRow};

use crate::{ApiState, Problem};

/// The largest file accepted. It is streamed, never held whole.
pub(crate) const MAX_IMPORT: usize = 4 * 1024 * 1024 * 1024;
/// Publishes awaiting their acknowledgement at once.
const IN_FLIGHT: usize = 1024;
/// Rejected rows listed in the report (all are counted).
const LISTED: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportParams {
    /// Tag prefix for `equipmentId` files (`plant1.area3` makes `plant1.area3.EQ-12495`); with
    /// `tag` files, rows outside it are rejected. Its first token is one of the configured roots.
    /// `prefix` is accepted as a synonym. Empty or absent: none.
    #[serde(alias = "prefix")]
    #[param(value_type = Option<crate::wire::ImportRootParam>, inline)]
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
    /// Rows already stored or repeated in the file (same tag and time): not written again.
    duplicates: u64,
    /// Rows refused; the first 1000 are listed in `errors`.
    rejected: u64,
    errors: Vec<Rejected>,
    /// True once every accepted row is stored (only with `?wait=true`).
    stored: bool,
}

/// A CSV file whose header is `tag,timestamp,value[,unit]`.
#[derive(Debug)]
struct CsvFile;

impl utoipa::PartialSchema for CsvFile {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^tag,timestamp,value(?:,unit)?(?:\r?\n|$)"))
            .into()
    }
}

impl ToSchema for CsvFile {}

/// Import readings from CSV.
///
/// Send the file as the body (`text/csv`) or as the first file of a
/// `multipart/form-data` upload. Header `tag,timestamp,value` or
/// `equipmentId,timestamp,value` (with `root`), optionally `unit`, in any
/// order and any case; the schema states the canonical `tag` header only,
/// because it cannot tie an `equipmentId` column to the `root` parameter.
/// Rows that cannot be stored are listed in the report; only a bad header,
/// `root` or body refuses the whole file.
#[utoipa::path(
    post,
    path = "/events/import",
    tag = "events",
    params(ImportParams),
    request_body(content = inline(CsvFile), content_type = "text/csv",
        example = "tag,timestamp,value\nbrasil.sudeste.sensor01,2023-02-15T01:30:00.000-05:00,78.42\n"),
    responses(
        (status = 200, description = "The report", body = ImportReport),
        (status = 400, description = "Bad header, root or encoding", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 4 GiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log stopped confirming publishes (upload the file again), or the store is further \
            behind the log than `[backpressure]` allows (with `Retry-After` and the lag)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "In the log, not stored within 10 s (`?wait=true`); it will be", body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn import(
    State(state): State<ApiState>,
    Query(params): Query<ImportParams>,
    request: Request,
) -> Result<Json<ImportReport>, Problem> {
    let root = import_root(&state.roots, params.root)?;
    state.pressure.admit(&state.bus).await?;
    let (chunk_tx, chunk_rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let (row_tx, mut row_rx) = mpsc::channel::<Parsed>(4096);
    let parser =
        tokio::task::spawn_blocking(move || parse(vigia_bus::BlockingReader::new(chunk_rx), root.as_deref(), &row_tx));

    let feed = feed(request, chunk_tx);
    let publish = async {
        let publisher = state.bus.publisher();
        let mut report = ImportReport { accepted: 0, duplicates: 0, rejected: 0, errors: Vec::new(), stored: false };
        let mut pending = VecDeque::new();
        let mut seqs = Vec::new();
        let mut stored = Stored::default();
        while let Some(parsed) = row_rx.recv().await {
            let row: ImportRow = match parsed {
                Parsed::Fatal(problem) => return Err(problem),
                Parsed::Rejected(rejected) => {
                    report.rejected += 1;
                    if report.errors.len() < LISTED {
                        report.errors.push(rejected);
                    }
                    continue;
                }
                Parsed::Row(row) if !state.roots.iter().any(|r| r == row.tag.root()) => {
                    report.rejected += 1;
                    if report.errors.len() < LISTED {
                        report.errors.push(Rejected {
                            line: row.line,
                            column: Some("tag"),
                            reason: format!(
                                "`{}` is outside the configured roots ({})",
                                row.tag,
                                state.roots.join(", ")
                            ),
                        });
                    }
                    continue;
                }
                Parsed::Row(row) if row.ts_ms > crate::wire::LAST_MS => {
                    report.rejected += 1;
                    if report.errors.len() < LISTED {
                        report.errors.push(Rejected {
                            line: row.line,
                            column: Some("timestamp"),
                            reason: "the time is past the year 9999".into(),
                        });
                    }
                    continue;
                }
                Parsed::Row(row) => row,
            };
            if stored.contains(&state, &row).await? {
                report.duplicates += 1;
                continue;
            }
            let (mut headers, payload) = vigia_bus::Publisher::batch_message(std::slice::from_ref(&row.item));
            // An import is history, whatever the rows' times: stored and counted, never alerted on.
            headers.insert(vigia_domain::BACKFILL_HEADER, "true");
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
        Ok((report, seqs))
    };
    let (fed, published) = tokio::join!(feed, publish);
    // A body error explains a parse that stopped early, so it is reported first.
    fed?;
    let (mut report, seqs) = published?;
    parser.await.map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, format!("CSV parser failed: {e}")))?;
    if params.wait && !seqs.is_empty() {
        crate::ingest::wait_stored(&state, &seqs).await?;
        report.stored = true;
    }
    Ok(Json(report))
}

/// The `root` parameter: empty is none; otherwise its first token must be a
/// configured root (the domain checks the rest once the header is read).
pub(crate) fn import_root(roots: &[String], root: Option<String>) -> Result<Option<String>, Problem> {
    let Some(r) = root.filter(|r| !r.is_empty()) else { return Ok(None) };
    if !r.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        return Err(bad(format!(
            "`{r}` is not a tag prefix: use tokens of [A-Za-z0-9_-] separated by dots, e.g. plant1.area3"
        ))
        .field("root"));
    }
    if !roots.iter().any(|known| Some(known.as_str()) == r.split('.').next()) {
        return Err(bad(format!(
            "`{r}` is outside the configured roots ({}): start `root` with one of them",
            roots.join(", ")
        ))
        .field("root"));
    }
    Ok(Some(r))
}

/// Readings already in the store, by tag and hour, so that a file uploaded
/// again after the stream's duplicate window still stores nothing new. The
/// message id covers uploads racing within the window.
#[derive(Default)]
struct Stored {
    hours: HashMap<(String, i64), HashSet<i64>>,
}

impl Stored {
    async fn contains(&mut self, state: &ApiState, row: &ImportRow) -> Result<bool, Problem> {
        let hour = row.ts_ms.div_euclid(BLOCK_SPAN_MS) * BLOCK_SPAN_MS;
        let key = (row.tag.to_string(), hour);
        if !self.hours.contains_key(&key) {
            if self.hours.len() >= 10_000 {
                self.hours.clear();
            }
            let events = state
                .store
                .tag_events(row.tag.as_str(), hour, hour, crate::SCAN_CAP)
                .await
                .map_err(crate::store_problem)?;
            let times = events.iter().map(|e| e.reading.ts_ms).collect();
            self.hours.insert(key.clone(), times);
        }
        let times = self.hours.get_mut(&key).expect("inserted above");
        // A second row with the same tag and time in this file is a duplicate too.
        Ok(!times.insert(row.ts_ms))
    }
}

/// What the parser hands the publisher.
enum Parsed {
    Row(ImportRow),
    Rejected(Rejected),
    /// The whole file is refused (header, root, unreadable body).
    Fatal(Problem),
}

/// Runs on a blocking thread: reads CSV from the body chunks and sends rows.
fn parse(reader: vigia_bus::BlockingReader, root: Option<&str>, tx: &mpsc::Sender<Parsed>) {
    let send = |p: Parsed| tx.blocking_send(p).is_ok();
    let mut csv = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(reader);
    let header = match csv.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            send(Parsed::Fatal(bad(format!("the header row is not CSV ({e})"))));
            return;
        }
    };
    let fields: Vec<&str> = header.iter().collect();
    let header = match ImportHeader::parse(&fields) {
        Ok(h) => h,
        Err(e) => {
            send(Parsed::Fatal(bad(e.to_string())));
            return;
        }
    };
    if let Err(e) = header.check_root(root) {
        send(Parsed::Fatal(bad(e.to_string()).field("root")));
        return;
    }
    for record in csv.records() {
        let parsed = match record {
            // The body itself failed (too large, client gone): the feeder reports it.
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return,
            Err(e) => Parsed::Rejected(Rejected {
                line: e.position().map_or(0, |p| p.line()),
                column: None,
                reason: format!("not CSV: {e}"),
            }),
            Ok(r) => {
                let line = r.position().map_or(0, |p| p.line());
                let cells: Vec<&str> = r.iter().collect();
                match header.row(line, &cells, root) {
                    Ok(row) => Parsed::Row(row),
                    Err(e) => Parsed::Rejected(Rejected { line: e.line, column: e.column, reason: e.reason }),
                }
            }
        };
        if !send(parsed) {
            return;
        }
    }
}

/// Sends the file's bytes to the parser as they arrive: the request body, or
/// the first file of a multipart upload. Refuses files over [`MAX_IMPORT`].
async fn feed(request: Request, tx: mpsc::Sender<std::io::Result<Bytes>>) -> Result<(), Problem> {
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the file is over {MAX_IMPORT} bytes: split it and upload the parts"),
        )
    };
    let mut total = 0usize;
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_multipart {
        let mut body = request.into_body().into_data_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| bad(format!("could not read the body: {e}")))?;
            total += chunk.len();
            if total > MAX_IMPORT {
                let _ = tx.send(Err(std::io::Error::other("too large"))).await;
                return Err(too_large());
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(()); // The parser stopped (a fatal header error); it reports why.
            }
        }
        return Ok(());
    }
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| bad(e.to_string()))?;
    while let Some(mut field) = multipart.next_field().await.map_err(|e| bad(e.to_string()))? {
        if field.file_name().is_none() && field.name() != Some("file") {
            continue;
        }
        while let Some(chunk) = field.chunk().await.map_err(|e| bad(e.to_string()))? {
            total += chunk.len();
            if total > MAX_IMPORT {
                let _ = tx.send(Err(std::io::Error::other("too large"))).await;
                return Err(too_large());
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(());
            }
        }
        return Ok(());
    }
    Err(bad("the multipart upload has no file: send the CSV as a part named `file`".into()))
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
