//! Storage layouts compared: one record per event against per-tag time
//! blocks (one record per tag, hour and batch holding columns), each with
//! the hierarchical counters, minute/hour/day rollups and the registry
//! applied in the same transaction, as the persister does.
//!
//! Run: `cargo bench -p vigia-benches --bench layouts` (results in
//! `target/criterion`; the numbers we measured are in docs/architecture.md).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vigia_domain::{EventId, Ledger, Projection, Reading, StoredEvent, Tag};
use vigia_store::{Layout, Store, StoreConfig};

/// A persister batch: `events` readings spread over `sensors` tags, one second apart per tag.
fn batch(first_seq: u64, events: usize, sensors: usize, tags: &[Tag]) -> Vec<StoredEvent> {
    (0..events)
        .map(|i| {
            let seq = first_seq + i as u64;
            let tag = tags[i % sensors].clone();
            let ts = 1_700_000_000_000 + (seq as i64 / sensors as i64) * 1000;
            let reading = Reading::number(tag, ts, (seq % 90) as f64 + 10.5);
            StoredEvent { id: EventId { seq, idx: 0 }, reading }
        })
        .collect()
}

fn tags(n: usize) -> Vec<Tag> {
    let regions = ["norte", "nordeste", "centro-oeste", "sudeste", "sul"];
    (0..n).map(|i| Tag::parse(&format!("brasil.{}.sensor{i:04}", regions[i % 5])).unwrap()).collect()
}

fn layouts(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tags = tags(2000);
    let mut group = c.benchmark_group("persist_batch");
    group.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(3));
    for engine in ["mem", "surrealkv"] {
        for (events, sensors) in [(1000, 2000), (5000, 2000), (5000, 100)] {
            for layout in [Layout::PerEvent, Layout::Blocks] {
                let dir = tempfile::tempdir().unwrap();
                let url = match engine {
                    "mem" => "mem://".to_owned(),
                    _ => format!("surrealkv://{}", dir.path().join("db").display()),
                };
                let store = rt.block_on(Store::open(&StoreConfig { url, ..StoreConfig::memory() })).unwrap();
                let mut ledger = Ledger::default();
                let mut next_seq = 1u64;
                group.throughput(Throughput::Elements(events as u64));
                let id = BenchmarkId::new(format!("{engine}/{layout:?}"), format!("{events}ev_{sensors}tags"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            let events = batch(next_seq, events, sensors, &tags);
                            let mut next = ledger.clone();
                            for e in &events {
                                next.insert(e.id.seq);
                            }
                            next_seq += events.len() as u64;
                            let start = Instant::now();
                            let projection = Projection::of(&events);
                            rt.block_on(store.commit_with_layout(
                                layout,
                                "readings",
                                ledger.version,
                                &next,
                                &projection,
                            ))
                            .unwrap();
                            spent += start.elapsed();
                            next.version += 1;
                            ledger = next;
                        }
                        spent
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, layouts);
criterion_main!(benches);
