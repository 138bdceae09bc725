//! What operators say about a sensor: name, unit, location and its own
//! alert thresholds. A description is an event on the log
//! (`SensorDescribed` v1 on `alerts._sensors.<tag>`), so the registry's
//! metadata replays like everything else and the alerter reads a sensor's
//! thresholds from the last description of its tag.

use serde::{Deserialize, Serialize};

use crate::rules::{Op, Rule, RuleError};
use crate::tag::{Tag, TagPattern};

/// Subject prefix of sensor descriptions: `alerts._sensors.<tag>`.
pub const SENSOR_SUBJECT_PREFIX: &str = "alerts._sensors";
/// The `Vigia-Event` header of a sensor description.
pub const SENSOR_DESCRIBED: &str = "SensorDescribed";

/// WGS 84 position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

/// One of a sensor's own alert thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub id: String,
    pub op: Op,
    pub threshold: f64,
    #[serde(default)]
    pub hysteresis: f64,
}

/// A sensor's metadata as last described; `deleted` forgets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorDescription {
    pub v: u32,
    pub tag: Tag,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<Threshold>,
    pub ts_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default)]
    pub deleted: bool,
}

/// Why a description is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DescriptionError {
    #[error("{field} is at most 200 characters")]
    TooLong { field: &'static str },
    #[error("location must have lat in [-90, 90] and lon in [-180, 180]")]
    BadLocation,
    #[error("thresholds: {0}")]
    Threshold(#[from] RuleError),
}

impl SensorDescription {
    pub fn subject(&self) -> String {
        format!("{SENSOR_SUBJECT_PREFIX}.{}", self.tag)
    }

    pub fn validate(&self) -> Result<(), DescriptionError> {
        for (field, value) in [("name", &self.name), ("unit", &self.unit)] {
            // Characters, not bytes: the limit the API documents as `maxLength`.
            if value.as_ref().is_some_and(|v| v.chars().count() > 200) {
                return Err(DescriptionError::TooLong { field });
            }
        }
        if let Some(l) = self.location
            && !((-90.0..=90.0).contains(&l.lat) && (-180.0..=180.0).contains(&l.lon))
        {
            return Err(DescriptionError::BadLocation);
        }
        let mut ids = std::collections::BTreeSet::new();
        for rule in self.rules() {
            rule.validate()?;
            if !ids.insert(rule.id.clone()) {
                return Err(RuleError::Duplicate(rule.id).into());
            }
        }
        Ok(())
    }

    /// The thresholds as rules on exactly this tag.
    pub fn rules(&self) -> Vec<Rule> {
        let pattern = TagPattern::parse(self.tag.as_str()).expect("a tag is a pattern");
        self.thresholds
            .iter()
            .map(|t| Rule {
                id: t.id.clone(),
                pattern: pattern.clone(),
                op: t.op,
                threshold: t.threshold,
                hysteresis: t.hysteresis,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(thresholds: Vec<Threshold>) -> SensorDescription {
        SensorDescription {
            v: 1,
            tag: Tag::parse("brasil.sul.s1").unwrap(),
            name: Some("Boiler".into()),
            unit: None,
            location: Some(Location { lat: -30.0, lon: -51.2 }),
            thresholds,
            ts_ms: 1,
            by: None,
            deleted: false,
        }
    }

    #[test]
    fn thresholds_become_rules_on_the_tag_only() {
        let d = describe(vec![Threshold { id: "hot".into(), op: Op::Gt, threshold: 80.0, hysteresis: 1.0 }]);
        assert_eq!(d.validate(), Ok(()));
        let rules = d.rules();
        assert!(rules[0].pattern.matches(&Tag::parse("brasil.sul.s1").unwrap()));
        assert!(!rules[0].pattern.matches(&Tag::parse("brasil.sul.s2").unwrap()));
        assert_eq!(d.subject(), "alerts._sensors.brasil.sul.s1");
    }

    #[test]
    fn bad_descriptions_are_refused() {
        let t = |id: &str| Threshold { id: id.into(), op: Op::Gt, threshold: 1.0, hysteresis: 0.0 };
        assert!(matches!(describe(vec![t("a"), t("a")]).validate(), Err(DescriptionError::Threshold(_))));
        let mut far = describe(vec![]);
        far.location = Some(Location { lat: 91.0, lon: 0.0 });
        assert_eq!(far.validate(), Err(DescriptionError::BadLocation));
        let mut long = describe(vec![]);
        long.name = Some("é".repeat(200));
        assert_eq!(long.validate(), Ok(()), "200 two-byte characters fit");
        long.name = Some("é".repeat(201));
        assert_eq!(long.validate(), Err(DescriptionError::TooLong { field: "name" }));
    }
}
