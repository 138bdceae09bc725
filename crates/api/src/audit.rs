//! `GET /api/v1/audit`: loss accounting, the log against the store.
//!
//! The log side reads every READINGS message of the roots concerned (an
//! audit is a full read of what the stream keeps, not a hot path) and
//! decodes it the way the persister does; JetStream's own per-subject counts
//! are reported beside it. The store side reads the stored events of the same
//! tags and times. `vigia_domain::reconcile` does the comparison; `vigia
//! audit` prints the same report and fails on any gap or duplicate.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};
use vigia_bus::{Bus, READINGS};
use vigia_domain::{Change, EventId, LogEvent, Logged, TagAudit, decode_message, reconcile};
use vigia_store::Store;

use crate::{ApiState, Problem};

/// Gap and duplicate ids listed per tag; the counts are always complete.
const LISTED: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// A tag prefix (`brasil.sudeste`); all roots when absent.
    #[param(value_type = Option<crate::wire::PrefixParam>, inline)]
    prefix: Option<String>,
    /// Readings at or after this time (unix ms or RFC 3339).
    #[serde(default, deserialize_with = "crate::wire::empty_as_none")]
    #[param(value_type = Option<crate::wire::TimeParam>, inline)]
    from: Option<String>,
    /// Readings at or before this time.
    #[serde(default, deserialize_with = "crate::wire::empty_as_none")]
    #[param(value_type = Option<crate::wire::TimeParam>, inline)]
    to: Option<String>,
}

/// One tag: the log's count against the store's.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TagReport {
    pub tag: String,
    /// Events the log holds for this tag in the window (after retractions).
    pub in_log: u64,
    /// Of those, messages on the tag's own subject, as JetStream counts them (device messages).
    pub subject_messages: u64,
    /// Distinct events of the tag the store holds in the window.
    pub stored: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// Events in the log the store does not have.
    pub gap_count: usize,
    /// The first of them, as event ids (`seq-idx`).
    pub gaps: Vec<String>,
    /// Events stored more than once: must be zero.
    pub duplicate_count: usize,
    pub duplicates: Vec<String>,
    /// Messages of this tag set aside as dead letters (see `/dead-letters`).
    pub dead_lettered: Vec<u64>,
    /// Stored events older than anything the stream still keeps.
    pub beyond_log: u64,
}

/// The whole audit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditReport {
    /// True when no tag has a gap or a duplicate.
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<i64>,
    /// The stream's sequences read, first to last.
    pub log_first_seq: u64,
    pub log_last_seq: u64,
    pub in_log: u64,
    pub stored: u64,
    pub gaps: usize,
    pub duplicates: usize,
    pub dead_lettered: usize,
    pub tags: Vec<TagReport>,
}

/// What can stop an audit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the log could not be read: {0}")]
    Bus(#[from] vigia_bus::BusError),
    #[error(transparent)]
    Store(#[from] vigia_store::StoreError),
}

fn under(tag: &str, prefix: Option<&str>) -> bool {
    prefix.is_none_or(|p| vigia_domain::is_under(tag, p))
}

/// Reconciles the log with the store for `prefix` (or every root) and readings in `[from, to]`.
pub async fn audit(
    bus: &Bus,
    store: &Store,
    roots: &[String],
    prefix: Option<&str>,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<AuditReport, AuditError> {
    let (lo, hi) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
    // Raw events before the retention horizon are gone from the store on purpose.
    let horizon = store.horizon().await?.unwrap_or(i64::MIN);
    let in_window = |tag: &str, ts: i64| under(tag, prefix) && (lo..=hi).contains(&ts) && ts >= horizon;
    let wanted_roots: Vec<&String> =
        roots.iter().filter(|r| prefix.is_none_or(|p| p == r.as_str() || under(p, Some(r)))).collect();

    let mut logged: Vec<Logged> = Vec::new();
    let mut retracted: HashSet<EventId> = HashSet::new();
    let mut subject_counts: BTreeMap<String, u64> = BTreeMap::new();
    let (mut first_seq, mut last_seq) = (u64::MAX, 0u64);
    let never = CancellationToken::new();
    for root in wanted_roots {
        let filter = format!("{root}.>");
        let counts = bus.subject_counts(READINGS, &filter).await?;
        let expected: u64 = counts.values().sum();
        subject_counts.extend(counts);
        if expected == 0 {
            continue;
        }
        let (mut reader, first, last) = bus.read_log(READINGS, &filter).await?;
        first_seq = first_seq.min(first);
        last_seq = last_seq.max(last);
        let mut seen = 0u64;
        'read: while seen < expected {
            let Some(batch) = reader.next(&never).await? else { break };
            for d in batch {
                if d.seq > last {
                    break 'read;
                }
                seen += 1;
                match decode_message(d.subject(), d.event(), d.version(), d.payload(), d.published_ms) {
                    LogEvent::Change(_, Change::Retract(c)) => {
                        retracted.insert(c.target);
                    }
                    LogEvent::Change(..) => {}
                    other => {
                        for (i, r) in other.into_readings().into_iter().enumerate() {
                            if in_window(r.tag.as_str(), r.ts_ms) {
                                let id = EventId { seq: d.seq, idx: i as u32 };
                                logged.push(Logged { id, tag: r.tag.to_string() });
                            }
                        }
                    }
                }
            }
        }
    }
    if first_seq == u64::MAX {
        first_seq = 0;
    }

    let stored: Vec<(EventId, String)> = store
        .events_window(prefix, from, to, usize::MAX)
        .await?
        .into_iter()
        .filter(|e| in_window(e.reading.tag.as_str(), e.reading.ts_ms))
        .map(|e| (e.id, e.reading.tag.to_string()))
        .collect();
    let dead: BTreeSet<u64> = store
        .dead_letters(0, usize::MAX >> 1)
        .await?
        .into_iter()
        .filter(|d| d.stream == READINGS)
        .map(|d| d.seq as u64)
        .collect();
    let tags: Vec<TagReport> = reconcile(&logged, &retracted, &stored, &dead, first_seq)
        .into_iter()
        .map(|t| report(t, &subject_counts))
        .collect();
    Ok(AuditReport {
        ok: tags.iter().all(|t| t.gap_count == 0 && t.duplicate_count == 0),
        prefix: prefix.map(str::to_owned),
        from,
        to,
        log_first_seq: first_seq,
        log_last_seq: last_seq,
        in_log: tags.iter().map(|t| t.in_log).sum(),
        stored: tags.iter().map(|t| t.stored).sum(),
        gaps: tags.iter().map(|t| t.gap_count).sum(),
        duplicates: tags.iter().map(|t| t.duplicate_count).sum(),
        dead_lettered: tags.iter().map(|t| t.dead_lettered.len()).sum(),
        tags,
    })
}

fn report(t: TagAudit, subjects: &BTreeMap<String, u64>) -> TagReport {
    let ids = |v: &[EventId]| v.iter().take(LISTED).map(ToString::to_string).collect();
    TagReport {
        subject_messages: subjects.get(&t.tag).copied().unwrap_or(0),
        in_log: t.in_log,
        stored: t.stored,
        first_seq: t.first_seq,
        last_seq: t.last_seq,
        gap_count: t.gaps.len(),
        gaps: ids(&t.gaps),
        duplicate_count: t.duplicates.len(),
        duplicates: ids(&t.duplicates),
        dead_lettered: t.dead_lettered,
        beyond_log: t.beyond_log,
        tag: t.tag,
    }
}

/// Reconciles the log against the store: per tag, events in the stream
/// versus events stored, with gaps, duplicates (must be zero) and dead letters.
#[utoipa::path(get, path = "/audit", tag = "operations", params(AuditParams),
    responses((status = 200, description = "The account; `ok` is false on any gap or duplicate", body = AuditReport),
        (status = 400, description = "A bad prefix or time", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log or the store did not answer", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn get_audit(
    State(state): State<ApiState>,
    Query(p): Query<AuditParams>,
) -> Result<Json<AuditReport>, Problem> {
    let prefix = crate::wire::prefix("prefix", p.prefix.as_deref())?;
    let time = |field: &str, v: Option<&str>| {
        v.map(|s| vigia_domain::parse_timestamp(s).map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e).field(field)))
            .transpose()
    };
    let (from, to) = (time("from", p.from.as_deref())?, time("to", p.to.as_deref())?);
    audit(&state.bus, &state.store, &state.roots, prefix.as_deref(), from, to).await.map(Json).map_err(|e| {
        tracing::error!(error = %e, "Audit failed.");
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; retry shortly"))
    })
}
