//! The persister's CPU work per pull, without NATS or a store: decoding a
//! pull of device messages, projecting it (blocks, rollups, traffic,
//! registry, counters), and merging ten pulls' projections into one flush,
//! as `vigia up` does behind a backlog. Messages are the simulator's three
//! shapes over 2,000 sensors, one reading each, one second apart per sensor;
//! and one sensor's backfill, 50,000 minutes of one tag in one projection.
//!
//! Run: `cargo bench --workspace --bench project`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vigia_domain::{EventId, Projection, StoredEvent, decode_message};

const SENSORS: u64 = 2000;
const PULL: u64 = 5000;

/// Message `seq` as a simulated device sends it: subject and payload.
fn message(seq: u64) -> (String, Vec<u8>) {
    let regions = ["norte", "nordeste", "centro-oeste", "sudeste", "sul"];
    let sensor = seq % SENSORS;
    let subject = format!("brasil.{}.sensor{sensor:04}", regions[(sensor % 5) as usize]);
    let ts = 1_700_000_000_000 + (seq / SENSORS) as i64 * 1000;
    let value = (seq % 90) as f64 + 0.5;
    let payload = match seq % 3 {
        0 => format!(r#"{{"tag":"{subject}","timestamp":{ts},"valor":"{value}"}}"#),
        1 => format!(r#"{{"equipmentId":"sensor{sensor:04}","timestamp":{ts},"value":{value}}}"#),
        _ => format!(r#"{{"device_id":"sensor{sensor:04}","timestamp":{},"unit":"kWh","value":{value}}}"#, ts / 1000),
    };
    (subject, payload.into_bytes())
}

fn decode_pull(first: u64) -> Vec<StoredEvent> {
    (first..first + PULL)
        .flat_map(|seq| {
            let (subject, payload) = message(seq);
            let readings = decode_message(&subject, None, None, &payload, 0).into_readings();
            readings
                .into_iter()
                .enumerate()
                .map(move |(i, reading)| StoredEvent { id: EventId { seq, idx: i as u32 }, reading })
        })
        .collect()
}

/// One sensor's backfill: 50,000 readings a minute apart (about 35 days),
/// as a CSV import of one device arrives, in one flush.
fn one_sensor_backfill() -> Vec<StoredEvent> {
    (0..50_000u64)
        .map(|seq| {
            let payload =
                format!(r#"{{"timestamp":{},"value":{}.5}}"#, 1_700_000_000_000 + seq as i64 * 60_000, seq % 90);
            let mut readings =
                decode_message("brasil.sul.sensor0001", None, None, payload.as_bytes(), 0).into_readings();
            StoredEvent { id: EventId { seq: seq + 1, idx: 0 }, reading: readings.remove(0) }
        })
        .collect()
}

fn project(c: &mut Criterion) {
    let mut group = c.benchmark_group("project");
    let pulls: Vec<Vec<StoredEvent>> = (0..10).map(|k| decode_pull(1 + k * PULL)).collect();
    group.throughput(Throughput::Elements(PULL));
    group.bench_function(BenchmarkId::new("pull", PULL), |b| b.iter(|| Projection::of(black_box(&pulls[0]))));
    group.throughput(Throughput::Elements(10 * PULL));
    group.bench_function(BenchmarkId::new("flush_of_ten_pulls", 10 * PULL), |b| {
        b.iter(|| {
            let mut flush = Projection::default();
            for pull in &pulls {
                flush.merge(Projection::of(black_box(pull)));
            }
            flush
        })
    });
    let backfill = one_sensor_backfill();
    group.throughput(Throughput::Elements(backfill.len() as u64));
    group.bench_function(BenchmarkId::new("one_sensor_backfill", backfill.len()), |b| {
        b.iter(|| Projection::of(black_box(&backfill)))
    });
    group.finish();
}

criterion_group!(benches, project);
criterion_main!(benches);
