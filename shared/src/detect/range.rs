//! Configured range limits.

use super::Detector;
use crate::ids::Timestamp;

/// Scores `1` (surprise `+∞`) for a sample outside `[min, max]` and `0` inside: the hard
/// limits of a sensor or a process (a thermistor's −40…125 °C, a tank that
/// cannot be more than full). Stateless apart from its configuration; the
/// default is disabled (`−∞ ..= +∞`), since no limit suits every series.
///
/// ```
/// use tributary_core::detect::{Detector, RangeLimits};
/// use tributary_core::ids::Timestamp;
///
/// let mut r = RangeLimits::new(0.0, 100.0);
/// assert_eq!(r.step(Timestamp(0), 50.0), 0.0);
/// assert_eq!(r.step(Timestamp(1), 100.5), 1.0);
/// assert_eq!(RangeLimits::default().step(Timestamp(2), 1e300), 0.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RangeLimits {
    min: f64,
    max: f64,
}

impl RangeLimits {
    /// State size in bytes (`size_of::<RangeLimits>()`).
    pub const STATE_BYTES: usize = 16;

    /// No limits: every finite sample scores 0.
    pub const DISABLED: RangeLimits = RangeLimits::new(f64::NEG_INFINITY, f64::INFINITY);

    /// Limits `min ..= max` (inclusive). A NaN bound is no bound on that side.
    pub const fn new(min: f64, max: f64) -> Self {
        RangeLimits { min, max }
    }

    /// Whether any limit is set.
    pub fn is_enabled(&self) -> bool {
        self.min > f64::NEG_INFINITY || self.max < f64::INFINITY
    }
}

impl Default for RangeLimits {
    /// [`RangeLimits::DISABLED`].
    fn default() -> Self {
        Self::DISABLED
    }
}

impl Detector for RangeLimits {
    fn step_surprise(&mut self, _t: Timestamp, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        // Comparisons with a NaN bound are false: no limit on that side.
        if x < self.min || x > self.max {
            f64::INFINITY
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{check_arbitrary, check_contract, samples};
    use proptest::prelude::*;

    #[test]
    fn state_size_is_documented() {
        assert_eq!(
            core::mem::size_of::<RangeLimits>(),
            RangeLimits::STATE_BYTES
        );
    }

    #[test]
    fn limits_are_inclusive() {
        let mut r = RangeLimits::new(-1.0, 1.0);
        let t = Timestamp(0);
        assert_eq!(r.step(t, -1.0), 0.0);
        assert_eq!(r.step(t, 1.0), 0.0);
        assert_eq!(r.step(t, -1.0001), 1.0);
        assert_eq!(r.step(t, 1.0001), 1.0);
        assert!(r.is_enabled());
    }

    #[test]
    fn default_is_disabled_and_nan_bounds_are_open() {
        assert!(!RangeLimits::default().is_enabled());
        let mut r = RangeLimits::new(f64::NAN, 10.0);
        assert_eq!(r.step(Timestamp(0), -1e300), 0.0);
        assert_eq!(r.step(Timestamp(0), 11.0), 1.0);
    }

    #[test]
    fn contract() {
        let xs: std::vec::Vec<f64> = (0..100).map(|i| f64::from(i) - 50.0).collect();
        check_contract(RangeLimits::new(-20.0, 20.0), &xs);
    }

    proptest! {
        #[test]
        fn arbitrary_input_keeps_scores_in_range(xs in samples(), lo in -1e3..1e3f64, w in 0.0..1e3f64) {
            check_arbitrary(RangeLimits::new(lo, lo + w), &xs);
            check_arbitrary(RangeLimits::default(), &xs);
        }
    }
}
