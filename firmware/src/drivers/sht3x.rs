//! Sensirion SHT3x (SHT30/31/35) temperature and humidity sensor.
//!
//! One single-shot measurement: write the command `0x2400` (high
//! repeatability, no clock stretching), wait the conversion time (15 ms
//! worst case), read six bytes `T_msb T_lsb T_crc RH_msb RH_lsb RH_crc`.
//! Every 16-bit word is followed by a CRC-8 (polynomial `0x31`, init `0xff`),
//! checked before the word is used: a bit flipped on a long cable is an
//! error, not a wrong reading.
//!
//! Datasheet conversions: `T = −45 + 175 · raw / 65535 °C`,
//! `RH = 100 · raw / 65535 %`.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

/// I2C address with the ADDR pin low (the default on most breakouts).
pub const ADDRESS_LOW: u8 = 0x44;
/// I2C address with the ADDR pin high.
pub const ADDRESS_HIGH: u8 = 0x45;

/// Single shot, high repeatability, clock stretching disabled.
pub const CMD_MEASURE_HIGH: [u8; 2] = [0x24, 0x00];
/// Soft reset.
pub const CMD_SOFT_RESET: [u8; 2] = [0x30, 0xa2];
/// Longest high-repeatability conversion (datasheet: 15.5 ms).
pub const MEASURE_TIME_US: u32 = 15_500;
/// Time the sensor needs after a soft reset (datasheet: 1.5 ms).
pub const RESET_TIME_US: u32 = 1_500;

/// One measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// Temperature in thousandths of a degree Celsius.
    pub millicelsius: i32,
    /// Relative humidity in thousandths of a percent.
    pub millipercent: u32,
}

/// What can go wrong reading the sensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The bus failed (NACK, arbitration loss, …).
    I2c(E),
    /// A word's CRC-8 did not match: the bytes were corrupted.
    Crc,
}

/// An SHT3x on an I2C bus.
#[derive(Debug)]
pub struct Sht3x<I> {
    i2c: I,
    address: u8,
}

impl<I: I2c> Sht3x<I> {
    /// A driver for the sensor at `address` ([`ADDRESS_LOW`] or
    /// [`ADDRESS_HIGH`]). Talks to nothing yet.
    pub fn new(i2c: I, address: u8) -> Self {
        Sht3x { i2c, address }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I {
        self.i2c
    }

    /// Resets the sensor to its power-on state.
    pub fn soft_reset(&mut self, delay: &mut impl DelayNs) -> Result<(), Error<I::Error>> {
        self.i2c
            .write(self.address, &CMD_SOFT_RESET)
            .map_err(Error::I2c)?;
        delay.delay_us(RESET_TIME_US);
        Ok(())
    }

    /// Takes one single-shot measurement (blocks for the conversion time).
    pub fn measure(&mut self, delay: &mut impl DelayNs) -> Result<Measurement, Error<I::Error>> {
        self.i2c
            .write(self.address, &CMD_MEASURE_HIGH)
            .map_err(Error::I2c)?;
        delay.delay_us(MEASURE_TIME_US);
        let mut buf = [0u8; 6];
        self.i2c.read(self.address, &mut buf).map_err(Error::I2c)?;
        let [t0, t1, tc, h0, h1, hc] = buf;
        if crc8(&[t0, t1]) != tc || crc8(&[h0, h1]) != hc {
            return Err(Error::Crc);
        }
        Ok(Measurement {
            millicelsius: millicelsius(u16::from_be_bytes([t0, t1])),
            millipercent: millipercent(u16::from_be_bytes([h0, h1])),
        })
    }
}

/// The SHT3x CRC-8: polynomial `0x31`, init `0xff`, no reflection, no final
/// XOR (datasheet example: `crc8([0xbe, 0xef]) == 0x92`).
pub fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0xffu8;
    for &byte in data {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x31
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Raw temperature word to m°C (rounded down; exact at both ends).
pub fn millicelsius(raw: u16) -> i32 {
    // 175_000 · 65_535 fits an i64 easily; the result fits an i32.
    let scaled = 175_000i64 * i64::from(raw) / 65_535;
    (scaled - 45_000) as i32
}

/// Raw humidity word to m%.
pub fn millipercent(raw: u16) -> u32 {
    (100_000u64 * u64::from(raw) / 65_535) as u32
}

/// The raw temperature word for `millicelsius` (the inverse conversion),
/// clamped to the sensor's range: what a simulated sensor answers.
pub fn raw_temperature(millicelsius: i32) -> u16 {
    let m = i64::from(millicelsius).clamp(-45_000, 130_000) + 45_000;
    // Round up so that `millicelsius(raw_temperature(x))` gives back `x`
    // (the forward conversion rounds down).
    ((m * 65_535 + 174_999) / 175_000) as u16
}

/// The raw humidity word for `millipercent`, clamped to 0–100 %.
pub fn raw_humidity(millipercent: u32) -> u16 {
    let m = u64::from(millipercent.min(100_000));
    (m * 65_535).div_ceil(100_000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::delay::NoopDelay;
    use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction};

    fn reply(t: u16, h: u16) -> std::vec::Vec<u8> {
        let [t0, t1] = t.to_be_bytes();
        let [h0, h1] = h.to_be_bytes();
        std::vec![t0, t1, crc8(&[t0, t1]), h0, h1, crc8(&[h0, h1])]
    }

    #[test]
    fn crc_matches_the_datasheet_example() {
        assert_eq!(crc8(&[0xbe, 0xef]), 0x92);
    }

    #[test]
    fn reads_a_measurement() {
        // 0x6666 → 25.0 °C (−45 + 175 · 0.4), 0x8000 → 50.0 %.
        let expectations = [
            Transaction::write(ADDRESS_LOW, CMD_MEASURE_HIGH.to_vec()),
            Transaction::read(ADDRESS_LOW, reply(0x6666, 0x8000)),
        ];
        let mut sensor = Sht3x::new(I2cMock::new(&expectations), ADDRESS_LOW);
        let m = sensor.measure(&mut NoopDelay::new()).unwrap();
        assert_eq!(m.millicelsius, 25_000);
        assert_eq!(m.millipercent, 50_000);
        sensor.destroy().done();
    }

    #[test]
    fn conversions_cover_the_range_and_invert() {
        assert_eq!(millicelsius(0), -45_000);
        assert_eq!(millicelsius(0xffff), 130_000);
        assert_eq!(millipercent(0xffff), 100_000);
        for mc in [-45_000, -10_123, 0, 21_500, 129_999] {
            let back = millicelsius(raw_temperature(mc));
            assert!((back - mc).abs() <= 3, "{mc} → {back}");
        }
        for mp in [0, 45_678, 100_000] {
            let back = millipercent(raw_humidity(mp)) as i64;
            assert!((back - i64::from(mp)).abs() <= 2, "{mp} → {back}");
        }
    }

    #[test]
    fn a_bus_error_is_reported() {
        let expectations = [Transaction::write(ADDRESS_HIGH, CMD_MEASURE_HIGH.to_vec())
            .with_error(ErrorKind::NoAcknowledge(
                embedded_hal::i2c::NoAcknowledgeSource::Address,
            ))];
        let mut sensor = Sht3x::new(I2cMock::new(&expectations), ADDRESS_HIGH);
        assert!(matches!(
            sensor.measure(&mut NoopDelay::new()),
            Err(Error::I2c(ErrorKind::NoAcknowledge(_)))
        ));
        sensor.destroy().done();
    }

    #[test]
    fn a_corrupted_word_fails_the_crc() {
        for flip in [0usize, 1, 2, 3, 4, 5] {
            let mut bytes = reply(0x6666, 0x8000);
            bytes[flip] ^= 0x04;
            let expectations = [
                Transaction::write(ADDRESS_LOW, CMD_MEASURE_HIGH.to_vec()),
                Transaction::read(ADDRESS_LOW, bytes),
            ];
            let mut sensor = Sht3x::new(I2cMock::new(&expectations), ADDRESS_LOW);
            assert_eq!(sensor.measure(&mut NoopDelay::new()), Err(Error::Crc));
            sensor.destroy().done();
        }
    }

    #[test]
    fn soft_reset_sends_the_command() {
        let expectations = [Transaction::write(ADDRESS_LOW, CMD_SOFT_RESET.to_vec())];
        let mut sensor = Sht3x::new(I2cMock::new(&expectations), ADDRESS_LOW);
        sensor.soft_reset(&mut NoopDelay::new()).unwrap();
        sensor.destroy().done();
    }
}
