//! The alert projection: `AlertOpened` / `AlertCleared` events from the
//! `ALERTS` stream become alert records with a lifecycle
//! (open, acknowledged, cleared). Applying an event twice changes nothing.

use surrealdb::types::{Array, RecordId, SurrealValue, Value as SValue};
use vigia_domain::{AlertEvent, AlertKind};

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
}

fn alert_id(e: &AlertEvent) -> RecordId {
    let key = Array::from(vec![
        SValue::from_t(e.tag.to_string()),
        SValue::from_t(e.rule.clone()),
        SValue::from_t(e.opened_by.seq as i64),
        SValue::from_t(i64::from(e.opened_by.idx)),
    ]);
    RecordId::new("alert", key)
}

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
