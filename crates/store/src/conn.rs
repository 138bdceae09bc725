//! How the store reaches SurrealDB: an embedded datastore that Vigia opens
//! itself, or a server over WebSocket.
//!
//! Why Vigia can open the embedded datastore rather than letting
//! `engine::any::connect` do it (only when `[store]` sets a bound):
//! SurrealDB sizes SurrealKV from the machine's memory (on a 24 GiB
//! machine, a 1 GiB memtable and a block cache of 11 GiB),
//! and no key in the connection URL reaches those sizes (the SDK prefixes URL
//! keys with `datastore_`). A backlog drain then grew Vigia to about 1 GiB
//! for the memtable alone. Building the datastore here lets
//! [`EngineMemory`] bound both, and the SDK serves the datastore as it would
//! its own (`Surreal::unstable_from_datastore`, which is why `surrealdb-core`
//! and `surrealdb-cnf` are pinned to the SDK's exact release).
//!
//! The two connection kinds have different SDK types, so [`Conn`] and
//! [`Statement`] carry either and offer the one shape the store uses:
//! a query, its bindings, and its results.

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use surrealdb::engine::any::Any;
use surrealdb::engine::local::Db;
use surrealdb::method::{IntoVariables, Query};
use surrealdb::{IndexedResults, Surreal};
use surrealdb_cnf::ConfigMap;
use surrealdb_core::kvs::Datastore;

use crate::StoreError;

/// Memory the embedded SurrealKV engine may hold, in MiB; `None` leaves
/// SurrealDB's own sizing. Ignored by `mem://` (everything is in memory
/// there) and by a server (`ws://`), which has its own settings.
///
/// The default is SurrealDB's sizing because SurrealKV 0.21.4 (the release
/// SurrealDB 3.3.5 uses) can deadlock when memtables are small: its
/// compactor takes the level manifest and then the immutable memtables for
/// writing, while a new snapshot takes them for reading in the opposite
/// order (`compactor.rs` `update_manifest`, `snapshot.rs`
/// `collect_iter_state`). Small memtables flush and compact often; a
/// 10,000,000-event backfill with a 64 MiB memtable stopped that way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineMemory {
    /// Writes buffered before they are flushed to a table on disk. A single
    /// transaction must fit in it.
    pub memtable_mb: Option<u64>,
    /// Blocks of tables on disk kept for reads.
    pub block_cache_mb: Option<u64>,
}

impl EngineMemory {
    /// Most bytes one transaction should write: half the memtable, leaving
    /// room for the estimate's error and for other writes in flight. `None`
    /// with SurrealDB's sizing.
    pub(crate) fn transaction_budget(self) -> Option<usize> {
        self.memtable_mb.map(|mb| mb as usize * (1 << 20) / 2)
    }

    fn config(self) -> ConfigMap {
        const MIB: u64 = 1024 * 1024;
        let mut map = ConfigMap::empty();
        if let Some(mb) = self.memtable_mb {
            map = map.with_key_value("surrealkv_max_memtable_size", (mb * MIB).to_string());
        }
        if let Some(mb) = self.block_cache_mb {
            map = map.with_key_value("surrealkv_block_cache_capacity", (mb * MIB).to_string());
        }
        map
    }
}

/// Whether `url` names an engine inside this process (`mem://`,
/// `surrealkv://<path>`) rather than a server (`ws://`, `wss://`).
pub fn is_embedded(url: &str) -> bool {
    ["mem://", "surrealkv://"].iter().any(|scheme| url.starts_with(scheme))
}

/// A connection of either kind. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) enum Conn {
    /// `mem://` or `surrealkv://` with memory bounds, opened by
    /// [`Conn::open`].
    Bounded(Surreal<Db>),
    /// Opened by the SDK: a server (`ws://`, `wss://`), or an embedded engine
    /// with SurrealDB's own sizing.
    Sdk(Surreal<Any>),
}

impl Conn {
    /// Connects to `url`: through the SDK for a server or when no bound is
    /// set; else opens the embedded datastore (`mem://`, `surrealkv://<path>`)
    /// the way the SDK's own `connect` does, with Vigia's bounds. Queries through the datastore
    /// opened here measured slower (counts tree 12 to 19 ms against 4 to 7
    /// through the SDK, 10,000,000 events, cause not found), so the SDK's
    /// path stays the default.
    pub(crate) async fn open(url: &str, memory: EngineMemory) -> Result<Conn, StoreError> {
        if !is_embedded(url) || memory == EngineMemory::default() {
            return Ok(Conn::Sdk(surrealdb::engine::any::connect(url).await?));
        }
        let capabilities = surrealdb::opt::capabilities::Capabilities::new();
        // As the SDK does: the maintenance tasks start only once the
        // datastore carries its version, or a fresh store would look older
        // than the version key and be refused on every later open.
        let datastore: Arc<Datastore> = Datastore::builder()
            .with_config(memory.config())
            .with_capabilities(capabilities.into())
            .with_auth(false)
            .without_maintenance_tasks()
            .build_with_path(url)
            .await
            .map_err(open)?;
        datastore.check_version().await.map_err(open)?;
        datastore.bootstrap().await.map_err(open)?;
        datastore.start_maintenance_tasks();
        Ok(Conn::Bounded(Surreal::<Db>::unstable_from_datastore(datastore, None).await?))
    }

    pub(crate) fn query<'r>(&'r self, sql: impl Into<Cow<'r, str>>) -> Statement<'r> {
        match self {
            Conn::Bounded(db) => Statement::Bounded(db.query(sql)),
            Conn::Sdk(db) => Statement::Sdk(db.query(sql)),
        }
    }

    /// Signs in as root through the SDK. A bounded embedded engine runs
    /// without authentication, so there is nothing to sign in to.
    pub(crate) async fn signin(&self, username: &str, password: &str) -> Result<(), StoreError> {
        if let Conn::Sdk(db) = self {
            db.signin(surrealdb::opt::auth::Root { username: username.to_owned(), password: password.to_owned() })
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn use_ns_db(&self, namespace: &str, database: &str) -> Result<(), StoreError> {
        match self {
            Conn::Bounded(db) => db.use_ns(namespace).use_db(database).await?,
            Conn::Sdk(db) => db.use_ns(namespace).use_db(database).await?,
        };
        Ok(())
    }

    pub(crate) async fn version(&self) -> Result<String, StoreError> {
        Ok(match self {
            Conn::Bounded(db) => db.version().await?.to_string(),
            Conn::Sdk(db) => db.version().await?.to_string(),
        })
    }
}

/// A query being built on either kind of connection; `.await` runs it.
#[allow(missing_debug_implementations, reason = "the SDK's Query is not Debug")]
pub(crate) enum Statement<'r> {
    Bounded(Query<'r, Db>),
    Sdk(Query<'r, Any>),
}

impl Statement<'_> {
    pub(crate) fn bind(self, vars: impl IntoVariables) -> Self {
        match self {
            Statement::Bounded(q) => Statement::Bounded(q.bind(vars)),
            Statement::Sdk(q) => Statement::Sdk(q.bind(vars)),
        }
    }
}

/// The engine's own errors arrive as `anyhow` chains; keep the whole chain.
fn open(e: impl std::fmt::Display) -> StoreError {
    StoreError::Open(format!("{e:#}"))
}

impl<'r> IntoFuture for Statement<'r> {
    type Output = Result<IndexedResults, surrealdb::Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'r>>;

    fn into_future(self) -> Self::IntoFuture {
        match self {
            Statement::Bounded(q) => q.into_future(),
            Statement::Sdk(q) => q.into_future(),
        }
    }
}
