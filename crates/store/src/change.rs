//! Applying a correction or retraction of one stored event, in one
//! transaction guarded by the ledger like a batch.
//!
//! Counters and traffic move by the difference between the old and the new
//! reading. Rollups cannot be un-minned, so the three buckets of the event
//! (minute, hour, day) are recomputed from the tag's events of that day. The
//! registry's count moves by one on retraction; its first/last reading is
//! looked up again only when the change touched it.

use std::collections::BTreeMap;

use surrealdb::types::RecordId;
use vigia_domain::{BLOCK_SPAN_MS, Block, EventId, Ledger, Projection, Reading, RollupGrain, Status, StoredEvent};

use crate::commit::{BEGIN, COMMIT, CounterIn, RollupIn, SensorIn, TrafficIn, settle};
use crate::read::SensorStored;
use crate::rows::{BlockRow, LastRow, ledger_guard, ord, rollup_id, traffic_id};
use crate::{Store, StoreError};

const DAY_MS: i64 = 86_400_000;

/// What became of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    Applied,
    /// No stored event has that id (never stored, or already retracted);
    /// only the ledger moved.
    NoTarget,
}

const APPLY: &str = "
DELETE $old_block;
IF array::len($new_block) > 0 { INSERT INTO block $new_block RETURN NONE };
INSERT INTO counter $counters ON DUPLICATE KEY UPDATE ok += $input.ok, errors += $input.errors RETURN NONE;
DELETE $counter_ids WHERE ok = 0 AND errors = 0;
INSERT INTO traffic $traffic ON DUPLICATE KEY UPDATE ok += $input.ok, errors += $input.errors RETURN NONE;
DELETE $traffic_ids WHERE ok = 0 AND errors = 0;
FOR $r IN $rollups { UPSERT $r.id CONTENT $r RETURN NONE };
FOR $id IN $gone_rollups { DELETE $id };
IF $sensor = NONE { DELETE $sensor_id } ELSE { UPSERT $sensor_id CONTENT $sensor RETURN NONE };";

fn signed(status: Status, sign: i64) -> (i64, i64) {
    match status {
        Status::Ok => (sign, 0),
        Status::Error => (0, sign),
    }
}

impl Store {
    /// Replaces (`new = Some`) or removes (`None`) the stored event `target`
    /// of `tag` at `ts`, and records `next` as the ledger, only if the ledger
    /// still has `expected_version` ([`StoreError::Conflict`] otherwise).
    #[allow(clippy::too_many_arguments)]
    pub async fn change_event(
        &self,
        stream: &str,
        expected_version: u64,
        next: &Ledger,
        tag: &str,
        ts: i64,
        target: EventId,
        new: impl FnOnce(&Reading) -> Option<Reading>,
    ) -> Result<ChangeOutcome, StoreError> {
        let day = ts.div_euclid(DAY_MS) * DAY_MS;
        let rows: Vec<BlockRow> = self
            .db
            .query("SELECT * FROM block WHERE tag = $tag AND start >= $from AND start < $to")
            .bind(("tag", tag.to_owned()))
            .bind(("from", day))
            .bind(("to", day.saturating_add(DAY_MS)))
            .await?
            .check()?
            .take(0)?;
        let Some(pos) = rows
            .iter()
            .position(|b| b.seq.iter().zip(&b.idx).any(|(s, i)| *s as u64 == target.seq && *i as u32 == target.idx))
        else {
            self.commit(stream, expected_version, next, &Projection::default()).await?;
            return Ok(ChangeOutcome::NoTarget);
        };
        let mut blocks: Vec<(Option<RecordId>, Block)> =
            rows.into_iter().map(|r| (r.id.clone(), r.into_block())).collect();
        let (old_block_id, target_block) = blocks[pos].clone();
        let mut events = target_block.events();
        let at = events.iter().position(|e| e.id == target).expect("the block holds the target");
        let old = events[at].reading.clone();
        let replacement = new(&old);
        match &replacement {
            Some(r) => events[at].reading = r.clone(),
            None => {
                events.remove(at);
            }
        }
        let new_block: Vec<BlockRow> = Projection::of(&events).blocks.iter().map(BlockRow::from).collect();
        let emptied = Block { tag: tag.to_owned(), start_ms: target_block.start_ms, ..Block::default() };
        blocks[pos].1 = Projection::of(&events).blocks.into_iter().next().unwrap_or(emptied);

        // Counters and traffic: minus the old, plus the new.
        let mut counts: BTreeMap<String, (u32, i64, i64)> = BTreeMap::new();
        let mut traffic: BTreeMap<(String, RollupGrain, i64), (i64, i64)> = BTreeMap::new();
        for (reading, sign) in [(Some(&old), -1), (replacement.as_ref(), 1)] {
            let Some(r) = reading else { continue };
            let (ok, errors) = signed(r.status, sign);
            for (depth, prefix) in r.tag.prefixes().enumerate() {
                let c = counts.entry(prefix.to_owned()).or_insert((depth as u32 + 1, 0, 0));
                c.1 += ok;
                c.2 += errors;
            }
            for grain in [RollupGrain::Minute, RollupGrain::Hour] {
                let t = traffic.entry((r.tag.root().to_owned(), grain, grain.floor(r.ts_ms))).or_default();
                t.0 += ok;
                t.1 += errors;
            }
        }
        let counters: Vec<CounterIn> = counts
            .into_iter()
            .map(|(prefix, (depth, ok, errors))| CounterIn {
                id: RecordId::new("counter", prefix.as_str()),
                prefix,
                depth: i64::from(depth),
                ok,
                errors,
            })
            .collect();
        let traffic: Vec<TrafficIn> = traffic
            .into_iter()
            .map(|((root, grain, bucket), (ok, errors))| TrafficIn {
                id: traffic_id(&root, grain.as_str(), bucket),
                root,
                grain: grain.as_str().to_owned(),
                bucket,
                ok,
                errors,
            })
            .collect();

        // Rollups of the event's three buckets, recomputed from the day's events.
        let day_events: Vec<StoredEvent> = blocks.iter().flat_map(|(_, b)| b.events()).collect();
        let recomputed = Projection::of(&day_events).rollups;
        let (mut rollups, mut gone_rollups) = (Vec::new(), Vec::new());
        for grain in RollupGrain::ALL {
            let bucket = grain.floor(ts);
            let id = rollup_id(tag, grain.as_str(), bucket);
            match recomputed.get(&(tag.to_owned(), grain, bucket)) {
                Some(r) => rollups.push(RollupIn {
                    id,
                    tag: tag.to_owned(),
                    grain: grain.as_str().to_owned(),
                    bucket,
                    count: r.count as i64,
                    sum: r.sum,
                    min: r.min,
                    max: r.max,
                }),
                None => gone_rollups.push(id),
            }
        }

        let sensor = self.sensor_after(tag, &old, target, replacement.as_ref(), &blocks, pos).await?;
        let sensor_id = RecordId::new("sensor", tag);
        let counter_ids: Vec<RecordId> = counters.iter().map(|c| c.id.clone()).collect();
        let traffic_ids: Vec<RecordId> = traffic.iter().map(|t| t.id.clone()).collect();
        let sql = format!("{BEGIN}\n{APPLY}\n{COMMIT}");
        let [guard_id, guard_expected, guard_ranges] = ledger_guard(stream, expected_version, next);
        let mut response = self
            .db
            .query(sql)
            .bind(guard_id)
            .bind(guard_expected)
            .bind(guard_ranges)
            .bind(("old_block", old_block_id.expect("stored blocks have ids")))
            .bind(("new_block", new_block))
            .bind(("counters", counters))
            .bind(("counter_ids", counter_ids))
            .bind(("traffic", traffic))
            .bind(("traffic_ids", traffic_ids))
            .bind(("rollups", rollups))
            .bind(("gone_rollups", gone_rollups))
            .bind(("sensor_id", sensor_id.clone()))
            .bind(("sensor", sensor.map(|s| SensorIn { id: sensor_id, ..s })))
            .await
            .map_err(|e| if crate::commit::is_conflict(&e) { StoreError::Conflict } else { e.into() })?;
        settle(&mut response)?;
        Ok(ChangeOutcome::Applied)
    }

    /// The registry row of `tag` after the change; `None` when no event is left.
    async fn sensor_after(
        &self,
        tag: &str,
        old: &Reading,
        target: EventId,
        new: Option<&Reading>,
        day_blocks: &[(Option<RecordId>, Block)],
        changed: usize,
    ) -> Result<Option<SensorIn>, StoreError> {
        let row: Option<SensorStored> = self
            .db
            .query("SELECT tag, first_seen, last_seen, count, last FROM ONLY $id")
            .bind(("id", RecordId::new("sensor", tag)))
            .await?
            .check()?
            .take(0)?;
        let Some(mut s) = row else { return Ok(None) };
        let was_last = s.last.ord == ord(target) && s.last.ts == old.ts_ms;
        match new {
            Some(r) => {
                if was_last {
                    s.last = LastRow::new(r.ts_ms, target, &r.value, r.status);
                }
            }
            None => {
                s.count -= 1;
                if s.count <= 0 {
                    return Ok(None);
                }
                if old.ts_ms == s.first_seen {
                    let first = self.edge(tag, false, day_blocks, changed).await?;
                    s.first_seen = first.map_or(s.first_seen, |e| e.reading.ts_ms);
                }
                if (was_last || old.ts_ms == s.last_seen)
                    && let Some(e) = self.edge(tag, true, day_blocks, changed).await?
                {
                    s.last_seen = e.reading.ts_ms;
                    s.last = LastRow::new(e.reading.ts_ms, e.id, &e.reading.value, e.reading.status);
                }
            }
        }
        Ok(Some(SensorIn {
            id: RecordId::new("sensor", tag),
            tag: s.tag,
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            count: s.count,
            last: s.last,
        }))
    }

    /// The newest (or oldest) event of `tag` once the change is made: hour
    /// blocks are read from that end until one holds an event; the changed
    /// day's blocks are taken as modified in memory.
    async fn edge(
        &self,
        tag: &str,
        newest: bool,
        day_blocks: &[(Option<RecordId>, Block)],
        changed: usize,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let changed_id = day_blocks[changed].0.clone();
        let mut cursor: Option<i64> = None;
        loop {
            let sql = if newest {
                "SELECT * FROM block WHERE tag = $tag AND ($cursor = NONE OR start < $cursor) ORDER BY start DESC LIMIT 1"
            } else {
                "SELECT * FROM block WHERE tag = $tag AND ($cursor = NONE OR start > $cursor) ORDER BY start ASC LIMIT 1"
            };
            let probe: Vec<BlockRow> =
                self.db.query(sql).bind(("tag", tag.to_owned())).bind(("cursor", cursor)).await?.check()?.take(0)?;
            let Some(start) = probe.first().map(|b| b.start) else { return Ok(None) };
            let rows: Vec<BlockRow> = self
                .db
                .query("SELECT * FROM block WHERE tag = $tag AND start = $start")
                .bind(("tag", tag.to_owned()))
                .bind(("start", start))
                .await?
                .check()?
                .take(0)?;
            let mut events: Vec<StoredEvent> = Vec::new();
            for row in rows {
                if row.id.is_some() && row.id == changed_id {
                    events.extend(day_blocks[changed].1.events());
                } else {
                    events.extend(row.into_block().events());
                }
            }
            let key = |e: &&StoredEvent| (e.reading.ts_ms, e.id);
            let found = if newest { events.iter().max_by_key(key) } else { events.iter().min_by_key(key) };
            if let Some(e) = found {
                return Ok(Some(e.clone()));
            }
            cursor = Some(start);
            debug_assert!(start % BLOCK_SPAN_MS == 0);
        }
    }
}
