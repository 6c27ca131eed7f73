//! The wire: versioned CBOR messages ([`v1`]) and, for byte streams such as
//! a UART or a TCP socket, COBS + CRC-32 framing ([`frame`]).
//!
//! Every message is `[version: u8][CBOR body]`. A new wire version is a new
//! module beside [`v1`]; `docs/protocol.md` lists them and shows each message
//! in CDDL with a hex example.

pub mod frame;
pub mod v1;

/// Why bytes could not be decoded into a message.
///
/// `Incomplete` means "read more and try again" and only arises where the
/// input may legitimately be a prefix (a byte stream); once a whole message
/// is known to be present, running out of bytes inside it is `Malformed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// At least this many more bytes are needed.
    #[error("incomplete: need at least {0} more bytes")]
    Incomplete(usize),
    /// The bytes can never decode; drop them and count.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The leading version byte names a wire version this build cannot read.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// The message is larger than the receiver accepts.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Bytes offered.
        len: usize,
        /// Bytes accepted.
        max: usize,
    },
}

impl DecodeError {
    /// A stable label for metrics (`tributary_frames_rejected_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Incomplete(_) => "incomplete",
            DecodeError::Malformed(r) => r,
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::TooLarge { .. } => "too_large",
        }
    }
}
