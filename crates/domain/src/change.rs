//! Corrections and retractions: changes to a stored reading, made through
//! the log (`ReadingCorrected` / `ReadingRetracted` v1 on the reading's tag),
//! so the store stays a projection and replay rebuilds it.
//!
//! A change names its target by event id and carries the target's
//! timestamp, which says which time block holds it. Tag and timestamp are a
//! reading's identity and never change: to move a reading, retract it and
//! record a new one.

use serde::{Deserialize, Serialize};

use crate::envelope::{BatchItem, ItemValue};
use crate::reading::{EventId, Reading};

/// The `Vigia-Event` header of a correction.
pub const READING_CORRECTED: &str = "ReadingCorrected";
/// The `Vigia-Event` header of a retraction.
pub const READING_RETRACTED: &str = "ReadingRetracted";

/// A correction's or retraction's body (v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingChange {
    pub v: u32,
    pub target: EventId,
    /// The target's timestamp (unix ms): locates its time block.
    pub ts: i64,
    /// The corrected value, as a device would send it (absent: empty, an error reading).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ItemValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// What a change does to its target.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Replace the reading's value and unit (decoded like a device's value).
    Correct(ReadingChange),
    /// Remove the reading from every projection.
    Retract(ReadingChange),
}

impl Change {
    pub fn body(&self) -> &ReadingChange {
        match self {
            Change::Correct(c) | Change::Retract(c) => c,
        }
    }

    /// The target as it reads after the change; `None` when retracted.
    pub fn apply(&self, old: &Reading) -> Option<Reading> {
        let Change::Correct(c) = self else { return None };
        let item = BatchItem {
            tag: old.tag.to_string(),
            ts: Some(old.ts_ms),
            value: c.value.clone(),
            unit: c.unit.clone(),
            meta: old.meta.to_map(),
        };
        Some(crate::envelope::item_to_reading(&old.tag, item, old.ts_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Status, Tag, Value};

    #[test]
    fn corrections_decode_like_devices_and_retractions_remove() {
        let old = Reading::error(Tag::parse("brasil.a.b").unwrap(), 5, "value is empty", b"{}");
        let body = |value: Option<ItemValue>| ReadingChange {
            v: 1,
            target: EventId { seq: 1, idx: 0 },
            ts: 5,
            value,
            unit: Some("C".into()),
        };
        let fixed = Change::Correct(body(Some(ItemValue::Text("12,5".into())))).apply(&old).unwrap();
        assert_eq!((fixed.value, fixed.status, fixed.ts_ms), (Value::Number(12.5), Status::Ok, 5));
        assert_eq!(fixed.unit.as_deref(), Some("C"));
        assert!(fixed.reason.is_none() && fixed.raw.is_none());
        let emptied = Change::Correct(body(None)).apply(&old).unwrap();
        assert_eq!(emptied.status, Status::Error);
        assert_eq!(Change::Retract(body(None)).apply(&old), None);
    }
}
