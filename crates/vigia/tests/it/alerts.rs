//! Alerts open and clear exactly once, through redelivery and restarts.

use std::time::Duration;

use crate::common::{TestEnv, shared_turn, test_config, wait_for};
use tokio_util::sync::CancellationToken;
use vigia::app::Parts;
use vigia::config::AlertsConsumer;
use vigia::workers::alerter::Alerter;
use vigia_bus::{ALERTS, Batcher, Publisher, READINGS};
use vigia_domain::{BatchItem, ItemValue, Rule};

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
    env.judged().await;
    env.drained(ALERTS, "alert-projector").await;
    // The default (`"auto"`) with a store in the process: the alerter judged
    // the persister's pulls, and nats-server delivered nothing to its own.
    let mut own = env.consumer(READINGS, "alerter").await;
    assert_eq!(own.info().await.unwrap().delivered.stream_sequence, 0, "the alerter rode the persister's consumer");

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
    redelivered_readings_raise_nothing_twice_on(AlertsConsumer::Own).await;
}

/// The same when the alerter judges the persister's pulls
/// (`[alerts] consumer = "persister"`): a batch judged by a process that
/// died before storing it comes again and raises nothing twice.
#[tokio::test]
async fn redelivered_readings_raise_nothing_twice_on_the_persisters_consumer() {
    redelivered_readings_raise_nothing_twice_on(AlertsConsumer::Persister).await;
}

async fn redelivered_readings_raise_nothing_twice_on(mode: AlertsConsumer) {
    let mut env = TestEnv::start().await;
    env.config.alerts.consumer = mode;
    let judged_on = env.alerter_consumer();
    publish_values(&env, "brasil.sul.s1", &[60.0, 61.0, 20.0, 90.0]).await;

    // An alerter judges and publishes, then dies before acking.
    let consumer = env.consumer(READINGS, judged_on).await;
    let mut batcher = Batcher::new(&consumer, 100, Duration::from_millis(200)).await.unwrap();
    let batch = batcher.next(&CancellationToken::new()).await.unwrap().unwrap();
    assert_eq!(batch.len(), 4);
    let mut crashed = Alerter::new(&env.bus, Rule::default_rules()).await.unwrap();
    assert_eq!(crashed.judge(&batch).await.unwrap(), 3);
    drop((batch, batcher, crashed));

    // A fresh alerter gets the batch again after ack_wait and restores its state from ALERTS.
    let running = env.run(all_parts());
    env.drained(READINGS, judged_on).await;
    let mut info = env.consumer(READINGS, judged_on).await;
    assert!(info.info().await.unwrap().delivered.consumer_sequence > 4, "the batch was redelivered");
    assert_eq!(env.stream_messages(ALERTS).await, 3, "no alert event published twice");

    // And state survives a restart: a new reading above 50 while open raises nothing.
    running.shutdown().await;
    let running = env.run(all_parts());
    publish_values(&env, "brasil.sul.s1", &[95.0, 10.0]).await;
    env.drained(READINGS, judged_on).await;
    env.drained(ALERTS, "alert-projector").await;
    assert_eq!(env.stream_messages(ALERTS).await, 4, "only the clear at 10 is new");
    let store = env.store.clone();
    wait_for("two alert records", Duration::from_secs(10), || {
        let s = store.clone();
        async move { s.alerts(Some("cleared")).await.unwrap().len() == 2 }
    })
    .await;
    running.shutdown().await;
    if judged_on == "persister" {
        let mut own = env.consumer(READINGS, "alerter").await;
        let own = own.info().await.unwrap();
        assert_eq!(own.delivered.stream_sequence, 0, "nats-server delivered no reading a second time");
        let stored = env.store.ledger(vigia_store::READINGS_LEDGER).await.unwrap().count();
        assert_eq!(stored, 6, "every reading stored once");
    }
}

/// On the persister's consumer the alerter has no consumer of its own to
/// make: one made anyway would show a lag that only grows. Alone
/// (`"own"`, as `vigia alert` applies it) it gets one.
#[tokio::test]
async fn the_alerter_on_the_persisters_consumer_makes_no_consumer_of_its_own() {
    let _turn = shared_turn().await;
    let nats = vigia_testkit::NatsServer::start();
    let bus = vigia_bus::Bus::connect(nats.url()).await.expect("connect to test nats-server");
    let mut config = test_config(nats.url());
    assert_eq!(config.alerts.consumer, AlertsConsumer::Auto, "the default, which rides with a `mem://` store");
    vigia::app::ensure_topology(&config, &bus).await.unwrap();
    assert!(bus.consumer(READINGS, "persister").await.is_ok(), "the persister's consumer is made");
    assert!(bus.consumer(READINGS, "alerter").await.is_err(), "no consumer for an alerter that rides along");
    config.alerts.consumer = AlertsConsumer::Own;
    vigia::app::ensure_topology(&config, &bus).await.unwrap();
    assert!(bus.consumer(READINGS, "alerter").await.is_ok(), "its own consumer once it pulls one");
}

/// Cumulative acks (the shipped `"ack_policy": "all"`): an alerter never
/// acks past readings another alerter on the consumer still holds, so when
/// that one dies they come again and are judged.
#[tokio::test]
async fn an_alerter_never_acks_past_readings_another_holds() {
    use futures::StreamExt;
    let env = TestEnv::start().await;
    let mut info = env.consumer(READINGS, "alerter").await;
    assert_eq!(
        info.info().await.unwrap().config.ack_policy,
        async_nats::jetstream::consumer::AckPolicy::All,
        "the shipped alerter consumer takes cumulative acks"
    );
    // Ten tags, one reading above 50 each: ten alerts, whoever judges them.
    for i in 0..10 {
        env.publish_raw(&format!("brasil.sul.s{i}"), br#"{"value": 60}"#).await;
    }
    // Another alerter takes 1..=4 and stays on them (its progress resets the ack wait).
    let held: Vec<_> = env
        .consumer(READINGS, "alerter")
        .await
        .fetch()
        .max_messages(4)
        .messages()
        .await
        .unwrap()
        .map(|m| m.expect("a message"))
        .collect()
        .await;
    assert_eq!(held.iter().map(|m| m.info().unwrap().stream_sequence).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let alive = CancellationToken::new();
    let keeper = tokio::spawn({
        let alive = alive.clone();
        async move {
            while !alive.is_cancelled() {
                for m in &held {
                    m.ack_with(async_nats::jetstream::AckKind::Progress).await.expect("progress");
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            // Then it dies without acking.
        }
    });

    let running = env.run(Parts { alerter: true, ..Parts::default() });
    let bus = env.bus.clone();
    wait_for("alerts for 5..=10", Duration::from_secs(30), || {
        let bus = bus.clone();
        async move { bus.usage(ALERTS).await.unwrap().messages == 6 }
    })
    .await;
    // Long enough for the alerter to look into its stuck floor (after 2 s).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let state = info.info().await.unwrap().clone();
    assert_eq!(state.ack_floor.stream_sequence, 0, "no ack covered 1..=4 while another alerter held them");
    assert_eq!(state.num_ack_pending, 10, "5..=10 judged and held, 1..=4 in the other's hands");

    alive.cancel();
    keeper.await.unwrap();
    env.drained(READINGS, "alerter").await;
    assert_eq!(env.stream_messages(ALERTS).await, 10, "every reading judged once, the dead alerter's too");
    assert_eq!(info.info().await.unwrap().ack_floor.stream_sequence, 10);
    running.shutdown().await;
}

#[tokio::test]
async fn unreadable_alert_messages_are_dead_lettered_not_dropped() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    env.publish_raw("alerts.brasil.sul.s1", b"\xff not an alert").await;
    let mut headers = vigia_bus::HeaderMap::new();
    headers.insert(vigia_domain::EVENT_HEADER, vigia_domain::ALERT_ACKNOWLEDGED);
    env.bus
        .jetstream()
        .publish_with_headers("alerts._ack.brasil.sul.s1", headers, "{}".into())
        .await
        .expect("publish")
        .await
        .expect("acked");
    let mut headers = vigia_bus::HeaderMap::new();
    headers.insert(vigia_domain::EVENT_HEADER, vigia_domain::RULES_SET);
    env.bus.jetstream().publish_with_headers("alerts._rules", headers, "[".into()).await.unwrap().await.unwrap();
    // The alerter judges afresh (configured rules, no known state) rather than stall.
    publish_values(&env, "brasil.sul.s1", &[75.0]).await;
    env.judged().await;
    env.drained(ALERTS, "alert-projector").await;
    let alerts = env.store.alerts(None).await.unwrap();
    assert_eq!(alerts.len(), 1, "the alerter and the projector went on past the unreadable messages");
    assert_eq!((alerts[0].rule.as_str(), alerts[0].status.as_str()), ("value-above-50", "open"));

    let dead: serde_json::Value =
        reqwest::get(format!("{base}/api/v1/dead-letters")).await.unwrap().json().await.expect("JSON");
    let dead = dead.as_array().expect("a list");
    assert_eq!(dead.len(), 3, "{dead:#?}");
    let by_subject = |s: &str| dead.iter().find(|d| d["subject"] == s).unwrap_or_else(|| panic!("{s} in {dead:#?}"));
    let garbage = by_subject("alerts.brasil.sul.s1");
    assert_eq!((&garbage["stream"], &garbage["consumer"]), (&"ALERTS".into(), &"alert-projector".into()));
    assert!(garbage["reason"].as_str().unwrap().starts_with("not an alert event"), "{garbage}");
    assert_eq!(garbage["raw_hex"], hex(b"\xff not an alert"));
    let ack = by_subject("alerts._ack.brasil.sul.s1");
    assert!(ack["reason"].as_str().unwrap().starts_with("not an acknowledgement"), "{ack}");
    assert_eq!(ack["raw"], "{}");
    assert!(by_subject("alerts._rules")["reason"].as_str().unwrap().starts_with("not a rules set"));

    // The same three on the DEADLETTER stream, with where they came from.
    let mut stream = env.bus.jetstream().get_stream(vigia_bus::DEADLETTER).await.expect("DEADLETTER stream");
    assert_eq!(stream.info().await.unwrap().state.messages, 3);
    let last =
        stream.get_last_raw_message_by_subject("deadletter.alerts.alert-projector").await.expect("a dead letter");
    assert_eq!(last.headers.get(vigia_bus::DEAD_SUBJECT).map(|v| v.as_str()), Some("alerts._rules"));
    assert_eq!(last.headers.get(vigia_bus::DEAD_STREAM).map(|v| v.as_str()), Some("ALERTS"));
    assert_eq!(last.payload.as_ref(), b"[");
    running.shutdown().await;
}

/// The projector writes a pull's alert events in one transaction, but acks
/// and garbage between them keep their place: an acknowledgement that
/// follows an `opened` in the same pull finds the alert, and the `cleared`
/// after it keeps the acknowledgement.
#[tokio::test]
async fn a_pull_of_alert_events_acks_and_garbage_is_applied_in_stream_order() {
    use vigia_domain::{AlertAck, AlertEvent, AlertKind, AlertState, EVENT_HEADER, EventId, Op, Tag};
    let env = TestEnv::start().await;
    let tag = Tag::parse("brasil.sul.s1").unwrap();
    let opened_by = EventId { seq: 7, idx: 0 };
    let event = |kind, value, ts_ms| AlertEvent {
        v: 1,
        kind,
        tag: tag.clone(),
        rule: "hot".into(),
        op: Op::Gt,
        threshold: 50.0,
        value,
        ts_ms,
        reading: opened_by,
        opened_by,
        state: AlertState::default(),
    };
    let publish = async |subject: &str, name: &'static str, payload: Vec<u8>| {
        let mut headers = vigia_bus::HeaderMap::new();
        headers.insert(EVENT_HEADER, name);
        env.bus
            .jetstream()
            .publish_with_headers(subject.to_owned(), headers, payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    };
    let opened = event(AlertKind::Opened, 70.0, 1_000);
    publish("alerts.brasil.sul.s1", opened.name(), serde_json::to_vec(&opened).unwrap()).await;
    let ack = AlertAck { v: 1, tag: tag.clone(), rule: "hot".into(), opened_by, ts_ms: 2_000, by: Some("ana".into()) };
    publish("alerts._ack.brasil.sul.s1", vigia_domain::ALERT_ACKNOWLEDGED, serde_json::to_vec(&ack).unwrap()).await;
    env.publish_raw("alerts.brasil.sul.s1", b"not an alert").await;
    let cleared = event(AlertKind::Cleared, 20.0, 3_000);
    publish("alerts.brasil.sul.s1", cleared.name(), serde_json::to_vec(&cleared).unwrap()).await;

    let running = env.run(Parts { persister: true, ..Parts::default() });
    env.drained(ALERTS, "alert-projector").await;
    let alert = env.store.alert("hot", opened_by).await.unwrap().expect("the alert is stored");
    assert_eq!(
        (alert.status.as_str(), alert.acknowledged_at, alert.acknowledged_by.as_deref(), alert.cleared_at),
        ("cleared", Some(2_000), Some("ana"), Some(3_000)),
        "{alert:?}"
    );
    assert_eq!((alert.opened_at, alert.opened_value, alert.cleared_value), (1_000, 70.0, Some(20.0)));
    let dead = env.store.dead_letters(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "the garbage between them is set aside: {dead:?}");
    running.shutdown().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One batch may raise more alert events than async-nats's default pool of
/// publish permits (5,000). The alerter used to hold every unconfirmed
/// publish until the batch ended, so the 5,001st waited for a permit it
/// held itself, and every other publisher on the connection (HTTP ingest)
/// froze with it.
#[tokio::test]
async fn a_batch_raising_thousands_of_alerts_leaves_publishing_alive() {
    const READINGS_IN_BATCH: usize = 6_000;
    let env = TestEnv::start().await;
    let tag = vigia_domain::Tag::parse("brasil.sul.s1").unwrap();
    // Every reading crosses the threshold of the default rule: open, clear, open, ...
    let items: Vec<BatchItem> = (0..READINGS_IN_BATCH)
        .map(|i| BatchItem {
            tag: tag.to_string(),
            ts: None,
            value: Some(ItemValue::Number(if i % 2 == 0 { 60.0 } else { 10.0 })),
            unit: None,
            meta: Default::default(),
        })
        .collect();
    let (headers, payload) = Publisher::batch_message(&items);
    let subject = vigia_domain::batch_subject(std::iter::once(&tag)).unwrap();
    env.bus.publisher().publish(subject, Some(headers), payload, None).await.unwrap();

    let consumer = env.consumer(READINGS, "alerter").await;
    let mut batcher = Batcher::new(&consumer, 10, Duration::from_millis(200)).await.unwrap();
    let batch = batcher.next(&CancellationToken::new()).await.unwrap().unwrap();
    let mut alerter = Alerter::new(&env.bus, Rule::default_rules()).await.unwrap();
    let judged = tokio::time::timeout(Duration::from_secs(60), alerter.judge(&batch))
        .await
        .expect("the alerter froze publishing a batch of 6,000 alert events");
    assert_eq!(judged.unwrap(), READINGS_IN_BATCH);
    assert_eq!(env.stream_messages(ALERTS).await, READINGS_IN_BATCH as u64);
    // The connection's other publishers still get their acknowledgements.
    let more = tokio::time::timeout(
        Duration::from_secs(20),
        env.bus.publisher().publish("brasil.sul.s2".into(), None, r#"{"value": 1}"#.into(), None),
    )
    .await
    .expect("publishing froze after a large alert batch");
    assert!(more.unwrap().seq > 1);
}
