//! `vigia replay`: rebuilds a fresh store from the streams. The log is the
//! only source of truth, so the result must equal the live store.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use tokio_util::sync::CancellationToken;
use vigia_bus::{ALERTS, Batcher, Bus, READINGS};
use vigia_store::{Store, Writer};

use crate::workers::persister::{READINGS_LEDGER, apply_batch};
use crate::workers::projector;

/// What a replay applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub messages: u64,
    pub events: u64,
    pub alerts: u64,
}

/// Replays both streams, up to their last message at the start, into `store`.
pub async fn replay(bus: &Bus, store: &Store, batch: usize, freshness: Duration) -> anyhow::Result<ReplayReport> {
    let mut report = ReplayReport::default();
    let never = CancellationToken::new();
    let mut writer = Writer::new(store, READINGS_LEDGER);
    for name in [READINGS, ALERTS] {
        let mut stream = bus.jetstream().get_stream(name).await.with_context(|| format!("no stream {name}"))?;
        let state = stream.info().await?.state.clone();
        if state.messages == 0 {
            continue;
        }
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .with_context(|| format!("failed to open a replay consumer on {name}"))?;
        let mut batcher = Batcher::new(&consumer, batch, Duration::from_millis(20)).await?;
        while let Some(deliveries) = batcher.next(&never).await? {
            let last = deliveries.iter().map(|d| d.seq).max().unwrap_or(0);
            if name == READINGS {
                let applied = apply_batch(&mut writer, &deliveries, freshness).await?;
                report.messages += deliveries.len() as u64;
                report.events += applied.events;
            } else {
                report.alerts += projector::apply_batch(store, None, &deliveries).await?;
            }
            if last >= state.last_sequence {
                break;
            }
        }
        tracing::info!(stream = name, last = state.last_sequence, "Replayed.");
    }
    Ok(report)
}
