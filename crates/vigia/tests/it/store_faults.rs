//! The store failing under the persister, with the real embedded SurrealDB
//! made to refuse writes by a schema assertion (the way a full, read-only or
//! misconfigured store refuses them): everything refused waits in JetStream
//! and lands once the store takes writes again; a single message the store
//! will never take is kept as an error event or dead-lettered, and never
//! holds up the messages behind it; a store slower than the ack wait gets
//! every batch redelivered mid-commit and still counts each event once.

use std::time::Duration;

use vigia_bus::{DEAD_SEQ, DEADLETTER, READINGS};
use vigia_domain::Status;

use crate::common::{TestEnv, assert_consistent, persister_only, wait_for};

const BATCH: usize = 50;

async fn env_with_small_batches() -> TestEnv {
    let mut env = TestEnv::start().await;
    env.config.persister.batch_size = BATCH;
    env.config.persister.flush_events = BATCH;
    env
}

async fn stored(env: &TestEnv) -> usize {
    env.store.all_events().await.expect("events read").len()
}

async fn publish_run(env: &TestEnv, tag: &str, values: std::ops::Range<i32>) {
    for v in values {
        env.publish_raw(tag, format!(r#"{{"value": {v}}}"#).as_bytes()).await;
    }
}

#[tokio::test]
async fn a_store_refusing_writes_keeps_the_backlog_in_jetstream_until_it_returns() {
    let env = env_with_small_batches().await;
    let running = env.run(persister_only());
    publish_run(&env, "brasil.sudeste.s1", 0..100).await;
    wait_for("the first 100 stored", Duration::from_secs(30), || async { stored(&env).await == 100 }).await;

    // Every commit writes the ledger; now the store refuses that write.
    env.store.execute_unchecked("DEFINE FIELD OVERWRITE version ON TABLE ledger ASSERT $value < 0").await.unwrap();
    publish_run(&env, "brasil.sudeste.s2", 0..1000).await;
    // Long enough for several refused attempts and for the split-and-probe pass.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let info = env.consumer(READINGS, "persister").await.info().await.expect("consumer info").clone();
    assert_eq!(stored(&env).await, 100, "nothing lands while the store refuses writes");
    assert_eq!(
        info.num_pending + info.num_ack_pending as u64,
        1000,
        "the backlog waits in JetStream, none of it acknowledged: {info:?}"
    );
    assert!(info.num_ack_pending > 0, "the persister holds a batch and keeps trying: {info:?}");
    let bound = vigia::workers::persister::BatchOptions {
        size: BATCH,
        wait: Duration::ZERO,
        flush_events: BATCH,
        freshness: Duration::ZERO,
    }
    .max_in_hand();
    assert!(
        info.num_ack_pending as usize <= bound && bound < 1000,
        "the persister holds at most its flushes and pulls ({bound}), not the backlog: {info:?}"
    );
    assert!(env.store.dead_letters(0, 10).await.unwrap().is_empty(), "a refusing store is not poison");

    env.store.execute_unchecked("REMOVE FIELD version ON TABLE ledger").await.unwrap();
    env.drained(READINGS, "persister").await;
    assert_eq!(stored(&env).await, 1100, "everything lands once the store takes writes again");
    assert_eq!(assert_consistent(&env.store).await, 1100);
    let ledger = env.store.ledger(vigia_store::READINGS_LEDGER).await.unwrap();
    assert_eq!((ledger.count(), ledger.gaps(1100)), (1100, vec![]));
    running.shutdown().await;
}

#[tokio::test]
async fn a_message_the_store_refuses_is_kept_as_an_error_or_dead_lettered() {
    let env = env_with_small_batches().await;
    publish_run(&env, "brasil.sudeste.s1", 0..20).await;
    // A reading whose rollups the store refuses (its minute, hour and day all
    // start at this midnight), and a message the store takes nothing of.
    let refused_value = env.publish_raw("brasil.sudeste.s1", br#"{"value": 666, "timestamp": 978307200000}"#).await;
    let refused_tag = env.publish_raw("brasil.poison.s1", br#"{"value": 1}"#).await;
    publish_run(&env, "brasil.sudeste.s1", 20..40).await;
    env.store
        .execute_unchecked(&format!(
            "DEFINE EVENT OVERWRITE refuse_rollup ON TABLE rollup WHEN $after.bucket = 978307200000 \
                 THEN {{ THROW 'no rollups at this midnight' }}; \
             DEFINE EVENT OVERWRITE refuse_block ON TABLE block \
                 WHEN $after.first_seq <= {refused_tag} AND $after.last_seq >= {refused_tag} \
                 THEN {{ THROW 'no events of this message' }};"
        ))
        .await
        .unwrap();
    let running = env.run(persister_only());
    env.drained(READINGS, "persister").await;

    let events = env.store.events_of("brasil.sudeste.s1").await.unwrap();
    assert_eq!(events.len(), 41, "the 40 good readings around the refused ones are stored");
    let kept = events.iter().find(|e| e.id.seq == refused_value).expect("the refused reading is kept");
    assert_eq!(kept.reading.status, Status::Error);
    let reason = kept.reading.reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("the store refused this message:"), "{reason}");
    assert_eq!(kept.reading.raw.as_deref(), Some(&br#"{"value": 666, "timestamp": 978307200000}"#[..]));

    let dead = env.store.dead_letters(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!((dead[0].stream.as_str(), dead[0].seq as u64), ("READINGS", refused_tag));
    assert_eq!((dead[0].subject.as_str(), dead[0].raw.as_deref()), ("brasil.poison.s1", Some(r#"{"value": 1}"#)));
    let stream = env.bus.jetstream().get_stream(DEADLETTER).await.expect("DEADLETTER stream");
    let letter = stream.get_last_raw_message_by_subject("deadletter.readings.persister").await.expect("a dead letter");
    assert_eq!(letter.headers.get(DEAD_SEQ).map(|v| v.as_str().to_owned()), Some(refused_tag.to_string()));

    // Every message is decided once: stored, kept as an error, or dead-lettered.
    let ledger = env.store.ledger(vigia_store::READINGS_LEDGER).await.unwrap();
    assert_eq!((ledger.count(), ledger.gaps(42)), (42, vec![]));
    assert_eq!(assert_consistent(&env.store).await, 41);
    running.shutdown().await;
}

#[tokio::test]
async fn a_store_slower_than_the_ack_wait_stores_everything_once() {
    let env = env_with_small_batches().await;
    // Every commit now takes longer than the consumer's ack wait (2 s in tests),
    // so JetStream redelivers each batch while the persister is still writing it.
    let commit_time = Duration::from_millis(2500);
    env.store.execute_unchecked("DEFINE EVENT OVERWRITE slow ON TABLE ledger THEN sleep(2500ms)").await.unwrap();
    publish_run(&env, "brasil.sudeste.s1", 0..150).await;
    let started = std::time::Instant::now();
    let running = env.run(persister_only());
    wait_for("150 readings decided", Duration::from_secs(60), || async {
        env.store.ledger(vigia_store::READINGS_LEDGER).await.unwrap().count() == 150
    })
    .await;
    assert!(started.elapsed() >= commit_time, "the injected slowness took effect");
    env.drained(READINGS, "persister").await;
    assert_eq!(stored(&env).await, 150, "each event once, through the redeliveries");
    assert_eq!(assert_consistent(&env.store).await, 150);
    running.shutdown().await;
}
