//! The shard layout against real embedded SurrealDB: reads that span more
//! records than one page, and a writer whose cache another writer outdated.

use vigia_domain::{EventId, Projection, Reading, StoredEvent, Tag};
use vigia_store::{READINGS_LEDGER, Store, StoreConfig, Writer};

fn event(seq: u64, tag: &str, ts: i64, v: f64) -> StoredEvent {
    StoredEvent { id: EventId { seq, idx: 0 }, reading: Reading::number(Tag::parse(tag).unwrap(), ts, v) }
}

async fn apply_one_by_one(writer: &mut Writer, events: &[StoredEvent]) {
    for e in events {
        writer.apply(&[(e.id.seq, std::slice::from_ref(e))]).await.unwrap();
    }
}

#[tokio::test]
async fn reads_cross_page_boundaries_in_order() {
    let store = Store::open(&StoreConfig::memory()).await.unwrap();
    let mut writer = Writer::new(&store, READINGS_LEDGER);
    // 150 flushes into one hour of one tag: 150 blocks in one shard (pages of 64),
    // and one reading per minute for 600 minutes: rollup pages of 512.
    let hour = 1_700_002_800_000;
    let dense: Vec<StoredEvent> = (1..=150).map(|s| event(s, "brasil.sul.s1", hour + s as i64, s as f64)).collect();
    apply_one_by_one(&mut writer, &dense).await;
    let spread: Vec<StoredEvent> =
        (151..=750).map(|s| event(s, "brasil.sul.s2", hour + (s as i64 - 151) * 60_000, 1.0)).collect();
    let refs: Vec<(u64, &[StoredEvent])> = spread.iter().map(|e| (e.id.seq, std::slice::from_ref(e))).collect();
    writer.apply(&refs).await.unwrap();

    let s1 = store.events_of("brasil.sul.s1").await.unwrap();
    assert_eq!(s1, dense, "every block of the hour, in log order");
    let window =
        store.events_window(Some("brasil.sul."), Some(hour), Some(hour + 3_599_999), usize::MAX).await.unwrap();
    assert_eq!(window.len(), 150 + 60);
    let minutes = store.rollups_of(&["brasil.sul.s2".into()], "m", 60_000, hour, hour + 600 * 60_000).await.unwrap();
    assert_eq!(minutes.len(), 600);
    assert!(minutes.windows(2).all(|w| w[0].bucket + 60_000 == w[1].bucket));
    let too_many = store.events_window(Some("brasil"), None, None, 100).await;
    assert!(matches!(too_many, Err(vigia_store::StoreError::TooMany { cap: 100, .. })), "{too_many:?}");

    let all: Vec<StoredEvent> = dense.iter().chain(&spread).cloned().collect();
    let want = Projection::of(&all);
    let counters = store.counters().await.unwrap();
    let root = counters.iter().find(|c| c.prefix == "brasil").unwrap();
    assert_eq!((root.ok, root.errors, root.depth), (want.counters["brasil"].ok as i64, 0, 1));
    assert_eq!(counters.len(), want.counters.len());
    assert_eq!(store.sensor("brasil.sul.s2").await.unwrap().unwrap().count, 600);
}

#[tokio::test]
async fn a_writer_outdated_by_another_rereads_and_counts_once() {
    let store = Store::open(&StoreConfig::memory()).await.unwrap();
    let (mut a, mut b) = (Writer::new(&store, READINGS_LEDGER), Writer::new(&store, READINGS_LEDGER));
    let ts = 1_700_000_000_000;
    apply_one_by_one(&mut a, &[event(1, "brasil.sul.s1", ts, 1.0)]).await;
    apply_one_by_one(&mut b, &[event(2, "brasil.sul.s1", ts + 1, 2.0)]).await;
    // `a` still believes the ledger it committed; the guard makes it re-read.
    apply_one_by_one(&mut a, &[event(3, "brasil.sul.s1", ts + 2, 3.0), event(2, "brasil.sul.s1", ts + 1, 2.0)]).await;
    let s = store.sensor("brasil.sul.s1").await.unwrap().unwrap();
    assert_eq!((s.count, s.last_value), (3, Some(3.0)));
    let minute = store.rollups("m").await.unwrap();
    assert_eq!((minute.len(), minute[0].count, minute[0].sum), (1, 3, 6.0));
    assert_eq!(store.ledger(READINGS_LEDGER).await.unwrap().count(), 3);
}
