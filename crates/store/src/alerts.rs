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

// Opening keeps any later status: a redelivered `opened` after its `cleared`
// must not reopen the alert.
const OPENED: &str = "UPSERT $id SET tag = $tag, rule = $rule, op = $op, threshold = $threshold,
    opened_at = $ts, opened_value = $value, opened_seq = $seq, opened_idx = $idx,
    status = status ?? 'open' RETURN NONE";
const CLEARED: &str = "UPSERT $id SET tag = $tag, rule = $rule, op = $op, threshold = $threshold,
    opened_seq = $seq, opened_idx = $idx, opened_at = opened_at ?? $ts, opened_value = opened_value ?? $value,
    status = 'cleared', cleared_at = $ts, cleared_value = $value RETURN NONE";

impl Store {
    /// Applies one alert event; idempotent.
    pub async fn apply_alert(&self, e: &AlertEvent) -> Result<(), StoreError> {
        let sql = match e.kind {
            AlertKind::Opened => OPENED,
            AlertKind::Cleared => CLEARED,
        };
        self.db
            .query(sql)
            .bind(("id", alert_id(e)))
            .bind(("tag", e.tag.to_string()))
            .bind(("rule", e.rule.clone()))
            .bind(("op", serde_json::to_value(e.op).unwrap_or_default()))
            .bind(("threshold", e.threshold))
            .bind(("ts", e.ts_ms))
            .bind(("value", e.value))
            .bind(("seq", e.opened_by.seq as i64))
            .bind(("idx", i64::from(e.opened_by.idx)))
            .await?
            .check()?;
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
    pub async fn alerts(&self, status: Option<&str>) -> Result<Vec<AlertRecord>, StoreError> {
        let rows = self
            .db
            .query("SELECT * OMIT id FROM alert WHERE $status = NONE OR status = $status ORDER BY opened_at DESC")
            .bind(("status", status.map(str::to_owned)))
            .await?
            .check()?
            .take(0)?;
        Ok(rows)
    }
}
