//! # tributary-edge
//!
//! The gateway daemon that runs on a Raspberry Pi next to the sensors
//! (DESIGN.md §4, docs/architecture.md). It owns the sources (serial frames
//! from firmware, a local MQTT subscription, `POST /api/v1/readings`, a
//! simulator, CSV replay); the actors that aggregate readings into the
//! core's aggregate CRDT, run the detectors and store everything in SQLite
//! (WAL, group commit, migrations, a disk budget); the outbox; and the local
//! HTTP API. It holds no domain logic of its own: CRDT, codec and detector
//! decisions belong to `tributary-core`.
//!
//! The binary is a thin `main` over this library, so tests and benchmarks
//! drive the same code in-process.

#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod ingest;
pub mod metrics;
pub mod reading;
pub mod score_csv;
pub mod sources;
pub mod store;
pub mod sync;
