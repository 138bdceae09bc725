//! Retention: raw events, minute rollups and traffic age out of the store
//! in bounded batches; hour and day rollups can be kept far longer.
//!
//! Counters are history, not inventory: a sensor's `count` keeps the events
//! retention removed. What was removed is accounted per tag in
//! `retired:[root, shard]`, and the oldest hour still kept in full is the
//! `horizon` (`retention:readings`), so "projections equal a scan" still
//! holds as "counters equal a scan plus what was retired, and every rollup
//! from the horizon on equals a scan".
//!
//! A retention pass is one transaction guarded by the ledger like a flush,
//! run by the persister between flushes, deleting at most `limit` records of
//! each kind: it never holds ingestion up for long, and several persisters
//! never retire the same block twice.

use std::collections::BTreeMap;

use surrealdb::types::{Bytes, RecordId, SurrealValue};
use vigia_domain::{RollupGrain, Status};

use crate::blocks::decode_blocks;
use crate::layout::{BlockRecord, SHARDS, root_of, shard_of};
use crate::payload::{RetiredShard, decode_retired, encode_retired};
use crate::writer::{Writer, Writes};
use crate::{Store, StoreError};

/// What to remove: everything older than these times (unix ms); `None` keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Raw events in blocks whose hour ends before this.
    pub events_before: Option<i64>,
    /// Minute rollups and minute traffic older than this.
    pub minutes_before: Option<i64>,
    /// Hour rollups and hour traffic older than this.
    pub hours_before: Option<i64>,
    /// Day rollups older than this.
    pub days_before: Option<i64>,
}

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retired {
    pub blocks: usize,
    pub events: u64,
    pub rollups: usize,
    pub traffic: usize,
}

impl Retired {
    pub fn is_empty(&self) -> bool {
        self.blocks + self.rollups + self.traffic == 0
    }
}

/// Retired events of one tag.
#[derive(Debug, Clone, PartialEq)]
pub struct RetiredRow {
    pub tag: String,
    pub count: i64,
    pub errors: i64,
}

#[derive(Debug, SurrealValue)]
pub(crate) struct RetiredRecord {
    pub(crate) id: RecordId,
    pub(crate) root: String,
    pub(crate) shard: i64,
    pub(crate) data: Bytes,
}

#[derive(Debug, SurrealValue)]
struct Horizon {
    events_before: i64,
}

#[derive(Debug, SurrealValue)]
struct IdOnly {
    id: RecordId,
}

const OLD_BLOCKS: &str = "SELECT * FROM block:[$root, $shard, $min]..[$root, $shard, $before] LIMIT $limit";
const OLD_ROLLUPS: &str =
    "SELECT id FROM rollup:[$root, $shard, $grain, $min]..[$root, $shard, $grain, $before] LIMIT $limit";
const OLD_TRAFFIC: &str = "SELECT id FROM traffic:[$root, $grain, $min]..[$root, $grain, $before] LIMIT $limit";

fn retired_id(root: &str, shard: u32) -> RecordId {
    crate::layout::keyed("retired", root, shard)
}

impl Writer {
    /// Removes up to `limit` old records of each kind, in one guarded
    /// transaction, and accounts the removed events. Empty when nothing is due.
    pub async fn retire(&mut self, policy: &Retention, limit: usize) -> Result<Retired, StoreError> {
        loop {
            match self.try_retire(policy, limit).await {
                Err(StoreError::Conflict) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                other => return other,
            }
        }
    }

    async fn try_retire(&mut self, policy: &Retention, limit: usize) -> Result<Retired, StoreError> {
        let ledger = self.ledger().await?.clone();
        let roots = self.store.roots().await?;
        let limit = limit.max(1) as i64;
        let mut writes = Writes::default();
        let mut retired = Retired::default();
        let mut counts: BTreeMap<(String, u32), RetiredShard> = BTreeMap::new();
        // Only a pass that left no older block behind moves the horizon.
        let mut complete = true;
        for root in &roots {
            for shard in 0..SHARDS {
                if let Some(before) = policy.events_before {
                    let rows: Vec<BlockRecord> =
                        self.store.old(OLD_BLOCKS, root, Some(shard), None, before, limit).await?;
                    complete &= (rows.len() as i64) < limit;
                    for r in rows {
                        for b in decode_blocks(&r.data[..])? {
                            let e = counts.entry((root_of(&b.tag).to_owned(), shard_of(&b.tag))).or_default();
                            let c = e.entry(b.tag.clone()).or_default();
                            c.0 += b.len() as u64;
                            c.1 += b.status.iter().filter(|s| **s == Status::Error).count() as u64;
                            retired.events += b.len() as u64;
                        }
                        writes.dropped.push(r.id);
                        retired.blocks += 1;
                    }
                }
                for (grain, before) in [
                    (RollupGrain::Minute, policy.minutes_before),
                    (RollupGrain::Hour, policy.hours_before),
                    (RollupGrain::Day, policy.days_before),
                ] {
                    let Some(before) = before else { continue };
                    let rows: Vec<IdOnly> =
                        self.store.old(OLD_ROLLUPS, root, Some(shard), Some(grain), before, limit).await?;
                    retired.rollups += rows.len();
                    writes.dropped.extend(rows.into_iter().map(|r| r.id));
                    self.cache.rollups.retain(|k, _| !(k.0 == *root && k.1 == shard && k.2 == grain && k.3 < before));
                }
            }
            for (grain, before) in
                [(RollupGrain::Minute, policy.minutes_before), (RollupGrain::Hour, policy.hours_before)]
            {
                let Some(before) = before else { continue };
                let rows: Vec<IdOnly> = self.store.old(OLD_TRAFFIC, root, None, Some(grain), before, limit).await?;
                retired.traffic += rows.len();
                writes.dropped.extend(rows.into_iter().map(|r| r.id));
                self.cache.traffic.retain(|k, _| !(k.0 == *root && k.1 == grain && k.2 < before));
            }
        }
        if retired.is_empty() {
            return Ok(retired);
        }
        let mut records = Vec::new();
        for ((root, shard), add) in counts {
            let id = retired_id(&root, shard);
            let mut total = match self.store.select::<RetiredRecord>(vec![id.clone()]).await?.pop() {
                Some(r) => {
                    writes.dropped.push(id.clone());
                    decode_retired(&r.data[..])?
                }
                None => RetiredShard::new(),
            };
            for (tag, (n, e)) in add {
                let t = total.entry(tag).or_default();
                t.0 += n;
                t.1 += e;
            }
            records.push(RetiredRecord {
                id,
                root,
                shard: i64::from(shard),
                data: Bytes::from(encode_retired(&total)),
            });
        }
        writes.retired = records;
        writes.horizon = policy.events_before.filter(|_| complete);
        self.commit(ledger.version, ledger, writes).await?;
        Ok(retired)
    }
}

impl Store {
    async fn old<T: SurrealValue>(
        &self,
        sql: &'static str,
        root: &str,
        shard: Option<u32>,
        grain: Option<RollupGrain>,
        before: i64,
        limit: i64,
    ) -> Result<Vec<T>, StoreError> {
        Ok(self
            .db
            .query(sql)
            .bind(("root", root.to_owned()))
            .bind(("shard", shard.map(i64::from)))
            .bind(("grain", grain.map(|g| g.as_str().to_owned())))
            .bind(("before", before))
            .bind(("min", i64::MIN))
            .bind(("limit", limit))
            .await?
            .check()?
            .take(0)?)
    }

    /// The start of the oldest block still stored (unix ms), if any.
    pub async fn oldest_block(&self) -> Result<Option<i64>, StoreError> {
        #[derive(Debug, SurrealValue)]
        struct Start {
            start: i64,
        }
        let mut oldest: Option<i64> = None;
        for root in self.roots().await? {
            for shard in 0..SHARDS {
                let rows: Vec<Start> = self
                    .db
                    .query("SELECT start FROM block:[$root, $shard, $min]..[$root, $shard, $max] LIMIT 1")
                    .bind(("root", root.clone()))
                    .bind(("shard", i64::from(shard)))
                    .bind(("min", i64::MIN))
                    .bind(("max", i64::MAX))
                    .await?
                    .check()?
                    .take(0)?;
                if let Some(s) = rows.first() {
                    oldest = Some(oldest.map_or(s.start, |o| o.min(s.start)));
                }
            }
        }
        Ok(oldest)
    }

    /// Events retention removed, per tag, ordered by tag.
    pub async fn retired(&self) -> Result<Vec<RetiredRow>, StoreError> {
        let rows: Vec<RetiredRecord> = self.db.query("SELECT * FROM retired").await?.check()?.take(0)?;
        let mut out = Vec::new();
        for r in rows {
            for (tag, (count, errors)) in decode_retired(&r.data[..])? {
                out.push(RetiredRow { tag, count: count as i64, errors: errors as i64 });
            }
        }
        out.sort_by(|a, b| a.tag.cmp(&b.tag));
        Ok(out)
    }

    /// The hour before which raw events have been retired (`None`: none yet).
    pub async fn horizon(&self) -> Result<Option<i64>, StoreError> {
        let row: Option<Horizon> =
            self.db.query("SELECT events_before FROM ONLY retention:readings").await?.check()?.take(0)?;
        Ok(row.map(|h| h.events_before))
    }
}
