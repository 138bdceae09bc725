//! The log format: what one JetStream message on `READINGS` carries.
//!
//! A message without a `Vigia-Event` header is a device payload: one reading
//! whose tag is the subject (devices, `nats pub`, MQTT). A message with
//! `Vigia-Event: ReadingsRecorded` and `Vigia-Version: 1` carries a JSON batch
//! of readings (HTTP arrays, CSV chunks, the simulator's fast mode), so a
//! batch costs one log write. Event ids are (stream sequence, index in the
//! message) either way. New versions are added beside old ones and old
//! messages are upcast when read, never rewritten.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::change::{Change, READING_CORRECTED, READING_RETRACTED, ReadingChange};
use crate::decode::{decode_payload, parse_number};
use crate::reading::{Reading, Status, Value};
use crate::tag::Tag;

/// Header naming the event a message carries. Absent on device payloads.
pub const EVENT_HEADER: &str = "Vigia-Event";
/// Header with the event's schema version.
pub const VERSION_HEADER: &str = "Vigia-Version";
/// Header of a message whose readings are backfill (CSV imports set it).
pub const BACKFILL_HEADER: &str = "Vigia-Backfill";
/// A batch of readings.
pub const READINGS_RECORDED: &str = "ReadingsRecorded";

/// What a message on the readings stream means, after decoding.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// Readings recorded, in message order (index = position).
    Readings(Vec<Reading>),
    /// A correction or retraction of a reading of the subject's tag.
    Change(Tag, crate::change::Change),
}

impl LogEvent {
    /// The readings this message records (none for a change).
    pub fn into_readings(self) -> Vec<Reading> {
        match self {
            LogEvent::Readings(r) => r,
            LogEvent::Change(..) => Vec::new(),
        }
    }
}

/// One reading inside a `ReadingsRecorded` v1 batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub tag: String,
    /// Unix milliseconds; the broker's time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ItemValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// A batch item's value: devices' numbers and strings both travel as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ItemValue {
    Number(f64),
    Text(String),
}

impl From<&Reading> for BatchItem {
    fn from(r: &Reading) -> Self {
        BatchItem {
            tag: r.tag.to_string(),
            ts: Some(r.ts_ms),
            value: match &r.value {
                Value::Number(n) => Some(ItemValue::Number(*n)),
                Value::Text(t) => Some(ItemValue::Text(t.clone())),
                Value::Empty => None,
            },
            unit: r.unit.clone(),
            meta: r.meta.to_map(),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct BatchV1<T> {
    pub(crate) v: u32,
    pub(crate) readings: T,
}

/// Why readings cannot share one batch message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("a batch needs at least one reading")]
    Empty,
    #[error("a batch must stay under one root, found `{0}` and `{1}`: split it by root")]
    MixedRoots(String, String),
}

/// Encodes readings as a `ReadingsRecorded` v1 body.
pub fn encode_batch(items: &[BatchItem]) -> Vec<u8> {
    serde_json::to_vec(&BatchV1 { v: 1, readings: items }).expect("batch items always serialise")
}

/// The subject a batch is published on: the longest common prefix of its
/// tags (at least two tokens), else `<root>._batch`. Always under the root, so
/// the stream captures it and device permissions per root still apply.
pub fn batch_subject<'a>(tags: impl IntoIterator<Item = &'a Tag>) -> Result<String, EnvelopeError> {
    let mut tags = tags.into_iter();
    let first = tags.next().ok_or(EnvelopeError::Empty)?;
    let mut common: Vec<&str> = first.as_str().split('.').collect();
    for tag in tags {
        if tag.root() != first.root() {
            return Err(EnvelopeError::MixedRoots(first.root().into(), tag.root().into()));
        }
        let shared = common.iter().zip(tag.as_str().split('.')).take_while(|(a, b)| *a == b).count();
        common.truncate(shared);
    }
    if common.len() >= 2 { Ok(common.join(".")) } else { Ok(format!("{}._batch", first.root())) }
}

/// Decodes one message of the readings stream. Never fails: whatever cannot
/// be understood becomes an error reading with its reason and raw bytes.
pub fn decode_message(
    subject: &str,
    event: Option<&str>,
    version: Option<&str>,
    payload: &[u8],
    broker_ms: i64,
) -> LogEvent {
    let tag = match Tag::parse(subject) {
        Ok(tag) => tag,
        Err(e) => {
            let mut r = Reading::error(
                fallback_tag(subject),
                broker_ms,
                format!("subject `{subject}` is not a valid tag: {e}"),
                payload,
            );
            r.meta.insert("subject".into(), subject.chars().take(256).collect());
            return LogEvent::Readings(vec![r]);
        }
    };
    match (event, version) {
        (None, _) => LogEvent::Readings(vec![decode_payload(&tag, payload, broker_ms)]),
        (Some(READINGS_RECORDED), Some("1") | None) => LogEvent::Readings(decode_batch_v1(&tag, payload, broker_ms)),
        (Some(kind @ (READING_CORRECTED | READING_RETRACTED)), Some("1")) => {
            match serde_json::from_slice::<ReadingChange>(payload) {
                Ok(c) if c.v == 1 => {
                    let change = if kind == READING_CORRECTED { Change::Correct(c) } else { Change::Retract(c) };
                    LogEvent::Change(tag, change)
                }
                Ok(c) => {
                    let reason = format!("{kind} body says version {}, header says 1", c.v);
                    LogEvent::Readings(vec![Reading::error(tag, broker_ms, reason, payload)])
                }
                Err(e) => {
                    let reason = format!("{kind} body is not a v1 document: {e}");
                    LogEvent::Readings(vec![Reading::error(tag, broker_ms, reason, payload)])
                }
            }
        }
        (Some(event), version) => {
            let reason = format!("unknown event `{event}` version {}", version.unwrap_or("(none)"));
            LogEvent::Readings(vec![Reading::error(tag, broker_ms, reason, payload)])
        }
    }
}

fn decode_batch_v1(subject_tag: &Tag, payload: &[u8], broker_ms: i64) -> Vec<Reading> {
    let batch = match serde_json::from_slice::<BatchV1<Vec<BatchItem>>>(payload) {
        Ok(b) if b.v == 1 => b,
        Ok(b) => {
            let reason = format!("batch body says version {}, header says 1", b.v);
            return vec![Reading::error(subject_tag.clone(), broker_ms, reason, payload)];
        }
        Err(e) => {
            let reason = format!("batch body is not a ReadingsRecorded v1 document: {e}");
            return vec![Reading::error(subject_tag.clone(), broker_ms, reason, payload)];
        }
    };
    batch.readings.into_iter().map(|item| item_to_reading(subject_tag, item, broker_ms)).collect()
}

pub(crate) fn item_to_reading(subject_tag: &Tag, item: BatchItem, broker_ms: i64) -> Reading {
    let ts = item.ts.unwrap_or(broker_ms);
    let tag = match Tag::parse(&item.tag) {
        Ok(tag) => tag,
        Err(e) => {
            let raw = serde_json::to_vec(&item).unwrap_or_default();
            return Reading::error(subject_tag.clone(), ts, format!("tag `{}` is invalid: {e}", item.tag), &raw);
        }
    };
    if tag.root() != subject_tag.root() {
        let raw = serde_json::to_vec(&item).unwrap_or_default();
        let reason = format!("tag `{tag}` is outside the subject's root `{}`", subject_tag.root());
        return Reading::error(subject_tag.clone(), ts, reason, &raw);
    }
    let mut reading = Reading::number(tag, ts, 0.0);
    reading.unit = item.unit;
    reading.meta = item.meta.into();
    let (value, reason) = match item.value {
        Some(ItemValue::Number(n)) if n.is_finite() => (Value::Number(n), None),
        Some(ItemValue::Number(_)) => (Value::Empty, Some("value is not a finite number")),
        Some(ItemValue::Text(t)) => match t.trim() {
            "" => (Value::Empty, Some("value is empty")),
            text => (parse_number(text).map_or_else(|| Value::Text(text.to_owned()), Value::Number), None),
        },
        None => (Value::Empty, Some("value is missing")),
    };
    reading.value = value;
    if let Some(reason) = reason {
        reading.status = Status::Error;
        reading.reason = Some(reason.to_owned());
    }
    reading
}

fn fallback_tag(subject: &str) -> Tag {
    let root: String = subject
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect();
    let root = if root.is_empty() { "unknown".to_owned() } else { root };
    Tag::parse(&format!("{root}._invalid")).expect("sanitised root makes a valid tag")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }

    #[test]
    fn batch_round_trip() {
        let readings =
            vec![Reading::number(t("brasil.sul.s1"), 1000, 1.5), Reading::number(t("brasil.sul.s2"), 2000, 60.0)];
        let items: Vec<BatchItem> = readings.iter().map(BatchItem::from).collect();
        let body = encode_batch(&items);
        let subject = batch_subject(readings.iter().map(|r| &r.tag)).unwrap();
        assert_eq!(subject, "brasil.sul");
        let back = decode_message(&subject, Some(READINGS_RECORDED), Some("1"), &body, 9).into_readings();
        assert_eq!(back, readings);
    }

    #[test]
    fn batch_subjects() {
        let a = t("brasil.sul.s1");
        let b = t("brasil.norte.s1");
        assert_eq!(batch_subject([&a, &b]).unwrap(), "brasil._batch");
        assert_eq!(batch_subject([&a]).unwrap(), "brasil.sul.s1");
        let c = t("meters.lab.d7");
        assert!(matches!(batch_subject([&a, &c]), Err(EnvelopeError::MixedRoots(..))));
        assert_eq!(batch_subject(std::iter::empty()), Err(EnvelopeError::Empty));
    }

    #[test]
    fn bad_items_become_errors_in_place() {
        let body = br#"{"v":1,"readings":[{"tag":"bad tag","value":1},{"tag":"brasil.sul.s1","value":""},{"tag":"brasil.sul.s1","value":"7"},{"tag":"meters.lab.d1","value":1}]}"#;
        let r = decode_message("brasil.sul", Some(READINGS_RECORDED), Some("1"), body, 5).into_readings();
        assert_eq!(r.len(), 4);
        assert_eq!((r[3].status, r[3].tag.as_str()), (Status::Error, "brasil.sul"));
        assert_eq!((r[0].status, r[0].tag.as_str()), (Status::Error, "brasil.sul"));
        assert_eq!(r[1].status, Status::Error);
        assert_eq!((r[2].status, &r[2].value), (Status::Ok, &Value::Number(7.0)));
    }

    #[test]
    fn unknown_events_and_subjects_are_kept_as_errors() {
        let r = decode_message("brasil.sul.s1", Some("Nope"), Some("9"), b"x", 5).into_readings();
        assert_eq!((r.len(), r[0].status), (1, Status::Error));
        let r = decode_message("brasil.a.b.c.d.e.f.g.h", None, None, b"1", 5).into_readings();
        assert_eq!(r[0].tag.as_str(), "brasil._invalid");
        assert_eq!(r[0].raw.as_deref(), Some(&b"1"[..]));
        let r = decode_message("brasil.sul", Some(READINGS_RECORDED), Some("1"), b"{", 5).into_readings();
        assert_eq!((r.len(), r[0].status), (1, Status::Error));
    }
}
