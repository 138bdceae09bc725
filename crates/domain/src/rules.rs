//! Threshold alert rules and the per-tag state machine that applies them.
//!
//! A rule opens an alert when a reading satisfies it and clears it once a
//! reading is past the threshold by the hysteresis margin, so a value that
//! hovers at the threshold does not flap. The state is a plain value the
//! alerter keeps and rebuilds from the `ALERTS` stream after a restart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::reading::{EventId, Reading, Status};
use crate::tag::{Tag, TagPattern};

/// Comparison a rule makes between a reading and its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Neq,
}

impl Op {
    /// The name it has on the wire (`gt`, `lte`, ...), without serialising.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Eq => "eq",
            Op::Neq => "neq",
        }
    }

    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Gte => value >= threshold,
            Op::Lt => value < threshold,
            Op::Lte => value <= threshold,
            Op::Eq => value == threshold,
            Op::Neq => value != threshold,
        }
    }
}

/// One alert rule: `value <op> threshold` for tags matching `pattern`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Stable name; part of alert ids and message ids.
    pub id: String,
    pub pattern: TagPattern,
    pub op: Op,
    pub threshold: f64,
    /// How far back past the threshold a value must go to clear (0 = no margin).
    #[serde(default)]
    pub hysteresis: f64,
}

/// Why a rule is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rule id `{0}` must be 1 to 64 characters of letters, digits, `_` or `-`")]
    BadId(String),
    #[error("rule `{0}`: threshold and hysteresis must be finite and hysteresis not negative")]
    BadNumbers(String),
    #[error("rule id `{0}` appears twice: give every rule its own id")]
    Duplicate(String),
}

impl Rule {
    /// The default the metering spec asks for: any value above 50, on every tag.
    pub fn default_rules() -> Vec<Rule> {
        vec![Rule {
            id: "value-above-50".into(),
            pattern: TagPattern::parse(">").expect("valid pattern"),
            op: Op::Gt,
            threshold: 50.0,
            hysteresis: 0.0,
        }]
    }

    pub fn validate(&self) -> Result<(), RuleError> {
        let id_ok = (1..=64).contains(&self.id.len())
            && self.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !id_ok {
            return Err(RuleError::BadId(self.id.clone()));
        }
        if !self.threshold.is_finite() || !self.hysteresis.is_finite() || self.hysteresis < 0.0 {
            return Err(RuleError::BadNumbers(self.id.clone()));
        }
        Ok(())
    }

    /// Whether the value is (still) in alarm. An open alert uses the threshold
    /// moved by the hysteresis, so only a clear move back closes it.
    fn in_alarm(&self, value: f64, open: bool) -> bool {
        let margin = if open { self.hysteresis } else { 0.0 };
        let threshold = match self.op {
            Op::Gt | Op::Gte => self.threshold - margin,
            Op::Lt | Op::Lte => self.threshold + margin,
            Op::Eq | Op::Neq => self.threshold,
        };
        self.op.holds(value, threshold)
    }
}

/// Opened or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Opened,
    Cleared,
}

/// A transition the alerter publishes to `alerts.<tag>`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertChange {
    pub kind: AlertKind,
    pub tag: Tag,
    pub rule: Rule,
    pub value: f64,
    pub ts_ms: i64,
    /// The reading that caused this change.
    pub reading: EventId,
    /// The reading that opened the alert (equal to `reading` when opening).
    pub opened_by: EventId,
}

/// `AlertOpened` / `AlertCleared` v1 as published on `alerts.<tag>`. It
/// carries the tag's whole alert state after the change, so the last message
/// on a tag's subject is enough to restore the alerter after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub v: u32,
    pub kind: AlertKind,
    pub tag: Tag,
    pub rule: String,
    pub op: Op,
    pub threshold: f64,
    pub value: f64,
    pub ts_ms: i64,
    pub reading: EventId,
    pub opened_by: EventId,
    pub state: AlertState,
}

impl AlertEvent {
    /// The event name for the `Vigia-Event` header.
    pub fn name(&self) -> &'static str {
        match self.kind {
            AlertKind::Opened => "AlertOpened",
            AlertKind::Cleared => "AlertCleared",
        }
    }

    /// Message id for JetStream deduplication: a redelivered reading
    /// republishes the same id, so the stream stores the alert once.
    pub fn message_id(&self) -> String {
        format!("alert-{}-{}-{}", self.rule, self.reading, self.tag)
    }
}

impl AlertChange {
    pub fn event(&self, state: &AlertState) -> AlertEvent {
        AlertEvent {
            v: 1,
            kind: self.kind,
            tag: self.tag.clone(),
            rule: self.rule.id.clone(),
            op: self.rule.op,
            threshold: self.rule.threshold,
            value: self.value,
            ts_ms: self.ts_ms,
            reading: self.reading,
            opened_by: self.opened_by,
            state: state.clone(),
        }
    }
}

/// What the alerter knows about one tag: which rules are open and the last reading judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// Rule id to the reading that opened it.
    pub open: BTreeMap<String, EventId>,
    pub last: Option<EventId>,
}

impl AlertState {
    /// Judges one reading. Readings at or before `last` were judged already
    /// (a redelivery) and change nothing, which is what keeps alerts exactly-once.
    pub fn apply<'r>(
        &mut self,
        rules: impl IntoIterator<Item = &'r Rule>,
        id: EventId,
        reading: &Reading,
    ) -> Vec<AlertChange> {
        if self.last.is_some_and(|last| id <= last) {
            return Vec::new();
        }
        self.last = Some(id);
        let Some(value) = reading.value.as_number().filter(|_| reading.status == Status::Ok) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        for rule in rules.into_iter().filter(|r| r.pattern.matches(&reading.tag)) {
            let opened_by = self.open.get(&rule.id).copied();
            let alarm = rule.in_alarm(value, opened_by.is_some());
            let kind = match (opened_by, alarm) {
                (None, true) => AlertKind::Opened,
                (Some(_), false) => AlertKind::Cleared,
                _ => continue,
            };
            let opened_by = opened_by.unwrap_or(id);
            match kind {
                AlertKind::Opened => self.open.insert(rule.id.clone(), id),
                AlertKind::Cleared => self.open.remove(&rule.id),
            };
            changes.push(AlertChange {
                kind,
                tag: reading.tag.clone(),
                rule: rule.clone(),
                value,
                ts_ms: reading.ts_ms,
                reading: id,
                opened_by,
            });
        }
        changes
    }

    /// The alert events of `changes`, which [`AlertState::apply`] has just
    /// made of this state: each carries the tag's state right after it, so
    /// the last carries `self`. Only a reading that changes something pays
    /// for copies of the state; most readings change nothing.
    pub fn events(&self, changes: Vec<AlertChange>) -> Vec<AlertEvent> {
        if changes.is_empty() {
            return Vec::new();
        }
        let mut state = self.clone();
        for change in changes.iter().rev() {
            match change.kind {
                AlertKind::Opened => state.open.remove(&change.rule.id),
                AlertKind::Cleared => state.open.insert(change.rule.id.clone(), change.opened_by),
            };
        }
        changes
            .into_iter()
            .map(|change| {
                match change.kind {
                    AlertKind::Opened => state.open.insert(change.rule.id.clone(), change.reading),
                    AlertKind::Cleared => state.open.remove(&change.rule.id),
                };
                change.event(&state)
            })
            .collect()
    }
}

/// Subject prefix of acknowledgements: `alerts._ack.<tag>`. Kept apart from
/// `alerts.<tag>`, whose last message is the alerter's state for the tag.
pub const ACK_SUBJECT_PREFIX: &str = "alerts._ack";
/// The `Vigia-Event` header of an acknowledgement.
pub const ALERT_ACKNOWLEDGED: &str = "AlertAcknowledged";

/// An operator acknowledged an alert (`AlertAcknowledged` v1, on
/// `alerts._ack.<tag>`). Acknowledging twice changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertAck {
    pub v: u32,
    pub tag: Tag,
    pub rule: String,
    /// The reading that opened the alert: with tag and rule, the alert's identity.
    pub opened_by: EventId,
    /// When it was acknowledged, unix ms.
    pub ts_ms: i64,
    /// Who acknowledged, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl AlertAck {
    pub fn subject(&self) -> String {
        format!("{ACK_SUBJECT_PREFIX}.{}", self.tag)
    }

    /// One acknowledgement per alert reaches the stream, however often it is clicked.
    pub fn message_id(&self) -> String {
        format!("ack-{}-{}-{}", self.rule, self.opened_by, self.tag)
    }
}

/// Subject of the rules in force: its last message wins over the configured rules.
pub const RULES_SUBJECT: &str = "alerts._rules";
/// The `Vigia-Event` header of a rules change.
pub const RULES_SET: &str = "RulesSet";

/// The alert rules were replaced (`RulesSet` v1 on `alerts._rules`). The
/// alerter reads the last one before every batch, so a change takes effect
/// from the next batch on, and the history of changes stays in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulesSet {
    pub v: u32,
    pub rules: Vec<Rule>,
    pub ts_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl RulesSet {
    /// Every rule valid, every id once.
    pub fn validate(&self) -> Result<(), RuleError> {
        let mut seen = std::collections::BTreeSet::new();
        for rule in &self.rules {
            rule.validate()?;
            if !seen.insert(rule.id.as_str()) {
                return Err(RuleError::Duplicate(rule.id.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_op_is_named_as_serde_names_it() {
        for op in [Op::Gt, Op::Gte, Op::Lt, Op::Lte, Op::Eq, Op::Neq] {
            assert_eq!(serde_json::to_value(op).unwrap(), op.as_str(), "{op:?}");
        }
    }

    fn reading(v: f64) -> Reading {
        Reading::number(Tag::parse("brasil.sul.s1").unwrap(), 0, v)
    }

    fn kinds(state: &mut AlertState, rules: &[Rule], values: &[f64]) -> Vec<(u64, AlertKind)> {
        let start = state.last.map_or(1, |l| l.seq + 1);
        values
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                let id = EventId { seq: start + i as u64, idx: 0 };
                state.apply(rules, id, &reading(*v)).into_iter().map(|c| (c.reading.seq, c.kind))
            })
            .collect()
    }

    #[test]
    fn default_rule_opens_above_50_once_and_clears_once() {
        let rules = Rule::default_rules();
        let mut s = AlertState::default();
        let got = kinds(&mut s, &rules, &[10.0, 51.0, 70.0, 50.0, 49.0, 60.0]);
        assert_eq!(got, [(2, AlertKind::Opened), (4, AlertKind::Cleared), (6, AlertKind::Opened)]);
    }

    #[test]
    fn hysteresis_stops_flapping() {
        let mut rule = Rule::default_rules().remove(0);
        rule.hysteresis = 5.0;
        let mut s = AlertState::default();
        let got = kinds(&mut s, &[rule], &[51.0, 49.0, 51.0, 46.0, 44.0]);
        assert_eq!(got, [(1, AlertKind::Opened), (5, AlertKind::Cleared)]);
    }

    #[test]
    fn redelivered_readings_change_nothing() {
        let rules = Rule::default_rules();
        let mut s = AlertState::default();
        let id = EventId { seq: 7, idx: 0 };
        assert_eq!(s.apply(&rules, id, &reading(90.0)).len(), 1);
        assert!(s.apply(&rules, id, &reading(90.0)).is_empty());
        assert!(s.apply(&rules, EventId { seq: 6, idx: 3 }, &reading(1.0)).is_empty());
    }

    #[test]
    fn each_event_carries_the_state_right_after_it() {
        let mut high = Rule::default_rules().remove(0);
        high.id = "high".into();
        let mut low = high.clone();
        (low.id, low.op, low.threshold) = ("low".into(), Op::Lt, 20.0);
        let mut s = AlertState::default();
        let at = |seq| EventId { seq, idx: 0 };
        assert_eq!(s.apply([&low, &high], at(1), &reading(10.0)).len(), 1, "low opens");
        // One reading clears `low` and opens `high`.
        let changes = s.apply([&low, &high], at(2), &reading(90.0));
        let events = s.events(changes);
        let states: Vec<Vec<(&str, u64)>> =
            events.iter().map(|e| e.state.open.iter().map(|(rule, by)| (rule.as_str(), by.seq)).collect()).collect();
        assert_eq!(states, [vec![], vec![("high", 2)]]);
        assert_eq!((events[0].kind, events[0].opened_by), (AlertKind::Cleared, at(1)));
        assert!(events.iter().all(|e| e.state.last == Some(at(2))));
        assert_eq!(events[1].state, s);
        assert!(s.events(Vec::new()).is_empty());
    }

    #[test]
    fn errors_and_text_never_alert() {
        let rules = Rule::default_rules();
        let mut s = AlertState::default();
        let mut r = reading(99.0);
        r.status = Status::Error;
        assert!(s.apply(&rules, EventId { seq: 1, idx: 0 }, &r).is_empty());
        r.status = Status::Ok;
        r.value = crate::Value::Text("99".into());
        assert!(s.apply(&rules, EventId { seq: 2, idx: 0 }, &r).is_empty());
    }

    #[test]
    fn rule_validation() {
        let mut rule = Rule::default_rules().remove(0);
        assert!(rule.validate().is_ok());
        rule.id = "bad id".into();
        assert!(rule.validate().is_err());
    }
}
