//! Alerts and sensors as the merge store keeps them: the types of
//! [`MergeStore::insert_alerts`](super::MergeStore::insert_alerts),
//! [`alerts`](super::MergeStore::alerts) and
//! [`sensors`](super::MergeStore::sensors), and the validation of an alert
//! batch.
//!
//! An alert is identified by `(node, hlc)`: the node's hybrid clock never
//! repeats a reading, so a re-sent alert (the node did not see the ack) is
//! recognised and counted as a duplicate, never stored twice.

use std::fmt;
use std::str::FromStr;

use tributary_core::codec::v1::Alert;
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, SensorId, Timestamp};

use super::MergeError;

/// What one [`insert_alerts`](super::MergeStore::insert_alerts) did.
/// `new + duplicate` is the number of alerts in the call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertOutcome {
    /// Alerts stored for the first time.
    pub new: u64,
    /// Alerts the store already held (same node and HLC): left unchanged.
    pub duplicate: u64,
}

/// An alert as stored, with the hub's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAlert {
    /// The alert as the node sent it (`alert.node` is its writer).
    pub alert: Alert,
    /// When the hub stored it (hub wall ms).
    pub received_ms: u64,
    /// When a user acknowledged it (hub wall ms); `None` while open.
    pub acked_ms: Option<u64>,
}

/// A position in the alert list (newest first): the last alert of a page.
/// The next page starts strictly after it, so pages neither repeat nor skip
/// an alert even while new ones arrive (they sort before the cursor or,
/// when older, after it and are then seen on a later page).
///
/// Its text form, for APIs, is `<at>-<node>-<hlc>`: event time in decimal
/// ms, the node as 16 hex digits, the packed HLC in decimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AlertCursor {
    /// The alert's event time.
    pub at: Timestamp,
    /// Its node.
    pub node: NodeId,
    /// Its HLC.
    pub hlc: Hlc,
}

impl From<&StoredAlert> for AlertCursor {
    fn from(a: &StoredAlert) -> AlertCursor {
        AlertCursor {
            at: a.alert.at,
            node: a.alert.node,
            hlc: a.alert.hlc,
        }
    }
}

impl fmt::Display for AlertCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.at.0, self.node, self.hlc.as_u64())
    }
}

/// The text was not an [`AlertCursor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an alert cursor: expected <at>-<node hex>-<hlc>")]
pub struct ParseCursorError;

impl FromStr for AlertCursor {
    type Err = ParseCursorError;
    fn from_str(s: &str) -> Result<AlertCursor, ParseCursorError> {
        let mut parts = s.splitn(3, '-');
        let (Some(at), Some(node), Some(hlc)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseCursorError);
        };
        Ok(AlertCursor {
            at: Timestamp(at.parse().map_err(|_| ParseCursorError)?),
            node: node.parse().map_err(|_| ParseCursorError)?,
            hlc: Hlc::from_u64(hlc.parse().map_err(|_| ParseCursorError)?),
        })
    }
}

/// Which alerts [`alerts`](super::MergeStore::alerts) returns: those
/// matching every given filter, newest event time first (ties in a fixed
/// order), at most `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertQuery {
    /// Only this node's.
    pub node: Option<NodeId>,
    /// Only this sensor's.
    pub sensor: Option<SensorId>,
    /// Only acknowledged (`true`) or open (`false`) ones.
    pub acknowledged: Option<bool>,
    /// Inclusive lower bound on the event time `at`.
    pub from: Option<Timestamp>,
    /// Exclusive upper bound on the event time `at`.
    pub to: Option<Timestamp>,
    /// Continue after this alert (the previous page's last).
    pub after: Option<AlertCursor>,
    /// Most alerts returned.
    pub limit: usize,
}

impl Default for AlertQuery {
    /// Every alert: no filter, no limit.
    fn default() -> AlertQuery {
        AlertQuery {
            node: None,
            sensor: None,
            acknowledged: None,
            from: None,
            to: None,
            after: None,
            limit: usize::MAX,
        }
    }
}

/// A sensor with data in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensorRecord {
    /// The sensor.
    pub sensor: SensorId,
    /// The nodes that sent entries of it, ascending.
    pub nodes: Vec<NodeId>,
    /// The newest reading time among its stored entries (the latest
    /// `last_ts`), over all nodes.
    pub newest: Timestamp,
}

impl SensorRecord {
    /// Folds `(sensor, node, newest)` rows of the sensor directory, ordered
    /// by sensor, into one record per sensor with its nodes in id order.
    /// Both backends read the same table shape and fold it here.
    pub(crate) fn fold(
        rows: impl IntoIterator<Item = (SensorId, NodeId, Timestamp)>,
    ) -> Vec<SensorRecord> {
        let mut out: Vec<SensorRecord> = Vec::new();
        for (sensor, node, newest) in rows {
            match out.last_mut() {
                Some(rec) if rec.sensor == sensor => {
                    rec.nodes.push(node);
                    rec.newest = rec.newest.max(newest);
                }
                _ => out.push(SensorRecord {
                    sensor,
                    nodes: vec![node],
                    newest,
                }),
            }
        }
        for rec in &mut out {
            // Stored as i64 bits: the SQL order is not the id order.
            rec.nodes.sort_unstable();
        }
        out
    }
}

/// Checks an alert batch from `node` (reasons: `wrong_node`, `Alert::validate`'s
/// `score_out_of_range`, `value_not_finite`, `Summary::validate`'s for the
/// window, `time_out_of_range` for an event time above `i64::MAX`); the first
/// failure, with the alert's index.
pub fn validate_alerts(node: NodeId, alerts: &[Alert]) -> Result<(), MergeError> {
    for (index, a) in alerts.iter().enumerate() {
        validate_alert(node, a).map_err(|reason| MergeError::Invalid { index, reason })?;
    }
    Ok(())
}

fn validate_alert(node: NodeId, a: &Alert) -> Result<(), &'static str> {
    if a.node != node {
        return Err("wrong_node");
    }
    a.validate()?;
    if !a.value.is_finite() {
        return Err("value_not_finite");
    }
    a.window.validate()?;
    // SQL orders and filters `at` as a signed integer.
    if i64::try_from(a.at.0).is_err() {
        return Err("time_out_of_range");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_text_round_trips_and_rejects_garbage() {
        let c = AlertCursor {
            at: Timestamp(1_700_000_000_000),
            node: NodeId(u64::MAX),
            hlc: Hlc::from_u64(u64::MAX),
        };
        assert_eq!(c.to_string().parse::<AlertCursor>(), Ok(c));
        for bad in [
            "", "1", "1-2", "x-1-2", "1-zz-2", "1-2-x", "-1-2-3", "1-2-3-4",
        ] {
            assert_eq!(bad.parse::<AlertCursor>(), Err(ParseCursorError), "{bad}");
        }
    }
}
