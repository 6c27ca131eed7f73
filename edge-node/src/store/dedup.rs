//! The anti-replay window per submission source (RFC 4303 §3.4.3): the
//! highest sequence number seen plus a bitmap of the [`WINDOW`] sequence
//! numbers at and below it. A sequence number inside the window is new
//! exactly once; one below the window is treated as a duplicate (it may or
//! may not have been seen; the window cannot tell, and applying it twice
//! would break exactly-once aggregates, so the safe answer is "seen").

use super::StoreError;

/// Sequence numbers remembered per source.
pub const WINDOW: u64 = 4096;
const WORDS: usize = (WINDOW / 64) as usize;
/// Bytes of the persisted bitmap.
pub(crate) const BLOB_LEN: usize = WORDS * 8;

/// What the window says about a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not seen before; now recorded.
    New,
    /// Seen before.
    Duplicate,
    /// Older than the window: treated as seen.
    BelowWindow,
}

/// Highest seq and a bitmap: bit `i` set means `high - i` was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplayWindow {
    high: u64,
    seen: [u64; WORDS],
}

impl ReplayWindow {
    /// A window that has seen exactly `seq`.
    pub(crate) fn first(seq: u64) -> ReplayWindow {
        let mut seen = [0; WORDS];
        seen[0] = 1;
        ReplayWindow { high: seq, seen }
    }

    /// The highest sequence number seen.
    pub(crate) fn high(&self) -> u64 {
        self.high
    }

    /// Checks `seq` and records it if new.
    pub(crate) fn check_and_set(&mut self, seq: u64) -> Verdict {
        if seq > self.high {
            self.shift(seq - self.high);
            self.high = seq;
            self.seen[0] |= 1;
            return Verdict::New;
        }
        let d = self.high - seq;
        if d >= WINDOW {
            return Verdict::BelowWindow;
        }
        let bit = 1u64 << (d % 64);
        match usize::try_from(d / 64)
            .ok()
            .and_then(|w| self.seen.get_mut(w))
        {
            Some(word) if *word & bit != 0 => Verdict::Duplicate,
            Some(word) => {
                *word |= bit;
                Verdict::New
            }
            None => Verdict::BelowWindow,
        }
    }

    /// Moves the window up by `n`: bit `i` becomes bit `i + n`.
    fn shift(&mut self, n: u64) {
        if n >= WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let words = (n / 64) as usize;
        let bits = (n % 64) as u32;
        let old = self.seen;
        let at = |i: Option<usize>| i.and_then(|i| old.get(i)).copied().unwrap_or(0);
        for (i, w) in self.seen.iter_mut().enumerate() {
            let hi = at(i.checked_sub(words));
            let lo = at(i.checked_sub(words + 1));
            *w = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }

    /// The bitmap as stored in `source.seen` (little-endian words).
    pub(crate) fn to_blob(&self) -> Vec<u8> {
        self.seen.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Reads a stored window back.
    pub(crate) fn from_parts(high: u64, blob: &[u8]) -> Result<ReplayWindow, StoreError> {
        if blob.len() != BLOB_LEN {
            return Err(StoreError::Corrupt("source window length"));
        }
        let mut seen = [0; WORDS];
        for (w, chunk) in seen.iter_mut().zip(blob.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Ok(ReplayWindow { high, seen })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn in_window_out_of_order_is_new_once() {
        let mut w = ReplayWindow::first(10);
        assert_eq!(w.check_and_set(12), Verdict::New);
        assert_eq!(w.check_and_set(11), Verdict::New);
        assert_eq!(w.check_and_set(11), Verdict::Duplicate);
        assert_eq!(w.check_and_set(10), Verdict::Duplicate);
        assert_eq!(w.check_and_set(5), Verdict::New);
        assert_eq!(w.check_and_set(12 + WINDOW), Verdict::New);
        assert_eq!(w.check_and_set(12), Verdict::BelowWindow);
        assert_eq!(w.check_and_set(13), Verdict::New);
    }

    #[test]
    fn blob_round_trips() {
        let mut w = ReplayWindow::first(100);
        for s in [3, 99, 150, 2000, 1999] {
            w.check_and_set(s);
        }
        let back = ReplayWindow::from_parts(w.high(), &w.to_blob()).unwrap();
        assert_eq!(back, w);
        assert!(ReplayWindow::from_parts(1, &[0; 7]).is_err());
    }

    proptest! {
        // Against a set of every seq seen: inside the window the answer is
        // exact; below it, always "seen".
        #[test]
        fn matches_a_set(seqs in proptest::collection::vec(0u64..10_000, 1..300)) {
            let mut w = ReplayWindow::first(seqs[0]);
            let mut seen = HashSet::from([seqs[0]]);
            let mut high = seqs[0];
            for &s in &seqs[1..] {
                let v = w.check_and_set(s);
                if s + WINDOW <= high {
                    prop_assert_eq!(v, Verdict::BelowWindow);
                } else if seen.insert(s) {
                    prop_assert_eq!(v, Verdict::New);
                } else {
                    prop_assert_eq!(v, Verdict::Duplicate);
                }
                high = high.max(s);
            }
        }
    }
}
