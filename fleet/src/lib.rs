//! The fleet configuration of a Tributary deployment, as one Automerge
//! document per fleet: the device registry (node and sensor names, units,
//! locations), detector thresholds per sensor and alert acknowledgements.
//!
//! An operator edits it at the hub or at a gateway, online or not; replicas
//! exchange Automerge sync messages (topic `tributary/v1/{node}/config`,
//! DESIGN.md §6) and converge. Automerge suits this low-rate collaborative
//! state; the high-rate aggregates use the purpose-built CRDT of
//! `tributary-core`.
//!
//! This crate owns the schema, validation, persistence as bytes and the
//! sync messages as bytes. It does no I/O: the hub and the gateway store
//! the bytes and carry the messages.
//!
//! ```
//! use tributary_core::ids::{NodeId, SensorId};
//! use tributary_fleet::{Changed, FleetConfig, Peer, SensorInfo, Threshold};
//!
//! let mut hub = FleetConfig::new(NodeId(1), 7);
//! let mut gateway = FleetConfig::new(NodeId(2), 9);
//! hub.set_sensor(SensorId(3), &SensorInfo { name: "boiler".into(), unit: "°C".into(), location: None })?;
//! gateway.set_threshold(SensorId(3), Threshold { open: 0.9, close: Some(0.6) })?;
//!
//! // One Peer per remote; exchange until neither side has anything to send.
//! let (mut to_gateway, mut to_hub) = (Peer::new(), Peer::new());
//! loop {
//!     let a = hub.generate(&mut to_gateway);
//!     let b = gateway.generate(&mut to_hub);
//!     if a.is_none() && b.is_none() { break; }
//!     if let Some(m) = a { let _: Changed = gateway.receive(&mut to_hub, &m)?; }
//!     if let Some(m) = b { let _: Changed = hub.receive(&mut to_gateway, &m)?; }
//! }
//! assert_eq!(hub.snapshot(), gateway.snapshot());
//! assert_eq!(gateway.sensor(SensorId(3)).map(|s| s.unit), Some("°C".to_string()));
//! # Ok::<(), tributary_fleet::FleetError>(())
//! ```
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod actor;
mod document;
mod error;
pub mod http;
pub mod json;
mod metrics;
mod model;
mod replica;
mod sync;

pub use actor::{
    Connected, Edit, EditFn, FleetActor, FleetActorConfig, FleetHooks, FleetLink, FleetView,
    Outbox, Receive,
};
pub use document::{FleetConfig, SCHEMA_VERSION};
pub use error::FleetError;
pub use metrics::FleetMetrics;
pub use model::{
    Ack, AlertKey, FleetSnapshot, MAX_LOCATION_BYTES, MAX_NAME_BYTES, MAX_UNIT_BYTES,
    MAX_WHO_BYTES, NodeInfo, SensorInfo, Threshold,
};
pub use replica::{Replica, ReplicaError, random_session};
pub use sync::{Changed, Peer};

/// The hub's replica id: the peer a gateway syncs with. Node ids are never
/// 0 (gateways draw theirs at random and skip 0), so it names no gateway.
pub const HUB: tributary_core::ids::NodeId = tributary_core::ids::NodeId(0);
