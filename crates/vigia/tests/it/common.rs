//! Shared test harness: a real nats-server per test, an embedded SurrealDB
//! (`mem://`) per test, and the real workers from the library.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::PullConsumer;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use tokio_util::sync::CancellationToken;
use vigia::app::{self, Parts};
use vigia::config::Config;
use vigia_bus::{Bus, READINGS, Topology};
use vigia_store::Store;
use vigia_testkit::{NatsServer, workspace_root};

/// Tests that load the whole machine (a browser, child processes, a cluster,
/// thousands of connections) take their turn alone; the others share it. On
/// a 2-core machine a light test next to a heavy one can be starved for many
/// seconds, and its bounded waits would then fail for reasons that are not bugs.
static TURNS: LazyLock<Arc<RwLock<()>>> = LazyLock::new(|| Arc::new(RwLock::new(())));

/// A test's turn; held until dropped.
pub(crate) enum Turn {
    Shared(#[allow(dead_code)] OwnedRwLockReadGuard<()>),
    Alone(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
}

/// A turn alongside other light tests.
pub(crate) async fn shared_turn() -> Turn {
    Turn::Shared(TURNS.clone().read_owned().await)
}

/// A turn with no other test running, for heavy tests.
pub(crate) async fn alone() -> Turn {
    Turn::Alone(TURNS.clone().write_owned().await)
}

pub(crate) struct TestEnv {
    /// Dropped last: the test's turn (see [`alone`]).
    _turn: Turn,
    /// Kept alive for the test; dropping it kills the server.
    _nats: NatsServer,
    pub bus: Bus,
    pub store: Store,
    pub config: Config,
}

/// Consumers redeliver after this long in tests, so crash cases finish quickly.
pub(crate) const TEST_ACK_WAIT: Duration = Duration::from_secs(2);

pub(crate) fn test_config(url: &str) -> Config {
    let mut config = Config::default();
    config.nats.url = url.to_owned();
    config.nats.spawn = false;
    config.nats.dir = workspace_root().join("nats");
    config.nats.roots = vec!["brasil".into(), "plant1".into(), "meters".into()];
    config.store.url = "mem://".into();
    config.persister.batch_size = 500;
    config.persister.batch_wait_ms = 20;
    // Tests stamp readings years back; only the retention tests retire anything.
    config.retention = vigia::config::RetentionConfig {
        events_days: 0,
        minute_days: 0,
        hour_days: 0,
        day_days: 0,
        max_store_mb: 0.0,
        ..Default::default()
    };
    config
}

impl TestEnv {
    /// A fresh nats-server with the topology applied (short ack waits) and an empty store.
    pub(crate) async fn start() -> TestEnv {
        TestEnv::start_on(NatsServer::start(), |_| {}).await
    }

    /// Like [`TestEnv::start`], for a heavy test that runs with no other test.
    pub(crate) async fn start_alone() -> TestEnv {
        let turn = alone().await;
        TestEnv::start_in(turn, NatsServer::start(), |_| {}).await
    }

    /// Like [`TestEnv::start_alone`], with the settings `configure` sets
    /// (a store elsewhere than `mem://`, say).
    #[cfg(feature = "remote-store")]
    pub(crate) async fn start_alone_with(configure: impl FnOnce(&mut Config)) -> TestEnv {
        let turn = alone().await;
        TestEnv::start_in(turn, NatsServer::start(), configure).await
    }

    /// Like [`TestEnv::start`] on a given server, with the NATS settings
    /// (user, TLS) that `configure` sets.
    pub(crate) async fn start_on(nats: NatsServer, configure: impl FnOnce(&mut Config)) -> TestEnv {
        TestEnv::start_in(shared_turn().await, nats, configure).await
    }

    async fn start_in(turn: Turn, nats: NatsServer, configure: impl FnOnce(&mut Config)) -> TestEnv {
        let mut config = test_config(nats.url());
        configure(&mut config);
        let bus = Bus::connect_as(&config.nats.url, &config.nats.access()).await.expect("connect to test nats-server");
        let mut topology = Topology::load(&config.nats.dir, &config.nats.roots).expect("nats/ definitions load");
        for name in ["persister", "alerter", "alert-projector", "loader"] {
            topology.consumer_mut(name).expect("consumer defined").ack_wait = TEST_ACK_WAIT;
        }
        topology.apply(bus.jetstream()).await.expect("topology applies");
        // `mem://` unless `configure` pointed the store elsewhere (a SurrealDB server).
        let store = Store::open(&config.store_config()).await.expect("the store opens");
        TestEnv { _turn: turn, _nats: nats, bus, store, config }
    }

    /// Runs the persister, the alerter and the HTTP API; returns them and the API's base URL.
    pub(crate) async fn serve(&self) -> (Running, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let running = self.run(Parts { persister: true, alerter: true, loader: true, sim: None, http: Some(listener) });
        (running, base)
    }

    /// Kills the test's nats-server and leaves it down.
    pub(crate) fn kill_nats(&mut self) {
        self._nats.kill();
    }

    /// Runs `parts` in the background until the returned token is cancelled.
    pub(crate) fn run(&self, parts: Parts) -> Running {
        let stop = CancellationToken::new();
        let (config, bus, store, token) = (self.config.clone(), self.bus.clone(), self.store.clone(), stop.clone());
        let handle = tokio::spawn(async move { app::run(&config, bus, Some(store), parts, token).await });
        Running { stop, handle: Some(handle) }
    }

    pub(crate) async fn consumer(&self, stream: &str, name: &str) -> PullConsumer {
        self.bus.consumer(stream, name).await.expect("consumer exists")
    }

    /// Publishes a raw payload like a device would, waiting for the stream's ack.
    pub(crate) async fn publish_raw(&self, subject: &str, payload: &[u8]) -> u64 {
        self.bus
            .jetstream()
            .publish(subject.to_owned(), payload.to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("stream acks")
            .sequence
    }

    pub(crate) async fn stream_messages(&self, stream: &str) -> u64 {
        let mut s = self.bus.jetstream().get_stream(stream).await.expect("stream");
        s.info().await.expect("stream info").state.messages
    }

    /// Waits until the alerter of a process that runs the persister too has
    /// judged and acknowledged every reading, on whichever consumer it
    /// pulls (`[alerts] consumer`: with the default and a `mem://` store,
    /// the persister's).
    pub(crate) async fn judged(&self) {
        self.drained(READINGS, self.alerter_consumer()).await;
    }

    /// The `READINGS` consumer whose deliveries the alerter judges when the
    /// persister runs in its process.
    pub(crate) fn alerter_consumer(&self) -> &'static str {
        if self.config.alerter_rides_persister() { "persister" } else { "alerter" }
    }

    /// Waits until the consumer has nothing pending or unacknowledged.
    pub(crate) async fn drained(&self, stream: &str, name: &str) {
        let consumer = self.consumer(stream, name).await;
        wait_for(&format!("{name} to drain {stream}"), Duration::from_secs(30), || {
            let mut c = consumer.clone();
            async move {
                let info = c.info().await.expect("consumer info");
                info.num_pending == 0 && info.num_ack_pending == 0
            }
        })
        .await;
    }
}

/// Parts running in the background.
pub(crate) struct Running {
    pub stop: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    pub(crate) async fn shutdown(mut self) {
        self.stop.cancel();
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("parts stop within 30 s")
            .expect("no panic")
            .expect("parts stop cleanly");
    }
}

impl Running {
    /// Waits for the parts to return, however they end (a cancelled token
    /// stops them; see [`Running::shutdown`] for a stop that must be clean).
    pub(crate) async fn join(mut self) {
        let _ = self.handle.take().expect("running").await;
    }

    /// Kills the parts mid-flight, as a crash would: no batch is finished,
    /// acked or given back; whatever was in hand comes back after the ack wait.
    pub(crate) async fn kill(mut self) {
        let handle = self.handle.take().expect("running");
        handle.abort();
        let _ = handle.await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Polls `check` until it holds, failing the test after `limit`.
pub(crate) async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the projections equal a scan of the stored events; returns the event count.
pub(crate) async fn assert_consistent(store: &Store) -> u64 {
    let report = vigia::check::verify(store).await.expect("verify runs");
    assert!(report.mismatches.is_empty(), "projections disagree with a scan: {:#?}", report.mismatches);
    report.events
}

pub(crate) fn persister_only() -> Parts {
    Parts { persister: true, ..Parts::default() }
}
