//! # tributary-hub
//!
//! The cloud hub (DESIGN.md §5): where users view their fleet.
//!
//! - [`broker`]: the embedded MQTT broker (rumqttd), the zero set-up
//!   default; [`config`] switches to any external broker instead.
//! - [`sync`]: the sync shell — node deltas from MQTT, validated, merged in
//!   grouped durable transactions, answered (`Resume`/`Ack`) only after the
//!   commit; alerts stored idempotently.
//! - [`store`]: the idempotent merge store ([`store::MergeStore`]; SQLite
//!   by default, PostgreSQL for several hub replicas; writer and reader
//!   actors).
//! - [`api`]: `/api/v1` with its OpenAPI document, health and metrics;
//!   [`dashboard`]: the page served at `/`.
//! - [`daemon`]: starts and stops all of it (`tributary-hub run`).
//!
//! - [`mqtt_gate`]: per-node MQTT logins and the own-topics rule in front
//!   of the embedded broker; [`api::auth`]: bearer tokens (docs/security.md).
//!   Both listeners serve TLS from PEM files when configured.
#![warn(missing_docs)]

pub mod api;
pub mod broker;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod metrics;
pub mod mqtt_gate;
pub mod store;
pub mod sync;
