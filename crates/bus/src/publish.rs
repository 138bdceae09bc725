//! Publishing to the log with acknowledgements: a publish is done only once
//! JetStream has stored it, and a retried publish with the same message id
//! is stored once.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use vigia_domain::{BatchItem, EVENT_HEADER, READINGS_RECORDED, VERSION_HEADER, encode_batch};

/// Headers of a dead letter: where the message came from and why it is here.
pub const DEAD_STREAM: &str = "Vigia-Dead-Stream";
pub const DEAD_SEQ: &str = "Vigia-Dead-Seq";
pub const DEAD_SUBJECT: &str = "Vigia-Dead-Subject";
pub const DEAD_REASON: &str = "Vigia-Dead-Reason";

/// A publish the stream did not confirm.
#[derive(Debug, thiserror::Error)]
#[error("publish to {subject} failed: {reason}")]
pub struct PublishError {
    pub subject: String,
    pub reason: String,
}

/// Publishes readings and events to JetStream.
#[derive(Clone, Debug)]
pub struct Publisher {
    js: jetstream::Context,
}

/// What JetStream said about a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub duplicate: bool,
}

impl Publisher {
    pub(crate) fn new(js: jetstream::Context) -> Publisher {
        Publisher { js }
    }

    /// Sends one message and returns the future of its acknowledgement, so
    /// callers can keep many in flight.
    ///
    /// A [`Subject`] a caller keeps (a device's, say) is sent without a copy.
    pub async fn send(
        &self,
        subject: impl Into<Subject>,
        headers: Option<HeaderMap>,
        payload: Bytes,
        message_id: Option<&str>,
    ) -> Result<PublishAckFuture, PublishError> {
        let subject: Subject = subject.into();
        let mut msg = PublishMessage::build().payload(payload);
        if let Some(h) = headers {
            msg = msg.headers(h);
        }
        if let Some(id) = message_id {
            msg = msg.message_id(id);
        }
        self.js
            .send_publish(subject.clone(), msg)
            .await
            .map_err(|e| PublishError { subject: subject.to_string(), reason: e.to_string() })
    }

    /// Publishes and waits for the stream's acknowledgement.
    pub async fn publish(
        &self,
        subject: String,
        headers: Option<HeaderMap>,
        payload: Bytes,
        message_id: Option<&str>,
    ) -> Result<Stored, PublishError> {
        let fut = self.send(subject.clone(), headers, payload, message_id).await?;
        let ack = fut.await.map_err(|e| PublishError { subject, reason: e.to_string() })?;
        Ok(Stored { seq: ack.sequence, duplicate: ack.duplicate })
    }

    /// Publishes and waits for the acknowledgement, sending again with the
    /// same message id when the stream does not confirm (NATS restarting,
    /// a stream leader moving, an ack lost), with backoff from 50 ms to 2 s,
    /// until `patience` is spent. The stream's duplicate window (2 minutes in
    /// `nats/streams`) makes the retries store the message once.
    pub async fn publish_retrying(
        &self,
        subject: String,
        headers: Option<HeaderMap>,
        payload: Bytes,
        message_id: &str,
        patience: Duration,
    ) -> Result<Stored, PublishError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.publish(subject.clone(), headers.clone(), payload.clone(), Some(message_id)).await {
                Ok(stored) => return Ok(stored),
                Err(e) if started.elapsed() + backoff < patience => {
                    tracing::warn!(subject = %subject, error = %e.reason, retry_in_ms = backoff.as_millis() as u64, "Publish not confirmed; retrying.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a message `consumer` could not apply (its sequence, subject and
    /// payload) to `deadletter.<stream>.<consumer>` with its original payload,
    /// and subject, sequence and `reason` in `Vigia-Dead-*` headers.
    /// Idempotent: one message id per stream sequence.
    pub async fn dead_letter(
        &self,
        stream: &str,
        consumer: &str,
        (seq, subject, payload): (u64, &str, &[u8]),
        reason: &str,
    ) -> Result<Stored, PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert(DEAD_STREAM, stream);
        headers.insert(DEAD_SEQ, seq.to_string().as_str());
        headers.insert(DEAD_SUBJECT, subject);
        // Header values are one line of bounded length.
        let reason: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(512).collect();
        headers.insert(DEAD_REASON, reason.as_str());
        let to = format!("deadletter.{}.{consumer}", stream.to_lowercase());
        let id = format!("dead-{stream}-{seq}");
        self.publish_retrying(to, Some(headers), Bytes::copy_from_slice(payload), &id, Duration::from_secs(30)).await
    }

    /// Encodes a `ReadingsRecorded` v1 batch for `subject`; send it with [`Publisher::send`].
    pub fn batch_message(items: &[BatchItem]) -> (HeaderMap, Bytes) {
        let mut headers = HeaderMap::new();
        headers.insert(EVENT_HEADER, READINGS_RECORDED);
        headers.insert(VERSION_HEADER, "1");
        (headers, Bytes::from(encode_batch(items)))
    }
}
