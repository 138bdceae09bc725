//! SurrealDB projections of the log: blocks of events, rollups, the sensor
//! registry (with the hierarchical counters it implies), traffic and alerts.
//!
//! The readings projection is written only through a [`Writer`], which
//! applies a flush and its ledger entry in one transaction. Every statement
//! is parameterised: no caller-supplied text is ever spliced into SurrealQL.

mod alerts;
mod bare;
mod blocks;
mod change;
mod codec;
mod conn;
mod datasets;
mod dead;
mod layout;
mod meta;
mod payload;
mod read;
mod retention;
mod stats;
mod writer;

use conn::Conn;

pub use alerts::AlertRecord;
pub use change::ChangeOutcome;
pub use codec::CodecError;
pub use conn::{EngineMemory, is_embedded};
pub use datasets::{DatasetRecord, JobProgress, JobRecord};
pub use dead::DeadLetter;
pub use layout::SHARDS;
pub use meta::SensorMetaRow;
pub use retention::{Retention, Retired, RetiredRow};
pub use stats::{CounterRow, MAX_BUCKETS, RollupRow, SensorRow, Summary, TrafficRow};
pub use writer::{Applied, Writer};

/// The ledger of the readings stream's projection.
pub const READINGS_LEDGER: &str = "readings";

const SCHEMA: &str = include_str!("schema.surql");

/// Errors a store operation can end in.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer committed first (ledger moved or the engine saw a
    /// write conflict). Reload the ledger and retry.
    #[error("another writer committed first; retry")]
    Conflict,
    #[error("store URL `{0}` is not supported: use mem://, surrealkv://<path> or ws://<host:port>")]
    BadUrl(String),
    /// A flush would write more than the engine takes in one transaction
    /// (the writer splits such flushes; callers never see this).
    #[error("a transaction of about {bytes} bytes is over the store's budget of {budget}")]
    TooLarge { bytes: usize, budget: usize },
    /// A read would return more events than the caller allows.
    #[error("{found} events match, more than the {cap} one request may scan; narrow the tag or time range")]
    TooMany { found: usize, cap: usize },
    /// A stored record does not decode: damaged, or written by a newer Vigia.
    #[error("{0}")]
    Corrupt(String),
    /// The embedded engine did not open (a damaged or newer store, a path
    /// that cannot be written).
    #[error("could not open the embedded store: {0}")]
    Open(String),
    #[error("SurrealDB: {0}")]
    Db(#[from] surrealdb::Error),
}

impl From<CodecError> for StoreError {
    fn from(e: CodecError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// A handle to the projection store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Conn,
    /// Most bytes one flush may write in one transaction; a flush of several
    /// messages that would write more is committed in parts
    /// ([`Writer::apply`]). `None` unless a SurrealKV memtable size is set.
    txn_budget: Option<usize>,
}

/// How to reach the store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub url: String,
    pub namespace: String,
    pub database: String,
    /// Root credentials for a `ws://` server; ignored by embedded engines.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Memory bounds of an embedded SurrealKV engine.
    pub memory: EngineMemory,
}

impl StoreConfig {
    pub fn memory() -> StoreConfig {
        StoreConfig {
            url: "mem://".into(),
            namespace: "vigia".into(),
            database: "vigia".into(),
            username: None,
            password: None,
            memory: EngineMemory::default(),
        }
    }
}

impl Store {
    /// Connects (or opens the embedded engine) and applies the schema.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let url = config.url.as_str();
        let supported = ["mem://", "surrealkv://", "ws://", "wss://"];
        if !supported.iter().any(|p| url.starts_with(p)) {
            return Err(StoreError::BadUrl(url.to_owned()));
        }
        let db = Conn::open(url, config.memory).await?;
        // Only SurrealKV bounds a transaction by its memtable.
        let txn_budget = config.memory.transaction_budget().filter(|_| url.starts_with("surrealkv://"));
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            db.signin(username, password).await?;
        }
        db.use_ns_db(&config.namespace, &config.database).await?;
        db.query(SCHEMA).await?.check()?;
        Ok(Store { db, txn_budget })
    }

    /// Runs SurrealQL as it is, for fault-injection tests and one-off operator
    /// work (a schema change, a repair). Projections never use it: they write
    /// through [`Store::commit`] with bound parameters only.
    #[doc(hidden)]
    pub async fn execute_unchecked(&self, surql: &str) -> Result<(), StoreError> {
        self.db.query(surql.to_owned()).await?.check()?;
        Ok(())
    }

    /// The SurrealDB release serving this store: the embedded engine's, or
    /// the server's for `ws://` (e.g. `3.3.5`).
    pub async fn version(&self) -> Result<String, StoreError> {
        self.db.version().await
    }

    /// Whether the store answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.query("RETURN 1").await?.check()?;
        Ok(())
    }
}

/// Waits until the embedded SurrealKV engine of `url` (`surrealkv://<dir>`)
/// has closed, for up to `limit`; true once it has, or when `url` names no
/// embedded SurrealKV directory.
///
/// SurrealDB shuts the embedded engine down in a task of its own once the
/// last handle to it is dropped: it writes the memtable out to sorted
/// tables, then releases the directory's lock file. A process that exits
/// first loses nothing (every commit is in the write-ahead log), but the next
/// start replays up to a whole memtable of log before it serves. So the
/// binary drops its store and waits here for the lock to come free.
pub async fn wait_closed(url: &str, limit: std::time::Duration) -> bool {
    let Some(dir) = url.strip_prefix("surrealkv://") else {
        return true;
    };
    let lock = std::path::Path::new(dir).join("LOCK");
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        // SurrealKV holds an exclusive flock on the file while it is open.
        let free = match std::fs::File::open(&lock) {
            Ok(file) => file.try_lock().is_ok(),
            Err(_) => true,
        };
        if free {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
