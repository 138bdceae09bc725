//! Row shapes as SurrealDB sees them, converted by hand from domain types.

use std::collections::BTreeMap;

use surrealdb::types::{Array, Bytes, RecordId, SurrealValue, Value as SValue};
use vigia_domain::{Block, BlockExtra, EventId, Status, Value};

/// `rollup:[tag, grain, bucket]`.
pub(crate) fn rollup_id(tag: &str, grain: &str, bucket: i64) -> RecordId {
    let key =
        Array::from(vec![SValue::from_t(tag.to_owned()), SValue::from_t(grain.to_owned()), SValue::from_t(bucket)]);
    RecordId::new("rollup", key)
}

/// `traffic:[root, grain, bucket]`.
pub(crate) fn traffic_id(root: &str, grain: &str, bucket: i64) -> RecordId {
    let key =
        Array::from(vec![SValue::from_t(root.to_owned()), SValue::from_t(grain.to_owned()), SValue::from_t(bucket)]);
    RecordId::new("traffic", key)
}

/// The bindings of the ledger guard that opens every projection transaction (`BEGIN`).
pub(crate) fn ledger_guard(
    stream: &str,
    expected_version: u64,
    next: &vigia_domain::Ledger,
) -> [(&'static str, SValue); 3] {
    let ranges: Vec<Vec<i64>> = next.ranges.iter().map(|(lo, hi)| vec![*lo as i64, *hi as i64]).collect();
    [
        ("ledger_id", SValue::from_t(RecordId::new("ledger", stream))),
        ("expected", SValue::from_t(expected_version as i64)),
        ("ranges", SValue::from_t(ranges)),
    ]
}

/// Orders events of equal timestamp: sequence, then index.
pub(crate) fn ord(id: EventId) -> i64 {
    id.seq as i64 * 1_000_000 + i64::from(id.idx)
}

#[derive(Debug, SurrealValue)]
pub(crate) struct BlockRow {
    /// Set when writing; reads may leave it out.
    pub(crate) id: Option<RecordId>,
    pub(crate) tag: String,
    pub(crate) start: i64,
    pub(crate) seq: Vec<i64>,
    pub(crate) idx: Vec<i64>,
    pub(crate) ts: Vec<i64>,
    pub(crate) value: Vec<Option<f64>>,
    pub(crate) status: Vec<String>,
    pub(crate) extra: Vec<ExtraRow>,
}

#[derive(Debug, SurrealValue)]
pub(crate) struct ExtraRow {
    i: i64,
    text: Option<String>,
    unit: Option<String>,
    reason: Option<String>,
    raw: Option<Bytes>,
    meta: BTreeMap<String, String>,
}

impl From<&Block> for BlockRow {
    fn from(b: &Block) -> Self {
        let first = b.first_id();
        let key = Array::from(vec![
            SValue::from_t(b.tag.clone()),
            SValue::from_t(b.start_ms),
            SValue::from_t(first.seq as i64),
            SValue::from_t(i64::from(first.idx)),
        ]);
        BlockRow {
            id: Some(RecordId::new("block", key)),
            tag: b.tag.clone(),
            start: b.start_ms,
            seq: b.seq.iter().map(|s| *s as i64).collect(),
            idx: b.idx.iter().map(|i| i64::from(*i)).collect(),
            ts: b.ts.clone(),
            value: b.value.clone(),
            status: b.status.iter().map(|s| s.as_str().to_owned()).collect(),
            extra: b
                .extra
                .iter()
                .map(|e| ExtraRow {
                    i: i64::from(e.i),
                    text: e.text.clone(),
                    unit: e.unit.clone(),
                    reason: e.reason.clone(),
                    raw: e.raw.clone().map(Bytes::from),
                    meta: e.meta.clone(),
                })
                .collect(),
        }
    }
}

impl BlockRow {
    pub(crate) fn into_block(self) -> Block {
        Block {
            tag: self.tag,
            start_ms: self.start,
            seq: self.seq.into_iter().map(|s| s as u64).collect(),
            idx: self.idx.into_iter().map(|i| i as u32).collect(),
            ts: self.ts,
            value: self.value,
            status: self.status.iter().map(|s| Status::parse(s).unwrap_or(Status::Error)).collect(),
            extra: self
                .extra
                .into_iter()
                .map(|e| BlockExtra {
                    i: e.i as u32,
                    text: e.text,
                    unit: e.unit,
                    reason: e.reason,
                    raw: e.raw.map(|b| b.into_inner().to_vec()),
                    meta: e.meta,
                })
                .collect(),
        }
    }
}

/// The latest reading of a sensor as the registry keeps it.
#[derive(Debug, Clone, PartialEq, SurrealValue)]
pub(crate) struct LastRow {
    pub(crate) ts: i64,
    pub(crate) ord: i64,
    pub(crate) value: Option<f64>,
    pub(crate) text: Option<String>,
    pub(crate) status: String,
}

impl LastRow {
    pub(crate) fn new(ts: i64, id: EventId, value: &Value, status: Status) -> Self {
        LastRow {
            ts,
            ord: ord(id),
            value: value.as_number(),
            text: match value {
                Value::Text(t) => Some(t.clone()),
                _ => None,
            },
            status: status.as_str().to_owned(),
        }
    }
}
