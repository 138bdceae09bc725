//! A reading is one sensor value at one instant, after decoding.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::tag::Tag;

/// The value a device sent: a number, free text, or nothing at all.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
    Empty,
}

impl Value {
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// Whether a reading is usable. Errors are stored, never dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "ok" => Some(Status::Ok),
            "error" => Some(Status::Error),
            _ => None,
        }
    }
}

/// Device-supplied fields of a reading (`equipmentId`, `device_id`, ...).
///
/// Shared rather than owned: the persister copies every reading's metadata
/// into its block, and copying a map per reading was the largest part of
/// projecting a pull (docs/performance.md). Reads go through `Deref` to the
/// map; an empty map holds no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Meta(Option<Arc<BTreeMap<String, String>>>);

static NO_META: BTreeMap<String, String> = BTreeMap::new();

impl Meta {
    /// Sets `key`, copying the map first if another reading shares it.
    pub fn insert(&mut self, key: String, value: String) {
        Arc::make_mut(self.0.get_or_insert_with(Default::default)).insert(key, value);
    }

    /// The fields as a map of their own.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.deref().clone()
    }
}

impl Deref for Meta {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &BTreeMap<String, String> {
        self.0.as_deref().unwrap_or(&NO_META)
    }
}

impl<'a> IntoIterator for &'a Meta {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl From<BTreeMap<String, String>> for Meta {
    fn from(map: BTreeMap<String, String>) -> Meta {
        Meta((!map.is_empty()).then(|| Arc::new(map)))
    }
}

/// A decoded reading, before the log gives it an id.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub tag: Tag,
    /// Unix milliseconds, UTC.
    pub ts_ms: i64,
    pub value: Value,
    pub status: Status,
    /// Why the reading is an error; `None` when it is fine.
    pub reason: Option<String>,
    pub unit: Option<String>,
    /// Device-supplied identity fields and other extras, kept but never trusted over the subject.
    pub meta: Meta,
    /// The undecodable payload, kept byte for byte.
    pub raw: Option<Vec<u8>>,
    /// Recorded after the fact (a CSV import, or older than the freshness
    /// window when it reached the log): stored and counted like any other,
    /// but never opens an alert.
    pub backfill: bool,
}

impl Reading {
    /// A well-formed numeric reading (the simulator and tests build these).
    pub fn number(tag: Tag, ts_ms: i64, value: f64) -> Reading {
        Reading {
            tag,
            ts_ms,
            value: Value::Number(value),
            status: Status::Ok,
            reason: None,
            unit: None,
            meta: Meta::default(),
            raw: None,
            backfill: false,
        }
    }

    /// An error reading that keeps the payload it came from.
    pub fn error(tag: Tag, ts_ms: i64, reason: impl Into<String>, raw: &[u8]) -> Reading {
        Reading {
            tag,
            ts_ms,
            value: Value::Empty,
            status: Status::Error,
            reason: Some(reason.into()),
            unit: None,
            meta: Meta::default(),
            raw: Some(raw.to_vec()),
            backfill: false,
        }
    }
}

/// Marks the readings of one message as backfill: all of them when the
/// message says so (`Vigia-Backfill`), else those older than `freshness_ms`
/// when the broker received them at `broker_ms`. The log holds both inputs,
/// so a replay marks the same readings.
pub fn mark_backfill(readings: &mut [Reading], flagged: bool, broker_ms: i64, freshness_ms: i64) {
    for r in readings {
        r.backfill = flagged || broker_ms.saturating_sub(r.ts_ms) > freshness_ms;
    }
}

/// An event's identity in the log: the stream sequence of the message that
/// carried it and its index inside that message. Stable across replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct EventId {
    pub seq: u64,
    pub idx: u32,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.seq, self.idx)
    }
}

impl std::str::FromStr for EventId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (seq, idx) = s
            .split_once('-')
            .ok_or_else(|| format!("`{s}` is not an event id: write `<sequence>-<index>`, e.g. `42-0`"))?;
        Ok(EventId {
            seq: seq.parse().map_err(|_| format!("`{seq}` is not a stream sequence"))?,
            idx: idx.parse().map_err(|_| format!("`{idx}` is not an index"))?,
        })
    }
}
