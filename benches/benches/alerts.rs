//! The alert projector's store writes during an alert storm, without NATS:
//! 1,000 alert events (half open new alerts, half clear alerts opened a
//! hundred events earlier, as in a storm whose pulls each carry some alerts
//! opening and some closing), applied to SurrealKV on disk as `vigia up`
//! runs it, in transactions of 1 event (a read and a guarded write per
//! event, as the projector writes an event that arrives alone) and 100 (as
//! it writes a storm; larger runs are split into transactions of 100 by
//! `Store::apply_alerts`).
//!
//! Run: `cargo bench --workspace --bench alerts`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vigia_domain::{AlertEvent, AlertKind, AlertState, EventId, Op, Tag};
use vigia_store::{Store, StoreConfig};

const SENSORS: u64 = 2000;
const EVENTS: u64 = 1000;

/// Event `n` of the storm, in blocks of 50: an even block opens alerts
/// `n`, an odd one clears the alerts the block three before opened (in the
/// previous run of a hundred). Alert `m` is on sensor `m % SENSORS`, opened
/// by reading `m + 1`.
fn event(n: u64) -> AlertEvent {
    let regions = ["norte", "nordeste", "centro-oeste", "sudeste", "sul"];
    let opens = (n / 50).is_multiple_of(2);
    let alert = if opens { n } else { n.saturating_sub(150) };
    let sensor = alert % SENSORS;
    AlertEvent {
        v: 1,
        kind: if opens { AlertKind::Opened } else { AlertKind::Cleared },
        tag: Tag::parse(&format!("brasil.{}.sensor{sensor:04}", regions[(sensor % 5) as usize])).unwrap(),
        rule: "value-above-50".into(),
        op: Op::Gt,
        threshold: 50.0,
        value: if opens { 75.5 } else { 20.5 },
        ts_ms: 1_700_000_000_000 + n as i64 * 500,
        reading: EventId { seq: n + 1, idx: 0 },
        opened_by: EventId { seq: alert + 1, idx: 0 },
        state: AlertState::default(),
    }
}

fn alerts(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("alert_projection");
    group.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(EVENTS));
    for run in [1usize, 100] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("surrealkv://{}", dir.path().join("db").display());
        let store = rt.block_on(Store::open(&StoreConfig { url, ..StoreConfig::memory() })).unwrap();
        let mut next = 0u64;
        group.bench_function(BenchmarkId::new("surrealkv", format!("{run}_per_transaction")), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let events: Vec<AlertEvent> = (next..next + EVENTS).map(event).collect();
                    next += EVENTS;
                    let start = Instant::now();
                    for chunk in events.chunks(run) {
                        rt.block_on(store.apply_alerts(chunk)).unwrap();
                    }
                    spent += start.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, alerts);
criterion_main!(benches);
