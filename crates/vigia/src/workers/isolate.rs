//! Poison messages on `READINGS`: a message the store refuses every time
//! (it decodes, but some write it implies fails) must not hold up the
//! messages behind it, and must not disappear either.
//!
//! After [`AFTER_ATTEMPTS`] failed tries of a whole batch the persister
//! splits it in halves, and those in halves, applying every part that the
//! store takes, in log order. A single message that still fails is only
//! called poison if the store takes a write of its own right then (the
//! ledger rewritten as it is): a store that is down or refusing all writes
//! fails the probe, and the batch goes back to waiting in JetStream.
//!
//! Poison is kept the way garbage payloads are: as one `error` event of the
//! subject's tag with the reason and the raw bytes. If the store refuses even
//! that, the message goes to `deadletter.readings.persister` and the
//! `dead_letter` table, and the ledger marks it decided so it is not retried.

use anyhow::Context;
use vigia_bus::{Bus, Delivery, READINGS};
use vigia_domain::{EventId, LogEvent, Projection, Reading, StoredEvent, Tag, decode_message};
use vigia_store::{DeadLetter, Store, StoreError};

use super::persister::{Applied, apply_batch, commit_decoded};

/// Whole-batch attempts before the batch is split.
pub(crate) const AFTER_ATTEMPTS: u32 = 3;

const CONSUMER: &str = "persister";

/// Applies `batch` part by part, setting aside messages the store refuses.
/// Fails (and applies nothing more) as soon as the store refuses a probe write.
pub(crate) async fn apply(bus: &Bus, store: &Store, ledger_key: &str, batch: &[Delivery]) -> anyhow::Result<Applied> {
    let mut total = Applied::default();
    // Halves pushed right first, so parts are applied in log order.
    let mut parts = vec![batch];
    while let Some(part) = parts.pop() {
        match apply_batch(store, ledger_key, part).await {
            Ok(applied) => total.add(applied),
            Err(_) if part.len() > 1 => {
                let (left, right) = part.split_at(part.len() / 2);
                parts.push(right);
                parts.push(left);
            }
            Err(e) => {
                probe(store, ledger_key).await.context("the store refuses writes, not just this message")?;
                total.add(set_aside(bus, store, ledger_key, &part[0], &e).await?);
            }
        }
    }
    Ok(total)
}

/// A write the store must take if it takes any: the ledger, rewritten unchanged.
async fn probe(store: &Store, ledger_key: &str) -> Result<(), StoreError> {
    let ledger = store.ledger(ledger_key).await?;
    match store.commit(ledger_key, ledger.version, &ledger, &Projection::default()).await {
        Ok(()) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Keeps a refused message as an error event, or else as a dead letter.
async fn set_aside(
    bus: &Bus,
    store: &Store,
    ledger_key: &str,
    d: &Delivery,
    refusal: &StoreError,
) -> anyhow::Result<Applied> {
    let reason = format!("the store refused this message: {refusal}");
    let is_reading = matches!(
        decode_message(d.subject(), d.event(), d.version(), d.payload(), d.published_ms),
        LogEvent::Readings(_)
    );
    if is_reading && let Ok(tag) = Tag::parse(d.subject()) {
        let reading = Reading::error(tag, d.published_ms, reason.clone(), d.payload());
        let event = StoredEvent { id: EventId { seq: d.seq, idx: 0 }, reading };
        match commit_decoded(store, ledger_key, &[(d.seq, vec![event])]).await {
            Ok(applied) => {
                tracing::error!(seq = d.seq, subject = d.subject(), %refusal, "The store refused a message; kept as an error event.");
                return Ok(applied);
            }
            Err(e) => tracing::error!(seq = d.seq, error = %e, "The store refused the message's error event too."),
        }
    }
    tracing::error!(seq = d.seq, subject = d.subject(), %refusal, "The store refused a message; dead-lettered.");
    let dead = DeadLetter::new(READINGS, CONSUMER, d.seq, d.subject(), &reason, d.payload(), d.published_ms);
    store.record_dead_letter(&dead).await?;
    bus.publisher().dead_letter(READINGS, CONSUMER, d, &reason).await?;
    Ok(commit_decoded(store, ledger_key, &[(d.seq, Vec::new())]).await?)
}
