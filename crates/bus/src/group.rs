//! Group publishing: the small batches of many concurrent callers (HTTP
//! requests of a few readings each) go to the log as one `ReadingsRecorded`
//! message per root, the way a database groups commits.
//!
//! Why: each log message costs a publish, an acknowledgement, a delivery to
//! the persister and an ack back, and the persister pays per message, not
//! per reading. At 1,000 connections posting five readings each, that
//! per-message work was most of the server's CPU (docs/performance.md).
//!
//! How: callers hand their batch to one task and wait. The task takes
//! everything waiting, groups it by root and publishes each group as one
//! message, with at most [`GroupLimits::in_flight`] publishes awaiting their
//! acknowledgement. While they are in flight new batches queue up and form
//! the next group, so a lone caller is published at once and a crowd shares
//! messages. Each caller learns the message's sequence and the index of its
//! first reading in it, so event ids (`seq:idx`) stay exact. A caller is
//! answered only once JetStream has stored the message; a failed publish
//! fails every caller of the group, and none of their readings was stored.
//!
//! Batches with a message id (an `Idempotency-Key`) are not grouped: the
//! stream deduplicates whole messages, so they are published alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use vigia_domain::{BatchItem, Tag, batch_subject};

use crate::{PublishError, Publisher};

/// How big a group may grow and how many may be in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Most readings in one message.
    pub readings: usize,
    /// Most bytes of callers' estimates in one message (under NATS's `max_payload`).
    pub bytes: usize,
    /// Most publishes awaiting their acknowledgement at once.
    pub in_flight: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits { readings: 5_000, bytes: 256 * 1024, in_flight: 8 }
    }
}

/// Where a caller's readings landed: reading `i` of its batch is event
/// `seq:first_idx + i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub seq: u64,
    pub first_idx: u32,
}

/// One caller's batch, all under one root.
#[derive(Debug)]
pub struct Part {
    pub tags: Vec<Tag>,
    pub items: Vec<BatchItem>,
    /// The caller's estimate of its encoded size (the request body's length will do).
    pub bytes: usize,
}

#[derive(Debug)]
struct Job {
    part: Part,
    reply: oneshot::Sender<Result<Placed, PublishError>>,
}

/// Hands batches to the grouping task. Cheap to clone; the task ends when
/// the last clone is dropped.
#[derive(Debug, Clone)]
pub struct GroupPublisher {
    tx: mpsc::UnboundedSender<Job>,
}

impl GroupPublisher {
    /// Starts the grouping task on the current tokio runtime.
    pub fn spawn(publisher: Publisher, limits: GroupLimits) -> GroupPublisher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(publisher, limits, rx));
        GroupPublisher { tx }
    }

    /// Queues `part` now and returns where it will be told where it landed.
    /// Queuing is synchronous, so parts submitted together are grouped together.
    pub fn submit(&self, part: Part) -> oneshot::Receiver<Result<Placed, PublishError>> {
        let (reply, placed) = oneshot::channel();
        // A closed channel drops `reply`, and the caller sees the error below.
        let _ = self.tx.send(Job { part, reply });
        placed
    }

    /// Publishes `part` within a group and waits for the stream to store it.
    pub async fn publish(&self, part: Part) -> Result<Placed, PublishError> {
        let subject = part.tags.first().map(|t| t.root().to_owned()).unwrap_or_default();
        self.submit(part)
            .await
            .unwrap_or_else(|_| Err(PublishError { subject, reason: "the group publisher has stopped".into() }))
    }
}

async fn run(publisher: Publisher, limits: GroupLimits, mut rx: mpsc::UnboundedReceiver<Job>) {
    let permits = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut jobs = vec![first];
        while let Ok(job) = rx.try_recv() {
            jobs.push(job);
        }
        let mut permit = Some(permit);
        for group in plan(jobs, &limits) {
            let permit = match permit.take() {
                Some(p) => p,
                None => match permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let publisher = publisher.clone();
            tokio::spawn(async move {
                publish(&publisher, group).await;
                drop(permit);
            });
        }
    }
}

/// Splits waiting jobs into groups: one root each, in arrival order, within the limits.
fn plan(jobs: Vec<Job>, limits: &GroupLimits) -> Vec<Vec<Job>> {
    /// A group being filled, with its readings and bytes so far.
    struct Open {
        jobs: Vec<Job>,
        readings: usize,
        bytes: usize,
    }
    let mut by_root: BTreeMap<String, Vec<Open>> = BTreeMap::new();
    for job in jobs {
        let root = job.part.tags.first().map(|t| t.root().to_owned()).unwrap_or_default();
        let (readings, bytes) = (job.part.items.len(), job.part.bytes);
        let groups = by_root.entry(root).or_default();
        match groups.last_mut() {
            Some(g) if g.readings + readings <= limits.readings && g.bytes + bytes <= limits.bytes => {
                g.jobs.push(job);
                g.readings += readings;
                g.bytes += bytes;
            }
            _ => groups.push(Open { jobs: vec![job], readings, bytes }),
        }
    }
    by_root.into_values().flatten().map(|g| g.jobs).collect()
}

async fn publish(publisher: &Publisher, group: Vec<Job>) {
    let subject = match batch_subject(group.iter().flat_map(|j| &j.part.tags)) {
        Ok(s) => s,
        Err(e) => {
            for job in group {
                let subject = job.part.tags.first().map(|t| t.as_str().to_owned()).unwrap_or_default();
                let _ = job.reply.send(Err(PublishError { subject, reason: e.to_string() }));
            }
            return;
        }
    };
    let mut items = Vec::with_capacity(group.iter().map(|j| j.part.items.len()).sum());
    let mut replies = Vec::with_capacity(group.len());
    for job in group {
        replies.push((job.reply, items.len() as u32));
        items.extend(job.part.items);
    }
    let (headers, payload) = Publisher::batch_message(&items);
    match publisher.publish(subject, Some(headers), payload, None).await {
        Ok(stored) => {
            for (reply, first_idx) in replies {
                let _ = reply.send(Ok(Placed { seq: stored.seq, first_idx }));
            }
        }
        Err(e) => {
            for (reply, _) in replies {
                let _ = reply.send(Err(PublishError { subject: e.subject.clone(), reason: e.reason.clone() }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(tag: &str, readings: usize, bytes: usize) -> Job {
        let tag = Tag::parse(tag).unwrap();
        let items = (0..readings)
            .map(|_| BatchItem { tag: tag.to_string(), ts: None, value: None, unit: None, meta: BTreeMap::new() })
            .collect();
        Job { part: Part { tags: vec![tag; readings], items, bytes }, reply: oneshot::channel().0 }
    }

    fn shape(groups: &[Vec<Job>]) -> Vec<Vec<(String, usize)>> {
        groups.iter().map(|g| g.iter().map(|j| (j.part.tags[0].to_string(), j.part.items.len())).collect()).collect()
    }

    #[test]
    fn groups_keep_roots_apart_and_arrival_order() {
        let limits = GroupLimits::default();
        let jobs = vec![job("b.x.s1", 1, 10), job("a.x.s1", 2, 10), job("b.y.s2", 3, 10), job("a.x.s3", 1, 10)];
        let expected = vec![
            vec![("a.x.s1".to_string(), 2), ("a.x.s3".to_string(), 1)],
            vec![("b.x.s1".to_string(), 1), ("b.y.s2".to_string(), 3)],
        ];
        assert_eq!(shape(&plan(jobs, &limits)), expected);
    }

    #[test]
    fn a_group_stops_at_the_reading_and_byte_limits() {
        let limits = GroupLimits { readings: 5, bytes: 100, in_flight: 1 };
        let jobs = vec![job("a.x.s1", 3, 10), job("a.x.s2", 2, 10), job("a.x.s3", 1, 10)];
        assert_eq!(shape(&plan(jobs, &limits)).iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
        let jobs = vec![job("a.x.s1", 1, 60), job("a.x.s2", 1, 60), job("a.x.s3", 1, 30)];
        assert_eq!(shape(&plan(jobs, &limits)).iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 2]);
        // A job over the limits on its own still goes, alone.
        let jobs = vec![job("a.x.s1", 9, 500), job("a.x.s2", 1, 1)];
        assert_eq!(shape(&plan(jobs, &limits)).iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1]);
    }
}
