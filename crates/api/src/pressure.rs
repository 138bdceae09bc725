//! Visible backpressure: when the store falls behind the log, HTTP ingest
//! says so (503 with `Retry-After` and the lag) instead of accepting what
//! cannot be stored in time; `/health` reports the same lag and how full the
//! stream is against its limits.
//!
//! Devices on NATS and MQTT are never refused here: JetStream holds their
//! backlog within the stream's limits, and a limit about to be reached is
//! reported (and logged) before it is reached.
//!
//! The lag is read from JetStream at most every [`REFRESH`], by one request
//! at a time; the others use the last reading, so thousands of concurrent
//! requests cost one consumer-info call per refresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::sync::RwLock;
use vigia_bus::{Bus, Lag, READINGS, Usage};

use crate::Problem;

/// How often the lag is read again.
pub(crate) const REFRESH: Duration = Duration::from_millis(500);

/// When to refuse ingest and when to warn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PressureLimits {
    /// Refuse HTTP ingest while the persister has more messages than this to finish.
    pub max_lag_messages: u64,
    /// Refuse HTTP ingest while its oldest unfinished message is older than this.
    pub max_lag_seconds: f64,
    /// Warn when a stream limit (messages, bytes, age) is this full (0 to 1).
    pub warn_stream_share: f64,
}

impl Default for PressureLimits {
    fn default() -> Self {
        PressureLimits { max_lag_messages: 1_000_000, max_lag_seconds: 30.0, warn_stream_share: 0.8 }
    }
}

/// What the last reading said.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub lag: Lag,
    pub lag_seconds: f64,
    pub usage: Option<Usage>,
    /// The fullest stream limit and how full it is.
    pub fullest: Option<(&'static str, f64)>,
}

#[derive(Debug)]
struct Inner {
    limits: PressureLimits,
    last: RwLock<Option<(Instant, Reading)>>,
    refreshing: AtomicBool,
    warned: AtomicBool,
}

/// The persister's lag as HTTP ingest sees it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pressure {
    inner: Arc<Inner>,
}

impl Pressure {
    pub fn new(limits: PressureLimits) -> Pressure {
        Pressure {
            inner: Arc::new(Inner {
                limits,
                last: RwLock::new(None),
                refreshing: AtomicBool::new(false),
                warned: AtomicBool::new(false),
            }),
        }
    }

    pub fn limits(&self) -> PressureLimits {
        self.inner.limits
    }

    /// The latest reading, refreshed when older than [`REFRESH`].
    pub async fn reading(&self, bus: &Bus) -> Reading {
        let stale = self.inner.last.read().await.as_ref().is_none_or(|(at, _)| at.elapsed() >= REFRESH);
        if stale && !self.inner.refreshing.swap(true, Ordering::AcqRel) {
            let fresh = read(bus).await;
            self.warn(&fresh);
            *self.inner.last.write().await = Some((Instant::now(), fresh));
            self.inner.refreshing.store(false, Ordering::Release);
        }
        self.inner.last.read().await.as_ref().map(|(_, r)| r.clone()).unwrap_or_default()
    }

    /// `Ok` when ingest may go on; a 503 problem with `Retry-After` when the
    /// store is further behind than the limits allow.
    pub async fn admit(&self, bus: &Bus) -> Result<(), Problem> {
        let r = self.reading(bus).await;
        let limits = self.inner.limits;
        let messages = r.lag.messages();
        if messages <= limits.max_lag_messages && r.lag_seconds <= limits.max_lag_seconds {
            return Ok(());
        }
        // Come back when about a tenth of the backlog is done, within reason.
        let retry = (r.lag_seconds / 10.0).ceil().clamp(1.0, 60.0) as u64;
        let detail = format!(
            "the store is {messages} messages ({:.0} s) behind the log, more than this server accepts \
             ({} messages or {:.0} s); nothing was written: retry after {retry} s, or publish to NATS, \
             where JetStream holds the backlog",
            r.lag_seconds, limits.max_lag_messages, limits.max_lag_seconds
        );
        Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail).lagging(messages, r.lag_seconds, retry))
    }

    fn warn(&self, r: &Reading) {
        let Some((limit, share)) = r.fullest else { return };
        let over = share >= self.inner.limits.warn_stream_share;
        if over && !self.inner.warned.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                stream = READINGS,
                limit,
                percent = share * 100.0,
                "The stream is close to a limit; JetStream will discard the oldest messages when it is reached."
            );
        } else if !over {
            self.inner.warned.store(false, Ordering::Release);
        }
    }
}

async fn read(bus: &Bus) -> Reading {
    let now = crate::stats::now_ms();
    let lag = bus.lag(READINGS, "persister").await.unwrap_or_default();
    let usage = bus.usage(READINGS).await.ok();
    let fullest = usage.as_ref().and_then(|u| u.fullest(now));
    Reading { lag, lag_seconds: lag.seconds(now), usage, fullest }
}
