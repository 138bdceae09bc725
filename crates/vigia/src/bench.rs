//! `vigia bench`: the end-to-end harness. Numbers come from here and from the
//! criterion benches, never from `cargo test`.
//!
//! Everything runs on a private `nats-server -js` (free loopback port,
//! temporary store) and temporary SurrealKV stores, so a run neither sees nor
//! disturbs a live system. In one run it measures:
//!
//! 1. the JetStream ceiling: acknowledged publishes per second of raw
//!    async-nats, 4,096 in flight, to a stream of its own; the median of
//!    [`CEILING_RUNS`] runs before the pipeline and as many right after it,
//!    since one run moved by half between runs on one machine (109,000 to
//!    200,000 msg/s within an hour) and the per-message ratio inherits that;
//! 2. the SurrealDB ceiling: bare rows per second inserted 1,000 per
//!    statement, with nothing projected;
//! 3. the pipeline: the simulator (on a NATS connection of its own, as devices
//!    have) publishing `events` readings as fast as they
//!    are acknowledged while the persister and the alerter run, as `vigia up`
//!    runs them, timed from the first publish until the ledger holds every
//!    message (stored and counted, durably), and until the alerter has judged
//!    and acknowledged every message too. The alerter is a second delivery of
//!    every message and its acks, so leaving it out (`alerter: false`)
//!    measures a lighter system than the one users run.
//!    Its publishes are the ceiling's kind, as `nats pub` and MQTT devices
//!    send them: no `Nats-Msg-Id`. With `message_ids` they carry one and are
//!    resent until confirmed, as `vigia sim` does; the stream's duplicate
//!    tracking then costs nats-server more than the ceiling pays, so the
//!    ratio would charge it to the pipeline;
//! 4. publish-to-queryable latency: at a fixed rate, a probe reading every
//!    50 ms, timed from its publish until its commit is visible;
//! 5. the process's peak resident memory;
//! 6. with `backlog` set, memory under a backlog: the persister stops, that
//!    many readings are published (one per message) and pile up in the
//!    stream, then a persister starts and drains them while the resident set
//!    is sampled; the peak and the drain rate are reported.
//!
//! It prints each figure and the pipeline's ratio to both ceilings, and the
//! CPU this process and nats-server took during the ceiling and the pipeline
//! (from `/proc`, Linux only): what each message costs, and whether a rate
//! was bound by the cores or by one process.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use vigia_bus::{ALERTS, Bus, READINGS};
use vigia_sim::SimConfig;
use vigia_store::{EngineMemory, READINGS_LEDGER, Store, StoreConfig};

use crate::app::{self, Parts};
use crate::config::Config;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Simulated sensors.
    pub sensors: usize,
    /// Readings published in the throughput phase.
    pub events: u64,
    /// Readings per message: 1 is the device path, more is batched ingest.
    pub batch: usize,
    /// Total readings per second in the latency phase.
    pub latency_rate: f64,
    /// Length of the latency phase.
    pub latency_time: Duration,
    /// Readings queued with the persister stopped, then drained; 0 skips it.
    pub backlog: u64,
    /// The throughput phase publishes with message ids and resends (as
    /// `vigia sim` does) instead of as devices do.
    pub message_ids: bool,
    /// Run the alerter beside the persister, as `vigia up` does.
    pub alerter: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            sensors: 2000,
            events: 200_000,
            batch: 1,
            latency_rate: 2000.0,
            latency_time: Duration::from_secs(20),
            backlog: 0,
            message_ids: false,
            alerter: true,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub options: BenchOptions,
    /// Acknowledged raw publishes per second: the median of `jetstream_ceilings`.
    pub jetstream_ceiling: f64,
    /// Each run of the JetStream ceiling, in the order measured.
    pub jetstream_ceilings: Vec<f64>,
    /// Bare rows per second.
    pub surreal_ceiling: f64,
    pub messages: u64,
    /// Readings per second the simulator got acknowledged.
    pub publish_rate: f64,
    /// Readings per second from first publish to stored and counted.
    pub pipeline_rate: f64,
    /// Readings per second from first publish until the alerter had judged
    /// and acknowledged every message (`None` without the alerter).
    pub judged_rate: Option<f64>,
    /// Whether the alerter judged the persister's pulls rather than its own
    /// consumer's (`[alerts] consumer`).
    pub alerter_rides: bool,
    /// The persister's flushes from the first publish until stored and
    /// counted.
    pub flushes: vigia_api::PersisterTotals,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
    pub latency_samples: usize,
    pub peak_rss_mib: f64,
    pub backlog: Option<BacklogReport>,
    /// The alert projector's share of the run (`None` without the alerter).
    pub alerts: Option<AlertsStored>,
    /// CPU of this process and of nats-server during the first ceiling runs.
    pub ceiling_cpu: CpuUse,
    /// CPU of both from the first publish until stored and counted.
    pub pipeline_cpu: CpuUse,
}

/// The alert events the pipeline raised and how long after the readings
/// were stored and counted the alert projector had stored them all: how far
/// alerts lag behind in a storm.
#[derive(Debug, Clone, Copy)]
pub struct AlertsStored {
    /// Messages on `ALERTS`: the run's alert events (the harness publishes
    /// no rules sets, acknowledgements or descriptions).
    pub messages: u64,
    pub after: Duration,
}

/// CPU time two processes took over a stretch of wall time, and the
/// messages it carried: what bounds a rate. The ceiling has left cores idle
/// (nats-server's one stream is served by about one core), while the
/// pipeline shares both cores between nats-server and this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub own: Duration,
    pub nats: Duration,
    pub wall: Duration,
    pub messages: u64,
}

impl CpuUse {
    fn line(&self, f: &mut std::fmt::Formatter<'_>, what: &str) -> std::fmt::Result {
        let wall = self.wall.as_secs_f64().max(1e-9);
        let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / self.messages.max(1) as f64;
        writeln!(
            f,
            "  CPU, {what:<34} this process {:.2} cores ({:.1} µs a message), nats-server {:.2} cores ({:.1} µs)",
            self.own.as_secs_f64() / wall,
            per(self.own),
            self.nats.as_secs_f64() / wall,
            per(self.nats)
        )
    }
}

/// Reads the CPU time of this process and of the bench's nats-server.
struct CpuClock {
    /// nats-server's `/proc` entry, when it is still running.
    nats: Option<String>,
    started: (Instant, Duration, Duration),
}

impl CpuClock {
    fn start(nats_pid: Option<u32>) -> CpuClock {
        let nats = nats_pid.map(|pid| pid.to_string());
        let nats_time = nats.as_deref().map_or(Duration::ZERO, cpu_time);
        CpuClock { nats, started: (Instant::now(), cpu_time("self"), nats_time) }
    }

    fn stop(&self, messages: u64) -> CpuUse {
        let (at, own, nats) = self.started;
        CpuUse {
            own: cpu_time("self").saturating_sub(own),
            nats: self.nats.as_deref().map_or(Duration::ZERO, cpu_time).saturating_sub(nats),
            wall: at.elapsed(),
            messages,
        }
    }
}

/// User and system time of `/proc/<pid>`, zero where unknown (not Linux).
/// `/proc` counts in USER_HZ ticks, which Linux fixes at 100 a second.
fn cpu_time(pid: &str) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|stat| {
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    });
    Duration::from_millis(ticks.unwrap_or(0) * 10)
}

/// The backlog phase: memory while a queue of messages drains.
#[derive(Debug, Clone)]
pub struct BacklogReport {
    pub messages: u64,
    /// Resident set when the persister started on the full backlog.
    pub rss_before_mib: f64,
    /// Highest resident set until the last message was stored and counted.
    pub peak_rss_mib: f64,
    /// Messages per second stored and counted while draining.
    pub drain_rate: f64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.options;
        let shape = if o.batch > 1 { format!("{} readings per message", o.batch) } else { "one per message".into() };
        let ids = if o.message_ids {
            "with message ids and resends"
        } else {
            "no message ids, as devices and the ceiling publish"
        };
        let parts = match (o.alerter, self.alerter_rides) {
            (false, _) => "persister only, no alerter",
            (true, false) => "persister and alerter, each with its consumer",
            (true, true) => "persister and alerter, on the persister's consumer",
        };
        writeln!(f, "vigia bench: {} sensors, {} readings ({shape}; {ids}; {parts})", o.sensors, o.events)?;
        let runs: Vec<String> = self.jetstream_ceilings.iter().map(|r| format!("{r:.0}")).collect();
        let (before, after) = runs.split_at(runs.len().min(CEILING_RUNS));
        writeln!(
            f,
            "  ceiling, raw JetStream acked publish   {:>12.0} msg/s (median of {} before the pipeline; {} after)",
            self.jetstream_ceiling,
            before.join(", "),
            after.join(", ")
        )?;
        writeln!(f, "  ceiling, SurrealDB bare rows (1,000)   {:>12.0} rows/s", self.surreal_ceiling)?;
        writeln!(f, "  published and acknowledged             {:>12.0} readings/s", self.publish_rate)?;
        writeln!(f, "  publish to stored and counted          {:>12.0} readings/s", self.pipeline_rate)?;
        if let Some(judged) = self.judged_rate {
            writeln!(f, "  publish to judged by the alerter       {:>12.0} readings/s", judged)?;
        }
        if let Some(a) = self.alerts {
            writeln!(
                f,
                "    alert events, all stored             {:>12} messages, {:.2} s after the readings",
                a.messages,
                a.after.as_secs_f64()
            )?;
        }
        let flushes = self.flushes;
        let n = flushes.flushes.max(1);
        writeln!(
            f,
            "    persister flushes (transactions)     {:>12} ({:.0} events and {:.1} ms in the store each)",
            flushes.flushes,
            flushes.events as f64 / n as f64,
            flushes.store_time.as_secs_f64() * 1e3 / n as f64
        )?;
        let per_message = self.pipeline_rate * self.messages as f64 / self.options.events.max(1) as f64;
        writeln!(
            f,
            "    ratio to the JetStream ceiling       {:>12.2} (messages/s)",
            per_message / self.jetstream_ceiling
        )?;
        writeln!(
            f,
            "    ratio to the SurrealDB ceiling       {:>12.2} (readings/s)",
            self.pipeline_rate / self.surreal_ceiling
        )?;
        writeln!(
            f,
            "  publish to queryable at {:.0}/s          p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} probes)",
            o.latency_rate,
            self.latency_p50.as_secs_f64() * 1e3,
            self.latency_p99.as_secs_f64() * 1e3,
            self.latency_max.as_secs_f64() * 1e3,
            self.latency_samples
        )?;
        self.ceiling_cpu.line(f, "JetStream ceiling (before)")?;
        self.pipeline_cpu.line(f, "publish to stored and counted")?;
        write!(f, "  peak RSS of this process               {:>12.0} MiB", self.peak_rss_mib)?;
        if let Some(b) = &self.backlog {
            write!(
                f,
                "\n  backlog of {} messages drained         {:>12.0} msg/s\n    RSS when draining began {:.0} MiB, peak while draining {:.0} MiB",
                b.messages, b.drain_rate, b.rss_before_mib, b.peak_rss_mib
            )?;
        }
        Ok(())
    }
}

/// Runs the harness with `config`'s persister settings and roots.
pub async fn run(config: &Config, options: BenchOptions) -> anyhow::Result<BenchReport> {
    let dir = tempfile::tempdir().context("failed to make a temporary directory")?;
    let (bus, url, nats) = private_nats(dir.path()).await?;
    // The simulated devices are clients of their own, as real devices are:
    // sharing the persister's connection would serialise both on one socket.
    let devices = Bus::connect(&url).await.context("the simulated devices could not connect")?;
    let mut config = config.clone();
    config.nats.replicas = 1;
    // The run's store, embedded whatever the configured one is: `"auto"`
    // in `[alerts] consumer` resolves by it.
    config.store.url = store_url(dir.path(), "db");
    app::ensure_topology(&config, &bus).await?;

    eprintln!("bench: JetStream ceiling, {CEILING_RUNS} runs ...");
    let mut jetstream_ceilings = Vec::with_capacity(2 * CEILING_RUNS);
    let clock = CpuClock::start(nats.id());
    for _ in 0..CEILING_RUNS {
        jetstream_ceilings.push(jetstream_ceiling(&bus, options.events.min(200_000)).await?);
    }
    let ceiling_cpu = clock.stop(CEILING_RUNS as u64 * options.events.min(200_000));
    eprintln!("bench: SurrealDB ceiling ...");
    let memory = config.store_config().memory;
    let surreal_ceiling = surreal_ceiling(dir.path(), memory, options.events.min(200_000)).await?;

    let store = open(dir.path(), "db", memory).await?;
    let persister = Persister::start(&config, &bus, &store, options.alerter);

    eprintln!("bench: pipeline, {} readings ...", options.events);
    let sim = SimConfig {
        sensors: options.sensors,
        rate: 0.0,
        roots: config.nats.roots.clone(),
        count: Some(options.events),
        batch: options.batch,
        max_in_flight: 4096,
        error_ratio: 0.0,
        seed: Some(1),
        message_ids: options.message_ids,
        ..SimConfig::default()
    };
    let (started, stored_before) = (Instant::now(), vigia_api::PERSISTER.totals());
    let clock = CpuClock::start(nats.id());
    let published = vigia_sim::run(devices.publisher(), sim, CancellationToken::new()).await?;
    let publish_rate = published.readings as f64 / published.elapsed.as_secs_f64();
    wait_for_ledger(&store, published.messages).await?;
    let stored_at = Instant::now();
    let pipeline_cpu = clock.stop(published.messages);
    let pipeline_rate = published.readings as f64 / started.elapsed().as_secs_f64();
    let flushes = counted_flushes(stored_before, published.readings).await;
    let judged_rate = match (options.alerter, config.alerter_rides_persister()) {
        (false, _) => None,
        // Judged before stored: the ledger holding a message means it was judged.
        (true, true) => Some(pipeline_rate),
        (true, false) => {
            wait_until_read(&bus, READINGS, "alerter").await?;
            Some(published.readings as f64 / started.elapsed().as_secs_f64())
        }
    };
    // The second ceiling is the machine's, not what is left of the pipeline:
    // the alert projector stores the run's tens of thousands of alert events
    // for seconds after the last reading, and measured beside it the
    // ceiling came out up to half lower (docs/performance.md).
    let alerts = if options.alerter {
        wait_until_read(&bus, ALERTS, "alert-projector").await?;
        let after = stored_at.elapsed();
        let mut stream = bus.jetstream().get_stream(ALERTS).await.context("no ALERTS stream")?;
        Some(AlertsStored { messages: stream.info().await?.state.messages, after })
    } else {
        None
    };

    eprintln!("bench: JetStream ceiling again, {CEILING_RUNS} runs ...");
    for _ in 0..CEILING_RUNS {
        jetstream_ceilings.push(jetstream_ceiling(&bus, options.events.min(200_000)).await?);
    }

    eprintln!("bench: latency at {} readings/s for {:?} ...", options.latency_rate, options.latency_time);
    let sim = SimConfig {
        sensors: options.sensors,
        rate: options.latency_rate / options.sensors.max(1) as f64,
        roots: config.nats.roots.clone(),
        duration: Some(options.latency_time),
        batch: 1,
        error_ratio: 0.0,
        seed: Some(2),
        ..SimConfig::default()
    };
    let load = tokio::spawn(vigia_sim::run(devices.publisher(), sim, CancellationToken::new()));
    let probe_tag = format!("{}.bench.probe", config.nats.roots[0]);
    let mut latencies = probe(&bus, &store, &probe_tag, options.latency_time).await?;
    load.await.context("latency load task")??;
    persister.stop().await?;
    let peak_rss_mib = peak_rss_kib() as f64 / 1024.0;

    let backlog = if options.backlog > 0 {
        let stored = store.ledger(READINGS_LEDGER).await?.count();
        let drain = Drain { config: &config, bus: &bus, store: &store, alerter: options.alerter };
        Some(backlog(drain, &devices, options.sensors, options.backlog, stored).await?)
    } else {
        None
    };

    // Let SurrealKV write its memtable out and close before the temporary
    // directory goes.
    drop(store);
    anyhow::ensure!(
        vigia_store::wait_closed(&store_url(dir.path(), "db"), Duration::from_secs(120)).await,
        "the bench store did not close within 120 s"
    );

    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(BenchReport {
        options,
        jetstream_ceiling: median(&jetstream_ceilings),
        jetstream_ceilings,
        surreal_ceiling,
        messages: published.messages,
        publish_rate,
        pipeline_rate,
        judged_rate,
        alerter_rides: config.alerter_rides_persister(),
        flushes,
        latency_p50: pick(0.5),
        latency_p99: pick(0.99),
        latency_max: *latencies.last().expect("probes were taken"),
        latency_samples: latencies.len(),
        peak_rss_mib,
        backlog,
        alerts,
        ceiling_cpu,
        pipeline_cpu,
    })
}

/// A persister (and alert projector, and with `alerter` the alerter) running in this process.
struct Persister {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: CancellationToken,
}

impl Persister {
    fn start(config: &Config, bus: &Bus, store: &Store, alerter: bool) -> Persister {
        let stop = CancellationToken::new();
        let (config, bus, store, token) = (config.clone(), bus.clone(), store.clone(), stop.clone());
        let parts = Parts { persister: true, alerter, ..Parts::default() };
        let task = tokio::spawn(async move { app::run(&config, bus, Some(store), parts, token).await });
        Persister { task, stop }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await.context("persister task")?
    }
}

/// Publishes `readings` one per message with no persister running, then
/// starts one and samples the resident set every 50 ms until the ledger
/// holds `stored + readings` messages.
/// What drains the backlog.
struct Drain<'a> {
    config: &'a Config,
    bus: &'a Bus,
    store: &'a Store,
    alerter: bool,
}

async fn backlog(
    drain: Drain<'_>,
    devices: &Bus,
    sensors: usize,
    readings: u64,
    stored: u64,
) -> anyhow::Result<BacklogReport> {
    let Drain { config, bus, store, alerter } = drain;
    eprintln!("bench: backlog, publishing {readings} readings with no persister ...");
    let sim = SimConfig {
        sensors,
        rate: 0.0,
        roots: config.nats.roots.clone(),
        count: Some(readings),
        batch: 1,
        max_in_flight: 4096,
        error_ratio: 0.0,
        seed: Some(3),
        ..SimConfig::default()
    };
    let published = vigia_sim::run(devices.publisher(), sim, CancellationToken::new()).await?;
    let target = stored + published.messages;
    // From here the peak counts only what draining adds (`VmHWM` restarts at
    // the current resident set); the sampling below covers kernels without it.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = rss_kib("VmRSS:");
    eprintln!("bench: backlog, draining {} messages ...", published.messages);
    let started = Instant::now();
    let persister = Persister::start(config, bus, store, alerter);
    let mut peak = rss_before;
    let deadline = started + Duration::from_secs(3600);
    while store.ledger(READINGS_LEDGER).await?.count() < target {
        anyhow::ensure!(Instant::now() < deadline, "the backlog was not drained within an hour");
        peak = peak.max(rss_kib("VmRSS:"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_rate = published.messages as f64 / started.elapsed().as_secs_f64();
    peak = peak.max(rss_kib("VmRSS:")).max(peak_rss_kib());
    persister.stop().await?;
    Ok(BacklogReport {
        messages: published.messages,
        rss_before_mib: rss_before as f64 / 1024.0,
        peak_rss_mib: peak as f64 / 1024.0,
        drain_rate,
    })
}

/// A `nats-server -js` of our own on a free loopback port, killed on drop.
async fn private_nats(dir: &std::path::Path) -> anyhow::Result<(Bus, String, tokio::process::Child)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("nats"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("failed to start nats-server; install it with `apt-get install -y nats-server`")?;
    let url = format!("nats://127.0.0.1:{port}");
    for _ in 0..100 {
        if let Ok(bus) = Bus::connect(&url).await {
            return Ok((bus, url, child));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the bench's nats-server did not answer at {url} within 10 s")
}

/// The URL of the SurrealKV store `name` in `dir`.
fn store_url(dir: &std::path::Path, name: &str) -> String {
    format!("surrealkv://{}", dir.join(name).display())
}

/// A SurrealKV store in `dir` with the configured memory bounds (`[store]`).
async fn open(dir: &std::path::Path, name: &str, memory: EngineMemory) -> anyhow::Result<Store> {
    let url = store_url(dir, name);
    Store::open(&StoreConfig { url, memory, ..StoreConfig::memory() }).await.context("failed to open a bench store")
}

/// Runs of the JetStream ceiling before the pipeline, and again after it.
pub const CEILING_RUNS: usize = 3;

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Raw async-nats acknowledged publishes per second, 4,096 in flight.
async fn jetstream_ceiling(bus: &Bus, messages: u64) -> anyhow::Result<f64> {
    let js = bus.jetstream();
    let config = async_nats::jetstream::stream::Config {
        name: "BENCH_CEILING".into(),
        subjects: vec!["ceiling.>".into()],
        ..Default::default()
    };
    js.create_stream(config).await.context("failed to create the ceiling stream")?;
    let payload = Bytes::from_static(br#"{"value": 21.5, "unit": "C"}"#);
    let started = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    for i in 0..messages {
        if in_flight.len() >= 4096 {
            let ack: async_nats::jetstream::context::PublishAckFuture = in_flight.pop_front().expect("in flight");
            ack.await.context("ceiling publish not acknowledged")?;
        }
        let subject = format!("ceiling.s{}", i % 2000);
        in_flight.push_back(js.publish(subject, payload.clone()).await.context("ceiling publish")?);
    }
    for ack in in_flight {
        ack.await.context("ceiling publish not acknowledged")?;
    }
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    js.delete_stream("BENCH_CEILING").await.context("failed to delete the ceiling stream")?;
    Ok(rate)
}

/// Bare rows per second into a store of its own, 1,000 per statement.
async fn surreal_ceiling(dir: &std::path::Path, memory: EngineMemory, rows: u64) -> anyhow::Result<f64> {
    let store = open(dir, "bare", memory).await?;
    let started = Instant::now();
    for first in (0..rows).step_by(1000) {
        store.insert_bare_rows(first, 1000.min(rows - first)).await?;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// The persister's flushes since `before`, once they hold `events`: it
/// counts a flush just after the commit, which the ledger shows first, and
/// a run of one or two flushes was once reported as none. What it has
/// counted after a second otherwise.
async fn counted_flushes(before: vigia_api::PersisterTotals, events: u64) -> vigia_api::PersisterTotals {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let since = vigia_api::PERSISTER.totals().since(before);
        if since.events >= events || Instant::now() >= deadline {
            return since;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_for_ledger(store: &Store, messages: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while store.ledger(READINGS_LEDGER).await?.count() < messages {
        anyhow::ensure!(Instant::now() < deadline, "the persister did not store {messages} messages within 10 minutes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Waits until `consumer` has acknowledged every message of `stream`.
async fn wait_until_read(bus: &Bus, stream: &str, consumer: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while bus.lag(stream, consumer).await?.messages() > 0 {
        anyhow::ensure!(Instant::now() < deadline, "{consumer} did not read all of {stream} within 10 minutes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Publishes a probe every 50 ms for `time`; each one's time from publish
/// until the ledger (committed with its event and counters) holds it.
async fn probe(bus: &Bus, store: &Store, tag: &str, time: Duration) -> anyhow::Result<Vec<Duration>> {
    let publisher = bus.publisher();
    let mut pending: Vec<(u64, Instant)> = Vec::new();
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut next_probe = started;
    while started.elapsed() < time || !pending.is_empty() {
        anyhow::ensure!(started.elapsed() < time + Duration::from_secs(120), "probes were not stored within 2 minutes");
        if started.elapsed() < time && Instant::now() >= next_probe {
            next_probe += Duration::from_millis(50);
            let sent = Instant::now();
            let payload = Bytes::from_static(br#"{"value": 1}"#);
            let stored = publisher.publish(tag.to_owned(), None, payload, None).await?;
            pending.push((stored.seq, sent));
        }
        let ledger = store.ledger(READINGS_LEDGER).await?;
        pending.retain(|(seq, sent)| {
            let done = ledger.contains(*seq);
            if done {
                latencies.push(sent.elapsed());
            }
            !done
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(latencies)
}

/// Peak resident set of this process in KiB (`VmHWM`), 0 where unknown.
fn peak_rss_kib() -> u64 {
    rss_kib("VmHWM:")
}

/// A `/proc/self/status` memory line in KiB, 0 where unknown.
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{cpu_time, median};

    #[test]
    fn cpu_time_counts_this_process_and_nothing_for_a_missing_one() {
        let before = cpu_time("self");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while cpu_time("self") < before + Duration::from_millis(20) {
            assert!(Instant::now() < deadline, "/proc/self/stat never counted 20 ms of spinning");
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert_eq!(cpu_time("4294967295"), Duration::ZERO, "no such process");
    }

    #[test]
    fn the_ceiling_is_the_middle_run() {
        assert_eq!(median(&[160_499.0, 99_881.0, 126_544.0]), 126_544.0);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
