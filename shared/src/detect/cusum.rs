//! Two-sided CUSUM change-point detector.

use super::{Detector, Ewma};
use crate::ids::Timestamp;

/// A two-sided CUSUM on standardised samples: `z = (x − μ)/σ` against a slow
/// EWMA baseline, `S⁺ ← max(0, S⁺ + z − k)`, `S⁻ ← max(0, S⁻ − z − k)`.
///
/// Score: for in-control Gaussian data the CUSUM statistic's stationary tail is
/// about `P(S ≥ s) = e^(−2ks)`, so the score is `1 − e^(−2k·max(S⁺, S⁻))`.
/// When a side reaches `h` (an alarm; with the defaults, score `1 − e^(−8)`),
/// both sums reset and the baseline restarts at `x`, so after a level shift the
/// detector re-arms on the new level instead of alarming forever.
///
/// `z` is clipped to `±4` so a single spike cannot trigger a change point
/// alone. Outputs `0` during the first `warmup` samples.
///
/// ```
/// use tributary_core::detect::{Cusum, Detector};
/// use tributary_core::ids::Timestamp;
///
/// let mut c = Cusum::default();
/// let mut alarm_at = None;
/// for i in 0..400u64 {
///     let noise = if i % 2 == 0 { 0.5 } else { -0.5 };
///     let x = noise + if i >= 300 { 3.0 } else { 0.0 };
///     if c.step(Timestamp(i), x) >= Cusum::ALARM_SCORE && alarm_at.is_none() {
///         alarm_at = Some(i);
///     }
/// }
/// assert!(matches!(alarm_at, Some(i) if (300..310).contains(&i)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cusum {
    k: f64,
    h: f64,
    alpha: f64,
    baseline: Ewma,
    pos: f64,
    neg: f64,
    warmup: u32,
}

impl Cusum {
    /// State size in bytes (`size_of::<Cusum>()`).
    pub const STATE_BYTES: usize = 72;

    /// The score at which the default detector alarms: `1 − e^(−2kh)`.
    pub const ALARM_SCORE: f64 = 0.999_664_537_372_097_5;

    /// A detector with allowance `k` and decision interval `h` (both in
    /// standard deviations), baseline EWMA weight `alpha`, and `warmup`
    /// silent samples.
    pub const fn new(k: f64, h: f64, alpha: f64, warmup: u32) -> Self {
        Cusum {
            k,
            h,
            alpha,
            baseline: Ewma::NEW,
            pos: 0.0,
            neg: 0.0,
            warmup,
        }
    }

    /// The larger of the two CUSUM sums, in standard deviations.
    pub fn statistic(&self) -> f64 {
        self.pos.max(self.neg)
    }
}

impl Default for Cusum {
    /// `k = 0.5`, `h = 8`, `alpha = 0.005`, `warmup = 30`.
    fn default() -> Self {
        Self::new(0.5, 8.0, 0.005, 30)
    }
}

impl Detector for Cusum {
    fn step_surprise(&mut self, _t: Timestamp, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        if self.baseline.n < self.warmup {
            self.baseline.update(x, self.alpha, 4.0);
            return 0.0;
        }
        let z = self.baseline.z(x).clamp(-4.0, 4.0);
        self.pos = (self.pos + z - self.k).max(0.0);
        self.neg = (self.neg - z - self.k).max(0.0);
        let s = self.statistic();
        let surprise = 2.0 * self.k * s;
        if s >= self.h {
            self.pos = 0.0;
            self.neg = 0.0;
            // Re-learn the mean on the new level; keep the scale.
            self.baseline.mean = x;
        } else {
            self.baseline.update(x, self.alpha, 4.0);
        }
        surprise
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{
        Noise, check_arbitrary, check_contract, check_level_step_and_quiet_noise, run, samples,
    };
    use proptest::prelude::*;

    #[test]
    fn state_size_is_documented() {
        assert_eq!(core::mem::size_of::<Cusum>(), Cusum::STATE_BYTES);
    }

    #[test]
    fn alarm_score_matches_defaults() {
        assert!((Cusum::ALARM_SCORE - (1.0 - libm::exp(-8.0))).abs() < 1e-15);
    }

    /// σ of the test noise (uniform in [-1, 1)) is 0.577, so a shift of 2
    /// is 3.5σ: h/(3.5 − k) ≈ 3 samples to the alarm; 10 are allowed.
    #[test]
    fn level_step_is_flagged_within_bounded_samples_and_noise_is_quiet() {
        check_level_step_and_quiet_noise(Cusum::default(), Cusum::ALARM_SCORE);
    }

    #[test]
    fn rearms_on_the_new_level() {
        let mut noise = Noise(9);
        let xs: std::vec::Vec<f64> = (0..2000)
            .map(|i| noise.next() + if i >= 500 { 10.0 } else { 0.0 })
            .collect();
        let scores = run(&mut Cusum::default(), &xs);
        let alarms = scores.iter().filter(|&&s| s >= Cusum::ALARM_SCORE).count();
        assert!(alarms <= 2, "{alarms} alarms for one step");
        assert!(scores[700..].iter().all(|&s| s < Cusum::ALARM_SCORE));
    }

    #[test]
    fn contract() {
        let mut noise = Noise(4);
        let xs: std::vec::Vec<f64> = (0..300)
            .map(|i| noise.next() + if i > 150 { 3.0 } else { 0.0 })
            .collect();
        check_contract(Cusum::default(), &xs);
    }

    proptest! {
        #[test]
        fn arbitrary_input_keeps_scores_in_range(xs in samples()) {
            check_arbitrary(Cusum::default(), &xs);
        }
    }
}
