//! Retention by age and by size: old raw events, then minute and hour
//! rollups, age out in bounded passes while ingestion goes on; counters keep
//! counting what was removed (accounted per tag), and the projections still
//! equal a scan plus what was retired.

use std::time::Duration;

use vigia_bus::READINGS;
use vigia_testkit::NatsServer;

use crate::common::{TestEnv, assert_consistent, persister_only, wait_for};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn publish_at(env: &TestEnv, tag: &str, ts: i64, value: f64) {
    env.publish_raw(tag, format!(r#"{{"value": {value}, "timestamp": {ts}}}"#).as_bytes()).await;
}

async fn total(env: &TestEnv) -> i64 {
    let root = env.store.counters().await.unwrap().into_iter().find(|c| c.prefix == "brasil");
    root.map_or(0, |c| c.ok + c.errors)
}

#[tokio::test]
async fn old_events_and_rollups_age_out_in_small_passes_and_counts_stay() {
    let env = TestEnv::start_on(NatsServer::start(), |c| {
        c.retention.events_days = 2;
        c.retention.minute_days = 3;
        c.retention.hour_days = 4;
        c.retention.day_days = 0;
        c.retention.batch = 4;
        c.retention.interval_secs = 0;
        c.persister.batch_size = 20;
    })
    .await;
    let now = now_ms();
    // 30 hours of readings five days ago (dozens of old blocks, many passes of 4),
    // some 2.5 days ago (raw gone, minute rollups kept), and fresh ones.
    let five_days = (now - 5 * DAY).div_euclid(HOUR) * HOUR;
    for h in 0..30 {
        for s in 0..4 {
            publish_at(&env, &format!("brasil.sul.s{s}"), five_days + h * HOUR + 60_000, 10.0).await;
        }
    }
    let middle = now - 60 * HOUR;
    publish_at(&env, "brasil.sul.s0", middle, 20.0).await;
    for s in 0..4 {
        publish_at(&env, &format!("brasil.sul.s{s}"), now - 60_000, 30.0).await;
    }
    let running = env.run(persister_only());
    // Ingestion goes on while retention works through the old hours.
    for s in 0..4 {
        publish_at(&env, &format!("brasil.sul.s{s}"), now, 40.0).await;
    }
    let published = 30 * 4 + 1 + 4 + 4;
    env.drained(READINGS, "persister").await;
    wait_for("retention to remove every old event", Duration::from_secs(60), || {
        let store = env.store.clone();
        async move { store.all_events().await.unwrap().len() == 8 }
    })
    .await;

    let events = env.store.all_events().await.unwrap();
    assert!(events.iter().all(|e| e.reading.ts_ms >= now - 2 * DAY), "only recent raw events are left");
    assert_eq!(total(&env).await, published, "counters still count every event");
    let retired: i64 = env.store.retired().await.unwrap().iter().map(|r| r.count).sum();
    assert_eq!(retired, published - 8);
    let s0 = env.store.sensor("brasil.sul.s0").await.unwrap().unwrap();
    assert_eq!(s0.count, 30 + 1 + 2, "the registry's counter includes retired events");

    let minutes = env.store.rollups("m").await.unwrap();
    assert!(minutes.iter().all(|r| r.bucket >= now - 3 * DAY), "minute rollups past 3 days are gone");
    assert!(minutes.iter().any(|r| r.bucket == middle.div_euclid(60_000) * 60_000), "but not younger ones");
    let hours = env.store.rollups("h").await.unwrap();
    assert!(hours.iter().all(|r| r.bucket >= now - 4 * DAY), "hour rollups past 4 days are gone");
    let days = env.store.rollups("d").await.unwrap();
    let five_days_ago = days.iter().filter(|r| r.bucket <= five_days + 30 * HOUR).map(|r| r.count).sum::<i64>();
    assert_eq!(five_days_ago, 120, "day rollups are kept: the old days' averages still answer");
    assert!(env.store.horizon().await.unwrap().is_some_and(|h| h <= now - 2 * DAY + HOUR));
    assert_eq!(assert_consistent(&env.store).await, 8, "projections equal a scan plus what was retired");
    running.shutdown().await;
}

#[tokio::test]
async fn over_the_size_limit_the_oldest_hours_go_first_and_the_current_hour_stays() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("surrealkv://{}", dir.path().join("db").display());
    let env = TestEnv::start_on(NatsServer::start(), |c| {
        c.store.url = url;
        c.retention.events_days = 0;
        c.retention.minute_days = 0;
        c.retention.hour_days = 0;
        c.retention.day_days = 0;
        // 1 KiB: smaller than any SurrealKV directory, so the limit is always exceeded.
        c.retention.max_store_mb = 1.0 / 1024.0;
        c.retention.interval_secs = 0;
        c.retention.batch = 8;
    })
    .await;
    let now = now_ms();
    let current = now.div_euclid(HOUR) * HOUR;
    for h in 1..=6 {
        publish_at(&env, "brasil.norte.s1", current - h * HOUR + 1_000, 5.0).await;
    }
    publish_at(&env, "brasil.norte.s1", now, 6.0).await;
    let running = env.run(persister_only());
    env.drained(READINGS, "persister").await;
    wait_for("the old hours to go", Duration::from_secs(60), || {
        let store = env.store.clone();
        async move { store.all_events().await.unwrap().len() == 1 }
    })
    .await;
    let left = env.store.all_events().await.unwrap();
    assert_eq!(left[0].reading.ts_ms, now, "the hour being written is never removed");
    assert_eq!(total(&env).await, 7);
    assert_eq!(assert_consistent(&env.store).await, 1);
    running.shutdown().await;
}
