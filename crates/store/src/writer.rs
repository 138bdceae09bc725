//! The one way projections reach the store: a [`Writer`] applies messages as
//! events in one transaction per flush, guarded by the ledger's version.
//!
//! Aggregates are written whole, not incremented: the writer keeps the
//! rollup, registry and traffic records it wrote (a write-through cache),
//! merges a flush's deltas into them in memory and writes each touched record
//! once. That keeps a flush to a few dozen record writes whatever its size;
//! SurrealDB's `ON DUPLICATE KEY UPDATE` costs a savepoint rollback per
//! existing row that walks the whole transaction, which made large flushes
//! quadratic (`docs/decisions/0002-aggregates-in-shards.md`).
//!
//! The cache is only trusted at the ledger version this writer committed
//! last. Every commit re-checks that version inside the transaction; if
//! anyone else moved the ledger (another persister on the same consumer), the
//! commit fails as a conflict, the cache is dropped, and the flush is retried
//! from what the store holds. Exactly-once therefore still rests on the
//! ledger alone, as before.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use surrealdb::types::{Bytes, RecordId, SurrealValue};
use vigia_domain::{Block, Ledger, Projection, RollupDelta, RollupGrain, StoredEvent};

use crate::blocks::encode_blocks;
use crate::layout::{
    BlockRecord, RegistryRecord, RollupRecord, TrafficRecord, block_id, ledger_guard, registry_id, rollup_id, root_of,
    shard_of, traffic_id,
};
use crate::payload::{RegistryShard, RollupShard, decode_registry, decode_rollups, encode_registry, encode_rollups};
use crate::{Store, StoreError};

/// What applying messages did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub messages: usize,
    pub events: u64,
    /// Messages the ledger already held (redeliveries).
    pub skipped: usize,
}

impl Applied {
    pub fn add(&mut self, other: Applied) {
        self.messages += other.messages;
        self.events += other.events;
        self.skipped += other.skipped;
    }
}

pub(crate) type RollupKey = (String, u32, RollupGrain, i64);
pub(crate) type RegistryKey = (String, u32);
pub(crate) type TrafficKey = (String, RollupGrain, i64);
/// One rollup record's share of a projection: its tags (in order) and deltas.
type TagDeltas<'a> = Vec<(&'a String, RollupDelta)>;

/// Records as this writer last wrote (or read) them.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    pub(crate) rollups: HashMap<RollupKey, RollupShard>,
    pub(crate) registry: HashMap<RegistryKey, RegistryShard>,
    pub(crate) traffic: HashMap<TrafficKey, (u64, u64)>,
}

/// Cached rollup records kept between flushes; past this, only the last
/// flush's records are kept (backfills touch many old buckets once).
const CACHE_ROLLUPS: usize = 4096;

// Only these fixed statements are ever sent; every value is a bound parameter.
//
// The ledger is updated in place once it exists: an `UPSERT` of an existing
// record first tries to create it and builds an error when that fails (with
// `RUST_BACKTRACE=1`, a captured backtrace, once per flush).
pub(crate) const BEGIN: &str = "BEGIN TRANSACTION;
LET $current = $ledger_id.version ?? 0;
IF $current != $expected { THROW \"vigia: ledger moved\" };
IF $current == 0 {
    UPSERT $ledger_id CONTENT { version: $expected + 1, ranges: $ranges } RETURN NONE
} ELSE {
    UPDATE $ledger_id CONTENT { version: $expected + 1, ranges: $ranges } RETURN NONE
};";
const WRITE: &str = "
IF array::len($dropped) > 0 { DELETE $dropped RETURN NONE };
IF array::len($blocks) > 0 { INSERT INTO block $blocks RETURN NONE };
IF array::len($rollups) > 0 { INSERT INTO rollup $rollups RETURN NONE };
IF array::len($registry) > 0 { INSERT INTO registry $registry RETURN NONE };
IF array::len($traffic) > 0 { INSERT INTO traffic $traffic RETURN NONE };
IF array::len($retired) > 0 { INSERT INTO retired $retired RETURN NONE };
IF $horizon != NONE {
    UPSERT retention:readings SET events_before = math::max([events_before ?? $horizon, $horizon]) RETURN NONE
};";
pub(crate) const COMMIT: &str = "COMMIT TRANSACTION;";
const THROW_MOVED: &str = "vigia: ledger moved";

/// Everything one transaction writes besides the ledger.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    pub(crate) blocks: Vec<BlockRecord>,
    /// Existing records this transaction replaces or removes (deleted first).
    pub(crate) dropped: Vec<RecordId>,
    pub(crate) rollups: Vec<(RollupKey, RollupShard)>,
    pub(crate) registry: Vec<(RegistryKey, RegistryShard)>,
    pub(crate) traffic: Vec<(TrafficKey, (u64, u64))>,
    /// Retention's per-tag account of removed events (replacing the old records).
    pub(crate) retired: Vec<crate::retention::RetiredRecord>,
    /// Raw events before this are gone (retention only).
    pub(crate) horizon: Option<i64>,
}

impl Writes {
    /// About what the engine will hold for these writes: payloads plus a
    /// record's key and fields, and a key per deleted record. A scattered
    /// backfill flush of 100,000 events rewrote ~50,000 rollup records,
    /// which SurrealKV counted as 228 MB.
    fn estimated_bytes(&self) -> usize {
        const RECORD: usize = 192;
        const DELETE: usize = 96;
        let rollups: usize = self.rollups.iter().map(|(_, s)| RECORD + s.len() * (48 + ROLLUP_ENTRY)).sum();
        let registry: usize = self.registry.iter().map(|(_, s)| RECORD + s.len() * 160).sum();
        let blocks: usize = self.blocks.iter().map(|b| RECORD + b.data.len()).sum();
        rollups + registry + blocks + (self.traffic.len() * RECORD) + self.dropped.len() * DELETE
    }
}

/// Encoded bytes of one tag's rollup besides its tag, at most: count and
/// three floats (version 2 often writes fewer, so the estimate errs high).
const ROLLUP_ENTRY: usize = 4 + 3 * 8;

/// Applies projections to the store for one stream's ledger.
#[derive(Debug)]
pub struct Writer {
    pub(crate) store: Store,
    pub(crate) stream: String,
    /// The ledger as this writer last committed or read it; `None` = read it again.
    pub(crate) ledger: Option<Ledger>,
    pub(crate) cache: Cache,
}

impl Writer {
    pub fn new(store: &Store, stream: &str) -> Writer {
        Writer { store: store.clone(), stream: stream.to_owned(), ledger: None, cache: Cache::default() }
    }

    /// The ledger as far as this writer knows (read from the store when unknown).
    pub async fn ledger(&mut self) -> Result<&Ledger, StoreError> {
        if self.ledger.is_none() {
            self.ledger = Some(self.store.ledger(&self.stream).await?);
        }
        Ok(self.ledger.as_ref().expect("just set"))
    }

    /// The ledger as this writer last committed or read it, without asking
    /// the store (`None` after [`Writer::forget`]).
    pub fn known_ledger(&self) -> Option<&Ledger> {
        self.ledger.as_ref()
    }

    /// The store this writer writes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Forgets everything cached: the next write reads the store first.
    pub fn forget(&mut self) {
        self.ledger = None;
        self.cache = Cache::default();
    }

    /// Commits messages as the given events (none marks a message applied
    /// without events), skipping those the ledger holds, in one transaction;
    /// in several, each with its messages' ledger entries, when one would be
    /// over the store's transaction budget (a backfill scattered over weeks
    /// rewrites tens of thousands of rollup records). A single message is
    /// always tried whole. Retries when another writer committed first; other
    /// errors are returned.
    pub async fn apply(&mut self, decoded: &[(u64, &[StoredEvent])]) -> Result<Applied, StoreError> {
        self.apply_projected(decoded, None).await
    }

    /// [`Writer::apply`] with the projection of all of `decoded`'s events
    /// already made (the persister projects each pull while the previous
    /// flush commits). It is used only while the ledger holds none of these
    /// messages; otherwise the projection of the fresh ones is made here.
    pub async fn apply_projected(
        &mut self,
        decoded: &[(u64, &[StoredEvent])],
        projected: Option<&Projection>,
    ) -> Result<Applied, StoreError> {
        let mut conflicts = 0u32;
        loop {
            let ledger = self.ledger().await?.clone();
            let mut next = ledger.clone();
            let mut fresh = vec![false; decoded.len()];
            let mut applied = Applied { messages: decoded.len(), ..Applied::default() };
            for (i, (seq, evs)) in decoded.iter().enumerate() {
                if next.contains(*seq) {
                    applied.skipped += 1;
                    continue;
                }
                next.insert(*seq);
                fresh[i] = true;
                applied.events += evs.len() as u64;
            }
            if next == ledger {
                return Ok(applied);
            }
            let made;
            let projection = match projected.filter(|_| applied.skipped == 0) {
                Some(p) => p,
                None => {
                    let events = decoded.iter().zip(&fresh).filter(|(_, f)| **f).flat_map(|((_, evs), _)| evs.iter());
                    made = Projection::of(events);
                    &made
                }
            };
            let splittable = decoded.len() > 1;
            match self.commit_projection(&ledger, next, projection, splittable).await {
                Ok(()) => return Ok(applied),
                // Too big for one transaction: each half is its own, with its
                // own ledger entries, in log order. The records already read
                // stay cached for the halves.
                Err(StoreError::TooLarge { bytes, budget }) => {
                    tracing::debug!(
                        bytes,
                        budget,
                        messages = decoded.len(),
                        "Flush over the transaction budget; committing it in halves."
                    );
                    let (first, second) = decoded.split_at(decoded.len() / 2);
                    let mut applied = Box::pin(self.apply(first)).await?;
                    applied.add(Box::pin(self.apply(second)).await?);
                    return Ok(applied);
                }
                Err(StoreError::Conflict) => {
                    conflicts += 1;
                    tracing::debug!(conflicts, "Another writer committed first; retrying the flush.");
                    tokio::time::sleep(Duration::from_millis(u64::from(conflicts.min(20)) * 5)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Rewrites the ledger as it is: a write the store must take if it takes any.
    pub async fn probe(&mut self) -> Result<(), StoreError> {
        let ledger = self.ledger().await?.clone();
        match self.commit_projection(&ledger, ledger.clone(), &Projection::default(), false).await {
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One guarded transaction: the projection merged into the records it
    /// touches. With `splittable`, refuses ([`StoreError::TooLarge`]) before
    /// writing anything when that is over the store's transaction budget.
    async fn commit_projection(
        &mut self,
        ledger: &Ledger,
        next: Ledger,
        projection: &Projection,
        splittable: bool,
    ) -> Result<(), StoreError> {
        let mut writes = Writes { blocks: block_records(&projection.blocks), ..Writes::default() };
        self.merge_aggregates(projection, &mut writes).await?;
        if let Some(budget) = self.store.txn_budget.filter(|_| splittable) {
            let bytes = writes.estimated_bytes();
            if bytes > budget {
                return Err(StoreError::TooLarge { bytes, budget });
            }
        }
        self.commit(ledger.version, next, writes).await
    }

    /// Loads what the cache lacks, then merges the projection's deltas.
    async fn merge_aggregates(&mut self, p: &Projection, writes: &mut Writes) -> Result<(), StoreError> {
        // Grouped by record with borrowed keys, each group's tags in order
        // (the projection's rollups are sorted by tag): a backfill flush has
        // hundreds of thousands of them, nearly one record each, and sorted
        // string-keyed maps built entry by entry led its profile.
        let mut grouped: HashMap<(&str, u32, RollupGrain, i64), TagDeltas<'_>> = HashMap::new();
        for t in &p.tags {
            let (root, shard) = (root_of(&t.tag), shard_of(&t.tag));
            for (grain, bucket, delta) in &t.rollups {
                grouped.entry((root, shard, *grain, *bucket)).or_default().push((&t.tag, *delta));
            }
        }
        let rollups: Vec<(RollupKey, TagDeltas<'_>)> = grouped
            .into_iter()
            .map(|((root, shard, grain, bucket), deltas)| ((root.to_owned(), shard, grain, bucket), deltas))
            .collect();
        let mut registry: BTreeMap<RegistryKey, RegistryShard> = BTreeMap::new();
        for t in &p.tags {
            let key = (root_of(&t.tag).to_owned(), shard_of(&t.tag));
            registry.entry(key).or_default().insert(t.tag.clone(), t.sensor.clone());
        }
        self.load(rollups.iter().map(|(k, _)| k), registry.keys(), p.traffic.keys()).await?;
        for (key, deltas) in rollups {
            let shard = match self.cache.rollups.get(&key) {
                Some(cached) => {
                    writes.dropped.push(rollup_id(&key.0, key.1, key.2.as_str(), key.3));
                    let mut shard = cached.clone();
                    for (tag, d) in deltas {
                        shard.entry(tag.clone()).and_modify(|r| r.merge(&d)).or_insert(d);
                    }
                    shard
                }
                // Sorted already: the map is built in one pass.
                None => deltas.into_iter().map(|(tag, d)| (tag.clone(), d)).collect(),
            };
            writes.rollups.push((key, shard));
        }
        for (key, deltas) in registry {
            let mut shard = self.cache.registry.get(&key).cloned().unwrap_or_default();
            if self.cache.registry.contains_key(&key) {
                writes.dropped.push(registry_id(&key.0, key.1));
            }
            for (tag, d) in deltas {
                shard.entry(tag).and_modify(|s| s.merge(&d)).or_insert(d);
            }
            writes.registry.push((key, shard));
        }
        for ((root, grain, bucket), d) in &p.traffic {
            let key = (root.clone(), *grain, *bucket);
            let (ok, errors) = match self.cache.traffic.get(&key) {
                Some(c) => {
                    writes.dropped.push(traffic_id(root, grain.as_str(), *bucket));
                    *c
                }
                None => (0, 0),
            };
            writes.traffic.push((key, (ok + d.ok, errors + d.error)));
        }
        Ok(())
    }

    /// Reads into the cache the records of these keys that it does not hold.
    /// A key still missing afterwards has no record in the store.
    pub(crate) async fn load<'a>(
        &mut self,
        rollups: impl Iterator<Item = &'a RollupKey>,
        registry: impl Iterator<Item = &'a RegistryKey>,
        traffic: impl Iterator<Item = &'a TrafficKey>,
    ) -> Result<(), StoreError> {
        let ids: Vec<RecordId> = rollups
            .filter(|k| !self.cache.rollups.contains_key(*k))
            .map(|k| rollup_id(&k.0, k.1, k.2.as_str(), k.3))
            .collect();
        if !ids.is_empty() {
            for r in self.store.select::<RollupRecord>(ids).await? {
                let grain = grain_of(&r.grain)?;
                let key = (r.root, r.shard as u32, grain, r.bucket);
                self.cache.rollups.insert(key, decode_rollups(&r.data[..])?);
            }
        }
        let ids: Vec<RecordId> =
            registry.filter(|k| !self.cache.registry.contains_key(*k)).map(|k| registry_id(&k.0, k.1)).collect();
        if !ids.is_empty() {
            for r in self.store.select::<RegistryRecord>(ids).await? {
                self.cache.registry.insert((r.root, r.shard as u32), decode_registry(&r.data[..])?);
            }
        }
        let ids: Vec<RecordId> = traffic
            .filter(|k| !self.cache.traffic.contains_key(*k))
            .map(|k| traffic_id(&k.0, k.1.as_str(), k.2))
            .collect();
        if !ids.is_empty() {
            for r in self.store.select::<TrafficRecord>(ids).await? {
                let key = (r.root, grain_of(&r.grain)?, r.bucket);
                self.cache.traffic.insert(key, (r.ok as u64, r.errors as u64));
            }
        }
        Ok(())
    }

    /// Writes `writes` and the ledger `next` in one transaction, if the
    /// stored ledger still has `expected`. On success the cache holds what
    /// was written; on a conflict it is dropped.
    pub(crate) async fn commit(&mut self, expected: u64, mut next: Ledger, writes: Writes) -> Result<(), StoreError> {
        let rollups: Vec<RollupRecord> = writes
            .rollups
            .iter()
            .filter(|(_, shard)| !shard.is_empty())
            .map(|((root, shard, grain, bucket), entries)| RollupRecord {
                id: rollup_id(root, *shard, grain.as_str(), *bucket),
                root: root.clone(),
                shard: i64::from(*shard),
                grain: grain.as_str().to_owned(),
                bucket: *bucket,
                n: entries.len() as i64,
                data: Bytes::from(encode_rollups(entries)),
            })
            .collect();
        let registry: Vec<RegistryRecord> = writes
            .registry
            .iter()
            .filter(|(_, shard)| !shard.is_empty())
            .map(|((root, shard), entries)| RegistryRecord {
                id: registry_id(root, *shard),
                root: root.clone(),
                shard: i64::from(*shard),
                n: entries.len() as i64,
                data: Bytes::from(encode_registry(entries)),
            })
            .collect();
        let traffic: Vec<TrafficRecord> = writes
            .traffic
            .iter()
            .filter(|(_, (ok, errors))| ok + errors > 0)
            .map(|((root, grain, bucket), (ok, errors))| TrafficRecord {
                id: traffic_id(root, grain.as_str(), *bucket),
                root: root.clone(),
                grain: grain.as_str().to_owned(),
                bucket: *bucket,
                ok: *ok as i64,
                errors: *errors as i64,
            })
            .collect();
        let [guard_id, guard_expected, guard_ranges] = ledger_guard(&self.stream, expected, &next);
        let result = self
            .store
            .db
            .query(format!("{BEGIN}\n{WRITE}\n{COMMIT}"))
            .bind(guard_id)
            .bind(guard_expected)
            .bind(guard_ranges)
            .bind(("blocks", writes.blocks))
            .bind(("dropped", writes.dropped))
            .bind(("rollups", rollups))
            .bind(("registry", registry))
            .bind(("traffic", traffic))
            .bind(("retired", writes.retired))
            .bind(("horizon", writes.horizon))
            .await
            .map_err(|e| if is_conflict(&e) { StoreError::Conflict } else { e.into() })
            .and_then(|mut response| settle(&mut response));
        match result {
            Ok(()) => {
                next.version = expected + 1;
                self.ledger = Some(next);
                if self.cache.rollups.len() > CACHE_ROLLUPS {
                    self.cache.rollups.clear();
                }
                for (key, shard) in writes.rollups {
                    self.cache.rollups.insert(key, shard);
                }
                self.cache.registry.extend(writes.registry);
                self.cache.traffic.extend(writes.traffic);
                Ok(())
            }
            Err(StoreError::Conflict) => {
                self.forget();
                Err(StoreError::Conflict)
            }
            Err(e) => Err(e),
        }
    }
}

/// One block record per (root, shard, hour) of the flush's blocks.
pub(crate) fn block_records(blocks: &[Block]) -> Vec<BlockRecord> {
    let mut groups: BTreeMap<(&str, u32, i64), Vec<&Block>> = BTreeMap::new();
    for b in blocks.iter().filter(|b| !b.is_empty()) {
        groups.entry((root_of(&b.tag), shard_of(&b.tag), b.start_ms)).or_default().push(b);
    }
    groups
        .into_iter()
        .map(|((root, shard, start), blocks)| {
            let first = blocks.iter().map(|b| b.first_id()).min().expect("groups are not empty");
            BlockRecord {
                id: block_id(root, shard, start, first.seq, first.idx),
                root: root.to_owned(),
                shard: i64::from(shard),
                start,
                first_seq: first.seq as i64,
                first_idx: i64::from(first.idx),
                last_seq: blocks.iter().flat_map(|b| b.seq.iter()).max().map_or(0, |s| *s as i64),
                n: blocks.iter().map(|b| b.len() as i64).sum(),
                data: Bytes::from(encode_blocks(blocks.into_iter())),
            }
        })
        .collect()
}

pub(crate) fn grain_of(s: &str) -> Result<RollupGrain, StoreError> {
    RollupGrain::ALL
        .into_iter()
        .find(|g| g.as_str() == s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown rollup grain `{s}`")))
}

#[derive(Debug, SurrealValue)]
struct LedgerRow {
    version: i64,
    ranges: Vec<Vec<i64>>,
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

    /// The records with these ids (those that exist), [`SELECT_CHUNK`] ids
    /// per statement.
    pub(crate) async fn select<T: SurrealValue>(&self, ids: Vec<RecordId>) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(SELECT_CHUNK) {
            let rows: Vec<T> =
                self.db.query("SELECT * FROM $ids").bind(("ids", chunk.to_vec())).await?.check()?.take(0)?;
            out.extend(rows);
        }
        Ok(out)
    }
}

/// Most record ids read by one statement. SurrealDB 3.3 fetches the ids of
/// `SELECT * FROM $ids` as concurrent futures that wake one another, which
/// costs quadratic time in their number: one flush of backfill spread over a
/// month (tens of thousands of rollup buckets) stalled the persister for two
/// minutes in one statement (docs/performance.md, "What each change bought").
const SELECT_CHUNK: usize = 1_000;

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
    errors.sort_by_key(|(i, e)| (e.query_details() == Some(&surrealdb::types::QueryError::NotExecuted), *i));
    Err(errors.swap_remove(0).1.into())
}

/// Whether `e` says another writer got there first: the engine's write
/// conflict, or a guard that found the ledger or the alerts moved.
pub(crate) fn is_conflict(e: &surrealdb::Error) -> bool {
    let moved = [THROW_MOVED, crate::alerts::THROW_MOVED];
    e.query_details() == Some(&surrealdb::types::QueryError::TransactionConflict)
        || moved.iter().any(|m| e.message().contains(m))
}
