//! The JSON shape of the fleet configuration, shared by the hub's and the
//! gateways' HTTP APIs (`/api/v1/config`), so both speak the same document
//! and a script written against one works against the other.

use serde::{Deserialize, Serialize};
use tributary_core::ids::{NodeId, SensorId};

use crate::{FleetConfig, FleetError, FleetView, NodeInfo, SensorInfo, Threshold};

/// `GET /api/v1/config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigOut {
    /// Registered nodes, by id.
    pub nodes: Vec<NodeConfigOut>,
    /// Sensors with a registry entry or a threshold, by id.
    pub sensors: Vec<SensorConfigOut>,
    /// Acknowledged alerts.
    pub acks: Vec<AckOut>,
    /// Bytes of the document in this replica's store.
    pub stored_bytes: usize,
    /// Changes applied by this replica since it started (grows on every
    /// local edit and received change).
    pub generation: u64,
}

/// A node of the registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeConfigOut {
    /// 16 hex digits.
    pub node: String,
    /// Its name.
    pub name: String,
    /// Where it is.
    pub location: Option<String>,
}

/// A sensor's registry entry and threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SensorConfigOut {
    /// The sensor id.
    pub sensor: u32,
    /// Its name, if registered.
    pub name: Option<String>,
    /// Unit of its readings, if registered.
    pub unit: Option<String>,
    /// Where it is.
    pub location: Option<String>,
    /// Its alert threshold, if not the detector's default.
    pub threshold: Option<ThresholdIo>,
}

/// An alert threshold, in and out.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ThresholdIo {
    /// Anomaly score at or above which an alert opens: in (0, 1].
    pub open: f64,
    /// Score below which an open alert starts to resolve: in [0, open);
    /// absent: the detector's default hysteresis.
    #[serde(default)]
    pub close: Option<f64>,
}

/// An acknowledged alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AckOut {
    /// The alert's node, 16 hex digits.
    pub node: String,
    /// The alert's HLC (packed u64).
    pub hlc: u64,
    /// When it was acknowledged, ms since the epoch.
    pub acked_ms: u64,
    /// Who acknowledged it.
    pub who: String,
}

/// `PUT /api/v1/config/nodes/{node}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeIn {
    /// Its name (required, ≤ 128 bytes).
    pub name: String,
    /// Where it is (≤ 256 bytes); absent removes it.
    #[serde(default)]
    pub location: Option<String>,
}

/// `PUT /api/v1/config/sensors/{sensor}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SensorIn {
    /// Its name (required, ≤ 128 bytes).
    pub name: String,
    /// Unit of its readings (required, ≤ 32 bytes).
    pub unit: String,
    /// Where it is (≤ 256 bytes); absent removes it.
    #[serde(default)]
    pub location: Option<String>,
}

impl From<&FleetView> for ConfigOut {
    fn from(v: &FleetView) -> ConfigOut {
        let s = &v.snapshot;
        let nodes = s
            .nodes
            .iter()
            .map(|(id, n)| NodeConfigOut {
                node: id.to_string(),
                name: n.name.clone(),
                location: n.location.clone(),
            })
            .collect();
        let mut ids: Vec<SensorId> = s
            .sensors
            .keys()
            .chain(s.thresholds.keys())
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let sensors = ids
            .into_iter()
            .map(|id| {
                let info = s.sensors.get(&id);
                SensorConfigOut {
                    sensor: id.0,
                    name: info.map(|i| i.name.clone()),
                    unit: info.map(|i| i.unit.clone()),
                    location: info.and_then(|i| i.location.clone()),
                    threshold: s.thresholds.get(&id).map(|t| ThresholdIo {
                        open: t.open,
                        close: t.close,
                    }),
                }
            })
            .collect();
        let acks = s
            .acks
            .iter()
            .map(|(k, a)| AckOut {
                node: k.node.to_string(),
                hlc: k.hlc.as_u64(),
                acked_ms: a.acked_ms,
                who: a.who.clone(),
            })
            .collect();
        ConfigOut {
            nodes,
            sensors,
            acks,
            stored_bytes: v.stored_bytes,
            generation: v.generation,
        }
    }
}

impl NodeIn {
    /// The edit this request makes.
    pub fn apply(self, node: NodeId) -> impl FnOnce(&mut FleetConfig) -> Result<(), FleetError> {
        move |d| {
            d.set_node(
                node,
                &NodeInfo {
                    name: self.name,
                    location: self.location,
                },
            )
        }
    }
}

impl SensorIn {
    /// The edit this request makes.
    pub fn apply(
        self,
        sensor: SensorId,
    ) -> impl FnOnce(&mut FleetConfig) -> Result<(), FleetError> {
        move |d| {
            d.set_sensor(
                sensor,
                &SensorInfo {
                    name: self.name,
                    unit: self.unit,
                    location: self.location,
                },
            )
        }
    }
}

impl ThresholdIo {
    /// The edit this request makes.
    pub fn apply(
        self,
        sensor: SensorId,
    ) -> impl FnOnce(&mut FleetConfig) -> Result<(), FleetError> {
        move |d| {
            d.set_threshold(
                sensor,
                Threshold {
                    open: self.open,
                    close: self.close,
                },
            )
        }
    }
}
