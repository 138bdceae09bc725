//! One typed configuration, layered: built-in defaults, then `vigia.toml`
//! (or the file given with `--config`), then `VIGIA_*` environment variables
//! (`VIGIA_NATS__URL`, `VIGIA_STORE__URL`, ...; `__` separates sections).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use vigia_domain::Rule;

/// A secret that never prints.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub nats: NatsConfig,
    pub store: StoreSection,
    pub http: HttpConfig,
    pub persister: PersisterConfig,
    #[serde(default)]
    pub backpressure: BackpressureConfig,
    #[serde(default)]
    pub backfill: BackfillConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub datasets: DatasetsConfig,
    pub alerts: AlertsConfig,
    pub sim: SimSection,
    pub log: LogConfig,
}

/// Uploaded CSV datasets (`POST /api/v1/datasets`, `vigia load`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetsConfig {
    /// Rows per chunk: one transaction each, and the unit a resumed load skips.
    pub chunk_rows: usize,
    /// Chunks inserted at once. 2 is fastest on 2 cores; more only adds
    /// transaction conflicts (docs/performance.md, "Dataset loads").
    pub parallelism: usize,
    /// Loaded datasets the API keeps in memory for queries, in MiB (0: none).
    pub cache_mb: u64,
}

impl Default for DatasetsConfig {
    fn default() -> Self {
        DatasetsConfig { chunk_rows: 2_000, parallelism: 2, cache_mb: 256 }
    }
}

impl DatasetsConfig {
    pub fn load_options(&self) -> crate::workers::loader::LoadOptions {
        crate::workers::loader::LoadOptions { chunk_rows: self.chunk_rows.max(1), parallelism: self.parallelism.max(1) }
    }
}

/// How long the store keeps what (0 = for ever), and its size limit.
/// Counters keep counting what retention removes (it is accounted per tag).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Raw events, in days. Keep it no longer than the READINGS stream's
    /// `max_age` if replays must rebuild the same store.
    pub events_days: u64,
    /// Minute rollups and minute traffic, in days.
    pub minute_days: u64,
    /// Hour rollups and hour traffic, in days.
    pub hour_days: u64,
    /// Day rollups, in days.
    pub day_days: u64,
    /// Largest SurrealKV directory, in MiB, before the oldest raw events go
    /// whatever their age (0: no limit; only for `surrealkv://` stores;
    /// fractions allowed).
    pub max_store_mb: f64,
    /// Most records of each kind one pass removes (one small transaction).
    pub batch: usize,
    /// Seconds between passes while there is nothing more to remove.
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            events_days: 30,
            minute_days: 90,
            hour_days: 730,
            day_days: 0,
            max_store_mb: 0.0,
            batch: 256,
            interval_secs: 60,
        }
    }
}

impl RetentionConfig {
    pub fn enabled(&self) -> bool {
        self.events_days + self.minute_days + self.hour_days + self.day_days > 0 || self.max_store_mb > 0.0
    }
}

/// How long a reading may take to reach the log before it counts as
/// backfill: stored, counted and rolled up like any other, marked
/// `backfill`, and never judged by the alert rules.
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillConfig {
    /// Readings older than this (seconds) when the broker receives them are
    /// backfill. CSV imports are backfill whatever their age.
    pub freshness_secs: u64,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        BackfillConfig { freshness_secs: DEFAULT_FRESHNESS.as_secs() }
    }
}

impl BackfillConfig {
    pub fn freshness(&self) -> Duration {
        Duration::from_secs(self.freshness_secs)
    }
}

/// When HTTP ingest refuses work because the store is behind the log
/// (503 with `Retry-After`), and when a stream limit is reported as near.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackpressureConfig {
    /// Refuse HTTP ingest while the persister has more messages than this to finish.
    pub max_lag_messages: u64,
    /// Refuse HTTP ingest while the oldest unfinished message is older than this (seconds).
    pub max_lag_seconds: f64,
    /// Report a stream limit (messages, bytes, age) in /health and the log once it is this full (0 to 1).
    pub warn_stream_share: f64,
}

impl Default for BackpressureConfig {
    fn default() -> Self {
        let d = vigia_api::PressureLimits::default();
        BackpressureConfig {
            max_lag_messages: d.max_lag_messages,
            max_lag_seconds: d.max_lag_seconds,
            warn_stream_share: d.warn_stream_share,
        }
    }
}

impl BackpressureConfig {
    pub fn limits(&self) -> vigia_api::PressureLimits {
        vigia_api::PressureLimits {
            max_lag_messages: self.max_lag_messages,
            max_lag_seconds: self.max_lag_seconds,
            warn_stream_share: self.warn_stream_share,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    pub url: String,
    /// Start a child `nats-server` when nothing listens at `url` (vigia up only).
    pub spawn: bool,
    /// Directory with `nats-server.conf`, `streams/` and `consumers/`.
    pub dir: PathBuf,
    /// Store directory for a spawned `nats-server`.
    pub data_dir: PathBuf,
    /// Roots the readings stream captures as `<root>.>`.
    pub roots: Vec<String>,
    /// Servers each stream is kept on: 1 on one server, 3 on the cluster of `nats/cluster/`.
    pub replicas: usize,
    /// The service user of `nats/accounts.conf`; anonymous when absent.
    pub user: Option<String>,
    /// Its password; set it through `VIGIA_NATS__PASSWORD`, never in a file.
    pub password: Option<Secret>,
    /// Require TLS; implied by `tls://` URLs and by the files below.
    pub tls: bool,
    /// PEM file of a private CA that signed the server's certificate.
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate and key, for servers with `verify: true`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl NatsConfig {
    /// The user, password and TLS settings to connect with.
    pub fn access(&self) -> vigia_bus::Access {
        let credentials = self.user.as_ref().map(|user| vigia_bus::Credentials {
            user: user.clone(),
            password: self.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default(),
        });
        let wants_tls = self.tls
            || self.url.split(',').any(|u| u.trim().starts_with("tls://"))
            || self.tls_ca.is_some()
            || self.tls_cert.is_some();
        let tls = wants_tls.then(|| vigia_bus::Tls {
            ca: self.tls_ca.clone(),
            client_cert: self.tls_cert.clone().zip(self.tls_key.clone()),
        });
        vigia_bus::Access { credentials, tls }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `mem://`, `surrealkv://<path>` or `ws://<host:port>`.
    pub url: String,
    pub namespace: String,
    pub database: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Embedded SurrealKV: MiB of writes buffered before a flush to disk;
    /// unset leaves SurrealDB's sizing (docs/operations.md).
    pub memtable_mb: Option<u64>,
    /// Embedded SurrealKV: MiB of on-disk blocks cached for reads; unset
    /// leaves SurrealDB's sizing.
    pub block_cache_mb: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    /// Let GET requests through without a token (only matters once tokens exist).
    pub open_reads: bool,
    /// API tokens; none means the API is open (development only).
    pub tokens: Vec<TokenConfig>,
    /// Longest wait for a request head, and for the next request on an idle connection.
    pub header_timeout_ms: u64,
    /// Longest pause between two chunks of a request body.
    pub body_timeout_ms: u64,
}

impl HttpConfig {
    pub fn limits(&self) -> vigia_api::Limits {
        vigia_api::Limits {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_idle_timeout: Duration::from_millis(self.body_timeout_ms),
        }
    }
}

/// One API token, by its SHA-256 (`vigia token new` prints one).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    /// Hex SHA-256 of the token; the token itself is never stored.
    pub sha256: String,
    /// `read`, `write`, `admin`.
    pub scopes: Vec<String>,
}

impl HttpConfig {
    /// The API's access rules, checked.
    pub fn auth(&self) -> anyhow::Result<vigia_api::Auth> {
        let mut tokens = Vec::new();
        for t in &self.tokens {
            let bytes: Vec<u8> = (0..t.sha256.len())
                .step_by(2)
                .filter_map(|i| t.sha256.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect();
            let sha256: [u8; 32] = bytes.try_into().ok().filter(|_| t.sha256.len() == 64).ok_or_else(|| {
                anyhow::anyhow!(
                    "[[http.tokens]] `{}`: sha256 must be 64 hex digits (run `vigia token hash <token>`)",
                    t.name
                )
            })?;
            let scopes = t
                .scopes
                .iter()
                .map(|s| {
                    vigia_api::Scope::parse(s).ok_or_else(|| {
                        anyhow::anyhow!("[[http.tokens]] `{}`: scope `{s}` is not read, write or admin", t.name)
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            tokens.push(vigia_api::Token { name: t.name.clone(), sha256, scopes });
        }
        Ok(vigia_api::Auth { tokens, open_reads: self.open_reads })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PersisterConfig {
    /// Most messages per pull from JetStream.
    pub batch_size: usize,
    /// Longest wait for a pull batch to fill, in milliseconds.
    pub batch_wait_ms: u64,
    /// Most events (and messages) in one flush, one transaction. While a
    /// flush commits, the next one fills up to this.
    #[serde(default = "default_flush_events")]
    pub flush_events: usize,
    /// Threads of the store writers' own runtime (persister, alert projector,
    /// dataset loader); 0 runs them on the main runtime beside the API.
    #[serde(default = "default_writer_threads")]
    pub threads: usize,
}

fn default_writer_threads() -> usize {
    1
}

fn default_flush_events() -> usize {
    50_000
}

impl PersisterConfig {
    pub fn batch_wait(&self) -> Duration {
        Duration::from_millis(self.batch_wait_ms)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    pub rules: Vec<Rule>,
    /// Which consumer's deliveries the alerter judges when it runs in the
    /// same process as the persister (docs/architecture.md, "Alerts").
    #[serde(default)]
    pub consumer: AlertsConsumer,
}

/// Where an alerter running beside a persister gets its readings.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AlertsConsumer {
    /// `Persister` with a store embedded in the process (`mem://`,
    /// `surrealkv://`), where the store refusing writes is this machine's
    /// disk failing; `Own` with a store server, a failure of its own that
    /// alerts should outlive (docs/decisions/0003-alerter-on-the-persisters-consumer.md).
    #[default]
    Auto,
    /// Its own durable consumer `alerter`: nats-server delivers every reading
    /// twice, and alerts go on while the store is down.
    Own,
    /// The persister's pulls: each reading is delivered and read once, judged
    /// before the persister takes it, and acknowledged once both are done.
    /// Alerts then wait while the store is down. An alerter running alone
    /// (`vigia alert`) always uses its own consumer.
    Persister,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimSection {
    pub sensors: usize,
    pub rate: f64,
    pub regions: Vec<String>,
    pub min: f64,
    pub max: f64,
    pub error_ratio: f64,
    pub batch: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `vigia=debug,info`.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats: NatsConfig {
                url: "nats://127.0.0.1:4222".into(),
                spawn: true,
                dir: "nats".into(),
                data_dir: "data/nats".into(),
                roots: vec!["brasil".into()],
                replicas: 1,
                user: None,
                password: None,
                tls: false,
                tls_ca: None,
                tls_cert: None,
                tls_key: None,
            },
            store: StoreSection {
                url: "surrealkv://data/db".into(),
                namespace: "vigia".into(),
                database: "vigia".into(),
                username: None,
                password: None,
                memtable_mb: None,
                block_cache_mb: None,
            },
            http: HttpConfig {
                listen: "127.0.0.1:8080".into(),
                open_reads: true,
                tokens: Vec::new(),
                header_timeout_ms: 10_000,
                body_timeout_ms: 30_000,
            },
            backpressure: BackpressureConfig::default(),
            backfill: BackfillConfig::default(),
            retention: RetentionConfig::default(),
            datasets: DatasetsConfig::default(),
            persister: PersisterConfig {
                batch_size: 5000,
                batch_wait_ms: 50,
                flush_events: default_flush_events(),
                threads: default_writer_threads(),
            },
            alerts: AlertsConfig { rules: Rule::default_rules(), consumer: AlertsConsumer::Auto },
            sim: SimSection {
                sensors: 200,
                rate: 1.0,
                regions: ["norte", "nordeste", "centro-oeste", "sudeste", "sul"].map(String::from).to_vec(),
                min: 10.0,
                max: 100.0,
                error_ratio: 0.01,
                batch: 0,
            },
            log: LogConfig { format: "text".into(), filter: "info".into() },
        }
    }
}

impl Config {
    /// Defaults, then the file (if it exists), then `VIGIA_*` variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let path = file.unwrap_or(Path::new("vigia.toml"));
        if file.is_some() && !path.exists() {
            anyhow::bail!("config file {} does not exist", path.display());
        }
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            .merge(Env::prefixed("VIGIA_").split("__"))
            .extract()
            .with_context(|| format!("failed to read configuration from {} and VIGIA_* variables", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.http.auth()?;
        for rule in &self.alerts.rules {
            rule.validate().context("invalid [alerts] rule")?;
        }
        anyhow::ensure!(!self.nats.roots.is_empty(), "nats.roots needs at least one root, e.g. [\"brasil\"]");
        for root in &self.nats.roots {
            let ok = !root.is_empty() && root.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            anyhow::ensure!(
                ok && !root.starts_with('_') && root != "alerts" && root != "deadletter",
                "nats.roots: `{root}` is not a root: one token of [A-Za-z0-9_-], not starting with `_`, not `alerts` nor `deadletter`"
            );
        }
        anyhow::ensure!(
            self.nats.tls_cert.is_some() == self.nats.tls_key.is_some(),
            "nats.tls_cert and nats.tls_key go together: set both (PEM files) or neither"
        );
        anyhow::ensure!(self.persister.batch_size > 0, "persister.batch_size must be at least 1");
        anyhow::ensure!(self.persister.flush_events > 0, "persister.flush_events must be at least 1");
        anyhow::ensure!(
            self.store.memtable_mb.is_none_or(|mb| mb >= 16),
            "store.memtable_mb must be at least 16: the largest flush has to fit in it"
        );
        anyhow::ensure!(self.store.block_cache_mb.is_none_or(|mb| mb >= 8), "store.block_cache_mb must be at least 8");
        let r = &self.retention;
        let longer = |a: u64, b: u64| a == 0 || (b != 0 && a >= b);
        anyhow::ensure!(
            longer(r.minute_days, r.events_days)
                && longer(r.hour_days, r.minute_days)
                && longer(r.day_days, r.hour_days),
            "retention: keep minute rollups at least as long as raw events, hour rollups at least as long as \
             minute rollups, and day rollups at least as long as hour rollups (0 = for ever)"
        );
        anyhow::ensure!(r.batch > 0, "retention.batch must be at least 1");
        anyhow::ensure!(r.max_store_mb >= 0.0, "retention.max_store_mb cannot be negative");
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.backpressure.warn_stream_share),
            "backpressure.warn_stream_share is a share between 0 and 1"
        );
        Ok(())
    }

    /// Whether an alerter in the persister's process judges the persister's
    /// pulls (`[alerts] consumer`, `"auto"` resolved by the store's kind).
    pub fn alerter_rides_persister(&self) -> bool {
        match self.alerts.consumer {
            AlertsConsumer::Auto => vigia_store::is_embedded(&self.store.url),
            AlertsConsumer::Own => false,
            AlertsConsumer::Persister => true,
        }
    }

    pub fn store_config(&self) -> vigia_store::StoreConfig {
        vigia_store::StoreConfig {
            url: self.store.url.clone(),
            namespace: self.store.namespace.clone(),
            database: self.store.database.clone(),
            username: self.store.username.clone(),
            password: self.store.password.as_ref().map(|p| p.expose().to_owned()),
            memory: vigia_store::EngineMemory {
                memtable_mb: self.store.memtable_mb,
                block_cache_mb: self.store.block_cache_mb,
            },
        }
    }
}

#[cfg(test)]
// figment::Error is large; it only ever travels out of a test closure.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vigia.toml",
                "[nats]\nroots = [\"brasil\", \"meters\"]\n[store]\nurl = \"mem://\"\npassword = \"hunter2\"\n",
            )?;
            jail.set_env("VIGIA_STORE__URL", "surrealkv://elsewhere");
            jail.set_env("VIGIA_PERSISTER__BATCH_SIZE", "10");
            jail.set_env("VIGIA_STORE__MEMTABLE_MB", "64");
            let c = Config::load(None).expect("loads");
            assert_eq!(c.nats.roots, ["brasil", "meters"]);
            let memory = c.store_config().memory;
            assert_eq!((memory.memtable_mb, memory.block_cache_mb), (Some(64), None), "unset keeps SurrealDB's sizing");
            assert_eq!(c.store.url, "surrealkv://elsewhere");
            assert_eq!(c.persister.batch_size, 10);
            assert!(!format!("{c:?}").contains("hunter2"), "secrets never print");
            Ok(())
        });
    }

    #[test]
    fn example_file_lists_the_defaults() {
        let text = include_str!("../../../vigia.example.toml");
        let parsed: Config = Figment::from(Toml::string(text)).extract().expect("example parses");
        assert_eq!(parsed, Config::default(), "vigia.example.toml drifted from Config::default()");
    }

    /// `KEY: value` lines of docker-compose.yml's `x-vigia` environment, with
    /// `${VAR:-default}` resolved to its default as compose does without VAR.
    fn compose_environment(text: &str) -> Vec<(String, String)> {
        let block = text.split("x-vigia:").nth(1).expect("x-vigia anchor");
        let env = block.split("  environment:\n").nth(1).expect("environment in x-vigia");
        env.lines()
            .take_while(|l| l.starts_with("    "))
            .filter_map(|l| l.trim().split_once(": "))
            .map(|(k, v)| {
                let v = v.trim_matches('"');
                let v = match v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                    Some(expr) => expr.split_once(":-").map_or("", |(_, default)| default),
                    None => v,
                };
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn the_compose_environment_is_a_valid_configuration() {
        let env = compose_environment(include_str!("../../../docker-compose.yml"));
        assert!(env.len() >= 5, "{env:?}");
        figment::Jail::expect_with(|jail| {
            for (k, v) in &env {
                assert!(k.starts_with("VIGIA_"), "{k}");
                jail.set_env(k, v);
            }
            let c = Config::load(None).map_err(|e| format!("{e:#}"))?;
            assert_eq!((c.nats.url.as_str(), c.nats.spawn), ("nats://nats:4222", false));
            assert_eq!(c.store.url, "ws://surrealdb:8000");
            assert_eq!(c.store.username.as_deref(), Some("root"));
            assert_eq!(c.store.password.as_ref().map(Secret::expose), Some("root"));
            assert_eq!((c.log.format.as_str(), c.http.listen.as_str()), ("json", "0.0.0.0:8080"));
            Ok(())
        });
    }

    #[test]
    fn auto_rides_the_persister_with_an_embedded_store_only() {
        let mut c = Config::default();
        assert_eq!(c.alerts.consumer, AlertsConsumer::Auto);
        for (url, rides) in [
            ("surrealkv://data/db", true),
            ("mem://", true),
            ("ws://surrealdb:8000", false),
            ("wss://db.example:443", false),
        ] {
            c.store.url = url.into();
            assert_eq!(c.alerter_rides_persister(), rides, "{url}");
        }
        c.alerts.consumer = AlertsConsumer::Own;
        c.store.url = "mem://".into();
        assert!(!c.alerter_rides_persister(), "asked for its own consumer");
        c.alerts.consumer = AlertsConsumer::Persister;
        c.store.url = "ws://surrealdb:8000".into();
        assert!(c.alerter_rides_persister(), "asked to ride whatever the store");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_rules() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("vigia.toml", "[nats]\nurll = \"x\"\n")?;
            assert!(Config::load(None).is_err());
            jail.create_file(
                "vigia.toml",
                "[[alerts.rules]]\nid = \"bad id\"\npattern = \">\"\nop = \"gt\"\nthreshold = 1\n",
            )?;
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }
}
