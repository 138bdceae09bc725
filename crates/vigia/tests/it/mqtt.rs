//! Devices on MQTT: a real MQTT client (`mosquitto_pub` from Debian's
//! mosquitto-clients) publishing with QoS 1 to the MQTT listener of the
//! shipped `nats/nats-server.conf` lands on `READINGS` under the dotted
//! subject, and the persister stores it under that tag.

use std::process::Command;
use std::time::Duration;

use futures::TryStreamExt;

use vigia_bus::READINGS;
use vigia_domain::Value;
use vigia_testkit::NatsServer;

use crate::common::{TestEnv, assert_consistent, persister_only, wait_for};

/// Publishes `payload` to `topic` with QoS 1: `mosquitto_pub` exits 0 only
/// once the server has answered the PUBLISH with a PUBACK.
fn mosquitto_pub(port: u16, client_id: &str, topic: &str, payload: &str) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv311", "-q", "1"])
        .args(["-i", client_id, "-t", topic, "-m", payload])
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run mosquitto_pub ({e}); the MQTT test needs a real MQTT client. Install it: \
                 `apt-get install -y mosquitto-clients` (Debian/Ubuntu)"
            )
        });
    assert!(status.success(), "mosquitto_pub -q 1 to {topic} failed ({status}): the server did not PUBACK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_device_publishing_with_qos_1_lands_in_readings_under_its_tag() {
    let nats = NatsServer::start_shipped();
    let port = nats.mqtt_port().expect("the shipped configuration has an MQTT listener");
    let env = TestEnv::start_on(nats, |_| {}).await;
    let running = env.run(persister_only());

    let design = r#"{"timestamp": 1539112021301, "tag": "brasil.sudeste.sensor01", "valor": "42"}"#;
    tokio::task::block_in_place(|| {
        mosquitto_pub(port, "sensor01", "brasil/sudeste/sensor01", design);
        mosquitto_pub(port, "sensor01", "brasil/sudeste/sensor01", "17.5");
    });

    let store = env.store.clone();
    wait_for("both MQTT readings to be stored", Duration::from_secs(30), || {
        let s = store.clone();
        async move { s.events_of("brasil.sudeste.sensor01").await.unwrap().len() == 2 }
    })
    .await;
    let stream = env.bus.jetstream().get_stream(READINGS).await.expect("READINGS");
    for seq in [1, 2] {
        let message = stream.get_raw_message(seq).await.expect("the MQTT publish is on READINGS");
        assert_eq!(message.subject.as_str(), "brasil.sudeste.sensor01", "MQTT topic / became subject .");
        assert!(message.headers.get("Nmqtt-Pub").is_some(), "nats-server marks MQTT publishes: {:?}", message.headers);
    }
    assert_eq!(env.stream_messages(READINGS).await, 2, "one stream message per QoS 1 publish");
    // Per-subject counts straight from the stream, the call behind
    // `nats stream subjects READINGS` (docs/nats.md).
    let subjects: Vec<(String, usize)> =
        stream.info_with_subjects("brasil.>").await.expect("subjects").try_collect().await.expect("pages");
    assert_eq!(subjects, [("brasil.sudeste.sensor01".to_owned(), 2)]);

    let events = env.store.events_of("brasil.sudeste.sensor01").await.unwrap();
    assert_eq!(events[0].reading.value, Value::Number(42.0));
    assert_eq!(events[0].reading.ts_ms, 1_539_112_021_301);
    assert_eq!(events[1].reading.value, Value::Number(17.5));
    let counters = env.store.counters().await.unwrap();
    let leaf = counters.iter().find(|c| c.prefix == "brasil.sudeste.sensor01").expect("the tag is counted");
    assert_eq!(leaf.ok, 2);
    assert_eq!(assert_consistent(&env.store).await, 2);
    running.shutdown().await;
}
