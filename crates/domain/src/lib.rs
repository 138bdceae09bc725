//! The centre of Vigia: what a sensor reading is, how raw payloads and CSV
//! rows become readings, how the log encodes them, how alert rules judge
//! them, what a batch of them changes in the projections, and what an events
//! query asks for.
//!
//! This crate must never do I/O: no sockets, no files, no clocks. Callers pass
//! the broker's time in. That keeps every rule here testable with plain values
//! and lets the bus, the store and the API depend on it, never the reverse.

mod audit;
mod change;
mod dataset;
mod decode;
mod envelope;
mod import;
mod judged;
mod ledger;
mod projection;
mod query;
mod reading;
mod rules;
mod sensor;
mod tag;

pub use audit::{Logged, TagAudit, reconcile};
pub use change::{Change, READING_CORRECTED, READING_RETRACTED, ReadingChange};
pub use dataset::{
    Column, DatasetName, DatasetQuery, DatasetQueryError, HeaderError, LoadJob, MAX_COLUMNS, NameError, columns,
    find_column,
};
pub use decode::{decode_payload, parse_timestamp};
pub use envelope::{
    BACKFILL_HEADER, BatchItem, EVENT_HEADER, EnvelopeError, ItemValue, LogEvent, READINGS_RECORDED, VERSION_HEADER,
    batch_subject, decode_message, encode_batch,
};
pub use import::{ImportError, ImportHeader, ImportRow, RowError};
pub use judged::readings_to_judge;
pub use ledger::Ledger;
pub use projection::{
    BLOCK_SPAN_MS, Block, BlockExtra, CounterDelta, Projection, RollupDelta, RollupGrain, SensorDelta, StoredEvent,
    TagDelta,
};
pub use query::{Cursor, EventField, EventQuery, Filter, FilterOp, Page, QueryError, SortDirection, SortKey};
pub use reading::{EventId, Meta, Reading, Status, Value, mark_backfill};
pub use rules::{
    ACK_SUBJECT_PREFIX, ALERT_ACKNOWLEDGED, AlertAck, AlertChange, AlertEvent, AlertKind, AlertState, Op, RULES_SET,
    RULES_SUBJECT, Rule, RuleError, RulesSet,
};
pub use sensor::{DescriptionError, Location, SENSOR_DESCRIBED, SENSOR_SUBJECT_PREFIX, SensorDescription, Threshold};
pub use tag::{Tag, TagError, TagPattern, is_under};
