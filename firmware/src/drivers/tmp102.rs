//! Texas Instruments TMP102 temperature sensor (±0.5 °C, 0.0625 °C steps).
//!
//! The temperature register (pointer `0x00`) holds a left-aligned two's
//! complement value: 12 bits in normal mode, 13 bits when the extended-mode
//! flag (bit 0 of the low byte) is set. The part has no CRC; a bus error is
//! the only failure it reports.

use embedded_hal::i2c::I2c;

/// Address with ADD0 tied to ground.
pub const ADDRESS_GND: u8 = 0x48;
/// Address with ADD0 tied to V+.
pub const ADDRESS_VCC: u8 = 0x49;
/// Pointer of the temperature register.
pub const REG_TEMPERATURE: u8 = 0x00;

/// A TMP102 on an I2C bus.
#[derive(Debug)]
pub struct Tmp102<I> {
    i2c: I,
    address: u8,
}

impl<I: I2c> Tmp102<I> {
    /// A driver for the sensor at `address`. Talks to nothing yet.
    pub fn new(i2c: I, address: u8) -> Self {
        Tmp102 { i2c, address }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I {
        self.i2c
    }

    /// Reads the latest conversion (the part converts continuously, every
    /// 250 ms by default, so no delay is needed).
    pub fn read_millicelsius(&mut self) -> Result<i32, I::Error> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[REG_TEMPERATURE], &mut buf)?;
        Ok(millicelsius(buf))
    }
}

/// Register bytes to m°C: 1/16 °C per step = 62.5 m°C.
pub fn millicelsius(bytes: [u8; 2]) -> i32 {
    let word = i16::from_be_bytes(bytes);
    // Arithmetic shifts keep the sign.
    let steps = if bytes[1] & 1 != 0 {
        i32::from(word >> 3)
    } else {
        i32::from(word >> 4)
    };
    steps * 625 / 10
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction};

    #[test]
    fn reads_the_temperature() {
        // Datasheet table: 0x190 (12-bit) = 25 °C.
        let expectations = [Transaction::write_read(
            ADDRESS_GND,
            std::vec![REG_TEMPERATURE],
            std::vec![0x19, 0x00],
        )];
        let mut sensor = Tmp102::new(I2cMock::new(&expectations), ADDRESS_GND);
        assert_eq!(sensor.read_millicelsius().unwrap(), 25_000);
        sensor.destroy().done();
    }

    #[test]
    fn negative_and_extended_mode_values() {
        // Datasheet: 0xE70 = −25 °C, 0xFFF = −0.0625 °C (12-bit).
        assert_eq!(millicelsius([0xe7, 0x00]), -25_000);
        assert_eq!(millicelsius([0xff, 0xf0]), -62);
        // 13-bit extended mode: 0x0960 << 3 | EM = 150 °C.
        assert_eq!(millicelsius([0x4b, 0x01]), 150_000);
    }

    #[test]
    fn a_bus_error_is_reported() {
        let expectations =
            [
                Transaction::write_read(ADDRESS_VCC, std::vec![REG_TEMPERATURE], std::vec![0, 0])
                    .with_error(ErrorKind::Bus),
            ];
        let mut sensor = Tmp102::new(I2cMock::new(&expectations), ADDRESS_VCC);
        assert_eq!(sensor.read_millicelsius(), Err(ErrorKind::Bus));
        sensor.destroy().done();
    }
}
