//! COBS + CRC-32 framing for byte streams (a UART, a TCP socket).
//!
//! A byte stream has no message boundaries and, on a UART, no integrity
//! check. This module adds both around an opaque payload (in practice a
//! versioned message, `[version: u8][CBOR body]`, see [`v1`](super::v1)).
//!
//! # Format
//!
//! One frame on the wire is
//!
//! ```text
//! COBS( payload || crc32(payload) as 4 bytes little-endian ) || 0x00
//! ```
//!
//! - **COBS** (Consistent Overhead Byte Stuffing) rewrites the bytes so that
//!   `0x00` never occurs inside a frame; a single `0x00` then ends it. A
//!   receiver that joins mid-stream, loses bytes, or sees line noise only has
//!   to wait for the next `0x00` to be back in step, with no length field that
//!   a single corrupted byte could turn into a long wrong read. The cost is
//!   bounded: at most one byte per 254 (plus one), see [`max_encoded_len`].
//! - **CRC-32/ISO-HDLC** (the zlib/Ethernet polynomial) over the payload
//!   catches what COBS cannot: UART bit errors and dropped bytes inside a
//!   frame that still decode to plausible COBS. It detects every burst of up
//!   to 32 bits and all but ~2⁻³² of other corruptions.
//!
//! # Decoding
//!
//! [`FrameDecoder`] takes bytes as they arrive, in chunks of any size, and
//! uses only its fixed buffer of `N` payload bytes: a hostile or noisy stream
//! cannot make it allocate or grow. [`FrameDecoder::feed`] returns `None`
//! when it needs more bytes (the stream's "incomplete"), `Some(Ok(payload))`
//! for each good frame, and `Some(Err(_))` once per rejected frame (the
//! "malformed, drop and count"); [`FrameError::reason`] is the metric label.
//! After any rejection the decoder is back in step at the next `0x00`.
//!
//! Consecutive `0x00` bytes (empty frames) are skipped silently: senders
//! commonly write a lone `0x00` before a frame to flush whatever partial frame
//! a receiver holds after a reset, and counting those as errors would make
//! the rejection metric useless. A frame that has content but decodes to
//! fewer than 5 bytes is an error ([`FrameError::TooShort`]).
//!
//! Payloads are never empty (a message starts with its version byte), and
//! the format forbids empty ones on purpose: the CRC-32 of nothing is
//! `00 00 00 00`, so a payload starting with four zero bytes, cut after them
//! by a single flipped bit (a `0x01` code byte becoming the delimiter), would
//! otherwise arrive as a valid empty frame.
//!
//! # Example
//!
//! ```
//! use tributary_core::codec::frame::{encode, max_encoded_len, FrameDecoder};
//!
//! let mut wire = [0u8; 2 * max_encoded_len(5)];
//! let a = encode(b"hello", &mut wire)?;
//! let b = encode(b"world", &mut wire[a..])?;
//! let stream = &wire[..a + b];
//!
//! // Bytes arrive in arbitrary pieces; payloads come out whole.
//! let mut decoder = FrameDecoder::<64>::new();
//! let mut got = 0;
//! for chunk in stream.chunks(3) {
//!     let mut input = chunk;
//!     while let Some(frame) = decoder.feed(&mut input) {
//!         let payload = frame?;
//!         assert_eq!(payload, if got == 0 { &b"hello"[..] } else { &b"world"[..] });
//!         got += 1;
//!     }
//! }
//! assert_eq!(got, 2);
//! # Ok::<(), tributary_core::codec::frame::FrameError>(())
//! ```

use core::fmt;

use cobs::{DecodeResult, DecoderState};
use crc::{CRC_32_ISO_HDLC, Crc};

/// The byte that ends every frame and never occurs inside one.
pub const DELIMITER: u8 = 0x00;

/// Bytes of CRC-32 after the payload, inside the COBS encoding.
pub const CRC_LEN: usize = 4;

/// The default largest payload a [`FrameDecoder`] accepts, in bytes.
///
/// Twice the largest device message
/// ([`v1::MAX_DEVICE_MESSAGE`](super::v1::MAX_DEVICE_MESSAGE)), so a gateway
/// keeps accepting devices whose firmware allows larger messages later, at
/// about 1 KiB of RAM. A microcontroller short of RAM picks a smaller `N`;
/// senders must not exceed the receiver's.
pub const MAX_FRAME_PAYLOAD: usize = 1024;

/// The CRC-32/ISO-HDLC (zlib, Ethernet) checksum over each payload.
pub const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// COBS adds one code byte per started run of 254 non-zero bytes.
const COBS_RUN: usize = 254;

/// The largest frame, delimiter included, that [`encode`] writes for a
/// payload of `payload_len` bytes: the size to give its output buffer.
///
/// Saturates instead of overflowing, so absurd lengths give `usize::MAX`.
pub const fn max_encoded_len(payload_len: usize) -> usize {
    let body = payload_len.saturating_add(CRC_LEN);
    // `body` is never empty, so COBS needs ceil(body / 254) code bytes.
    body.saturating_add(body.div_ceil(COBS_RUN))
        .saturating_add(1)
}

/// Why a frame could not be encoded or was rejected by the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame's payload exceeds the decoder's capacity. The decoder drops
    /// everything up to the next delimiter.
    #[error("frame payload exceeds {max} bytes")]
    TooLong {
        /// The decoder's capacity in payload bytes.
        max: usize,
    },
    /// The delimiter arrived in the middle of a COBS run: a cut or corrupted
    /// frame.
    #[error("invalid COBS encoding")]
    BadCobs,
    /// The frame decoded to fewer than 5 bytes: no room for a non-empty
    /// payload and its CRC.
    #[error("frame of {len} bytes is too short to hold a payload and a CRC-32")]
    TooShort {
        /// Bytes decoded from the frame.
        len: usize,
    },
    /// The CRC-32 carried by the frame does not match its payload.
    #[error("CRC-32 mismatch: frame carries {received:#010x}, payload hashes to {computed:#010x}")]
    CrcMismatch {
        /// The CRC-32 received with the frame.
        received: u32,
        /// The CRC-32 computed over the received payload.
        computed: u32,
    },
    /// [`encode`] was given an empty payload, which the format forbids.
    #[error("empty payload")]
    EmptyPayload,
    /// The output buffer given to [`encode`] cannot hold the frame.
    #[error("output buffer of {available} bytes is too small for the frame")]
    OutputTooSmall {
        /// Bytes available in the output buffer.
        available: usize,
    },
}

impl FrameError {
    /// A stable snake_case label for metrics
    /// (`tributary_frames_rejected_total{reason}`); never renamed.
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::TooLong { .. } => "frame_too_long",
            FrameError::BadCobs => "bad_cobs",
            FrameError::TooShort { .. } => "frame_too_short",
            FrameError::CrcMismatch { .. } => "crc_mismatch",
            FrameError::EmptyPayload => "empty_payload",
            FrameError::OutputTooSmall { .. } => "output_too_small",
        }
    }
}

/// Writes the frame for `payload`, delimiter included, at the start of `out`
/// and returns its length.
///
/// `out` of [`max_encoded_len`]`(payload.len())` bytes always suffices; a
/// smaller one works when the payload's actual encoding fits, and otherwise
/// gives [`FrameError::OutputTooSmall`] with `out`'s content unspecified.
/// An empty payload is [`FrameError::EmptyPayload`].
pub fn encode(payload: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    if payload.is_empty() {
        return Err(FrameError::EmptyPayload);
    }
    let too_small = FrameError::OutputTooSmall {
        available: out.len(),
    };
    let Some((delimiter, body)) = out.split_last_mut() else {
        return Err(too_small);
    };
    let crc = CRC32.checksum(payload).to_le_bytes();
    let body_len = body.len();
    let mut encoder = cobs::CobsEncoder::new(body);
    encoder.push(payload).map_err(|_| too_small)?;
    encoder.push(&crc).map_err(|_| too_small)?;
    let len = encoder.finalize();
    // cobs 0.5 can report a length past the buffer when the trailing code
    // byte did not fit, so the returned length is checked, not trusted.
    let slot = match body.get_mut(len) {
        Some(slot) => slot,
        None if len == body_len => delimiter,
        None => return Err(too_small),
    };
    *slot = DELIMITER;
    len.checked_add(1).ok_or(too_small)
}

/// The frame for `payload`, delimiter included, in a new vector.
///
/// Fails only for an empty payload ([`FrameError::EmptyPayload`]).
#[cfg(feature = "alloc")]
pub fn encode_to_vec(payload: &[u8]) -> Result<alloc::vec::Vec<u8>, FrameError> {
    let mut out = alloc::vec![0; max_encoded_len(payload.len())];
    let len = encode(payload, &mut out)?;
    out.truncate(len);
    Ok(out)
}

/// A streaming frame decoder with a fixed buffer for payloads of up to `N`
/// bytes (plus a 4-byte CRC window); see the [module docs](self).
///
/// It never allocates and never reads outside its buffer, whatever the input.
/// `FrameDecoder` alone (no `N`) is `FrameDecoder<MAX_FRAME_PAYLOAD>`.
pub struct FrameDecoder<const N: usize = MAX_FRAME_PAYLOAD> {
    buf: [u8; N],
    /// Payload bytes in `buf`.
    len: usize,
    /// The last (up to) four decoded bytes, newest in the high byte. They are
    /// held back from `buf` because until the delimiter arrives any of them
    /// may belong to the CRC rather than the payload.
    window: u32,
    /// Bytes in `window`, at most `CRC_LEN`.
    window_len: usize,
    cobs: DecoderState,
    /// After an overlong frame: drop bytes up to the next delimiter.
    discarding: bool,
}

/// What one input byte completed, before it is turned into a borrow of the
/// buffer (kept separate so `feed` can loop without holding that borrow).
enum Step {
    Frame(usize),
    Rejected(FrameError),
}

impl<const N: usize> FrameDecoder<N> {
    /// The largest payload this decoder accepts, in bytes.
    pub const MAX_PAYLOAD: usize = N;

    /// A decoder waiting for the start of a frame.
    pub const fn new() -> Self {
        FrameDecoder {
            buf: [0; N],
            len: 0,
            window: 0,
            window_len: 0,
            cobs: DecoderState::Idle,
            discarding: false,
        }
    }

    /// Drops any partial frame, as after a reconnect.
    pub fn reset(&mut self) {
        self.clear();
        self.cobs = DecoderState::Idle;
        self.discarding = false;
    }

    /// Consumes bytes from the front of `input` until a frame completes or
    /// `input` is empty, advancing `input` past what it consumed.
    ///
    /// Returns `None` when `input` is used up without completing a frame
    /// (feed more bytes later), `Some(Ok(payload))` for a good frame and
    /// `Some(Err(_))` for a rejected one. Call it in a loop until `None` to
    /// get every frame of a chunk. The payload borrows the decoder's buffer
    /// and is valid until the next call.
    pub fn feed(&mut self, input: &mut &[u8]) -> Option<Result<&[u8], FrameError>> {
        while let Some((&byte, rest)) = input.split_first() {
            *input = rest;
            if let Some(step) = self.step(byte) {
                return Some(self.finish(step));
            }
        }
        None
    }

    /// Consumes one byte, as from a UART receive interrupt; returns what
    /// [`feed`](Self::feed) would for a one-byte input.
    pub fn feed_byte(&mut self, byte: u8) -> Option<Result<&[u8], FrameError>> {
        let step = self.step(byte)?;
        Some(self.finish(step))
    }

    fn step(&mut self, byte: u8) -> Option<Step> {
        if self.discarding {
            self.discarding = byte != DELIMITER;
            return None;
        }
        match self.cobs.feed(byte) {
            // The only COBS error is a delimiter inside a run, and it leaves
            // the COBS state idle: the delimiter is consumed as a frame end,
            // so the decoder is in step again.
            Err(_) => {
                self.clear();
                Some(Step::Rejected(FrameError::BadCobs))
            }
            // A code byte, or a delimiter with no frame open: an empty frame,
            // skipped silently.
            Ok(DecodeResult::NoData) => None,
            Ok(DecodeResult::DataStart) => {
                self.clear();
                None
            }
            Ok(DecodeResult::DataContinue(decoded)) => match self.push(decoded) {
                Ok(()) => None,
                Err(e) => {
                    // `byte` is not a delimiter (COBS emits data only for
                    // non-zero input), so the rest of this frame is skipped.
                    self.clear();
                    self.cobs = DecoderState::Idle;
                    self.discarding = true;
                    Some(Step::Rejected(e))
                }
            },
            Ok(DecodeResult::DataComplete) => Some(self.complete()),
        }
    }

    /// Appends one decoded byte; the byte leaving the CRC window joins the
    /// payload.
    fn push(&mut self, decoded: u8) -> Result<(), FrameError> {
        if self.window_len == CRC_LEN {
            let [oldest, ..] = self.window.to_le_bytes();
            let slot = self
                .buf
                .get_mut(self.len)
                .ok_or(FrameError::TooLong { max: N })?;
            *slot = oldest;
            self.len = self.len.saturating_add(1);
        } else {
            self.window_len = self.window_len.saturating_add(1);
        }
        self.window = (self.window >> 8) | (u32::from(decoded) << 24);
        Ok(())
    }

    fn complete(&mut self) -> Step {
        let (len, window_len, received) = (self.len, self.window_len, self.window);
        self.clear();
        if window_len < CRC_LEN || len == 0 {
            return Step::Rejected(FrameError::TooShort {
                len: len.saturating_add(window_len),
            });
        }
        // With the window full, it holds exactly the four bytes before the
        // delimiter: the little-endian CRC.
        let Some(payload) = self.buf.get(..len) else {
            return Step::Rejected(FrameError::TooLong { max: N });
        };
        let computed = CRC32.checksum(payload);
        if computed == received {
            Step::Frame(len)
        } else {
            Step::Rejected(FrameError::CrcMismatch { received, computed })
        }
    }

    fn finish(&self, step: Step) -> Result<&[u8], FrameError> {
        match step {
            Step::Frame(len) => self.buf.get(..len).ok_or(FrameError::TooLong { max: N }),
            Step::Rejected(e) => Err(e),
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.window = 0;
        self.window_len = 0;
    }
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

// Manual so that debugging output shows the state, not N buffer bytes.
impl<const N: usize> fmt::Debug for FrameDecoder<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("capacity", &N)
            .field("buffered", &self.len.saturating_add(self.window_len))
            .field("cobs", &self.cobs)
            .field("discarding", &self.discarding)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// Everything a decoder yields for `stream`, fed in pieces of `chunk`
    /// bytes (0 = all at once).
    fn decode_all<const N: usize>(
        decoder: &mut FrameDecoder<N>,
        stream: &[u8],
        chunk: usize,
    ) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut out = Vec::new();
        let size = if chunk == 0 {
            stream.len().max(1)
        } else {
            chunk
        };
        for piece in stream.chunks(size) {
            let mut input = piece;
            while let Some(frame) = decoder.feed(&mut input) {
                out.push(frame.map(<[u8]>::to_vec));
            }
        }
        out
    }

    fn oks(results: &[Result<Vec<u8>, FrameError>]) -> Vec<Vec<u8>> {
        results.iter().filter_map(|r| r.clone().ok()).collect()
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = std::vec![0; max_encoded_len(payload.len())];
        let len = encode(payload, &mut out).unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn round_trip() {
        for payload in [&b"\x01"[..], b"\x00\x00", b"hello\x00world", &[0xFF; 600]] {
            let wire = frame(payload);
            assert_eq!(wire.last(), Some(&DELIMITER));
            assert!(!wire[..wire.len() - 1].contains(&DELIMITER));
            let mut decoder = FrameDecoder::<600>::new();
            assert_eq!(decode_all(&mut decoder, &wire, 0), [Ok(payload.to_vec())]);
        }
    }

    #[test]
    fn golden_frame() {
        // "123456789" is the CRC catalogue's check input: its CRC-32 is
        // 0xCBF43926, carried little-endian; no zero byte, so one COBS run.
        let wire = frame(b"123456789");
        let mut expected = std::vec![0x0E];
        expected.extend_from_slice(b"123456789");
        expected.extend_from_slice(&[0x26, 0x39, 0xF4, 0xCB, 0x00]);
        assert_eq!(wire, expected);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn encode_to_vec_matches_encode() {
        assert_eq!(encode_to_vec(b"abc\x00"), Ok(frame(b"abc\x00")));
        assert_eq!(encode_to_vec(b""), Err(FrameError::EmptyPayload));
    }

    #[test]
    fn encode_into_too_small_buffer_is_an_error() {
        for payload in [&b"x"[..], b"abc\x00", &[7; 300]] {
            let needed = frame(payload).len();
            for size in 0..needed {
                let mut out = std::vec![0xAA; size];
                assert_eq!(
                    encode(payload, &mut out),
                    Err(FrameError::OutputTooSmall { available: size }),
                    "payload of {} bytes into {size}",
                    payload.len()
                );
            }
            let mut exact = std::vec![0; needed];
            assert_eq!(encode(payload, &mut exact), Ok(needed));
            assert_eq!(exact, frame(payload));
        }
    }

    #[test]
    fn empty_frames_are_skipped_silently() {
        let mut stream = std::vec![0, 0, 0];
        stream.extend(frame(b"a"));
        stream.extend([0, 0]);
        stream.extend(frame(b"b"));
        let mut decoder = FrameDecoder::<8>::new();
        assert_eq!(
            decode_all(&mut decoder, &stream, 1),
            [Ok(b"a".to_vec()), Ok(b"b".to_vec())]
        );
    }

    #[test]
    fn too_short_frames_are_rejected() {
        let mut decoder = FrameDecoder::<8>::new();
        // COBS of "", "\x00", "ab", "abc": each short of a CRC; then an empty
        // payload whose CRC (of nothing) is correct: still refused.
        for (wire, len) in [
            (&[0x01, 0x00][..], 0),
            (&[0x01, 0x01, 0x00], 1),
            (&[0x03, b'a', b'b', 0x00], 2),
            (&[0x04, b'a', b'b', b'c', 0x00], 3),
            (&[0x01, 0x01, 0x01, 0x01, 0x01, 0x00], 4),
        ] {
            assert_eq!(
                decode_all(&mut decoder, wire, 0),
                [Err(FrameError::TooShort { len })]
            );
        }
    }

    #[test]
    fn corrupted_crc_is_a_mismatch() {
        let mut wire = frame(b"payload");
        wire[3] ^= 0x10;
        let mut decoder = FrameDecoder::<8>::new();
        let results = decode_all(&mut decoder, &wire, 0);
        assert!(
            matches!(results[..], [Err(FrameError::CrcMismatch { .. })]),
            "{results:?}"
        );
    }

    #[test]
    fn delimiter_inside_a_run_is_bad_cobs() {
        let mut decoder = FrameDecoder::<8>::new();
        assert_eq!(
            decode_all(&mut decoder, &[0x05, 1, 2, 0x00], 0),
            [Err(FrameError::BadCobs)]
        );
    }

    #[test]
    fn oversized_frame_is_too_long_then_next_frame_decodes() {
        let mut decoder = FrameDecoder::<16>::new();
        let mut stream = frame(&[0x42; 17]);
        stream.extend(frame(&[0x43; 16]));
        // A run with no delimiter for far longer than the buffer.
        stream.extend([0x11; 5000]);
        stream.push(0);
        stream.extend(frame(b"after"));
        for chunk in [0, 1, 7] {
            assert_eq!(
                decode_all(&mut decoder, &stream, chunk),
                [
                    Err(FrameError::TooLong { max: 16 }),
                    Ok(std::vec![0x43; 16]),
                    Err(FrameError::TooLong { max: 16 }),
                    Ok(b"after".to_vec()),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn empty_payload_is_refused_by_the_encoder() {
        let mut out = [0; 16];
        assert_eq!(encode(b"", &mut out), Err(FrameError::EmptyPayload));
    }

    #[test]
    fn cut_at_every_offset_never_yields_a_wrong_payload() {
        let payload: Vec<u8> = (0..=255u8).chain(0..40).collect();
        let wire = frame(&payload);
        let mut decoder = FrameDecoder::<300>::new();
        for cut in 0..wire.len() {
            // A prefix alone is incomplete: nothing comes out yet.
            assert_eq!(decode_all(&mut decoder, &wire[..cut], 0), []);
            // The line drops (a 0x00 from the sender's restart), then the
            // frame is sent again whole.
            let mut rest = std::vec![DELIMITER];
            rest.extend_from_slice(&wire);
            let results = decode_all(&mut decoder, &rest, 0);
            let (last, before) = results.split_last().unwrap();
            assert_eq!(last, &Ok(payload.clone()), "cut at {cut}");
            // Only the whole frame minus its delimiter can complete as good.
            let complete = cut == wire.len() - 1;
            assert_eq!(before.len(), usize::from(cut > 0), "cut at {cut}");
            for r in before {
                assert!(
                    r.is_err() || (complete && r == &Ok(payload.clone())),
                    "cut at {cut}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn cut_frame_followed_directly_by_frames_resynchronises() {
        let first = frame(b"first frame, cut short");
        let mut decoder = FrameDecoder::<64>::new();
        for cut in 1..first.len() - 1 {
            let mut stream = first[..cut].to_vec();
            stream.extend(frame(b"swallowed"));
            stream.extend(frame(b"kept"));
            let results = decode_all(&mut decoder, &stream, 0);
            // The cut frame runs into the next one up to its delimiter; that
            // merged frame is rejected and the one after decodes.
            assert_eq!(oks(&results), [b"kept".to_vec()], "cut at {cut}");
            assert_eq!(results.len(), 2, "cut at {cut}: {results:?}");
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let payloads: [Vec<u8>; 4] = [
            b"\x01".to_vec(),
            b"\x01{\"t\":21.5}".to_vec(),
            (0..=255u8).collect(),
            std::vec![0; 40],
        ];
        for payload in payloads {
            let wire = frame(&payload);
            for bit in 0..wire.len() * 8 {
                let mut stream = wire.clone();
                stream[bit / 8] ^= 1 << (bit % 8);
                // If the flip hit the delimiter, this 0x00 ends the frame.
                stream.push(DELIMITER);
                stream.extend(frame(b"next"));
                let mut decoder = FrameDecoder::<300>::new();
                let results = decode_all(&mut decoder, &stream, 0);
                let (last, corrupted) = results.split_last().unwrap();
                assert_eq!(last, &Ok(b"next".to_vec()), "bit {bit}");
                assert!(
                    !corrupted.is_empty() && corrupted.iter().all(Result::is_err),
                    "bit {bit} of a {}-byte payload went undetected: {corrupted:?}",
                    payload.len()
                );
            }
        }
    }

    #[test]
    fn reset_drops_a_partial_frame() {
        let wire = frame(b"abcdef");
        let mut decoder = FrameDecoder::<8>::new();
        assert_eq!(decode_all(&mut decoder, &wire[..4], 0), []);
        decoder.reset();
        assert_eq!(decode_all(&mut decoder, &wire, 0), [Ok(b"abcdef".to_vec())]);
    }

    #[test]
    fn feed_byte_matches_feed() {
        let mut stream = frame(b"one");
        stream.extend([9, 9, 0]);
        stream.extend(frame(b"two"));
        let mut decoder = FrameDecoder::<8>::new();
        let mut by_byte = Vec::new();
        for &b in &stream {
            if let Some(r) = decoder.feed_byte(b) {
                by_byte.push(r.map(<[u8]>::to_vec));
            }
        }
        assert_eq!(
            by_byte,
            decode_all(&mut FrameDecoder::<8>::new(), &stream, 0)
        );
    }

    // The default decoder must take every device message a UART carries.
    const _: () = assert!(MAX_FRAME_PAYLOAD >= crate::codec::v1::MAX_DEVICE_MESSAGE);

    #[test]
    fn reasons_are_stable_labels() {
        let cases = [
            (FrameError::TooLong { max: 1 }, "frame_too_long"),
            (FrameError::BadCobs, "bad_cobs"),
            (FrameError::TooShort { len: 1 }, "frame_too_short"),
            (
                FrameError::CrcMismatch {
                    received: 1,
                    computed: 2,
                },
                "crc_mismatch",
            ),
            (FrameError::EmptyPayload, "empty_payload"),
            (
                FrameError::OutputTooSmall { available: 0 },
                "output_too_small",
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(error.reason(), reason);
        }
    }

    const CAP: usize = 300;

    /// Bytes that are not a frame, then the delimiter that ends them.
    fn garbage() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            // Noise without zeros, then the delimiter.
            proptest::collection::vec(1u8..=255, 0..400),
            // Anything at all (zeros included), then the delimiter.
            proptest::collection::vec(any::<u8>(), 0..400),
        ]
        .prop_map(|mut g| {
            g.push(DELIMITER);
            g
        })
    }

    proptest! {
        #[test]
        fn frames_survive_garbage_and_any_chunking(
            items in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 1..=CAP), proptest::option::of(garbage())),
                1..12,
            ),
            chunk in 0usize..40,
        ) {
            let mut stream = Vec::new();
            let mut payloads = Vec::new();
            for (payload, noise) in &items {
                if let Some(noise) = noise {
                    stream.extend_from_slice(noise);
                }
                let wire = frame(payload);
                prop_assert!(wire.len() <= max_encoded_len(payload.len()));
                stream.extend(wire);
                payloads.push(payload.clone());
            }
            let mut decoder = FrameDecoder::<CAP>::new();
            let results = decode_all(&mut decoder, &stream, chunk);
            prop_assert_eq!(oks(&results), payloads);
        }

        #[test]
        fn random_bytes_never_panic_and_resynchronise(
            noise in proptest::collection::vec(any::<u8>(), 0..3000),
            chunk in 0usize..64,
        ) {
            let mut stream = noise;
            stream.push(DELIMITER);
            stream.extend(frame(b"good"));
            let mut decoder = FrameDecoder::<64>::new();
            let results = decode_all(&mut decoder, &stream, chunk);
            prop_assert_eq!(results.last(), Some(&Ok(b"good".to_vec())));
        }

        #[test]
        fn any_output_buffer_size_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 1..600),
            size in 0usize..700,
        ) {
            let mut out = std::vec![0; size];
            match encode(&payload, &mut out) {
                Ok(len) => {
                    let mut decoder = FrameDecoder::<600>::new();
                    prop_assert_eq!(decode_all(&mut decoder, &out[..len], 0), [Ok(payload)]);
                }
                Err(e) => {
                    prop_assert_eq!(e, FrameError::OutputTooSmall { available: size });
                    prop_assert!(size < max_encoded_len(payload.len()));
                }
            }
        }
    }
}
