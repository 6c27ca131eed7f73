//! # tributary-firmware
//!
//! The no_std firmware of a Tributary device (DESIGN.md §3). It will own:
//! embedded-hal 1.0 sensor drivers, the sampling loop (sample → `Summary`
//! per window → detector step → frame → UART), the bounded ring of
//! unacknowledged frames that merges old windows into coarser ones when
//! full, and the QEMU and RP2040 board crates (issue #8).
//!
//! Today it holds the uplink encoder, so that the path the device depends
//! on — a v1 device message in a COBS + CRC-32 frame, with no allocator —
//! is compiled for a microcontroller target in every CI run.
#![no_std]

pub mod uplink;
