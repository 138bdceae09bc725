//! The JetStream side of Vigia: streams and consumers as defined in `nats/`,
//! publishing with acknowledgements and message ids, and batched pull
//! consumption.
//!
//! This crate knows subjects, headers and acks; it never interprets a
//! payload (that is the domain's job) and never touches the store.

mod consume;
mod group;
mod io;
mod lag;
mod objects;
mod publish;
mod topology;

use std::time::Duration;

use async_nats::jetstream;

pub use async_nats::jetstream::context::PublishAckFuture;
pub use async_nats::{HeaderMap, Subject};
pub use consume::{Batcher, Delivery, Receipt};
pub use group::{GroupLimits, GroupPublisher, Part, Placed};
pub use io::{BlockingReader, ChunkReader, Chunks};
pub use lag::{Lag, Usage};
pub use objects::{LOAD_JOB_SUBJECT, StoredObject};
pub use publish::{DEAD_REASON, DEAD_SEQ, DEAD_STREAM, DEAD_SUBJECT, PublishError, Publisher, Stored};
pub use topology::{ALERTS, DATASETS_BUCKET, DEADLETTER, JOBS, READINGS, Topology, TopologyError, remake_consumer};

/// Publishes of one process awaiting their acknowledgement, across all its
/// publishers. async-nats holds a permit from the moment a message is sent
/// until its ack future has been awaited (or dropped), and a publisher that
/// asks for a permit while none is free waits for one. A caller that holds
/// unawaited ack futures while it waits would then wait for itself, and
/// every other publisher of the process (the API among them) with it: with
/// async-nats's default of 5,000, one alerter batch that raised more than
/// 5,000 alert events froze all of HTTP ingest. So each pipelining caller
/// bounds its own unawaited acks (simulator 4,096, alerter
/// `ALERT_ACKS_IN_FLIGHT` = 1,024, group publisher 8), and the pool stays
/// far above their sum.
pub const ACK_PERMITS: usize = 1 << 16;

/// Errors reaching or talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("`{url}` is not a NATS URL or comma-separated list of them: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("JetStream request failed: {0}")]
    JetStream(String),
}

/// A NATS user and password. The password never appears in `Debug` output.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"[redacted]").finish()
    }
}

/// TLS to NATS beyond what a `tls://` URL asks for: a private CA to trust
/// (besides the system's roots) and a client certificate for servers that
/// verify clients (`verify: true`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tls {
    /// PEM file of the CA that signed the server's certificate.
    pub ca: Option<std::path::PathBuf>,
    /// PEM certificate and key files of this client.
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Who Vigia is to NATS: a user, TLS settings, both or neither.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub credentials: Option<Credentials>,
    /// When set, the connection must be TLS.
    pub tls: Option<Tls>,
}

/// `url` (or a comma-separated list) without any `user:password@` part, for messages and logs.
pub fn redact_url(url: &str) -> String {
    if url.contains(',') {
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if scheme.is_empty() { rest.to_owned() } else { format!("{scheme}://{rest}") }
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
        Bus::connect_as(url, &Access::default()).await
    }

    /// Connects as a NATS user (see `nats/accounts.conf`) and over TLS when
    /// `access` says so; anonymously and as the URL says otherwise.
    pub async fn connect_as(url: &str, access: &Access) -> Result<Bus, BusError> {
        let mut options = async_nats::ConnectOptions::new();
        if let Some(c) = &access.credentials {
            options = options.user_and_password(c.user.clone(), c.password.clone());
        }
        // Both of rustls's crypto backends end up compiled in (async-nats asks for
        // ring, object_store for aws-lc-rs), and then rustls refuses to guess and
        // panics at the first handshake, also when a server asks a plain `nats://`
        // client to upgrade. Pick ring for the process; later calls change nothing.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if let Some(tls) = &access.tls {
            options = options.require_tls(true);
            if let Some(ca) = &tls.ca {
                options = options.add_root_certificates(ca.clone());
            }
            if let Some((cert, key)) = &tls.client_cert {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
        }
        // A cluster is given as a comma-separated list; the client fails over between them.
        let servers = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BusError::BadUrl { url: redact_url(url), reason: e.to_string() })?;
        let client = options
            .name("vigia")
            .connection_timeout(std::time::Duration::from_secs(3))
            .connect(servers)
            .await
            .map_err(|source| BusError::Connect { url: redact_url(url), source })?;
        Ok(Bus::from_client(client))
    }

    pub fn from_client(client: async_nats::Client) -> Bus {
        let js = jetstream::ContextBuilder::new()
            .timeout(std::time::Duration::from_secs(10))
            .max_ack_inflight(ACK_PERMITS)
            .build(client.clone());
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

    /// [`Bus::flush`] for at most `limit`. With the server gone a flush waits
    /// for the reconnection, which may never come: a worker stopping, or
    /// acking, must not wait for ever. What stays unconfirmed is redelivered.
    pub async fn flush_within(&self, limit: Duration) -> Result<(), BusError> {
        tokio::time::timeout(limit, self.flush())
            .await
            .map_err(|_| BusError::JetStream(format!("the server did not confirm a flush within {limit:?}")))?
    }

    /// Binds to an existing durable pull consumer.
    pub async fn consumer(&self, stream: &str, durable: &str) -> Result<jetstream::consumer::PullConsumer, BusError> {
        self.js
            .get_consumer_from_stream(durable, stream)
            .await
            .map_err(|e| BusError::JetStream(format!("consumer {durable} on {stream}: {e}")))
    }

    /// Reads `stream` from its first message on subjects matching `filter`
    /// (empty: all), without acknowledgements. Returns the reader with the
    /// stream's first and last sequence at the call: read until `last`.
    pub async fn read_log(&self, stream: &str, filter: &str) -> Result<(Batcher, u64, u64), BusError> {
        let mut s = self.js.get_stream(stream).await.map_err(|e| BusError::JetStream(format!("{stream}: {e}")))?;
        let state = s.info().await.map_err(|e| BusError::JetStream(format!("{stream} info: {e}")))?.state.clone();
        let consumer = s
            .create_consumer(jetstream::consumer::pull::Config {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::None,
                filter_subject: filter.to_owned(),
                inactive_threshold: std::time::Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::JetStream(format!("reading {stream}: {e}")))?;
        let batcher = Batcher::new(&consumer, 1000, std::time::Duration::from_millis(50)).await?.with_patience(3);
        Ok((batcher, state.first_sequence, state.last_sequence))
    }

    /// Messages per subject on `stream` for subjects matching `filter`,
    /// straight from JetStream (an independent count of what the log holds).
    pub async fn subject_counts(
        &self,
        stream: &str,
        filter: &str,
    ) -> Result<std::collections::BTreeMap<String, u64>, BusError> {
        use futures::TryStreamExt;
        let s = self.js.get_stream(stream).await.map_err(|e| BusError::JetStream(format!("{stream}: {e}")))?;
        let counts =
            s.info_with_subjects(filter).await.map_err(|e| BusError::JetStream(format!("{stream} subjects: {e}")))?;
        counts
            .map_ok(|(subject, n)| (subject, n as u64))
            .try_collect()
            .await
            .map_err(|e| BusError::JetStream(format!("{stream} subjects: {e}")))
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
        Ok(Batcher::new(&consumer, 500, std::time::Duration::from_millis(100)).await?.with_patience(3))
    }

    /// The last message on `subject` of `stream`, if there is one.
    pub async fn last_on(&self, stream: &str, subject: &str) -> Result<Option<LoggedMessage>, BusError> {
        // A handle without the stream's info: the alerter asks this for many tags in a row.
        let s = self.js.get_stream_no_info(stream).await.map_err(|e| BusError::JetStream(format!("{stream}: {e}")))?;
        match s.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some(logged(m))),
            Err(e) if matches!(e.kind(), jetstream::stream::LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(BusError::JetStream(format!("last message on {subject}: {e}"))),
        }
    }

    /// Whether `READINGS` still holds the message at `seq` (not deleted,
    /// not aged or purged out): a cumulative ack may pass one it does not.
    pub async fn readings_holds(&self, seq: u64) -> Result<bool, BusError> {
        // A handle without the stream's info: a stuck floor asks this of many sequences in a row.
        let stream =
            self.js.get_stream_no_info(READINGS).await.map_err(|e| BusError::JetStream(format!("{READINGS}: {e}")))?;
        match stream.get_raw_message(seq).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), jetstream::stream::RawMessageErrorKind::NoMessageFound) => Ok(false),
            Err(e) => Err(BusError::JetStream(format!("{READINGS} message {seq}: {e}"))),
        }
    }

    /// The first sequence `READINGS` holds (everything before it is gone).
    pub async fn readings_first(&self) -> Result<u64, BusError> {
        let mut s = self.js.get_stream(READINGS).await.map_err(|e| BusError::JetStream(format!("{READINGS}: {e}")))?;
        let info = s.info().await.map_err(|e| BusError::JetStream(format!("{READINGS} info: {e}")))?;
        Ok(info.state.first_sequence)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_messages() {
        assert_eq!(redact_url("nats://svc:s3cret@10.0.0.1:4222"), "nats://10.0.0.1:4222");
        assert_eq!(redact_url("tls://a:b@c@nats.example:4443"), "tls://nats.example:4443");
        assert_eq!(redact_url("127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(redact_url("nats://u:p@a:1,nats://u:p@b:2"), "nats://a:1,nats://b:2");
        let c = Credentials { user: "vigia".into(), password: "s3cret".into() };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
