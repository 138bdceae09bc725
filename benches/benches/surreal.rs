//! What SurrealDB (embedded SurrealKV) charges for the write shapes the store
//! could use: the measurements behind `docs/decisions/0002-aggregates-in-shards.md`.
//!
//! - `upsert_existing/*`: 2,000 rows that already exist, rewritten in one
//!   statement, by `INSERT … ON DUPLICATE KEY UPDATE` (increments, as the old
//!   store did) against `DELETE` + `INSERT` in one transaction (what the
//!   writer does now);
//! - `block_200_events/*`: 2,000 records of 200 events each, the columns as
//!   arrays of values against one `bytes` payload;
//! - `read_records/*`: 385 records of 400 entries by id, arrays against bytes.
//!
//! Run: `cargo bench --workspace --bench surreal`.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surrealdb::Surreal;
use surrealdb::engine::any::Any;
use surrealdb::types::{Array, Bytes, RecordId, SurrealValue, Value};

#[derive(Debug, Clone, SurrealValue)]
struct Counter {
    id: RecordId,
    ok: i64,
    errors: i64,
}

#[derive(Debug, Clone, SurrealValue)]
struct ArrayBlock {
    id: RecordId,
    ts: Vec<i64>,
    seq: Vec<i64>,
    value: Vec<Option<f64>>,
    status: Vec<i64>,
}

#[derive(Debug, Clone, SurrealValue)]
struct BytesBlock {
    id: RecordId,
    n: i64,
    data: Bytes,
}

#[derive(Debug, Clone, SurrealValue)]
struct ArrayShard {
    tags: Vec<String>,
    count: Vec<i64>,
    sum: Vec<f64>,
    min: Vec<f64>,
    max: Vec<f64>,
}

#[derive(Debug, Clone, SurrealValue)]
struct BytesShard {
    data: Bytes,
}

fn id(table: &str, parts: Vec<Value>) -> RecordId {
    RecordId::new(table, Array::from(parts))
}

async fn open(dir: &std::path::Path) -> Surreal<Any> {
    let db = surrealdb::engine::any::connect(format!("surrealkv://{}", dir.join("db").display())).await.unwrap();
    db.use_ns("bench").use_db("bench").await.unwrap();
    db
}

fn surreal(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = rt.block_on(open(dir.path()));

    let mut group = c.benchmark_group("upsert_existing");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(2000));
    let rows: Vec<Counter> = (0..2000)
        .map(|i| Counter { id: RecordId::new("counter", format!("brasil.sul.s{i:04}")), ok: 1, errors: 0 })
        .collect();
    rt.block_on(async { db.query("INSERT INTO counter $rows RETURN NONE").bind(("rows", rows.clone())).await })
        .unwrap();
    group.bench_function("on_duplicate_key_update", |b| {
        b.to_async(&rt).iter(|| async {
            db.query("INSERT INTO counter $rows ON DUPLICATE KEY UPDATE ok += $input.ok, errors += $input.errors RETURN NONE")
                .bind(("rows", rows.clone()))
                .await
                .unwrap()
                .check()
                .unwrap();
        })
    });
    let ids: Vec<RecordId> = rows.iter().map(|r| r.id.clone()).collect();
    group.bench_function("delete_then_insert", |b| {
        b.to_async(&rt).iter(|| async {
            db.query("BEGIN; DELETE $ids RETURN NONE; INSERT INTO counter $rows RETURN NONE; COMMIT;")
                .bind(("ids", ids.clone()))
                .bind(("rows", rows.clone()))
                .await
                .unwrap()
                .check()
                .unwrap();
        })
    });
    group.finish();

    let mut group = c.benchmark_group("block_200_events");
    group.sample_size(10).measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(2000 * 200));
    let mut round = 0i64;
    group.bench_function("arrays", |b| {
        b.to_async(&rt).iter(|| {
            round += 1;
            let blocks: Vec<ArrayBlock> = (0..2000)
                .map(|i| ArrayBlock {
                    id: id("ablock", vec![Value::from_t(i), Value::from_t(round)]),
                    ts: (0..200).map(|x| 1_700_000_000_000 + x).collect(),
                    seq: (0..200).collect(),
                    value: vec![Some(21.5); 200],
                    status: vec![0; 200],
                })
                .collect();
            let db = db.clone();
            async move {
                db.query("INSERT INTO ablock $rows RETURN NONE").bind(("rows", blocks)).await.unwrap().check().unwrap();
            }
        })
    });
    group.bench_function("bytes", |b| {
        b.to_async(&rt).iter(|| {
            round += 1;
            let blocks: Vec<BytesBlock> = (0..2000)
                .map(|i| BytesBlock {
                    id: id("bblock", vec![Value::from_t(i), Value::from_t(round)]),
                    n: 200,
                    data: Bytes::from(vec![7u8; 200 * 16]),
                })
                .collect();
            let db = db.clone();
            async move {
                db.query("INSERT INTO bblock $rows RETURN NONE").bind(("rows", blocks)).await.unwrap().check().unwrap();
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("read_records");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(385));
    let tags: Vec<String> = (0..400).map(|i| format!("brasil.sul.sensor{i:04}")).collect();
    let (mut array_ids, mut bytes_ids) = (Vec::new(), Vec::new());
    for shard in 0..385i64 {
        let a = id("ashard", vec![Value::from_t(shard)]);
        let b = id("bshard", vec![Value::from_t(shard)]);
        let content = ArrayShard {
            tags: tags.clone(),
            count: vec![3; 400],
            sum: vec![1.5; 400],
            min: vec![0.5; 400],
            max: vec![9.5; 400],
        };
        rt.block_on(async {
            db.query("CREATE $id CONTENT $c RETURN NONE").bind(("id", a.clone())).bind(("c", content)).await
        })
        .unwrap();
        let data = BytesShard { data: Bytes::from(vec![1u8; 400 * 48]) };
        rt.block_on(async {
            db.query("CREATE $id CONTENT $c RETURN NONE").bind(("id", b.clone())).bind(("c", data)).await
        })
        .unwrap();
        array_ids.push(a);
        bytes_ids.push(b);
    }
    group.bench_function("arrays", |b| {
        b.to_async(&rt).iter(|| async {
            let rows: Vec<ArrayShard> = db
                .query("SELECT tags, count, sum, min, max FROM $ids")
                .bind(("ids", array_ids.clone()))
                .await
                .unwrap()
                .take(0)
                .unwrap();
            assert_eq!(rows.len(), 385);
        })
    });
    group.bench_function("bytes", |b| {
        b.to_async(&rt).iter(|| async {
            let rows: Vec<BytesShard> =
                db.query("SELECT data FROM $ids").bind(("ids", bytes_ids.clone())).await.unwrap().take(0).unwrap();
            assert_eq!(rows.len(), 385);
        })
    });
    group.finish();
}

criterion_group!(benches, surreal);
criterion_main!(benches);
