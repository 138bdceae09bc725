//! The alert projection: `AlertOpened` / `AlertCleared` events from the
//! `ALERTS` stream become alert records with a lifecycle
//! (open, acknowledged, cleared). Applying an event twice changes nothing.
//! The projector reads the alerts a run of events names, merges the events
//! into them here, in Rust, and writes back what changed (`WRITE`).

use std::collections::{BTreeMap, BTreeSet};

use surrealdb::types::{Array, RecordId, SurrealValue, Value as SValue};
use vigia_domain::{AlertAck, AlertEvent, AlertKind, EventId, Tag};

use crate::writer::{is_conflict, settle};
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

/// An alert's identity as its record id's key holds it: tag, rule, and the
/// sequence and index of the reading that opened it.
type Key = (String, String, i64, i64);

fn key_of(e: &AlertEvent) -> Key {
    (e.tag.to_string(), e.rule.clone(), e.opened_by.seq as i64, i64::from(e.opened_by.idx))
}

/// The key of a stored alert, from the fields that repeat it.
fn stored_key(a: &AlertRecord) -> Key {
    (a.tag.clone(), a.rule.clone(), a.opened_seq, a.opened_idx)
}

fn record_id(tag: &Tag, rule: &str, opened_by: EventId) -> RecordId {
    keyed((tag.to_string(), rule.to_owned(), opened_by.seq as i64, i64::from(opened_by.idx)))
}

fn keyed((tag, rule, seq, idx): Key) -> RecordId {
    let key = Array::from(vec![SValue::from_t(tag), SValue::from_t(rule), SValue::from_t(seq), SValue::from_t(idx)]);
    RecordId::new("alert", key)
}

// An acknowledgement moves `open` to `acknowledged` and keeps `cleared`; the
// first acknowledgement's time wins. Only an existing alert is touched.
const ACKNOWLEDGED: &str = "UPDATE $id SET
    status = IF status = 'open' { 'acknowledged' } ELSE { status },
    acknowledged_at = acknowledged_at ?? $ts, acknowledged_by = acknowledged_by ?? $by RETURN NONE";

const ALL: &str = "SELECT * OMIT id FROM alert ORDER BY opened_at DESC";
const BY_STATUS: &str = "SELECT * OMIT id FROM alert WHERE status = $status ORDER BY opened_at DESC";

// Alert events are applied by reading the alerts they touch, merging the
// events into them in Rust ([`merge`]) and writing what changed: new alerts
// in one `INSERT`, changed ones replaced. One `UPSERT` per event with the
// lifecycle in SurrealQL cost 200 to 330 µs an event in SurrealDB's
// executor; a bulk insert costs under 80 (docs/performance.md).
//
// The write re-reads the alerts inside its transaction and throws if they
// are not what the merge started from: another projector on the same
// durable consumer, or an acknowledgement, wrote in between. A writer in
// flight at the same time is caught by the engine's write-conflict check.
// Either way the run is read and merged again.
const READ: &str = "SELECT * OMIT id FROM $ids";
const WRITE: &str = "BEGIN TRANSACTION;
IF (SELECT * OMIT id FROM $ids) != $seen { THROW \"vigia: alerts moved\" };
INSERT INTO alert $new RETURN NONE;
FOR $a IN $changed { UPDATE $a.id CONTENT $a RETURN NONE };
COMMIT TRANSACTION;";
pub(crate) const THROW_MOVED: &str = "vigia: alerts moved";

/// What one transaction of [`WRITE`] checks and writes.
struct Plan {
    /// The alerts the events name.
    ids: Vec<RecordId>,
    /// Those of them stored when the plan was made, as read.
    seen: SValue,
    /// Alerts to insert and to replace, with their ids ([`with_id`]).
    new: Vec<SValue>,
    changed: Vec<SValue>,
}

/// An alert record with its id, as [`WRITE`] takes it.
fn with_id(id: RecordId, a: AlertRecord) -> SValue {
    let mut value = a.into_value();
    if let SValue::Object(fields) = &mut value {
        fields.insert("id", id);
    }
    value
}

/// What `e` leaves of the alert it names, stored as `current` (`None`: not
/// stored yet). Opening keeps any later status, so a redelivered `opened`
/// after its `cleared` does not reopen the alert; a `cleared` that arrives
/// first records the opening as its own time and value until the `opened`
/// fills them in. Acknowledgements are kept.
fn merge(current: Option<AlertRecord>, e: &AlertEvent) -> AlertRecord {
    let opened = e.kind == AlertKind::Opened;
    let mut a = current.unwrap_or_else(|| AlertRecord {
        tag: e.tag.to_string(),
        rule: e.rule.clone(),
        op: String::new(),
        threshold: e.threshold,
        status: "open".to_owned(),
        opened_at: e.ts_ms,
        opened_value: e.value,
        opened_seq: e.opened_by.seq as i64,
        opened_idx: i64::from(e.opened_by.idx),
        cleared_at: None,
        cleared_value: None,
        acknowledged_at: None,
        acknowledged_by: None,
    });
    e.op.as_str().clone_into(&mut a.op);
    a.threshold = e.threshold;
    if opened {
        (a.opened_at, a.opened_value) = (e.ts_ms, e.value);
    } else {
        "cleared".clone_into(&mut a.status);
        (a.cleared_at, a.cleared_value) = (Some(e.ts_ms), Some(e.value));
    }
    a
}

/// Alert events per transaction: the most [`Store::apply_alerts`] reads,
/// merges and writes at once. SurrealDB runs a transaction's statements
/// without yielding, on the store writers' one thread by default: a whole
/// pull of 5,000 would hold the persister for over a second.
const EVENTS_PER_TRANSACTION: usize = 100;

/// Times a run is read and merged again because the alerts moved under it
/// before [`Store::apply_alerts`] gives up with [`StoreError::Conflict`]
/// (the projector then retries the pull).
const MOVED_RETRIES: u32 = 10;

impl Store {
    /// Applies alert events in order, in transactions of up to a hundred;
    /// idempotent, so a failure part way is mended by applying them all again.
    pub async fn apply_alerts(&self, events: &[AlertEvent]) -> Result<(), StoreError> {
        for part in events.chunks(EVENTS_PER_TRANSACTION) {
            let mut moved = 0;
            loop {
                match self.try_apply_alerts(part).await {
                    Err(StoreError::Conflict) if moved < MOVED_RETRIES => {
                        moved += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(u64::from(moved) * 5)).await;
                    }
                    other => break other?,
                }
            }
        }
        Ok(())
    }

    /// Reads, merges and writes one transaction's events.
    async fn try_apply_alerts(&self, events: &[AlertEvent]) -> Result<(), StoreError> {
        let plan = self.plan_alerts(events).await?;
        if plan.new.is_empty() && plan.changed.is_empty() {
            return Ok(());
        }
        self.write_alerts(plan).await
    }

    /// Writes a plan if its alerts are still as it read them; else
    /// [`StoreError::Conflict`].
    async fn write_alerts(&self, plan: Plan) -> Result<(), StoreError> {
        let mut response = self
            .db
            .query(WRITE)
            .bind(("ids", plan.ids))
            .bind(("seen", plan.seen))
            .bind(("new", plan.new))
            .bind(("changed", plan.changed))
            .await
            .map_err(|e| if is_conflict(&e) { StoreError::Conflict } else { e.into() })?;
        settle(&mut response)
    }

    /// Reads the alerts `events` name and merges the events into them.
    async fn plan_alerts(&self, events: &[AlertEvent]) -> Result<Plan, StoreError> {
        let keys: BTreeSet<Key> = events.iter().map(key_of).collect();
        let ids: Vec<RecordId> = keys.into_iter().map(keyed).collect();
        let seen: SValue = self.db.query(READ).bind(("ids", ids.clone())).await?.check()?.take(0)?;
        let stored: Vec<AlertRecord> = seen.clone().into_t().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let before: BTreeMap<Key, AlertRecord> = stored.into_iter().map(|a| (stored_key(&a), a)).collect();
        let mut after: BTreeMap<Key, AlertRecord> = BTreeMap::new();
        for e in events {
            let key = key_of(e);
            let current = after.remove(&key).or_else(|| before.get(&key).cloned());
            after.insert(key, merge(current, e));
        }
        let (mut new, mut changed) = (Vec::new(), Vec::new());
        for (key, now) in after {
            match before.get(&key) {
                None => new.push(with_id(keyed(key), now)),
                Some(stored) if *stored != now => changed.push(with_id(keyed(key), now)),
                Some(_) => {}
            }
        }
        Ok(Plan { ids, seen, new, changed })
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

#[cfg(test)]
mod tests {
    use vigia_domain::{AlertState, Op};

    use super::*;
    use crate::StoreConfig;

    fn event(kind: AlertKind, value: f64, reading: u64) -> AlertEvent {
        AlertEvent {
            v: 1,
            kind,
            tag: Tag::parse("brasil.sul.s1").unwrap(),
            rule: "hot".into(),
            op: Op::Gte,
            threshold: 50.0,
            value,
            ts_ms: reading as i64 * 1000,
            reading: EventId { seq: reading, idx: 0 },
            opened_by: EventId { seq: 1, idx: 0 },
            state: AlertState::default(),
        }
    }

    #[test]
    fn merge_keeps_the_lifecycle_in_any_order() {
        let (opened, cleared) = (event(AlertKind::Opened, 51.0, 1), event(AlertKind::Cleared, 10.0, 3));
        let open = merge(None, &opened);
        assert_eq!((open.status.as_str(), open.op.as_str(), open.cleared_at), ("open", "gte", None));
        let closed = merge(Some(open.clone()), &cleared);
        assert_eq!(
            (closed.status.as_str(), closed.opened_at, closed.cleared_at, closed.cleared_value),
            ("cleared", 1000, Some(3000), Some(10.0))
        );
        assert_eq!(merge(Some(closed.clone()), &opened), closed, "a redelivered opened does not reopen");
        let early = merge(None, &cleared);
        assert_eq!((early.status.as_str(), early.opened_at, early.opened_value), ("cleared", 3000, 10.0));
        assert_eq!(merge(Some(early), &opened), closed, "the late opened fills in the opening");
        let acked = AlertRecord { status: "acknowledged".into(), acknowledged_by: Some("ana".into()), ..open };
        let acked_then_cleared = merge(Some(acked), &cleared);
        assert_eq!(
            (acked_then_cleared.status.as_str(), acked_then_cleared.acknowledged_by.as_deref()),
            ("cleared", Some("ana"))
        );
    }

    /// An acknowledgement written between a run's read and its write is
    /// not overwritten: the write finds the alert moved, and the run is
    /// merged again onto the acknowledged alert.
    #[tokio::test]
    async fn a_write_between_read_and_write_is_kept() {
        let store = Store::open(&StoreConfig::memory()).await.unwrap();
        store.apply_alerts(&[event(AlertKind::Opened, 51.0, 1)]).await.unwrap();
        let cleared = [event(AlertKind::Cleared, 10.0, 3)];
        let stale = store.plan_alerts(&cleared).await.unwrap();
        let ack = AlertAck {
            v: 1,
            tag: Tag::parse("brasil.sul.s1").unwrap(),
            rule: "hot".into(),
            opened_by: EventId { seq: 1, idx: 0 },
            ts_ms: 2000,
            by: Some("ana".into()),
        };
        store.apply_ack(&ack).await.unwrap();
        let written = store.write_alerts(stale).await;
        assert!(matches!(written, Err(StoreError::Conflict)), "the guard throws when the alert moved: {written:?}");
        store.apply_alerts(&cleared).await.unwrap();
        let stored = store.alerts(None).await.unwrap();
        assert_eq!(
            stored.iter().map(|a| (a.status.as_str(), a.acknowledged_by.as_deref(), a.cleared_at)).collect::<Vec<_>>(),
            [("cleared", Some("ana"), Some(3000))]
        );
    }
}
