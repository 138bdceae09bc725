//! Payload decoding and tag parsing, per input shape, in full (the
//! persister) and for judging (the alerter: fresh, ok readings only).
//! Run: `cargo bench --workspace --bench decode`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vigia_domain::{
    BatchItem, READINGS_RECORDED, Reading, Tag, decode_message, decode_payload, encode_batch, readings_to_judge,
};

fn decode(c: &mut Criterion) {
    let tag = Tag::parse("brasil.sudeste.sensor01").unwrap();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    let shapes: [(&str, &[u8]); 4] = [
        ("hierarchical", br#"{"timestamp": 1539112021301, "tag": "brasil.sudeste.sensor01", "valor": "42"}"#),
        ("equipment", br#"{"equipmentId": "EQ-12495", "value": 78.42, "timestamp": "2023-02-15T01:30:00.000-05:00"}"#),
        ("metering", br#"{"device_id": "device-7", "value": 55, "unit": "kWh", "timestamp": 1700000000}"#),
        ("garbage", b"\xff\xfe not json"),
    ];
    for (name, payload) in shapes {
        group.bench_function(name, |b| b.iter(|| decode_payload(black_box(&tag), black_box(payload), 0)));
        group.bench_function(format!("{name}_to_judge"), |b| {
            b.iter(|| readings_to_judge(tag.as_str(), None, None, black_box(payload), 0, false, FRESHNESS_MS))
        });
    }
    group.bench_function("tag_parse", |b| b.iter(|| Tag::parse(black_box("brasil.sudeste.sensor01"))));
    let items: Vec<BatchItem> =
        (0..1000).map(|i| BatchItem::from(&Reading::number(tag.clone(), 1_700_000_000_000 + i, i as f64))).collect();
    let body = encode_batch(&items);
    group.throughput(Throughput::Elements(1000));
    group.bench_function("batch_of_1000", |b| {
        b.iter(|| decode_message("brasil.sudeste", Some(READINGS_RECORDED), Some("1"), black_box(&body), 0))
    });
    // Judged live, and as a backfill an hour old (judged readings: none).
    for (name, broker_ms) in
        [("batch_of_1000_to_judge", 1_700_000_000_000), ("backfill_of_1000_to_judge", 1_700_003_600_000)]
    {
        group.bench_function(name, |b| {
            b.iter(|| {
                let r = readings_to_judge(
                    "brasil.sudeste",
                    Some(READINGS_RECORDED),
                    Some("1"),
                    black_box(&body),
                    broker_ms,
                    false,
                    FRESHNESS_MS,
                );
                assert_eq!(r.len(), if broker_ms == 1_700_000_000_000 { 1000 } else { 0 });
                r
            })
        });
    }
    group.finish();
}

/// The shipped freshness window, five minutes.
const FRESHNESS_MS: i64 = 300_000;

criterion_group!(benches, decode);
criterion_main!(benches);
