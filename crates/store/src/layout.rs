//! Where things live: record ids, shards, and the row shapes SurrealDB sees.
//!
//! Every per-tag aggregate is kept in a **shard record** that holds many tags
//! at once: `rollup:[root, shard, grain, bucket]` holds one bucket of every
//! tag of the shard, `registry:[root, shard]` every sensor of the shard, and
//! `block:[root, shard, hour, first_seq, first_idx]` the events of the shard's
//! tags for one hour from one persister flush. A tag's shard is a fixed hash
//! of the tag, so a flush touches a handful of records however many sensors
//! report, and a month of averages over a whole fleet is a few hundred
//! records. The measurements behind this are in
//! `docs/decisions/0002-aggregates-in-shards.md`.

use surrealdb::types::{Array, Bytes, RecordId, SurrealValue, Value as SValue};

/// Shards per root. Part of the stored layout: changing it needs a replay.
pub const SHARDS: u32 = 8;

/// The shard of a tag: FNV-1a of its text, stable across processes and versions.
pub(crate) fn shard_of(tag: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(SHARDS)) as u32
}

/// The first token of a tag or prefix.
pub(crate) fn root_of(tag: &str) -> &str {
    tag.split('.').next().unwrap_or(tag)
}

fn key(parts: Vec<SValue>) -> Array {
    Array::from(parts)
}

/// `rollup:[root, shard, grain, bucket]`.
pub(crate) fn rollup_id(root: &str, shard: u32, grain: &str, bucket: i64) -> RecordId {
    RecordId::new(
        "rollup",
        key(vec![
            SValue::from_t(root.to_owned()),
            SValue::from_t(i64::from(shard)),
            SValue::from_t(grain.to_owned()),
            SValue::from_t(bucket),
        ]),
    )
}

/// `<table>:[root, shard]`.
pub(crate) fn keyed(table: &str, root: &str, shard: u32) -> RecordId {
    RecordId::new(table, key(vec![SValue::from_t(root.to_owned()), SValue::from_t(i64::from(shard))]))
}

/// `registry:[root, shard]`.
pub(crate) fn registry_id(root: &str, shard: u32) -> RecordId {
    keyed("registry", root, shard)
}

/// `traffic:[root, grain, bucket]`.
pub(crate) fn traffic_id(root: &str, grain: &str, bucket: i64) -> RecordId {
    RecordId::new(
        "traffic",
        key(vec![SValue::from_t(root.to_owned()), SValue::from_t(grain.to_owned()), SValue::from_t(bucket)]),
    )
}

/// `block:[root, shard, hour, first_seq, first_idx]`.
pub(crate) fn block_id(root: &str, shard: u32, start: i64, first_seq: u64, first_idx: u32) -> RecordId {
    RecordId::new(
        "block",
        key(vec![
            SValue::from_t(root.to_owned()),
            SValue::from_t(i64::from(shard)),
            SValue::from_t(start),
            SValue::from_t(first_seq as i64),
            SValue::from_t(i64::from(first_idx)),
        ]),
    )
}

/// A block as stored: the shard's events of one hour from one flush.
#[derive(Debug, Clone, SurrealValue)]
pub(crate) struct BlockRecord {
    pub(crate) id: RecordId,
    pub(crate) root: String,
    pub(crate) shard: i64,
    pub(crate) start: i64,
    /// The id's last two parts, so a reader can continue after this block.
    pub(crate) first_seq: i64,
    pub(crate) first_idx: i64,
    /// The highest stream sequence inside: with `first_seq`, the range of
    /// the log this block holds events of.
    pub(crate) last_seq: i64,
    /// Events inside.
    pub(crate) n: i64,
    pub(crate) data: Bytes,
}

/// A rollup shard as stored: one bucket of every tag of the shard.
#[derive(Debug, Clone, SurrealValue)]
pub(crate) struct RollupRecord {
    pub(crate) id: RecordId,
    pub(crate) root: String,
    pub(crate) shard: i64,
    pub(crate) grain: String,
    pub(crate) bucket: i64,
    pub(crate) n: i64,
    pub(crate) data: Bytes,
}

/// A registry shard as stored.
#[derive(Debug, Clone, SurrealValue)]
pub(crate) struct RegistryRecord {
    pub(crate) id: RecordId,
    pub(crate) root: String,
    pub(crate) shard: i64,
    pub(crate) n: i64,
    pub(crate) data: Bytes,
}

/// One root's events in one minute or hour, by status.
#[derive(Debug, Clone, SurrealValue)]
pub(crate) struct TrafficRecord {
    pub(crate) id: RecordId,
    pub(crate) root: String,
    pub(crate) grain: String,
    pub(crate) bucket: i64,
    pub(crate) ok: i64,
    pub(crate) errors: i64,
}

/// The bindings of the ledger guard that opens every projection transaction.
pub(crate) fn ledger_guard(
    stream: &str,
    expected_version: u64,
    next: &vigia_domain::Ledger,
) -> [(&'static str, SValue); 3] {
    let ranges: Vec<Vec<i64>> = next.ranges.iter().map(|(lo, hi)| vec![*lo as i64, *hi as i64]).collect();
    [
        ("ledger_id", SValue::from_t(RecordId::new("ledger", stream))),
        ("expected", SValue::from_t(expected_version as i64)),
        ("ranges", SValue::from_t(ranges)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        // Stored layout: these values must never change.
        let pinned = ["brasil.sudeste.sensor01", "brasil.sul.sensor07", "plant1.area3.EQ-12495"].map(shard_of);
        assert_eq!(pinned, [4, 3, 1]);
        let mut seen = [0u32; SHARDS as usize];
        for i in 0..2000 {
            seen[shard_of(&format!("brasil.sul.sensor{i:04}")) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (150..350).contains(n)), "uneven shards: {seen:?}");
        assert_eq!(root_of("brasil.sul.x"), "brasil");
    }
}
