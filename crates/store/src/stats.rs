//! Reads behind the API's aggregates. They touch rollups, traffic and
//! counters by record id or small ranges, never a scan of the events: a month
//! of averages over 2,000 sensors reads about 2,000 × (30 days + 48 hours)
//! rollup records, whatever the number of events.

use surrealdb::types::{RecordId, SurrealValue};

use crate::read::{CounterRow, RollupRow};
use crate::rows::rollup_id;
use crate::{Store, StoreError};

/// Events of one root in one minute or hour, by status.
#[derive(Debug, Clone, PartialEq, SurrealValue)]
pub struct TrafficRow {
    pub root: String,
    pub bucket: i64,
    pub ok: i64,
    pub errors: i64,
}

/// The most buckets one request may ask for, per tag.
pub const MAX_BUCKETS: i64 = 20_000;

/// Bucket starts of `grain_ms` covering `[from, to)`.
fn buckets(grain_ms: i64, from: i64, to: i64) -> impl Iterator<Item = i64> {
    let first = from.div_euclid(grain_ms) * grain_ms;
    (0..).map(move |i| first + i * grain_ms).take_while(move |b| *b < to)
}

impl Store {
    /// Rollups of `tags` in `grain` (`m`, `h`, `d`) whose bucket starts in
    /// `[from, to)`, fetched by record id. Ordered by tag, then bucket.
    pub async fn rollups_of(
        &self,
        tags: &[String],
        grain: &str,
        grain_ms: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<RollupRow>, StoreError> {
        let ids: Vec<RecordId> = tags
            .iter()
            .flat_map(|t| buckets(grain_ms, from, to).take(MAX_BUCKETS as usize).map(move |b| rollup_id(t, grain, b)))
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows: Vec<RollupRow> = self
            .db
            .query("SELECT tag, grain, bucket, count, sum, min, max FROM $ids")
            .bind(("ids", ids))
            .await?
            .check()?
            .take(0)?;
        rows.sort_by(|a, b| (&a.tag, a.bucket).cmp(&(&b.tag, b.bucket)));
        Ok(rows)
    }

    /// Rollups of `tags` covering `[from, to]` with the fewest records: day
    /// rollups for the whole days inside, hour rollups for the partial days at
    /// both ends. `from` should fall on an hour. Ordered by tag, then bucket.
    pub async fn rollups_covering(&self, tags: &[String], from: i64, to: i64) -> Result<Vec<RollupRow>, StoreError> {
        const HOUR: i64 = 3_600_000;
        const DAY: i64 = 86_400_000;
        let first_day = from.div_euclid(DAY) * DAY + if from.rem_euclid(DAY) == 0 { 0 } else { DAY };
        let last_day = to.div_euclid(DAY) * DAY;
        let mut rows = Vec::new();
        if first_day < last_day {
            rows.extend(self.rollups_of(tags, "d", DAY, first_day, last_day).await?);
            rows.extend(self.rollups_of(tags, "h", HOUR, from, first_day).await?);
            rows.extend(self.rollups_of(tags, "h", HOUR, last_day, to + 1).await?);
        } else {
            rows.extend(self.rollups_of(tags, "h", HOUR, from, to + 1).await?);
        }
        rows.sort_by(|a, b| (&a.tag, a.bucket).cmp(&(&b.tag, b.bucket)));
        Ok(rows)
    }

    /// Traffic buckets (`m` or `h`) starting in `[from, to)`, every root.
    pub async fn traffic(&self, grain: &str, from: i64, to: i64) -> Result<Vec<TrafficRow>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT root, bucket, ok, errors FROM traffic
                 WHERE grain = $grain AND bucket >= $from AND bucket < $to ORDER BY bucket, root",
            )
            .bind(("grain", grain.to_owned()))
            .bind(("from", from))
            .bind(("to", to))
            .await?
            .check()?
            .take(0)?;
        Ok(rows)
    }

    /// Counters under `prefix` (itself included) down to `max_depth`, or every
    /// counter down to `max_depth` without a prefix. Ordered by prefix.
    pub async fn counters_under(&self, prefix: Option<&str>, max_depth: i64) -> Result<Vec<CounterRow>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT prefix, depth, ok, errors FROM counter
                 WHERE depth <= $max AND ($prefix = NONE OR prefix = $prefix
                     OR string::starts_with(prefix, $prefix + '.'))
                 ORDER BY prefix",
            )
            .bind(("prefix", prefix.map(str::to_owned)))
            .bind(("max", max_depth))
            .await?
            .check()?
            .take(0)?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::buckets;

    #[test]
    fn buckets_cover_the_range_from_the_floor() {
        let b: Vec<i64> = buckets(60, 130, 250).collect();
        assert_eq!(b, vec![120, 180, 240]);
        assert_eq!(buckets(60, 120, 120).count(), 0);
    }
}
