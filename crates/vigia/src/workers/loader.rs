//! The dataset loader: takes load jobs from the `JOBS` work queue, reads the
//! uploaded file back from the `datasets` object store, and inserts its rows
//! into `dataset_<name>` in chunks, several at once.
//!
//! Each chunk is committed with its mark in one transaction (see
//! `vigia_store` datasets), so a loader killed at any point leaves whole
//! chunks only. The job is acknowledged only once every chunk is in; until
//! then JetStream redelivers it after the ack wait, and the next attempt
//! skips the chunks already committed. The file is parsed again from the
//! start on each attempt (positions must be known), but nothing is inserted twice.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigia_bus::{Batcher, BlockingReader, Bus, Delivery, JOBS};
use vigia_domain::{Column, DatasetName, LoadJob};
use vigia_store::Store;

/// The durable consumer on `JOBS`.
pub const CONSUMER: &str = "loader";

/// How a load is cut up.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Rows per chunk (one transaction each).
    pub chunk_rows: usize,
    /// Chunks committed at once.
    pub parallelism: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { chunk_rows: 2_000, parallelism: 2 }
    }
}

/// Runs the loader until `stop`. A job in hand when `stop` comes is given
/// back (nak'd) between chunks, to be resumed by the next loader.
pub async fn run(bus: &Bus, store: &Store, options: LoadOptions, stop: CancellationToken) -> anyhow::Result<()> {
    let consumer = bus.consumer(JOBS, CONSUMER).await?;
    // Progress resets the ack wait; three per wait keep a long load ours.
    let heartbeat = consumer.cached_info().config.ack_wait.max(Duration::from_millis(300)) / 3;
    let mut batcher = Batcher::new(&consumer, 1, Duration::ZERO).await?;
    tracing::info!(chunk_rows = options.chunk_rows, parallelism = options.parallelism, "Dataset loader started.");
    while let Some(batch) = batcher.next(&stop).await? {
        for d in &batch {
            handle(bus, store, options, heartbeat, d, &stop).await;
        }
    }
    tracing::info!("Dataset loader stopped.");
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Loads one job and settles its message: ack when done or hopeless, nak to retry.
async fn handle(
    bus: &Bus,
    store: &Store,
    options: LoadOptions,
    heartbeat: Duration,
    d: &Delivery,
    stop: &CancellationToken,
) {
    let job = match LoadJob::decode(d.payload()) {
        Ok(job) => job,
        Err(reason) => {
            tracing::error!(seq = d.seq, %reason, "A message on JOBS is not a load job; dropping it from the queue.");
            let _ = d.ack().await;
            return;
        }
    };
    // Keep the job ours while we work: each progress restarts the ack wait.
    // In this future, not a task of its own, so that a loader that dies
    // stops confirming at once and the job comes back after one ack wait.
    let loading = load(bus, store, options, &job, stop);
    tokio::pin!(loading);
    let outcome = loop {
        tokio::select! {
            outcome = &mut loading => break outcome,
            _ = tokio::time::sleep(heartbeat) => {
                let _ = d.progress().await;
            }
        }
    };
    let settled = match outcome {
        Ok(Some((chunks, rows))) => {
            tracing::info!(job = %job.job, dataset = %job.dataset, rows, chunks, "Dataset loaded.");
            match store.job_finished(&job.job, Ok((chunks, rows)), now_ms()).await {
                Ok(()) => d.ack().await.map_err(anyhow::Error::from),
                Err(e) => d.nak(Duration::from_secs(1)).await.map_err(anyhow::Error::from).and(Err(e.into())),
            }
        }
        Ok(None) => d.ack().await.map_err(anyhow::Error::from),
        Err(e) if stop.is_cancelled() => {
            tracing::info!(job = %job.job, reason = format!("{e:#}"), "Stopping: the job goes back to the queue.");
            d.nak(Duration::ZERO).await.map_err(anyhow::Error::from)
        }
        Err(e) => {
            let reason = format!("{e:#}");
            let last_try = d.delivered >= MAX_DELIVER;
            tracing::warn!(job = %job.job, attempt = d.delivered, last_try, %reason, "Dataset load failed.");
            if last_try {
                let _ = store.job_finished(&job.job, Err(reason), now_ms()).await;
                d.ack().await.map_err(anyhow::Error::from)
            } else {
                let _ = store.job_retrying(&job.job, &reason).await;
                d.nak(Duration::from_secs(1)).await.map_err(anyhow::Error::from)
            }
        }
    };
    if let Err(e) = settled {
        tracing::warn!(job = %job.job, error = format!("{e:#}"), "Could not settle the job; it will be redelivered.");
    }
}

/// Attempts before a job is marked failed: `max_deliver` of `nats/consumers/jobs/loader.json`.
const MAX_DELIVER: i64 = 10;

/// Loads what is not loaded yet. `None`: nothing to do (done before, or the dataset was deleted).
async fn load(
    bus: &Bus,
    store: &Store,
    options: LoadOptions,
    job: &LoadJob,
    stop: &CancellationToken,
) -> anyhow::Result<Option<(u64, u64)>> {
    let Some(progress) = store.job(&job.job).await? else {
        tracing::warn!(job = %job.job, "Unknown job; dropping it from the queue.");
        return Ok(None);
    };
    if progress.job.state == "done" {
        return Ok(None);
    }
    let name = DatasetName::parse(&job.dataset).map_err(|e| anyhow::anyhow!(e))?;
    let Some(dataset) = store.dataset(&name).await?.filter(|d| d.job == job.job) else {
        store.job_finished(&job.job, Err("the dataset was deleted before it was loaded".into()), now_ms()).await?;
        return Ok(None);
    };
    let columns = dataset.columns();
    let committed = store.committed_chunks(&job.job).await?;
    let chunk_rows = store
        .job_started(&job.job, committed.len() as u64, options.chunk_rows as u64, options.parallelism as u64, now_ms())
        .await? as usize;
    if !committed.is_empty() {
        tracing::info!(job = %job.job, skipped = committed.len(), "Resuming a load after its last committed chunks.");
    }

    let mut object = bus.open_dataset_object(&job.object).await?;
    let (bytes_tx, bytes_rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(options.parallelism.max(1) * 2);
    let width = columns.len();
    let skip = committed.clone();
    let parser =
        tokio::task::spawn_blocking(move || parse(BlockingReader::new(bytes_rx), width, chunk_rows, &skip, &chunk_tx));
    let feed = async move {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match object.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    if bytes_tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = bytes_tx.send(Err(e)).await;
                    return;
                }
            }
        }
    };
    let commit = async {
        let chunks = tokio_stream_of(chunk_rx);
        let mut results = chunks
            .map(|chunk| commit_chunk(store, &name, &job.job, &columns, chunk, stop))
            .buffer_unordered(options.parallelism.max(1));
        let mut failure = None;
        while let Some(result) = results.next().await {
            if let Err(e) = result {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    };
    let ((), committed_now) = tokio::join!(feed, commit);
    let parsed = parser.await.context("the CSV parser panicked")?;
    committed_now?;
    let totals = parsed?;
    let done = store.committed_chunks(&job.job).await?;
    anyhow::ensure!(
        done.len() as u64 == totals.chunks,
        "{} of {} chunks are committed after the load",
        done.len(),
        totals.chunks
    );
    Ok(Some((totals.chunks, totals.rows)))
}

/// A chunk of rows to commit: its number and (position, cells) rows.
struct Chunk {
    n: u64,
    rows: Vec<(u64, Vec<String>)>,
}

async fn commit_chunk(
    store: &Store,
    name: &DatasetName,
    job: &str,
    columns: &[Column],
    chunk: Chunk,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let mut attempt = 0u32;
    loop {
        anyhow::ensure!(!stop.is_cancelled(), "stopping before chunk {}", chunk.n);
        match store.commit_chunk(name, job, chunk.n, columns, &chunk.rows).await {
            Ok(()) => return Ok(()),
            // Parallel transactions can conflict on the engine; a few tries settle it.
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(chunk = chunk.n, attempt, error = %e, "Chunk commit failed; retrying.");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("committing chunk {} of {}", chunk.n, name.table())),
        }
    }
}

fn tokio_stream_of<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// What the parser saw of the whole file.
#[derive(Debug)]
struct Totals {
    chunks: u64,
    rows: u64,
}

/// Runs on a blocking thread: reads the CSV after its header, cuts rows into
/// chunks and sends those not in `skip`. Cells are padded or cut to the
/// header's width; bytes that are not UTF-8 become U+FFFD.
fn parse(
    reader: BlockingReader,
    width: usize,
    chunk_rows: usize,
    skip: &BTreeSet<u64>,
    tx: &mpsc::Sender<Chunk>,
) -> anyhow::Result<Totals> {
    let mut csv = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(reader);
    csv.byte_headers().context("reading the header")?;
    let (mut n, mut position) = (0u64, 0u64);
    let mut rows = Vec::with_capacity(chunk_rows);
    let mut record = csv::ByteRecord::new();
    let send = |n: u64, rows: Vec<(u64, Vec<String>)>| -> anyhow::Result<()> {
        if !skip.contains(&n) {
            tx.blocking_send(Chunk { n, rows }).map_err(|_| anyhow::anyhow!("the load stopped"))?;
        }
        Ok(())
    };
    while csv.read_byte_record(&mut record).with_context(|| format!("reading row {}", position + 1))? {
        let mut cells: Vec<String> =
            record.iter().take(width).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        cells.resize(width, String::new());
        rows.push((position, cells));
        position += 1;
        if rows.len() == chunk_rows {
            send(n, std::mem::replace(&mut rows, Vec::with_capacity(chunk_rows)))?;
            n += 1;
        }
    }
    if !rows.is_empty() {
        send(n, rows)?;
        n += 1;
    }
    Ok(Totals { chunks: n, rows: position })
}
