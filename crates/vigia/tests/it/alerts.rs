//! Alerts open and clear exactly once, through redelivery and restarts.

use std::time::Duration;

use crate::common::{TestEnv, wait_for};
use tokio_util::sync::CancellationToken;
use vigia::app::Parts;
use vigia::workers::alerter::Alerter;
use vigia_bus::{ALERTS, Batcher, READINGS};
use vigia_domain::Rule;

fn all_parts() -> Parts {
    Parts { persister: true, alerter: true, ..Parts::default() }
}

async fn publish_values(env: &TestEnv, tag: &str, values: &[f64]) {
    for v in values {
        env.publish_raw(tag, format!(r#"{{"value": {v}}}"#).as_bytes()).await;
    }
}

#[tokio::test]
async fn alerts_open_and_clear_once_with_a_lifecycle() {
    let env = TestEnv::start().await;
    let running = env.run(all_parts());
    publish_values(&env, "brasil.sul.s1", &[10.0, 60.0, 70.0, 40.0, 80.0]).await;
    publish_values(&env, "brasil.norte.s9", &[20.0, 30.0]).await;
    env.drained(READINGS, "alerter").await;
    env.drained(ALERTS, "alert-projector").await;

    assert_eq!(env.stream_messages(ALERTS).await, 3, "opened at 60, cleared at 40, opened at 80");
    let alerts = env.store.alerts(None).await.unwrap();
    assert_eq!(alerts.len(), 2);
    let mut statuses: Vec<&str> = alerts.iter().map(|a| a.status.as_str()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["cleared", "open"]);
    let cleared = alerts.iter().find(|a| a.status == "cleared").unwrap();
    assert_eq!((cleared.opened_value, cleared.cleared_value), (60.0, Some(40.0)));
    assert!(alerts.iter().all(|a| a.tag == "brasil.sul.s1" && a.rule == "value-above-50"));
    running.shutdown().await;
}

#[tokio::test]
async fn redelivered_readings_raise_nothing_twice() {
    let env = TestEnv::start().await;
    publish_values(&env, "brasil.sul.s1", &[60.0, 61.0, 20.0, 90.0]).await;

    // An alerter judges and publishes, then dies before acking.
    let consumer = env.consumer(READINGS, "alerter").await;
    let mut batcher = Batcher::new(&consumer, 100, Duration::from_millis(200)).await.unwrap();
    let batch = batcher.next(&CancellationToken::new()).await.unwrap().unwrap();
    assert_eq!(batch.len(), 4);
    let mut crashed = Alerter::new(&env.bus, Rule::default_rules()).await.unwrap();
    assert_eq!(crashed.judge(&batch).await.unwrap(), 3);
    drop((batch, batcher, crashed));

    // A fresh alerter gets the batch again after ack_wait and restores its state from ALERTS.
    let running = env.run(all_parts());
    env.drained(READINGS, "alerter").await;
    let mut info = env.consumer(READINGS, "alerter").await;
    assert!(info.info().await.unwrap().delivered.consumer_sequence > 4, "the batch was redelivered");
    assert_eq!(env.stream_messages(ALERTS).await, 3, "no alert event published twice");

    // And state survives a restart: a new reading above 50 while open raises nothing.
    running.shutdown().await;
    let running = env.run(all_parts());
    publish_values(&env, "brasil.sul.s1", &[95.0, 10.0]).await;
    env.drained(READINGS, "alerter").await;
    env.drained(ALERTS, "alert-projector").await;
    assert_eq!(env.stream_messages(ALERTS).await, 4, "only the clear at 10 is new");
    let store = env.store.clone();
    wait_for("two alert records", Duration::from_secs(10), || {
        let s = store.clone();
        async move { s.alerts(Some("cleared")).await.unwrap().len() == 2 }
    })
    .await;
    running.shutdown().await;
}
