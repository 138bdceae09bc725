//! Faults survived by real processes: `vigia persist` killed with SIGKILL in
//! the middle of a steady load, then restarted on the same SurrealKV store;
//! `nats-server` killed and restarted under load.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::AckPolicy;
use tokio_util::sync::CancellationToken;
use vigia::app;
use vigia::config::Config;
use vigia_bus::{Bus, READINGS, Topology};
use vigia_sim::SimConfig;
use vigia_store::{Store, StoreConfig};
use vigia_testkit::{NatsCluster, NatsServer, workspace_root};

use crate::child::Vigia;
use crate::common::{TEST_ACK_WAIT, alone, assert_consistent, persister_only, test_config, wait_for};

/// The repository's `nats/` definitions with a 2 s ack wait for the
/// persister, so the killed batch comes back quickly.
fn nats_dir(into: &Path) -> std::path::PathBuf {
    let src = workspace_root().join("nats");
    let dst = into.join("nats");
    for sub in ["streams", "consumers/readings", "consumers/alerts", "consumers/jobs"] {
        std::fs::create_dir_all(dst.join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(src.join(sub)).expect("read nats/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                std::fs::copy(&path, dst.join(sub).join(path.file_name().expect("name"))).expect("copy");
            }
        }
    }
    let persister = dst.join("consumers/readings/persister.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&persister).expect("read")).expect("persister.json");
    json["ack_wait"] = serde_json::json!(2_000_000_000u64);
    std::fs::write(&persister, json.to_string()).expect("write");
    dst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persister_killed_mid_batch_loses_and_doubles_nothing() {
    let _turn = alone().await;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let nats_dir = nats_dir(dir.path());
    let db = dir.path().join("db");
    std::fs::write(
        dir.path().join("vigia.toml"),
        format!(
            "[nats]\nurl = {:?}\nspawn = false\ndir = {:?}\nroots = [\"brasil\"]\n\n\
             [store]\nurl = \"surrealkv://{}\"\n\n[persister]\nbatch_size = 200\nbatch_wait_ms = 20\n",
            nats.url(),
            nats_dir.display().to_string(),
            db.display()
        ),
    )
    .expect("write vigia.toml");
    let bus = Bus::connect(nats.url()).await.expect("connect");
    Topology::load(&nats_dir, &["brasil".to_owned()]).expect("load").apply(bus.jetstream()).await.expect("apply");

    // Steady load: acknowledged publishes until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let load = {
        let (js, stop, acked) = (bus.jetstream().clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!(r#"{{"value": {}}}"#, i % 97);
                let ack = js.publish(format!("brasil.sul.s{:02}", i % 50), payload.into()).await.expect("publish");
                ack.await.expect("the stream acknowledges");
                acked.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };

    let consumer = bus.consumer(READINGS, "persister").await.expect("consumer");
    let persister = Vigia::start(dir.path(), "persist");
    // Kill it while it holds unacknowledged messages, after it has stored some.
    wait_for("the persister to be mid-batch", Duration::from_secs(60), || {
        let mut c = consumer.clone();
        async move {
            let info = c.info().await.expect("info");
            info.ack_floor.stream_sequence >= 300 && info.num_ack_pending > 0
        }
    })
    .await;
    persister.sigkill();
    let at_kill = acked.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let restarted = Vigia::start(dir.path(), "persist");
    wait_for("more load after the restart", Duration::from_secs(30), || {
        let n = acked.load(Ordering::Relaxed);
        async move { n >= at_kill + 500 }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");
    let published = acked.load(Ordering::Relaxed);

    wait_for("the restarted persister to drain READINGS", Duration::from_secs(60), || {
        let mut c = consumer.clone();
        async move {
            let info = c.info().await.expect("info");
            info.num_pending == 0 && info.num_ack_pending == 0
        }
    })
    .await;
    let mut info = consumer.clone();
    let redelivered = info.info().await.expect("info").num_redelivered;
    assert!(restarted.sigterm().success(), "the restarted persister stops cleanly");
    // It waited for the engine to write its memtable out, so a start after it
    // has no write-ahead log to replay.
    let tables = std::fs::read_dir(db.join("sstables")).map_or(0, |d| d.count());
    assert!(tables > 0, "the graceful stop left the memtable to the log: no table in {}", db.display());

    let store = Store::open(&StoreConfig { url: format!("surrealkv://{}", db.display()), ..StoreConfig::memory() })
        .await
        .expect("reopen the persister's SurrealKV store");
    assert_eq!(
        assert_consistent(&store).await,
        published,
        "stored events equal acknowledged publishes ({redelivered} redelivered after the kill)"
    );
}

/// The simulator publishing 4,000 readings at about 1,000/s (each retried
/// with its message id until acknowledged) into a persister in this process,
/// for a fault to strike in the middle.
struct SteadyLoad {
    bus: Bus,
    store: Store,
    stop: CancellationToken,
    persister: tokio::task::JoinHandle<anyhow::Result<()>>,
    publishing: tokio::task::JoinHandle<Result<vigia_sim::SimReport, vigia_sim::SimError>>,
}

const LOAD: u64 = 4000;

impl SteadyLoad {
    /// Applies the topology (retrying while a cluster elects its JetStream
    /// leader), then starts the persister and the simulator, and returns once
    /// 800 readings are in the stream.
    async fn start(config: &Config, seed: u64) -> SteadyLoad {
        SteadyLoad::start_acking(config, seed, AckPolicy::All).await
    }

    /// Like [`SteadyLoad::start`] with the persister's consumer taking `acks`.
    async fn start_acking(config: &Config, seed: u64, acks: AckPolicy) -> SteadyLoad {
        let bus = Bus::connect(&config.nats.url).await.expect("connect");
        let mut topology = app::topology(config).expect("topology");
        // No `alerter` consumer when the alerter rides the persister's (the default with `mem://`).
        let alerter = (!config.alerter_rides_persister()).then_some("alerter");
        for name in ["persister", "alert-projector"].into_iter().chain(alerter) {
            topology.consumer_mut(name).expect("consumer").ack_wait = TEST_ACK_WAIT;
        }
        topology.consumer_mut("persister").expect("consumer").ack_policy = acks;
        let mut applied = topology.apply(bus.jetstream()).await;
        for _ in 0..100 {
            if applied.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            applied = topology.apply(bus.jetstream()).await;
        }
        applied.expect("the topology applies within 20 s");
        let store = Store::open(&StoreConfig::memory()).await.expect("store");
        let stop = CancellationToken::new();
        let persister = {
            let (config, bus, store, stop) = (config.clone(), bus.clone(), store.clone(), stop.clone());
            tokio::spawn(async move { app::run(&config, bus, Some(store), persister_only(), stop).await })
        };
        let sim = SimConfig {
            sensors: 100,
            rate: 10.0,
            count: Some(LOAD),
            max_in_flight: 256,
            seed: Some(seed),
            ..SimConfig::default()
        };
        let publishing = tokio::spawn(vigia_sim::run(bus.publisher(), sim, CancellationToken::new()));
        wait_for("some load before the fault", Duration::from_secs(30), || {
            let js = bus.jetstream().clone();
            async move {
                let Ok(mut s) = js.get_stream(READINGS).await else { return false };
                s.info().await.is_ok_and(|i| i.state.messages >= 800)
            }
        })
        .await;
        SteadyLoad { bus, store, stop, persister, publishing }
    }

    /// Waits for every publish to be acknowledged and the persister to drain
    /// the stream; asserts the stream and the store hold each reading once.
    async fn finish(self) {
        let report = tokio::time::timeout(Duration::from_secs(90), self.publishing)
            .await
            .expect("the simulator finishes after the fault")
            .expect("no panic")
            .expect("every publish is acknowledged in the end");
        assert_eq!(report.readings, LOAD);
        let bus = self.bus.clone();
        wait_for("the persister to drain READINGS after the fault", Duration::from_secs(60), || {
            let bus = bus.clone();
            async move {
                let Ok(mut c) = bus.consumer(READINGS, "persister").await else { return false };
                c.info().await.is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
            }
        })
        .await;
        let mut stream = bus.jetstream().get_stream(READINGS).await.expect("stream");
        assert_eq!(stream.info().await.expect("info").state.messages, LOAD, "retries were deduplicated by message id");
        assert_eq!(assert_consistent(&self.store).await, LOAD, "every acknowledged reading stored once");
        self.stop.cancel();
        self.persister.await.expect("no panic").expect("the persister stops cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_a_nats_restart() {
    let _turn = alone().await;
    let mut nats = NatsServer::start();
    let load = SteadyLoad::start(&test_config(nats.url()), 3).await;
    tokio::task::block_in_place(|| nats.restart());
    load.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_a_nats_restart_acking_each_message() {
    let _turn = alone().await;
    let mut nats = NatsServer::start();
    let load = SteadyLoad::start_acking(&test_config(nats.url()), 4, AckPolicy::Explicit).await;
    tokio::task::block_in_place(|| nats.restart());
    load.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_the_stream_leader_and_nothing_acknowledged() {
    let _turn = alone().await;
    let mut cluster = NatsCluster::start();
    let mut config = test_config(&cluster.url());
    config.nats.replicas = 3;
    let load = SteadyLoad::start(&config, 5).await;
    let mut readings = load.bus.jetstream().get_stream(READINGS).await.expect("stream");
    let info = readings.info().await.expect("info");
    assert_eq!(info.config.num_replicas, 3);
    let leader = info.cluster.clone().and_then(|c| c.leader).expect("the stream has a leader");
    cluster.kill(&leader);
    load.finish().await;
    let info = readings.info().await.expect("info");
    assert_ne!(info.cluster.clone().and_then(|c| c.leader).as_deref(), Some(leader.as_str()), "a new leader took over");
}
