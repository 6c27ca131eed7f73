//! # tributary-hub
//!
//! The cloud hub (DESIGN.md §5). Built so far: the idempotent merge store
//! ([`store`]: the [`store::MergeStore`] trait and its SQLite backend) and
//! the embedded MQTT broker ([`broker`]). Still to come (issue #5): the
//! sync shell that feeds node deltas from MQTT into the store, the external
//! broker client, PostgreSQL, `/api/v1`, the dashboard and security.
#![warn(missing_docs)]

pub mod api;
pub mod broker;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod metrics;
pub mod store;
pub mod sync;
