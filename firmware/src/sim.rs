//! A simulated SHT3x behind [`embedded_hal::i2c::I2c`], for boards without
//! the real part (the QEMU machine): it answers the measurement command
//! like the sensor, CRCs included, so the real driver runs unchanged.
//!
//! The values follow a slow triangle wave, temperature within
//! [`TEMPERATURE_RANGE_MC`] and humidity within [`HUMIDITY_RANGE_MP`], so a
//! test on the other end of the link can check what arrives.

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};

use crate::drivers::sht3x::{self, CMD_MEASURE_HIGH, CMD_SOFT_RESET, crc8};

/// Simulated temperatures, m°C (inclusive).
pub const TEMPERATURE_RANGE_MC: (i32, i32) = (20_000, 25_000);
/// Simulated humidities, m% (inclusive).
pub const HUMIDITY_RANGE_MP: (u32, u32) = (40_000, 60_000);
/// Measurements per half period of the wave.
const HALF_PERIOD: u32 = 50;

/// The simulated sensor at `address`.
#[derive(Debug)]
pub struct FakeSht3x {
    address: u8,
    /// Measurements taken so far (the wave's phase).
    step: u32,
    /// Bytes the next read returns, once a measurement was started.
    result: Option<[u8; 6]>,
}

impl FakeSht3x {
    /// A simulated sensor answering at `address`.
    pub const fn new(address: u8) -> Self {
        FakeSht3x {
            address,
            step: 0,
            result: None,
        }
    }

    fn measure(&mut self) {
        let phase = self.step % (2 * HALF_PERIOD);
        let up = if phase < HALF_PERIOD {
            phase
        } else {
            2 * HALF_PERIOD - phase
        };
        self.step = self.step.wrapping_add(1);
        let (t_lo, t_hi) = TEMPERATURE_RANGE_MC;
        let (h_lo, h_hi) = HUMIDITY_RANGE_MP;
        let span_t = (t_hi - t_lo) as u32;
        let t = t_lo + (span_t * up / HALF_PERIOD) as i32;
        let h = h_hi - (h_hi - h_lo) * up / HALF_PERIOD;
        let [t0, t1] = sht3x::raw_temperature(t).to_be_bytes();
        let [h0, h1] = sht3x::raw_humidity(h).to_be_bytes();
        self.result = Some([t0, t1, crc8(&[t0, t1]), h0, h1, crc8(&[h0, h1])]);
    }
}

impl ErrorType for FakeSht3x {
    type Error = ErrorKind;
}

impl I2c for FakeSht3x {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        if address != self.address {
            return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => match *bytes {
                    b if b == CMD_MEASURE_HIGH => self.measure(),
                    b if b == CMD_SOFT_RESET => self.result = None,
                    _ => return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data)),
                },
                Operation::Read(buf) => {
                    // Like the part: a read with no measurement ready is
                    // not acknowledged.
                    let result = self
                        .result
                        .take()
                        .ok_or(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address))?;
                    for (out, b) in buf
                        .iter_mut()
                        .zip(result.iter().chain(core::iter::repeat(&0xff)))
                    {
                        *out = *b;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::sht3x::{ADDRESS_HIGH, ADDRESS_LOW, Error, Sht3x};
    use embedded_hal_mock::eh1::delay::NoopDelay;

    #[test]
    fn the_real_driver_reads_values_in_range() {
        let mut sensor = Sht3x::new(FakeSht3x::new(ADDRESS_LOW), ADDRESS_LOW);
        let mut delay = NoopDelay::new();
        let (mut lo, mut hi) = (i32::MAX, i32::MIN);
        for _ in 0..200 {
            let m = sensor.measure(&mut delay).unwrap();
            lo = lo.min(m.millicelsius);
            hi = hi.max(m.millicelsius);
            assert!((HUMIDITY_RANGE_MP.0 - 2..=HUMIDITY_RANGE_MP.1).contains(&m.millipercent));
        }
        // The wave covers the range (the conversion loses a few m°C).
        assert!((lo - TEMPERATURE_RANGE_MC.0).abs() <= 3, "{lo}");
        assert!((hi - TEMPERATURE_RANGE_MC.1).abs() <= 3, "{hi}");
    }

    #[test]
    fn it_answers_only_its_address_and_only_after_a_command() {
        let mut wrong = Sht3x::new(FakeSht3x::new(ADDRESS_LOW), ADDRESS_HIGH);
        assert!(matches!(
            wrong.measure(&mut NoopDelay::new()),
            Err(Error::I2c(_))
        ));
        let mut bus = FakeSht3x::new(ADDRESS_LOW);
        let mut buf = [0u8; 6];
        assert!(bus.read(ADDRESS_LOW, &mut buf).is_err());
    }
}
