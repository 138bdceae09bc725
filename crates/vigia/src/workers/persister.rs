//! The persister: pulls `READINGS` in batches, applies each batch to the
//! store in one transaction together with its ledger entry, then acks.
//!
//! Exactly-once comes from the ledger, not from acks: a message whose
//! sequence the ledger holds is skipped, and the ledger moves in the same
//! transaction as the changes, so a crash between commit and ack, a
//! redelivery, or a second persister on the same consumer never counts twice.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigia_bus::{Batcher, Bus, Delivery, READINGS};
use vigia_domain::{Change, EventId, LogEvent, Projection, StoredEvent, Tag, decode_message};
use vigia_store::{ChangeOutcome, Store, StoreError};

use super::{ack_all, isolate, retry_backoff};

/// Ledger key of the readings projection.
pub use vigia_store::READINGS_LEDGER;

/// Batch bounds.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    pub size: usize,
    pub wait: Duration,
}

/// What applying a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub messages: usize,
    pub events: u64,
    /// Messages the ledger already held (redeliveries).
    pub skipped: usize,
}

impl Applied {
    pub(crate) fn add(&mut self, other: Applied) {
        self.messages += other.messages;
        self.events += other.events;
        self.skipped += other.skipped;
    }
}

/// Decodes a delivered message into events with their log ids.
pub fn events_of(seq: u64, d: &Delivery) -> Vec<StoredEvent> {
    let readings = decode_message(d.subject(), d.event(), d.version(), d.payload(), d.published_ms).into_readings();
    readings
        .into_iter()
        .enumerate()
        .map(|(i, reading)| StoredEvent { id: EventId { seq, idx: i as u32 }, reading })
        .collect()
}

/// Applies the messages the ledger does not hold yet: runs of readings in one
/// transaction each, every correction or retraction in its own, in log order.
pub async fn apply_batch(store: &Store, ledger_key: &str, batch: &[Delivery]) -> Result<Applied, StoreError> {
    let mut total = Applied::default();
    let mut add = |a: Applied| total.add(a);
    let mut start = 0;
    for (i, d) in batch.iter().enumerate() {
        if let LogEvent::Change(tag, change) =
            decode_message(d.subject(), d.event(), d.version(), d.payload(), d.published_ms)
        {
            add(apply_readings(store, ledger_key, &batch[start..i]).await?);
            add(apply_change(store, ledger_key, d.seq, &tag, &change).await?);
            start = i + 1;
        }
    }
    add(apply_readings(store, ledger_key, &batch[start..]).await?);
    Ok(total)
}

/// Applies one correction or retraction at `seq`, guarded by the ledger.
async fn apply_change(
    store: &Store,
    ledger_key: &str,
    seq: u64,
    tag: &Tag,
    change: &Change,
) -> Result<Applied, StoreError> {
    let mut conflicts = 0u32;
    loop {
        let ledger = store.ledger(ledger_key).await?;
        if ledger.contains(seq) {
            return Ok(Applied { messages: 1, events: 0, skipped: 1 });
        }
        let mut next = ledger.clone();
        next.insert(seq);
        let body = change.body();
        match store
            .change_event(ledger_key, ledger.version, &next, tag.as_str(), body.ts, body.target, |old| {
                change.apply(old)
            })
            .await
        {
            Ok(outcome) => {
                if outcome == ChangeOutcome::NoTarget {
                    tracing::warn!(seq, target = %body.target, %tag, "A change names no stored event; recorded as applied.");
                }
                return Ok(Applied { messages: 1, events: 0, skipped: 0 });
            }
            Err(StoreError::Conflict) => {
                conflicts += 1;
                tokio::time::sleep(Duration::from_millis(u64::from(conflicts.min(20)) * 5)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Applies reading messages the ledger does not hold yet, in one transaction.
/// Retries on conflicts with other writers; other errors are returned.
async fn apply_readings(store: &Store, ledger_key: &str, batch: &[Delivery]) -> Result<Applied, StoreError> {
    let decoded: Vec<(u64, Vec<StoredEvent>)> = batch.iter().map(|d| (d.seq, events_of(d.seq, d))).collect();
    commit_decoded(store, ledger_key, &decoded).await
}

/// Commits messages as the given events (none marks a message applied
/// without events), skipping those the ledger holds, in one transaction.
pub(crate) async fn commit_decoded(
    store: &Store,
    ledger_key: &str,
    decoded: &[(u64, Vec<StoredEvent>)],
) -> Result<Applied, StoreError> {
    let mut conflicts = 0u32;
    loop {
        let ledger = store.ledger(ledger_key).await?;
        let mut next = ledger.clone();
        let mut events = Vec::new();
        let mut applied = Applied { messages: decoded.len(), ..Applied::default() };
        for (seq, evs) in decoded {
            if next.contains(*seq) {
                applied.skipped += 1;
                continue;
            }
            next.insert(*seq);
            events.extend(evs.iter().cloned());
        }
        if next == ledger {
            return Ok(applied);
        }
        applied.events = events.len() as u64;
        let projection = Projection::of(&events);
        match store.commit(ledger_key, ledger.version, &next, &projection).await {
            Ok(()) => return Ok(applied),
            Err(StoreError::Conflict) => {
                conflicts += 1;
                tracing::debug!(conflicts, "Another writer committed first; retrying the batch.");
                tokio::time::sleep(Duration::from_millis(u64::from(conflicts.min(20)) * 5)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs the persister until `stop`; the batch in hand is finished and acked first.
pub async fn run(bus: &Bus, store: &Store, options: BatchOptions, stop: CancellationToken) -> anyhow::Result<()> {
    let consumer = bus.consumer(READINGS, "persister").await?;
    let mut batcher = Batcher::new(&consumer, options.size, options.wait).await?;
    tracing::info!(batch_size = options.size, "Persister started.");
    while let Some(batch) = batcher.next(&stop).await? {
        let mut attempt = 0u32;
        let applied = loop {
            let started = std::time::Instant::now();
            let result = match attempt {
                // A batch the store keeps refusing may hold one message it will
                // never take: find it, if the store still takes other writes.
                a if a >= isolate::AFTER_ATTEMPTS => isolate::apply(bus, store, READINGS_LEDGER, &batch).await,
                _ => apply_batch(store, READINGS_LEDGER, &batch).await.map_err(anyhow::Error::from),
            };
            match result {
                Ok(applied) => {
                    vigia_api::PERSISTER.batch(applied.events, started.elapsed());
                    break Some(applied);
                }
                Err(e) => {
                    vigia_api::PERSISTER.store_error();
                    attempt += 1;
                    tracing::warn!(error = %format_args!("{e:#}"), attempt, "Store write failed; the batch stays in JetStream and will be retried.");
                    if !retry_backoff(bus, &batch, attempt, &stop).await {
                        break None;
                    }
                }
            }
        };
        let Some(applied) = applied else {
            // Stopping with the store down: leave the batch unacked for redelivery.
            break;
        };
        ack_all(bus, &batch).await?;
        tracing::debug!(
            messages = applied.messages,
            events = applied.events,
            skipped = applied.skipped,
            "Batch stored."
        );
    }
    let released = batcher.release().await;
    tracing::info!(released, "Persister stopped.");
    Ok(())
}
