//! The alert projector: applies `ALERTS` events to alert records in the
//! store (open, acknowledged, cleared), and `AlertAcknowledged` from
//! `alerts._ack.<tag>`. Applying an event twice is harmless.

use tokio_util::sync::CancellationToken;
use vigia_bus::{ALERTS, Batcher, Bus, Delivery};
use vigia_domain::{ALERT_ACKNOWLEDGED, AlertAck, AlertEvent, RULES_SET, SENSOR_DESCRIBED, SensorDescription};
use vigia_store::{Store, StoreError};

use super::persister::BatchOptions;
use super::{ack_all, retry_backoff};

/// Runs the alert projector until `stop`.
pub async fn run(bus: &Bus, store: &Store, options: BatchOptions, stop: CancellationToken) -> anyhow::Result<()> {
    let consumer = bus.consumer(ALERTS, "alert-projector").await?;
    let mut batcher = Batcher::new(&consumer, options.size, options.wait).await?;
    tracing::info!("Alert projector started.");
    while let Some(batch) = batcher.next(&stop).await? {
        let mut attempt = 0u32;
        'retry: loop {
            for d in &batch {
                let Some(applied) = apply_message(store, d).await else { continue };
                if let Err(e) = applied {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "Alert projection failed; retrying.");
                    if retry_backoff(bus, &batch, attempt, &stop).await {
                        continue 'retry;
                    }
                    tracing::info!("Alert projector stopped with a batch unapplied; it will be redelivered.");
                    return Ok(());
                }
            }
            break;
        }
        ack_all(bus, &batch).await?;
    }
    let released = batcher.release().await;
    tracing::info!(released, "Alert projector stopped.");
    Ok(())
}

/// Applies one `ALERTS` message to the store. `None` when the message is
/// neither an alert event nor an acknowledgement (logged, nothing to apply).
pub(crate) async fn apply_message(store: &Store, d: &Delivery) -> Option<Result<(), StoreError>> {
    match d.event() {
        // Rules changes are read by the alerter from the log; nothing to project.
        Some(RULES_SET) => Some(Ok(())),
        Some(SENSOR_DESCRIBED) => match serde_json::from_slice::<SensorDescription>(d.payload()) {
            Ok(description) => Some(store.apply_description(&description).await),
            Err(e) => {
                tracing::error!(seq = d.seq, subject = d.subject(), error = %e, "Not a sensor description; skipped.");
                None
            }
        },
        Some(ALERT_ACKNOWLEDGED) => match serde_json::from_slice::<AlertAck>(d.payload()) {
            Ok(ack) => Some(store.apply_ack(&ack).await),
            Err(e) => {
                tracing::error!(seq = d.seq, subject = d.subject(), error = %e, "Not an acknowledgement; skipped.");
                None
            }
        },
        _ => match serde_json::from_slice::<AlertEvent>(d.payload()) {
            Ok(event) => Some(store.apply_alert(&event).await),
            Err(e) => {
                tracing::error!(seq = d.seq, subject = d.subject(), error = %e, "Not an alert event; skipped.");
                None
            }
        },
    }
}
