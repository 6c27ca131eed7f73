//! # tributary-firmware
//!
//! The no_std firmware of a Tributary device (DESIGN.md §3, docs/firmware.md),
//! as a library the board binaries link:
//!
//! - [`drivers`]: embedded-hal 1.0 I2C sensor drivers (SHT3x, TMP102);
//! - [`app`]: the application logic (sample → `Summary` per window →
//!   detector step → window frames with per-boot sequence numbers, the
//!   bounded ring of unacknowledged windows that merges instead of dropping,
//!   the device side of the link protocol), hardware-free and host-tested;
//! - [`uplink`]: frames a device message (COBS + CRC-32) without a heap;
//! - [`link`]: turns bytes from the UART back into gateway messages;
//! - [`sim`]: a simulated SHT3x bus for boards without the part (QEMU).
//!
//! Boards (in `boards/`) own the hardware: UART, timer, I2C bus.
#![cfg_attr(not(test), no_std)]

pub mod app;
pub mod drivers;
pub mod link;
pub mod sim;
pub mod uplink;

#[cfg(test)]
mod app_tests;
#[cfg(test)]
mod link_sim_tests;
