//! The alert projector: applies `ALERTS` events to alert records in the
//! store (open, acknowledged, cleared), and `AlertAcknowledged` from
//! `alerts._ack.<tag>`. Applying an event twice is harmless. A message that
//! cannot be read is dead-lettered, not dropped.

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
        'retry: loop {
            for d in &batch {
                let applied = match apply_message(store, d).await {
                    Ok(applied) => applied,
                    Err(reason) => set_aside(bus, store, d, &reason).await,
                };
                if let Err(e) = applied {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "Alert projection failed; retrying.");
                    if retry_backoff(bus, &receipts(&batch), attempt, &stop).await {
                        continue 'retry;
                    }
                    tracing::info!("Alert projector stopped with a batch unapplied; it will be redelivered.");
                    return Ok(());
                }
            }
            break;
        }
        ack_all(bus, &receipts(&batch)).await?;
    }
    let released = batcher.release().await;
    tracing::info!(released, "Alert projector stopped.");
    Ok(())
}

/// A message no retry can apply (it does not parse as what its subject and
/// headers say) goes to `deadletter.alerts.alert-projector` and the
/// `dead_letter` table, never silently away.
async fn set_aside(bus: &Bus, store: &Store, d: &Delivery, reason: &str) -> Result<(), anyhow::Error> {
    tracing::error!(seq = d.seq, subject = d.subject(), reason, "Unreadable ALERTS message; dead-lettered.");
    bus.publisher().dead_letter(ALERTS, CONSUMER, (d.seq, d.subject(), d.payload()), reason).await?;
    store.record_dead_letter(&dead_letter(d, reason)).await?;
    Ok(())
}

const CONSUMER: &str = "alert-projector";

/// The dead letter of an unreadable `ALERTS` message, dated by the stream so
/// that a replay records the same one.
pub(crate) fn dead_letter(d: &Delivery, reason: &str) -> DeadLetter {
    DeadLetter::new(ALERTS, CONSUMER, d.seq, d.subject(), reason, d.payload(), d.published_ms)
}

/// Applies one `ALERTS` message to the store; `Err` with the reason when the
/// message cannot be read as what it claims to be.
pub(crate) async fn apply_message(store: &Store, d: &Delivery) -> Result<Result<(), anyhow::Error>, String> {
    let unreadable = |what: &str, e: serde_json::Error| format!("not {what}: {e}");
    let applied = match d.event() {
        // Rules changes are read by the alerter from the log; nothing to project,
        // but an unreadable one must be seen.
        Some(RULES_SET) => {
            serde_json::from_slice::<RulesSet>(d.payload()).map_err(|e| unreadable("a rules set", e))?;
            return Ok(Ok(()));
        }
        Some(SENSOR_DESCRIBED) => {
            let description = serde_json::from_slice::<SensorDescription>(d.payload())
                .map_err(|e| unreadable("a sensor description", e))?;
            store.apply_description(&description).await
        }
        Some(ALERT_ACKNOWLEDGED) => {
            let ack =
                serde_json::from_slice::<AlertAck>(d.payload()).map_err(|e| unreadable("an acknowledgement", e))?;
            store.apply_ack(&ack).await
        }
        _ => {
            let event =
                serde_json::from_slice::<AlertEvent>(d.payload()).map_err(|e| unreadable("an alert event", e))?;
            store.apply_alert(&event).await
        }
    };
    Ok(applied.map_err(anyhow::Error::from))
}
