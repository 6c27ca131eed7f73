//! [`Summary`]: the statistics of a window of readings, a commutative monoid.
//!
//! `{count, sum, min, max, sum_sq, first_ts, last_ts}` is enough to derive
//! mean, variance and standard deviation, and two summaries combine into the
//! summary of the union of their windows. That is what lets a gateway keep
//! one small record per (sensor, bucket) instead of every reading, lets
//! 1-second buckets roll up into minutes, hours and days, and lets the hub
//! add up nodes.
//!
//! Counts, minima, maxima and timestamps combine exactly. Floating-point
//! addition is commutative but not associative, so `sum` and `sum_sq` are
//! bit-identical across replicas only if every replica adds in the same
//! order: callers combine in a canonical order (by node id in the aggregate
//! CRDT, by bucket when rolling up).
//!
//! ```
//! use tributary_core::ids::Timestamp;
//! use tributary_core::summary::Summary;
//!
//! let mut a = Summary::EMPTY;
//! a.record(Timestamp(1_000), 20.0).unwrap();
//! a.record(Timestamp(2_000), 22.0).unwrap();
//! let b = Summary::of(Timestamp(3_000), 24.0).unwrap();
//! let ab = a.combined(&b);
//! assert_eq!(ab.count, 3);
//! assert_eq!(ab.mean(), Some(22.0));
//! assert_eq!((ab.min, ab.max), (20.0, 24.0));
//! assert_eq!(ab.first_ts, Timestamp(1_000));
//! assert!(a.record(Timestamp(4_000), f64::NAN).is_err());
//! ```

use crate::ids::{Bucket, Resolution, Timestamp};

/// Summary statistics of a set of readings. The empty summary is the
/// identity: `count == 0`, `min == +inf`, `max == -inf`,
/// `first_ts == u64::MAX`, `last_ts == 0`, sums zero.
///
/// Equality is bitwise on the floats (0.0 and -0.0 differ): replicas must
/// agree on the bits, and no NaN ever enters a summary.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Number of readings.
    pub count: u64,
    /// Sum of the readings.
    pub sum: f64,
    /// Smallest reading.
    pub min: f64,
    /// Largest reading.
    pub max: f64,
    /// Sum of the squared readings, for the variance.
    pub sum_sq: f64,
    /// Time of the earliest reading.
    pub first_ts: Timestamp,
    /// Time of the latest reading.
    pub last_ts: Timestamp,
}

/// A reading that is NaN or infinite: refused at ingest, because one such
/// value would poison every sum it enters, on every replica, forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reading is not a finite number")]
pub struct NonFinite;

impl PartialEq for Summary {
    fn eq(&self, other: &Summary) -> bool {
        self.count == other.count
            && self.sum.to_bits() == other.sum.to_bits()
            && self.min.to_bits() == other.min.to_bits()
            && self.max.to_bits() == other.max.to_bits()
            && self.sum_sq.to_bits() == other.sum_sq.to_bits()
            && self.first_ts == other.first_ts
            && self.last_ts == other.last_ts
    }
}

impl Eq for Summary {}

impl Default for Summary {
    fn default() -> Self {
        Summary::EMPTY
    }
}

impl Summary {
    /// The identity of [`combine`](Summary::combine).
    pub const EMPTY: Summary = Summary {
        count: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        sum_sq: 0.0,
        first_ts: Timestamp(u64::MAX),
        last_ts: Timestamp(0),
    };

    /// The summary of one reading.
    pub fn of(t: Timestamp, x: f64) -> Result<Summary, NonFinite> {
        let mut s = Summary::EMPTY;
        s.record(t, x)?;
        Ok(s)
    }

    /// Adds one reading. A reading whose square overflows is refused too.
    pub fn record(&mut self, t: Timestamp, x: f64) -> Result<(), NonFinite> {
        let sq = x * x;
        if !x.is_finite() || !sq.is_finite() {
            return Err(NonFinite);
        }
        self.count = self.count.saturating_add(1);
        self.sum += x;
        self.sum_sq += sq;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.first_ts = self.first_ts.min(t);
        self.last_ts = self.last_ts.max(t);
        Ok(())
    }

    /// Whether no reading was recorded.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Folds `other` into `self`: the summary of both windows.
    pub fn combine(&mut self, other: &Summary) {
        // Empty operands are skipped rather than added so that
        // `EMPTY ⊕ s` is bit-identical to `s` (0.0 + -0.0 would be +0.0).
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            *self = *other;
            return;
        }
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.first_ts = self.first_ts.min(other.first_ts);
        self.last_ts = self.last_ts.max(other.last_ts);
    }

    /// The summary of both windows, leaving the operands unchanged.
    pub fn combined(&self, other: &Summary) -> Summary {
        let mut out = *self;
        out.combine(other);
        out
    }

    /// Arithmetic mean; `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Population variance; `None` when empty. Computed as
    /// `(sum_sq − sum²/n) / n`, clamped at zero: the subtraction cancels
    /// when the spread is tiny next to the mean (readings of 10 000 ± 0.001
    /// lose about half their significant digits), an accepted cost of a
    /// representation whose merge is plain addition.
    pub fn variance(&self) -> Option<f64> {
        self.centered_sum_sq().map(|m2| m2 / self.count as f64)
    }

    /// Sample (Bessel-corrected) variance; `None` with fewer than 2 readings.
    pub fn sample_variance(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        self.centered_sum_sq()
            .map(|m2| m2 / (self.count - 1) as f64)
    }

    /// Population standard deviation; `None` when empty.
    pub fn stddev(&self) -> Option<f64> {
        self.variance().map(libm::sqrt)
    }

    fn centered_sum_sq(&self) -> Option<f64> {
        let n = self.count as f64;
        (self.count > 0).then(|| (self.sum_sq - self.sum * self.sum / n).max(0.0))
    }

    /// Checks the invariants a summary built by [`record`](Summary::record)
    /// and [`combine`](Summary::combine) always has. Decoders call this so
    /// that a peer cannot inject NaN, infinities or an impossible window.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.count == 0 {
            return if *self == Summary::EMPTY {
                Ok(())
            } else {
                Err("empty_summary_with_data")
            };
        }
        if !(self.sum.is_finite()
            && self.sum_sq.is_finite()
            && self.min.is_finite()
            && self.max.is_finite())
        {
            return Err("summary_not_finite");
        }
        if self.min > self.max || self.first_ts > self.last_ts || self.sum_sq < 0.0 {
            return Err("summary_bounds_inverted");
        }
        Ok(())
    }
}

/// Rolls fine buckets up into coarser ones: given `(bucket, summary)` pairs
/// at resolution `from`, sorted by bucket, yields one combined pair per
/// bucket at the coarser resolution `to`. Combining in bucket order is the
/// canonical order, so every replica rolls up to the same bits. Input that
/// is not sorted yields one output per run of equal coarse buckets.
///
/// ```
/// use tributary_core::ids::{Bucket, Resolution, Timestamp};
/// use tributary_core::summary::{roll_up, Summary};
///
/// let secs = (0..120u64).map(|s| {
///     let t = Timestamp(s * 1_000);
///     (Bucket::containing(t, Resolution::Second), Summary::of(t, s as f64).unwrap())
/// });
/// let minutes: Vec<_> = roll_up(Resolution::Second, Resolution::Minute, secs).collect();
/// assert_eq!(minutes.len(), 2);
/// assert_eq!(minutes[1].0, Bucket::new(1));
/// assert_eq!(minutes[1].1.count, 60);
/// assert_eq!(minutes[1].1.min, 60.0);
/// ```
pub fn roll_up<I>(from: Resolution, to: Resolution, fine: I) -> RollUp<I::IntoIter>
where
    I: IntoIterator<Item = (Bucket, Summary)>,
{
    RollUp {
        from,
        to,
        inner: fine.into_iter(),
        pending: None,
    }
}

/// Iterator returned by [`roll_up`].
#[derive(Debug)]
pub struct RollUp<I> {
    from: Resolution,
    to: Resolution,
    inner: I,
    pending: Option<(Bucket, Summary)>,
}

impl<I: Iterator<Item = (Bucket, Summary)>> Iterator for RollUp<I> {
    type Item = (Bucket, Summary);

    fn next(&mut self) -> Option<Self::Item> {
        for (b, s) in self.inner.by_ref() {
            // A `to` finer than `from` is a caller error; treat each fine
            // bucket as its own group rather than panic.
            let coarse = b.to_coarser(self.from, self.to).unwrap_or(b);
            match &mut self.pending {
                Some((pb, acc)) if *pb == coarse => acc.combine(&s),
                _ => {
                    if let Some(done) = self.pending.replace((coarse, s)) {
                        return Some(done);
                    }
                }
            }
        }
        self.pending.take()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Readings as sensors produce them: finite, mostly modest, sometimes
    /// huge or tiny, sometimes negative zero.
    pub fn reading() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => -1000.0f64..1000.0,
            1 => -1e12f64..1e12,
            1 => Just(-0.0f64),
        ]
    }

    pub fn summary() -> impl Strategy<Value = Summary> {
        proptest::collection::vec((0u64..10_000_000, reading()), 0..20).prop_map(|rs| {
            let mut s = Summary::EMPTY;
            for (t, x) in rs {
                s.record(Timestamp(t), x).unwrap();
            }
            s
        })
    }

    #[test]
    fn empty_is_identity_bitwise() {
        let s = Summary::of(Timestamp(5), -0.0).unwrap();
        assert!(Summary::EMPTY.combined(&s) == s);
        assert!(s.combined(&Summary::EMPTY) == s);
        assert!(Summary::EMPTY.validate().is_ok());
    }

    #[test]
    fn statistics() {
        let mut s = Summary::EMPTY;
        for (i, x) in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
            .into_iter()
            .enumerate()
        {
            s.record(Timestamp(i as u64), x).unwrap();
        }
        assert_eq!(s.mean(), Some(5.0));
        assert_eq!(s.variance(), Some(4.0));
        assert_eq!(s.stddev(), Some(2.0));
        assert_eq!(s.sample_variance(), Some(32.0 / 7.0));
        assert_eq!(Summary::EMPTY.mean(), None);
        assert_eq!(
            Summary::of(Timestamp(0), 1.0).unwrap().sample_variance(),
            None
        );
    }

    #[test]
    fn non_finite_and_overflowing_readings_are_refused() {
        let mut s = Summary::EMPTY;
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e200] {
            assert_eq!(s.record(Timestamp(0), x), Err(NonFinite));
        }
        assert!(s.is_empty());
    }

    #[test]
    fn validate_rejects_impossible_summaries() {
        let good = Summary::of(Timestamp(10), 1.0).unwrap();
        assert!(good.validate().is_ok());
        let cases = [
            Summary {
                sum: f64::NAN,
                ..good
            },
            Summary { min: 2.0, ..good },
            Summary {
                first_ts: Timestamp(11),
                ..good
            },
            Summary {
                sum_sq: -1.0,
                ..good
            },
            Summary { count: 0, ..good },
            Summary {
                max: f64::INFINITY,
                ..good
            },
        ];
        for c in cases {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    proptest! {
        #[test]
        fn combine_is_commutative_bitwise(a in summary(), b in summary()) {
            prop_assert_eq!(a.combined(&b), b.combined(&a));
        }

        /// Exact fields are associative; the float sums are associative up
        /// to rounding only, which is why the CRDT fixes the order.
        #[test]
        fn combine_is_associative_on_exact_fields(a in summary(), b in summary(), c in summary()) {
            let l = a.combined(&b).combined(&c);
            let r = a.combined(&b.combined(&c));
            prop_assert_eq!((l.count, l.min.to_bits(), l.max.to_bits(), l.first_ts, l.last_ts),
                            (r.count, r.min.to_bits(), r.max.to_bits(), r.first_ts, r.last_ts));
            let tol = 1e-9 * (1.0 + l.sum_sq.abs());
            prop_assert!((l.sum - r.sum).abs() <= tol);
        }

        #[test]
        fn combine_equals_recording_all(xs in proptest::collection::vec((0u64..1000, reading()), 0..40), cut in 0usize..40) {
            let cut = cut.min(xs.len());
            let mut whole = Summary::EMPTY;
            let (mut left, mut right) = (Summary::EMPTY, Summary::EMPTY);
            for (i, &(t, x)) in xs.iter().enumerate() {
                whole.record(Timestamp(t), x).unwrap();
                if i < cut { left.record(Timestamp(t), x).unwrap() } else { right.record(Timestamp(t), x).unwrap() }
            }
            let joined = left.combined(&right);
            prop_assert_eq!((joined.count, joined.min, joined.max, joined.first_ts, joined.last_ts),
                            (whole.count, whole.min, whole.max, whole.first_ts, whole.last_ts));
            prop_assert!(joined.validate().is_ok());
        }

        #[test]
        fn roll_up_matches_direct_coarse_recording(ts in proptest::collection::vec(0u64..500_000, 1..100)) {
            let mut ts = ts;
            ts.sort_unstable();
            // Fine: one summary per second bucket, then rolled up to minutes.
            let mut fine: std::vec::Vec<(Bucket, Summary)> = std::vec::Vec::new();
            for &t in &ts {
                let b = Bucket::containing(Timestamp(t), Resolution::Second);
                match fine.last_mut() {
                    Some((lb, s)) if *lb == b => s.record(Timestamp(t), 1.0).unwrap(),
                    _ => fine.push((b, Summary::of(Timestamp(t), 1.0).unwrap())),
                }
            }
            let rolled: std::vec::Vec<_> = roll_up(Resolution::Second, Resolution::Minute, fine).collect();
            let mut direct: std::vec::Vec<(Bucket, Summary)> = std::vec::Vec::new();
            for &t in &ts {
                let b = Bucket::containing(Timestamp(t), Resolution::Minute);
                match direct.last_mut() {
                    Some((lb, s)) if *lb == b => s.record(Timestamp(t), 1.0).unwrap(),
                    _ => direct.push((b, Summary::of(Timestamp(t), 1.0).unwrap())),
                }
            }
            prop_assert_eq!(rolled, direct);
        }
    }
}
