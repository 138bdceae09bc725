//! NATS accounts as shipped in `nats/accounts.conf`: Vigia runs as the
//! service user, devices publish only under their root and cannot read the
//! stream, the viewer only watches alerts, strangers are refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use vigia_bus::READINGS;
use vigia_testkit::{NatsServer, workspace_root};

use crate::common::{TestEnv, wait_for};

const SERVICE: (&str, &str) = ("vigia", "service-pass");
const DEVICE: (&str, &str) = ("device-brasil", "device-pass");
const VIEWER: (&str, &str) = ("viewer", "viewer-pass");
const DEVICE_INBOX: &str = "_INBOX_device_brasil";

/// A nats-server with the repository's accounts file (verbatim: nats-server
/// includes only relative paths), passwords from its environment.
fn secured_server() -> NatsServer {
    let accounts = std::fs::read_to_string(workspace_root().join("nats/accounts.conf")).expect("nats/accounts.conf");
    NatsServer::start_with_conf(
        &accounts,
        &[
            ("VIGIA_NATS_PASSWORD", SERVICE.1),
            ("VIGIA_DEVICE_BRASIL_PASSWORD", DEVICE.1),
            ("VIGIA_VIEWER_PASSWORD", VIEWER.1),
        ],
    )
}

/// A client as `user`, recording every error the server reports to it.
async fn connect(url: &str, (user, password): (&str, &str), inbox: Option<&str>) -> (async_nats::Client, Errors) {
    let errors = Errors::default();
    let seen = errors.clone();
    let mut options =
        async_nats::ConnectOptions::with_user_and_password(user.into(), password.into()).event_callback(move |event| {
            let seen = seen.clone();
            async move { seen.0.lock().expect("lock").push(event.to_string()) }
        });
    if let Some(prefix) = inbox {
        options = options.custom_inbox_prefix(prefix);
    }
    (options.connect(url).await.unwrap_or_else(|e| panic!("{user} connects: {e}")), errors)
}

#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl Errors {
    fn permission_violations(&self) -> Vec<String> {
        self.0.lock().expect("lock").iter().filter(|e| e.contains("Permissions Violation")).cloned().collect()
    }
}

fn js(client: &async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new().timeout(Duration::from_secs(2)).build(client.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_keep_devices_in_their_root_and_out_of_the_stream() {
    let nats = secured_server();
    let url = nats.url().to_owned();
    assert!(async_nats::connect(&url).await.is_err(), "anonymous clients are refused");
    assert!(
        async_nats::ConnectOptions::with_user_and_password(DEVICE.0.into(), "wrong".into())
            .connect(&url)
            .await
            .is_err(),
        "a wrong password is refused"
    );

    // Vigia itself, as the service user: topology, persister, alerter.
    let env = TestEnv::start_on(nats, |c| {
        c.nats.user = Some(SERVICE.0.to_owned());
        c.nats.password = Some(vigia::config::Secret::new(SERVICE.1));
    })
    .await;
    let running = env.run(vigia::app::Parts { persister: true, alerter: true, ..Default::default() });

    // The device publishes under its root, with acks on its own inbox.
    let (device, device_errors) = connect(&url, DEVICE, Some(DEVICE_INBOX)).await;
    let device_js = js(&device);
    for v in [12, 75] {
        device_js
            .publish("brasil.sul.d1", format!(r#"{{"value": {v}}}"#).into())
            .await
            .expect("publish")
            .await
            .expect("the stream acknowledges a device's reading under its root");
    }

    // Outside its root: refused, never acknowledged, never stored.
    let outside = device_js.publish("plant1.line1.x", r#"{"value": 1}"#.into()).await.expect("sent").await;
    assert!(outside.is_err(), "a publish outside the device's root must not be acknowledged");

    // No JetStream API: it cannot look at the stream nor make a consumer to read it.
    assert!(device_js.get_stream(READINGS).await.is_err(), "a device cannot read stream info");
    let consumer = jetstream::consumer::pull::Config { name: Some("peek".into()), ..Default::default() };
    assert!(
        device_js.create_consumer_on_stream(consumer, READINGS).await.is_err(),
        "a device cannot create a consumer"
    );

    // No core subscriptions to readings or to other clients' inboxes, while the service's work.
    let mut snoop = device.subscribe("brasil.>").await.expect("subscribe is sent");
    let mut inboxes = device.subscribe("_INBOX.>").await.expect("subscribe is sent");
    let (service, _) = connect(&url, SERVICE, None).await;
    let mut control = service.subscribe("brasil.>").await.expect("service subscribes");
    device.flush().await.expect("flush");
    service.flush().await.expect("flush");
    service.publish("brasil.sul.d2", r#"{"value": 3}"#.into()).await.expect("service publishes");
    js(&service).get_stream(READINGS).await.expect("the service reads stream info");
    let seen = tokio::time::timeout(Duration::from_secs(5), control.next()).await.expect("the control sees it");
    assert_eq!(seen.expect("a message").subject.as_str(), "brasil.sul.d2");
    let leaked = tokio::time::timeout(Duration::from_millis(500), async {
        tokio::select! { m = snoop.next() => m, m = inboxes.next() => m }
    })
    .await;
    assert!(!matches!(leaked, Ok(Some(_))), "a device received a message it may not read: {leaked:?}");

    // The viewer watches alerts (75 > 50 opened one) and can publish nothing.
    let (viewer, viewer_errors) = connect(&url, VIEWER, None).await;
    let mut alerts = viewer.subscribe("alerts.>").await.expect("viewer subscribes to alerts");
    viewer.flush().await.expect("flush");
    device_js.publish("brasil.sul.d1", r#"{"value": 90}"#.into()).await.expect("publish").await.expect("acked");
    device_js.publish("brasil.sul.d1", r#"{"value": 10}"#.into()).await.expect("publish").await.expect("acked");
    let alert =
        tokio::time::timeout(Duration::from_secs(15), alerts.next()).await.expect("an alert reaches the viewer");
    assert!(alert.expect("a message").subject.starts_with("alerts.brasil.sul.d1"));
    viewer.publish("brasil.sul.v1", r#"{"value": 1}"#.into()).await.expect("sent");
    viewer.flush().await.expect("flush");

    // What the stream holds: the device's four readings and the service's one; nothing else.
    env.drained(READINGS, "persister").await;
    wait_for("the refusals to be reported", Duration::from_secs(5), || {
        let (d, v) = (device_errors.clone(), viewer_errors.clone());
        async move { d.permission_violations().len() >= 4 && !v.permission_violations().is_empty() }
    })
    .await;
    let mut stream = js(&service).get_stream(READINGS).await.expect("stream");
    let info = stream.info().await.expect("info");
    assert_eq!(info.state.messages, 5, "plant1.line1.x and brasil.sul.v1 were refused by the server");
    let stored = env.store.counters_under(None, 8).await.expect("counters");
    assert!(stored.iter().any(|c| c.prefix == "brasil" && c.ok == 5), "{stored:?}");
    assert!(stored.iter().all(|c| !c.prefix.starts_with("plant1")), "{stored:?}");
    running.shutdown().await;
}
