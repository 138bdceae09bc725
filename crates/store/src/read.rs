//! Reads of stored events, for the API, the consistency check and tests.
//!
//! Events live in shard blocks (`block:[root, shard, hour, first_seq,
//! first_idx]`), read by id range a page at a time, so a wide window never
//! holds more than one page of payloads plus the events that match. Within a
//! payload only the sections of matching tags are decoded.

use std::ops::ControlFlow;

use vigia_domain::{BLOCK_SPAN_MS, Block, StoredEvent};

use crate::blocks::{block_directory, decode_blocks_where};
use crate::layout::{BlockRecord, SHARDS, root_of, shard_of};
use crate::{Store, StoreError};

/// Block records per page.
const PAGE: i64 = 64;

const BLOCK_PAGE: &str = "SELECT * FROM block:[$root, $shard, $start, $seq, $idx]..[$root, $shard, $to] LIMIT $page";

/// Where a page of blocks starts: the first possible id at or after it.
#[derive(Debug, Clone, Copy)]
struct After {
    start: i64,
    seq: i64,
    idx: i64,
}

impl Store {
    /// Roots with stored events: every root that has a registry shard.
    pub async fn roots(&self) -> Result<Vec<String>, StoreError> {
        let mut roots: Vec<String> = self.db.query("SELECT VALUE root FROM registry").await?.check()?.take(0)?;
        roots.sort();
        roots.dedup();
        Ok(roots)
    }

    /// Visits the block records of one shard whose hour starts in `[from, to)`, in id order.
    pub(crate) async fn each_block(
        &self,
        root: &str,
        shard: u32,
        from: i64,
        to: i64,
        mut visit: impl FnMut(BlockRecord) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        let mut after = After { start: from, seq: i64::MIN, idx: i64::MIN };
        loop {
            let rows: Vec<BlockRecord> = self
                .db
                .query(BLOCK_PAGE)
                .bind(("root", root.to_owned()))
                .bind(("shard", i64::from(shard)))
                .bind(("start", after.start))
                .bind(("seq", after.seq))
                .bind(("idx", after.idx))
                .bind(("to", to))
                .bind(("page", PAGE))
                .await?
                .check()?
                .take(0)?;
            let full = rows.len() as i64 == PAGE;
            let mut last = None;
            for row in rows {
                last = Some(After { start: row.start, seq: row.first_seq, idx: row.first_idx.saturating_add(1) });
                if visit(row)?.is_break() {
                    return Ok(());
                }
            }
            match last {
                Some(next) if full => after = next,
                _ => return Ok(()),
            }
        }
    }

    /// Events of the tags `wanted` accepts, from the shards `shards` of
    /// `roots`, in blocks whose hour starts in `[from, to)`. Stops with
    /// [`StoreError::TooMany`] as soon as more than `cap` match, before
    /// decoding them. In log order.
    pub(crate) async fn events_where(
        &self,
        roots: &[String],
        shards: &[u32],
        from: i64,
        to: i64,
        cap: usize,
        wanted: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut found = 0usize;
        let mut blocks: Vec<Block> = Vec::new();
        for root in roots {
            for &shard in shards {
                self.each_block(root, shard, from, to, |row| {
                    let matching: usize =
                        block_directory(&row.data[..])?.into_iter().filter(|(t, _)| wanted(t)).map(|(_, n)| n).sum();
                    if matching == 0 {
                        return Ok(ControlFlow::Continue(()));
                    }
                    found += matching;
                    if found > cap {
                        return Err(StoreError::TooMany { found, cap });
                    }
                    blocks.extend(decode_blocks_where(&row.data[..], wanted)?);
                    Ok(ControlFlow::Continue(()))
                })
                .await?;
            }
        }
        let mut events: Vec<StoredEvent> = blocks.iter().flat_map(Block::events).collect();
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    /// The stored events of one tag, in log order.
    pub async fn events_of(&self, tag: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let roots = [root_of(tag).to_owned()];
        self.events_where(&roots, &[shard_of(tag)], i64::MIN, i64::MAX, usize::MAX, &|t| t == tag).await
    }

    /// The events of one tag whose hour block overlaps `[from, to]`, in log
    /// order: only the tag's shard is read.
    pub async fn tag_events(&self, tag: &str, from: i64, to: i64, cap: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let from = from.div_euclid(BLOCK_SPAN_MS) * BLOCK_SPAN_MS;
        let roots = [root_of(tag).to_owned()];
        self.events_where(&roots, &[shard_of(tag)], from, to.saturating_add(1), cap, &|t| t == tag).await
    }

    /// Events whose hour block overlaps `[from, to]` and whose tag starts
    /// with `prefix` (plain text: `bra` matches `brasil.x` and `braga.y`),
    /// in log order. Stops with [`StoreError::TooMany`] past `cap` matching
    /// events, so a careless query cannot exhaust memory.
    pub async fn events_window(
        &self,
        prefix: Option<&str>,
        from: Option<i64>,
        to: Option<i64>,
        cap: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let from = from.map_or(i64::MIN, |f| f.div_euclid(BLOCK_SPAN_MS) * BLOCK_SPAN_MS);
        let to = to.map_or(i64::MAX, |t| t.saturating_add(1));
        let roots: Vec<String> = self
            .roots()
            .await?
            .into_iter()
            .filter(|r| prefix.is_none_or(|p| r.starts_with(p) || p.starts_with(&format!("{r}."))))
            .collect();
        let all: Vec<u32> = (0..SHARDS).collect();
        match prefix {
            None => self.events_where(&roots, &all, from, to, cap, &|_| true).await,
            Some(p) => self.events_where(&roots, &all, from, to, cap, &|t| t.starts_with(p)).await,
        }
    }

    /// Every stored event, in log order. A full scan: for checks and tests.
    pub async fn all_events(&self) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_window(None, None, None, usize::MAX).await
    }
}
