//! The persister's work per batch, without NATS: decode every message as it
//! arrived (one device payload each), project the batch (events in blocks,
//! hierarchical counters, minute/hour/day rollups, traffic, registry) and
//! commit it with its ledger entry in one transaction, on SurrealKV on disk
//! as `vigia up` runs it. Batch sizes 100, 1,000 and 5,000 over 2,000 sensors.
//!
//! Run: `cargo bench -p vigia-benches --bench persist`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vigia_domain::{EventId, Ledger, Projection, StoredEvent, decode_message};
use vigia_store::{READINGS_LEDGER, Store, StoreConfig};

const SENSORS: u64 = 2000;

fn subject(seq: u64) -> String {
    let regions = ["norte", "nordeste", "centro-oeste", "sudeste", "sul"];
    let sensor = seq % SENSORS;
    format!("brasil.{}.sensor{sensor:04}", regions[(sensor % 5) as usize])
}

/// Messages `first..first + n` as a device publishes them: subject and payload.
fn messages(first: u64, n: u64) -> Vec<(u64, String, Vec<u8>)> {
    (first..first + n)
        .map(|seq| {
            let ts = 1_700_000_000_000 + (seq / SENSORS) as i64 * 1000;
            let payload = format!(r#"{{"timestamp": {ts}, "value": {}.5, "unit": "C"}}"#, seq % 90);
            (seq, subject(seq), payload.into_bytes())
        })
        .collect()
}

fn persist(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("persister_batch");
    group.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(3));
    for size in [100u64, 1000, 5000] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("surrealkv://{}", dir.path().join("db").display());
        let store = rt.block_on(Store::open(&StoreConfig { url, ..StoreConfig::memory() })).unwrap();
        let mut ledger = Ledger::default();
        let mut next_seq = 1u64;
        group.throughput(Throughput::Elements(size));
        group.bench_function(BenchmarkId::new("surrealkv", format!("{size}_messages")), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let batch = messages(next_seq, size);
                    next_seq += size;
                    let start = Instant::now();
                    let mut next = ledger.clone();
                    let mut events = Vec::with_capacity(batch.len());
                    for (seq, subject, payload) in &batch {
                        let readings = decode_message(subject, None, None, payload, 0).into_readings();
                        events.extend(
                            readings
                                .into_iter()
                                .enumerate()
                                .map(|(i, reading)| StoredEvent { id: EventId { seq: *seq, idx: i as u32 }, reading }),
                        );
                        next.insert(*seq);
                    }
                    let projection = Projection::of(&events);
                    rt.block_on(store.commit(READINGS_LEDGER, ledger.version, &next, &projection)).unwrap();
                    spent += start.elapsed();
                    next.version += 1;
                    ledger = next;
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, persist);
criterion_main!(benches);
