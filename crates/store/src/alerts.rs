//! The alert projection: `AlertOpened` / `AlertCleared` events from the
//! `ALERTS` stream become alert records with a lifecycle
//! (open, acknowledged, cleared). Applying an event twice changes nothing.

use surrealdb::types::{Array, RecordId, SurrealValue, Value as SValue};
use vigia_domain::{AlertAck, AlertEvent, AlertKind, EventId, Tag};

use crate::{Store, StoreError};

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, SurrealValue)]
pub struct AlertRecord {
    pub tag: String,
    pub rule: String,
    pub op: String,
    pub threshold: f64,
    /// `open`, `acknowledged` or `cleared`.
    pub status: String,
    pub opened_at: i64,
    pub opened_value: f64,
    pub opened_seq: i64,
    pub opened_idx: i64,
    pub cleared_at: Option<i64>,
    pub cleared_value: Option<f64>,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
}

fn alert_id(e: &AlertEvent) -> RecordId {
    record_id(&e.tag, &e.rule, e.opened_by)
}

fn record_id(tag: &Tag, rule: &str, opened_by: EventId) -> RecordId {
    let key = Array::from(vec![
        SValue::from_t(tag.to_string()),
        SValue::from_t(rule.to_owned()),
        SValue::from_t(opened_by.seq as i64),
        SValue::from_t(i64::from(opened_by.idx)),
    ]);
    RecordId::new("alert", key)
}

// An acknowledgement moves `open` to `acknowledged` and keeps `cleared`; the
// first acknowledgement's time wins. Only an existing alert is touched.
const ACKNOWLEDGED: &str = "UPDATE $id SET
    status = IF status = 'open' { 'acknowledged' } ELSE { status },
    acknowledged_at = acknowledged_at ?? $ts, acknowledged_by = acknowledged_by ?? $by RETURN NONE";

const ALL: &str = "SELECT * OMIT id FROM alert ORDER BY opened_at DESC";
const BY_STATUS: &str = "SELECT * OMIT id FROM alert WHERE status = $status ORDER BY opened_at DESC";

// A run of alert events is applied in transactions of up to
// `EVENTS_PER_TRANSACTION`, in order, so an `opened` and its `cleared` in the
// same pull land as they would one by one. Opening keeps any later status: a
// redelivered `opened` after its `cleared` must not reopen the alert. One
// query and one commit per event made the projector fall seconds behind in
// a storm (docs/performance.md).
const APPLY: &str = "BEGIN TRANSACTION;
FOR $e IN $events {
    IF $e.opened {
        UPSERT $e.id SET tag = $e.tag, rule = $e.rule, op = $e.op, threshold = $e.threshold,
            opened_at = $e.ts, opened_value = $e.value, opened_seq = $e.seq, opened_idx = $e.idx,
            status = status ?? 'open' RETURN NONE
    } ELSE {
        UPSERT $e.id SET tag = $e.tag, rule = $e.rule, op = $e.op, threshold = $e.threshold,
            opened_seq = $e.seq, opened_idx = $e.idx, opened_at = opened_at ?? $e.ts,
            opened_value = opened_value ?? $e.value,
            status = 'cleared', cleared_at = $e.ts, cleared_value = $e.value RETURN NONE
    }
};
COMMIT TRANSACTION;";

/// One alert event as [`APPLY`] reads it.
#[derive(Debug, SurrealValue)]
struct EventRow {
    id: RecordId,
    opened: bool,
    tag: String,
    rule: String,
    op: String,
    threshold: f64,
    ts: i64,
    value: f64,
    seq: i64,
    idx: i64,
}

impl EventRow {
    fn new(e: &AlertEvent) -> EventRow {
        EventRow {
            id: alert_id(e),
            opened: e.kind == AlertKind::Opened,
            tag: e.tag.to_string(),
            rule: e.rule.clone(),
            op: e.op.as_str().to_owned(),
            threshold: e.threshold,
            ts: e.ts_ms,
            value: e.value,
            seq: e.opened_by.seq as i64,
            idx: i64::from(e.opened_by.idx),
        }
    }
}

/// Alert events per transaction. SurrealDB runs a transaction's statements
/// without yielding, on the store writers' one thread by default, and an
/// event costs a few hundred µs there (`cargo bench --bench alerts`): a whole
/// pull of 5,000 would hold the persister for over a second. A hundred take
/// about as long as one persister flush, and cost no more per event than a
/// thousand.
const EVENTS_PER_TRANSACTION: usize = 100;

impl Store {
    /// Applies alert events in order, in transactions of up to a hundred;
    /// idempotent, so a failure part way is mended by applying them all again.
    pub async fn apply_alerts(&self, events: &[AlertEvent]) -> Result<(), StoreError> {
        for part in events.chunks(EVENTS_PER_TRANSACTION) {
            let rows: Vec<EventRow> = part.iter().map(EventRow::new).collect();
            self.db.query(APPLY).bind(("events", rows)).await?.check()?;
        }
        Ok(())
    }

    /// Applies an acknowledgement; idempotent.
    pub async fn apply_ack(&self, ack: &AlertAck) -> Result<(), StoreError> {
        self.db
            .query(ACKNOWLEDGED)
            .bind(("id", record_id(&ack.tag, &ack.rule, ack.opened_by)))
            .bind(("ts", ack.ts_ms))
            .bind(("by", ack.by.clone()))
            .await?
            .check()?;
        Ok(())
    }

    /// The alert `rule` opened on the reading `opened_by`, if any.
    pub async fn alert(&self, rule: &str, opened_by: EventId) -> Result<Option<AlertRecord>, StoreError> {
        let mut rows: Vec<AlertRecord> = self
            .db
            .query("SELECT * OMIT id FROM alert WHERE opened_seq = $seq AND opened_idx = $idx AND rule = $rule")
            .bind(("seq", opened_by.seq as i64))
            .bind(("idx", i64::from(opened_by.idx)))
            .bind(("rule", rule.to_owned()))
            .await?
            .check()?
            .take(0)?;
        Ok(rows.pop())
    }

    /// Alerts, newest first, optionally only those with `status`.
    ///
    /// With a status the `alert_status` index is read; a condition that
    /// also tests the parameter (`$status = NONE OR ...`) made SurrealDB
    /// scan the whole table (`EXPLAIN`), so the two are separate queries.
    pub async fn alerts(&self, status: Option<&str>) -> Result<Vec<AlertRecord>, StoreError> {
        let query = match status {
            Some(status) => self.db.query(BY_STATUS).bind(("status", status.to_owned())),
            None => self.db.query(ALL),
        };
        Ok(query.await?.check()?.take(0)?)
    }
}
