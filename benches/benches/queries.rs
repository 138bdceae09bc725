//! The aggregate reads of the API on a big store: averages over the last
//! month for 2,000 sensors (what `GET /api/v1/stats/averages?window=30d`
//! reads: day rollups for whole days and hour rollups for the partial ends,
//! folded per sensor by `Store::summaries_under`) and the counts tree
//! (`GET /api/v1/counts`).
//!
//! The store holds `VIGIA_BENCH_EVENTS` events (default 10,000,000) from 2,000
//! sensors over the 30 days before it was filled, taking turns in time
//! order, written through the persister's path (`Writer::apply`, flushes of
//! 100,000 events) on SurrealKV. Filling takes minutes, so the store is kept under
//! `$CARGO_TARGET_DIR/vigia-bench-data/` and reused while it is complete.
//!
//! Run: `cargo bench --workspace --bench queries`
//! (quicker: `VIGIA_BENCH_EVENTS=1000000 cargo bench --workspace --bench queries`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vigia_domain::{EventId, Reading, StoredEvent, Tag};
use vigia_store::{READINGS_LEDGER, Store, StoreConfig, Writer};

const SENSORS: u64 = 2000;
const BATCH: u64 = 100_000;
const MONTH_MS: i64 = 30 * 86_400_000;
const HOUR_MS: i64 = 3_600_000;

fn tags() -> Vec<Tag> {
    let regions = ["norte", "nordeste", "centro-oeste", "sudeste", "sul"];
    (0..SENSORS).map(|i| Tag::parse(&format!("brasil.{}.sensor{i:04}", regions[(i % 5) as usize])).unwrap()).collect()
}

fn data_dir(events: u64) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("vigia-bench-data").join(format!("queries-{events}"))
}

/// Opens the kept store, or fills a new one; returns it with the end of its month.
async fn store_with(events: u64) -> (Store, i64) {
    let dir = data_dir(events);
    let done = dir.join("filled-until-ms");
    let url = format!("surrealkv://{}", dir.join("db").display());
    if let Ok(end) = std::fs::read_to_string(&done) {
        let store = Store::open(&StoreConfig { url: url.clone(), ..StoreConfig::memory() }).await.unwrap();
        if store.ledger(READINGS_LEDGER).await.unwrap().count() == events {
            return (store, end.trim().parse().unwrap());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&StoreConfig { url, ..StoreConfig::memory() }).await.unwrap();
    let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let start = end - MONTH_MS;
    let per_sensor = events.div_ceil(SENSORS).max(1) as i64;
    let tags = tags();
    let (mut writer, started) = (Writer::new(&store, READINGS_LEDGER), Instant::now());
    for first in (1..=events).step_by(BATCH as usize) {
        let last = (first + BATCH - 1).min(events);
        let batch: Vec<StoredEvent> = (first..=last)
            .map(|seq| {
                // The sensors take turns: step `nth` of every sensor, then the next.
                let (sensor, nth) = ((seq - 1) % SENSORS, ((seq - 1) / SENSORS) as i64);
                let ts = start + nth * MONTH_MS / per_sensor;
                let reading = Reading::number(tags[sensor as usize].clone(), ts, (seq % 90) as f64 + 10.5);
                StoredEvent { id: EventId { seq, idx: 0 }, reading }
            })
            .collect();
        let messages: Vec<(u64, &[StoredEvent])> = batch.iter().map(|e| (e.id.seq, std::slice::from_ref(e))).collect();
        writer.apply(&messages).await.unwrap();
        if last % 1_000_000 < BATCH {
            eprintln!("filled {last} of {events} events in {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    std::fs::write(&done, end.to_string()).unwrap();
    (store, end)
}

fn queries(c: &mut Criterion) {
    let events: u64 = std::env::var("VIGIA_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, end) = rt.block_on(store_with(events));
    let from = (end - MONTH_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let mut group = c.benchmark_group(format!("queries_{events}_events"));
    group.sample_size(20).measurement_time(Duration::from_secs(15));
    group.bench_function("month_averages_2000_sensors", |b| {
        b.to_async(&rt).iter(|| async {
            let sensors = store.summaries_under(None, from, end).await.unwrap();
            let counted: i64 = sensors.values().map(|s| s.count).sum();
            assert_eq!(counted as u64, events, "the month's rollups cover every event");
            sensors.len()
        })
    });
    group.bench_function("counts_tree", |b| {
        b.to_async(&rt).iter(|| async { store.counters_under(None, 8).await.unwrap().len() })
    });
    group.finish();
}

criterion_group!(benches, queries);
criterion_main!(benches);
