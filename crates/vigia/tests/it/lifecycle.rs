//! Replay rebuilds the same store; graceful shutdown loses nothing; `up`
//! serves health and finds or starts NATS.

use std::time::Duration;

use crate::common::{TestEnv, assert_consistent, persister_only, wait_for};
use vigia::app::Parts;
use vigia::workers::persister::READINGS_LEDGER;
use vigia_bus::{ALERTS, READINGS};
use vigia_sim::SimConfig;
use vigia_store::{RollupRow, Store, StoreConfig};

fn sim(count: u64, batch: usize) -> SimConfig {
    SimConfig {
        sensors: 25,
        rate: 0.0,
        count: Some(count),
        batch,
        error_ratio: 0.05,
        seed: Some(7),
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn replay_rebuilds_the_same_store() {
    let env = TestEnv::start().await;
    let running = env.run(Parts { persister: true, alerter: true, sim: Some(sim(600, 0)), ..Parts::default() });
    env.drained(READINGS, "persister").await;
    env.judged().await;
    env.drained(ALERTS, "alert-projector").await;
    // The simulator may still be finishing; wait until every published message is stored.
    let store = env.store.clone();
    wait_for("600 events", Duration::from_secs(30), || {
        let s = store.clone();
        async move { s.ledger(READINGS_LEDGER).await.unwrap().count() == 600 }
    })
    .await;
    env.drained(ALERTS, "alert-projector").await;
    // An operator's acknowledgement is on the log too, and replays.
    let first =
        env.store.alerts(None).await.unwrap().into_iter().next().expect("values up to 100 against `> 50` raise alerts");
    let ack = vigia_domain::AlertAck {
        v: 1,
        tag: vigia_domain::Tag::parse(&first.tag).unwrap(),
        rule: first.rule.clone(),
        opened_by: vigia_domain::EventId { seq: first.opened_seq as u64, idx: first.opened_idx as u32 },
        ts_ms: 1,
        by: Some("ops".into()),
    };
    let mut headers = vigia_bus::HeaderMap::new();
    headers.insert(vigia_domain::EVENT_HEADER, vigia_domain::ALERT_ACKNOWLEDGED);
    env.bus
        .publisher()
        .publish(ack.subject(), Some(headers), serde_json::to_vec(&ack).unwrap().into(), None)
        .await
        .unwrap();
    env.drained(ALERTS, "alert-projector").await;
    running.shutdown().await;
    assert!(env.store.alerts(None).await.unwrap().iter().any(|a| a.acknowledged_by.as_deref() == Some("ops")));

    let fresh = Store::open(&StoreConfig::memory()).await.unwrap();
    let report = vigia::replay::replay(&env.bus, &fresh, 128, env.config.backfill.freshness()).await.unwrap();
    assert_eq!((report.messages, report.events), (600, 600));
    assert_eq!(fresh.all_events().await.unwrap(), env.store.all_events().await.unwrap());
    assert_eq!(fresh.counters().await.unwrap(), env.store.counters().await.unwrap());
    for grain in ["m", "h", "d"] {
        let (rebuilt, live) = (fresh.rollups(grain).await.unwrap(), env.store.rollups(grain).await.unwrap());
        assert_eq!(rebuilt.len(), live.len(), "{grain}");
        for (a, b) in rebuilt.iter().zip(&live) {
            // Sums may differ in the last bits: batches cut the additions differently.
            let same_sum = (a.sum - b.sum).abs() <= 1e-9 * a.sum.abs().max(1.0);
            assert!(same_sum && RollupRow { sum: b.sum, ..a.clone() } == *b, "{grain}: {a:?} vs {b:?}");
        }
    }
    assert_eq!(fresh.sensors().await.unwrap(), env.store.sensors().await.unwrap());
    assert_eq!(fresh.alerts(None).await.unwrap(), env.store.alerts(None).await.unwrap());
    assert_consistent(&fresh).await;
}

#[tokio::test]
async fn graceful_shutdown_acks_what_it_stored_and_loses_nothing() {
    let mut env = TestEnv::start().await;
    // Behind a backlog flushes fill up: with the default size the 20,000
    // readings would land in one flush, and the stop would find no work left.
    env.config.persister.flush_events = 2_000;
    vigia_sim::run(env.bus.publisher(), sim(20_000, 0), Default::default()).await.unwrap();
    let running = env.run(persister_only());
    let store = env.store.clone();
    wait_for("some events stored", Duration::from_secs(30), || {
        let s = store.clone();
        async move { s.ledger(READINGS_LEDGER).await.unwrap().count() > 0 }
    })
    .await;
    running.shutdown().await;

    // Everything stored was acked, and nothing acked is missing from the store.
    let mut consumer = env.consumer(READINGS, "persister").await;
    let info = consumer.info().await.unwrap();
    let stored = env.store.ledger(READINGS_LEDGER).await.unwrap();
    assert!(info.ack_floor.stream_sequence > 0, "the batch in hand was finished and acked");
    assert_eq!(stored.ranges, vec![(1, info.ack_floor.stream_sequence)], "stored is exactly what was acked");
    assert!(stored.count() < 20_000, "stopped before the backlog was done, so the restart has work");

    // The next persister picks up exactly where this one stopped.
    let running = env.run(persister_only());
    env.drained(READINGS, "persister").await;
    assert_eq!(assert_consistent(&env.store).await, 20_000);
    running.shutdown().await;
}

#[tokio::test]
async fn parts_stop_when_their_nats_server_is_gone() {
    let mut env = TestEnv::start().await;
    vigia_sim::run(env.bus.publisher(), sim(2_000, 0), Default::default()).await.unwrap();
    let running = env.run(Parts { persister: true, alerter: true, ..Parts::default() });
    let store = env.store.clone();
    wait_for("some events stored", Duration::from_secs(30), || {
        let s = store.clone();
        async move { s.ledger(READINGS_LEDGER).await.unwrap().count() > 0 }
    })
    .await;
    // A stop with NATS gone used to wait for ever in the last flush of acks.
    env.kill_nats();
    running.stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(60), running.join()).await;
    assert!(stopped.is_ok(), "the parts did not stop within 60 s of a stop with their NATS server gone");
}

#[tokio::test]
async fn up_serves_health_and_the_openapi_document() {
    let env = TestEnv::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let running = env.run(Parts {
        persister: true,
        alerter: true,
        loader: true,
        sim: Some(SimConfig { sensors: 10, rate: 20.0, count: None, ..sim(0, 0) }),
        http: Some(listener),
    });
    let client = reqwest::Client::new();
    let health: serde_json::Value =
        client.get(format!("http://{addr}/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["consumers"].as_array().unwrap().len(), 4, "{health}");
    let spec: serde_json::Value =
        client.get(format!("http://{addr}/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(spec["paths"]["/health"].is_object());
    let docs = client.get(format!("http://{addr}/docs/")).send().await.unwrap();
    assert!(docs.status().is_success(), "explorer served: {}", docs.status());
    let store = env.store.clone();
    wait_for("simulated readings stored", Duration::from_secs(20), || {
        let s = store.clone();
        async move { s.ledger(READINGS_LEDGER).await.unwrap().count() >= 20 }
    })
    .await;
    running.shutdown().await;
    assert_consistent(&env.store).await;
}

#[tokio::test]
async fn up_starts_nats_server_when_none_listens() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nats-server.conf"), "server_name: spawned\njetstream {}\n").unwrap();
    let port = vigia_testkit::free_port();
    let mut config = crate::common::test_config(&format!("nats://127.0.0.1:{port}"));
    config.nats.spawn = true;
    config.nats.dir = dir.path().to_owned();
    config.nats.data_dir = dir.path().join("data");
    let (bus, child) = vigia::nats_server::connect_or_spawn(&config.nats, true).await.unwrap();
    let child = child.expect("a child nats-server was started");
    let probe = async_nats::jetstream::stream::Config {
        name: "PROBE".into(),
        subjects: vec!["probe.>".into()],
        ..Default::default()
    };
    bus.jetstream().create_stream(probe).await.expect("JetStream is on in the child");
    assert!(config.nats.data_dir.join("jetstream").exists(), "the child keeps its store under data_dir");
    child.stop().await;
    assert!(vigia_bus::Bus::connect(config.nats.url.as_str()).await.is_err(), "the child is gone");

    config.nats.spawn = false;
    let err = vigia::nats_server::connect_or_spawn(&config.nats, true).await.unwrap_err();
    assert!(format!("{err:#}").contains("not reachable"), "{err:#}");
}
