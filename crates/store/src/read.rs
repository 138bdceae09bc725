//! Reads of the projections, for the API, the consistency check and tests.

use surrealdb::types::SurrealValue;
use vigia_domain::{BLOCK_SPAN_MS, Block, StoredEvent};

use crate::rows::{BlockRow, LastRow};
use crate::{Store, StoreError};

/// One hierarchical counter.
#[derive(Debug, Clone, PartialEq, SurrealValue)]
pub struct CounterRow {
    pub prefix: String,
    pub depth: i64,
    pub ok: i64,
    pub errors: i64,
}

/// One rollup bucket of one sensor.
#[derive(Debug, Clone, PartialEq, SurrealValue)]
pub struct RollupRow {
    pub tag: String,
    /// `m`, `h` or `d`.
    pub grain: String,
    pub bucket: i64,
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// A sensor as the registry knows it.
#[derive(Debug, Clone, PartialEq, SurrealValue)]
pub struct SensorRow {
    pub tag: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: i64,
    pub last_value: Option<f64>,
    pub last_text: Option<String>,
    pub last_status: String,
}

#[derive(Debug, SurrealValue)]
pub(crate) struct SensorStored {
    pub(crate) tag: String,
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) count: i64,
    pub(crate) last: LastRow,
}

// The same window twice: counted first, loaded only when under the cap.
const COUNT_WINDOW: &str = "RETURN math::sum((SELECT VALUE array::len(seq) FROM block
    WHERE ($from = NONE OR start >= $from) AND ($to = NONE OR start <= $to)
    AND ($prefix = NONE OR string::starts_with(tag, $prefix))))";
const SELECT_WINDOW: &str = "SELECT * FROM block
    WHERE ($from = NONE OR start >= $from) AND ($to = NONE OR start <= $to)
    AND ($prefix = NONE OR string::starts_with(tag, $prefix))";

impl From<SensorStored> for SensorRow {
    fn from(s: SensorStored) -> Self {
        SensorRow {
            tag: s.tag,
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            count: s.count,
            last_value: s.last.value,
            last_text: s.last.text,
            last_status: s.last.status,
        }
    }
}

impl Store {
    /// Every counter, ordered by prefix.
    pub async fn counters(&self) -> Result<Vec<CounterRow>, StoreError> {
        let rows =
            self.db.query("SELECT prefix, depth, ok, errors FROM counter ORDER BY prefix").await?.check()?.take(0)?;
        Ok(rows)
    }

    /// Every rollup of one grain (`m`, `h`, `d`), ordered by tag and bucket.
    pub async fn rollups(&self, grain: &str) -> Result<Vec<RollupRow>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT tag, grain, bucket, count, sum, min, max FROM rollup WHERE grain = $grain ORDER BY tag, bucket",
            )
            .bind(("grain", grain.to_owned()))
            .await?
            .check()?
            .take(0)?;
        Ok(rows)
    }

    /// The sensor registry, ordered by tag.
    pub async fn sensors(&self) -> Result<Vec<SensorRow>, StoreError> {
        let rows: Vec<SensorStored> = self
            .db
            .query("SELECT tag, first_seen, last_seen, count, last FROM sensor ORDER BY tag")
            .await?
            .check()?
            .take(0)?;
        Ok(rows.into_iter().map(SensorRow::from).collect())
    }

    /// The stored events of one tag, in log order.
    pub async fn events_of(&self, tag: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<BlockRow> = self
            .db
            .query("SELECT * FROM block WHERE tag = $tag")
            .bind(("tag", tag.to_owned()))
            .await?
            .check()?
            .take(0)?;
        Ok(sorted_events(rows))
    }

    /// Events whose block overlaps `[from, to]` and whose tag starts with
    /// `prefix` (plain text: `bra` matches `brasil.x` and `braga.y`), in log
    /// order. Counts first and stops with [`StoreError::TooMany`] past `cap`
    /// events, before loading anything, so a careless query cannot exhaust memory.
    pub async fn events_window(
        &self,
        prefix: Option<&str>,
        from: Option<i64>,
        to: Option<i64>,
        cap: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let from_block = from.map(|f| f.div_euclid(BLOCK_SPAN_MS) * BLOCK_SPAN_MS);
        // Count first, without loading the columns, so an oversized request
        // is refused before it costs memory.
        let prefix = prefix.map(str::to_owned);
        let total: Option<i64> = self
            .db
            .query(COUNT_WINDOW)
            .bind(("from", from_block))
            .bind(("to", to))
            .bind(("prefix", prefix.clone()))
            .await?
            .check()?
            .take(0)?;
        let total = total.unwrap_or(0).max(0) as usize;
        if total > cap {
            return Err(StoreError::TooMany { found: total, cap });
        }
        let rows: Vec<BlockRow> = self
            .db
            .query(SELECT_WINDOW)
            .bind(("from", from_block))
            .bind(("to", to))
            .bind(("prefix", prefix))
            .await?
            .check()?
            .take(0)?;
        Ok(sorted_events(rows))
    }

    /// One sensor of the registry.
    pub async fn sensor(&self, tag: &str) -> Result<Option<SensorRow>, StoreError> {
        let row: Option<SensorStored> = self
            .db
            .query("SELECT tag, first_seen, last_seen, count, last FROM ONLY $id")
            .bind(("id", surrealdb::types::RecordId::new("sensor", tag)))
            .await?
            .check()?
            .take(0)?;
        Ok(row.map(SensorRow::from))
    }

    /// Every stored event, in log order. A full scan: for checks and tests.
    pub async fn all_events(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<BlockRow> = self.db.query("SELECT * FROM block").await?.check()?.take(0)?;
        Ok(sorted_events(rows))
    }
}

fn sorted_events(rows: Vec<BlockRow>) -> Vec<StoredEvent> {
    let mut events: Vec<StoredEvent> =
        rows.into_iter().map(BlockRow::into_block).flat_map(|b: Block| b.events()).collect();
    events.sort_by_key(|e| e.id);
    events
}
