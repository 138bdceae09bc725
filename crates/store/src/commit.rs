//! Applying one batch: blocks, counters, rollups, registry and the ledger
//! entry, in one transaction, guarded by the ledger's version.

use surrealdb::types::{Array, QueryError, RecordId, SurrealValue, Value as SValue};
use vigia_domain::{Ledger, Projection};

use crate::rows::{BlockRow, LastRow, ledger_guard, rollup_id, traffic_id};
use crate::{Store, StoreError};

#[derive(Debug, SurrealValue)]
pub(crate) struct CounterIn {
    pub(crate) id: RecordId,
    pub(crate) prefix: String,
    pub(crate) depth: i64,
    pub(crate) ok: i64,
    pub(crate) errors: i64,
}

#[derive(Debug, SurrealValue)]
pub(crate) struct RollupIn {
    pub(crate) id: RecordId,
    pub(crate) tag: String,
    pub(crate) grain: String,
    pub(crate) bucket: i64,
    pub(crate) count: i64,
    pub(crate) sum: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

#[derive(Debug, SurrealValue)]
pub(crate) struct SensorIn {
    pub(crate) id: RecordId,
    pub(crate) tag: String,
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) count: i64,
    pub(crate) last: LastRow,
}

#[derive(Debug, SurrealValue)]
pub(crate) struct TrafficIn {
    pub(crate) id: RecordId,
    pub(crate) root: String,
    pub(crate) grain: String,
    pub(crate) bucket: i64,
    pub(crate) ok: i64,
    pub(crate) errors: i64,
}

#[derive(Debug, SurrealValue)]
struct LedgerRow {
    version: i64,
    ranges: Vec<Vec<i64>>,
}

const THROW_MOVED: &str = "vigia: ledger moved";

// Only these fixed statements are ever sent; every value is a bound parameter.
pub(crate) const BEGIN: &str = "BEGIN TRANSACTION;
LET $current = $ledger_id.version ?? 0;
IF $current != $expected { THROW \"vigia: ledger moved\" };
UPSERT $ledger_id CONTENT { version: $expected + 1, ranges: $ranges };";
const BLOCKS: &str = "INSERT INTO block $blocks RETURN NONE;";
const EVENTS: &str = "INSERT INTO event $events RETURN NONE;";

/// How events are laid out in the store. Production uses [`Layout::Blocks`];
/// [`Layout::PerEvent`] is the alternative we measured and rejected
/// (see `docs/architecture.md`), kept so the bench can keep measuring it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One record per tag, hour and batch, holding columns of events.
    Blocks,
    /// One record per event.
    PerEvent,
}

#[derive(Debug, SurrealValue)]
struct EventRow {
    id: RecordId,
    tag: String,
    ts: i64,
    value: Option<f64>,
    status: String,
}

fn event_rows(projection: &Projection) -> Vec<EventRow> {
    projection
        .blocks
        .iter()
        .flat_map(|b| {
            (0..b.len()).map(move |i| EventRow {
                id: RecordId::new(
                    "event",
                    key(vec![SValue::from_t(b.seq[i] as i64), SValue::from_t(i64::from(b.idx[i]))]),
                ),
                tag: b.tag.clone(),
                ts: b.ts[i],
                value: b.value[i],
                status: b.status[i].as_str().to_owned(),
            })
        })
        .collect()
}
const COUNTERS: &str = "INSERT INTO counter $counters ON DUPLICATE KEY UPDATE
    ok += $input.ok, errors += $input.errors RETURN NONE;";
const ROLLUPS: &str = "INSERT INTO rollup $rollups ON DUPLICATE KEY UPDATE
    count += $input.count, sum += $input.sum,
    min = IF $input.min < min { $input.min } ELSE { min },
    max = IF $input.max > max { $input.max } ELSE { max } RETURN NONE;";
const SENSORS: &str = "INSERT INTO sensor $sensors ON DUPLICATE KEY UPDATE
    last = IF $input.last.ts > last.ts OR ($input.last.ts == last.ts AND $input.last.ord > last.ord)
        { $input.last } ELSE { last },
    first_seen = IF $input.first_seen < first_seen { $input.first_seen } ELSE { first_seen },
    last_seen = IF $input.last_seen > last_seen { $input.last_seen } ELSE { last_seen },
    count += $input.count RETURN NONE;";
const TRAFFIC: &str = "INSERT INTO traffic $traffic ON DUPLICATE KEY UPDATE
    ok += $input.ok, errors += $input.errors RETURN NONE;";
pub(crate) const COMMIT: &str = "COMMIT TRANSACTION;";

fn key(parts: Vec<SValue>) -> Array {
    Array::from(parts)
}

impl Store {
    /// The ledger of a stream's projection (empty when nothing was applied yet).
    pub async fn ledger(&self, stream: &str) -> Result<Ledger, StoreError> {
        let row: Option<LedgerRow> = self
            .db
            .query("SELECT version, ranges FROM ONLY $id")
            .bind(("id", RecordId::new("ledger", stream)))
            .await?
            .check()?
            .take(0)?;
        Ok(row.map_or_else(Ledger::default, |r| Ledger {
            version: r.version as u64,
            ranges: r.ranges.iter().map(|r| (r[0] as u64, r[1] as u64)).collect(),
        }))
    }

    /// Applies `projection` and records `next` as the stream's ledger, in one
    /// transaction that fails with [`StoreError::Conflict`] unless the stored
    /// ledger still has `expected_version`.
    pub async fn commit(
        &self,
        stream: &str,
        expected_version: u64,
        next: &Ledger,
        projection: &Projection,
    ) -> Result<(), StoreError> {
        self.commit_with_layout(Layout::Blocks, stream, expected_version, next, projection).await
    }

    /// [`Store::commit`] with a chosen event layout, for the layout bench.
    #[doc(hidden)]
    pub async fn commit_with_layout(
        &self,
        layout: Layout,
        stream: &str,
        expected_version: u64,
        next: &Ledger,
        projection: &Projection,
    ) -> Result<(), StoreError> {
        let mut sql = String::from(BEGIN);
        let (blocks, events) = match layout {
            Layout::Blocks => (projection.blocks.iter().map(BlockRow::from).collect(), Vec::new()),
            Layout::PerEvent => (Vec::new(), event_rows(projection)),
        };
        let blocks: Vec<BlockRow> = blocks;
        let counters: Vec<CounterIn> = projection
            .counters
            .iter()
            .map(|(prefix, c)| CounterIn {
                id: RecordId::new("counter", prefix.as_str()),
                prefix: prefix.clone(),
                depth: i64::from(c.depth),
                ok: c.ok as i64,
                errors: c.error as i64,
            })
            .collect();
        let rollups: Vec<RollupIn> = projection
            .rollups
            .iter()
            .map(|((tag, grain, bucket), r)| RollupIn {
                id: rollup_id(tag, grain.as_str(), *bucket),
                tag: tag.clone(),
                grain: grain.as_str().to_owned(),
                bucket: *bucket,
                count: r.count as i64,
                sum: r.sum,
                min: r.min,
                max: r.max,
            })
            .collect();
        let sensors: Vec<SensorIn> = projection
            .sensors
            .iter()
            .map(|(tag, s)| SensorIn {
                id: RecordId::new("sensor", tag.as_str()),
                tag: tag.clone(),
                first_seen: s.first_seen_ms,
                last_seen: s.last_seen_ms,
                count: s.count as i64,
                last: LastRow::new(s.last_seen_ms, s.last_id, &s.last_value, s.last_status),
            })
            .collect();
        let traffic: Vec<TrafficIn> = projection
            .traffic
            .iter()
            .map(|((root, grain, bucket), c)| TrafficIn {
                id: traffic_id(root, grain.as_str(), *bucket),
                root: root.clone(),
                grain: grain.as_str().to_owned(),
                bucket: *bucket,
                ok: c.ok as i64,
                errors: c.error as i64,
            })
            .collect();
        for (present, stmt) in [
            (!blocks.is_empty(), BLOCKS),
            (!events.is_empty(), EVENTS),
            (!counters.is_empty(), COUNTERS),
            (!rollups.is_empty(), ROLLUPS),
            (!sensors.is_empty(), SENSORS),
            (!traffic.is_empty(), TRAFFIC),
        ] {
            if present {
                sql.push('\n');
                sql.push_str(stmt);
            }
        }
        sql.push('\n');
        sql.push_str(COMMIT);
        let [guard_id, guard_expected, guard_ranges] = ledger_guard(stream, expected_version, next);
        let mut response = self
            .db
            .query(sql)
            .bind(guard_id)
            .bind(guard_expected)
            .bind(guard_ranges)
            .bind(("blocks", blocks))
            .bind(("events", events))
            .bind(("counters", counters))
            .bind(("rollups", rollups))
            .bind(("sensors", sensors))
            .bind(("traffic", traffic))
            .await
            .map_err(|e| if is_conflict(&e) { StoreError::Conflict } else { e.into() })?;
        settle(&mut response)
    }
}

/// The outcome of a guarded transaction: a failed transaction fails every
/// statement, so find the one that says why.
pub(crate) fn settle(response: &mut surrealdb::IndexedResults) -> Result<(), StoreError> {
    let mut errors: Vec<(usize, surrealdb::Error)> = response.take_errors().into_iter().collect();
    if errors.is_empty() {
        return Ok(());
    }
    if errors.iter().any(|(_, e)| is_conflict(e)) {
        return Err(StoreError::Conflict);
    }
    errors.sort_by_key(|(i, e)| (e.query_details() == Some(&QueryError::NotExecuted), *i));
    Err(errors.swap_remove(0).1.into())
}

pub(crate) fn is_conflict(e: &surrealdb::Error) -> bool {
    e.query_details() == Some(&QueryError::TransactionConflict)
        || (e.is_thrown() && e.message().contains(THROW_MOVED))
        || e.message().contains(THROW_MOVED)
}
