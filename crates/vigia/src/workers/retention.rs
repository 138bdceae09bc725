//! When the persister retires old data, and how much: by age (raw events,
//! minute, hour and day rollups each their own), and by size (the oldest
//! raw events go first while the SurrealKV directory is over its limit).
//!
//! The pass itself is `vigia_store::Writer::retire`, bounded to `batch`
//! records of each kind and run between flushes, so it never holds ingestion
//! up for more than one small transaction.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vigia_store::{Retention, Writer};

use crate::config::RetentionConfig;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// Decides when a retention pass is due and what it removes.
#[derive(Debug)]
pub struct Retainer {
    config: RetentionConfig,
    /// The SurrealKV directory, for the size limit (`None`: not on local disk).
    dir: Option<PathBuf>,
    last: Option<Instant>,
    /// Passes in a row that found more to do: run again without waiting.
    busy: bool,
}

impl Retainer {
    pub fn new(config: RetentionConfig, store_url: &str) -> Retainer {
        let dir = store_url.strip_prefix("surrealkv://").map(|p| PathBuf::from(p.split('?').next().unwrap_or(p)));
        Retainer { config, dir, last: None, busy: false }
    }

    /// Runs a pass if one is due; logs what it removed. Errors are logged,
    /// never fatal: the next pass tries again.
    pub async fn run_if_due(&mut self, writer: &mut Writer, now_ms: i64) {
        let due = self.busy || self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(self.config.interval_secs));
        if !due || !self.config.enabled() {
            return;
        }
        self.last = Some(Instant::now());
        let policy = match self.policy(writer, now_ms).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "Retention could not size the store; trying again later.");
                return;
            }
        };
        match writer.retire(&policy, self.config.batch).await {
            Ok(done) if !done.is_empty() => {
                self.busy = done.blocks >= self.config.batch || done.rollups >= self.config.batch;
                tracing::info!(
                    blocks = done.blocks,
                    events = done.events,
                    rollups = done.rollups,
                    traffic = done.traffic,
                    "Retention removed old data."
                );
            }
            Ok(_) => self.busy = false,
            Err(e) => {
                writer.forget();
                self.busy = false;
                tracing::warn!(error = %e, "Retention pass failed; trying again later.");
            }
        }
    }

    /// What a pass removes now.
    pub async fn policy(&self, writer: &Writer, now_ms: i64) -> Result<Retention, vigia_store::StoreError> {
        let c = &self.config;
        let before = |days: u64| (days > 0).then(|| now_ms - days as i64 * DAY_MS);
        let mut events_before = before(c.events_days);
        if c.max_store_mb > 0.0
            && let Some(dir) = &self.dir
            && dir_size(dir) as f64 > c.max_store_mb * 1024.0 * 1024.0
            && let Some(oldest) = writer.store().oldest_block().await?
        {
            // Over the size limit: the oldest hour goes, whatever its age,
            // but never the hour being written now.
            let by_size = (oldest + HOUR_MS).min(now_ms.div_euclid(HOUR_MS) * HOUR_MS);
            events_before = Some(events_before.map_or(by_size, |b| b.max(by_size)));
        }
        let hour_floor = |t: i64| t.div_euclid(HOUR_MS) * HOUR_MS;
        Ok(Retention {
            events_before: events_before.map(hour_floor),
            minutes_before: before(c.minute_days),
            hours_before: before(c.hour_days),
            days_before: before(c.day_days),
        })
    }
}

/// Bytes under `dir`, following no links.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
