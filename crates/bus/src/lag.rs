//! How far a consumer is behind its stream, and how full the stream is.
//!
//! Lag in messages is what the consumer has not acknowledged yet (pending
//! plus delivered-unacknowledged); lag in time is the age of the oldest of
//! them, read back from the log by sequence. Stream usage is compared with
//! the stream's own limits, so a limit about to be reached can be reported
//! before JetStream starts discarding.

use async_nats::jetstream;

use crate::{Bus, BusError};

/// A consumer's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Messages not yet delivered.
    pub pending: u64,
    /// Delivered, not yet acknowledged.
    pub ack_pending: u64,
    /// Broker time (unix ms) of the oldest message not acknowledged, if any.
    pub oldest_ms: Option<i64>,
}

impl Lag {
    /// Messages the consumer still has to finish.
    pub fn messages(&self) -> u64 {
        self.pending + self.ack_pending
    }

    /// Seconds the oldest unfinished message has waited at `now_ms`.
    pub fn seconds(&self, now_ms: i64) -> f64 {
        self.oldest_ms.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0)
    }
}

/// A stream's contents against its limits (`None`: unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    pub messages: u64,
    pub bytes: u64,
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_age_ms: Option<i64>,
    /// Broker time of the oldest message kept.
    pub first_ms: Option<i64>,
}

impl Usage {
    /// The fullest of the stream's limits as a share (0.0 to 1.0), with its
    /// name: `messages`, `bytes` or `age` (at `now_ms`).
    pub fn fullest(&self, now_ms: i64) -> Option<(&'static str, f64)> {
        let share = |used: f64, max: Option<f64>| max.filter(|m| *m > 0.0).map(|m| used / m);
        [
            ("messages", share(self.messages as f64, self.max_messages.map(|m| m as f64))),
            ("bytes", share(self.bytes as f64, self.max_bytes.map(|m| m as f64))),
            ("age", share(self.first_ms.map_or(0.0, |f| (now_ms - f) as f64), self.max_age_ms.map(|m| m as f64))),
        ]
        .into_iter()
        .filter_map(|(name, s)| s.map(|s| (name, s)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

fn limit(v: i64) -> Option<u64> {
    (v > 0).then_some(v as u64)
}

impl Bus {
    /// The backlog of durable consumer `consumer` on `stream`.
    pub async fn lag(&self, stream: &str, consumer: &str) -> Result<Lag, BusError> {
        let mut c = self.consumer(stream, consumer).await?;
        let info = c.info().await.map_err(|e| BusError::JetStream(format!("{stream}/{consumer} info: {e}")))?.clone();
        let mut lag = Lag { pending: info.num_pending, ack_pending: info.num_ack_pending as u64, oldest_ms: None };
        if lag.messages() > 0 {
            let s = self.js.get_stream(stream).await.map_err(|e| BusError::JetStream(format!("{stream}: {e}")))?;
            // The first sequence after the ack floor that the stream still holds.
            let first = (info.ack_floor.stream_sequence + 1).max(s.cached_info().state.first_sequence);
            if let Ok(m) = s.get_raw_message(first).await {
                lag.oldest_ms = Some((m.time.unix_timestamp_nanos() / 1_000_000) as i64);
            }
        }
        Ok(lag)
    }

    /// `stream`'s contents against its limits.
    pub async fn usage(&self, stream: &str) -> Result<Usage, BusError> {
        let mut s = self.js.get_stream(stream).await.map_err(|e| BusError::JetStream(format!("{stream}: {e}")))?;
        let info: jetstream::stream::Info =
            s.info().await.map_err(|e| BusError::JetStream(format!("{stream} info: {e}")))?.clone();
        let first_ms =
            (info.state.messages > 0).then(|| (info.state.first_timestamp.unix_timestamp_nanos() / 1_000_000) as i64);
        Ok(Usage {
            messages: info.state.messages,
            bytes: info.state.bytes,
            max_messages: limit(info.config.max_messages),
            max_bytes: limit(info.config.max_bytes),
            max_age_ms: (!info.config.max_age.is_zero()).then_some(info.config.max_age.as_millis() as i64),
            first_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fullest_limit_is_named() {
        let u = Usage {
            messages: 10,
            bytes: 900,
            max_messages: None,
            max_bytes: Some(1000),
            max_age_ms: Some(10_000),
            first_ms: Some(5_000),
        };
        assert_eq!(u.fullest(7_000), Some(("bytes", 0.9)));
        assert_eq!(u.fullest(15_000), Some(("age", 1.0)));
        assert_eq!(Usage::default().fullest(0), None);
        let lag = Lag { pending: 3, ack_pending: 2, oldest_ms: Some(1_000) };
        assert_eq!((lag.messages(), lag.seconds(3_500)), (5, 2.5));
    }
}
