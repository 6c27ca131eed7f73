//! Device → gateway framing: a [`DeviceMessage`] becomes
//! `COBS(0x01 ‖ CBOR ‖ CRC-32) ‖ 0x00`, written into a caller-owned buffer.

use tributary_core::codec::frame;
use tributary_core::codec::v1::{self, DeviceMessage, MAX_DEVICE_MESSAGE};

/// Bytes a framed device message can take: the largest message plus COBS
/// overhead, CRC and delimiter.
pub const MAX_FRAME: usize = frame::max_encoded_len(MAX_DEVICE_MESSAGE);

/// The buffer given was too small for the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameTooLarge;

/// Encodes `msg` as one UART frame into `out`; returns its length.
pub fn encode_frame(
    msg: &DeviceMessage,
    out: &mut [u8; MAX_FRAME],
) -> Result<usize, FrameTooLarge> {
    let mut body = [0u8; MAX_DEVICE_MESSAGE];
    let len = v1::encode_device(msg, &mut body).map_err(|_| FrameTooLarge)?;
    let payload = body.get(..len).ok_or(FrameTooLarge)?;
    frame::encode(payload, out).map_err(|_| FrameTooLarge)
}
