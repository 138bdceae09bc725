//! Dead letters: messages a consumer could not apply, kept with their bytes
//! and the reason, so nothing that reached a stream disappears silently. The
//! same message also goes to the `DEADLETTER` stream (see `vigia_bus`).

use surrealdb::types::{RecordId, SurrealValue};

use crate::{Store, StoreError};

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq, SurrealValue)]
pub struct DeadLetter {
    pub stream: String,
    pub consumer: String,
    pub seq: i64,
    pub subject: String,
    pub reason: String,
    /// The payload as text when it is UTF-8 ...
    pub raw: Option<String>,
    /// ... else in hex.
    pub raw_hex: Option<String>,
    /// Unix ms when the message reached its stream.
    pub at: i64,
}

impl DeadLetter {
    pub fn new(stream: &str, consumer: &str, seq: u64, subject: &str, reason: &str, payload: &[u8], at: i64) -> Self {
        let (raw, raw_hex) = match std::str::from_utf8(payload) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(payload.iter().map(|b| format!("{b:02x}")).collect())),
        };
        DeadLetter {
            stream: stream.to_owned(),
            consumer: consumer.to_owned(),
            seq: seq as i64,
            subject: subject.to_owned(),
            reason: reason.to_owned(),
            raw,
            raw_hex,
            at,
        }
    }
}

impl Store {
    /// Records a dead letter; recording the same stream sequence again changes nothing.
    pub async fn record_dead_letter(&self, dead: &DeadLetter) -> Result<(), StoreError> {
        let id = RecordId::new("dead_letter", format!("{}-{}", dead.stream, dead.seq));
        self.db
            .query("UPSERT $id CONTENT $dead RETURN NONE")
            .bind(("id", id))
            .bind(("dead", dead.clone()))
            .await?
            .check()?;
        Ok(())
    }

    /// Dead letters, newest first.
    pub async fn dead_letters(&self, offset: usize, count: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = self
            .db
            .query("SELECT * OMIT id FROM dead_letter ORDER BY at DESC, seq DESC LIMIT $count START $offset")
            .bind(("offset", offset as i64))
            .bind(("count", count as i64))
            .await?
            .check()?
            .take(0)?;
        Ok(rows)
    }
}
