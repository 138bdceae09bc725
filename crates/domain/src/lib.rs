//! The centre of Vigia: what a sensor reading is, how raw payloads become
//! readings, how the log encodes them, how alert rules judge them, and what
//! a batch of them changes in the projections.
//!
//! This crate must never do I/O: no sockets, no files, no clocks. Callers pass
//! the broker's time in. That keeps every rule here testable with plain values
//! and lets the bus, the store and the API depend on it, never the reverse.

mod decode;
mod envelope;
mod ledger;
mod projection;
mod reading;
mod rules;
mod tag;

pub use decode::{decode_payload, parse_timestamp};
pub use envelope::{
    BatchItem, EVENT_HEADER, EnvelopeError, ItemValue, LogEvent, READINGS_RECORDED, VERSION_HEADER, batch_subject,
    decode_message, encode_batch,
};
pub use ledger::Ledger;
pub use projection::{
    BLOCK_SPAN_MS, Block, BlockExtra, CounterDelta, Projection, RollupDelta, RollupGrain, SensorDelta, StoredEvent,
};
pub use reading::{EventId, Reading, Status, Value};
pub use rules::{AlertChange, AlertEvent, AlertKind, AlertState, Op, Rule, RuleError};
pub use tag::{Tag, TagError, TagPattern};
