//! Batched pull consumption: collect up to `max` messages (and, when set,
//! about `max_bytes` of payload) or until `wait` has passed since the first
//! one, whichever comes first.

use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use vigia_domain::{BACKFILL_HEADER, EVENT_HEADER, VERSION_HEADER};

use crate::BusError;

/// One delivered message with what projections need from it.
#[derive(Debug)]
pub struct Delivery {
    pub message: jetstream::Message,
    pub seq: u64,
    /// The consumer's delivery sequence: a redelivery gets a new one.
    pub dseq: u64,
    pub delivered: i64,
    pub published_ms: i64,
    /// Messages the stream held for this consumer beyond this one when it
    /// was delivered: how far behind the reader is.
    pub pending: u64,
}

impl Delivery {
    fn new(message: jetstream::Message) -> Result<Delivery, BusError> {
        let info = message.info().map_err(|e| BusError::JetStream(format!("not a JetStream message: {e}")))?;
        let (seq, dseq, delivered, pending) =
            (info.stream_sequence, info.consumer_sequence, info.delivered, info.pending);
        let published_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
        Ok(Delivery { message, seq, dseq, delivered, published_ms, pending })
    }

    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.message.headers.as_ref()?.get(name).map(|v| v.as_str())
    }

    pub fn event(&self) -> Option<&str> {
        self.header(EVENT_HEADER)
    }

    pub fn version(&self) -> Option<&str> {
        self.header(VERSION_HEADER)
    }

    /// Whether the publisher marked the message's readings as backfill.
    pub fn backfill(&self) -> bool {
        self.header(BACKFILL_HEADER) == Some("true")
    }

    /// What acknowledging this message needs, in an allocation of its own:
    /// keep it instead of the delivery once the payload is decoded.
    pub fn receipt(&self) -> Receipt {
        Receipt {
            seq: self.seq,
            dseq: self.dseq,
            reply: self.message.reply.as_ref().map(|r| Subject::from(r.as_str())),
        }
    }

    /// Acknowledges and waits for the server to confirm it.
    pub async fn ack(&self) -> Result<(), BusError> {
        self.message.double_ack().await.map_err(|e| BusError::JetStream(format!("ack of {}: {e}", self.seq)))
    }

    /// Asks for redelivery after `delay`.
    pub async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.message
            .ack_with(jetstream::AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| BusError::JetStream(format!("nak of {}: {e}", self.seq)))
    }

    /// Tells the server we are still working on it.
    pub async fn progress(&self) -> Result<(), BusError> {
        self.message
            .ack_with(jetstream::AckKind::Progress)
            .await
            .map_err(|e| BusError::JetStream(format!("progress of {}: {e}", self.seq)))
    }
}

/// What acknowledging a delivered message needs, and nothing more.
///
/// A worker that holds messages until a commit (the persister holds two
/// flushes, 100,000 messages and more behind a backlog) keeps these instead
/// of deliveries: a delivery pins its share of the client's read buffer
/// (subject, reply, headers and payload are slices of it), its parsed
/// headers and a JetStream context, about 1.6 KiB a message in all
/// (docs/performance.md). The reply subject is copied out, so a receipt
/// pins nothing.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub seq: u64,
    /// The delivery sequence: JetStream ignores a cumulative ack whose
    /// delivery sequence is not above the last one it took.
    pub dseq: u64,
    reply: Option<Subject>,
}

impl Receipt {
    /// A receipt of stream sequence `seq`, delivered as `dseq`, with no
    /// reply subject: it cannot be sent (tests of what gets acknowledged).
    pub fn unreplied(seq: u64, dseq: u64) -> Receipt {
        Receipt { seq, dseq, reply: None }
    }

    async fn send(&self, client: &async_nats::Client, kind: jetstream::AckKind, what: &str) -> Result<(), BusError> {
        let reply = self
            .reply
            .clone()
            .ok_or_else(|| BusError::JetStream(format!("{what} of {}: no reply subject", self.seq)))?;
        client
            .publish(reply, kind.into())
            .await
            .map_err(|e| BusError::JetStream(format!("{what} of {}: {e}", self.seq)))
    }

    /// Acknowledges, without waiting for the server (flush the client for that).
    pub async fn ack(&self, client: &async_nats::Client) -> Result<(), BusError> {
        self.send(client, jetstream::AckKind::Ack, "ack").await
    }

    /// Tells the server we are still working on it.
    pub async fn progress(&self, client: &async_nats::Client) -> Result<(), BusError> {
        self.send(client, jetstream::AckKind::Progress, "progress").await
    }
}

/// Pulls messages and cuts them into batches.
pub struct Batcher {
    messages: jetstream::consumer::pull::Stream,
    max: usize,
    /// A batch ends with the message that takes its payloads to this many bytes.
    max_bytes: usize,
    wait: Duration,
    /// Interrupted pulls in a row before `next` gives up (durable consumers never do).
    patience: u32,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("max", &self.max).field("wait", &self.wait).finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts pulling from `consumer` with at most `max` messages per batch.
    pub async fn new(consumer: &PullConsumer, max: usize, wait: Duration) -> Result<Batcher, BusError> {
        let messages = consumer
            .stream()
            .max_messages_per_batch(max.max(1))
            // Heartbeats tell a dead connection from a quiet stream. Too tight, and a
            // busy machine (a slow scheduler tick, not a dead server) reads as a
            // broken pull: 5 s between heartbeats, 30 s per pull request.
            .expires(Duration::from_secs(30))
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
            .map_err(|e| BusError::JetStream(format!("pull subscription: {e}")))?;
        Ok(Batcher { messages, max: max.max(1), max_bytes: usize::MAX, wait, patience: u32::MAX })
    }

    /// Ends a batch once its payloads reach `bytes` (the message that crosses
    /// it is kept): messages of thousands of readings would otherwise make
    /// batches of millions.
    pub fn with_max_bytes(mut self, bytes: usize) -> Batcher {
        self.max_bytes = bytes.max(1);
        self
    }

    /// Gives up after `n` interrupted pulls in a row instead of retrying for
    /// ever: for ephemeral consumers, whose reader would rather start afresh.
    pub fn with_patience(mut self, n: u32) -> Batcher {
        self.patience = n;
        self
    }

    /// The next batch, or `None` once `stop` is cancelled (between batches, so
    /// a batch in hand is always finished by the caller).
    pub async fn next(&mut self, stop: &CancellationToken) -> Result<Option<Vec<Delivery>>, BusError> {
        let mut interrupted = 0u32;
        let first = loop {
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(None),
                next = self.messages.next() => next,
            };
            match next {
                Some(Ok(m)) => break m,
                // Missed heartbeats and failed pull requests while a server
                // restarts or a consumer leader moves: the pull stream issues
                // new requests itself, so wait and go on rather than give up.
                Some(Err(e)) if interrupted >= self.patience => {
                    return Err(BusError::JetStream(format!("pull interrupted {interrupted} times: {e}")));
                }
                Some(Err(e)) => {
                    interrupted += 1;
                    tracing::warn!(error = %e, interrupted, "Pull interrupted; pulling again.");
                    let pause = Duration::from_millis(250 * u64::from(interrupted.min(8)));
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                None => return Ok(None),
            }
        };
        let mut bytes = first.payload.len();
        let mut batch = vec![Delivery::new(first)?];
        let deadline = tokio::time::Instant::now() + self.wait;
        while batch.len() < self.max && bytes < self.max_bytes {
            match tokio::time::timeout_at(deadline, self.messages.next()).await {
                Ok(Some(Ok(m))) => {
                    bytes += m.payload.len();
                    batch.push(Delivery::new(m)?);
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "Pull hiccup; cutting the batch short.");
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Some(batch))
    }

    /// Gives back what the pull already brought in but no batch took: each
    /// buffered message is nak'd so the server redelivers it at once instead
    /// of after the ack wait. Messages still on the wire when the
    /// subscription drops are redelivered after the ack wait, as always.
    /// Returns how many distinct messages it gave back.
    pub async fn release(mut self) -> usize {
        // Bounded: the stream would keep pulling from a deep backlog forever.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        let (mut released, mut seen) = (0, std::collections::HashSet::new());
        while released < self.max * 2
            && let Ok(Ok(Some(Ok(m)))) =
                tokio::time::timeout_at(deadline, tokio::time::timeout(Duration::from_millis(50), self.messages.next()))
                    .await
        {
            // A nak'd message comes straight back to this still-open pull:
            // once one does, what was buffered has been given back. Counting
            // it again made a stop report thousands released after a quiet run.
            let again = m.info().is_ok_and(|i| !seen.insert(i.stream_sequence));
            if m.ack_with(jetstream::AckKind::Nak(None)).await.is_ok() && !again {
                released += 1;
            }
            if again {
                break;
            }
        }
        released
    }
}
