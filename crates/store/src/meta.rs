//! Sensor metadata (`sensor_meta:⟨tag⟩`), projected from `SensorDescribed`
//! events. A description replaces the previous one only if it is newer, so
//! redelivery and replay in any order end in the same row.

use surrealdb::types::{RecordId, SurrealValue};
use vigia_domain::SensorDescription;

use crate::{Store, StoreError};

/// A sensor's metadata as stored; `location` and `thresholds` as JSON text
/// to keep the table schemaless-simple.
#[derive(Debug, Clone, PartialEq, SurrealValue)]
pub struct SensorMetaRow {
    pub tag: String,
    pub description: String,
    pub ts: i64,
    pub deleted: bool,
}

impl SensorMetaRow {
    /// The description this row holds.
    pub fn description(&self) -> Option<SensorDescription> {
        serde_json::from_str(&self.description).ok()
    }
}

const APPLY: &str = "IF ($id.ts ?? -1) < $ts {
    UPSERT $id CONTENT { tag: $tag, description: $description, ts: $ts, deleted: $deleted } RETURN NONE
}";

impl Store {
    /// Applies a description; idempotent, newest wins.
    pub async fn apply_description(&self, d: &SensorDescription) -> Result<(), StoreError> {
        let description = serde_json::to_string(d).expect("descriptions serialise");
        self.db
            .query(APPLY)
            .bind(("id", RecordId::new("sensor_meta", d.tag.as_str())))
            .bind(("tag", d.tag.to_string()))
            .bind(("description", description))
            .bind(("ts", d.ts_ms))
            .bind(("deleted", d.deleted))
            .await?
            .check()?;
        Ok(())
    }

    /// One sensor's live metadata, if described.
    pub async fn description(&self, tag: &str) -> Result<Option<SensorDescription>, StoreError> {
        let row: Option<SensorMetaRow> = self
            .db
            .query("SELECT tag, description, ts, deleted FROM ONLY $id")
            .bind(("id", RecordId::new("sensor_meta", tag)))
            .await?
            .check()?
            .take(0)?;
        Ok(row.filter(|r| !r.deleted).and_then(|r| r.description()))
    }

    /// Every sensor's live (not deleted) metadata, by tag.
    pub async fn descriptions(&self) -> Result<Vec<SensorDescription>, StoreError> {
        let rows: Vec<SensorMetaRow> = self
            .db
            .query("SELECT tag, description, ts, deleted FROM sensor_meta WHERE deleted = false ORDER BY tag")
            .await?
            .check()?
            .take(0)?;
        Ok(rows.iter().filter_map(SensorMetaRow::description).collect())
    }
}
