//! # tributary-tests
//!
//! Whole-system tests and the system benchmark (DESIGN.md §1, STYLE.md §7):
//! end-to-end suites against a real Mosquitto (`e2e`), kill -9 crash tests
//! of the real binaries (`crash`), the seeded deterministic simulation of
//! the sync protocol (`sim`), and `tributary-bench`. They arrive with the
//! edge, hub and sync issues (#4, #5, #6, #9); the core's own laws are
//! property-tested inside `tributary-core`.
//!
//! [`system`] starts the real `tributary-hub` and `tributary-edge`
//! binaries for the end-to-end tests, the demo and the benchmarks, and
//! compares their aggregates.
//!
//! It also holds [`nab`], the Numenta Anomaly Benchmark scorer and runner
//! behind the `tributary-nab` binary (issue #7).
#![warn(missing_docs)]

pub mod bench;
pub mod nab;
pub mod system;
