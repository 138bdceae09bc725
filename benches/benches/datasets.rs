//! Dataset loads without NATS: 100,000 rows of a 13-column passenger list
//! committed in chunks of 2,000 rows (each chunk's rows and its mark in one
//! transaction, as `vigia load` does) on SurrealKV on disk, with 1, 2, 4 and
//! 8 chunks in flight. One iteration loads the whole file into a new table.
//!
//! Run: `cargo bench --workspace --bench datasets`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::task::JoinSet;
use vigia_domain::{Column, DatasetName, columns};
use vigia_store::{DatasetRecord, JobRecord, Store, StoreConfig};

const ROWS: u64 = 100_000;

/// Chunk commits retried after a conflict, reported at the end.
static RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The file cut into chunks of (position, cells) rows.
type Chunks = Arc<Vec<Vec<(u64, Vec<String>)>>>;
const CHUNK: u64 = 2_000;
const HEADER: [&str; 13] = [
    "PassengerId",
    "Survived",
    "Pclass",
    "Name",
    "Sex",
    "Age",
    "SibSp",
    "Parch",
    "Ticket",
    "Fare",
    "Cabin",
    "Embarked",
    "Home / Destination",
];

fn row(i: u64) -> Vec<String> {
    vec![
        (i + 1).to_string(),
        (i % 2).to_string(),
        (i % 3 + 1).to_string(),
        format!("Braund, Mr. Owen Harris {i}"),
        if i.is_multiple_of(3) { "female" } else { "male" }.to_owned(),
        if i.is_multiple_of(5) { String::new() } else { (i % 80).to_string() },
        (i % 4).to_string(),
        (i % 3).to_string(),
        format!("A/5 {}", 21_000 + i),
        format!("{:.4}", (i % 50_000) as f64 / 100.0),
        if i.is_multiple_of(4) { format!("C{}", i % 150) } else { String::new() },
        ["S", "C", "Q"][(i % 3) as usize].to_owned(),
        "Bridgerule, Devon".to_owned(),
    ]
}

async fn load(store: &Store, name: &DatasetName, cols: &Arc<Vec<Column>>, chunks: &Chunks, parallel: usize) {
    let job = format!("load-{}", name.as_str());
    let record = DatasetRecord {
        name: name.to_string(),
        object: format!("{job}.csv"),
        digest: job.clone(),
        size: 0,
        columns: cols.iter().map(|c| c.name.clone()).collect(),
        headers: cols.iter().map(|c| c.header.clone()).collect(),
        job: job.clone(),
        state: "loading".into(),
        rows: None,
        created_ms: 0,
    };
    let job_record = JobRecord::queued(&job, name, 0);
    assert!(store.register_dataset(&record, &job_record).await.unwrap());
    let mut running = JoinSet::new();
    for n in 0..chunks.len() {
        while running.len() >= parallel {
            running.join_next().await.unwrap().unwrap();
        }
        let (store, name, job, cols, chunks) = (store.clone(), name.clone(), job.clone(), cols.clone(), chunks.clone());
        running.spawn(async move {
            // As the loader does: concurrent transactions may conflict on the
            // engine (the first ones create the table); a retry settles it.
            for attempt in 0.. {
                match store.commit_chunk(&name, &job, n as u64, &cols, &chunks[n]).await {
                    Ok(()) => return,
                    Err(e) if attempt < 5 => {
                        RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    }
                    Err(e) => panic!("chunk {n}: {e}"),
                }
            }
        });
    }
    while let Some(done) = running.join_next().await {
        done.unwrap();
    }
}

fn datasets(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cols = Arc::new(columns(&HEADER).unwrap());
    let chunks: Chunks =
        Arc::new((0..ROWS / CHUNK).map(|n| (n * CHUNK..(n + 1) * CHUNK).map(|i| (i, row(i))).collect()).collect());
    let mut group = c.benchmark_group("dataset_load");
    group.sample_size(10).measurement_time(Duration::from_secs(30)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(ROWS));
    for parallel in [1usize, 2, 4, 8] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("surrealkv://{}", dir.path().join("db").display());
        let store = rt.block_on(Store::open(&StoreConfig { url, ..StoreConfig::memory() })).unwrap();
        let mut next = 0u64;
        group.bench_function(BenchmarkId::new("surrealkv_chunks_in_flight", parallel), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    next += 1;
                    let name = DatasetName::parse(&format!("bench_{parallel}_{next}")).unwrap();
                    let start = Instant::now();
                    rt.block_on(load(&store, &name, &cols, &chunks, parallel));
                    spent += start.elapsed();
                }
                spent
            })
        });
        drop(store);
        println!(
            "chunks in flight {parallel}: {} commits retried so far",
            RETRIES.load(std::sync::atomic::Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    group.finish();
}

criterion_group!(benches, datasets);
criterion_main!(benches);
