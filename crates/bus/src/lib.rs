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
}
