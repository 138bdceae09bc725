//! The JetStream side of Vigia: streams and consumers as defined in `nats/`,
//! publishing with acknowledgements and message ids, and batched pull
//! consumption.
//!
//! This crate knows subjects, headers and acks; it never interprets a
//! payload (that is the domain's job) and never touches the store.

mod consume;
mod publish;
mod topology;

use async_nats::jetstream;

pub use async_nats::HeaderMap;
pub use consume::{Batcher, Delivery};
pub use publish::{PublishError, Publisher, Stored};
pub use topology::{ALERTS, READINGS, Topology, TopologyError};

/// Errors reaching or talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("JetStream request failed: {0}")]
    JetStream(String),
}

/// A connection to NATS with its JetStream context.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
}

impl Bus {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`), reconnecting forever after the first success.
    pub async fn connect(url: &str) -> Result<Bus, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("vigia")
            .connection_timeout(std::time::Duration::from_secs(3))
            .connect(url)
            .await
            .map_err(|source| BusError::Connect { url: url.to_owned(), source })?;
        Ok(Bus::from_client(client))
    }

    pub fn from_client(client: async_nats::Client) -> Bus {
        let js = jetstream::ContextBuilder::new().timeout(std::time::Duration::from_secs(10)).build(client.clone());
        Bus { client, js }
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.js.clone())
    }

    /// Waits until everything published or acked so far has reached the server.
    pub async fn flush(&self) -> Result<(), BusError> {
        self.client.flush().await.map_err(|e| BusError::JetStream(e.to_string()))
    }

    /// Binds to an existing durable pull consumer.
    pub async fn consumer(&self, stream: &str, durable: &str) -> Result<jetstream::consumer::PullConsumer, BusError> {
        self.js
            .get_consumer_from_stream(durable, stream)
            .await
            .map_err(|e| BusError::JetStream(format!("consumer {durable} on {stream}: {e}")))
    }

    /// Follows `stream` from now on (messages stored after the call), only
    /// subjects matching `filter` (empty: all), without acknowledgements:
    /// an ephemeral consumer the server drops once nobody pulls from it.
    pub async fn tail(&self, stream: &str, filter: &str) -> Result<Batcher, BusError> {
        let consumer = self
            .js
            .get_stream(stream)
            .await
            .map_err(|e| BusError::JetStream(format!("{stream}: {e}")))?
            .create_consumer(jetstream::consumer::pull::Config {
                deliver_policy: jetstream::consumer::DeliverPolicy::New,
                ack_policy: jetstream::consumer::AckPolicy::None,
                filter_subject: filter.to_owned(),
                inactive_threshold: std::time::Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::JetStream(format!("tail of {stream}: {e}")))?;
        Batcher::new(&consumer, 500, std::time::Duration::from_millis(100)).await
    }

    /// The last message on `subject` of `stream`, if there is one.
    pub async fn last_on(&self, stream: &str, subject: &str) -> Result<Option<LoggedMessage>, BusError> {
        let s = self.js.get_stream(stream).await.map_err(|e| BusError::JetStream(format!("{stream}: {e}")))?;
        match s.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some(logged(m))),
            Err(e) if matches!(e.kind(), jetstream::stream::LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(BusError::JetStream(format!("last message on {subject}: {e}"))),
        }
    }

    /// The message at `seq` on `READINGS`, read back from the log.
    pub async fn readings_message(&self, seq: u64) -> Result<LoggedMessage, BusError> {
        let stream = self.js.get_stream(READINGS).await.map_err(|e| BusError::JetStream(format!("{READINGS}: {e}")))?;
        let m = stream
            .get_raw_message(seq)
            .await
            .map_err(|e| BusError::JetStream(format!("{READINGS} message {seq}: {e}")))?;
        Ok(logged(m))
    }
}

fn logged(m: jetstream::message::StreamMessage) -> LoggedMessage {
    let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_owned());
    LoggedMessage {
        subject: m.subject.to_string(),
        event: header(vigia_domain::EVENT_HEADER),
        version: header(vigia_domain::VERSION_HEADER),
        published_ms: (m.time.unix_timestamp_nanos() / 1_000_000) as i64,
        payload: m.payload,
    }
}

/// A message read back from the log by sequence.
#[derive(Debug, Clone)]
pub struct LoggedMessage {
    pub subject: String,
    pub event: Option<String>,
    pub version: Option<String>,
    pub payload: bytes::Bytes,
    pub published_ms: i64,
}
