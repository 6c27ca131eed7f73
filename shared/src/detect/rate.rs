//! Rate-of-change detector.

use super::{Detector, EwmaZScore, z_score_to_surprise};
use crate::ids::Timestamp;

/// Scores the jump from the previous sample, `x − x_prev`, by its robust
/// z-score against an EWMA of past jumps (an [`EwmaZScore`] on the first
/// difference). The difference is per sample, not per second, so irregular
/// sampling does not blow up a rate computed over a tiny interval.
///
/// A level shift scores high once, at the step, and a spike twice (up and
/// down); a slow drift, however large, does not. Outputs `0` for the first
/// sample and during the warm-up of the inner z-score.
///
/// ```
/// use tributary_core::detect::{Detector, RateOfChange};
/// use tributary_core::ids::Timestamp;
///
/// let mut r = RateOfChange::default();
/// for i in 0..200 {
///     r.step(Timestamp(i), i as f64 * 0.1 + if i % 2 == 0 { 0.01 } else { 0.0 });
/// }
/// assert!(r.step(Timestamp(200), 40.0) > 0.999);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateOfChange {
    diffs: EwmaZScore,
    last: f64,
    seen: bool,
}

impl RateOfChange {
    /// State size in bytes (`size_of::<RateOfChange>()`).
    pub const STATE_BYTES: usize = 64;

    /// A detector whose inner z-score on differences has EWMA weight
    /// `alpha`, clipping at `clip` standard deviations and `warmup` samples.
    pub const fn new(alpha: f64, clip: f64, warmup: u32) -> Self {
        RateOfChange {
            diffs: EwmaZScore::new(alpha, clip, warmup),
            last: 0.0,
            seen: false,
        }
    }

    /// Scores the jump to `x`; returns the signed z-score of the difference.
    pub fn step_z(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        let seen = core::mem::replace(&mut self.seen, true);
        let d = x - core::mem::replace(&mut self.last, x);
        if !seen || !d.is_finite() {
            return 0.0;
        }
        self.diffs.step_z(d)
    }
}

impl Default for RateOfChange {
    /// `alpha = 0.01`, `clip = 4`, `warmup = 30`.
    fn default() -> Self {
        Self::new(0.01, 4.0, 30)
    }
}

impl Detector for RateOfChange {
    fn step_surprise(&mut self, _t: Timestamp, x: f64) -> f64 {
        z_score_to_surprise(self.step_z(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{Noise, check_arbitrary, check_contract, run, samples};
    use proptest::prelude::*;

    #[test]
    fn state_size_is_documented() {
        assert_eq!(
            core::mem::size_of::<RateOfChange>(),
            RateOfChange::STATE_BYTES
        );
    }

    #[test]
    fn step_scores_high_once_and_ramp_low() {
        let mut noise = Noise(8);
        let xs: std::vec::Vec<f64> = (0..1000)
            .map(|i| 0.01 * f64::from(i) + 0.1 * noise.next() + if i >= 700 { 5.0 } else { 0.0 })
            .collect();
        let scores = run(&mut RateOfChange::default(), &xs);
        assert!(scores[700] > 0.9999);
        assert!(scores[100..700].iter().all(|&s| s < 0.9999));
        assert!(scores[701] < 0.999);
    }

    #[test]
    fn contract() {
        let mut noise = Noise(6);
        let xs: std::vec::Vec<f64> = (0..300).map(|i| f64::from(i) + noise.next()).collect();
        check_contract(RateOfChange::default(), &xs);
    }

    proptest! {
        #[test]
        fn arbitrary_input_keeps_scores_in_range(xs in samples()) {
            check_arbitrary(RateOfChange::default(), &xs);
        }
    }
}
