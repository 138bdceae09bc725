//! The Vigia side of `vigia peer`: a private `nats-server -js` on a free
//! loopback port, and Vigia's persister, alerter and HTTP API in this process on a
//! temporary SurrealKV store, driven only through the public HTTP API.
//!
//! It never connects to a NATS or a store it did not start.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigia_bus::Bus;
use vigia_store::{Store, StoreConfig};

use crate::app::{self, Parts};
use crate::config::Config;

/// The window asked for: the API's 30-day window.
pub(super) const AVERAGES_PATH: &str = "/api/v1/stats/averages?window=30d";
/// The counts tree under the root, regions and sensors.
pub(super) const COUNTS_PATH: &str = "/api/v1/counts?prefix=brasil&depth=2";

/// Vigia running for the peer comparison; stopped by [`Vigia::stop`].
#[derive(Debug)]
pub(super) struct Vigia {
    base: String,
    client: reqwest::Client,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    store_url: String,
    _nats: Child,
}

impl Vigia {
    /// Starts NATS, the persister (with `alerter`, the alerter) and the API,
    /// with `config`'s persister and HTTP settings.
    pub(super) async fn start(config: &Config, dir: &Path, alerter: bool) -> anyhow::Result<Vigia> {
        let port = super::influx::free_port()?;
        let nats = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("nats"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("failed to start nats-server; install it with `apt-get install -y nats-server`")?;
        let url = format!("nats://127.0.0.1:{port}");
        let mut bus = None;
        for _ in 0..100 {
            if let Ok(b) = Bus::connect(&url).await {
                bus = Some(b);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let bus = bus.with_context(|| format!("the peer's nats-server did not answer at {url} within 10 s"))?;
        let mut config = config.clone();
        config.nats.url = url;
        config.nats.replicas = 1;
        config.nats.roots = vec!["brasil".into()];
        app::ensure_topology(&config, &bus).await?;
        let store_url = format!("surrealkv://{}", dir.join("db").display());
        let store = Store::open(&StoreConfig { url: store_url.clone(), ..config.store_config() })
            .await
            .context("failed to open the peer's store")?;
        let listener = vigia_api::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let task = {
            let stop = stop.clone();
            let parts = Parts { persister: true, alerter, http: Some(listener), ..Parts::default() };
            tokio::spawn(async move { app::run(&config, bus, Some(store), parts, stop).await })
        };
        let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
        Ok(Vigia { base, client, stop, task, store_url, _nats: nats })
    }

    /// Posts one JSON array of readings; the API answers 202 once the log has it.
    pub(super) async fn post(&self, body: Bytes) -> anyhow::Result<()> {
        let r = self
            .client
            .post(format!("{}/api/v1/events", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .context("POST /api/v1/events")?;
        if r.status().as_u16() != 202 {
            let status = r.status();
            bail!("POST /api/v1/events answered {status}: {}", r.text().await.unwrap_or_default());
        }
        Ok(())
    }

    /// GETs a path and parses the JSON answer.
    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.client.get(format!("{}{path}", self.base)).send().await.with_context(|| format!("GET {path}"))?;
        let status = r.status();
        let body = r.bytes().await?;
        anyhow::ensure!(status.is_success(), "GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).with_context(|| format!("GET {path} is not JSON"))
    }

    /// Waits until the counters hold `events` under `brasil`: the persister
    /// commits events, counters and its ledger together, so counted means stored.
    pub(super) async fn wait_counted(&self, events: u64, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last_report = started;
        loop {
            let total = self.get("/api/v1/counts?prefix=brasil&depth=0").await?["total"].as_u64().unwrap_or(0);
            if total >= events {
                anyhow::ensure!(total == events, "Vigia counted {total} events, {events} were sent");
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!("Vigia had stored {total} of {events} events after {timeout:?}; raise --store-timeout");
            }
            if last_report.elapsed() > Duration::from_secs(15) {
                last_report = Instant::now();
                let rate = total as f64 / started.elapsed().as_secs_f64();
                eprintln!("peer: Vigia stored {total} of {events} ({rate:.0} events/s since the last request)");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the persister and the API, letting the batch in hand finish.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await.context("Vigia task")??;
        // Let SurrealKV write its memtable out and close before the temporary
        // directory goes (a fixed 500 ms was too short after 10,000,000 events).
        anyhow::ensure!(
            vigia_store::wait_closed(&self.store_url, Duration::from_secs(120)).await,
            "the peer's store did not close within 120 s"
        );
        Ok(())
    }
}

/// Tag → (mean, count).
pub(super) type Means = BTreeMap<String, (f64, u64)>;

/// `GET /stats/averages`: the window `(from, to)` and each sensor's mean and count.
pub(super) fn averages(answer: &Value) -> anyhow::Result<((i64, i64), Means)> {
    let from = answer["from"].as_i64().context("averages without `from`")?;
    let to = answer["to"].as_i64().context("averages without `to`")?;
    let mut out = BTreeMap::new();
    for s in answer["sensors"].as_array().context("averages without `sensors`")? {
        let tag = s["tag"].as_str().context("a sensor without `tag`")?;
        let mean = s["mean"].as_f64().context("a sensor without `mean`")?;
        let count = s["count"].as_u64().context("a sensor without `count`")?;
        out.insert(tag.to_owned(), (mean, count));
    }
    Ok(((from, to), out))
}

/// `GET /counts?prefix=brasil&depth=2`: region prefix → total.
pub(super) fn region_counts(answer: &Value) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for node in answer["nodes"].as_array().context("counts without `nodes`")? {
        for region in node["children"].as_array().context("a node without `children`")? {
            let prefix = region["prefix"].as_str().context("a node without `prefix`")?;
            out.insert(prefix.to_owned(), region["total"].as_u64().context("a node without `total`")?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_averages() {
        let answer = serde_json::json!({"window": "30d", "from": 10, "to": 20, "sensors": [
            {"tag": "brasil.norte.sensor0000", "mean": 55.5, "min": 10.0, "max": 99.0, "count": 3}]});
        let (window, got) = averages(&answer).unwrap();
        assert_eq!(window, (10, 20));
        assert_eq!(got, BTreeMap::from([("brasil.norte.sensor0000".into(), (55.5, 3))]));
        assert!(averages(&serde_json::json!({"from": 1})).is_err());
    }

    #[test]
    fn reads_the_regions_of_the_counts_tree() {
        let answer = serde_json::json!({"total": 30, "nodes": [{"prefix": "brasil", "total": 30, "ok": 30, "errors": 0,
            "children": [
                {"prefix": "brasil.norte", "total": 10, "ok": 10, "errors": 0, "children": [
                    {"prefix": "brasil.norte.sensor0000", "total": 10, "ok": 10, "errors": 0, "children": []}]},
                {"prefix": "brasil.sul", "total": 20, "ok": 19, "errors": 1, "children": []}]}]});
        let got = region_counts(&answer).unwrap();
        assert_eq!(got, BTreeMap::from([("brasil.norte".into(), 10), ("brasil.sul".into(), 20)]));
    }
}
