//! Device ↔ gateway frames, carried over a UART inside COBS frames
//! ([`crate::codec::frame`]). Everything here works without an allocator:
//! a batch of samples has a fixed capacity.
//!
//! Sequence numbers count frames per boot; the gateway deduplicates on
//! (device, boot, seq) and acknowledges cumulatively with [`DeviceAck`], so a
//! device re-sending its whole unacknowledged ring after an outage causes no
//! double count.

use minicbor::decode::{Decoder, Error as DeError};
use minicbor::encode::{Encoder, Error as EnError, Write};

use super::fields::summary_codec;
use crate::ids::{Bucket, DeviceId, Resolution, SensorId, Timestamp};
use crate::summary::Summary;

/// Most samples one [`Readings`] frame carries; keeps a frame under
/// [`MAX_DEVICE_MESSAGE`](super::MAX_DEVICE_MESSAGE) bytes.
pub const MAX_SAMPLES: usize = 32;

/// Device → gateway at boot and whenever the gateway asks (a [`TimeSync`]):
/// who it is and which boot its sequence numbers belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct DeviceHello {
    /// The device.
    #[n(0)]
    pub device: DeviceId,
    /// Boot counter (kept in flash) or a random value drawn at boot.
    #[n(1)]
    pub boot: u32,
    /// Firmware version, for the registry.
    #[n(2)]
    pub firmware: u16,
}

/// One raw sample: time offset from the batch's base, and the value.
#[derive(Clone, Copy, Debug, PartialEq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct Sample {
    /// Milliseconds after [`Readings::base`].
    #[n(0)]
    pub offset_ms: u32,
    /// The measured value (sensors deliver single precision).
    #[n(1)]
    pub value: f32,
}

/// A bounded batch of samples (at most [`MAX_SAMPLES`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples(pub heapless::Vec<Sample, MAX_SAMPLES>);

/// Device → gateway: raw samples of one sensor.
#[derive(Clone, Debug, PartialEq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct Readings {
    /// Frame sequence number within this boot.
    #[n(0)]
    pub seq: u32,
    /// The sensor.
    #[n(1)]
    pub sensor: SensorId,
    /// Time of the first sample (device clock, set by [`TimeSync`]).
    #[n(2)]
    pub base: Timestamp,
    /// The samples.
    #[n(3)]
    pub samples: Samples,
}

/// Device → gateway: a pre-aggregated window of one sensor (what the device
/// sends when raw samples would not fit its link or buffer).
#[derive(Clone, Debug, PartialEq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct Window {
    /// Frame sequence number within this boot.
    #[n(0)]
    pub seq: u32,
    /// The sensor.
    #[n(1)]
    pub sensor: SensorId,
    /// The window's width (coarser when the device merged windows to save
    /// buffer space during an outage).
    #[n(2)]
    pub resolution: Resolution,
    /// The window.
    #[n(3)]
    pub bucket: Bucket,
    /// The statistics of the window's samples.
    #[n(4)]
    #[cbor(with = "summary_codec")]
    pub summary: Summary,
}

/// Gateway → device: every frame of `boot` up to and including `upto` is
/// durable at the gateway and may be dropped from the device's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct DeviceAck {
    /// The boot the sequence numbers belong to.
    #[n(0)]
    pub boot: u32,
    /// Highest acknowledged sequence number (cumulative).
    #[n(1)]
    pub upto: u32,
}

/// Gateway → device: the gateway's wall clock, to set the device's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct TimeSync {
    /// Gateway time when the frame was sent.
    #[n(0)]
    pub now: Timestamp,
}

/// Every device ↔ gateway frame. Indices never reused or renumbered.
///
/// Encoded flat: `[type, body]`, as [`Message`](super::Message).
#[derive(Clone, Debug, PartialEq, minicbor::Encode, minicbor::Decode)]
#[cbor(flat)]
pub enum DeviceMessage {
    /// See [`DeviceHello`].
    #[n(0)]
    Hello(#[n(0)] DeviceHello),
    /// See [`Readings`].
    #[n(1)]
    Readings(#[n(0)] Readings),
    /// See [`Window`].
    #[n(2)]
    Window(#[n(0)] Window),
    /// See [`DeviceAck`].
    #[n(3)]
    Ack(#[n(0)] DeviceAck),
    /// See [`TimeSync`].
    #[n(4)]
    TimeSync(#[n(0)] TimeSync),
}

impl DeviceMessage {
    /// Semantic checks beyond the CBOR shape.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            DeviceMessage::Readings(r) => {
                if r.samples.0.iter().any(|s| !s.value.is_finite()) {
                    return Err("non_finite_sample");
                }
                // Every sample's time must be computable without overflow.
                let last = r.samples.0.iter().map(|s| s.offset_ms).max().unwrap_or(0);
                if r.base.0.checked_add(u64::from(last)).is_none() {
                    return Err("time_out_of_range");
                }
                Ok(())
            }
            DeviceMessage::Window(w) => {
                if !w.bucket.is_valid(w.resolution) {
                    return Err("bucket_out_of_range");
                }
                let s = &w.summary;
                let outside = |t| !w.bucket.contains(w.resolution, t);
                if !s.is_empty() && (outside(s.first_ts) || outside(s.last_ts)) {
                    return Err("time_outside_bucket");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl<C> minicbor::Encode<C> for Samples {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, ctx: &mut C) -> Result<(), EnError<W::Error>> {
        e.array(self.0.len() as u64)?;
        for s in &self.0 {
            s.encode(e, ctx)?;
        }
        Ok(())
    }
}

impl<'b, C> minicbor::Decode<'b, C> for Samples {
    fn decode(d: &mut Decoder<'b>, ctx: &mut C) -> Result<Self, DeError> {
        let p = d.position();
        let mut out = heapless::Vec::new();
        // `array_iter` also accepts indefinite-length arrays; either way
        // the capacity, not the claimed length, bounds what is stored.
        for s in d.array_iter_with::<C, Sample>(ctx)? {
            out.push(s?)
                .map_err(|_| DeError::message("too many samples").at(p))?;
        }
        Ok(Samples(out))
    }
}
