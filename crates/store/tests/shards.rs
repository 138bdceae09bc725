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
    let want = Projection::of(&all).counters();
    let counters = store.counters().await.unwrap();
    let root = counters.iter().find(|c| c.prefix == "brasil").unwrap();
    assert_eq!((root.ok, root.errors, root.depth), (want["brasil"].ok as i64, 0, 1));
    assert_eq!(counters.len(), want.len());
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

#[tokio::test]
async fn summaries_over_a_window_equal_a_fold_of_its_events() {
    let store = Store::open(&StoreConfig::memory()).await.unwrap();
    let mut writer = Writer::new(&store, READINGS_LEDGER);
    const HOUR: i64 = 3_600_000;
    // From 13:00 on one day to 04:59:59.999 three days later: hour rollups at
    // both ends, day rollups for the two whole days between.
    let day = 1_699_920_000_000; // a UTC midnight
    let (from, to) = (day + 13 * HOUR, day + 3 * 24 * HOUR + 5 * HOUR - 1);
    let tags = ["brasil.sul.s1", "brasil.norte.s2", "brasil.sudeste.s3"];
    // s1 and s2 report every 37 minutes from a day before the window to a day after;
    // s3 only before it. Values vary so that sums, minima and maxima differ.
    let mut events = Vec::new();
    let mut seq = 0;
    for (i, tag) in tags[..2].iter().enumerate() {
        let mut ts = day - 24 * HOUR;
        while ts < to + 24 * HOUR {
            seq += 1;
            events.push(event(seq, tag, ts, ((ts / 60_000) % 97) as f64 + i as f64 / 4.0));
            ts += 37 * 60_000;
        }
    }
    seq += 1;
    events.push(event(seq, tags[2], from - 1, 5.0));
    let refs: Vec<(u64, &[StoredEvent])> = events.iter().map(|e| (e.id.seq, std::slice::from_ref(e))).collect();
    for chunk in refs.chunks(100) {
        writer.apply(chunk).await.unwrap();
    }

    let got = store.summaries_under(None, from, to).await.unwrap();
    assert_eq!(got.keys().collect::<Vec<_>>(), ["brasil.norte.s2", "brasil.sul.s1"], "s3 has nothing in the window");
    for tag in &tags[..2] {
        let inside: Vec<f64> = events
            .iter()
            .filter(|e| e.reading.tag.as_str() == *tag && (from..=to).contains(&e.reading.ts_ms))
            .map(|e| e.reading.value.as_number().unwrap())
            .collect();
        let s = got[*tag];
        assert_eq!(s.count, inside.len() as i64, "{tag}");
        assert!((s.sum - inside.iter().sum::<f64>()).abs() < 1e-6, "{tag}: {s:?}");
        assert_eq!(s.min, inside.iter().copied().fold(f64::INFINITY, f64::min), "{tag}");
        assert_eq!(s.max, inside.iter().copied().fold(f64::NEG_INFINITY, f64::max), "{tag}");
    }
    let south = store.summaries_under(Some("brasil.sul"), from, to).await.unwrap();
    assert_eq!(south.keys().collect::<Vec<_>>(), ["brasil.sul.s1"], "only the sensors under the prefix");
    assert_eq!(south["brasil.sul.s1"], got["brasil.sul.s1"]);
    assert!(store.summaries_under(Some("brasil.su"), from, to).await.unwrap().is_empty(), "prefixes go by token");
}
