//! The persister's invariant: stored events equal distinct published
//! messages, and counters and rollups equal a scan, after (a) redelivery,
//! (b) a crash between commit and ack, (c) two persisters on one consumer.

use std::time::Duration;

use crate::common::{TestEnv, assert_consistent, persister_only};
use tokio_util::sync::CancellationToken;
use vigia::workers::persister::{READINGS_LEDGER, apply_batch};
use vigia_bus::{Batcher, Delivery, READINGS, Receipt};
use vigia_sim::SimConfig;

async fn publish_readings(env: &TestEnv, n: usize) {
    for i in 0..n {
        let payload = format!(r#"{{"value": {}, "timestamp": {}}}"#, i % 97, 1_700_000_000_000i64 + i as i64 * 1000);
        env.publish_raw(&format!("brasil.sul.sensor{:02}", i % 7), payload.as_bytes()).await;
    }
}

/// Takes a batch from the persister's consumer and commits it to the store
/// exactly as the persister would, but never acks it.
async fn commit_without_ack(env: &TestEnv, max: usize) -> Vec<vigia_bus::Delivery> {
    let consumer = env.consumer(READINGS, "persister").await;
    let mut batcher = Batcher::new(&consumer, max, Duration::from_millis(200)).await.unwrap();
    let batch = batcher.next(&CancellationToken::new()).await.unwrap().expect("a batch");
    let mut writer = vigia_store::Writer::new(&env.store, READINGS_LEDGER);
    let applied = apply_batch(&mut writer, &batch, vigia::config::DEFAULT_FRESHNESS).await.unwrap();
    assert_eq!(applied.skipped, 0);
    assert!(applied.events > 0);
    batch
}

#[tokio::test]
async fn receipts_ack_their_messages_after_the_deliveries_are_dropped() {
    let env = TestEnv::start().await;
    publish_readings(&env, 30).await;
    let consumer = env.consumer(READINGS, "persister").await;
    let mut batcher = Batcher::new(&consumer, 30, Duration::from_millis(500)).await.unwrap();
    let batch = batcher.next(&CancellationToken::new()).await.unwrap().expect("a batch");
    // What the persister keeps of a flush: receipts, not deliveries.
    let receipts: Vec<Receipt> = batch.iter().map(Delivery::receipt).collect();
    drop(batch);
    let mut consumer = env.consumer(READINGS, "persister").await;
    assert_eq!(consumer.info().await.unwrap().num_ack_pending, receipts.len(), "delivered, not acked yet");
    for r in &receipts {
        r.ack(env.bus.client()).await.unwrap();
    }
    env.bus.flush().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = consumer.info().await.unwrap().clone();
        if info.num_ack_pending == 0 {
            assert_eq!(info.ack_floor.stream_sequence, receipts.last().unwrap().seq, "acked up to the last receipt");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "acks by receipt never reached the server: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redelivered_messages_are_not_counted_twice() {
    let env = TestEnv::start().await;
    publish_readings(&env, 60).await;
    let batch = commit_without_ack(&env, 40).await;
    // Ask for redelivery explicitly, as a persister that gives up on a batch would.
    for d in &batch {
        d.nak(Duration::ZERO).await.unwrap();
    }
    let stored_before = env.store.all_events().await.unwrap().len();
    assert_eq!(stored_before, batch.len());

    let running = env.run(persister_only());
    env.drained(READINGS, "persister").await;
    let mut consumer = env.consumer(READINGS, "persister").await;
    let info = consumer.info().await.unwrap();
    assert!(info.delivered.consumer_sequence > 60, "the nak'ed messages were delivered again");
    assert_eq!(assert_consistent(&env.store).await, 60);
    assert_eq!(env.store.ledger(READINGS_LEDGER).await.unwrap().count(), 60);
    running.shutdown().await;
}

#[tokio::test]
async fn crash_between_commit_and_ack_does_not_double_count() {
    let env = TestEnv::start().await;
    publish_readings(&env, 80).await;
    let batch = commit_without_ack(&env, 50).await;
    // The "crashed" persister drops its batch without acking; the server
    // redelivers it after ack_wait to the persister that takes over.
    drop(batch);
    let running = env.run(persister_only());
    env.drained(READINGS, "persister").await;
    let mut consumer = env.consumer(READINGS, "persister").await;
    let info = consumer.info().await.unwrap();
    assert!(info.delivered.consumer_sequence > 80, "the committed batch was redelivered");
    assert_eq!(assert_consistent(&env.store).await, 80);
    running.shutdown().await;
}

#[tokio::test]
async fn two_persisters_on_one_consumer_store_everything_once() {
    let env = TestEnv::start().await;
    let first = env.run(persister_only());
    let second = env.run(persister_only());
    // Device messages and batch envelopes, published while both persisters pull.
    let device = SimConfig {
        sensors: 40,
        rate: 0.0,
        count: Some(1500),
        error_ratio: 0.05,
        seed: Some(1),
        ..SimConfig::default()
    };
    let batched = SimConfig { batch: 50, seed: Some(2), ..device.clone() };
    let (a, b) = tokio::join!(
        vigia_sim::run(env.bus.publisher(), device, CancellationToken::new()),
        vigia_sim::run(env.bus.publisher(), batched, CancellationToken::new()),
    );
    a.unwrap();
    b.unwrap();
    env.drained(READINGS, "persister").await;
    let messages = env.stream_messages(READINGS).await;
    assert_eq!(messages, 1500 + 30);
    assert_eq!(assert_consistent(&env.store).await, 3000);
    assert_eq!(env.store.ledger(READINGS_LEDGER).await.unwrap().count(), messages);
    let root = env.store.counters().await.unwrap().into_iter().find(|c| c.prefix == "brasil").unwrap();
    assert_eq!(root.ok + root.errors, 3000);
    first.shutdown().await;
    second.shutdown().await;
}
