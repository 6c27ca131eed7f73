//! Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).
//!
//! An [`Hlc`] packs 48 bits of physical milliseconds (enough until the year
//! 10889) and a 16-bit logical counter into one `u64`, so it orders as an
//! integer and costs at most 9 bytes on the wire. It stays close to wall time
//! but never goes backwards, even when the wall clock does, and it respects
//! causality: a stamp observed from a peer is always below the next local one.
//!
//! A [`Stamp`] adds the writing node as the final tie-break, so two writes
//! are never "equal": last-writer-wins needs a total order, otherwise each
//! replica would keep its own value and they would diverge.
//!
//! A peer whose clock runs far ahead must not drag every replica's clock into
//! the future (after which local writes would lose to stale ones for as long
//! as the skew lasts), so [`HlcClock::observe`] rejects stamps more than
//! `max_forward_ms` ahead of the local wall clock instead of jumping.
//!
//! ```
//! use tributary_core::hlc::{Hlc, HlcClock, HlcError};
//!
//! let mut clock = HlcClock::new(5_000);
//! let a = clock.tick(1_000).unwrap();
//! let b = clock.tick(999).unwrap(); // the wall clock stepped back
//! assert!(b > a);
//! let remote = Hlc::new(2_000, 7).unwrap();
//! let c = clock.observe(remote, 1_001).unwrap();
//! assert!(c > remote && c > b);
//! // A peer an hour ahead is refused, and the clock is unchanged.
//! let far = Hlc::new(3_600_000, 0).unwrap();
//! assert!(matches!(clock.observe(far, 1_002), Err(HlcError::RemoteTooFarAhead { .. })));
//! assert_eq!(clock.last(), c);
//! ```

use crate::ids::NodeId;

/// Largest physical time an [`Hlc`] can hold, in ms since the epoch.
pub const MAX_PHYSICAL_MS: u64 = (1 << 48) - 1;

/// A hybrid logical clock reading: physical ms (high 48 bits) and a logical
/// counter (low 16 bits). Ordered as the packed integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[derive(minicbor::Encode, minicbor::Decode, minicbor::CborLen)]
#[cbor(transparent)]
pub struct Hlc(#[n(0)] u64);

impl Hlc {
    /// The reading `(physical_ms, logical)`; `None` if `physical_ms` needs
    /// more than 48 bits.
    pub const fn new(physical_ms: u64, logical: u16) -> Option<Hlc> {
        if physical_ms > MAX_PHYSICAL_MS {
            return None;
        }
        Some(Hlc((physical_ms << 16) | logical as u64))
    }
    /// Rebuilds a reading from its packed form (as stored or sent).
    pub const fn from_u64(packed: u64) -> Hlc {
        Hlc(packed)
    }
    /// The packed form.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// Physical milliseconds since the epoch.
    pub const fn physical_ms(self) -> u64 {
        self.0 >> 16
    }
    /// Logical counter within that millisecond.
    pub const fn logical(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
    /// The next reading after `self`: one more logical tick, carrying into
    /// the physical part when 65 536 events share a millisecond (the clock
    /// then runs at most that far ahead, and catches up as wall time passes).
    const fn successor(self) -> Option<Hlc> {
        match self.0.checked_add(1) {
            Some(v) => Some(Hlc(v)),
            None => None,
        }
    }
}

/// An HLC reading plus its writer: a total order over all writes of a fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[derive(minicbor::Encode, minicbor::Decode, minicbor::CborLen)]
#[cbor(array)]
pub struct Stamp {
    /// When, by the writer's hybrid clock. Compared first.
    #[n(0)]
    pub hlc: Hlc,
    /// Who wrote; breaks ties between equal clock readings.
    #[n(1)]
    pub node: NodeId,
}

/// Why the clock refused to advance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HlcError {
    /// A remote stamp is further ahead of our wall clock than allowed.
    #[error(
        "remote clock {remote_ms} ms is more than {max_forward_ms} ms ahead of local {now_ms} ms"
    )]
    RemoteTooFarAhead {
        /// Physical part of the remote stamp.
        remote_ms: u64,
        /// Our wall clock.
        now_ms: u64,
        /// The configured tolerance.
        max_forward_ms: u64,
    },
    /// The wall clock reads beyond the 48-bit range (year 10889), or the
    /// logical counter can no longer carry.
    #[error("clock reading out of the 48-bit range")]
    OutOfRange,
}

impl HlcError {
    /// A stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HlcError::RemoteTooFarAhead { .. } => "remote_too_far_ahead",
            HlcError::OutOfRange => "out_of_range",
        }
    }
}

/// A node's hybrid logical clock. Wall time is passed in, never read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HlcClock {
    last: Hlc,
    max_forward_ms: u64,
}

impl HlcClock {
    /// A clock that refuses remote stamps more than `max_forward_ms` ahead of
    /// the local wall clock.
    pub const fn new(max_forward_ms: u64) -> Self {
        HlcClock {
            last: Hlc(0),
            max_forward_ms,
        }
    }

    /// Resumes a clock from the last reading it issued (persisted across
    /// restarts, so a node never reissues a stamp after a reboot with a
    /// clock that went backwards).
    pub const fn resume(last: Hlc, max_forward_ms: u64) -> Self {
        HlcClock {
            last,
            max_forward_ms,
        }
    }

    /// The last reading issued or observed.
    pub const fn last(&self) -> Hlc {
        self.last
    }

    /// A reading for a local event at wall time `now_ms`: strictly greater
    /// than every reading before it.
    pub fn tick(&mut self, now_ms: u64) -> Result<Hlc, HlcError> {
        let now = Hlc::new(now_ms, 0).ok_or(HlcError::OutOfRange)?;
        let next = if now > self.last {
            now
        } else {
            self.last.successor().ok_or(HlcError::OutOfRange)?
        };
        self.last = next;
        Ok(next)
    }

    /// Merges a reading received from a peer at local wall time `now_ms` and
    /// returns a reading strictly greater than both it and every local one.
    /// A reading too far ahead is refused and leaves the clock unchanged.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) -> Result<Hlc, HlcError> {
        let now = Hlc::new(now_ms, 0).ok_or(HlcError::OutOfRange)?;
        if remote.physical_ms() > now_ms.saturating_add(self.max_forward_ms) {
            return Err(HlcError::RemoteTooFarAhead {
                remote_ms: remote.physical_ms(),
                now_ms,
                max_forward_ms: self.max_forward_ms,
            });
        }
        // The packed integer order is the HLC order, so the classic case
        // analysis (which of local/remote/wall has the largest physical part,
        // and whose logical counter to bump) reduces to: wall time if it is
        // ahead of both, else one past the larger of the two readings.
        let high = if remote > self.last {
            remote
        } else {
            self.last
        };
        let next = if now > high {
            now
        } else {
            high.successor().ok_or(HlcError::OutOfRange)?
        };
        self.last = next;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn packs_physical_and_logical() {
        let h = Hlc::new(1_700_000_000_000, 42).unwrap();
        assert_eq!(h.physical_ms(), 1_700_000_000_000);
        assert_eq!(h.logical(), 42);
        assert_eq!(Hlc::from_u64(h.as_u64()), h);
        assert_eq!(Hlc::new(MAX_PHYSICAL_MS + 1, 0), None);
    }

    #[test]
    fn tick_uses_wall_time_when_it_is_ahead() {
        let mut c = HlcClock::new(1000);
        assert_eq!(c.tick(10).unwrap(), Hlc::new(10, 0).unwrap());
        assert_eq!(c.tick(10).unwrap(), Hlc::new(10, 1).unwrap());
        assert_eq!(c.tick(12).unwrap(), Hlc::new(12, 0).unwrap());
    }

    #[test]
    fn logical_overflow_carries_into_physical() {
        let mut c = HlcClock::resume(Hlc::new(10, u16::MAX).unwrap(), 1000);
        assert_eq!(c.tick(10).unwrap(), Hlc::new(11, 0).unwrap());
    }

    #[test]
    fn out_of_range_wall_clock_is_an_error() {
        let mut c = HlcClock::new(1000);
        assert_eq!(c.tick(MAX_PHYSICAL_MS + 1), Err(HlcError::OutOfRange));
        let mut c = HlcClock::resume(Hlc::from_u64(u64::MAX), 1000);
        assert_eq!(c.tick(5), Err(HlcError::OutOfRange));
    }

    #[test]
    fn observe_within_tolerance_bumps_remote() {
        let mut c = HlcClock::new(1000);
        c.tick(100).unwrap();
        let r = Hlc::new(1100, 3).unwrap();
        assert_eq!(c.observe(r, 100).unwrap(), Hlc::new(1100, 4).unwrap());
        assert_eq!(
            c.observe(Hlc::new(1101, 0).unwrap(), 100),
            Err(HlcError::RemoteTooFarAhead {
                remote_ms: 1101,
                now_ms: 100,
                max_forward_ms: 1000
            })
        );
        assert_eq!(c.last(), Hlc::new(1100, 4).unwrap());
    }

    #[test]
    fn stamps_tie_break_on_node() {
        let h = Hlc::new(5, 0).unwrap();
        let a = Stamp {
            hlc: h,
            node: NodeId(1),
        };
        let b = Stamp {
            hlc: h,
            node: NodeId(2),
        };
        assert!(a < b);
        let later = Stamp {
            hlc: Hlc::new(5, 1).unwrap(),
            node: NodeId(0),
        };
        assert!(later > b);
    }

    #[derive(Debug, Clone)]
    enum Event {
        Tick(u64),
        Observe(u64, u16, u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u64..10_000).prop_map(Event::Tick),
            (0u64..12_000, any::<u16>(), 0u64..10_000)
                .prop_map(|(p, l, n)| Event::Observe(p, l, n)),
        ]
    }

    proptest! {
        /// Whatever the wall clock does, readings strictly increase, observed
        /// readings are passed, and the clock never leaves the tolerance band
        /// above the highest wall time it has seen.
        #[test]
        fn monotonic_and_causal(events in proptest::collection::vec(event(), 1..200)) {
            let max_forward = 1_000;
            let mut c = HlcClock::new(max_forward);
            let mut prev = c.last();
            let mut max_wall = 0;
            for e in events {
                match e {
                    Event::Tick(now) => {
                        max_wall = max_wall.max(now);
                        let h = c.tick(now).unwrap();
                        prop_assert!(h > prev);
                        prev = h;
                    }
                    Event::Observe(p, l, now) => {
                        max_wall = max_wall.max(now);
                        let r = Hlc::new(p, l).unwrap();
                        match c.observe(r, now) {
                            Ok(h) => {
                                prop_assert!(h > prev && h > r);
                                prev = h;
                            }
                            Err(_) => {
                                prop_assert!(p > now + max_forward);
                                prop_assert_eq!(c.last(), prev);
                            }
                        }
                    }
                }
                // Logical carries can add at most one ms per 65 536 events.
                prop_assert!(prev.physical_ms() <= max_wall + max_forward + 1);
            }
        }
    }
}
