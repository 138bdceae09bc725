//! The persister: pulls `READINGS`, decodes and projects while the previous
//! flush is being committed, commits each flush in one transaction with its
//! ledger entry, then acks.
//!
//! Flushes are cut by group commit: while one flush commits, everything that
//! arrives goes into the next one (up to `flush_events`), so a busy stream
//! makes big, cheap flushes and a quiet one makes small, quick ones. Behind
//! a backlog (the stream holds at least a pull's worth more), a flush waits
//! to fill before it commits: each flush rewrites every aggregate record it
//! touches, so many small flushes of a drain wrote the same records over and
//! over (memory of the store's memtable, and time).
//!
//! Behind a backlog two stages run at once: each full pull is decoded and
//! projected on a blocking thread (the fetch task) and its projection merged
//! into the next flush's, while the commit task merges the current flush
//! into the stored records and writes them. Projecting inside the commit made
//! the commit task the one serial limit of a backfill (docs/performance.md).
//! Live traffic (pulls the wait cuts short) is projected inside the commit,
//! so the persister keeps to one core beside the API.
//!
//! With `[alerts] consumer = "persister"` the alerter is one more stage
//! between the pulls and the flushes ([`judge`]): in one process, reading
//! every message once for both beat a second consumer that nats-server had
//! to feed the same messages (docs/performance.md).
//!
//! Exactly-once comes from the ledger, not from acks: a message whose
//! sequence the ledger holds is skipped, and the ledger moves in the same
//! transaction as the changes, so a crash between commit and ack, a
//! redelivery, or a second persister on the same consumer never counts twice.
//! Acks are one per flush (the shipped `"ack_policy": "all"`) that never
//! passes a sequence the ledger lacks (`acks.rs`), so they cannot
//! acknowledge a message nobody stored; or one per message (`"explicit"`).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigia_bus::{Batcher, Bus, Delivery, READINGS, Receipt};
use vigia_domain::{Change, EventId, LogEvent, Projection, Status, StoredEvent, Tag, decode_message, mark_backfill};
use vigia_store::{ChangeOutcome, Store, StoreError, Writer};

use super::acks::{Acks, Stranded, unstick};
use super::alerter::{Alerter, judge_until_done};
use super::retention::Retainer;
use super::{ack_all, isolate, retry_backoff};

pub use vigia_store::Applied;
/// Ledger key of the readings projection.
pub use vigia_store::READINGS_LEDGER;

/// Batch bounds.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Most messages per pull.
    pub size: usize,
    /// Longest wait for a pull batch to fill.
    pub wait: Duration,
    /// Most events in one flush (one transaction).
    pub flush_events: usize,
    /// Readings older than this when they reach the log are backfill.
    pub freshness: Duration,
}

impl BatchOptions {
    /// The most messages the persister holds unacknowledged, whatever the
    /// backlog: a flush committing and the next filling (each up to
    /// `flush_events` plus the pull that crossed it), two pulls queued, one
    /// being decoded, one the pull subscription has buffered, and, when the
    /// alerter judges the persister's pulls, one queued to be judged and one
    /// being judged.
    pub fn max_in_hand(&self) -> usize {
        2 * (self.flush_events + self.size) + 6 * self.size
    }

    /// Payload bytes after which a pull batch ends: about `flush_events`
    /// readings of a JSON batch (50 to 90 bytes each). Without it a deep
    /// backlog of 5,000-reading messages came as one pull of `size`
    /// messages, millions of readings decoded at once and committed as one
    /// transaction (a 10,000,000-event backfill stalled 30 s on one flush
    /// of 6 million events; docs/performance.md).
    pub fn max_bytes(&self) -> usize {
        self.flush_events.saturating_mul(64)
    }
}

/// Longest wait for the next pull while a flush fills behind a backlog. A
/// pull of 5,000 messages takes about 50 ms at 100,000 messages/s, so a
/// shorter wait cut flushes short; the wait only guards against pulls that
/// stopped (the consumer's limit of unacknowledged messages, say).
const FILL_PATIENCE: Duration = Duration::from_millis(500);

/// A message as the persister applies it.
#[derive(Debug)]
pub enum Item {
    /// Readings (none for a message that only needs marking applied).
    Readings(u64, Vec<StoredEvent>),
    /// A correction or retraction, applied alone and in log order.
    Change(u64, Tag, Change),
}

impl Item {
    /// Decodes a delivered message; readings older than `freshness` when
    /// they reached the log are marked backfill.
    pub fn of(d: &Delivery, freshness: Duration) -> Item {
        match decode_message(d.subject(), d.event(), d.version(), d.payload(), d.published_ms) {
            LogEvent::Change(tag, change) => Item::Change(d.seq, tag, change),
            other => Item::Readings(d.seq, events_of(d, other.into_readings(), freshness)),
        }
    }

    /// The message's readings as events (none for a correction or retraction).
    fn readings(&self) -> &[StoredEvent] {
        match self {
            Item::Readings(_, evs) => evs,
            Item::Change(..) => &[],
        }
    }

    fn events(&self) -> usize {
        self.readings().len()
    }
}

fn numbered(seq: u64, readings: Vec<vigia_domain::Reading>) -> Vec<StoredEvent> {
    readings
        .into_iter()
        .enumerate()
        .map(|(i, reading)| StoredEvent { id: EventId { seq, idx: i as u32 }, reading })
        .collect()
}

/// A message's readings as events with their log ids, backfill marked.
fn events_of(d: &Delivery, mut readings: Vec<vigia_domain::Reading>, freshness: Duration) -> Vec<StoredEvent> {
    mark_backfill(&mut readings, d.backfill(), d.published_ms, freshness.as_millis() as i64);
    numbered(d.seq, readings)
}

/// The projection of a pull's readings; `None` when it holds a correction or
/// retraction (those apply in log order, one by one, and project themselves).
fn project(items: &[Item]) -> Option<Projection> {
    if items.iter().any(|item| matches!(item, Item::Change(..))) {
        return None;
    }
    Some(Projection::of(items.iter().flat_map(Item::readings)))
}

/// Applies items the ledger does not hold yet: runs of readings in one
/// transaction each, every correction or retraction in its own, in log order.
/// `projected`, when given, is the projection of all the items' readings
/// (there must be no corrections among them).
pub async fn apply_items(
    writer: &mut Writer,
    items: &[Item],
    projected: Option<&Projection>,
) -> Result<Applied, StoreError> {
    let mut total = Applied::default();
    let mut run: Vec<(u64, &[StoredEvent])> = Vec::new();
    for item in items {
        match item {
            Item::Readings(seq, evs) => run.push((*seq, evs)),
            Item::Change(seq, tag, change) => {
                if !run.is_empty() {
                    total.add(writer.apply(&run).await?);
                    run.clear();
                }
                let outcome = writer.change(*seq, tag, change).await?;
                if outcome == ChangeOutcome::NoTarget {
                    let target = change.body().target;
                    tracing::warn!(seq, %target, %tag, "A change names no stored event; recorded as applied.");
                }
                let skipped = usize::from(outcome == ChangeOutcome::Held);
                total.add(Applied { messages: 1, events: 0, skipped });
            }
        }
    }
    if !run.is_empty() {
        let projected = projected.filter(|_| run.len() == items.len());
        total.add(writer.apply_projected(&run, projected).await?);
    }
    Ok(total)
}

/// Decodes and applies delivered messages (replay and tests).
pub async fn apply_batch(writer: &mut Writer, batch: &[Delivery], freshness: Duration) -> Result<Applied, StoreError> {
    let items: Vec<Item> = batch.iter().map(|d| Item::of(d, freshness)).collect();
    apply_items(writer, &items, None).await
}

/// Messages in hand: delivered, decoded, not yet acknowledged. Only their
/// receipts are kept, not the deliveries (see [`Receipt`]).
#[derive(Debug)]
pub(crate) struct Flush {
    pub(crate) receipts: Vec<Receipt>,
    pub(crate) items: Vec<Item>,
    events: usize,
    /// The projection of all items, while none is a correction.
    projection: Option<Projection>,
}

impl Default for Flush {
    fn default() -> Flush {
        Flush { receipts: Vec::new(), items: Vec::new(), events: 0, projection: Some(Projection::default()) }
    }
}

/// A pull as the fetch task hands it on: decoded (and, behind a backlog,
/// projected), its deliveries dropped for their receipts.
#[derive(Debug)]
struct Pulled {
    receipts: Vec<Receipt>,
    items: Vec<Item>,
    projection: Option<Projection>,
    /// Messages the stream held beyond the pull's last one.
    behind: u64,
}

impl Pulled {
    fn of(batch: Vec<Delivery>, freshness: Duration, project_it: bool) -> Pulled {
        let items: Vec<Item> = batch.iter().map(|d| Item::of(d, freshness)).collect();
        let projection = if project_it { project(&items) } else { None };
        let behind = batch.last().map_or(0, |d| d.pending);
        Pulled { receipts: batch.iter().map(Delivery::receipt).collect(), items, projection, behind }
    }
}

impl Flush {
    /// Adds a pull; its projection is merged on a blocking thread, so the
    /// merge runs beside the commit rather than on the writers' thread.
    async fn add(&mut self, Pulled { receipts, items, projection, .. }: Pulled) -> anyhow::Result<()> {
        self.events += items.iter().map(Item::events).sum::<usize>();
        self.receipts.extend(receipts);
        self.items.extend(items);
        self.projection = match (self.projection.take(), projection) {
            (Some(mine), Some(p)) if mine.events == 0 => Some(p),
            (Some(mut mine), Some(p)) => Some(
                tokio::task::spawn_blocking(move || {
                    mine.merge(p);
                    mine
                })
                .await?,
            ),
            _ => None,
        };
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.receipts.is_empty()
    }
}

/// What a commit task hands back: the writer, the flush, and how it went
/// (`None` when it gave up because the persister is stopping).
type Committed = (Sink, Flush, Option<Applied>, Duration);

/// Where flushes go: the writer, and the retention that runs between flushes.
#[derive(Debug)]
struct Sink {
    writer: Writer,
    retainer: Retainer,
}

/// Commits one flush, retrying (and, after repeated failures, isolating poison
/// messages) until it is stored or `stop` is cancelled.
async fn commit(bus: Bus, mut sink: Sink, flush: Flush, stop: CancellationToken) -> anyhow::Result<Committed> {
    let mut attempt = 0u32;
    let writer = &mut sink.writer;
    loop {
        let started = Instant::now();
        let result = match attempt {
            // A flush the store keeps refusing may hold one message it will
            // never take: find it, if the store still takes other writes.
            a if a >= isolate::AFTER_ATTEMPTS => isolate::apply(&bus, writer, &flush).await,
            _ => apply_items(writer, &flush.items, flush.projection.as_ref()).await.map_err(anyhow::Error::from),
        };
        match result {
            Ok(applied) => {
                let took = started.elapsed();
                sink.retainer.run_if_due(writer, now_ms()).await;
                return Ok((sink, flush, Some(applied), took));
            }
            Err(e) => {
                vigia_api::PERSISTER.store_error();
                attempt += 1;
                tracing::warn!(error = %format_args!("{e:#}"), attempt, "Store write failed; the flush stays in JetStream and will be retried.");
                writer.forget();
                if !retry_backoff(&bus, &flush.receipts, attempt, &stop).await {
                    return Ok((sink, flush, None, started.elapsed()));
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Pulls batches, decodes them and sends them into `tx` until `stop`; then
/// gives back what it pulled but did not hand on.
///
/// A full pull (by count or bytes) means a backlog: it is decoded and
/// projected on a blocking thread, beside the commit. A pull the wait cut
/// short is live traffic: it is only decoded, here, and the commit projects
/// it. Projecting beside the commit lets the persister take a second core,
/// which a backlog needs and live HTTP ingest must leave to the API (p99 at
/// 1,000 connections rose from 88 to 96 to 105 ms when every pull was
/// projected apart; docs/performance.md).
async fn fetch(
    bus: Bus,
    mut batcher: Batcher,
    tx: mpsc::Sender<Pulled>,
    options: BatchOptions,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let freshness = options.freshness;
    'pulling: loop {
        while let Some(batch) = batcher.next(&stop).await? {
            let bytes: usize = batch.iter().map(|d| d.payload().len()).sum();
            let pulled = if batch.len() >= options.size || bytes >= options.max_bytes() {
                tokio::task::spawn_blocking(move || Pulled::of(batch, freshness, true)).await?
            } else {
                Pulled::of(batch, freshness, false)
            };
            if tx.send(pulled).await.is_err() {
                break 'pulling;
            }
        }
        if stop.is_cancelled() {
            break;
        }
        // A pull ends without a stop when its consumer went away (made again
        // after its ack floor, by this persister or another): pull again.
        tracing::warn!("The persister's consumer went away; pulling from it again.");
        batcher = loop {
            match pull(&bus, options).await {
                Ok(b) => break b,
                Err(e) => tracing::warn!(error = %format_args!("{e:#}"), "The persister's consumer is not back yet."),
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        };
    }
    let released = batcher.release().await;
    tracing::debug!(released, "Fetch stopped.");
    Ok(())
}

/// Feeds the persister decoded pulls: straight from [`fetch`], or, with
/// `alerter` (`[alerts] consumer = "persister"`), through [`judge`] first.
async fn feed(
    bus: Bus,
    batcher: Batcher,
    tx: mpsc::Sender<Pulled>,
    options: BatchOptions,
    alerter: Option<Alerter>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let Some(alerter) = alerter else {
        return fetch(bus, batcher, tx, options, stop).await;
    };
    let (to_judge, judging) = mpsc::channel(1);
    let judged = tokio::spawn(judge(bus.clone(), alerter, judging, tx, stop.clone()));
    fetch(bus, batcher, to_judge, options, stop).await?;
    judged.await?
}

/// Judges each decoded pull's fresh, ok readings, then hands the pull on.
///
/// Judged before the persister takes it, a pull's flush commits, and its
/// ack goes out, only once the alerts its readings raise are published; so
/// an acknowledged message is both stored and judged. The alerter reads what
/// the persister decoded, which is what its own decoding gives
/// (`vigia_domain::readings_to_judge`), and a stage of its own lets the next
/// pull come in and be decoded while alert publishes are being confirmed.
async fn judge(
    bus: Bus,
    mut alerter: Alerter,
    mut rx: mpsc::Receiver<Pulled>,
    tx: mpsc::Sender<Pulled>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    while let Some(pulled) = rx.recv().await {
        let events: Vec<&StoredEvent> = pulled
            .items
            .iter()
            .flat_map(Item::readings)
            .filter(|e| e.reading.status == Status::Ok && !e.reading.backfill)
            .collect();
        // Stopping with alerting failing: the pull goes back unacknowledged.
        if !judge_until_done(&mut alerter, &bus, &events, &pulled.receipts, &stop).await {
            break;
        }
        if tx.send(pulled).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// A pull from the persister's consumer, in batches of `options`.
async fn pull(bus: &Bus, options: BatchOptions) -> anyhow::Result<Batcher> {
    let consumer = bus.consumer(READINGS, "persister").await?;
    Ok(Batcher::new(&consumer, options.size, options.wait).await?.with_max_bytes(options.max_bytes()))
}

/// Runs the persister until `stop`; the flush in hand is finished and acked
/// first. With `alerter`, it judges every pull before the persister takes it.
pub async fn run(
    bus: &Bus,
    store: &Store,
    options: BatchOptions,
    retainer: Retainer,
    alerter: Option<Alerter>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut consumer = bus.consumer(READINGS, "persister").await?;
    let mut acks = Acks::starting(bus, &consumer).await?;
    let batcher = pull(bus, options).await?;
    let judging = alerter.is_some();
    tracing::info!(batch_size = options.size, flush_events = options.flush_events, judging, "Persister started.");
    let (tx, mut rx) = mpsc::channel(2);
    let fetcher = tokio::spawn(feed(bus.clone(), batcher, tx, options, alerter, stop.clone()));
    let mut sink = Some(Sink { writer: Writer::new(store, READINGS_LEDGER), retainer });
    let mut pending = Flush::default();
    let mut in_flight: Option<tokio::task::JoinHandle<anyhow::Result<Committed>>> = None;
    let mut acking: Option<tokio::task::JoinHandle<()>> = None;
    let mut open = true;
    // How far behind the stream was at the last pull, and when it came.
    let (mut behind, mut received_at) = (0u64, tokio::time::Instant::now());
    // While idle, a commit of nothing still gives retention its turn.
    let mut idle = tokio::time::interval(Duration::from_secs(1));
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A floor that stopped short of committed messages is looked into, and
    // now and then the consumer, for messages pending below its floor.
    let mut stranded = Stranded::default();
    let mut look = tokio::time::interval(Duration::from_secs(1));
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let full = pending.events >= options.flush_events || pending.receipts.len() >= options.flush_events;
        // Behind a backlog, fill the flush first, unless pulls stopped coming
        // (the consumer's limit on unacknowledged messages, say).
        let filling = open && !full && behind >= options.size as u64 && received_at.elapsed() < FILL_PATIENCE;
        if in_flight.is_none() && !pending.is_empty() && !filling {
            let flush = std::mem::take(&mut pending);
            let s = sink.take().expect("the writer is home when nothing is in flight");
            in_flight = Some(tokio::spawn(commit(bus.clone(), s, flush, stop.clone())));
        }
        if !open && in_flight.is_none() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(received_at + FILL_PATIENCE), if in_flight.is_none() && filling => {}
            _ = idle.tick(), if open && in_flight.is_none() && pending.is_empty() => {
                let s = sink.take().expect("the writer is home when nothing is in flight");
                in_flight = Some(tokio::spawn(commit(bus.clone(), s, Flush::default(), stop.clone())));
            }
            _ = look.tick(), if matches!(acks, Acks::Cumulative(_)) => {
                let Acks::Cumulative(floor) = &mut acks else { continue };
                if floor.stuck(Instant::now()).is_some() {
                    let looked = match store.ledger(READINGS_LEDGER).await {
                        Ok(ledger) => unstick(bus, &ledger, &mut consumer, floor).await,
                        Err(e) => Err(e.into()),
                    };
                    match looked {
                        Ok(to_ack) => send_acks(bus, to_ack, &mut acking).await,
                        Err(e) => tracing::warn!(error = %format_args!("{e:#}"), floor = floor.floor(), "Could not look into the ack floor; trying again."),
                    }
                } else if floor.highest_held().is_none()
                    && stranded.due()
                    && let Err(e) = stranded.check(bus, &mut consumer).await
                {
                    tracing::warn!(error = %format_args!("{e:#}"), "Could not look for messages stranded below the ack floor.");
                }
            }
            received = rx.recv(), if open && !full => match received {
                Some(pulled) => {
                    behind = pulled.behind;
                    received_at = tokio::time::Instant::now();
                    pending.add(pulled).await?;
                }
                None => open = false,
            },
            done = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                in_flight = None;
                let (s, flush, applied, took) = done??;
                sink = Some(s);
                let Some(applied) = applied else {
                    // Stopping with the store down: leave everything unacked for redelivery.
                    break;
                };
                if flush.is_empty() {
                    continue;
                }
                vigia_api::PERSISTER.batch(applied.events, took);
                tracing::debug!(messages = applied.messages, events = applied.events, skipped = applied.skipped, "Flush stored.");
                let ledger = sink.as_ref().and_then(|s| s.writer.known_ledger());
                let to_ack = acks.committed(flush.receipts, ledger, Instant::now());
                send_acks(bus, to_ack, &mut acking).await;
            }
        }
    }
    drop(rx);
    fetcher.await??;
    if let Some(acking) = acking {
        acking.await.ok();
    }
    tracing::info!("Persister stopped.");
    Ok(())
}

/// Sends acks while the next flush commits, one batch at a time.
async fn send_acks(bus: &Bus, receipts: Vec<Receipt>, acking: &mut Option<tokio::task::JoinHandle<()>>) {
    if receipts.is_empty() {
        return;
    }
    if let Some(previous) = acking.take() {
        previous.await.ok();
    }
    let bus = bus.clone();
    *acking = Some(tokio::spawn(async move {
        if let Err(e) = ack_all(&bus, &receipts).await {
            tracing::warn!(error = %format_args!("{e:#}"), "Acks failed; the ledger skips the redelivery.");
        }
    }));
}
