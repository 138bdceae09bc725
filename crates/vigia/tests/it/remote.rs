//! Vigia against a real SurrealDB server (`ws://`), and its parts as
//! separate processes sharing that server and one nats-server.
//!
//! Compiled only with `--features remote-store`: these tests need the
//! `surreal` 3.3 binary (built from crates.io by `tools/surreal`, see
//! docs/operations.md), which a fresh machine does not have; with the
//! feature on and no binary they fail and say how to build it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value as Json;
use vigia::config::Secret;
use vigia_bus::{ALERTS, Bus, READINGS};
use vigia_store::{Store, StoreConfig};
use vigia_testkit::{NatsServer, SURREAL_LINE, SurrealServer, free_port, workspace_root};

use crate::child::Vigia;
use crate::common::{TestEnv, alone, assert_consistent, persister_only, wait_for};

fn server_store(surreal: &SurrealServer, password: &str) -> StoreConfig {
    StoreConfig {
        url: surreal.url(),
        username: Some(SurrealServer::USER.into()),
        password: Some(password.into()),
        ..StoreConfig::memory()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ws_store_url_reaches_a_surrealdb_server_with_the_configured_credentials() {
    let surreal = tokio::task::block_in_place(SurrealServer::start);
    let (url, password) = (surreal.url(), surreal.password().to_owned());
    let env = TestEnv::start_on(NatsServer::start(), |c| {
        c.store.url = url;
        c.store.username = Some(SurrealServer::USER.into());
        c.store.password = Some(Secret::new(password.clone()));
    })
    .await;
    let server_version = env.store.version().await.expect("the server tells its version");
    assert!(
        server_version.starts_with(SURREAL_LINE),
        "the server ({server_version}, `surreal version`: {}) is of the client's release line {SURREAL_LINE}x",
        surreal.version()
    );

    let wrong = Store::open(&server_store(&surreal, "not-the-password")).await;
    assert!(wrong.is_err(), "a wrong root password is refused");
    let anonymous = Store::open(&StoreConfig { username: None, password: None, ..server_store(&surreal, "") }).await;
    assert!(anonymous.is_err(), "without credentials the server refuses to apply the schema");

    let running = env.run(persister_only());
    for i in 0..300u32 {
        env.publish_raw(&format!("brasil.sul.s{:02}", i % 30), format!(r#"{{"value": {}}}"#, i % 70).as_bytes()).await;
    }
    env.drained(READINGS, "persister").await;
    assert_eq!(assert_consistent(&env.store).await, 300);

    // A second client of the same server sees what the persister wrote:
    // the store is shared, which an embedded engine is not.
    let other = Store::open(&server_store(&surreal, &password)).await.expect("a second connection");
    assert_eq!(other.events_of("brasil.sul.s07").await.expect("read").len(), 10);
    assert_eq!(assert_consistent(&other).await, 300);
    running.shutdown().await;
}

/// Every line of a JSON log parsed; panics on one that is not JSON.
fn json_lines(path: &Path) -> Vec<Json> {
    let text = std::fs::read_to_string(path).expect("read log");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not a JSON log line ({e}): {l}", path.display()))
        })
        .collect()
}

/// Events a persister process reports stored, from its `Flush stored.` lines.
fn events_stored(lines: &[Json]) -> u64 {
    lines
        .iter()
        .filter(|l| l["fields"]["message"] == "Flush stored.")
        .map(|l| l["fields"]["events"].as_u64().expect("events is a count"))
        .sum()
}

async fn get_json(client: &reqwest::Client, url: &str) -> Json {
    let response = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    response.json().await.expect("JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_persist_alert_and_sim_run_as_separate_processes_on_shared_nats_and_surrealdb() {
    const READINGS_SENT: u64 = 3000;
    let _turn = alone().await;
    let surreal = tokio::task::block_in_place(SurrealServer::start);
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        dir.path().join("vigia.toml"),
        format!(
            "[nats]\nurl = {:?}\nspawn = false\ndir = {:?}\nroots = [\"brasil\"]\n\n\
             [store]\nurl = {:?}\nusername = \"root\"\n\n[http]\nlisten = {http:?}\n\n\
             [persister]\nbatch_size = 200\nbatch_wait_ms = 20\n\n\
             [log]\nformat = \"json\"\nfilter = \"vigia::workers::persister=debug,info\"\n",
            nats.url(),
            workspace_root().join("nats").display().to_string(),
            surreal.url(),
        ),
    )
    .expect("write vigia.toml");
    // The password only through the environment, as docs/operations.md says.
    let env = [("VIGIA_STORE__PASSWORD", surreal.password())];
    let d = dir.path();
    // All at once, as docker compose starts them: each applies the topology and the schema.
    let persisters =
        [Vigia::spawn(d, "persist-1", &["persist"], &env), Vigia::spawn(d, "persist-2", &["persist"], &env)];
    let alerter = Vigia::spawn(d, "alert", &["alert"], &env);
    let server = Vigia::spawn(d, "serve", &["serve"], &env);

    let client = reqwest::Client::new();
    let base = format!("http://{http}");
    wait_for("vigia serve to answer /health", Duration::from_secs(60), || {
        let (client, url) = (client.clone(), format!("{base}/health"));
        async move { client.get(url).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    wait_for("both persisters to start", Duration::from_secs(60), || {
        let started = (1..=2).all(|i| {
            std::fs::read_to_string(d.join(format!("persist-{i}.log"))).is_ok_and(|l| l.contains("Persister started."))
        });
        async move { started }
    })
    .await;

    // 40 sensors at 25 Hz: 1,000 readings/s for 3 s, so both persisters pull.
    let sim_args = ["sim", "--sensors", "40", "--rate", "25", "--regions", "norte,sul", "--count", "3000"];
    let sim = Vigia::spawn(d, "sim", &sim_args, &env);
    let status = tokio::task::block_in_place(|| sim.wait(Duration::from_secs(90)));
    let said = std::fs::read_to_string(d.join("sim.out")).expect("sim output");
    assert!(status.success(), "vigia sim failed ({status}): {said}");
    assert!(said.contains(&format!("published {READINGS_SENT} readings")), "{said}");

    let bus = Bus::connect(nats.url()).await.expect("connect");
    for (stream, consumer) in [(READINGS, "persister"), (READINGS, "alerter"), (ALERTS, "alert-projector")] {
        wait_for(&format!("{consumer} to drain {stream}"), Duration::from_secs(60), || {
            let bus = bus.clone();
            async move {
                let Ok(mut c) = bus.consumer(stream, consumer).await else { return false };
                c.info().await.is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
            }
        })
        .await;
    }
    let mut readings = bus.jetstream().get_stream(READINGS).await.expect("READINGS");
    assert_eq!(readings.info().await.expect("info").state.messages, READINGS_SENT);
    let mut alerts = bus.jetstream().get_stream(ALERTS).await.expect("ALERTS");
    let alert_events = alerts.info().await.expect("info").state.messages;
    assert!(alert_events > 0, "the alerter process judged readings over 50 and published alert events");

    // What `vigia serve` reads is what the other processes wrote.
    let counts = get_json(&client, &format!("{base}/api/v1/counts?depth=0")).await;
    assert_eq!(counts["total"], READINGS_SENT, "{counts}");
    let open = get_json(&client, &format!("{base}/api/v1/alerts")).await;
    assert!(open.as_array().is_some_and(|a| !a.is_empty()), "the alert projector stored alerts: {open}");
    let store = Store::open(&server_store(&surreal, surreal.password())).await.expect("the shared store");
    assert_eq!(assert_consistent(&store).await, READINGS_SENT);

    // Both processes shared the durable consumer, and between them stored each event once.
    let logs: Vec<Vec<Json>> = (1..=2).map(|i| json_lines(&d.join(format!("persist-{i}.log")))).collect();
    let each: Vec<u64> = logs.iter().map(|l| events_stored(l)).collect();
    assert!(each.iter().all(|&n| n > 0), "both persisters stored batches: {each:?}");
    assert_eq!(each.iter().sum::<u64>(), READINGS_SENT, "each event stored by exactly one persister: {each:?}");
    for name in ["alert", "serve", "sim"] {
        json_lines(&d.join(format!("{name}.log")));
    }

    for (name, part) in [("serve", server), ("alert", alerter)].into_iter().chain(persisters.map(|p| ("persist", p))) {
        let status = tokio::task::block_in_place(|| part.sigterm());
        assert!(status.success(), "vigia {name} stops cleanly on SIGTERM ({status})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surrealdb_server_killed_and_restarted_under_load_loses_and_doubles_nothing() {
    const LOAD: u64 = 1500;
    let mut surreal = tokio::task::block_in_place(SurrealServer::start_persistent);
    let (url, password) = (surreal.url(), surreal.password().to_owned());
    let env = TestEnv::start_alone_with(|c| {
        c.store.url = url;
        c.store.username = Some(SurrealServer::USER.into());
        c.store.password = Some(Secret::new(password.clone()));
    })
    .await;
    let running = env.run(persister_only());
    // Acknowledged publishes at a steady pace; the stream takes them
    // whatever the store is doing.
    let publishing = {
        let js = env.bus.jetstream().clone();
        tokio::spawn(async move {
            for i in 0..LOAD {
                let payload = format!(r#"{{"value": {}}}"#, i % 90);
                js.publish(format!("brasil.norte.s{:02}", i % 40), payload.into())
                    .await
                    .expect("publish")
                    .await
                    .expect("the stream acknowledges");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let store = env.store.clone();
    wait_for("some readings stored before the crash", Duration::from_secs(60), || {
        let s = store.clone();
        async move { s.ledger(vigia_store::READINGS_LEDGER).await.is_ok_and(|l| l.count() >= 300) }
    })
    .await;
    // Down for 2 s while readings keep arriving: writes fail and are retried.
    tokio::task::block_in_place(|| surreal.restart(Duration::from_secs(2)));
    publishing.await.expect("every publish acknowledged");
    wait_for("the persister to drain READINGS after the restart", Duration::from_secs(90), || {
        let bus = env.bus.clone();
        async move {
            let Ok(mut c) = bus.consumer(READINGS, "persister").await else { return false };
            c.info().await.is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
        }
    })
    .await;
    // The persister's connection came back by itself; a fresh one agrees.
    assert_eq!(assert_consistent(&env.store).await, LOAD, "every acknowledged reading stored once");
    let fresh = Store::open(&server_store(&surreal, &password)).await.expect("reconnect");
    assert_eq!(assert_consistent(&fresh).await, LOAD);
    running.shutdown().await;
}
