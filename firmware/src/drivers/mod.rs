//! Sensor drivers, generic over [`embedded_hal::i2c::I2c`] (embedded-hal
//! 1.0). Each owns its bus from `new()` until `destroy()` gives it back,
//! takes a [`DelayNs`](embedded_hal::delay::DelayNs) where the part needs a
//! conversion time, and returns integer milli-units so no float math is
//! needed in the driver itself.

pub mod sht3x;
pub mod tmp102;
