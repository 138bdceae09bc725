//! Wiring: which workers run in this process, how they start, and how they
//! stop together. `vigia up` runs them all; the other commands run one part.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vigia_bus::{Bus, Topology};
use vigia_sim::SimConfig;
use vigia_store::Store;

use crate::config::Config;
use crate::workers::alerter::Alerter;
use crate::workers::persister::BatchOptions;
use crate::workers::retention::Retainer;
use crate::workers::{alerter, loader, persister, projector};

/// The parts to run in this process.
#[derive(Debug, Default)]
pub struct Parts {
    /// Persister and alert projector (the store writers).
    pub persister: bool,
    pub alerter: bool,
    /// The dataset loader (`vigia load`).
    pub loader: bool,
    pub sim: Option<SimConfig>,
    pub http: Option<tokio::net::TcpListener>,
}

/// Loads the topology from `nats/` with the configured roots.
pub fn topology(config: &Config) -> anyhow::Result<Topology> {
    let mut topology = Topology::load(&config.nats.dir, &config.nats.roots).with_context(|| {
        format!("failed to load stream and consumer definitions from {}", config.nats.dir.display())
    })?;
    // An alerter on the persister's consumer reads nothing of its own; the
    // consumer would only show a lag that grows for ever. `vigia alert`
    // alone always applies it (main.rs).
    if config.alerter_rides_persister() {
        topology.without_consumer("alerter");
    }
    topology.set_replicas(config.nats.replicas);
    if config.retention.events_days > 0 {
        topology.set_readings_max_age(std::time::Duration::from_secs(config.retention.events_days * 86_400));
    }
    Ok(topology)
}

/// Creates or updates the streams and consumers.
pub async fn ensure_topology(config: &Config, bus: &Bus) -> anyhow::Result<()> {
    topology(config)?.apply(bus.jetstream()).await.context("failed to apply the JetStream topology")
}

/// The simulator settings of `[sim]` and the configured roots.
pub fn sim_config(config: &Config) -> SimConfig {
    SimConfig {
        sensors: config.sim.sensors,
        rate: config.sim.rate,
        roots: config.nats.roots.clone(),
        regions: config.sim.regions.clone(),
        min: config.sim.min,
        max: config.sim.max,
        error_ratio: config.sim.error_ratio,
        batch: config.sim.batch,
        ..SimConfig::default()
    }
}

/// How long parts get to finish and ack the batch in hand once stopped.
/// With NATS gone an ack or a flush can wait for ever; past this the parts
/// are aborted, and what they had not acked is redelivered (the ledger keeps
/// a redelivered message from counting twice).
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Runs `parts` until `stop` is cancelled or one of them fails; then stops
/// the others, letting each finish and ack the batch in hand within
/// [`STOP_GRACE`].
pub async fn run(
    config: &Config,
    bus: Bus,
    store: Option<Store>,
    parts: Parts,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let batch = BatchOptions {
        size: config.persister.batch_size,
        wait: config.persister.batch_wait(),
        flush_events: config.persister.flush_events,
        freshness: config.backfill.freshness(),
    };
    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    let need_store = || store.clone().context("this part needs the store");
    let writers = Writers::new(config.persister.threads, parts.persister || parts.loader)?;
    // The alerter judges the persister's pulls instead of its own when asked to and both run here.
    let riding = parts.persister && parts.alerter && config.alerter_rides_persister();
    if parts.persister {
        let (b, s, t) = (bus.clone(), need_store()?, stop.clone());
        let retainer = Retainer::new(config.retention.clone(), &config.store.url);
        let alerter = if riding {
            tracing::info!(consumer = ?config.alerts.consumer, "The alerter judges the persister's pulls ([alerts] consumer).");
            Some(Alerter::new(&bus, config.alerts.rules.clone()).await?.with_freshness(batch.freshness))
        } else {
            None
        };
        tasks.spawn_on(
            async move { ("persister", persister::run(&b, &s, batch, retainer, alerter, t).await) },
            writers.handle(),
        );
        let (b, s, t) = (bus.clone(), need_store()?, stop.clone());
        tasks.spawn_on(async move { ("alert projector", projector::run(&b, &s, batch, t).await) }, writers.handle());
    }
    if parts.alerter && !riding {
        let (b, t, rules) = (bus.clone(), stop.clone(), config.alerts.rules.clone());
        tasks.spawn(async move { ("alerter", alerter::run(&b, rules, batch, t).await) });
    }
    if parts.loader {
        let (b, s, t, options) = (bus.clone(), need_store()?, stop.clone(), config.datasets.load_options());
        tasks.spawn_on(async move { ("loader", loader::run(&b, &s, options, t).await) }, writers.handle());
    }
    if let Some(sim) = parts.sim {
        let (p, t) = (bus.publisher(), stop.clone());
        tasks.spawn(async move { ("simulator", vigia_sim::run(p, sim, t).await.map(|_| ()).map_err(Into::into)) });
    }
    if let Some(listener) = parts.http {
        let state = vigia_api::ApiState::new(vigia_api::Shared {
            bus: bus.clone(),
            store: need_store()?,
            started: Instant::now(),
            roots: config.nats.roots.clone(),
            auth: config.http.auth()?,
            default_rules: config.alerts.rules.clone(),
            pressure: vigia_api::Pressure::new(config.backpressure.limits()),
            datasets: vigia_api::DatasetCache::new(config.datasets.cache_mb.saturating_mul(1024 * 1024)),
        });
        if state.auth.tokens.is_empty() {
            tracing::warn!("No API tokens configured: anyone who reaches the API may write. See [http.tokens].");
        }
        let (t, limits) = (stop.clone(), config.http.limits());
        tasks.spawn(async move {
            let served = vigia_api::serve(listener, state, limits, t.cancelled_owned()).await;
            ("http", served.context("HTTP server failed"))
        });
    }
    let mut failure = None;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let joined = tokio::select! {
            joined = tasks.join_next() => joined,
            _ = stop.cancelled(), if deadline.is_none() => {
                deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
                continue;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                tracing::warn!(
                    parts = tasks.len(),
                    grace_s = STOP_GRACE.as_secs(),
                    "Parts still stopping after the grace period (is NATS or the store gone?); aborting them. \
                     What they had not acked is redelivered."
                );
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        };
        let Some(joined) = joined else { break };
        match joined {
            Ok(("simulator", Ok(()))) => {}
            Ok((name, Ok(()))) if !stop.is_cancelled() => {
                tracing::warn!(part = name, "A part stopped on its own; stopping the rest.");
                stop.cancel();
            }
            Ok((_, Ok(()))) => {}
            Ok((name, Err(e))) => {
                tracing::error!(part = name, error = format!("{e:#}"), "A part failed; stopping the rest.");
                failure.get_or_insert(e.context(format!("{name} failed")));
                stop.cancel();
            }
            Err(e) => {
                failure.get_or_insert(anyhow::anyhow!("a task panicked: {e}"));
                stop.cancel();
            }
        }
    }
    if let Err(e) = bus.flush_within(Duration::from_secs(5)).await {
        tracing::warn!(error = %e, "Stopping without NATS: what was not acked is redelivered.");
    }
    drop(writers);
    failure.map_or(Ok(()), Err)
}

/// Where the store writers run: a runtime of their own, so that their long
/// commits (one transaction of up to `flush_events` events, polled without
/// yielding for tens of milliseconds) are preempted by the operating system
/// instead of holding up the API's workers, whose requests then queue
/// behind them (docs/performance.md, "HTTP at 1,000 connections"). The
/// embedded SurrealDB SDK runs a query in the future that awaits it, so the
/// writers' commits run on these threads while the API's reads stay on the
/// main runtime.
struct Writers {
    own: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl Writers {
    /// A runtime of `threads` workers when `needed` and `threads > 0`; the
    /// current runtime otherwise.
    fn new(threads: usize, needed: bool) -> anyhow::Result<Writers> {
        if threads == 0 || !needed {
            return Ok(Writers { own: None, handle: tokio::runtime::Handle::current() });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("vigia-writer")
            .enable_all()
            .build()
            .context("failed to start the store writers' runtime")?;
        Ok(Writers { handle: runtime.handle().clone(), own: Some(runtime) })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for Writers {
    /// From async code a runtime may only be shut down in the background; its
    /// parts have ended (or been aborted) by then.
    fn drop(&mut self) {
        if let Some(runtime) = self.own.take() {
            runtime.shutdown_background();
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("Shutting down: finishing the batches in hand.");
}
