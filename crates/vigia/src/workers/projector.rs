//! The alert projector: applies `ALERTS` events to alert records in the
//! store (open, acknowledged, cleared), and `AlertAcknowledged` from
//! `alerts._ack.<tag>`. Applying an event twice is harmless. A message that
//! cannot be read is dead-lettered, not dropped.
//!
//! A pull's consecutive alert events go to the store together, a hundred to
//! a transaction ([`Store::apply_alerts`] reads their alerts, merges them in
//! Rust and writes the result): one by one, an alert storm cost a query and
//! a commit per event and the alerts reached the store seconds behind the
//! readings that raised them.

use tokio_util::sync::CancellationToken;
use vigia_bus::{ALERTS, Batcher, Bus, Delivery};
use vigia_domain::{
    ALERT_ACKNOWLEDGED, AlertAck, AlertEvent, RULES_SET, RulesSet, SENSOR_DESCRIBED, SensorDescription,
};
use vigia_store::{DeadLetter, Store};

use super::persister::BatchOptions;
use super::{ack_all, receipts, retry_backoff};

/// Runs the alert projector until `stop`.
pub async fn run(bus: &Bus, store: &Store, options: BatchOptions, stop: CancellationToken) -> anyhow::Result<()> {
    let consumer = bus.consumer(ALERTS, CONSUMER).await?;
    let mut batcher = Batcher::new(&consumer, options.size, options.wait).await?;
    tracing::info!("Alert projector started.");
    while let Some(batch) = batcher.next(&stop).await? {
        let mut attempt = 0u32;
        while let Err(e) = apply_batch(store, Some(bus), &batch).await {
            attempt += 1;
            tracing::warn!(error = %e, attempt, "Alert projection failed; retrying.");
            if !retry_backoff(bus, &receipts(&batch), attempt, &stop).await {
                tracing::info!("Alert projector stopped with a batch unapplied; it will be redelivered.");
                return Ok(());
            }
        }
        ack_all(bus, &receipts(&batch)).await?;
    }
    let released = batcher.release().await;
    tracing::info!(released, "Alert projector stopped.");
    Ok(())
}

/// A message no retry can apply (it does not parse as what its subject and
/// headers say) goes to the `dead_letter` table and, given the bus (live, not
/// a replay of the log), to `deadletter.alerts.alert-projector`: never
/// silently away.
async fn set_aside(bus: Option<&Bus>, store: &Store, d: &Delivery, reason: &str) -> Result<(), anyhow::Error> {
    if let Some(bus) = bus {
        tracing::error!(seq = d.seq, subject = d.subject(), reason, "Unreadable ALERTS message; dead-lettered.");
        bus.publisher().dead_letter(ALERTS, CONSUMER, (d.seq, d.subject(), d.payload()), reason).await?;
    }
    store.record_dead_letter(&dead_letter(d, reason)).await?;
    Ok(())
}

const CONSUMER: &str = "alert-projector";

/// The dead letter of an unreadable `ALERTS` message, dated by the stream so
/// that a replay records the same one.
fn dead_letter(d: &Delivery, reason: &str) -> DeadLetter {
    DeadLetter::new(ALERTS, CONSUMER, d.seq, d.subject(), reason, d.payload(), d.published_ms)
}

/// Applies a pull of `ALERTS` messages in stream order and returns how many
/// it applied; each message that cannot be read as what it claims to be is
/// set aside with the reason ([`set_aside`]; `bus` is `None` in a replay).
/// Consecutive alert events are written together, a hundred to a
/// transaction ([`Store::apply_alerts`]); acknowledgements and sensor
/// descriptions one by one between them, so the order holds.
pub(crate) async fn apply_batch(store: &Store, bus: Option<&Bus>, batch: &[Delivery]) -> anyhow::Result<u64> {
    let mut run = Vec::new();
    let mut applied = 0;
    for d in batch {
        let message = match read(d) {
            Ok(Message::Alert(event)) => {
                run.push(event);
                applied += 1;
                continue;
            }
            Ok(message) => message,
            Err(reason) => {
                set_aside(bus, store, d, &reason).await?;
                continue;
            }
        };
        store.apply_alerts(&std::mem::take(&mut run)).await?;
        match message {
            Message::Alert(_) | Message::Rules => {}
            Message::Described(description) => store.apply_description(&description).await?,
            Message::Acknowledged(ack) => store.apply_ack(&ack).await?,
        }
        applied += 1;
    }
    store.apply_alerts(&run).await?;
    Ok(applied)
}

/// An `ALERTS` message, read as its subject and headers say it is.
enum Message {
    Alert(AlertEvent),
    Acknowledged(AlertAck),
    Described(SensorDescription),
    /// Rules changes are read by the alerter from the log; nothing to
    /// project, but an unreadable one must be seen.
    Rules,
}

fn read(d: &Delivery) -> Result<Message, String> {
    let unreadable = |what: &str, e: serde_json::Error| format!("not {what}: {e}");
    Ok(match d.event() {
        Some(RULES_SET) => {
            serde_json::from_slice::<RulesSet>(d.payload()).map_err(|e| unreadable("a rules set", e))?;
            Message::Rules
        }
        Some(SENSOR_DESCRIBED) => {
            Message::Described(serde_json::from_slice(d.payload()).map_err(|e| unreadable("a sensor description", e))?)
        }
        Some(ALERT_ACKNOWLEDGED) => {
            Message::Acknowledged(serde_json::from_slice(d.payload()).map_err(|e| unreadable("an acknowledgement", e))?)
        }
        _ => Message::Alert(serde_json::from_slice(d.payload()).map_err(|e| unreadable("an alert event", e))?),
    })
}
