//! End to end through real NATS and embedded SurrealDB: what a device
//! publishes is stored, counted and rolled up; every payload shape decodes;
//! garbage is kept as errors.

use std::time::Duration;

use crate::common::{TestEnv, assert_consistent, persister_only, wait_for};
use vigia_domain::{Status, Value};

#[tokio::test]
async fn raw_publish_is_stored_counted_and_rolled_up() {
    let env = TestEnv::start().await;
    let running = env.run(persister_only());
    let ts = 1_700_000_123_456i64;
    let seq =
        env.publish_raw("brasil.sudeste.sensor01", format!(r#"{{"value": 42.5, "timestamp": {ts}}}"#).as_bytes()).await;
    let store = env.store.clone();
    wait_for("the event to be stored", Duration::from_secs(20), || {
        let s = store.clone();
        async move { s.events_of("brasil.sudeste.sensor01").await.unwrap().len() == 1 }
    })
    .await;

    let events = env.store.events_of("brasil.sudeste.sensor01").await.unwrap();
    assert_eq!(events[0].id.seq, seq);
    assert_eq!(events[0].reading.value, Value::Number(42.5));
    assert_eq!(events[0].reading.ts_ms, ts);

    let counters = env.store.counters().await.unwrap();
    let got: Vec<(&str, i64, i64)> = counters.iter().map(|c| (c.prefix.as_str(), c.depth, c.ok)).collect();
    assert_eq!(got, [("brasil", 1, 1), ("brasil.sudeste", 2, 1), ("brasil.sudeste.sensor01", 3, 1)]);

    for (grain, bucket) in [("m", ts - ts % 60_000), ("h", ts - ts % 3_600_000), ("d", ts - ts % 86_400_000)] {
        let rollups = env.store.rollups(grain).await.unwrap();
        assert_eq!(rollups.len(), 1, "{grain}");
        let r = &rollups[0];
        assert_eq!((r.bucket, r.count, r.sum, r.min, r.max), (bucket, 1, 42.5, 42.5, 42.5), "{grain}");
    }
    let sensors = env.store.sensors().await.unwrap();
    assert_eq!(sensors.len(), 1);
    // Reads past their cap are refused before they load anything.
    match env.store.events_window(None, None, None, 0).await {
        Err(vigia_store::StoreError::TooMany { found: 1, cap: 0 }) => {}
        other => panic!("expected TooMany, got {other:?}"),
    }
    assert_eq!(env.store.events_window(Some("brasil.sudeste"), Some(ts), Some(ts), 1).await.unwrap().len(), 1);
    assert!(env.store.events_window(Some("brasil.sul"), None, None, 1).await.unwrap().is_empty());
    assert_eq!((sensors[0].first_seen, sensors[0].last_seen, sensors[0].count), (ts, ts, 1));
    assert_eq!(sensors[0].last_value, Some(42.5));
    assert_consistent(&env.store).await;
    running.shutdown().await;
}

#[tokio::test]
async fn every_payload_shape_from_the_design() {
    let env = TestEnv::start().await;
    let running = env.run(persister_only());
    let cases: [(&str, &str, Value, Status, Option<i64>); 7] = [
        (
            "brasil.sudeste.sensor01",
            r#"{"timestamp": 1539112021301, "tag": "brasil.sudeste.sensor01", "valor": "42"}"#,
            Value::Number(42.0),
            Status::Ok,
            Some(1_539_112_021_301),
        ),
        (
            "plant1.area3.EQ-12495",
            r#"{"equipmentId": "EQ-12495", "value": 78.42, "timestamp": "2023-02-15T01:30:00.000-05:00"}"#,
            Value::Number(78.42),
            Status::Ok,
            Some(1_676_442_600_000),
        ),
        (
            "meters.lab.device-7",
            r#"{"device_id": "device-7", "value": 55, "unit": "kWh", "timestamp": 1700000000}"#,
            Value::Number(55.0),
            Status::Ok,
            Some(1_700_000_000_000),
        ),
        ("brasil.sul.s1", r#"{"valor": "ligado"}"#, Value::Text("ligado".into()), Status::Ok, None),
        ("brasil.sul.s2", r#"{"valor": ""}"#, Value::Empty, Status::Error, None),
        ("brasil.sul.s3", r#"{"timestamp": 1539112021301}"#, Value::Empty, Status::Error, Some(1_539_112_021_301)),
        ("brasil.sul.s4", "17.25", Value::Number(17.25), Status::Ok, None),
    ];
    for (subject, payload, ..) in &cases {
        env.publish_raw(subject, payload.as_bytes()).await;
    }
    env.drained("READINGS", "persister").await;
    for (subject, payload, value, status, ts) in cases {
        let events = env.store.events_of(subject).await.unwrap();
        assert_eq!(events.len(), 1, "{subject}");
        let r = &events[0].reading;
        assert_eq!((&r.value, r.status), (&value, status), "{payload}");
        if let Some(ts) = ts {
            assert_eq!(r.ts_ms, ts, "{payload}");
        }
    }
    let metering = &env.store.events_of("meters.lab.device-7").await.unwrap()[0].reading;
    assert_eq!(metering.unit.as_deref(), Some("kWh"));
    assert_eq!(metering.meta.get("device_id").map(String::as_str), Some("device-7"));
    assert_consistent(&env.store).await;
    running.shutdown().await;
}

#[tokio::test]
async fn garbage_is_stored_as_errors_with_reason_and_raw_bytes() {
    let env = TestEnv::start().await;
    let running = env.run(persister_only());
    let garbage: [(&str, &[u8]); 5] = [
        ("brasil.sul.g1", b"\xff\xfe\x00 not utf-8"),
        ("brasil.sul.g2", b"hello"),
        ("brasil.sul.g3", b""),
        ("brasil.sul.g4", b"[1, 2, 3]"),
        ("brasil.a.b.c.d.e.f.g.h", br#"{"value": 1}"#),
    ];
    for (subject, payload) in garbage {
        env.publish_raw(subject, payload).await;
    }
    env.drained("READINGS", "persister").await;
    for (subject, payload) in &garbage[..4] {
        let events = env.store.events_of(subject).await.unwrap();
        assert_eq!(events.len(), 1, "{subject}");
        let r = &events[0].reading;
        assert_eq!(r.status, Status::Error);
        assert!(r.reason.as_deref().is_some_and(|s| !s.is_empty()));
        assert_eq!(r.raw.as_deref(), Some(*payload), "raw bytes kept for {subject}");
    }
    let invalid = env.store.events_of("brasil._invalid").await.unwrap();
    assert_eq!(invalid.len(), 1, "a subject too deep to be a tag is still stored");
    assert!(invalid[0].reading.reason.as_deref().unwrap().contains("not a valid tag"));
    assert_eq!(env.store.all_events().await.unwrap().len(), 5);
    let root = env.store.counters().await.unwrap().into_iter().find(|c| c.prefix == "brasil").unwrap();
    assert_eq!((root.ok, root.errors), (0, 5));
    assert_consistent(&env.store).await;
    running.shutdown().await;
}

#[tokio::test]
async fn a_correction_at_the_end_of_time_is_applied_without_stopping_the_persister() {
    let env = TestEnv::start().await;
    // Devices may send any timestamp; this one saturates to the last millisecond there is.
    let seq = env.publish_raw("brasil.sul.far", br#"{"value": 1, "timestamp": 1e99}"#).await;
    let running = env.run(persister_only());
    env.drained(vigia_bus::READINGS, "persister").await;
    let ts = env.store.events_of("brasil.sul.far").await.unwrap()[0].reading.ts_ms;
    assert_eq!(ts, i64::MAX);
    // A correction straight on the log (the API refuses such times; the log cannot).
    let mut headers = vigia_bus::HeaderMap::new();
    headers.insert(vigia_domain::EVENT_HEADER, vigia_domain::READING_CORRECTED);
    headers.insert(vigia_domain::VERSION_HEADER, "1");
    let body = format!(r#"{{"v": 1, "target": {{"seq": {seq}, "idx": 0}}, "ts": {ts}, "value": 2}}"#);
    let ack = env.bus.jetstream().publish_with_headers("brasil.sul.far", headers, body.into()).await.unwrap();
    ack.await.expect("the stream acks the correction");
    env.drained(vigia_bus::READINGS, "persister").await;
    let events = env.store.events_of("brasil.sul.far").await.unwrap();
    assert_eq!(events[0].reading.value, Value::Number(2.0), "{events:?}");
    assert_eq!(assert_consistent(&env.store).await, 1);
    running.shutdown().await;
}

/// The store writers run on a runtime of their own by default (every other
/// test here); `persister.threads = 0` puts them back on the caller's
/// runtime, which must work as well.
#[tokio::test]
async fn the_writers_also_run_on_the_main_runtime() {
    let mut env = TestEnv::start().await;
    env.config.persister.threads = 0;
    let running = env.run(persister_only());
    let mut seqs = Vec::new();
    for i in 0..20 {
        let payload = format!(r#"{{"value": {i}, "timestamp": {}}}"#, 1_700_000_000_000i64 + i);
        seqs.push(env.publish_raw(&format!("brasil.sul.s{}", i % 4), payload.as_bytes()).await);
    }
    let store = env.store.clone();
    wait_for("20 events stored", Duration::from_secs(20), || {
        let s = store.clone();
        async move { s.events_window(Some("brasil"), None, None, 100).await.unwrap().len() == 20 }
    })
    .await;
    let mut stored: Vec<u64> =
        env.store.events_window(Some("brasil"), None, None, 100).await.unwrap().iter().map(|e| e.id.seq).collect();
    stored.sort_unstable();
    assert_eq!(stored, seqs);
    assert_eq!(assert_consistent(&env.store).await, 20);
    running.shutdown().await;
}

/// A pull batch ends with the message that takes it to its byte budget, so
/// a backlog of large messages (5,000-reading backfill requests) cannot come
/// as one pull of millions of readings and one giant transaction.
#[tokio::test]
async fn a_pull_batch_ends_at_its_byte_budget() {
    let env = TestEnv::start().await;
    let padding = "x".repeat(980);
    for i in 0..10 {
        let payload = format!(r#"{{"value": {i}, "note": "{padding}"}}"#);
        env.publish_raw("brasil.sul.s1", payload.as_bytes()).await;
    }
    let consumer = env.consumer(vigia_bus::READINGS, "persister").await;
    let mut batcher =
        vigia_bus::Batcher::new(&consumer, 100, Duration::from_millis(500)).await.unwrap().with_max_bytes(2_500);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut sizes = Vec::new();
    while sizes.iter().sum::<usize>() < 10 {
        sizes.push(batcher.next(&stop).await.unwrap().expect("a batch").len());
    }
    // About 1,000 bytes each: the third message crosses 2,500 and ends the batch.
    assert_eq!(sizes, [3, 3, 3, 1]);
}

/// Behind a backlog the persister waits for a full flush before it commits:
/// every flush rewrites each aggregate record it touches, so draining a
/// backlog in the small flushes that quick commits make rewrote the same
/// records over and over. The ledger moves once per committed flush.
#[tokio::test]
async fn a_backlog_drains_in_full_flushes() {
    let mut env = TestEnv::start().await;
    env.config.persister.batch_size = 100;
    env.config.persister.flush_events = 1_000;
    let js = env.bus.jetstream();
    let mut acks = Vec::new();
    for i in 0..3_000i64 {
        let payload = format!(r#"{{"value": {}, "timestamp": {}}}"#, i % 97, 1_700_000_000_000 + i);
        acks.push(js.publish(format!("brasil.sul.s{}", i % 40), payload.into()).await.expect("publish"));
    }
    for ack in acks {
        ack.await.expect("stream acks");
    }
    let running = env.run(persister_only());
    env.drained(vigia_bus::READINGS, "persister").await;
    assert_eq!(assert_consistent(&env.store).await, 3_000);
    let ledger = env.store.ledger(vigia::workers::persister::READINGS_LEDGER).await.unwrap();
    // Three full flushes of 1,000 (a fourth when a pull straddles the cut).
    assert!(ledger.version <= 4, "the backlog took {} flushes, not 3 or 4", ledger.version);
    running.shutdown().await;
}
