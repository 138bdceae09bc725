//! Reads behind the API's aggregates: rollups, the registry, the counters
//! derived from it, and traffic. They read shard records by id range, never
//! the events: a month of averages over a 2,000-sensor root is
//! `SHARDS × (30 days + up to 47 hours)` records, whatever the number of events.
//!
//! Counters are not stored apart: a sensor's counter is its registry entry
//! (`count`, `errors`), and a region's is the sum of the sensors under it,
//! added up here. So the tree can never disagree with the registry.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use surrealdb::types::SurrealValue;
use vigia_domain::{SensorDelta, Value, is_under};

use crate::layout::{RegistryRecord, RollupRecord, SHARDS, root_of, shard_of};
use crate::payload::{RegistryShard, decode_registry, decode_rollups, visit_rollups};
use crate::writer::grain_of;
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
#[derive(Debug, Clone, PartialEq)]
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

/// One tag's readings over a window: how many, their sum, lowest and highest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// No readings yet.
    pub const EMPTY: Summary = Summary { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY };

    fn add(&mut self, count: i64, sum: f64, min: f64, max: f64) {
        self.count += count;
        self.sum += sum;
        self.min = self.min.min(min);
        self.max = self.max.max(max);
    }
}

/// A sensor as the registry knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorRow {
    pub tag: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: i64,
    pub last_value: Option<f64>,
    pub last_text: Option<String>,
    pub last_status: String,
}

impl SensorRow {
    fn new(tag: String, s: &SensorDelta) -> SensorRow {
        SensorRow {
            tag,
            first_seen: s.first_seen_ms,
            last_seen: s.last_seen_ms,
            count: s.count as i64,
            last_value: s.last_value.as_number(),
            last_text: match &s.last_value {
                Value::Text(t) => Some(t.clone()),
                _ => None,
            },
            last_status: s.last_status.as_str().to_owned(),
        }
    }
}

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

/// Rollup records per page of a range read.
const PAGE: i64 = 512;

const ROLLUP_PAGE: &str =
    "SELECT * FROM rollup:[$root, $shard, $grain, $from]..[$root, $shard, $grain, $to] LIMIT $page";

impl Store {
    /// Every registry shard of `roots` (all roots when `None`).
    pub(crate) async fn registry_shards(&self, root: Option<&str>) -> Result<Vec<RegistryShard>, StoreError> {
        let rows: Vec<RegistryRecord> = match root {
            None => self.db.query("SELECT * FROM registry").await?.check()?.take(0)?,
            Some(r) => self
                .db
                .query("SELECT * FROM registry:[$root, 0]..=[$root, $last]")
                .bind(("root", r.to_owned()))
                .bind(("last", i64::from(SHARDS)))
                .await?
                .check()?
                .take(0)?,
        };
        rows.iter().map(|r| decode_registry(&r.data[..]).map_err(StoreError::from)).collect()
    }

    /// The sensor registry, ordered by tag.
    pub async fn sensors(&self) -> Result<Vec<SensorRow>, StoreError> {
        let mut rows: Vec<SensorRow> = self
            .registry_shards(None)
            .await?
            .into_iter()
            .flat_map(|shard| shard.into_iter().map(|(tag, s)| SensorRow::new(tag.clone(), &s)))
            .collect();
        rows.sort_by(|a, b| a.tag.cmp(&b.tag));
        Ok(rows)
    }

    /// One sensor of the registry.
    pub async fn sensor(&self, tag: &str) -> Result<Option<SensorRow>, StoreError> {
        let rows: Vec<RegistryRecord> =
            self.select(vec![crate::layout::registry_id(root_of(tag), shard_of(tag))]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        Ok(decode_registry(&row.data[..])?.get(tag).map(|s| SensorRow::new(tag.to_owned(), s)))
    }

    /// Every counter, ordered by prefix.
    pub async fn counters(&self) -> Result<Vec<CounterRow>, StoreError> {
        self.counters_under(None, i64::MAX).await
    }

    /// Counters under `prefix` (itself included) down to `max_depth`, or every
    /// counter down to `max_depth` without a prefix. Ordered by prefix.
    pub async fn counters_under(&self, prefix: Option<&str>, max_depth: i64) -> Result<Vec<CounterRow>, StoreError> {
        let mut tree: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
        for shard in self.registry_shards(prefix.map(root_of)).await? {
            for (tag, s) in &shard {
                let (ok, errors) = ((s.count - s.errors) as i64, s.errors as i64);
                let ends = tag.match_indices('.').map(|(i, _)| i).chain(std::iter::once(tag.len()));
                for (depth, end) in ends.enumerate() {
                    let p = &tag[..end];
                    let depth = depth as i64 + 1;
                    if depth > max_depth || prefix.is_some_and(|want| !is_under(p, want)) {
                        continue;
                    }
                    let c = tree.entry(p.to_owned()).or_insert((depth, 0, 0));
                    c.1 += ok;
                    c.2 += errors;
                }
            }
        }
        Ok(tree.into_iter().map(|(prefix, (depth, ok, errors))| CounterRow { prefix, depth, ok, errors }).collect())
    }

    /// Every rollup of one grain (`m`, `h`, `d`), ordered by tag and bucket. A full scan: for checks.
    pub async fn rollups(&self, grain: &str) -> Result<Vec<RollupRow>, StoreError> {
        let rows: Vec<RollupRecord> = self
            .db
            .query("SELECT * FROM rollup WHERE grain = $grain")
            .bind(("grain", grain.to_owned()))
            .await?
            .check()?
            .take(0)?;
        let mut out = Vec::new();
        for r in rows {
            push_rows(&mut out, &r, |_| true)?;
        }
        out.sort_by(|a, b| (&a.tag, a.bucket).cmp(&(&b.tag, b.bucket)));
        Ok(out)
    }

    /// Rollups of `tags` in `grain` (`m`, `h`, `d`) whose bucket starts in
    /// `[from, to)`, read by id range per shard. Ordered by tag, then bucket.
    pub async fn rollups_of(
        &self,
        tags: &[String],
        grain: &str,
        grain_ms: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<RollupRow>, StoreError> {
        let mut out = Vec::new();
        let shards = shards_of(tags);
        let keys: Vec<(&str, u32)> = shards.keys().copied().collect();
        self.scan_rollups(&keys, grain, grain_ms, from, to, |r, shard| {
            push_rows(&mut out, r, |t| shards[&shard].contains(t))
        })
        .await?;
        out.sort_by(|a, b| (&a.tag, a.bucket).cmp(&(&b.tag, b.bucket)));
        Ok(out)
    }

    /// Each record of `shards` in `grain` whose bucket starts in `[from, to)`,
    /// read by id range per shard, handed to `visit` with its shard.
    async fn scan_rollups<'s>(
        &self,
        shards: &[(&'s str, u32)],
        grain: &str,
        grain_ms: i64,
        from: i64,
        to: i64,
        mut visit: impl FnMut(&RollupRecord, (&'s str, u32)) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        grain_of(grain)?;
        let to = to.min(from.saturating_add(grain_ms.saturating_mul(MAX_BUCKETS)));
        for &(root, shard) in shards {
            let mut from = from.div_euclid(grain_ms) * grain_ms;
            loop {
                let rows: Vec<RollupRecord> = self
                    .db
                    .query(ROLLUP_PAGE)
                    .bind(("root", root.to_owned()))
                    .bind(("shard", i64::from(shard)))
                    .bind(("grain", grain.to_owned()))
                    .bind(("from", from))
                    .bind(("to", to))
                    .bind(("page", PAGE))
                    .await?
                    .check()?
                    .take(0)?;
                for r in &rows {
                    visit(r, (root, shard))?;
                }
                match rows.last() {
                    Some(last) if rows.len() as i64 == PAGE => from = last.bucket.saturating_add(1),
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// Every sensor under `prefix` (all when `None`) that has numeric
    /// readings in `[from, to]`, summarised (count, sum, min, max) and
    /// ordered by tag. Read with the fewest records: day rollups for the
    /// whole days inside, hour rollups for the partial days at both ends;
    /// `from` should fall on an hour. The sensors come from the rollups
    /// themselves, so the registry is not read, and each record is folded
    /// as it arrives: a month over 2,000 sensors is ~150,000 tag-bucket
    /// entries, a day ~50,000.
    pub async fn summaries_under(
        &self,
        prefix: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<String, Summary>, StoreError> {
        const HOUR: i64 = 3_600_000;
        const DAY: i64 = 86_400_000;
        let first_day = from.div_euclid(DAY) * DAY + if from.rem_euclid(DAY) == 0 { 0 } else { DAY };
        let last_day = to.div_euclid(DAY) * DAY;
        let ranges = if first_day < last_day {
            vec![("d", DAY, first_day, last_day), ("h", HOUR, from, first_day), ("h", HOUR, last_day, to + 1)]
        } else {
            vec![("h", HOUR, from, to + 1)]
        };
        let roots = match prefix {
            Some(p) => vec![root_of(p).to_owned()],
            None => self.roots().await?,
        };
        let shards: Vec<(&str, u32)> = roots.iter().flat_map(|r| (0..SHARDS).map(move |s| (r.as_str(), s))).collect();
        let mut acc: HashMap<String, Summary> = HashMap::new();
        for (grain, grain_ms, from, to) in ranges {
            self.scan_rollups(&shards, grain, grain_ms, from, to, |r, _| {
                visit_rollups(&r.data[..], |tag, d| {
                    if prefix.is_some_and(|p| !is_under(tag, p)) {
                        return;
                    }
                    if let Some(s) = acc.get_mut(tag) {
                        s.add(d.count as i64, d.sum, d.min, d.max);
                    } else {
                        let mut s = Summary::EMPTY;
                        s.add(d.count as i64, d.sum, d.min, d.max);
                        acc.insert(tag.to_owned(), s);
                    }
                })
                .map_err(StoreError::from)
            })
            .await?;
        }
        Ok(acc.into_iter().filter(|(_, s)| s.count > 0).collect())
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
}

/// Tags grouped by the shard record that holds them: `(root, shard)` → tags.
type Shards<'a> = BTreeMap<(&'a str, u32), BTreeSet<&'a str>>;

fn shards_of(tags: &[String]) -> Shards<'_> {
    let mut shards = Shards::new();
    for t in tags {
        shards.entry((root_of(t), shard_of(t))).or_default().insert(t.as_str());
    }
    shards
}

fn push_rows(out: &mut Vec<RollupRow>, r: &RollupRecord, wanted: impl Fn(&str) -> bool) -> Result<(), StoreError> {
    for (tag, d) in decode_rollups(&r.data[..])? {
        if wanted(&tag) {
            out.push(RollupRow {
                tag,
                grain: r.grain.clone(),
                bucket: r.bucket,
                count: d.count as i64,
                sum: d.sum,
                min: d.min,
                max: d.max,
            });
        }
    }
    Ok(())
}
