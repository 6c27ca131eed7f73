//! Wire version 1: `[0x01][CBOR body]`.
//!
//! Two message families share the envelope:
//! - [`Message`] (edge ↔ hub over MQTT; needs `alloc`), see [`sync`];
//! - [`DeviceMessage`] (device ↔ gateway over a UART; no allocator), see
//!   [`device`].
//!
//! Structs are CBOR arrays with explicit field indices (`#[n(i)]`): an
//! index is never reused or renumbered and new fields are `Option`s at the
//! end, so older decoders keep working. Floats use the shortest exact form (f16, f32 or f64).
//!
//! Two ways to decode:
//! - [`decode`] / [`decode_device`] take a *whole* message (an MQTT payload,
//!   a COBS frame): running out of bytes inside it is
//!   [`DecodeError::Malformed`]`("truncated")`, and bytes after it are
//!   `Malformed("trailing_bytes")`.
//! - [`decode_prefix`] reads a message from the front of a byte stream that
//!   may not have arrived yet: a prefix gives [`DecodeError::Incomplete`].
//!
//! Both refuse inputs over the size limit before parsing, and what the
//! parser allocates is proportional to the input (bounded by the limit): a
//! hostile length prefix claiming 2^60 items just runs out of input.
//!
//! ```
//! use tributary_core::codec::v1::{self, Ack, Message};
//! use tributary_core::codec::DecodeError;
//! use tributary_core::ids::NodeId;
//!
//! let msg = Message::Ack(Ack { node: NodeId(7), upto: 42, credit: None, alert: None });
//! let bytes = v1::encode(&msg);
//! assert_eq!(bytes[0], v1::WIRE_VERSION);
//! assert_eq!(v1::decode(&bytes), Ok(msg.clone()));
//! assert_eq!(v1::decode(&bytes[..3]), Err(DecodeError::Malformed("truncated")));
//! assert_eq!(v1::decode_prefix(&bytes[..3]), Err(DecodeError::Incomplete(1)));
//! assert_eq!(v1::decode(&[9, 0]), Err(DecodeError::UnsupportedVersion(9)));
//! ```

pub mod device;
pub mod fields;
#[cfg(feature = "alloc")]
pub mod sync;
#[cfg(test)]
mod tests;

pub use device::{
    DeviceAck, DeviceHello, DeviceMessage, Readings, Sample, Samples, TimeSync, Window,
};
#[cfg(feature = "alloc")]
pub use sync::{
    Ack, Alert, ConfigSync, Delta, DeltaGroup, DeltaItem, DetectorKind, DigestEntry, Hello,
    Message, Resume,
};

use super::DecodeError;

/// The version byte that leads every v1 message.
pub const WIRE_VERSION: u8 = 1;

/// Largest edge ↔ hub message accepted, in bytes (version byte included).
/// Deltas are batched far below it (`max_batch_bytes`, 64 KiB by default);
/// the size is set by the fleet configuration's first sync, which Automerge
/// sends as one message: 332 KB for 1,000 gateways × 20 sensors
/// (docs/fleet-config.md). 1 MiB is also the MQTT packet limit of the
/// hub's broker and of both clients, and bounds a hub's buffer per message.
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// Largest device message accepted, in bytes: fits a UART frame buffer on
/// the smallest supported microcontroller.
pub const MAX_DEVICE_MESSAGE: usize = 512;

/// The output buffer was too small for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("output buffer too small for the message")]
pub struct BufferTooSmall;

/// Encodes an edge ↔ hub message.
#[cfg(feature = "alloc")]
pub fn encode(msg: &Message) -> alloc::vec::Vec<u8> {
    encode_to_vec(msg)
}

/// Encodes a device message into a new vector (gateway side).
#[cfg(feature = "alloc")]
pub fn encode_device_vec(msg: &DeviceMessage) -> alloc::vec::Vec<u8> {
    encode_to_vec(msg)
}

/// `[WIRE_VERSION][CBOR of msg]` in a new vector.
#[cfg(feature = "alloc")]
#[expect(
    clippy::expect_used,
    reason = "a Vec's Write is infallible and no Encode impl of a message returns an error"
)]
fn encode_to_vec<T: minicbor::Encode<()>>(msg: &T) -> alloc::vec::Vec<u8> {
    let mut out = alloc::vec![WIRE_VERSION];
    minicbor::encode(msg, &mut out).expect("encoding into a Vec cannot fail");
    out
}

/// The size [`encode`] would give `msg`, without building it (senders use
/// it to cut batches to a byte limit).
#[cfg(feature = "alloc")]
pub fn encoded_len(msg: &Message) -> usize {
    struct Count(usize);
    impl minicbor::encode::Write for Count {
        type Error = core::convert::Infallible;
        fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(())
        }
    }
    let mut count = Count(1); // the version byte
    match minicbor::encode(msg, &mut count) {
        Ok(()) => count.0,
        // Counting cannot fail and no message's Encode does.
        Err(_) => usize::MAX,
    }
}

/// Decodes one whole edge ↔ hub message (an MQTT payload).
#[cfg(feature = "alloc")]
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode_whole(bytes, MAX_MESSAGE, Message::validate)
}

/// Decodes the message at the front of `buf`, returning it and the bytes it
/// used; [`DecodeError::Incomplete`] if `buf` holds only part of it.
#[cfg(feature = "alloc")]
pub fn decode_prefix(buf: &[u8]) -> Result<(Message, usize), DecodeError> {
    let body = split_version(buf, MAX_MESSAGE, true)?;
    let mut d = minicbor::Decoder::new(body);
    match d.decode::<Message>() {
        Ok(msg) => {
            msg.validate().map_err(DecodeError::Malformed)?;
            Ok((msg, 1 + d.position()))
        }
        Err(e) if e.is_end_of_input() => {
            if buf.len() >= MAX_MESSAGE {
                Err(DecodeError::TooLarge {
                    len: buf.len(),
                    max: MAX_MESSAGE,
                })
            } else {
                Err(DecodeError::Incomplete(1))
            }
        }
        Err(e) => Err(DecodeError::Malformed(reason_of(&e))),
    }
}

/// Encodes a device message into `out`, returning the length used. Needs no
/// allocator; [`MAX_DEVICE_MESSAGE`] bytes always suffice.
pub fn encode_device(msg: &DeviceMessage, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let (first, rest) = out.split_first_mut().ok_or(BufferTooSmall)?;
    *first = WIRE_VERSION;
    let mut w = minicbor::encode::write::Cursor::new(rest);
    minicbor::encode(msg, &mut w).map_err(|_| BufferTooSmall)?;
    Ok(1 + w.position())
}

/// Decodes one whole device message (the payload of one COBS frame).
pub fn decode_device(bytes: &[u8]) -> Result<DeviceMessage, DecodeError> {
    decode_whole(bytes, MAX_DEVICE_MESSAGE, DeviceMessage::validate)
}

fn decode_whole<'b, T: minicbor::Decode<'b, ()>>(
    bytes: &'b [u8],
    max: usize,
    validate: impl FnOnce(&T) -> Result<(), &'static str>,
) -> Result<T, DecodeError> {
    let body = split_version(bytes, max, false)?;
    let mut d = minicbor::Decoder::new(body);
    let msg: T = d
        .decode()
        .map_err(|e| DecodeError::Malformed(reason_of(&e)))?;
    if d.position() != body.len() {
        return Err(DecodeError::Malformed("trailing_bytes"));
    }
    validate(&msg).map_err(DecodeError::Malformed)?;
    Ok(msg)
}

/// Checks the version byte (and, for a whole message, the size limit) and
/// returns the CBOR body after it.
fn split_version(bytes: &[u8], max: usize, stream: bool) -> Result<&[u8], DecodeError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(if stream {
            DecodeError::Incomplete(1)
        } else {
            DecodeError::Malformed("empty")
        });
    };
    if version != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    // In a stream the caller's buffer may hold later messages too, so only
    // a whole message is held to the limit here; decode_prefix checks its
    // own progress against it.
    if !stream && bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    Ok(if stream {
        body.get(..max.saturating_sub(1)).unwrap_or(body)
    } else {
        body
    })
}

/// Maps a CBOR decoding failure to a stable metric label.
fn reason_of(e: &minicbor::decode::Error) -> &'static str {
    if e.is_end_of_input() {
        "truncated"
    } else if e.is_unknown_variant() {
        "unknown_variant"
    } else if e.is_type_mismatch() {
        "cbor_type_mismatch"
    } else if e.is_missing_value() {
        "missing_field"
    } else if e.is_message() || is_custom(e) {
        "invalid_field"
    } else {
        "cbor_syntax"
    }
}

#[cfg(feature = "alloc")]
fn is_custom(e: &minicbor::decode::Error) -> bool {
    e.is_custom()
}

// Custom (boxed) errors need an allocator; without one they cannot occur.
#[cfg(not(feature = "alloc"))]
fn is_custom(_: &minicbor::decode::Error) -> bool {
    false
}
