//! Publishing to the log with acknowledgements: a publish is done only once
//! JetStream has stored it, and a retried publish with the same message id
//! is stored once.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use bytes::Bytes;
use vigia_domain::{BatchItem, EVENT_HEADER, READINGS_RECORDED, VERSION_HEADER, encode_batch};

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
    pub async fn send(
        &self,
        subject: String,
        headers: Option<HeaderMap>,
        payload: Bytes,
        message_id: Option<&str>,
    ) -> Result<PublishAckFuture, PublishError> {
        let mut msg = PublishMessage::build().payload(payload);
        if let Some(h) = headers {
            msg = msg.headers(h);
        }
        if let Some(id) = message_id {
            msg = msg.message_id(id);
        }
        self.js.send_publish(subject.clone(), msg).await.map_err(|e| PublishError { subject, reason: e.to_string() })
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

    /// Encodes a `ReadingsRecorded` v1 batch for `subject`; send it with [`Publisher::send`].
    pub fn batch_message(items: &[BatchItem]) -> (HeaderMap, Bytes) {
        let mut headers = HeaderMap::new();
        headers.insert(EVENT_HEADER, READINGS_RECORDED);
        headers.insert(VERSION_HEADER, "1");
        (headers, Bytes::from(encode_batch(items)))
    }
}
