//! The persister's work per flush, without NATS: decode every message as it
//! arrived (one device payload each), project the flush (events in shard
//! blocks, minute/hour/day rollups, traffic, registry and the counters it
//! carries) and commit it with its ledger entry in one transaction, on
//! SurrealKV on disk as `vigia up` runs it. Flushes of 100, 1,000, 5,000 and
//! 50,000 messages over 2,000 sensors, in steady state (each iteration
//! appends the next flush to a growing store, one second later per sensor).
//!
//! Run: `cargo bench --workspace --bench persist`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vigia_domain::{EventId, StoredEvent, decode_message};
use vigia_store::{READINGS_LEDGER, Store, StoreConfig, Writer};

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
    let mut group = c.benchmark_group("persister_flush");
    group.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(3));
    for size in [100u64, 1000, 5000, 50_000] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("surrealkv://{}", dir.path().join("db").display());
        let store = rt.block_on(Store::open(&StoreConfig { url, ..StoreConfig::memory() })).unwrap();
        let mut writer = Writer::new(&store, READINGS_LEDGER);
        let mut next_seq = 1u64;
        group.throughput(Throughput::Elements(size));
        group.bench_function(BenchmarkId::new("surrealkv", format!("{size}_messages")), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let flush = messages(next_seq, size);
                    next_seq += size;
                    let start = Instant::now();
                    let decoded: Vec<(u64, Vec<StoredEvent>)> = flush
                        .iter()
                        .map(|(seq, subject, payload)| {
                            let readings = decode_message(subject, None, None, payload, 0).into_readings();
                            let events = readings
                                .into_iter()
                                .enumerate()
                                .map(|(i, reading)| StoredEvent { id: EventId { seq: *seq, idx: i as u32 }, reading })
                                .collect();
                            (*seq, events)
                        })
                        .collect();
                    let refs: Vec<(u64, &[StoredEvent])> = decoded.iter().map(|(s, e)| (*s, e.as_slice())).collect();
                    rt.block_on(writer.apply(&refs)).unwrap();
                    spent += start.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, persist);
criterion_main!(benches);
