//! The long-running workers: persister, alerter and alert projector. Each is
//! a loop over a durable pull consumer that finishes and acks the batch in
//! hand before it honours a stop.

mod acks;
pub mod alerter;
mod isolate;
pub mod loader;
pub mod persister;
pub mod projector;
pub mod retention;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigia_bus::{Bus, Delivery, Receipt};

/// The receipts of a batch, to ack it.
pub(crate) fn receipts(batch: &[Delivery]) -> Vec<Receipt> {
    batch.iter().map(Delivery::receipt).collect()
}

/// Acks every message of a batch and waits until the server has them.
pub(crate) async fn ack_all(bus: &Bus, batch: &[Receipt]) -> anyhow::Result<()> {
    for r in batch {
        r.ack(bus.client()).await?;
    }
    bus.flush_within(Duration::from_secs(10)).await?;
    Ok(())
}

/// Waits before retrying a failed batch, telling the server we are still on
/// it so it does not redeliver meanwhile. False when stopping instead.
pub(crate) async fn retry_backoff(bus: &Bus, batch: &[Receipt], attempt: u32, stop: &CancellationToken) -> bool {
    let delay = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5));
    for r in batch {
        let _ = r.progress(bus.client()).await;
    }
    let _ = bus.flush_within(Duration::from_secs(5)).await;
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
