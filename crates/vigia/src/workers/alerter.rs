//! The alerter: judges every reading of `READINGS` against the rules and
//! publishes `AlertOpened` / `AlertCleared` to `alerts.<tag>`, then acks.
//!
//! Its state (which alerts are open per tag) lives in the `ALERTS` stream
//! itself: every alert event carries the tag's state after it, so after a
//! restart the last message on `alerts.<tag>` restores the tag. Alert message
//! ids derive from the reading's id, so a redelivered reading raises nothing twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::stream::Stream;
use futures::future::try_join_all;
use tokio_util::sync::CancellationToken;
use vigia_bus::{ALERTS, Batcher, Bus, Delivery, HeaderMap, READINGS};
use vigia_domain::{
    AlertEvent, AlertKind, AlertState, EVENT_HEADER, RULES_SUBJECT, Rule, RulesSet, SENSOR_SUBJECT_PREFIX,
    SensorDescription, Tag, VERSION_HEADER,
};

use super::persister::{BatchOptions, decode};
use super::{ack_all, receipts, retry_backoff};

/// Judges readings and publishes alert events.
#[derive(Debug)]
pub struct Alerter {
    bus: Bus,
    alerts: Stream,
    rules: Vec<Rule>,
    states: HashMap<Tag, AlertState>,
    /// Each tag's own thresholds, from its last description, re-read after [`SENSOR_TTL`].
    sensor_rules: HashMap<Tag, (Instant, Vec<Rule>)>,
    /// Readings older than this when they reached the log are backfill: never judged.
    freshness: Duration,
}

/// How long a tag's thresholds are trusted before the log is asked again.
const SENSOR_TTL: Duration = Duration::from_secs(5);

impl Alerter {
    pub async fn new(bus: &Bus, rules: Vec<Rule>) -> anyhow::Result<Alerter> {
        let alerts = bus.jetstream().get_stream(ALERTS).await.context("failed to open the ALERTS stream")?;
        Ok(Alerter {
            bus: bus.clone(),
            alerts,
            rules,
            states: HashMap::new(),
            sensor_rules: HashMap::new(),
            freshness: crate::config::DEFAULT_FRESHNESS,
        })
    }

    /// Readings older than `freshness` when they reached the log open no alerts.
    pub fn with_freshness(mut self, freshness: Duration) -> Alerter {
        self.freshness = freshness;
        self
    }

    /// The tag's state: from memory, else from the last alert event on its subject.
    async fn state(&mut self, tag: &Tag) -> anyhow::Result<&mut AlertState> {
        if !self.states.contains_key(tag) {
            let subject = format!("alerts.{tag}");
            let state = match self.alerts.get_last_raw_message_by_subject(&subject).await {
                Ok(msg) => match serde_json::from_slice::<AlertEvent>(&msg.payload) {
                    Ok(e) => e.state,
                    // Stalling every tag's alerts on one bad message would be worse than
                    // judging this tag afresh; the message itself is dead-lettered by the
                    // alert projector and shows in /api/v1/dead-letters.
                    Err(e) => {
                        tracing::error!(%subject, error = %e, "The last event is not an alert event; judging the tag afresh.");
                        AlertState::default()
                    }
                },
                Err(e)
                    if matches!(e.kind(), async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound) =>
                {
                    AlertState::default()
                }
                Err(e) => return Err(anyhow::anyhow!("failed to read {subject}: {e}")),
            };
            self.states.insert(tag.clone(), state);
        }
        Ok(self.states.get_mut(tag).expect("inserted above"))
    }

    /// The rules in force: the last `RulesSet` on `alerts._rules`, else the configured ones.
    async fn rules_now(&self) -> anyhow::Result<Vec<Rule>> {
        match self.bus.last_on(ALERTS, RULES_SUBJECT).await? {
            Some(m) => match serde_json::from_slice::<RulesSet>(&m.payload) {
                Ok(set) => Ok(set.rules),
                Err(e) => {
                    tracing::error!(error = %e, "The last message on {RULES_SUBJECT} is not a RulesSet; using the configured rules.");
                    Ok(self.rules.clone())
                }
            },
            None => Ok(self.rules.clone()),
        }
    }

    /// A tag's own thresholds as rules, from the last `SensorDescribed` of the tag.
    async fn sensor_rules(&mut self, tag: &Tag) -> anyhow::Result<Vec<Rule>> {
        if let Some((at, rules)) = self.sensor_rules.get(tag)
            && at.elapsed() < SENSOR_TTL
        {
            return Ok(rules.clone());
        }
        let subject = format!("{SENSOR_SUBJECT_PREFIX}.{tag}");
        let rules = match self.bus.last_on(ALERTS, &subject).await? {
            Some(m) => match serde_json::from_slice::<SensorDescription>(&m.payload) {
                Ok(d) if !d.deleted => d.rules(),
                Ok(_) => Vec::new(),
                Err(e) => {
                    tracing::error!(%subject, error = %e, "The last sensor description is unreadable; no own thresholds.");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        self.sensor_rules.insert(tag.clone(), (Instant::now(), rules.clone()));
        Ok(rules)
    }

    /// Judges a batch and publishes its alert events; returns how many.
    pub async fn judge(&mut self, batch: &[Delivery]) -> anyhow::Result<usize> {
        let (mut acks, mut published) = (Vec::new(), 0);
        let rules = self.rules_now().await?;
        for d in batch {
            // Backfill is history: it is stored and counted, but alerts are for now.
            for event in decode(d, self.freshness).into_iter().filter(|e| !e.reading.backfill) {
                let own = self.sensor_rules(&event.reading.tag).await?;
                let rules: std::borrow::Cow<'_, [Rule]> = if own.is_empty() {
                    std::borrow::Cow::Borrowed(&rules)
                } else {
                    std::borrow::Cow::Owned(rules.iter().cloned().chain(own).collect())
                };
                let state = self.state(&event.reading.tag).await?;
                let mut snapshot = state.clone();
                let changes = state.apply(&rules, event.id, &event.reading);
                snapshot.last = Some(event.id);
                for change in changes {
                    match change.kind {
                        AlertKind::Opened => snapshot.open.insert(change.rule.id.clone(), change.reading),
                        AlertKind::Cleared => snapshot.open.remove(&change.rule.id),
                    };
                    let alert = change.event(&snapshot);
                    log_alert(&alert);
                    acks.push(self.publish(&alert).await?);
                    if acks.len() >= ALERT_ACKS_IN_FLIGHT {
                        published += confirm(&mut acks).await?;
                    }
                }
            }
        }
        published += confirm(&mut acks).await?;
        Ok(published)
    }

    async fn publish(&self, alert: &AlertEvent) -> anyhow::Result<PublishAckFuture> {
        let mut headers = HeaderMap::new();
        headers.insert(EVENT_HEADER, alert.name());
        headers.insert(VERSION_HEADER, "1");
        let payload = serde_json::to_vec(alert).context("alert events serialise")?;
        Ok(self
            .bus
            .publisher()
            .send(format!("alerts.{}", alert.tag), Some(headers), payload.into(), Some(&alert.message_id()))
            .await?)
    }
}

/// Most alert events sent and not yet confirmed: a batch may raise any
/// number of them, and each unconfirmed one holds one of the process's
/// publish permits (`vigia_bus::ACK_PERMITS`, whose docs say why that must
/// stay bounded).
const ALERT_ACKS_IN_FLIGHT: usize = 1024;

/// Waits for the stream to confirm every alert event in `acks`; returns how many.
async fn confirm(acks: &mut Vec<PublishAckFuture>) -> anyhow::Result<usize> {
    let n = acks.len();
    try_join_all(acks.drain(..).map(std::future::IntoFuture::into_future))
        .await
        .context("ALERTS did not acknowledge an alert event")?;
    Ok(n)
}

fn log_alert(a: &AlertEvent) {
    let op = serde_json::to_value(a.op).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    match a.kind {
        AlertKind::Opened => tracing::warn!(
            tag = %a.tag, rule = %a.rule, value = a.value, threshold = a.threshold, reading = %a.reading,
            "ALERT OPENED: {} value {} {op} {} (rule {}).", a.tag, a.value, a.threshold, a.rule
        ),
        AlertKind::Cleared => tracing::info!(
            tag = %a.tag, rule = %a.rule, value = a.value, threshold = a.threshold, reading = %a.reading,
            "Alert cleared: {} value {} no longer {op} {} (rule {}).", a.tag, a.value, a.threshold, a.rule
        ),
    }
}

/// Runs the alerter until `stop`.
pub async fn run(bus: &Bus, rules: Vec<Rule>, options: BatchOptions, stop: CancellationToken) -> anyhow::Result<()> {
    let consumer = bus.consumer(READINGS, "alerter").await?;
    let mut batcher = Batcher::new(&consumer, options.size, options.wait).await?;
    let mut alerter = Alerter::new(bus, rules).await?.with_freshness(options.freshness);
    tracing::info!(rules = alerter.rules.len(), "Alerter started.");
    while let Some(batch) = batcher.next(&stop).await? {
        let mut attempt = 0u32;
        let done = loop {
            match alerter.judge(&batch).await {
                Ok(_) => break true,
                Err(e) => {
                    attempt += 1;
                    // Forget cached state: what was published is in ALERTS.
                    alerter.states.clear();
                    tracing::warn!(error = %e, attempt, "Alerting failed; retrying the batch.");
                    if !retry_backoff(bus, &receipts(&batch), attempt, &stop).await {
                        break false;
                    }
                }
            }
        };
        if !done {
            break;
        }
        ack_all(bus, &receipts(&batch)).await?;
    }
    let released = batcher.release().await;
    tracing::info!(released, "Alerter stopped.");
    Ok(())
}
