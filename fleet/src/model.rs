//! The plain values read from and written to the document, and their
//! validation. Nothing here touches Automerge.

use std::collections::BTreeMap;

use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, SensorId};

use crate::FleetError;

/// Longest name (node, sensor) in bytes: fits a dashboard label.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest location in bytes.
pub const MAX_LOCATION_BYTES: usize = 256;
/// Longest unit in bytes ("°C", "kWh", "m³/h").
pub const MAX_UNIT_BYTES: usize = 32;
/// Longest acknowledging operator name in bytes.
pub const MAX_WHO_BYTES: usize = 128;

/// A gateway (or hub) in the device registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Human name, required.
    pub name: String,
    /// Where it is, if anyone said.
    pub location: Option<String>,
}

/// A sensor (a channel) in the device registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensorInfo {
    /// Human name, required.
    pub name: String,
    /// Unit of its readings, required ("°C").
    pub unit: String,
    /// Where it is, if anyone said.
    pub location: Option<String>,
}

/// A sensor's alert thresholds, as anomaly scores in [0, 1]: the detector's
/// `AlertPolicy::open` / `close` (tributary-core `detect::alert`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    /// Score at or above which an alert opens: in (0, 1].
    pub open: f64,
    /// Score below which an open alert starts to resolve: in [0, open);
    /// `None` keeps the detector's default hysteresis.
    pub close: Option<f64>,
}

/// Identifies one alert: the node that raised it and its hybrid clock
/// stamp (the pair is unique, as in the wire `Alert`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertKey {
    /// The node that raised the alert.
    pub node: NodeId,
    /// The alert's hybrid logical clock stamp.
    pub hlc: Hlc,
}

/// An operator's acknowledgement of an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// When, in ms since the Unix epoch (the acknowledging replica's wall
    /// clock; informative only, never used for ordering).
    pub acked_ms: u64,
    /// Who acknowledged (an operator or API token name).
    pub who: String,
}

/// Everything the document says, materialised: what replicas compare to
/// decide they agree, and what an API serves in one go.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetSnapshot {
    /// Registered nodes.
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Registered sensors.
    pub sensors: BTreeMap<SensorId, SensorInfo>,
    /// Per-sensor thresholds (sensors without one use the detector default).
    pub thresholds: BTreeMap<SensorId, Threshold>,
    /// Acknowledged alerts.
    pub acks: BTreeMap<AlertKey, Ack>,
}

/// Checks one text field: not blank, no control characters, at most `max`
/// bytes.
pub(crate) fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), FleetError> {
    if value.trim().is_empty() {
        return Err(FleetError::Empty { field });
    }
    if value.len() > max {
        return Err(FleetError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(FleetError::ControlChar { field });
    }
    Ok(())
}

impl NodeInfo {
    /// Checks every field as the setters do.
    pub fn validate(&self) -> Result<(), FleetError> {
        check_text("node name", &self.name, MAX_NAME_BYTES)?;
        if let Some(location) = &self.location {
            check_text("node location", location, MAX_LOCATION_BYTES)?;
        }
        Ok(())
    }
}

impl SensorInfo {
    /// Checks every field as the setters do.
    pub fn validate(&self) -> Result<(), FleetError> {
        check_text("sensor name", &self.name, MAX_NAME_BYTES)?;
        check_text("sensor unit", &self.unit, MAX_UNIT_BYTES)?;
        if let Some(location) = &self.location {
            check_text("sensor location", location, MAX_LOCATION_BYTES)?;
        }
        Ok(())
    }
}

impl Threshold {
    /// `open` in (0, 1]; `close`, when given, in [0, open). NaN fails both.
    pub fn validate(&self) -> Result<(), FleetError> {
        // Written as "not inside" so NaN is refused too.
        if !(self.open > 0.0 && self.open <= 1.0) {
            return Err(FleetError::OpenOutOfRange { open: self.open });
        }
        if let Some(close) = self.close
            && !(close >= 0.0 && close < self.open)
        {
            return Err(FleetError::CloseOutOfRange {
                open: self.open,
                close,
            });
        }
        Ok(())
    }
}

impl Ack {
    /// Checks every field as the setters do.
    pub fn validate(&self) -> Result<(), FleetError> {
        check_text("acknowledging operator", &self.who, MAX_WHO_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_names_are_refused_with_a_stable_reason() {
        let e = NodeInfo {
            name: "  ".into(),
            location: None,
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.reason(), "empty_field");
    }

    #[test]
    fn control_characters_and_long_text_are_refused() {
        let bad = SensorInfo {
            name: "a\nb".into(),
            unit: "°C".into(),
            location: None,
        };
        assert_eq!(bad.validate().unwrap_err().reason(), "control_character");
        let long = SensorInfo {
            name: "x".into(),
            unit: "u".repeat(MAX_UNIT_BYTES + 1),
            location: None,
        };
        assert_eq!(long.validate().unwrap_err().reason(), "field_too_long");
    }

    #[test]
    fn thresholds_must_be_scores_with_close_below_open() {
        let ok = |open, close| Threshold { open, close }.validate().map_err(|e| e.reason());
        assert_eq!(ok(1.0, None), Ok(()));
        assert_eq!(ok(0.8, Some(0.0)), Ok(()));
        assert_eq!(ok(0.0, None), Err("threshold_out_of_range"));
        assert_eq!(ok(1.5, None), Err("threshold_out_of_range"));
        assert_eq!(ok(f64::NAN, None), Err("threshold_out_of_range"));
        assert_eq!(ok(0.8, Some(0.8)), Err("close_out_of_range"));
        assert_eq!(ok(0.8, Some(-0.1)), Err("close_out_of_range"));
        assert_eq!(ok(0.8, Some(f64::NAN)), Err("close_out_of_range"));
    }
}
