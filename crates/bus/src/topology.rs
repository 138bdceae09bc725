//! Streams and durable consumers, read from the JSON files in `nats/` that
//! `nats stream add --config` and `nats consumer add --config` also accept,
//! and applied create-or-update so a start is idempotent.

use std::path::{Path, PathBuf};

use async_nats::jetstream::{self, consumer, stream};

/// The event log of readings and the changes made to them.
pub const READINGS: &str = "READINGS";
/// Alert lifecycle events.
pub const ALERTS: &str = "ALERTS";

/// Messages a consumer could not apply, on `deadletter.<stream>.<consumer>`.
pub const DEADLETTER: &str = "DEADLETTER";

/// Background work as a work queue: `jobs.<kind>`.
pub const JOBS: &str = "JOBS";

/// The object store bucket uploaded datasets are kept in.
pub const DATASETS_BUCKET: &str = "datasets";

/// Why the topology could not be loaded or applied.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid JetStream config: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("root `{0}` is not a valid tag token: use letters, digits, `_` or `-`")]
    BadRoot(String),
    #[error("applying {what} failed: {reason}")]
    Apply { what: String, reason: String },
}

/// The stream and consumer definitions, after applying configured roots.
#[derive(Debug, Clone)]
pub struct Topology {
    pub streams: Vec<stream::Config>,
    /// (stream name, consumer config)
    pub consumers: Vec<(String, consumer::pull::Config)>,
    /// Object store buckets (created when missing; their streams are `OBJ_<bucket>`).
    pub buckets: Vec<jetstream::object_store::Config>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TopologyError> {
    let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read { path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|source| TopologyError::Parse { path: path.into(), source })
}

impl Topology {
    /// Loads `streams/*.json` and `consumers/<stream>/*.json` under `dir`;
    /// the readings stream captures `<root>.>` for each root.
    pub fn load(dir: &Path, roots: &[String]) -> Result<Topology, TopologyError> {
        for root in roots {
            if root.is_empty() || !root.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(TopologyError::BadRoot(root.clone()));
            }
        }
        let mut readings: stream::Config = read_json(&dir.join("streams/readings.json"))?;
        readings.subjects = roots.iter().map(|r| format!("{r}.>")).collect();
        let alerts: stream::Config = read_json(&dir.join("streams/alerts.json"))?;
        let dead: stream::Config = read_json(&dir.join("streams/deadletter.json"))?;
        let jobs: stream::Config = read_json(&dir.join("streams/jobs.json"))?;
        let mut consumers = Vec::new();
        for (stream, names) in [
            (READINGS, ["persister", "alerter"].as_slice()),
            (ALERTS, ["alert-projector"].as_slice()),
            (JOBS, ["loader"].as_slice()),
        ] {
            for name in names {
                let path = dir.join(format!("consumers/{}/{name}.json", stream.to_lowercase()));
                consumers.push((stream.to_owned(), read_json(&path)?));
            }
        }
        let datasets = jetstream::object_store::Config {
            bucket: DATASETS_BUCKET.to_owned(),
            description: Some("Uploaded CSV datasets, chunked and checksummed (SHA-256).".to_owned()),
            num_replicas: 1,
            ..Default::default()
        };
        Ok(Topology { streams: vec![readings, alerts, dead, jobs], consumers, buckets: vec![datasets] })
    }

    /// Keeps every stream on `n` servers of a cluster (1 on a single server).
    /// Consumers follow their stream's replica count.
    pub fn set_replicas(&mut self, n: usize) {
        for s in &mut self.streams {
            s.num_replicas = n.max(1);
        }
        for b in &mut self.buckets {
            b.num_replicas = n.max(1);
        }
    }

    /// Keeps READINGS messages for `age` (the store's raw-event retention),
    /// so the log can always replay what the store still holds.
    pub fn set_readings_max_age(&mut self, age: std::time::Duration) {
        for s in self.streams.iter_mut().filter(|s| s.name == READINGS) {
            s.max_age = age;
        }
    }

    /// The consumer named `durable`, to adjust before applying (tests shorten `ack_wait`).
    pub fn consumer_mut(&mut self, durable: &str) -> Option<&mut consumer::pull::Config> {
        self.consumers.iter_mut().map(|(_, c)| c).find(|c| c.durable_name.as_deref() == Some(durable))
    }

    /// Leaves the consumer named `durable` out: [`Topology::apply`] neither
    /// makes nor changes it (an existing one is left as it is).
    pub fn without_consumer(&mut self, durable: &str) {
        self.consumers.retain(|(_, c)| c.durable_name.as_deref() != Some(durable));
    }

    /// Creates or updates every stream and consumer. Safe to run at every start.
    pub async fn apply(&self, js: &jetstream::Context) -> Result<(), TopologyError> {
        for config in &self.streams {
            js.create_or_update_stream(config.clone())
                .await
                .map_err(|e| TopologyError::Apply { what: format!("stream {}", config.name), reason: e.to_string() })?;
        }
        for (stream_name, config) in &self.consumers {
            let name = config.durable_name.clone().unwrap_or_default();
            let apply_err = |e: &dyn std::fmt::Display| TopologyError::Apply {
                what: format!("consumer {name} on {stream_name}"),
                reason: e.to_string(),
            };
            let stream = js.get_stream(stream_name).await.map_err(|e| apply_err(&e))?;
            let config = match stream.consumer_info(&name).await {
                Ok(existing) => settle(&stream, config, &existing).await.map_err(|e| apply_err(&e))?,
                Err(e) if matches!(e.kind(), jetstream::context::ConsumerInfoErrorKind::NotFound) => config.clone(),
                Err(e) => return Err(apply_err(&e)),
            };
            // On nats-server 2.9 a create with an existing durable name
            // updates it when only updatable fields differ.
            stream.create_consumer(config).await.map_err(|e| apply_err(&e))?;
        }
        for bucket in &self.buckets {
            if js.get_object_store(&bucket.bucket).await.is_err() {
                js.create_object_store(bucket.clone()).await.map_err(|e| TopologyError::Apply {
                    what: format!("object store {}", bucket.bucket),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(())
    }
}

/// The config to apply over an existing consumer. Its deliver policy was
/// fixed when it was created and is kept. A changed ack policy cannot be
/// updated in place (the persister's went from `explicit` to `all`): the
/// consumer is deleted and made again, starting after the old one's ack
/// floor. What it had delivered but not acknowledged comes again, and the
/// ledger skips what was already stored, so nothing is lost or counted twice.
async fn settle(
    stream: &stream::Stream,
    config: &consumer::pull::Config,
    existing: &consumer::Info,
) -> Result<consumer::pull::Config, String> {
    let mut config = config.clone();
    if existing.config.ack_policy == config.ack_policy {
        config.deliver_policy = existing.config.deliver_policy;
        return Ok(config);
    }
    let floor = existing.ack_floor.stream_sequence;
    tracing::warn!(
        consumer = existing.name,
        from = ?existing.config.ack_policy,
        to = ?config.ack_policy,
        floor,
        "Recreating a consumer whose ack policy changed; it resumes after its ack floor."
    );
    stream.delete_consumer(&existing.name).await.map_err(|e| format!("deleting it to change its ack policy: {e}"))?;
    if floor > 0 {
        config.deliver_policy = consumer::DeliverPolicy::ByStartSequence { start_sequence: floor + 1 };
    }
    Ok(config)
}

/// Makes consumer `durable` of `stream_name` again as it is, starting after
/// its ack floor; returns that floor. It clears messages a consumer holds
/// pending at or below its ack floor, which no cumulative ack can (nats-server
/// 2.9 brought a consumer back so after it was killed and restarted under
/// load; docs/nats.md). What it had delivered above the floor comes again.
pub async fn remake_consumer(js: &jetstream::Context, stream_name: &str, durable: &str) -> Result<u64, TopologyError> {
    let apply_err = |e: &dyn std::fmt::Display| TopologyError::Apply {
        what: format!("consumer {durable} on {stream_name}"),
        reason: e.to_string(),
    };
    let stream = js.get_stream(stream_name).await.map_err(|e| apply_err(&e))?;
    let existing = stream.consumer_info(durable).await.map_err(|e| apply_err(&e))?;
    let floor = existing.ack_floor.stream_sequence;
    let mut config = existing.config.clone();
    config.deliver_policy = consumer::DeliverPolicy::ByStartSequence { start_sequence: floor + 1 };
    stream.delete_consumer(durable).await.map_err(|e| apply_err(&e))?;
    stream.create_consumer(config).await.map_err(|e| apply_err(&e))?;
    Ok(floor)
}
