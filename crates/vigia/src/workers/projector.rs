//! The alert projector: applies `ALERTS` events to alert records in the
//! store (open, acknowledged, cleared). Applying an event twice is harmless.

use tokio_util::sync::CancellationToken;
use vigia_bus::{ALERTS, Batcher, Bus};
use vigia_domain::AlertEvent;
use vigia_store::Store;

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
                let event: AlertEvent = match serde_json::from_slice(d.payload()) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(seq = d.seq, subject = d.subject(), error = %e, "Not an alert event; skipped.");
                        continue;
                    }
                };
                if let Err(e) = store.apply_alert(&event).await {
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
