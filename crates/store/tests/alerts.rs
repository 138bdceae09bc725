//! Alert events are applied a run at a time, in transactions of up to a
//! hundred (`Store::apply_alerts`). A run must leave exactly what applying
//! its events one by one leaves, in stream order: an alert opened and
//! cleared in the same pull ends cleared, also when the two fall in
//! different transactions, and a redelivered `opened` never reopens it.

use vigia_domain::{AlertEvent, AlertKind, AlertState, EventId, Op, Tag};
use vigia_store::{AlertRecord, Store, StoreConfig};

fn event(kind: AlertKind, tag: &str, value: f64, reading: u64, opened_by: u64) -> AlertEvent {
    AlertEvent {
        v: 1,
        kind,
        tag: Tag::parse(tag).unwrap(),
        rule: "hot".into(),
        op: Op::Gte,
        threshold: 50.0,
        value,
        ts_ms: 1_700_000_000_000 + reading as i64 * 1000,
        reading: EventId { seq: reading, idx: 0 },
        opened_by: EventId { seq: opened_by, idx: 0 },
        state: AlertState::default(),
    }
}

/// Two alerts on one tag, another on a second tag, with a redelivered
/// `opened` after its `cleared` and a repeated `cleared`; 98 alerts on other
/// tags put the first `opened` and its `cleared` in different transactions.
fn storm() -> Vec<AlertEvent> {
    use AlertKind::{Cleared, Opened};
    let others = (0..98).map(|n| event(Opened, &format!("brasil.norte.f{n}"), 99.0, 100 + n, 100 + n));
    let first = [event(Opened, "brasil.sul.s1", 51.0, 1, 1), event(Opened, "brasil.sul.s2", 70.0, 2, 2)];
    let then = [
        event(Cleared, "brasil.sul.s1", 10.0, 3, 1),
        event(Opened, "brasil.sul.s1", 51.0, 1, 1),
        event(Opened, "brasil.sul.s1", 60.0, 4, 4),
        event(Cleared, "brasil.sul.s1", 10.0, 3, 1),
    ];
    first.into_iter().chain(others).chain(then).collect()
}

async fn alerts(store: &Store) -> Vec<AlertRecord> {
    let mut all = store.alerts(None).await.unwrap();
    all.sort_by_key(|a| (a.tag.clone(), a.opened_seq));
    all
}

#[tokio::test]
async fn a_run_leaves_what_one_by_one_leaves() {
    let events = storm();
    assert!(events.len() > 100 && events[100].kind == AlertKind::Cleared, "the first cleared opens a transaction");
    let together = Store::open(&StoreConfig::memory()).await.unwrap();
    together.apply_alerts(&events).await.unwrap();
    let apart = Store::open(&StoreConfig::memory()).await.unwrap();
    for e in &events {
        apart.apply_alerts(std::slice::from_ref(e)).await.unwrap();
    }
    let stored = alerts(&together).await;
    assert_eq!(stored, alerts(&apart).await);

    let (others, stored): (Vec<AlertRecord>, Vec<AlertRecord>) =
        stored.into_iter().partition(|a| a.tag.starts_with("brasil.norte."));
    assert!(others.len() == 98 && others.iter().all(|a| a.status == "open"), "{others:?}");
    let status: Vec<(&str, i64, &str)> =
        stored.iter().map(|a| (a.tag.as_str(), a.opened_seq, a.status.as_str())).collect();
    assert_eq!(
        status,
        [("brasil.sul.s1", 1, "cleared"), ("brasil.sul.s1", 4, "open"), ("brasil.sul.s2", 2, "open")],
        "cleared stays cleared after a redelivered opened; the others are open"
    );
    let first = &stored[0];
    assert_eq!(
        (first.opened_value, first.cleared_value, first.cleared_at),
        (51.0, Some(10.0), Some(1_700_000_003_000))
    );
    assert_eq!((first.op.as_str(), first.threshold), ("gte", 50.0));

    let cleared = together.alerts(Some("cleared")).await.unwrap();
    assert_eq!(cleared, std::slice::from_ref(first), "the status filter (read through its index)");
    assert_eq!(together.alerts(Some("open")).await.unwrap().len(), 100, "98 others, s1's second and s2's");
    assert!(together.alerts(Some("acknowledged")).await.unwrap().is_empty());

    let before = alerts(&together).await;
    together.apply_alerts(&events).await.unwrap();
    assert_eq!(alerts(&together).await, before, "applying the run again changes nothing");
}

#[tokio::test]
async fn a_cleared_alone_still_records_when_the_alert_opened() {
    let store = Store::open(&StoreConfig::memory()).await.unwrap();
    store.apply_alerts(&[event(AlertKind::Cleared, "brasil.sul.s1", 10.0, 3, 1)]).await.unwrap();
    store.apply_alerts(&[event(AlertKind::Opened, "brasil.sul.s1", 51.0, 1, 1)]).await.unwrap();
    let stored = alerts(&store).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].status.as_str(), stored[0].opened_value, stored[0].opened_at),
        ("cleared", 51.0, 1_700_000_001_000),
        "the opened event, arriving late, fills in the opening and keeps the alert cleared"
    );
}
