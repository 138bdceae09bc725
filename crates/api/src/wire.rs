//! JSON shapes and string grammars shared by several routes, with their
//! OpenAPI schemas: what a tag, a prefix, an event id or a time looks like as
//! a JSON Schema `pattern`, the `value` union of readings, and typed
//! rule, threshold and location bodies.
//!
//! The domain types know nothing of JSON Schema (and must not), so the
//! bodies here are DTOs converted by hand. Every pattern states what the
//! parser behind it accepts: a pattern looser than the parser documents
//! requests that fail, a stricter one hides requests that work. A few rare
//! forms the parsers also take are left out, each said where. The tests at
//! the bottom hold each pattern against its parser, both ways.

use axum::http::StatusCode;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use vigia_domain::{EventId, Location, Op, Rule, TagPattern, Threshold};

use crate::Problem;

// The parts the patterns share, as macros so that `concat!` can join them.
macro_rules! nats {
    () => {
        r"(?:(?:\*|[A-Za-z0-9_-]+)(?:\.(?:\*|[A-Za-z0-9_-]+)){0,6}(?:\.(?:\*|>|[A-Za-z0-9_-]+))?|>)"
    };
}
/// A `LIKE` pattern with no blank at either end and no lone backslash last
/// (a last `\` escaping a blank would be left alone by the trim).
macro_rules! like {
    () => {
        r"(?:[^\\\s]|\\\S|(?:[^\\\s]|\\[\s\S])(?:[^\\]|\\[\s\S])*(?:[^\\\s]|\\\S))"
    };
}
/// A number `parse_number` reads: a dot or a comma as the decimal mark, finite
/// (at most 30 significant integer digits and a two-digit exponent keep it so).
macro_rules! number {
    () => {
        r"[+-]?(?:0*[0-9]{1,30}(?:[.,][0-9]*)?|[.,][0-9]+)(?:[eE][+-]?0*[0-9]{1,2})?"
    };
}
/// A filter value that is an `eq` without saying so: no colon, or a colon
/// after something that cannot be an op (not 1 to 16 letters).
macro_rules! bare {
    () => {
        r"[^:]*|\s*(?::|[A-Za-z]{17,}[^:]*:|[A-Za-z]*[^A-Za-z\s:][^:]*:|[A-Za-z]+\s[^:]*:)[\s\S]*"
    };
}
/// Unix time (non-negative, at most 20 integer digits: nanoseconds up to the
/// year 5138) or an RFC 3339 date-time; 29 February is left out because a
/// pattern cannot tell leap years. The parser also takes exponents; the
/// pattern states the plain forms.
macro_rules! time {
    () => {
        concat!(
            r"(?:\+?(?:0*[0-9]{1,20}(?:\.[0-9]*)?|\.[0-9]+)",
            r"|[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)",
            r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]))"
        )
    };
}
macro_rules! sort_key {
    () => {
        r"(?:tag|value|status|unit|timestamp)(?:\s*:\s*(?:asc|desc))?"
    };
}

/// A sensor tag: 2 to 8 dot-separated tokens of 1 to 64 `[A-Za-z0-9_-]` (`Tag::parse`).
pub(crate) const TAG: &str = r"^[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64}){1,7}$";
/// A tag prefix, 1 to 8 tokens (see [`prefix`]), or empty for none.
pub(crate) const PREFIX: &str = r"^(?:[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64}){0,7})?$";
/// A prefix with room for one more token, for `POST /events/import?root=`, or empty for none.
pub(crate) const IMPORT_ROOT: &str = r"^(?:[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64}){0,6})?$";
/// A NATS-style subject pattern over tags (`TagPattern::parse`): up to 8 tokens,
/// `*` for one token, `>` last for the rest.
pub(crate) const NATS_PATTERN: &str = concat!("^", nats!(), "$");
/// [`NATS_PATTERN`] as an optional query value: empty is absent.
pub(crate) const NATS_PATTERN_OR_EMPTY: &str = concat!("^", nats!(), "?$");
/// `<stream sequence>-<index>` (see [`event_id`]).
pub(crate) const EVENT_ID: &str = r"^[0-9]+-[0-9]+$";
/// `<stream sequence>-<index>-<rule id>`.
pub(crate) const ALERT_ID: &str = r"^[0-9]+-[0-9]+-[A-Za-z0-9_-]+$";
/// A rule or threshold id (`Rule::validate`).
pub(crate) const RULE_ID: &str = r"^[A-Za-z0-9_-]{1,64}$";
/// A time as text (`parse_timestamp`): unix seconds, milliseconds, microseconds
/// or nanoseconds (told apart by magnitude), or RFC 3339 with an offset.
pub(crate) const TIME_DOC: &str = "Unix seconds, milliseconds, microseconds or nanoseconds (told apart by magnitude), \
     or RFC 3339 with an offset.";
pub(crate) const TIME: &str = concat!("^", time!(), "$");
/// The latest time a reading may carry: the end of 9999-12-31 in any time
/// zone (10000-01-01T23:59:59.999Z). Later ones have no RFC 3339 form, and
/// the store's day arithmetic needs the room above.
pub(crate) const LAST_MS: i64 = 253_402_387_199_999;
/// The largest integer a JSON number carries exactly (2^53 - 1): larger
/// numeric times, nanoseconds above all, go as strings.
pub(crate) const MAX_NUMERIC_TIME: i64 = 9_007_199_254_740_991;
/// [`TIME`] as an optional query value: empty is absent.
pub(crate) const TIME_OR_EMPTY: &str = concat!("^", time!(), "?$");

/// The grammar of `GET /events` filters (`Filter::parse`). An op is a known
/// name before the first colon; a bare value means `eq`; the value is trimmed.
pub(crate) const FILTER_TAG: &str = concat!(
    r"^\s*(?:(?:(?:eq|neq):\s*)?",
    nats!(),
    r"|like:\s*",
    like!(),
    r"|(?:lt|gt|lte|gte):\s*\S(?:[\s\S]*\S)?)\s*$"
);
pub(crate) const FILTER_VALUE: &str = concat!(
    r"^(?:\s*(?:eq|neq):[\s\S]*|\s*like:\s*(?:",
    like!(),
    r")?\s*|\s*(?:lt|gt|lte|gte):\s*",
    number!(),
    r"\s*|",
    bare!(),
    ")$"
);
pub(crate) const FILTER_STATUS: &str = r"^\s*(?:(?:eq|neq):\s*)?(?:ok|error)\s*$";
pub(crate) const FILTER_UNIT: &str =
    concat!(r"^(?:\s*(?:eq|neq):[\s\S]*|\s*like:\s*(?:", like!(), r")?\s*|", bare!(), ")$");
pub(crate) const FILTER_TIMESTAMP: &str = concat!(r"^\s*(?:(?:eq|neq|lt|gt|lte|gte):\s*)?", time!(), r"\s*$");
/// `field[:asc|:desc]`, comma-separated, each field once (the lookahead refuses repeats).
pub(crate) const SORT: &str = concat!(
    r"^(?![\s\S]*\b(tag|value|status|unit|timestamp)\b[\s\S]*\b\1\b)\s*",
    sort_key!(),
    r"\s*(?:,\s*",
    sort_key!(),
    r"\s*){0,4}$"
);
/// `count` (1 to 10,000) or `offset,count` (offset up to 100,000).
pub(crate) const LIMIT: &str = r"^\s*(?:\+?0*(?:[0-9]{1,5}|100000)\s*,\s*)?\+?0*(?:[1-9][0-9]{0,3}|10000)\s*$";
/// Cursors are unpadded base64url.
pub(crate) const CURSOR: &str = r"^\s*[A-Za-z0-9_-]{1,16384}\s*$";

/// A string schema with a pattern, for `schema_with`.
fn string(pattern: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern))
}

pub(crate) fn tag_schema() -> ObjectBuilder {
    string(TAG)
        .description(Some("A sensor tag: 2 to 8 dot-separated tokens of 1 to 64 `[A-Za-z0-9_-]`."))
        .examples(["brasil.sudeste.sensor01"])
}

/// [`tag_schema`] for a posted reading, whose first token must be a configured root.
pub(crate) fn reading_tag_schema() -> ObjectBuilder {
    tag_schema().description(Some(
        "The sensor's tag: 2 to 8 dot-separated tokens of 1 to 64 `[A-Za-z0-9_-]`, the first one of the \
         server's configured roots (the document a server serves at /openapi.json names them).",
    ))
}

pub(crate) fn prefix_schema() -> ObjectBuilder {
    string(PREFIX)
        .description(Some(
            "Only tags under this prefix (1 to 8 tokens, e.g. `brasil.sudeste`); empty or absent: every tag.",
        ))
        .examples(["brasil.sudeste"])
}

pub(crate) fn nats_pattern_schema() -> ObjectBuilder {
    string(NATS_PATTERN)
        .description(Some("A NATS-style tag pattern: up to 8 tokens, `*` for one token, `>` last for one or more."))
        .examples(["brasil.>"])
}

pub(crate) fn live_tag_schema() -> ObjectBuilder {
    string(NATS_PATTERN_OR_EMPTY).examples(["brasil.sudeste.*", "brasil.>"])
}

pub(crate) fn event_id_schema() -> ObjectBuilder {
    string(EVENT_ID)
        .description(Some("`<sequence>-<index>`: the stream sequence of the message and the reading's index in it."))
        .examples(["42-0"])
}

pub(crate) fn alert_id_schema() -> ObjectBuilder {
    string(ALERT_ID)
        .description(Some(
            "`<sequence>-<index>-<rule>`: the reading that opened the alert and the rule, as /alerts lists it.",
        ))
        .examples(["42-0-value-above-50"])
}

pub(crate) fn rule_id_schema() -> ObjectBuilder {
    string(RULE_ID).description(Some("1 to 64 letters, digits, `_` or `-`; part of alert ids.")).examples(["too-hot"])
}

pub(crate) fn time_schema() -> ObjectBuilder {
    string(TIME).description(Some(TIME_DOC)).examples(["2026-11-23T10:00:00Z"])
}

pub(crate) fn time_param() -> ObjectBuilder {
    string(TIME_OR_EMPTY).examples(["2026-11-23T10:00:00Z", "1763892000000"])
}

pub(crate) fn event_status_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["ok", "error"]))
        .description(Some("`ok`, or `error` when the reading could not be used (see `reason`)."))
}

pub(crate) fn filter_tag_schema() -> ObjectBuilder {
    string(FILTER_TAG).examples(["eq:brasil.sudeste.*", "like:brasil.%.sensor0_"])
}

pub(crate) fn filter_value_schema() -> ObjectBuilder {
    string(FILTER_VALUE).examples(["gt:50", "eq:open"])
}

pub(crate) fn filter_status_schema() -> ObjectBuilder {
    string(FILTER_STATUS).examples(["eq:error"])
}

pub(crate) fn filter_unit_schema() -> ObjectBuilder {
    string(FILTER_UNIT).examples(["eq:kWh"])
}

pub(crate) fn filter_timestamp_schema() -> ObjectBuilder {
    string(FILTER_TIMESTAMP).examples(["gte:2026-11-23T00:00:00Z"])
}

pub(crate) fn sort_schema() -> ObjectBuilder {
    string(SORT).examples(["timestamp:desc,value:asc"])
}

pub(crate) fn limit_schema() -> ObjectBuilder {
    string(LIMIT).examples(["0,100"])
}

pub(crate) fn cursor_schema() -> ObjectBuilder {
    string(CURSOR).description(Some("An opaque cursor: only values the server returned as `next_cursor` are accepted."))
}

/// An enumerated query value where empty means absent (a form's "any" choice).
fn enum_or_empty(values: &[&str], description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(std::iter::once("").chain(values.iter().copied())))
        .description(Some(description))
}

pub(crate) fn alert_status_param() -> ObjectBuilder {
    enum_or_empty(&["open", "acknowledged", "cleared"], "Only alerts in this state; empty or absent: every alert.")
}

pub(crate) fn window_param() -> ObjectBuilder {
    enum_or_empty(
        &["1h", "24h", "48h", "7d", "30d", "1w", "1mo"],
        "How far back from now: 1h, 24h, 48h, 7d or 30d (`1w` and `1mo` are synonyms of 7d and 30d). \
         Empty or absent: 24h.",
    )
}

pub(crate) fn series_bucket_param() -> ObjectBuilder {
    enum_or_empty(&["1m", "1h", "1d"], "Bucket size; empty or absent: 1m.")
}

pub(crate) fn rate_bucket_param() -> ObjectBuilder {
    enum_or_empty(&["1m", "1h"], "Bucket size; empty or absent: 1m.")
}

pub(crate) fn import_root_schema() -> ObjectBuilder {
    string(IMPORT_ROOT).examples(["brasil"])
}

/// The schemas above as types, for parameters: `#[param(value_type = X, inline)]`
/// keeps the parameter's description and `required`, which `schema_with` drops.
macro_rules! param_types {
    ($($name:ident => $schema:expr;)*) => {$(
        #[derive(Debug)]
        pub(crate) struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl ToSchema for $name {}
    )*};
}

param_types! {
    TagParam => tag_schema();
    PrefixParam => prefix_schema();
    LiveTagParam => live_tag_schema();
    EventIdParam => event_id_schema();
    AlertIdParam => alert_id_schema();
    TimeParam => time_param();
    ImportRootParam => import_root_schema();
    FilterTagParam => filter_tag_schema();
    FilterValueParam => filter_value_schema();
    FilterStatusParam => filter_status_schema();
    FilterUnitParam => filter_unit_schema();
    FilterTimestampParam => filter_timestamp_schema();
    SortParam => sort_schema();
    LimitParam => limit_schema();
    CursorParam => cursor_schema();
    AlertStatusParam => alert_status_param();
    WindowParam => window_param();
    SeriesBucketParam => series_bucket_param();
    RateBucketParam => rate_bucket_param();
    DatasetNameParam => string(DATASET_NAME).examples(["titanic"]);
    JobIdParam => string(JOB_ID).examples(["load-1a2b3c4d5e6f7a8b"]);
    DatasetLimitParam => string(DATASET_LIMIT).examples(["0,2"]);
}

/// A dataset name as `DatasetName::parse` takes it (case and `-` are folded).
pub(crate) const DATASET_NAME: &str = r"^[A-Za-z][A-Za-z0-9_-]{0,47}$";
/// A job id as `POST /datasets` makes them.
pub(crate) const JOB_ID: &str = r"^[a-z0-9-]{1,64}$";
/// `count` (1 to 10,000) or `offset,count` for dataset rows; empty is absent.
pub(crate) const DATASET_LIMIT: &str = r"^\s*(?:(?:[0-9]{1,18}\s*,\s*)?0*(?:[1-9][0-9]{0,3}|10000)\s*)?$";

/// Reads an optional query value, treating an empty one as absent.
pub(crate) fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// A JSON body that must be an object, read as `T`. serde's derived structs
/// also read a JSON array, field by field in order; the document says
/// object, so arrays are refused (the message is axum's or serde's).
pub(crate) fn object_body<T: DeserializeOwned>(
    body: Result<axum::Json<Map<String, Value>>, axum::extract::rejection::JsonRejection>,
) -> Result<T, String> {
    let axum::Json(map) = body.map_err(|e| e.body_text())?;
    serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())
}

/// `deserialize_with` for a list of objects (see [`object_body`]).
pub(crate) fn objects<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Value>::deserialize(d)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| object(v).map_err(|e| D::Error::custom(format!("[{i}]: {e}"))))
        .collect()
}

/// `deserialize_with` for an object or null (see [`object_body`]).
pub(crate) fn optional_object<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => object(v).map(Some).map_err(D::Error::custom),
    }
}

fn object<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    match v {
        Value::Object(_) => serde_json::from_value(v).map_err(|e| e.to_string()),
        _ => Err("expected an object".to_owned()),
    }
}

/// Checks a `prefix`-like query value against [`PREFIX`]; empty is none.
pub(crate) fn prefix(field: &str, value: Option<&str>) -> Result<Option<String>, Problem> {
    let Some(p) = value.filter(|p| !p.is_empty()) else { return Ok(None) };
    let tokens: Vec<&str> = p.split('.').collect();
    let token_ok =
        |t: &&str| (1..=64).contains(&t.len()) && t.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    if tokens.len() > 8 || !tokens.iter().all(token_ok) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!(
                "`{p}` is not a tag prefix: use 1 to 8 tokens of [A-Za-z0-9_-] separated by dots, e.g. brasil.sudeste"
            ),
        )
        .field(field));
    }
    Ok(Some(p.to_owned()))
}

/// Parses an event id of [`EVENT_ID`]'s shape. `None` for a well-formed id
/// whose numbers are too large to name any event (the caller's 404);
/// an error for anything else.
pub(crate) fn event_id(id: &str) -> Result<Option<EventId>, String> {
    let bad = || format!("`{id}` is not an event id: write `<sequence>-<index>`, e.g. `42-0`");
    let (seq, idx) = id.split_once('-').ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(seq) || !digits(idx) {
        return Err(bad());
    }
    Ok(seq.parse().ok().zip(idx.parse().ok()).map(|(seq, idx)| EventId { seq, idx }))
}

/// A reading's value: a number, a text, or null.
#[derive(Debug)]
pub(crate) struct ReadingValue;

impl PartialSchema for ReadingValue {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .description(Some("A number, a text, or null when the reading has no value."))
            .into()
    }
}

impl ToSchema for ReadingValue {}

/// A reading's time as posted: a number, a text, or null for the broker's time.
#[derive(Debug)]
pub(crate) struct TimeIn;

impl PartialSchema for TimeIn {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0))
                    .maximum(Some(MAX_NUMERIC_TIME))
                    .description(Some(
                        "Unix seconds, milliseconds or microseconds, told apart by magnitude; \
                         larger numbers (nanoseconds) lose precision in JSON, so send them as a string",
                    )),
            )
            .item(time_schema())
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .description(Some(
                "When the reading was taken, up to the end of 9999-12-31; null or absent: when the log received it.",
            ))
            .into()
    }
}

impl ToSchema for TimeIn {}

/// The body of `POST /events`: one reading, or an array of 1 to 10,000.
#[derive(Debug)]
pub(crate) struct ReadingsIn;

impl PartialSchema for ReadingsIn {
    fn schema() -> RefOr<Schema> {
        let one = RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ReadingIn"));
        OneOfBuilder::new()
            .item(one.clone())
            .item(ArrayBuilder::new().items(one).min_items(Some(1)).max_items(Some(crate::ingest::MAX_READINGS)))
            .description(Some("One reading, or an array of 1 to 10,000"))
            .into()
    }
}

impl ToSchema for ReadingsIn {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((crate::ingest::ReadingIn::name().into(), crate::ingest::ReadingIn::schema()));
        <crate::ingest::ReadingIn as ToSchema>::schemas(schemas);
    }
}

/// JSON `null`, the body of a `202` that has nothing to show yet.
#[derive(Debug)]
pub(crate) struct Null;

impl PartialSchema for Null {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Null).into()
    }
}

impl ToSchema for Null {}

/// The comparison of a rule or threshold: `value <op> threshold`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Op)]
pub(crate) enum OpDto {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Neq,
}

impl From<OpDto> for Op {
    fn from(op: OpDto) -> Op {
        match op {
            OpDto::Gt => Op::Gt,
            OpDto::Gte => Op::Gte,
            OpDto::Lt => Op::Lt,
            OpDto::Lte => Op::Lte,
            OpDto::Eq => Op::Eq,
            OpDto::Neq => Op::Neq,
        }
    }
}

impl From<Op> for OpDto {
    fn from(op: Op) -> OpDto {
        match op {
            Op::Gt => OpDto::Gt,
            Op::Gte => OpDto::Gte,
            Op::Lt => OpDto::Lt,
            Op::Lte => OpDto::Lte,
            Op::Eq => OpDto::Eq,
            Op::Neq => OpDto::Neq,
        }
    }
}

/// An alert rule: `value <op> threshold` on tags matching `pattern`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Rule, example = json!({"id": "hot", "pattern": "brasil.>", "op": "gt", "threshold": 80.0, "hysteresis": 2.0}))]
pub(crate) struct RuleDto {
    /// Stable name; part of alert ids. Unique among the rules.
    #[schema(schema_with = rule_id_schema)]
    id: String,
    #[schema(schema_with = nats_pattern_schema)]
    pattern: String,
    op: OpDto,
    threshold: f64,
    /// How far back past the threshold a value must go to clear the alert (0: no margin).
    #[serde(default)]
    #[schema(minimum = 0)]
    hysteresis: f64,
}

impl RuleDto {
    /// The domain rule, or why the pattern is not one (ids and numbers are the domain's to judge).
    pub(crate) fn into_rule(self) -> Result<Rule, String> {
        let pattern = TagPattern::parse(&self.pattern)
            .map_err(|e| format!("rule `{}`: `{}` is not a tag pattern ({e})", self.id, self.pattern))?;
        Ok(Rule { id: self.id, pattern, op: self.op.into(), threshold: self.threshold, hysteresis: self.hysteresis })
    }
}

impl From<Rule> for RuleDto {
    fn from(r: Rule) -> RuleDto {
        RuleDto {
            id: r.id,
            pattern: r.pattern.to_string(),
            op: r.op.into(),
            threshold: r.threshold,
            hysteresis: r.hysteresis,
        }
    }
}

/// One of a sensor's own alert thresholds: `value <op> threshold` on that sensor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Threshold, example = json!({"id": "too-hot", "op": "gt", "threshold": 95.0, "hysteresis": 2.0}))]
pub(crate) struct ThresholdDto {
    /// Unique among the sensor's thresholds; part of alert ids.
    #[schema(schema_with = rule_id_schema)]
    id: String,
    op: OpDto,
    threshold: f64,
    /// How far back past the threshold a value must go to clear the alert (0: no margin).
    #[serde(default)]
    #[schema(minimum = 0)]
    hysteresis: f64,
}

impl From<ThresholdDto> for Threshold {
    fn from(t: ThresholdDto) -> Threshold {
        Threshold { id: t.id, op: t.op.into(), threshold: t.threshold, hysteresis: t.hysteresis }
    }
}

impl From<Threshold> for ThresholdDto {
    fn from(t: Threshold) -> ThresholdDto {
        ThresholdDto { id: t.id, op: t.op.into(), threshold: t.threshold, hysteresis: t.hysteresis }
    }
}

/// A WGS 84 position.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Location, example = json!({"lat": -23.55, "lon": -46.63}))]
pub(crate) struct LocationDto {
    #[schema(minimum = -90, maximum = 90)]
    pub(crate) lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    pub(crate) lon: f64,
}

impl From<LocationDto> for Location {
    fn from(l: LocationDto) -> Location {
        Location { lat: l.lat, lon: l.lon }
    }
}

impl From<Location> for LocationDto {
    fn from(l: Location) -> LocationDto {
        LocationDto { lat: l.lat, lon: l.lon }
    }
}

/// Narrows the served document to this deployment: a posted tag, and an
/// import `root`, must start with one of the configured roots. The committed
/// document (`vigia openapi`) keeps the general patterns.
pub(crate) fn for_roots(api: &mut utoipa::openapi::OpenApi, roots: &[String]) {
    if roots.is_empty() {
        return;
    }
    let first = roots.iter().map(|r| escape(r)).collect::<Vec<_>>().join("|");
    let token = "[A-Za-z0-9_-]{1,64}";
    let listed = roots.join(", ");
    if let Some(components) = api.components.as_mut()
        && let Some(RefOr::T(Schema::Object(reading))) = components.schemas.get_mut("ReadingIn")
        && let Some(RefOr::T(Schema::Object(tag))) = reading.properties.get_mut("tag")
    {
        tag.pattern = Some(format!(r"^(?:{first})(?:\.{token}){{1,7}}$"));
        tag.description = Some(format!(
            "The sensor's tag: 2 to 8 dot-separated tokens of `[A-Za-z0-9_-]`, the first one of this server's roots ({listed})."
        ));
    }
    let import = api.paths.paths.get_mut("/api/v1/events/import").and_then(|item| item.post.as_mut());
    for param in import.and_then(|op| op.parameters.as_mut()).into_iter().flatten() {
        if let RefOr::T(param) = param
            && param.name == "root"
            && let Some(RefOr::T(Schema::Object(schema))) = param.schema.as_mut()
        {
            schema.pattern = Some(format!(r"^(?:(?:{first})(?:\.{token}){{0,6}})?$"));
        }
    }
}

/// A configured root as a regex literal (roots are tag tokens, but be safe).
fn escape(root: &str) -> String {
    root.chars().flat_map(|c| (!c.is_ascii_alphanumeric() && c != '_').then_some('\\').into_iter().chain([c])).collect()
}

/// `{id}` of `/events/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct EventIdPath {
    /// The event's id.
    #[param(value_type = EventIdParam, inline)]
    pub(crate) id: String,
}

/// `{id}` of `/alerts/{id}/ack`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct AlertIdPath {
    /// The alert's id.
    #[param(value_type = AlertIdParam, inline)]
    pub(crate) id: String,
}

/// `{name}` of `/datasets/{name}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct DatasetNamePath {
    /// The dataset's name.
    #[param(value_type = DatasetNameParam, inline)]
    pub(crate) name: String,
}

/// `{id}` of `/jobs/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct JobIdPath {
    /// The job, as `POST /datasets` answered.
    #[param(value_type = JobIdParam, inline)]
    pub(crate) id: String,
}

/// The fixed parameters of `GET /datasets/{name}`; any column filters too (`Fare=gt:7`).
#[derive(Debug, IntoParams)]
#[allow(dead_code, reason = "documents the query; the handler reads every pair, filters included")]
#[into_params(parameter_in = Query)]
pub(crate) struct DatasetRowsParams {
    /// Columns, each with `:asc` or `:desc`, e.g. `Name:desc,Sex:asc`.
    pub(crate) sort: Option<String>,
    /// `count` or `offset,count` (count 1 to 10,000; 100 by default).
    #[param(value_type = Option<DatasetLimitParam>, inline)]
    pub(crate) limit: Option<String>,
}

/// `{tag}` of `/sensors/{tag}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct TagPath {
    /// The sensor's tag.
    #[param(value_type = TagParam, inline)]
    pub(crate) tag: String,
}

#[cfg(test)]
mod tests {
    //! Each pattern against the parser behind it, both ways: every string the
    //! pattern matches is accepted (schemathesis's "positive data
    //! acceptance"), and every string the parser accepts, drawn from near the
    //! grammar, matches the pattern ("negative data rejection").

    use proptest::string::string_regex;
    use proptest::test_runner::{Config, TestRunner};
    use regex::Regex;
    use vigia_domain::{EventQuery, ImportHeader, Tag, parse_timestamp};

    use super::*;

    fn runner() -> TestRunner {
        TestRunner::new(Config { cases: 2000, failure_persistence: None, ..Config::default() })
    }

    /// Both directions: strings from the pattern are accepted, accepted strings from `near` match.
    fn agrees(pattern: &str, near: &str, accepts: impl Fn(&str) -> bool) {
        fits(pattern, &accepts);
        let re = Regex::new(pattern).unwrap();
        runner()
            .run(&string_regex(near).unwrap(), |s| {
                assert!(!accepts(&s) || re.is_match(&s), "{s:?} is accepted but does not match {pattern}");
                Ok(())
            })
            .unwrap();
    }

    /// Strings the pattern matches are accepted. proptest's generator knows no
    /// anchors, so it gets the pattern without them.
    fn fits(pattern: &str, accepts: impl Fn(&str) -> bool) {
        let body = pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$')).expect("anchored pattern");
        let re = Regex::new(pattern).unwrap();
        runner()
            .run(&string_regex(body).unwrap(), |s| {
                assert!(re.is_match(&s), "the generator drew {s:?}, which {pattern} does not match");
                assert!(accepts(&s), "{s:?} matches {pattern} but is refused");
                Ok(())
            })
            .unwrap();
    }

    fn filter(field: &str) -> impl Fn(&str) -> bool {
        move |v| EventQuery::from_pairs(&[(field.to_owned(), v.to_owned())]).is_ok()
    }

    #[test]
    fn dataset_patterns_agree_with_their_parsers() {
        agrees(DATASET_NAME, "[ -~]{0,50}", |s| {
            vigia_domain::DatasetName::parse(s).is_ok() && s.trim() == s && !s.contains(' ')
        });
        let job = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        agrees(JOB_ID, "[a-z0-9_-]{0,70}", job);
        let columns = vigia_domain::columns(&["a"]).unwrap();
        let limit = |s: &str| vigia_domain::DatasetQuery::from_pairs(&[("limit".into(), s.into())], &columns).is_ok();
        fits(DATASET_LIMIT, limit);
    }

    #[test]
    fn tags_prefixes_and_patterns() {
        let near = r"[A-Za-z0-9_\-é .]{0,24}";
        agrees(TAG, near, |s| Tag::parse(s).is_ok());
        agrees(PREFIX, near, |s| prefix("prefix", Some(s)).is_ok());
        agrees(NATS_PATTERN, r"[Aa0_\-*>. ]{0,20}", |s| TagPattern::parse(s).is_ok());
        agrees(RULE_ID, r"[A-Za-z0-9_\-. é]{0,70}", |s| {
            let rule = Rule {
                id: s.into(),
                pattern: TagPattern::parse(">").unwrap(),
                op: Op::Gt,
                threshold: 1.0,
                hysteresis: 0.0,
            };
            rule.validate().is_ok()
        });
        // Too long for a tag: 65 characters in one token.
        assert!(!Regex::new(TAG).unwrap().is_match(&format!("a.{}", "b".repeat(65))));
    }

    #[test]
    fn event_and_alert_ids() {
        agrees(EVENT_ID, r"[0-9+\- a]{0,8}", |s| event_id(s).is_ok());
        agrees(ALERT_ID, r"[0-9+\-a_ ]{0,10}", |s| crate::alerts::alert_id(s).is_ok());
        // Numbers too large for a sequence fit the grammar and name no event: a 404, not a 400.
        assert_eq!(event_id("99999999999999999999999-0"), Ok(None));
        assert_eq!(event_id("42-0"), Ok(Some(EventId { seq: 42, idx: 0 })));
        assert!(event_id("+42-0").is_err(), "Rust's integer parser takes a sign; ids do not");
    }

    #[test]
    fn times() {
        // Rust's float parser also reads `-0`, exponents (`1e12`) and more
        // than 20 digits; the pattern states the plain forms, so the reverse
        // check stays with those.
        let near = r"[0-9.+]{0,22}";
        agrees(TIME, near, |s| parse_timestamp(s).is_ok());
        agrees(TIME_OR_EMPTY, near, |s| s.is_empty() || parse_timestamp(s).is_ok());
        let time = Regex::new(TIME).unwrap();
        for ok in [
            "2026-11-23T10:00:00Z",
            "2023-02-15T01:30:00.000-05:00",
            "1700000000000",
            "1700000000.5",
            "2024-12-31T23:59:59+14:00",
        ] {
            assert!(time.is_match(ok) && parse_timestamp(ok).is_ok(), "{ok}");
        }
        for bad in ["", "yesterday", "2023-02-30T00:00:00Z", "2023-02-15T01:30:00", "-5", "2023-04-31T00:00:00Z"] {
            assert!(!time.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn event_filters() {
        let ops = "(eq|neq|like|lt|gt|lte|gte|ge|EQ|x1|)";
        agrees(FILTER_TAG, &format!(r"[ ]?{ops}:?[ ]?[A-Za-z0-9_.*>%\\: \-]{{0,10}}"), filter("tag"));
        agrees(FILTER_VALUE, &format!(r"[ ]?{ops}:?[ ]?[0-9.,eE+\-a\\%: ]{{0,4}}"), filter("value"));
        agrees(FILTER_STATUS, &format!(r"[ ]?{ops}:?[ ]?(ok|error|OK|er|)[ ]?"), filter("status"));
        agrees(FILTER_UNIT, &format!(r"[ ]?{ops}:?[ ]?[A-Za-z\\%: ]{{0,6}}"), filter("unit"));
        agrees(FILTER_TIMESTAMP, &format!(r"[ ]?{ops}:?[ ]?[0-9.+]{{0,6}}[ ]?"), filter("timestamp"));
        agrees(LIMIT, r"[ ]?[+0-9]{0,7}(,[ ]?[+0-9]{0,7})?[ ]?", filter("limit"));
        let like = filter("tag");
        assert!(like("like:brasil.%.sensor0_") && !like("like:abc\\"), "a lone backslash last is refused");
        assert!(
            filter("value")("12:30") && !filter("value")("ge:50"),
            "a colon after a non-op is text; a typo'd op is not"
        );
    }

    #[test]
    fn sort_keys() {
        // The pattern refuses a repeated field with a lookahead, which the
        // `regex` crate cannot run; ECMA-262 and Python can, so examples here.
        let accepts = filter("sort");
        for ok in
            ["timestamp:desc", "timestamp:desc,value:asc", " tag , unit : desc ", "value,status,unit,tag,timestamp"]
        {
            assert!(accepts(ok), "{ok}");
        }
        for bad in ["", "timestamp,timestamp", "tag:up", "time", "tag,", "value:asc,value:desc"] {
            assert!(!accepts(bad), "{bad}");
        }
        let without_lookahead = SORT.replacen(r"(?![\s\S]*\b(tag|value|status|unit|timestamp)\b[\s\S]*\b\1\b)", "", 1);
        assert_ne!(without_lookahead, SORT, "the lookahead is where the test expects it");
        fits(&without_lookahead, |s| {
            let keys: Vec<&str> = s.split(',').map(|k| k.split(':').next().unwrap_or("").trim()).collect();
            let repeated = keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k));
            accepts(s) != repeated
        });
    }

    #[test]
    fn the_served_document_states_the_configured_roots() {
        let mut api = crate::openapi();
        let roots = vec!["brasil".to_owned(), "meters".to_owned()];
        for_roots(&mut api, &roots);
        let doc = serde_json::to_value(&api).unwrap();
        let tag = doc["components"]["schemas"]["ReadingIn"]["properties"]["tag"]["pattern"].as_str().unwrap();
        let accepts = |s: &str| {
            let r = crate::ingest::ReadingIn {
                tag: s.to_owned(),
                value: None,
                timestamp: None,
                unit: None,
                meta: Default::default(),
            };
            crate::ingest::validate(r, &roots).is_ok()
        };
        agrees(tag, r"(brasil|meters|other|)[A-Za-z0-9_. ]{0,12}", accepts);
        let params = doc["paths"]["/api/v1/events/import"]["post"]["parameters"].as_array().unwrap();
        let root = params.iter().find(|p| p["name"] == "root").unwrap()["schema"]["pattern"].as_str().unwrap();
        let header = ImportHeader::parse(&["tag", "timestamp", "value"]).unwrap();
        let accepts = |s: &str| match crate::import::import_root(&roots, Some(s.to_owned())) {
            Ok(None) => true,
            Ok(Some(r)) => header.check_root(Some(&r)).is_ok(),
            Err(_) => false,
        };
        agrees(root, r"(brasil|meters|other|)[A-Za-z0-9_. ]{0,12}", accepts);
        // The committed document keeps the general pattern.
        let committed = serde_json::to_value(crate::openapi()).unwrap();
        assert_eq!(committed["components"]["schemas"]["ReadingIn"]["properties"]["tag"]["pattern"], TAG);
    }
}
