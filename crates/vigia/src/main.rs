//! `vigia`: parse arguments, load configuration, start tracing, call into the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use vigia::app::{self, Parts};
use vigia::config::{AlertsConsumer, Config};
use vigia::nats_server::connect_or_spawn;
use vigia_store::{Store, StoreConfig};

/// jemalloc instead of glibc malloc: under 1,000 connections a third of the
/// API's samples were in glibc's malloc and free (docs/performance.md).
/// Its settings are built in from `.cargo/config.toml`
/// (`JEMALLOC_SYS_WITH_MALLOC_CONF`); `_RJEM_MALLOC_CONF` overrides them.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(name = "vigia", version, about = "Telemetry for sensor fleets: NATS JetStream log, SurrealDB projections.")]
struct Cli {
    /// Configuration file (default: ./vigia.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything in one process: NATS (found or started), store, workers, API, simulator.
    Up {
        /// Do not run the simulator.
        #[arg(long)]
        no_sim: bool,
    },
    /// Project READINGS and ALERTS into the store (persister and alert projector).
    Persist,
    /// Judge readings against the alert rules and publish alert events.
    Alert,
    /// Load uploaded CSV datasets from the JOBS work queue into the store.
    Load,
    /// Simulate a sensor fleet.
    Sim(SimArgs),
    /// Serve the HTTP API.
    Serve,
    /// Rebuild a fresh store from the streams.
    Replay {
        /// Store to fill, e.g. surrealkv://data/replay (must be empty).
        #[arg(long)]
        into: String,
    },
    /// Check that counters, rollups and registry equal a scan of the stored events.
    Verify,
    /// Reconcile the log with the store per tag; exits non-zero on any gap or duplicate.
    Audit {
        /// Only tags under this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Readings at or after this time (unix ms or RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Readings at or before this time.
        #[arg(long)]
        to: Option<String>,
    },
    /// Exit 0 when NATS answers and the streams exist (with --store, the store too): a container health check.
    Health {
        /// Also open and ping the store.
        #[arg(long)]
        store: bool,
    },
    /// Measure the pipeline end to end on a private nats-server and temporary stores (docs/performance.md).
    Bench(BenchArgs),
    /// Compare with InfluxDB 1.6: same events, same two queries, both in one run (docs/performance.md).
    Peer(PeerArgs),
    /// Write the OpenAPI document.
    Openapi {
        #[arg(long, default_value = "openapi/openapi.json")]
        out: PathBuf,
    },
    /// Make an API token, or hash one for `[[http.tokens]]`.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Simulated sensors.
    #[arg(long, default_value_t = 2000)]
    sensors: usize,
    /// Readings published in the throughput phase.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Readings per message: 1 is the device path, e.g. 500 is batched ingest.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Readings per second during the latency phase.
    #[arg(long, default_value_t = 2000.0)]
    latency_rate: f64,
    /// Seconds the latency phase lasts.
    #[arg(long, default_value_t = 20.0)]
    latency_seconds: f64,
    /// Then queue this many readings with the persister stopped and measure
    /// memory while they drain (e.g. 5000000); 0 skips the phase.
    #[arg(long, default_value_t = 0)]
    backlog: u64,
    /// Publish the throughput phase with message ids and resends, as
    /// `vigia sim` does, instead of as devices and the ceiling do.
    #[arg(long)]
    message_ids: bool,
    /// Run the persister alone, without the alerter `vigia up` runs beside it.
    #[arg(long)]
    no_alerter: bool,
}

#[derive(clap::Args, Debug)]
struct PeerArgs {
    /// Events in the dataset.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Sensors in the dataset (brasil.<region>.sensorNNNN).
    #[arg(long, default_value_t = 2000)]
    sensors: usize,
    /// Concurrent writers for each system.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Points per write request.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Runs of each query (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Systems to run: influxdb, vigia or both.
    #[arg(long, value_delimiter = ',', default_value = "influxdb,vigia")]
    systems: Vec<String>,
    /// The influxd binary (Debian: apt-get install -y influxdb).
    #[arg(long, default_value = "influxd")]
    influxd: String,
    /// Longest wait, in seconds, for Vigia to store every event.
    #[arg(long, default_value_t = 10_800)]
    store_timeout: u64,
    /// Run Vigia's persister alone, without the alerter `vigia up` runs beside it.
    #[arg(long)]
    no_alerter: bool,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Generate a random token and print it with its `[[http.tokens]]` entry.
    New {
        #[arg(long)]
        name: String,
        /// Comma-separated: read, write, admin.
        #[arg(long, default_value = "read,write")]
        scopes: String,
    },
    /// Print the SHA-256 of a token (read from standard input when not given).
    Hash { token: Option<String> },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_command(cmd: &TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::New { name, scopes } => {
            let scopes: Vec<&str> = scopes.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            if let Some(bad) = scopes.iter().find(|s| vigia_api::Scope::parse(s).is_none()) {
                anyhow::bail!("scope `{bad}` is not read, write or admin");
            }
            let token = format!("vg_{}", hex(&rand::random::<[u8; 32]>()));
            println!("token (shown once, keep it secret): {token}\n");
            println!(
                "[[http.tokens]]\nname = {name:?}\nsha256 = {:?}\nscopes = {scopes:?}",
                hex(&vigia_api::hash_token(&token))
            );
        }
        TokenCommand::Hash { token } => {
            let token = match token {
                Some(t) => t.clone(),
                None => std::io::read_to_string(std::io::stdin())?.trim().to_owned(),
            };
            println!("{}", hex(&vigia_api::hash_token(&token)));
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
struct SimArgs {
    #[arg(long)]
    sensors: Option<usize>,
    /// Readings per sensor per second; 0 = as fast as acknowledged.
    #[arg(long)]
    rate: Option<f64>,
    /// Comma-separated roots (default: nats.roots).
    #[arg(long, value_delimiter = ',')]
    roots: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    regions: Option<Vec<String>>,
    #[arg(long)]
    min: Option<f64>,
    #[arg(long)]
    max: Option<f64>,
    #[arg(long)]
    error_ratio: Option<f64>,
    /// Readings per message (batch envelope); 0 sends one device payload per message.
    #[arg(long)]
    batch: Option<usize>,
    /// Stop after this many readings.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Publishes awaiting acknowledgement at once (at most half the
    /// process's publish permits, `vigia_bus::ACK_PERMITS`).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(vigia_bus::ACK_PERMITS as i64 / 2)))]
    max_in_flight: u32,
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    // Logs go to standard error, so what a command prints as its result
    // (`vigia sim`, `verify`, `replay`) stays alone on standard output.
    // Colours only on a terminal: redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Token(cmd) = &cli.command {
        return token_command(cmd);
    }
    if let Command::Openapi { out } = &cli.command {
        let json = serde_json::to_string_pretty(&vigia_api::openapi())? + "\n";
        std::fs::write(out, json).with_context(|| format!("failed to write {}", out.display()))?;
        println!("wrote {}", out.display());
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    init_tracing(&config);
    if let Command::Bench(args) = &cli.command {
        let options = vigia::bench::BenchOptions {
            sensors: args.sensors,
            events: args.events,
            batch: args.batch,
            latency_rate: args.latency_rate,
            latency_time: Duration::from_secs_f64(args.latency_seconds),
            backlog: args.backlog,
            message_ids: args.message_ids,
            alerter: !args.no_alerter,
        };
        println!("{}", vigia::bench::run(&config, options).await?);
        return Ok(());
    }
    if let Command::Peer(args) = &cli.command {
        if let Some(bad) = args.systems.iter().find(|s| !matches!(s.as_str(), "influxdb" | "vigia")) {
            anyhow::bail!("--systems: `{bad}` is not influxdb or vigia");
        }
        let options = vigia::peer::PeerOptions {
            sensors: args.sensors,
            events: args.events,
            writers: args.writers,
            batch: args.batch,
            runs: args.runs,
            influxd: args.influxd.clone(),
            influx: args.systems.iter().any(|s| s == "influxdb"),
            vigia: args.systems.iter().any(|s| s == "vigia"),
            store_timeout: Duration::from_secs(args.store_timeout),
            alerter: !args.no_alerter,
        };
        println!("{}", vigia::peer::run(&config, options).await?);
        return Ok(());
    }
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            app::shutdown_signal().await;
            stop.cancel();
        });
    }
    let open_store = || async {
        Store::open(&config.store_config())
            .await
            .with_context(|| format!("failed to open the store at {}", config.store.url))
    };
    let bind = || async {
        vigia_api::bind(&config.http.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.http.listen))
    };

    match cli.command {
        Command::Up { no_sim } => {
            let (bus, child) = connect_or_spawn(&config.nats, true).await?;
            app::ensure_topology(&config, &bus).await?;
            let store = open_store().await?;
            let parts = Parts {
                persister: true,
                alerter: true,
                loader: true,
                sim: (!no_sim).then(|| app::sim_config(&config)),
                http: Some(bind().await?),
            };
            tracing::info!(api = %format!("http://{}/docs", config.http.listen), "Vigia is up.");
            let result = app::run(&config, bus, Some(store), parts, stop).await;
            close_store(&config.store.url).await;
            if let Some(child) = child {
                child.stop().await;
            }
            result
        }
        Command::Persist => {
            let (bus, _) = connect_or_spawn(&config.nats, false).await?;
            app::ensure_topology(&config, &bus).await?;
            let parts = Parts { persister: true, ..Parts::default() };
            let result = app::run(&config, bus, Some(open_store().await?), parts, stop).await;
            close_store(&config.store.url).await;
            result
        }
        Command::Load => {
            let (bus, _) = connect_or_spawn(&config.nats, false).await?;
            app::ensure_topology(&config, &bus).await?;
            let parts = Parts { loader: true, ..Parts::default() };
            let result = app::run(&config, bus, Some(open_store().await?), parts, stop).await;
            close_store(&config.store.url).await;
            result
        }
        Command::Alert => {
            let (bus, _) = connect_or_spawn(&config.nats, false).await?;
            // Alone, the alerter pulls its own consumer whatever [alerts] consumer says.
            let mut own = config.clone();
            own.alerts.consumer = AlertsConsumer::Own;
            app::ensure_topology(&own, &bus).await?;
            app::run(&config, bus, None, Parts { alerter: true, ..Parts::default() }, stop).await
        }
        Command::Sim(args) => {
            let (bus, _) = connect_or_spawn(&config.nats, false).await?;
            app::ensure_topology(&config, &bus).await?;
            let mut sim = app::sim_config(&config);
            sim.sensors = args.sensors.unwrap_or(sim.sensors);
            sim.rate = args.rate.unwrap_or(sim.rate);
            sim.roots = args.roots.unwrap_or(sim.roots);
            sim.regions = args.regions.unwrap_or(sim.regions);
            sim.min = args.min.unwrap_or(sim.min);
            sim.max = args.max.unwrap_or(sim.max);
            sim.error_ratio = args.error_ratio.unwrap_or(sim.error_ratio);
            sim.batch = args.batch.unwrap_or(sim.batch);
            sim.count = args.count;
            sim.duration = args.duration.map(Duration::from_secs_f64);
            sim.max_in_flight = args.max_in_flight as usize;
            let report = vigia_sim::run(bus.publisher(), sim, stop).await?;
            println!(
                "published {} readings in {} messages in {:.1} s ({:.0} readings/s)",
                report.readings,
                report.messages,
                report.elapsed.as_secs_f64(),
                report.readings as f64 / report.elapsed.as_secs_f64().max(1e-9)
            );
            Ok(())
        }
        Command::Serve => {
            let (bus, _) = connect_or_spawn(&config.nats, false).await?;
            app::ensure_topology(&config, &bus).await?;
            let parts = Parts { http: Some(bind().await?), ..Parts::default() };
            let result = app::run(&config, bus, Some(open_store().await?), parts, stop).await;
            close_store(&config.store.url).await;
            result
        }
        Command::Replay { into } => {
            let (bus, _) = connect_or_spawn(&config.nats, false).await?;
            let target = StoreConfig { url: into.clone(), ..config.store_config() };
            let store = Store::open(&target).await.with_context(|| format!("failed to open {into}"))?;
            anyhow::ensure!(
                store.ledger(vigia::workers::persister::READINGS_LEDGER).await?.count() == 0,
                "{into} is not empty; replay needs a fresh store"
            );
            let report =
                vigia::replay::replay(&bus, &store, config.persister.batch_size, config.backfill.freshness()).await?;
            drop(store);
            close_store(&into).await;
            println!(
                "replayed {} messages ({} events) and {} alert events into {into}",
                report.messages, report.events, report.alerts
            );
            Ok(())
        }
        Command::Verify => {
            let report = vigia::check::verify(&open_store().await?).await?;
            if report.mismatches.is_empty() {
                println!("consistent: {} events; counters, rollups and registry equal a scan", report.events);
                Ok(())
            } else {
                for m in &report.mismatches {
                    eprintln!("{m}");
                }
                anyhow::bail!("{} mismatches over {} events", report.mismatches.len(), report.events)
            }
        }
        Command::Audit { prefix, from, to } => {
            let (bus, _) = connect_or_spawn(&config.nats, false).await?;
            let time = |v: Option<String>| {
                v.map(|s| vigia_domain::parse_timestamp(&s).map_err(|e| anyhow::anyhow!("{s}: {e}"))).transpose()
            };
            let (from, to) = (time(from)?, time(to)?);
            let report =
                vigia_api::audit(&bus, &open_store().await?, &config.nats.roots, prefix.as_deref(), from, to).await?;
            print!("{}", vigia::audit_text(&report));
            anyhow::ensure!(report.ok, "{} gaps and {} duplicates", report.gaps, report.duplicates);
            Ok(())
        }
        Command::Health { store } => {
            let check = async {
                let bus = vigia_bus::Bus::connect_as(&config.nats.url, &config.nats.access())
                    .await
                    .context("NATS does not answer")?;
                for name in [vigia_bus::READINGS, vigia_bus::ALERTS] {
                    bus.jetstream().get_stream(name).await.with_context(|| format!("stream {name} is missing"))?;
                }
                if store {
                    open_store().await?.ping().await.context("the store does not answer")?;
                }
                anyhow::Ok(())
            };
            tokio::time::timeout(Duration::from_secs(5), check).await.context("no answer within 5 s")??;
            println!("ok");
            Ok(())
        }
        Command::Openapi { .. } | Command::Token(_) | Command::Bench(_) | Command::Peer(_) => {
            unreachable!("handled above")
        }
    }
}

/// Longest wait for the embedded engine to write out its memtable on the way out.
const CLOSE_LIMIT: Duration = Duration::from_secs(60);

/// Waits, once a part that wrote to the store has stopped and dropped it,
/// until the embedded engine has closed (`vigia_store::wait_closed`), so the
/// next start does not replay the write-ahead log
/// (docs/operations.md#closing-the-embedded-store-on-the-way-out).
async fn close_store(url: &str) {
    if !url.starts_with("surrealkv://") {
        return;
    }
    let started = std::time::Instant::now();
    if vigia_store::wait_closed(url, CLOSE_LIMIT).await {
        tracing::info!(took_ms = started.elapsed().as_millis() as u64, "Store closed.");
    } else {
        tracing::warn!(
            limit_s = CLOSE_LIMIT.as_secs(),
            "The store did not close in time; the next start replays its log."
        );
    }
}
