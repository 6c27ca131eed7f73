//! # tributary-core
//!
//! The pure, deterministic heart of Tributary, shared by the device firmware,
//! the edge gateway and the cloud hub.
//!
//! It owns the identifiers ([`ids`]), the hybrid logical clock ([`hlc`]), the
//! [`Summary`](summary::Summary) monoid, the CRDTs ([`crdt`]), the versioned
//! CBOR wire codec ([`codec::v1`]) and the COBS + CRC-32 framing for byte
//! streams ([`codec::frame`]).
//! - [`detect`]: streaming anomaly detectors (z-score, MAD, CUSUM,
//!   Page-Hinkley, flatline, rate-of-change, range, seasonal, ensemble) as
//!   step functions with fixed-size `Copy` state.
//! - [`sync`]: the edge ↔ hub sync protocol as I/O-free state machines
//!   (`NodeSync`, `HubSync`); time is a parameter, so it runs under
//!   deterministic simulation (`tests/sim.rs`).
//!
//! It must not do I/O, read a clock, or draw random numbers: time and
//! randomness are parameters, so every function here is replayable and the
//! same code runs on a microcontroller and in a deterministic simulation.
//!
//! Features: `alloc` enables the heap-backed types (the aggregate CRDT, the
//! counters, the OR-Set, and wire messages carrying vectors); `std` implies
//! `alloc`; with neither, the ids, clock, summary, framing and the device
//! frames still build for `thumbv6m-none-eabi`.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
// The docs link to alloc-only items (the aggregate CRDT, edge↔hub messages);
// without `alloc` those links cannot resolve, which is expected, not a bug.
#![cfg_attr(not(feature = "alloc"), allow(rustdoc::broken_intra_doc_links))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod codec;
pub mod crdt;
pub mod detect;
pub mod hlc;
pub mod ids;
pub mod summary;
#[cfg(feature = "alloc")]
pub mod sync;
