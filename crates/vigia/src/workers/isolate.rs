//! Poison messages on `READINGS`: a message the store refuses every time
//! (it decodes, but some write it implies fails) must not hold up the
//! messages behind it, and must not disappear either.
//!
//! After [`AFTER_ATTEMPTS`] failed tries of a whole flush the persister
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
//! The persister keeps only receipts of the messages it holds, so the raw
//! message is read back from the log by its sequence here.

use anyhow::Context;
use vigia_bus::{Bus, READINGS, Receipt};
use vigia_domain::{EventId, Reading, StoredEvent, Tag};
use vigia_store::{Applied, DeadLetter, StoreError, Writer};

use super::persister::{Flush, Item, apply_items};

/// Whole-flush attempts before the flush is split.
pub(crate) const AFTER_ATTEMPTS: u32 = 3;

const CONSUMER: &str = "persister";

/// Applies `flush` part by part, setting aside messages the store refuses.
/// Fails (and applies nothing more) as soon as the store refuses a probe write.
pub(crate) async fn apply(bus: &Bus, writer: &mut Writer, flush: &Flush) -> anyhow::Result<Applied> {
    let mut total = Applied::default();
    // Halves pushed right first, so parts are applied in log order.
    let mut parts: Vec<(&[Receipt], &[Item])> = vec![(&flush.receipts, &flush.items)];
    while let Some((receipts, items)) = parts.pop() {
        match apply_items(writer, items, None).await {
            Ok(applied) => total.add(applied),
            Err(_) if items.len() > 1 => {
                writer.forget();
                let half = items.len() / 2;
                let (dl, dr) = receipts.split_at(half);
                let (il, ir) = items.split_at(half);
                parts.push((dr, ir));
                parts.push((dl, il));
            }
            Err(e) => {
                writer.forget();
                writer.probe().await.context("the store refuses writes, not just this message")?;
                total.add(set_aside(bus, writer, receipts[0].seq, &items[0], &e).await?);
            }
        }
    }
    Ok(total)
}

/// Keeps a refused message as an error event, or else as a dead letter.
async fn set_aside(
    bus: &Bus,
    writer: &mut Writer,
    seq: u64,
    item: &Item,
    refusal: &StoreError,
) -> anyhow::Result<Applied> {
    let m = bus.readings_message(seq).await.context("the refused message could not be read back from the log")?;
    let reason = format!("the store refused this message: {refusal}");
    if matches!(item, Item::Readings(..))
        && let Ok(tag) = Tag::parse(&m.subject)
    {
        let reading = Reading::error(tag, m.published_ms, reason.clone(), &m.payload);
        let event = [StoredEvent { id: EventId { seq, idx: 0 }, reading }];
        match writer.apply(&[(seq, &event)]).await {
            Ok(applied) => {
                tracing::error!(seq, subject = m.subject, %refusal, "The store refused a message; kept as an error event.");
                return Ok(applied);
            }
            Err(e) => {
                writer.forget();
                tracing::error!(seq, error = %e, "The store refused the message's error event too.");
            }
        }
    }
    tracing::error!(seq, subject = m.subject, %refusal, "The store refused a message; dead-lettered.");
    let dead = DeadLetter::new(READINGS, CONSUMER, seq, &m.subject, &reason, &m.payload, m.published_ms);
    writer.store().record_dead_letter(&dead).await?;
    bus.publisher().dead_letter(READINGS, CONSUMER, (seq, &m.subject, &m.payload), &reason).await?;
    Ok(writer.apply(&[(seq, &[])]).await?)
}
