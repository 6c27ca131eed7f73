//! Identifiers and time units: one type per concept, used by every crate.
//!
//! ```
//! use tributary_core::ids::{Bucket, Resolution, Timestamp};
//!
//! let t = Timestamp::from_millis(90_500); // 1 min 30.5 s after the epoch
//! let b = Bucket::containing(t, Resolution::Minute);
//! assert_eq!(b.index(), 1);
//! assert_eq!(b.start(Resolution::Minute), Timestamp::from_millis(60_000));
//! assert_eq!(b.to_coarser(Resolution::Minute, Resolution::Hour), Some(Bucket::new(0)));
//! ```

use core::fmt;

/// A replica that writes: a device gateway or a hub. It is the CRDT actor,
/// the single writer of its own entries, and the final tie-break of every
/// ordering, so two replicas must never share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[derive(minicbor::Encode, minicbor::Decode, minicbor::CborLen)]
#[cbor(transparent)]
pub struct NodeId(#[n(0)] pub u64);

impl fmt::Display for NodeId {
    /// Sixteen lowercase hex digits, as an EUI-64: fixed width, so topic
    /// names sort and compare as the ids do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl core::str::FromStr for NodeId {
    type Err = ParseIdError;
    /// Parses the sixteen-hex-digit form written by `Display`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseIdError);
        }
        u64::from_str_radix(s, 16)
            .map(NodeId)
            .map_err(|_| ParseIdError)
    }
}

/// The text was not a node id (1 to 16 hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a node id: expected 1 to 16 hex digits")]
pub struct ParseIdError;

/// One measured quantity on one device (a channel), unique within a fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[derive(minicbor::Encode, minicbor::Decode, minicbor::CborLen)]
#[cbor(transparent)]
pub struct SensorId(#[n(0)] pub u32);

impl fmt::Display for SensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A device (a microcontroller behind a gateway). Not a CRDT actor: its
/// gateway writes on its behalf, so it needs no global uniqueness beyond
/// the gateway's own devices, but a 64-bit id lets it be a MAC or EUI-64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[derive(minicbor::Encode, minicbor::Decode, minicbor::CborLen)]
#[cbor(transparent)]
pub struct DeviceId(#[n(0)] pub u64);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Milliseconds since the Unix epoch (UTC), as read by the caller's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[derive(minicbor::Encode, minicbor::Decode, minicbor::CborLen)]
#[cbor(transparent)]
pub struct Timestamp(#[n(0)] pub u64);

impl Timestamp {
    /// The timestamp `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }
    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }
}

/// The width of an aggregation bucket. Each is a whole multiple of the
/// finer one, so buckets nest and roll up exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[derive(minicbor::Encode, minicbor::Decode, minicbor::CborLen)]
#[cbor(index_only)]
pub enum Resolution {
    /// One second.
    #[n(0)]
    Second,
    /// One minute.
    #[n(1)]
    Minute,
    /// One hour.
    #[n(2)]
    Hour,
    /// One day (UTC; no time zones, no leap seconds: Unix time).
    #[n(3)]
    Day,
}

impl Resolution {
    /// Every resolution, finest first.
    pub const ALL: [Resolution; 4] = [
        Resolution::Second,
        Resolution::Minute,
        Resolution::Hour,
        Resolution::Day,
    ];

    /// The bucket width in milliseconds.
    pub const fn millis(self) -> u64 {
        match self {
            Resolution::Second => 1_000,
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
            Resolution::Day => 86_400_000,
        }
    }

    /// The next coarser resolution, if any.
    pub const fn coarser(self) -> Option<Resolution> {
        match self {
            Resolution::Second => Some(Resolution::Minute),
            Resolution::Minute => Some(Resolution::Hour),
            Resolution::Hour => Some(Resolution::Day),
            Resolution::Day => None,
        }
    }

    /// A short stable name (`1s`, `1m`, `1h`, `1d`) for APIs and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Resolution::Second => "1s",
            Resolution::Minute => "1m",
            Resolution::Hour => "1h",
            Resolution::Day => "1d",
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for Resolution {
    type Err = ParseResolutionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resolution::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(ParseResolutionError)
    }
}

/// The text was not one of `1s`, `1m`, `1h`, `1d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a resolution: expected 1s, 1m, 1h or 1d")]
pub struct ParseResolutionError;

/// A bucket: the index of a time slot at some resolution, counted from the
/// epoch (`start = index × width`). It is meaningful only next to its
/// [`Resolution`]; storing the index rather than a start time keeps it small
/// on the wire (a minute index fits in 4 bytes of CBOR until 10136).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[derive(minicbor::Encode, minicbor::Decode, minicbor::CborLen)]
#[cbor(transparent)]
pub struct Bucket(#[n(0)] pub u64);

impl Bucket {
    /// The bucket with this index.
    pub const fn new(index: u64) -> Self {
        Bucket(index)
    }
    /// The bucket of `resolution` that contains `t`.
    pub const fn containing(t: Timestamp, resolution: Resolution) -> Self {
        Bucket(t.0 / resolution.millis())
    }
    /// Its index.
    pub const fn index(self) -> u64 {
        self.0
    }
    /// The first millisecond of this bucket at `resolution`, saturating at
    /// the end of time rather than wrapping (such an index can only come
    /// from a hostile peer, and the decoder rejects it anyway).
    pub const fn start(self, resolution: Resolution) -> Timestamp {
        Timestamp(self.0.saturating_mul(resolution.millis()))
    }
    /// Whether `t` falls inside this bucket at `resolution`.
    pub const fn contains(self, resolution: Resolution, t: Timestamp) -> bool {
        t.0 / resolution.millis() == self.0
    }
    /// The bucket at the coarser resolution `to` that contains this one at
    /// `from`; `None` when `to` is finer than `from`.
    pub const fn to_coarser(self, from: Resolution, to: Resolution) -> Option<Bucket> {
        if (to as u8) < (from as u8) {
            return None;
        }
        Some(Bucket(self.0 / (to.millis() / from.millis())))
    }
    /// Whether a bucket index is representable: every millisecond of it
    /// fits in a [`Timestamp`], so times inside it can be computed without
    /// saturating. The decoder uses this to reject hostile indices.
    pub const fn is_valid(self, resolution: Resolution) -> bool {
        match self.0.checked_mul(resolution.millis()) {
            Some(start) => start.checked_add(resolution.millis() - 1).is_some(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_display_round_trips() {
        let id = NodeId(0x00ab_cdef_0123_4567);
        let s = std::format!("{id}");
        assert_eq!(s, "00abcdef01234567");
        assert_eq!(s.parse::<NodeId>(), Ok(id));
        assert_eq!("".parse::<NodeId>(), Err(ParseIdError));
        assert_eq!("0123456789abcdef0".parse::<NodeId>(), Err(ParseIdError));
        assert_eq!("+1".parse::<NodeId>(), Err(ParseIdError));
    }

    #[test]
    fn resolutions_nest() {
        for w in Resolution::ALL.windows(2) {
            assert_eq!(w[0].coarser(), Some(w[1]));
            assert_eq!(w[1].millis() % w[0].millis(), 0);
        }
        assert_eq!(Resolution::Day.coarser(), None);
        for r in Resolution::ALL {
            assert_eq!(r.as_str().parse::<Resolution>(), Ok(r));
        }
        assert!("2m".parse::<Resolution>().is_err());
    }

    #[test]
    fn buckets_roll_up() {
        let t = Timestamp(1_700_000_123_456);
        for from in Resolution::ALL {
            for to in Resolution::ALL {
                let b = Bucket::containing(t, from).to_coarser(from, to);
                if to >= from {
                    assert_eq!(b, Some(Bucket::containing(t, to)));
                } else {
                    assert_eq!(b, None);
                }
            }
            let b = Bucket::containing(t, from);
            assert!(b.contains(from, t));
            assert!(b.start(from) <= t);
            assert!(!b.contains(from, Timestamp(b.start(from).0 + from.millis())));
        }
    }

    #[test]
    fn hostile_bucket_index_is_invalid_and_saturates() {
        let b = Bucket(u64::MAX);
        assert!(!b.is_valid(Resolution::Day));
        assert!(!b.is_valid(Resolution::Second));
        // The last whole second before the end of u64 milliseconds.
        assert!(Bucket(u64::MAX / 1000 - 1).is_valid(Resolution::Second));
        assert!(!Bucket(u64::MAX / 1000).is_valid(Resolution::Second));
        assert_eq!(b.start(Resolution::Day), Timestamp(u64::MAX));
    }
}
