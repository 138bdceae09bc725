//! The persister's invariant: stored events equal distinct published
//! messages, and counters and rollups equal a scan, after (a) redelivery,
//! (b) a crash between commit and ack, (c) two persisters on one consumer.
//! And its cumulative acks (`workers/acks.rs`, the shipped `"ack_policy":
//! "all"`): never past a message nobody stored, past one deleted from the
//! stream, and a consumer that acked each message (`"explicit"`) becomes
//! cumulative without losing or doubling anything.

use std::time::Duration;

use crate::common::{TEST_ACK_WAIT, TestEnv, assert_consistent, persister_only, wait_for};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use tokio_util::sync::CancellationToken;
use vigia::workers::persister::{READINGS_LEDGER, apply_batch};
use vigia_bus::{Batcher, Delivery, READINGS, Receipt, Topology};
use vigia_sim::SimConfig;

/// The repository's topology with the persister's consumer taking `acks`.
fn acking(env: &TestEnv, acks: AckPolicy) -> Topology {
    let mut t = Topology::load(&env.config.nats.dir, &env.config.nats.roots).unwrap();
    let persister = t.consumer_mut("persister").unwrap();
    persister.ack_wait = TEST_ACK_WAIT;
    persister.ack_policy = acks;
    t
}

/// A fresh environment whose persister consumer takes cumulative acks, as
/// the shipped `nats/consumers/readings/persister.json` makes it.
async fn cumulative_env() -> TestEnv {
    let env = TestEnv::start().await;
    let mut consumer = env.consumer(READINGS, "persister").await;
    assert_eq!(consumer.info().await.unwrap().config.ack_policy, AckPolicy::All, "the shipped default");
    env
}

/// A fresh environment whose persister consumer takes one ack per message.
async fn per_message_env() -> TestEnv {
    let env = TestEnv::start().await;
    acking(&env, AckPolicy::Explicit).apply(env.bus.jetstream()).await.expect("the per-message topology applies");
    let mut consumer = env.consumer(READINGS, "persister").await;
    assert_eq!(consumer.info().await.unwrap().config.ack_policy, AckPolicy::Explicit);
    env
}

/// Asserts the store holds `events` events, projections equal to a scan,
/// and the ledger exactly the sequences `ranges`.
async fn assert_stored(env: &TestEnv, events: u64, ranges: &[(u64, u64)]) {
    assert_eq!(assert_consistent(&env.store).await, events);
    assert_eq!(ledger_ranges(env).await, ranges);
}

async fn ledger_ranges(env: &TestEnv) -> Vec<(u64, u64)> {
    env.store.ledger(READINGS_LEDGER).await.unwrap().ranges
}

async fn publish_readings(env: &TestEnv, n: usize) {
    for i in 0..n {
        let payload = format!(r#"{{"value": {}, "timestamp": {}}}"#, i % 97, 1_700_000_000_000i64 + i as i64 * 1000);
        env.publish_raw(&format!("brasil.sul.sensor{:02}", i % 7), payload.as_bytes()).await;
    }
}

/// Takes one batch of at most `max` from the persister's consumer, as a
/// persister would, and lets go of the pull (what it brought beyond the
/// batch comes again after the ack wait).
async fn take(env: &TestEnv, max: usize) -> Vec<Delivery> {
    let consumer = env.consumer(READINGS, "persister").await;
    let mut batcher = Batcher::new(&consumer, max, Duration::from_millis(200)).await.unwrap();
    batcher.next(&CancellationToken::new()).await.unwrap().expect("a batch")
}

/// Takes a batch from the persister's consumer and commits it to the store
/// exactly as the persister would, but never acks it.
async fn commit_without_ack(env: &TestEnv, max: usize) -> Vec<vigia_bus::Delivery> {
    let batch = take(env, max).await;
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
    crash_between_commit_and_ack(cumulative_env().await).await;
}

#[tokio::test]
async fn crash_between_commit_and_ack_does_not_double_count_acking_each_message() {
    crash_between_commit_and_ack(per_message_env().await).await;
}

async fn crash_between_commit_and_ack(env: TestEnv) {
    publish_readings(&env, 80).await;
    let batch = commit_without_ack(&env, 80).await;
    assert_eq!(batch.len(), 80);
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
    two_persisters_on_one_consumer(cumulative_env().await).await;
}

#[tokio::test]
async fn two_persisters_on_one_consumer_store_everything_once_acking_each_message() {
    two_persisters_on_one_consumer(per_message_env().await).await;
}

async fn two_persisters_on_one_consumer(env: TestEnv) {
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

#[tokio::test]
async fn a_cumulative_ack_never_covers_a_message_nobody_stored() {
    let env = cumulative_env().await;
    publish_readings(&env, 80).await;
    // A slow persister holds 1..=50 and has not committed them; it tells
    // the server it is still on them, so they are not redelivered meanwhile.
    let held = take(&env, 50).await;
    assert_eq!(held.len(), 50);
    let busy = CancellationToken::new();
    let held = {
        let busy = busy.clone();
        tokio::spawn(async move {
            while !busy.is_cancelled() {
                for d in &held {
                    d.progress().await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            held
        })
    };
    // Another persister takes 51..=80 and commits them.
    let running = env.run(persister_only());
    wait_for("51..=80 to be stored", Duration::from_secs(30), || async {
        env.store.ledger(READINGS_LEDGER).await.unwrap().count() == 30
    })
    .await;
    // Past the time a stuck floor is looked into: 1..=50 are still in the
    // stream and unstored, so no ack may cover them.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut info = env.consumer(READINGS, "persister").await;
    let info = info.info().await.unwrap().clone();
    assert_eq!(info.ack_floor.stream_sequence, 0, "an ack covered messages nobody stored: {info:?}");
    assert_eq!(info.num_ack_pending, 80);
    // The slow persister dies; its messages come back after the ack wait.
    busy.cancel();
    drop(held.await.unwrap());
    env.drained(READINGS, "persister").await;
    assert_stored(&env, 80, &[(1, 80)]).await;
    running.shutdown().await;
}

#[tokio::test]
async fn the_ack_floor_passes_a_message_deleted_from_the_stream() {
    let env = cumulative_env().await;
    publish_readings(&env, 10).await;
    let stream = env.bus.jetstream().get_stream(READINGS).await.unwrap();
    assert!(stream.delete_message(4).await.unwrap(), "message 4 deleted");
    let running = env.run(persister_only());
    env.drained(READINGS, "persister").await;
    let mut consumer = env.consumer(READINGS, "persister").await;
    assert_eq!(consumer.info().await.unwrap().ack_floor.stream_sequence, 10);
    assert_stored(&env, 9, &[(1, 3), (5, 10)]).await;
    running.shutdown().await;
}

#[tokio::test]
async fn a_consumer_acking_each_message_becomes_cumulative_and_resumes_after_its_floor() {
    // The persister's consumer as files before cumulative acks made it.
    let env = per_message_env().await;
    publish_readings(&env, 15).await;
    // It acked 1..=10 one by one (what it stored then is in another store).
    let first = take(&env, 10).await;
    assert_eq!(first.len(), 10);
    for d in &first {
        d.ack().await.unwrap();
    }
    drop(first);

    acking(&env, AckPolicy::All).apply(env.bus.jetstream()).await.expect("the topology applies over the old consumer");
    let mut consumer = env.consumer(READINGS, "persister").await;
    let info = consumer.info().await.unwrap().clone();
    assert_eq!(info.config.ack_policy, AckPolicy::All);
    assert_eq!(info.config.deliver_policy, DeliverPolicy::ByStartSequence { start_sequence: 11 });
    assert_eq!(info.num_pending, 5, "resumes after the old ack floor: {info:?}");
    // Applying again (every start does) keeps it as it is.
    acking(&env, AckPolicy::All).apply(env.bus.jetstream()).await.expect("the topology applies again");
    let info = consumer.info().await.unwrap().clone();
    assert_eq!(info.config.deliver_policy, DeliverPolicy::ByStartSequence { start_sequence: 11 });
    assert_eq!(info.num_pending, 5);

    let running = env.run(persister_only());
    env.drained(READINGS, "persister").await;
    assert_eq!(consumer.info().await.unwrap().ack_floor.stream_sequence, 15);
    assert_stored(&env, 5, &[(11, 15)]).await;
    running.shutdown().await;
}

#[tokio::test]
async fn a_remade_consumer_starts_after_its_ack_floor_with_nothing_pending() {
    let env = cumulative_env().await;
    publish_readings(&env, 10).await;
    let batch = take(&env, 10).await;
    assert_eq!(batch.len(), 10);
    // A cumulative ack of 6 covers 1..=6; 7..=10 stay pending.
    batch[5].ack().await.unwrap();
    let mut consumer = env.consumer(READINGS, "persister").await;
    let info = consumer.info().await.unwrap().clone();
    assert_eq!((info.ack_floor.stream_sequence, info.num_ack_pending), (6, 4), "{info:?}");

    let floor = vigia_bus::remake_consumer(env.bus.jetstream(), READINGS, "persister").await.unwrap();
    assert_eq!(floor, 6);
    let info = consumer.info().await.unwrap().clone();
    assert_eq!(info.config.ack_policy, AckPolicy::All, "the same consumer, made again");
    assert_eq!(info.config.ack_wait, TEST_ACK_WAIT);
    assert_eq!(info.config.deliver_policy, DeliverPolicy::ByStartSequence { start_sequence: 7 });
    assert_eq!((info.num_ack_pending, info.num_pending), (0, 4), "nothing pending, 7..=10 to deliver: {info:?}");
    // A persister stores 7..=10 (1..=6 were acknowledged, so not this store's).
    let running = env.run(persister_only());
    env.drained(READINGS, "persister").await;
    assert_eq!(ledger_ranges(&env).await, [(7, 10)]);
    // Made again under a running persister (as it does itself): its pull goes on.
    assert_eq!(vigia_bus::remake_consumer(env.bus.jetstream(), READINGS, "persister").await.unwrap(), 10);
    publish_readings(&env, 5).await;
    wait_for("the running persister to store what came after the remake", Duration::from_secs(30), || async {
        env.store.ledger(READINGS_LEDGER).await.unwrap().count() == 9
    })
    .await;
    env.drained(READINGS, "persister").await;
    assert_eq!(ledger_ranges(&env).await, [(7, 15)]);
    running.shutdown().await;
}

/// A batcher that stops gives back what its pull brought in but no batch
/// took, and counts each message once, though a nak'd message comes
/// straight back to the pull that is giving it back (a stop after a quiet
/// run once reported 2,303 released).
#[tokio::test]
async fn a_stopping_batcher_gives_back_each_buffered_message_once() {
    let env = TestEnv::start().await;
    for i in 0..8 {
        env.publish_raw(&format!("brasil.sul.s{i}"), br#"{"value": 1}"#).await;
    }
    let consumer = env.consumer(READINGS, "persister").await;
    let mut batcher = Batcher::new(&consumer, 5, Duration::from_millis(200)).await.unwrap();
    let held = batcher.next(&CancellationToken::new()).await.unwrap().unwrap();
    assert_eq!(held.iter().map(|d| d.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    let released = batcher.release().await;
    assert!(released <= 3, "only 6..=8 were left to give back, and {released} were counted");

    // Nothing lost: with 1..=5 acked, the next reader gets 6..=8 and only
    // those (any still on the wire at the stop come after the ack wait).
    held[4].ack().await.unwrap();
    let mut next = Batcher::new(&consumer, 10, Duration::from_millis(200)).await.unwrap();
    let mut got = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + 10 * TEST_ACK_WAIT;
    while got.len() < 3 && std::time::Instant::now() < deadline {
        // Not acked: a cumulative ack of 8 would cover 6 and 7 unread.
        got.extend(next.next(&CancellationToken::new()).await.unwrap().unwrap_or_default().iter().map(|d| d.seq));
    }
    assert_eq!(got.into_iter().collect::<Vec<_>>(), [6, 7, 8]);
}
