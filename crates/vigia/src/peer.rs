//! `vigia peer` (`just peer`): Vigia beside InfluxDB 1.6 in one run, on the
//! same machine, with the same events and the same two questions.
//!
//! 1. A deterministic dataset (`peer/dataset.rs`): 2,000 sensors under
//!    `brasil.<region>.sensorNNNN`, N events over the last 29 days.
//! 2. InfluxDB (`peer/influx.rs`): a private `influxd` on loopback with a
//!    temporary directory; the events written over the line protocol by
//!    `writers` tasks in batches; points/s from the first write to the last
//!    answer; then mean per sensor over the 30-day window and count per
//!    region, each the median of `runs`.
//! 3. Vigia (`peer/ours.rs`): a private `nats-server`, the persister, the
//!    alerter (as `vigia up` runs it; `alerter: false` leaves it out) and the
//!    API in this process on a temporary SurrealKV store; the same events
//!    posted to `POST /api/v1/events` as arrays by as many writers; events/s
//!    from the first request until the counters hold all of them (stored and
//!    counted); then `GET /stats/averages?window=30d` and
//!    `GET /counts?prefix=brasil&depth=2`, each the median of `runs`.
//! 4. The table of both and Vigia's speed-up, and the honesty check: each
//!    system's averages and counts against the generator's own sums
//!    (`peer/compare.rs`). A disagreement fails the command.
//!
//! It never touches a running InfluxDB, NATS or Vigia store.

mod compare;
mod dataset;
mod influx;
mod ours;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;

pub use compare::{Figures, Table};
pub use dataset::Dataset;

use crate::config::Config;

/// What to run.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub sensors: usize,
    pub events: u64,
    /// Concurrent writers for each system.
    pub writers: usize,
    /// Points per write request.
    pub batch: usize,
    /// Runs of each query; the median is reported.
    pub runs: usize,
    /// The `influxd` binary.
    pub influxd: String,
    pub influx: bool,
    pub vigia: bool,
    /// Longest wait for Vigia's persister to store everything.
    pub store_timeout: Duration,
    /// Run Vigia's alerter beside the persister, as `vigia up` does.
    pub alerter: bool,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            sensors: 2000,
            events: 1_000_000,
            writers: 4,
            batch: 5000,
            runs: 5,
            influxd: "influxd".into(),
            influx: true,
            vigia: true,
            store_timeout: Duration::from_secs(3 * 3600),
            alerter: true,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The API's 30-day window at `now`: from aligned down to the hour, to now.
fn window_30d(now: i64) -> (i64, i64) {
    const HOUR: i64 = 3_600_000;
    ((now - 30 * 24 * HOUR).div_euclid(HOUR) * HOUR, now)
}

/// Runs the comparison and returns the table; fails when an answer disagrees.
pub async fn run(config: &Config, o: PeerOptions) -> anyhow::Result<Table> {
    anyhow::ensure!(o.writers > 0 && o.batch > 0 && o.runs > 0, "--writers, --batch and --runs must be at least 1");
    anyhow::ensure!(o.batch <= 10_000, "--batch: Vigia takes at most 10,000 readings per request");
    let dataset = Dataset::new(o.sensors, o.events, now_ms()).map_err(anyhow::Error::msg)?;
    eprintln!("peer: computing the expected answers of {} events ...", o.events);
    let expected = dataset.expected();
    let means: BTreeMap<String, f64> =
        expected.sensors.iter().map(|(tag, (n, sum))| (tag.clone(), sum / *n as f64)).collect();
    let regions: BTreeMap<String, f64> = expected.regions.iter().map(|(r, n)| (r.clone(), *n as f64)).collect();
    let dir = tempfile::tempdir().context("failed to make a temporary directory")?;
    let mut table = Table {
        title: format!(
            "vigia peer: {} events from {} sensors over 29 days; {} writers, {} points per request; medians of {} runs; Vigia {}",
            o.events,
            o.sensors,
            o.writers,
            o.batch,
            o.runs,
            if o.alerter { "with its alerter" } else { "without its alerter" }
        ),
        influx: None,
        vigia: None,
    };

    if o.influx {
        eprintln!("peer: starting {} ...", o.influxd);
        let db = influx::Influx::start(&o.influxd, &dir.path().join("influxdb")).await?;
        let bodies: Vec<Bytes> = dataset.batches(o.batch).map(|r| Bytes::from(dataset.line_protocol(r))).collect();
        eprintln!("peer: InfluxDB {}: writing ...", db.version);
        let db = Arc::new(db);
        let elapsed = write_all(bodies, o.writers, {
            let db = db.clone();
            move |body| {
                let db = db.clone();
                async move { db.write(body).await }
            }
        })
        .await?;
        let (from, to) = window_30d(now_ms());
        let means_query = influx::means_query(from, to);
        let (averages_ms, answer) = timed(o.runs, || db.query(&means_query)).await?;
        let averages_check = compare::agree(&means, &influx::grouped(&answer, "sensor")?, compare::MEAN_TOLERANCE);
        let (counts_ms, answer) = timed(o.runs, || db.query(influx::COUNTS_QUERY)).await?;
        let got: BTreeMap<String, f64> =
            influx::grouped(&answer, "region")?.into_iter().map(|(r, n)| (format!("brasil.{r}"), n)).collect();
        let counts_check = compare::agree(&regions, &got, 0.0);
        let name = format!("InfluxDB {}", db.version.split('~').next().unwrap_or(""));
        table.influx = Some(Figures {
            name: name.trim().to_owned(),
            ingest_rate: o.events as f64 / elapsed.as_secs_f64(),
            averages_ms,
            counts_ms,
            averages_check,
            counts_check,
        });
        if let Ok(db) = Arc::try_unwrap(db) {
            db.stop().await;
        }
    }

    if o.vigia {
        eprintln!("peer: starting Vigia (private nats-server, persister, API) ...");
        let vigia = Arc::new(ours::Vigia::start(config, &dir.path().join("vigia"), o.alerter).await?);
        let bodies: Vec<Bytes> = dataset.batches(o.batch).map(|r| Bytes::from(dataset.json(r))).collect();
        eprintln!("peer: Vigia: posting ...");
        let started = Instant::now();
        write_all(bodies, o.writers, {
            let vigia = vigia.clone();
            move |body| {
                let vigia = vigia.clone();
                async move { vigia.post(body).await }
            }
        })
        .await?;
        eprintln!(
            "peer: Vigia: in the log after {:.1} s; waiting until stored and counted ...",
            started.elapsed().as_secs_f64()
        );
        vigia.wait_counted(o.events, o.store_timeout).await?;
        let elapsed = started.elapsed();
        let (averages_ms, answer) = timed(o.runs, || vigia.get(ours::AVERAGES_PATH)).await?;
        let (window, got) = ours::averages(&answer)?;
        eprintln!("peer: Vigia's window: {window:?}");
        let got: BTreeMap<String, f64> = got.into_iter().map(|(tag, (mean, _))| (tag, mean)).collect();
        let averages_check = compare::agree(&means, &got, compare::MEAN_TOLERANCE);
        let (counts_ms, answer) = timed(o.runs, || vigia.get(ours::COUNTS_PATH)).await?;
        let got = ours::region_counts(&answer)?.into_iter().map(|(r, n)| (r, n as f64)).collect();
        let counts_check = compare::agree(&regions, &got, 0.0);
        table.vigia = Some(Figures {
            name: "Vigia".into(),
            ingest_rate: o.events as f64 / elapsed.as_secs_f64(),
            averages_ms,
            counts_ms,
            averages_check,
            counts_check,
        });
        Arc::try_unwrap(vigia).map_err(|_| anyhow::anyhow!("a writer still holds Vigia"))?.stop().await?;
    }

    let honest =
        [&table.influx, &table.vigia].into_iter().flatten().all(|s| s.averages_check.holds() && s.counts_check.holds());
    if !honest {
        println!("{table}");
        anyhow::bail!("an answer disagrees with the dataset (see the honesty check above)");
    }
    Ok(table)
}

/// Sends every body with `writers` concurrent tasks; the time from the first send to the last answer.
async fn write_all<F, Fut>(bodies: Vec<Bytes>, writers: usize, send: F) -> anyhow::Result<Duration>
where
    F: Fn(Bytes) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (bodies, next, send) = (bodies.clone(), next.clone(), send.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { return anyhow::Ok(()) };
                send(body.clone()).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("writer task")??;
    }
    Ok(started.elapsed())
}

/// Runs `query` `runs` times; the median in milliseconds and the last answer.
async fn timed<T, Fut>(runs: usize, mut query: impl FnMut() -> Fut) -> anyhow::Result<(f64, T)>
where
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut samples = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(query().await?);
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok((compare::median(&samples), last.context("no run")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_matches_the_apis() {
        let now = 1_796_000_123_456;
        let (from, to) = window_30d(now);
        assert_eq!(to, now);
        assert_eq!(from % 3_600_000, 0);
        assert!(now - from >= 30 * 86_400_000 && now - from < 30 * 86_400_000 + 3_600_000);
        let d = Dataset::new(10, 10, now).unwrap();
        assert!(d.start_ms > from && d.end_ms < to, "the dataset fits the window");
    }

    #[tokio::test]
    async fn every_body_is_sent_once() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let bodies: Vec<Bytes> = (0..50).map(|i| Bytes::from(i.to_string())).collect();
        let s = seen.clone();
        write_all(bodies, 4, move |b| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(String::from_utf8(b.to_vec())?);
                Ok(())
            }
        })
        .await
        .unwrap();
        let mut got: Vec<u32> = seen.lock().unwrap().iter().map(|s| s.parse().unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        let failing = write_all(vec![Bytes::new()], 2, |_| async { anyhow::bail!("refused") }).await;
        assert!(failing.is_err(), "a refused write fails the run");
    }
}
