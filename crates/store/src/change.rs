//! Applying a correction or retraction of one stored event, in one
//! transaction guarded by the ledger like a flush.
//!
//! A change keeps the reading's tag and time, so it touches one hour: the
//! block that holds the target is rewritten; traffic moves by the difference
//! between the old and the new reading; the minute and hour rollups of the
//! tag are recomputed from the tag's events of that hour, and the day from
//! its hour rollups (min and max cannot be un-done by difference); the
//! registry's counts move by one, and its first or last reading is looked up
//! again only when the change touched it.

use std::ops::ControlFlow;
use std::time::Duration;

use surrealdb::types::Bytes;
use vigia_domain::{
    BLOCK_SPAN_MS, Block, Change, Ledger, Projection, RollupDelta, RollupGrain, Status, StoredEvent, Tag,
};

use crate::StoreError;
use crate::blocks::{decode_blocks, decode_blocks_where, encode_blocks};
use crate::layout::{BlockRecord, block_id, registry_id, rollup_id, root_of, shard_of, traffic_id};
use crate::writer::{Writer, Writes};

/// What became of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    Applied,
    /// No stored event has that id (never stored, or already retracted);
    /// only the ledger moved.
    NoTarget,
    /// The ledger already held the change's sequence (a redelivery).
    Held,
}

impl Writer {
    /// Applies the change carried by message `seq` on `tag`, once.
    pub async fn change(&mut self, seq: u64, tag: &Tag, change: &Change) -> Result<ChangeOutcome, StoreError> {
        let mut conflicts = 0u32;
        loop {
            let ledger = self.ledger().await?.clone();
            if ledger.contains(seq) {
                return Ok(ChangeOutcome::Held);
            }
            let mut next = ledger.clone();
            next.insert(seq);
            match self.try_change(ledger.version, next, tag, change).await {
                Err(StoreError::Conflict) => {
                    conflicts += 1;
                    tokio::time::sleep(Duration::from_millis(u64::from(conflicts.min(20)) * 5)).await;
                }
                other => return other,
            }
        }
    }

    async fn try_change(
        &mut self,
        expected: u64,
        next: Ledger,
        tag: &Tag,
        change: &Change,
    ) -> Result<ChangeOutcome, StoreError> {
        let (tag, body) = (tag.as_str(), change.body());
        let (root, shard) = (root_of(tag).to_owned(), shard_of(tag));
        let hour = body.ts.div_euclid(BLOCK_SPAN_MS) * BLOCK_SPAN_MS;
        let mut records: Vec<BlockRecord> = Vec::new();
        let to = hour.saturating_add(BLOCK_SPAN_MS);
        self.store
            .each_block(&root, shard, hour, to, |r| {
                records.push(r);
                Ok(ControlFlow::Continue(()))
            })
            .await?;
        // The record and the event inside it.
        let mut found = None;
        for (i, r) in records.iter().enumerate() {
            let blocks = decode_blocks(&r.data[..])?;
            let hit = blocks.iter().any(|b| {
                b.tag == tag && b.seq.iter().zip(&b.idx).any(|(s, x)| *s == body.target.seq && *x == body.target.idx)
            });
            if hit {
                found = Some((i, blocks));
                break;
            }
        }
        let Some((at, mut blocks)) = found else {
            self.commit(expected, next, Writes::default()).await?;
            return Ok(ChangeOutcome::NoTarget);
        };
        let b = blocks.iter().position(|b| b.tag == tag).expect("the record holds the tag");
        let mut events = blocks[b].events();
        let e = events.iter().position(|e| e.id == body.target).expect("the block holds the target");
        let old = events[e].reading.clone();
        let new = change.apply(&old);
        match &new {
            Some(r) => events[e].reading = r.clone(),
            None => {
                events.remove(e);
            }
        }
        match Projection::of(&events).blocks.into_iter().next() {
            Some(rebuilt) => blocks[b] = rebuilt,
            None => {
                blocks.remove(b);
            }
        }

        let mut writes = Writes::default();
        let old_record = &records[at];
        writes.dropped.push(old_record.id.clone());
        if !blocks.is_empty() {
            writes.blocks.push(BlockRecord {
                id: block_id(&root, shard, hour, old_record.first_seq as u64, old_record.first_idx as u32),
                n: blocks.iter().map(|b| b.len() as i64).sum(),
                data: Bytes::from(encode_blocks(blocks.iter())),
                ..old_record.clone()
            });
        }

        // The tag's events of the hour, as they are after the change.
        let mut hour_events: Vec<StoredEvent> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let tag_blocks = if i == at {
                blocks.iter().filter(|b| b.tag == tag).cloned().collect()
            } else {
                decode_blocks_where(&r.data[..], |t| t == tag)?
            };
            hour_events.extend(tag_blocks.iter().flat_map(Block::events));
        }
        self.rewrite_rollups(&root, shard, tag, body.ts, &hour_events, &mut writes).await?;
        self.rewrite_traffic(&root, &old, new.as_ref(), &mut writes).await?;
        self.rewrite_registry(&root, shard, tag, &old, body.target, new.as_ref(), &hour_events, &mut writes).await?;
        self.commit(expected, next, writes).await?;
        Ok(ChangeOutcome::Applied)
    }

    /// Minute and hour from the hour's events, the day from its hours.
    async fn rewrite_rollups(
        &mut self,
        root: &str,
        shard: u32,
        tag: &str,
        ts: i64,
        hour_events: &[StoredEvent],
        writes: &mut Writes,
    ) -> Result<(), StoreError> {
        let recomputed = Projection::of(hour_events);
        let minute = RollupGrain::Minute.floor(ts);
        let hour = RollupGrain::Hour.floor(ts);
        let day = RollupGrain::Day.floor(ts);
        // Saturating: a device may stamp a reading at the very end of time.
        let hours: Vec<_> = (0..24)
            .filter_map(|h| day.checked_add(h * BLOCK_SPAN_MS))
            .map(|b| (root.to_owned(), shard, RollupGrain::Hour, b))
            .collect();
        let keys =
            [(RollupGrain::Minute, minute), (RollupGrain::Day, day)].map(|(g, b)| (root.to_owned(), shard, g, b));
        self.load(keys.iter().chain(&hours), std::iter::empty(), std::iter::empty()).await?;
        let mut day_total: Option<RollupDelta> = None;
        for key in &hours {
            let value = if key.3 == hour {
                recomputed.rollup(tag, RollupGrain::Hour, hour)
            } else {
                self.cache.rollups.get(key).and_then(|s| s.get(tag)).copied()
            };
            if let Some(v) = value {
                day_total
                    .get_or_insert(RollupDelta { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY })
                    .merge(&v);
            }
        }
        let targets = [
            (
                (root.to_owned(), shard, RollupGrain::Minute, minute),
                recomputed.rollup(tag, RollupGrain::Minute, minute),
            ),
            ((root.to_owned(), shard, RollupGrain::Hour, hour), recomputed.rollup(tag, RollupGrain::Hour, hour)),
            ((root.to_owned(), shard, RollupGrain::Day, day), day_total),
        ];
        for (key, value) in targets {
            let mut entries = self.cache.rollups.get(&key).cloned();
            if entries.is_some() {
                writes.dropped.push(rollup_id(root, shard, key.2.as_str(), key.3));
            }
            let entries = entries.get_or_insert_with(Default::default);
            match value {
                Some(v) => entries.insert(tag.to_owned(), v),
                None => entries.remove(tag),
            };
            writes.rollups.push((key, entries.clone()));
        }
        Ok(())
    }

    /// Traffic: minus the old reading, plus the new.
    async fn rewrite_traffic(
        &mut self,
        root: &str,
        old: &vigia_domain::Reading,
        new: Option<&vigia_domain::Reading>,
        writes: &mut Writes,
    ) -> Result<(), StoreError> {
        let keys: Vec<_> =
            [RollupGrain::Minute, RollupGrain::Hour].map(|g| (root.to_owned(), g, g.floor(old.ts_ms))).into();
        self.load(std::iter::empty(), std::iter::empty(), keys.iter()).await?;
        for key in keys {
            let (mut ok, mut errors) = match self.cache.traffic.get(&key) {
                Some(c) => {
                    writes.dropped.push(traffic_id(root, key.1.as_str(), key.2));
                    *c
                }
                None => (0, 0),
            };
            for (r, add) in [(Some(old), false), (new, true)] {
                let Some(r) = r else { continue };
                let slot = if r.status == Status::Ok { &mut ok } else { &mut errors };
                *slot = if add { *slot + 1 } else { slot.saturating_sub(1) };
            }
            writes.traffic.push((key, (ok, errors)));
        }
        Ok(())
    }

    /// The registry entry of `tag` after the change.
    #[allow(clippy::too_many_arguments)]
    async fn rewrite_registry(
        &mut self,
        root: &str,
        shard: u32,
        tag: &str,
        old: &vigia_domain::Reading,
        target: vigia_domain::EventId,
        new: Option<&vigia_domain::Reading>,
        hour_events: &[StoredEvent],
        writes: &mut Writes,
    ) -> Result<(), StoreError> {
        let key = (root.to_owned(), shard);
        self.load(std::iter::empty(), std::iter::once(&key), std::iter::empty()).await?;
        let Some(mut entries) = self.cache.registry.get(&key).cloned() else { return Ok(()) };
        writes.dropped.push(registry_id(root, shard));
        if let Some(mut s) = entries.remove(tag) {
            let was_last = s.last_id == target;
            s.errors -= u64::from(old.status == Status::Error);
            match new {
                Some(r) => {
                    s.errors += u64::from(r.status == Status::Error);
                    if was_last {
                        s.last_value = r.value.clone();
                        s.last_status = r.status;
                    }
                    entries.insert(tag.to_owned(), s);
                }
                None if s.count > 1 => {
                    s.count -= 1;
                    if old.ts_ms == s.first_seen_ms
                        && let Some(e) =
                            self.edge(root, shard, tag, false, old.ts_ms, s.last_seen_ms, hour_events).await?
                    {
                        s.first_seen_ms = e.reading.ts_ms;
                    }
                    if was_last
                        && let Some(e) =
                            self.edge(root, shard, tag, true, old.ts_ms, s.first_seen_ms, hour_events).await?
                    {
                        s.last_seen_ms = e.reading.ts_ms;
                        s.last_value = e.reading.value.clone();
                        s.last_status = e.reading.status;
                        s.last_id = e.id;
                    }
                    entries.insert(tag.to_owned(), s);
                }
                None => {}
            }
        }
        writes.registry.push((key, entries));
        Ok(())
    }

    /// The newest (or oldest) remaining event of `tag`, searched hour by hour
    /// from the changed hour (whose events are given as they now are) towards
    /// `bound`, the other end of what the registry has seen.
    #[allow(clippy::too_many_arguments)]
    async fn edge(
        &self,
        root: &str,
        shard: u32,
        tag: &str,
        newest: bool,
        ts: i64,
        bound: i64,
        hour_events: &[StoredEvent],
    ) -> Result<Option<StoredEvent>, StoreError> {
        let pick = |events: &[StoredEvent]| {
            let key = |e: &&StoredEvent| (e.reading.ts_ms, e.id);
            if newest { events.iter().max_by_key(key) } else { events.iter().min_by_key(key) }.cloned()
        };
        if let Some(e) = pick(hour_events) {
            return Ok(Some(e));
        }
        let step = if newest { -BLOCK_SPAN_MS } else { BLOCK_SPAN_MS };
        let last = bound.div_euclid(BLOCK_SPAN_MS) * BLOCK_SPAN_MS;
        let Some(mut hour) = (ts.div_euclid(BLOCK_SPAN_MS) * BLOCK_SPAN_MS).checked_add(step) else { return Ok(None) };
        while (newest && hour >= last) || (!newest && hour <= last) {
            let roots = [root.to_owned()];
            let to = hour.saturating_add(BLOCK_SPAN_MS);
            let events = self.store.events_where(&roots, &[shard], hour, to, usize::MAX, &|t| t == tag).await?;
            if let Some(e) = pick(&events) {
                return Ok(Some(e));
            }
            match hour.checked_add(step) {
                Some(h) => hour = h,
                None => break,
            }
        }
        Ok(None)
    }
}
