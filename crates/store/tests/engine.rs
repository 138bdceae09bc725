//! The embedded SurrealKV engine is opened by Vigia with Vigia's memory
//! bounds, not the ones SurrealDB derives from the machine (src/conn.rs).
//! Reopening such a store is covered across processes by the vigia crate's
//! faults tests.

use vigia_store::{EngineMemory, Store, StoreConfig};

fn at(dir: &tempfile::TempDir, memory: EngineMemory) -> StoreConfig {
    StoreConfig { url: format!("surrealkv://{}", dir.path().join("db").display()), memory, ..StoreConfig::memory() }
}

/// A transaction must fit in the memtable. One of ~8 MiB fails against a
/// 1 MiB memtable and passes with SurrealDB's own sizing (the default, at
/// least 64 MiB): the bound reaches the engine.
#[tokio::test]
async fn the_memtable_bound_reaches_the_engine() {
    let rows = 100_000;
    let small = tempfile::tempdir().unwrap();
    let store = Store::open(&at(&small, EngineMemory { memtable_mb: Some(1), block_cache_mb: Some(8) })).await.unwrap();
    let refused = store.insert_bare_rows(0, rows).await;
    let refused = refused.expect_err("a transaction larger than a 1 MiB memtable was accepted").to_string();
    assert!(refused.contains("Memtable arena is full"), "refused for another reason: {refused}");
    store.insert_bare_rows(0, 100).await.expect("a small transaction fits a 1 MiB memtable");

    let default = tempfile::tempdir().unwrap();
    let store = Store::open(&at(&default, EngineMemory::default())).await.unwrap();
    store.insert_bare_rows(0, rows).await.expect("the same transaction fits SurrealDB's own memtable");
    assert!(store.version().await.unwrap().starts_with("3.3"), "the embedded engine reports its release");
}

/// A flush over the transaction budget (half the memtable) is committed in
/// parts, each a transaction of its own that moves the ledger's version:
/// 30,000 readings, each in a minute of its own, against a 16 MiB memtable.
/// (Far smaller memtables risk SurrealKV 0.21's compaction deadlock; see
/// `EngineMemory`.)
#[tokio::test]
async fn a_flush_too_big_for_one_transaction_is_committed_in_parts() {
    use vigia_domain::{EventId, Reading, StoredEvent, Tag};
    use vigia_store::{READINGS_LEDGER, Writer};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&at(&dir, EngineMemory { memtable_mb: Some(16), block_cache_mb: Some(8) })).await.unwrap();
    let mut writer = Writer::new(&store, READINGS_LEDGER);
    let start = 1_700_000_000_000i64;
    let tags: Vec<Tag> = (0..200).map(|i| Tag::parse(&format!("brasil.sul.s{i:03}")).unwrap()).collect();
    let (messages, per_message) = (100u64, 300u32);
    let messages: Vec<Vec<StoredEvent>> = (0..messages)
        .map(|m| {
            (0..per_message)
                .map(|i| {
                    let n = m as i64 * i64::from(per_message) + i64::from(i);
                    let reading = Reading::number(tags[n as usize % 200].clone(), start + n * 7 * 60_000, n as f64);
                    StoredEvent { id: EventId { seq: m + 1, idx: i }, reading }
                })
                .collect()
        })
        .collect();
    let decoded: Vec<(u64, &[StoredEvent])> = messages.iter().map(|evs| (evs[0].id.seq, &evs[..])).collect();
    let applied = writer.apply(&decoded).await.expect("the flush is committed");
    assert_eq!((applied.messages, applied.events, applied.skipped), (100, 30_000, 0));
    let ledger = store.ledger(READINGS_LEDGER).await.unwrap();
    assert_eq!(ledger.count(), 100, "every message's ledger entry");
    assert!(ledger.version > 1, "one flush, {} transactions: it was not split", ledger.version);
    let minutes = store.rollups("m").await.unwrap();
    assert_eq!(minutes.len(), 30_000, "a minute rollup per reading");
    assert_eq!(minutes.iter().map(|r| r.sum).sum::<f64>(), (0..30_000).sum::<i64>() as f64);
    let again = writer.apply(&decoded).await.unwrap();
    assert_eq!((again.events, again.skipped), (0, 100), "a redelivered flush is skipped whole");
}
