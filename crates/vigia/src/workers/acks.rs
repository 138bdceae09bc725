//! Cumulative acks for the persister's and the alerter's consumers
//! (`"ack_policy": "all"`).
//!
//! Why: on the device path (one reading per message) an ack per message was
//! a message nats-server had to route and apply for every reading; one ack
//! per flush leaves it that much more of a 2-core machine for publishes and
//! deliveries (docs/performance.md, "cumulative acks").
//!
//! Below, "the ledger" is what says a sequence is done: for the persister
//! the store's ledger, shared by every persister and committed with the
//! flush; for the alerter the sequences this process judged, in memory (two
//! alerters on one consumer each wait for the server's ack floor to pass
//! the other's messages, [`unstick`]).
//!
//! An ack of sequence `n` acknowledges every message up to `n` the consumer
//! delivered, to any persister pulling from it. So a persister acks no
//! further than its *floor*: the highest `n` such that every stream sequence
//! up to `n` is applied (the shared ledger holds it) or gone from the stream
//! (deleted, purged, aged out). Two persisters on one consumer therefore
//! never ack each other's uncommitted messages; each acks what the ledger
//! holds. The floor starts where the server's ack floor is, follows the
//! ledger's run as flushes commit, and passes a sequence the ledger lacks
//! only once the stream says it no longer holds it ([`Floor::stuck`]).
//!
//! A committed message above the floor stays unacknowledged until the floor
//! reaches it. If the persister stops first, it is redelivered and the
//! ledger skips it: late acks cost a redelivery, never a double count.
//!
//! The shipped consumer takes cumulative acks; one set to `"explicit"` is
//! acked message by message ([`Acks::Each`]). With nats-server 2.9 a server
//! killed and restarted under load brought a consumer back with messages
//! pending below its ack floor, which no cumulative ack can clear, so a
//! persister remakes such a consumer after its floor ([`Stranded`],
//! docs/nats.md).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, Info, PullConsumer};
use vigia_bus::{Bus, READINGS, Receipt};
use vigia_domain::Ledger;

/// How long the floor waits on a sequence, with committed messages above
/// it, before the persister asks the server and the stream about it. A
/// second persister's flush commits well within it; a deleted message never.
pub(crate) const STUCK_AFTER: Duration = Duration::from_secs(2);

/// How the persister acknowledges a committed flush.
#[derive(Debug)]
pub(crate) enum Acks {
    /// Every message (a consumer with `"ack_policy": "explicit"`).
    Each,
    /// One ack per flush, of the highest committed message at or below the
    /// floor (two when a redelivery came in between, see [`to_send`]).
    Cumulative(Floor),
}

impl Acks {
    /// The way `info`'s consumer takes acks, its floor where it has one.
    pub(crate) fn of(info: &Info, now: Instant) -> Acks {
        if info.config.ack_policy != AckPolicy::All {
            return Acks::Each;
        }
        // A consumer recreated to start after its old floor reports that floor
        // as its own; take the start too, in case a server does not.
        let start = match info.config.deliver_policy {
            DeliverPolicy::ByStartSequence { start_sequence } => start_sequence.saturating_sub(1),
            _ => 0,
        };
        Acks::Cumulative(Floor::new(info.ack_floor.stream_sequence.max(start), now))
    }

    /// The way `consumer` takes acks, its floor already past what the
    /// stream no longer holds (done with, acked or not).
    pub(crate) async fn starting(bus: &Bus, consumer: &PullConsumer) -> anyhow::Result<Acks> {
        let mut acks = Acks::of(consumer.cached_info(), Instant::now());
        if let Acks::Cumulative(floor) = &mut acks {
            let first = bus.readings_first().await?;
            floor.raise(first.saturating_sub(1), &Ledger::default(), Instant::now());
        }
        Ok(acks)
    }

    /// The receipts to send once a flush with `receipts` committed and
    /// `ledger` is the ledger as that commit left it (`None`: unknown; the
    /// receipts wait for [`Floor::stuck`]).
    pub(crate) fn committed(&mut self, receipts: Vec<Receipt>, ledger: Option<&Ledger>, now: Instant) -> Vec<Receipt> {
        match self {
            Acks::Each => receipts,
            Acks::Cumulative(floor) => {
                floor.hold(receipts, now);
                ledger.map(|l| floor.raise(0, l, now)).unwrap_or_default()
            }
        }
    }
}

/// The persister's ack floor and the committed receipts above it.
#[derive(Debug)]
pub(crate) struct Floor {
    /// Every stream sequence up to here is applied or gone from the stream.
    floor: u64,
    /// Committed messages not acknowledged yet, by sequence.
    held: BTreeMap<u64, Receipt>,
    /// Since when the floor has not moved while receipts were held.
    waiting_since: Instant,
}

impl Floor {
    pub(crate) fn new(floor: u64, now: Instant) -> Floor {
        Floor { floor, held: BTreeMap::new(), waiting_since: now }
    }

    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    /// The highest committed sequence not acknowledged yet.
    pub(crate) fn highest_held(&self) -> Option<u64> {
        self.held.last_key_value().map(|(seq, _)| *seq)
    }

    fn hold(&mut self, receipts: Vec<Receipt>, now: Instant) {
        if self.held.is_empty() {
            self.waiting_since = now;
        }
        for r in receipts {
            // A message held twice (delivered, then redelivered): its latest delivery.
            match self.held.entry(r.seq) {
                Entry::Occupied(mut held) if held.get().dseq < r.dseq => {
                    held.insert(r);
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(e) => {
                    e.insert(r);
                }
            }
        }
    }

    /// Moves the floor to `known` (everything up to it is known done: the
    /// server's ack floor, sequences gone from the stream) and then along
    /// `ledger`'s run. Returns the acks that cover what is held at or below it.
    pub(crate) fn raise(&mut self, known: u64, ledger: &Ledger, now: Instant) -> Vec<Receipt> {
        let start = self.floor.max(known);
        let floor = ledger.run_end(start + 1).max(start);
        if floor > self.floor {
            self.floor = floor;
            self.waiting_since = now;
        }
        let above = self.held.split_off(&(self.floor + 1));
        to_send(std::mem::replace(&mut self.held, above))
    }

    /// The sequence the floor has waited on for [`STUCK_AFTER`] with
    /// committed messages above it: deleted from the stream, or still in
    /// another persister's hands.
    pub(crate) fn stuck(&self, now: Instant) -> Option<u64> {
        let waited = now.saturating_duration_since(self.waiting_since) >= STUCK_AFTER;
        (waited && !self.held.is_empty()).then_some(self.floor + 1)
    }
}

/// Whether a cumulative consumer holds messages no ack can clear: it has
/// messages pending, yet everything it delivered is at or below its ack
/// floor (an ack at or below the floor is ignored).
pub(crate) fn stranded(ack_pending: usize, ack_floor: u64, delivered: u64) -> bool {
    ack_pending > 0 && ack_floor >= delivered
}

/// The acks that take the server's ack floor to the highest of `covered`:
/// that message's receipt, and the receipt delivered last if that is
/// another. JetStream takes a cumulative ack only if its delivery sequence
/// is above the last one taken, and a redelivery gives an earlier message a
/// later one: after a restart the originals of 2,201..6,453 (delivered as
/// 2,201..6,453) can follow an ack of redelivered 2,000 (delivered as
/// 7,053). Of the two acks the server takes what it can, and what it
/// ignored comes again and is acked by its new delivery.
fn to_send(covered: BTreeMap<u64, Receipt>) -> Vec<Receipt> {
    let Some(last_delivered) = covered.values().max_by_key(|r| r.dseq).cloned() else {
        return Vec::new();
    };
    let highest = covered.into_values().next_back().expect("covered is not empty");
    if highest.dseq == last_delivered.dseq { vec![highest] } else { vec![highest, last_delivered] }
}

/// Most sequences looked up in the stream per look at a stuck floor.
const GONE_LOOKUPS: usize = 1000;

/// Finds out what a stuck floor waits on: the server's ack floor (another
/// worker on the consumer acked further), `ledger` as it is now (for the
/// persister, the store's: another persister committed), and whether the
/// stream still holds each sequence the ledger lacks (a deleted or purged
/// message never comes; one the stream holds is in someone's hands or due
/// for redelivery, and is waited for).
pub(crate) async fn unstick(
    bus: &Bus,
    ledger: &Ledger,
    consumer: &mut PullConsumer,
    floor: &mut Floor,
) -> anyhow::Result<Vec<Receipt>> {
    let server = consumer.info().await.context("consumer info")?.ack_floor.stream_sequence;
    let first = bus.readings_first().await?;
    let highest = floor.highest_held().unwrap_or(0);
    let mut known = server.max(first.saturating_sub(1));
    for _ in 0..GONE_LOOKUPS {
        let from = floor.floor().max(known);
        let next = ledger.run_end(from + 1).max(from) + 1;
        if next > highest || bus.readings_holds(next).await? {
            break;
        }
        known = next;
    }
    let to_ack = floor.raise(known, ledger, Instant::now());
    tracing::debug!(server, first, floor = floor.floor(), "Looked into a stuck ack floor.");
    Ok(to_ack)
}

/// Looks for messages a cumulative consumer holds pending at or below its
/// ack floor: no ack can clear them, and they would be redelivered every ack
/// wait for ever (nats-server 2.9 after it was killed and restarted under
/// load; docs/nats.md). Seen twice in a row, the consumer is made again
/// after its floor; the ledger skips what comes again.
#[derive(Debug, Default)]
pub(crate) struct Stranded {
    last: Option<Instant>,
    seen: u32,
}

/// How often the consumer is looked at for stranded messages.
const STRANDED_EVERY: Duration = Duration::from_secs(5);

impl Stranded {
    pub(crate) fn due(&self) -> bool {
        self.last.is_none_or(|at| at.elapsed() >= STRANDED_EVERY)
    }

    /// Looks once; a consumer made again is pulled from again by `fetch`.
    pub(crate) async fn check(&mut self, bus: &Bus, consumer: &mut PullConsumer) -> anyhow::Result<()> {
        self.last = Some(Instant::now());
        let info = consumer.info().await.context("consumer info")?;
        let stranded = stranded(info.num_ack_pending, info.ack_floor.stream_sequence, info.delivered.stream_sequence);
        self.seen = if stranded { self.seen + 1 } else { 0 };
        if self.seen >= 2 {
            let (pending, durable) = (info.num_ack_pending, info.name.clone());
            let floor = vigia_bus::remake_consumer(bus.jetstream(), READINGS, &durable).await?;
            tracing::warn!(
                pending,
                floor,
                consumer = %durable,
                "Messages were pending below the consumer's ack floor; made the consumer again after it."
            );
            self.seen = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(ranges: &[(u64, u64)]) -> Ledger {
        Ledger { version: 1, ranges: ranges.to_vec() }
    }

    fn receipts(seqs: impl IntoIterator<Item = u64>) -> Vec<Receipt> {
        seqs.into_iter().map(|s| Receipt::unreplied(s, s)).collect()
    }

    fn acked(sent: Vec<Receipt>) -> Vec<(u64, u64)> {
        sent.iter().map(|r| (r.seq, r.dseq)).collect()
    }

    #[test]
    fn one_ack_per_flush_at_the_end_of_the_ledgers_run() {
        let t = Instant::now();
        let mut acks = Acks::Cumulative(Floor::new(0, t));
        assert_eq!(acked(acks.committed(receipts(1..=10), Some(&ledger(&[(1, 10)])), t)), [(10, 10)]);
        assert_eq!(acked(acks.committed(receipts(11..=20), Some(&ledger(&[(1, 20)])), t)), [(20, 20)]);
    }

    #[test]
    fn another_persisters_uncommitted_messages_hold_the_floor() {
        let t = Instant::now();
        let mut floor = Floor::new(0, t);
        // This persister committed 11..=20; another one holds 1..=10, uncommitted.
        floor.hold(receipts(11..=20), t);
        assert_eq!(acked(floor.raise(0, &ledger(&[(11, 20)]), t)), []);
        assert_eq!(floor.floor(), 0);
        assert_eq!(floor.stuck(t), None, "not waited long enough");
        assert_eq!(floor.stuck(t + STUCK_AFTER), Some(1));
        // The other one commits: the ledger runs from 1, and 20 covers both.
        assert_eq!(acked(floor.raise(0, &ledger(&[(1, 20)]), t)), [(20, 20)]);
        assert_eq!(floor.highest_held(), None);
        assert_eq!(floor.stuck(t + STUCK_AFTER * 2), None, "nothing held");
    }

    #[test]
    fn a_sequence_known_gone_lets_the_floor_pass() {
        let t = Instant::now();
        let mut floor = Floor::new(0, t);
        floor.hold(receipts([1, 2, 4, 5]), t);
        assert_eq!(acked(floor.raise(0, &ledger(&[(1, 2), (4, 5)]), t)), [(2, 2)]);
        assert_eq!(floor.stuck(t + STUCK_AFTER), Some(3));
        // The stream no longer holds 3 (deleted).
        assert_eq!(acked(floor.raise(3, &ledger(&[(1, 2), (4, 5)]), t)), [(5, 5)]);
        assert_eq!(floor.floor(), 5);
    }

    #[test]
    fn redeliveries_at_or_below_the_floor_are_acked_by_their_new_delivery() {
        let t = Instant::now();
        let mut acks = Acks::Cumulative(Floor::new(50, t));
        // 40..=45 redelivered as 101..=106 (the server never took their ack),
        // then 51..=52 new, delivered as 107..=108.
        let mut flush: Vec<Receipt> = (40..=45).map(|s| Receipt::unreplied(s, s + 61)).collect();
        flush.extend([Receipt::unreplied(51, 107), Receipt::unreplied(52, 108)]);
        assert_eq!(acked(acks.committed(flush, Some(&ledger(&[(1, 52)])), t)), [(52, 108)]);
        let Acks::Cumulative(floor) = &acks else { unreachable!() };
        assert_eq!(floor.highest_held(), None);
    }

    #[test]
    fn a_redelivery_delivered_after_later_messages_is_acked_too() {
        let t = Instant::now();
        let mut floor = Floor::new(0, t);
        // 3..=5 delivered first (3..=5), 1..=2 delivered again later (6..=7),
        // and an older delivery of 2 that the newer one replaces.
        floor.hold(vec![Receipt::unreplied(2, 2)], t);
        let flush = [(3, 3), (4, 4), (5, 5), (1, 6), (2, 7)].map(|(s, d)| Receipt::unreplied(s, d));
        floor.hold(flush.to_vec(), t);
        // 5 first (taken unless the server saw a delivery after it), then 2 as delivered last.
        assert_eq!(acked(floor.raise(0, &ledger(&[(1, 5)]), t)), [(5, 5), (2, 7)]);
    }

    #[test]
    fn an_unknown_ledger_holds_the_receipts_until_asked() {
        let t = Instant::now();
        let mut acks = Acks::Cumulative(Floor::new(0, t));
        assert!(acks.committed(receipts(1..=3), None, t).is_empty());
        let Acks::Cumulative(floor) = &mut acks else { unreachable!() };
        assert_eq!(floor.stuck(t + STUCK_AFTER), Some(1));
        assert_eq!(acked(floor.raise(0, &ledger(&[(1, 3)]), t)), [(3, 3)]);
    }

    #[test]
    fn pending_messages_are_stranded_only_below_the_floor() {
        // After nats-server 2.9 was killed and restarted under load: floor 4,000, 20 pending.
        assert!(stranded(20, 4000, 4000));
        // Messages delivered above the floor are pending as they should be.
        assert!(!stranded(20, 3980, 4000));
        assert!(!stranded(0, 4000, 4000));
    }

    #[test]
    fn an_explicit_consumer_gets_every_ack() {
        let mut acks = Acks::Each;
        let sent = acks.committed(receipts(1..=3), Some(&ledger(&[])), Instant::now());
        assert_eq!(acked(sent), [(1, 1), (2, 2), (3, 3)]);
    }
}
