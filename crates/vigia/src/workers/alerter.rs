//! The alerter: judges every reading of `READINGS` against the rules and
//! publishes `AlertOpened` / `AlertCleared` to `alerts.<tag>`, then acks.
//!
//! Its state (which alerts are open per tag) lives in the `ALERTS` stream
//! itself: every alert event carries the tag's state after it, so after a
//! restart the last message on `alerts.<tag>` restores the tag. Alert message
//! ids derive from the reading's id, so a redelivered reading raises nothing twice.
//!
//! Acks are cumulative, one per batch (`workers/acks.rs`): an ack per
//! reading was a second message per reading for nats-server to route, on
//! top of the alerter's own delivery of every reading.
//!
//! In a process that also runs the persister, `[alerts] consumer =
//! "persister"` skips that second delivery altogether: the persister hands
//! the readings it decoded from each pull to [`judge_until_done`] before it
//! stores them, and acks only what both have done (`workers/persister.rs`).
//! The price is that alerts then wait while the store is down.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::context::PublishAckFuture;
use futures::future::try_join_all;
use futures::{StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;
use vigia_bus::{ALERTS, Batcher, Bus, Delivery, HeaderMap, READINGS, Receipt};
use vigia_domain::{
    AlertEvent, AlertKind, AlertState, EVENT_HEADER, EventId, Ledger, RULES_SUBJECT, Rule, RulesSet,
    SENSOR_SUBJECT_PREFIX, SensorDescription, StoredEvent, Tag, VERSION_HEADER, readings_to_judge,
};

use super::acks::{Acks, Stranded, unstick};
use super::persister::BatchOptions;
use super::{ack_all, receipts, retry_backoff};

/// Judges readings and publishes alert events.
#[derive(Debug)]
pub struct Alerter {
    bus: Bus,
    rules: Vec<Rule>,
    states: HashMap<Tag, AlertState>,
    /// Each tag's own thresholds, from its last description, re-read after [`SENSOR_TTL`].
    sensor_rules: HashMap<Tag, (Instant, Vec<Rule>)>,
    /// Readings older than this when they reached the log are backfill: never judged.
    freshness: Duration,
}

/// How long a tag's thresholds are trusted before the log is asked again.
const SENSOR_TTL: Duration = Duration::from_secs(5);

/// Reads from the log in flight at once when a batch's tags are looked up.
const LOOKUPS_IN_FLIGHT: usize = 64;

impl Alerter {
    pub async fn new(bus: &Bus, rules: Vec<Rule>) -> anyhow::Result<Alerter> {
        // Fail early when ALERTS is missing: every judged batch reads and publishes there.
        bus.jetstream().get_stream(ALERTS).await.context("failed to open the ALERTS stream")?;
        Ok(Alerter {
            bus: bus.clone(),
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

    /// The state the last alert event on `alerts.<tag>` left.
    async fn read_state(&self, tag: &Tag) -> anyhow::Result<AlertState> {
        let subject = format!("alerts.{tag}");
        Ok(match self.bus.last_on(ALERTS, &subject).await? {
            Some(msg) => match serde_json::from_slice::<AlertEvent>(&msg.payload) {
                Ok(e) => e.state,
                // Stalling every tag's alerts on one bad message would be worse than
                // judging this tag afresh; the message itself is dead-lettered by the
                // alert projector and shows in /api/v1/dead-letters.
                Err(e) => {
                    tracing::error!(%subject, error = %e, "The last event is not an alert event; judging the tag afresh.");
                    AlertState::default()
                }
            },
            None => AlertState::default(),
        })
    }

    /// Reads from the log, a bounded number at a time, what the batch's tags
    /// need and this alerter does not hold: each tag's own thresholds older
    /// than [`SENSOR_TTL`] and the state of a tag not seen yet. Asked one tag
    /// after another, each a round trip to a busy nats-server, these reads
    /// were most of a batch's time (docs/performance.md).
    async fn prefetch<'t>(&mut self, tags: impl Iterator<Item = &'t Tag>) -> anyhow::Result<()> {
        let mut seen = std::collections::HashSet::new();
        let (mut rules, mut states) = (Vec::new(), Vec::new());
        for tag in tags.filter(|t| seen.insert(*t)) {
            if self.sensor_rules.get(tag).is_none_or(|(at, _)| at.elapsed() >= SENSOR_TTL) {
                rules.push(tag.clone());
            }
            if !self.states.contains_key(tag) {
                states.push(tag.clone());
            }
        }
        let this = &*self;
        let rules: Vec<_> = futures::stream::iter(rules)
            .map(|tag| async move { this.read_sensor_rules(&tag).await.map(|r| (tag, r)) })
            .buffer_unordered(LOOKUPS_IN_FLIGHT)
            .try_collect()
            .await?;
        let states: Vec<_> = futures::stream::iter(states)
            .map(|tag| async move { this.read_state(&tag).await.map(|s| (tag, s)) })
            .buffer_unordered(LOOKUPS_IN_FLIGHT)
            .try_collect()
            .await?;
        let now = Instant::now();
        self.sensor_rules.extend(rules.into_iter().map(|(tag, r)| (tag, (now, r))));
        self.states.extend(states);
        Ok(())
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

    /// A tag's own thresholds, read from the log.
    async fn read_sensor_rules(&self, tag: &Tag) -> anyhow::Result<Vec<Rule>> {
        let subject = format!("{SENSOR_SUBJECT_PREFIX}.{tag}");
        Ok(match self.bus.last_on(ALERTS, &subject).await? {
            Some(m) => match serde_json::from_slice::<SensorDescription>(&m.payload) {
                Ok(d) if !d.deleted => d.rules(),
                Ok(_) => Vec::new(),
                Err(e) => {
                    tracing::error!(%subject, error = %e, "The last sensor description is unreadable; no own thresholds.");
                    Vec::new()
                }
            },
            None => Vec::new(),
        })
    }

    /// Judges a batch and publishes its alert events; returns how many.
    pub async fn judge(&mut self, batch: &[Delivery]) -> anyhow::Result<usize> {
        let events = self.to_judge(batch);
        self.judge_events(&events.iter().collect::<Vec<_>>()).await
    }

    /// The readings of `batch` to judge: fresh and ok. Backfill is history:
    /// it is stored and counted, but alerts are for now.
    fn to_judge(&self, batch: &[Delivery]) -> Vec<StoredEvent> {
        batch.iter().flat_map(|d| to_judge(d, self.freshness)).collect()
    }

    /// Judges readings already known to be fresh and ok, in log order, and
    /// publishes their alert events; returns how many.
    pub(crate) async fn judge_events(&mut self, events: &[&StoredEvent]) -> anyhow::Result<usize> {
        let (mut acks, mut published) = (Vec::new(), 0);
        if events.is_empty() {
            return Ok(0);
        }
        let rules = self.rules_now().await?;
        self.prefetch(events.iter().map(|e| &e.reading.tag)).await?;
        for event in events {
            let tag = &event.reading.tag;
            let own = self.sensor_rules.get(tag).map_or(&[][..], |(_, own)| own.as_slice());
            let state = self.states.get_mut(tag).expect("the batch's tags were prefetched");
            let changes = state.apply(rules.iter().chain(own), event.id, &event.reading);
            for alert in state.events(changes) {
                log_alert(&alert);
                acks.push(self.publish(&alert).await?);
                if acks.len() >= ALERT_ACKS_IN_FLIGHT {
                    published += confirm(&mut acks).await?;
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

/// The readings of a delivered message to judge (fresh and ok), with their log ids.
fn to_judge(d: &Delivery, freshness: Duration) -> impl Iterator<Item = StoredEvent> + use<> {
    let freshness_ms = freshness.as_millis() as i64;
    let readings =
        readings_to_judge(d.subject(), d.event(), d.version(), d.payload(), d.published_ms, d.backfill(), freshness_ms);
    let seq = d.seq;
    readings.into_iter().map(move |(idx, reading)| StoredEvent { id: EventId { seq, idx }, reading })
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
    let op = a.op.as_str();
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

/// Runs the alerter until `stop`; the batch in hand is judged and acked first.
///
/// With the shipped consumer (`"ack_policy": "all"`) it acks once per batch,
/// never past the run of sequences it judged itself or the server's ack
/// floor ([`Acks`], `workers/acks.rs`); with `"explicit"`, every message.
pub async fn run(bus: &Bus, rules: Vec<Rule>, options: BatchOptions, stop: CancellationToken) -> anyhow::Result<()> {
    let mut consumer = bus.consumer(READINGS, "alerter").await?;
    let mut judged = Judged::new(bus, &consumer).await?;
    let mut alerter = Alerter::new(bus, rules).await?.with_freshness(options.freshness);
    tracing::info!(rules = alerter.rules.len(), "Alerter started.");
    let mut stranded = Stranded::default();
    let mut look = tokio::time::interval(Duration::from_secs(1));
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The pull owns the batcher while it waits, so a look at the floor
    // never cuts a batch short.
    let mut pulling = Box::pin(next_batch(pull(bus, options).await?, stop.clone()));
    let batcher = loop {
        tokio::select! {
            (batcher, next) = &mut pulling => {
                let Some(batch) = next? else {
                    if stop.is_cancelled() {
                        break batcher;
                    }
                    // Made again after its ack floor (by this alerter or another): pull again.
                    tracing::warn!("The alerter's consumer went away; pulling from it again.");
                    let Some((again, pull)) = bind_again(bus, options, &stop).await else {
                        break batcher;
                    };
                    consumer = again;
                    pulling.set(next_batch(pull, stop.clone()));
                    continue;
                };
                let events = alerter.to_judge(&batch);
                let events: Vec<_> = events.iter().collect();
                if !judge_until_done(&mut alerter, bus, &events, &receipts(&batch), &stop).await {
                    break batcher;
                }
                ack_all(bus, &judged.judged(&batch)).await?;
                pulling.set(next_batch(batcher, stop.clone()));
            }
            _ = look.tick(), if judged.cumulative() => {
                if let Err(e) = judged.look(bus, &mut consumer, &mut stranded).await {
                    tracing::warn!(error = %format_args!("{e:#}"), "Could not look into the alerter's ack floor; trying again.");
                }
            }
        }
    };
    let released = batcher.release().await;
    tracing::info!(released, "Alerter stopped.");
    Ok(())
}

/// A pull from the alerter's consumer, in batches of `options`.
async fn pull(bus: &Bus, options: BatchOptions) -> anyhow::Result<Batcher> {
    let consumer = bus.consumer(READINGS, "alerter").await?;
    Ok(Batcher::new(&consumer, options.size, options.wait).await?)
}

/// The consumer and a pull from it once it is back; `None` when stopping first.
async fn bind_again(bus: &Bus, options: BatchOptions, stop: &CancellationToken) -> Option<(PullConsumer, Batcher)> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let bound = async { anyhow::Ok((bus.consumer(READINGS, "alerter").await?, pull(bus, options).await?)) };
        match bound.await {
            Ok(bound) => return Some(bound),
            Err(e) => tracing::warn!(error = %format_args!("{e:#}"), "The alerter's consumer is not back yet."),
        }
    }
}

/// The next batch, with the batcher handed back.
async fn next_batch(
    mut batcher: Batcher,
    stop: CancellationToken,
) -> (Batcher, Result<Option<Vec<Delivery>>, vigia_bus::BusError>) {
    let next = batcher.next(&stop).await;
    (batcher, next)
}

/// Judges `events`, the readings to judge of the messages `receipts`
/// acknowledge, until it is done, retrying with backoff; false when
/// stopping first (the messages are then left unacked for redelivery).
pub(crate) async fn judge_until_done(
    alerter: &mut Alerter,
    bus: &Bus,
    events: &[&StoredEvent],
    receipts: &[Receipt],
    stop: &CancellationToken,
) -> bool {
    let mut attempt = 0u32;
    loop {
        match alerter.judge_events(events).await {
            Ok(_) => return true,
            Err(e) => {
                attempt += 1;
                // Forget cached state: what was published is in ALERTS.
                alerter.states.clear();
                tracing::warn!(error = %e, attempt, "Alerting failed; retrying the batch.");
                if !retry_backoff(bus, receipts, attempt, stop).await {
                    return false;
                }
            }
        }
    }
}

/// What this alerter has judged, and the acks that may go out for it.
///
/// Unlike the persister's, its ledger is in memory and its own: a judged
/// reading leaves nothing in a store, and what matters for an ack is only
/// that no message at or below it is still unjudged in anyone's hands.
struct Judged {
    acks: Acks,
    ledger: Ledger,
}

impl Judged {
    async fn new(bus: &Bus, consumer: &PullConsumer) -> anyhow::Result<Judged> {
        Ok(Judged { acks: Acks::starting(bus, consumer).await?, ledger: Ledger::default() })
    }

    fn cumulative(&self) -> bool {
        matches!(self.acks, Acks::Cumulative(_))
    }

    /// Records a judged batch; returns the acks to send.
    fn judged(&mut self, batch: &[Delivery]) -> Vec<Receipt> {
        let receipts = receipts(batch);
        if !self.cumulative() {
            return receipts;
        }
        for r in &receipts {
            self.ledger.insert(r.seq);
        }
        let to_ack = self.acks.committed(receipts, Some(&self.ledger), Instant::now());
        self.forget_below_floor();
        to_ack
    }

    /// A floor stuck on someone else's messages or deleted ones is looked
    /// into; an idle one, now and then, for messages stranded below it.
    async fn look(&mut self, bus: &Bus, consumer: &mut PullConsumer, stranded: &mut Stranded) -> anyhow::Result<()> {
        let Acks::Cumulative(floor) = &mut self.acks else { return Ok(()) };
        if floor.stuck(Instant::now()).is_some() {
            let to_ack = unstick(bus, &self.ledger, consumer, floor).await?;
            self.forget_below_floor();
            ack_all(bus, &to_ack).await?;
        } else if floor.highest_held().is_none() && stranded.due() {
            stranded.check(bus, consumer).await?;
        }
        Ok(())
    }

    /// Ranges at or below the floor are acked: only the run above it matters.
    fn forget_below_floor(&mut self) {
        if let Acks::Cumulative(floor) = &self.acks {
            let floor = floor.floor();
            self.ledger.ranges.retain(|(_, hi)| *hi > floor);
        }
    }
}
