//! Field encodings shared by the v1 messages (used through
//! `#[cbor(with = …)]`), so the domain types stay free of wire concerns and a
//! future v2 can encode them differently.

use minicbor::decode::{Decoder, Error as DeError};
use minicbor::encode::{Encoder, Error as EnError, Write};

use crate::ids::Timestamp;
use crate::summary::Summary;

/// Writes a float in the shortest CBOR form that keeps every bit (RFC 8949
/// §4.2.2, "preferred serialization"): a reading such as 1013.25 is exact
/// in an f32 and costs 5 bytes instead of 9, and 21.5 or 0 in an f16 costs 3.
pub fn encode_f64<W: Write>(x: f64, e: &mut Encoder<W>) -> Result<(), EnError<W::Error>> {
    let narrow = x as f32;
    if f64::from(narrow).to_bits() == x.to_bits() {
        if half::f16::from_f32(narrow).to_f32().to_bits() == narrow.to_bits() {
            e.f16(narrow)?;
        } else {
            e.f32(narrow)?;
        }
    } else {
        e.f64(x)?;
    }
    Ok(())
}

/// Reads a float written by [`encode_f64`] (or any f16/f32/f64), refusing
/// NaN and infinities: nothing on the wire may carry them.
pub fn decode_finite_f64(d: &mut Decoder<'_>) -> Result<f64, DeError> {
    let p = d.position();
    let x = d.f64()?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(DeError::message("non-finite float").at(p))
    }
}

/// `#[cbor(with = "compact_f64")]` for `f64` fields.
pub mod compact_f64 {
    use super::*;

    /// See [`encode_f64`].
    pub fn encode<C, W: Write>(
        x: &f64,
        e: &mut Encoder<W>,
        _: &mut C,
    ) -> Result<(), EnError<W::Error>> {
        encode_f64(*x, e)
    }

    /// See [`decode_finite_f64`].
    pub fn decode<C>(d: &mut Decoder<'_>, _: &mut C) -> Result<f64, DeError> {
        decode_finite_f64(d)
    }
}

/// `#[cbor(with = "summary_codec")]`: a [`Summary`] as the array
/// `[count, sum, min, max, sum_sq, first_ts, last_ts]`, floats compact,
/// validated on the way in.
pub mod summary_codec {
    use super::*;

    /// Encodes a summary.
    pub fn encode<C, W: Write>(
        s: &Summary,
        e: &mut Encoder<W>,
        _: &mut C,
    ) -> Result<(), EnError<W::Error>> {
        if s.is_empty() {
            // Infinities never travel: an empty window is seven zeros.
            e.array(7)?;
            for _ in 0..7 {
                e.u8(0)?;
            }
            return Ok(());
        }
        e.array(7)?.u64(s.count)?;
        encode_f64(s.sum, e)?;
        encode_f64(s.min, e)?;
        encode_f64(s.max, e)?;
        encode_f64(s.sum_sq, e)?;
        e.u64(s.first_ts.0)?.u64(s.last_ts.0)?;
        Ok(())
    }

    /// Decodes and validates a summary.
    pub fn decode<C>(d: &mut Decoder<'_>, _: &mut C) -> Result<Summary, DeError> {
        let p = d.position();
        if d.array()? != Some(7) {
            return Err(DeError::message("summary is not a 7-array").at(p));
        }
        let count = d.u64()?;
        if count == 0 {
            // Sent as seven zeros (see `encode`); the rest is skipped, not
            // checked, so that any filler keeps the shape and stays harmless.
            for _ in 0..6 {
                d.skip()?;
            }
            return Ok(Summary::EMPTY);
        }
        let s = Summary {
            count,
            sum: decode_finite_f64(d)?,
            min: decode_finite_f64(d)?,
            max: decode_finite_f64(d)?,
            sum_sq: decode_finite_f64(d)?,
            first_ts: Timestamp(d.u64()?),
            last_ts: Timestamp(d.u64()?),
        };
        s.validate().map_err(|m| DeError::message(m).at(p))?;
        Ok(s)
    }
}
