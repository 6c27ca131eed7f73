//! Gateway → device: bytes from the UART become [`DeviceMessage`]s.
//!
//! The gateway sends only small frames (`DeviceAck`, `TimeSync`), so the
//! decoder's buffer is small; anything longer, corrupt or undecodable is
//! counted and skipped, and the decoder resynchronises at the next frame
//! delimiter.

use tributary_core::codec::frame::FrameDecoder;
use tributary_core::codec::v1::{self, DeviceMessage};

/// Largest gateway → device payload accepted (a `TimeSync` is 13 bytes).
pub const MAX_DOWNLINK_PAYLOAD: usize = 64;

/// Frame decoder for the downlink, with error counters.
#[derive(Debug, Default)]
pub struct Inbox {
    decoder: FrameDecoder<MAX_DOWNLINK_PAYLOAD>,
    /// Frames that failed framing or CRC checks.
    pub bad_frames: u32,
    /// Well-framed payloads that were not a device message.
    pub bad_messages: u32,
}

impl Inbox {
    /// An empty decoder.
    pub const fn new() -> Self {
        Inbox {
            decoder: FrameDecoder::new(),
            bad_frames: 0,
            bad_messages: 0,
        }
    }

    /// Feeds one received byte; returns a message when it completed one.
    pub fn feed(&mut self, byte: u8) -> Option<DeviceMessage> {
        match self.decoder.feed_byte(byte)? {
            Ok(payload) => match v1::decode_device(payload) {
                Ok(msg) => Some(msg),
                Err(_) => {
                    self.bad_messages = self.bad_messages.wrapping_add(1);
                    None
                }
            },
            Err(_) => {
                self.bad_frames = self.bad_frames.wrapping_add(1);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uplink::{MAX_FRAME, encode_frame};
    use tributary_core::codec::v1::{DeviceAck, TimeSync};
    use tributary_core::ids::Timestamp;

    fn frame(msg: &DeviceMessage) -> std::vec::Vec<u8> {
        let mut out = [0u8; MAX_FRAME];
        let n = encode_frame(msg, &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn decodes_frames_and_skips_garbage() {
        let ack = DeviceMessage::Ack(DeviceAck { boot: 3, upto: 9 });
        let sync = DeviceMessage::TimeSync(TimeSync {
            now: Timestamp::from_millis(1_700_000_000_000),
        });
        let mut bytes = std::vec![0x13, 0x37, 0x00];
        bytes.extend(frame(&ack));
        let mut corrupt = frame(&sync);
        corrupt[3] ^= 0x40;
        bytes.extend(corrupt);
        bytes.extend(frame(&sync));
        let mut inbox = Inbox::new();
        let got: std::vec::Vec<_> = bytes.iter().filter_map(|&b| inbox.feed(b)).collect();
        assert_eq!(got, [ack, sync]);
        assert_eq!(inbox.bad_frames, 2);
    }
}
