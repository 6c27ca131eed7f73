//! Page-Hinkley change-point test.

use super::{Detector, Ewma};
use crate::ids::Timestamp;

/// The two-sided Page-Hinkley test: with `z = (x − x̄)/σ` against the mean of
/// the samples since the last change (a running mean whose weight is floored
/// at `alpha`, so it still forgets very old data), it accumulates
/// `m⁺ = Σ(z − δ)` and `m⁻ = Σ(z + δ)` and reports
/// `PH = max(m⁺ − min m⁺, max m⁻ − m⁻)`.
///
/// Unlike [`Cusum`](super::Cusum), the reference is the unclipped running
/// mean of the current segment, so it also catches slow drifts. The score is
/// `1 − e^(−2δ·PH)`; when `PH ≥ λ` (an alarm) the test restarts on the new
/// segment. Outputs `0` during the first `warmup` samples.
///
/// ```
/// use tributary_core::detect::{Detector, PageHinkley};
/// use tributary_core::ids::Timestamp;
///
/// let mut ph = PageHinkley::default();
/// let mut alarm_at = None;
/// for i in 0..400u64 {
///     let noise = if i % 2 == 0 { 0.5 } else { -0.5 };
///     let x = noise + if i >= 300 { 3.0 } else { 0.0 };
///     if ph.step(Timestamp(i), x) >= PageHinkley::ALARM_SCORE && alarm_at.is_none() {
///         alarm_at = Some(i);
///     }
/// }
/// assert!(matches!(alarm_at, Some(i) if (300..310).contains(&i)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PageHinkley {
    delta: f64,
    lambda: f64,
    alpha: f64,
    stats: Ewma,
    up: f64,
    up_min: f64,
    down: f64,
    down_max: f64,
    warmup: u32,
}

impl PageHinkley {
    /// State size in bytes (`size_of::<PageHinkley>()`).
    pub const STATE_BYTES: usize = 88;

    /// The score at which the default detector alarms: `1 − e^(−2δλ)`.
    pub const ALARM_SCORE: f64 = 0.999_664_537_372_097_5;

    /// A test with magnitude tolerance `delta` and threshold `lambda` (both in
    /// standard deviations), a mean/variance weight floored at `alpha`, and
    /// `warmup` silent samples.
    pub const fn new(delta: f64, lambda: f64, alpha: f64, warmup: u32) -> Self {
        PageHinkley {
            delta,
            lambda,
            alpha,
            stats: Ewma::NEW,
            up: 0.0,
            up_min: 0.0,
            down: 0.0,
            down_max: 0.0,
            warmup,
        }
    }

    /// The current Page-Hinkley statistic, in standard deviations.
    pub fn statistic(&self) -> f64 {
        (self.up - self.up_min).max(self.down_max - self.down)
    }
}

impl Default for PageHinkley {
    /// `delta = 0.5`, `lambda = 8`, `alpha = 0.005`, `warmup = 30`.
    fn default() -> Self {
        Self::new(0.5, 8.0, 0.005, 30)
    }
}

impl Detector for PageHinkley {
    fn step_surprise(&mut self, _t: Timestamp, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        if self.stats.n < self.warmup {
            self.stats.update(x, self.alpha, 0.0);
            return 0.0;
        }
        let z = self.stats.z(x).clamp(-4.0, 4.0);
        self.up += z - self.delta;
        self.up_min = self.up_min.min(self.up);
        self.down += z + self.delta;
        self.down_max = self.down_max.max(self.down);
        let ph = self.statistic();
        let surprise = 2.0 * self.delta * ph;
        if ph >= self.lambda || !ph.is_finite() {
            // A new segment: forget the old mean, keep the scale.
            self.up = 0.0;
            self.up_min = 0.0;
            self.down = 0.0;
            self.down_max = 0.0;
            self.stats.mean = x;
        } else {
            self.stats.update(x, self.alpha, 0.0);
        }
        // The sums drift by ∓δ per sample; re-centre so they stay small.
        if self.up_min < -1e6 {
            self.up -= self.up_min;
            self.up_min = 0.0;
        }
        if self.down_max > 1e6 {
            self.down -= self.down_max;
            self.down_max = 0.0;
        }
        surprise
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{
        Noise, check_arbitrary, check_contract, check_level_step_and_quiet_noise, samples,
    };
    use proptest::prelude::*;

    #[test]
    fn state_size_is_documented() {
        assert_eq!(
            core::mem::size_of::<PageHinkley>(),
            PageHinkley::STATE_BYTES
        );
    }

    #[test]
    fn level_step_is_flagged_within_bounded_samples_and_noise_is_quiet() {
        check_level_step_and_quiet_noise(PageHinkley::default(), PageHinkley::ALARM_SCORE);
    }

    #[test]
    fn long_runs_stay_finite() {
        let mut ph = PageHinkley::default();
        for i in 0..3_000_000u64 {
            ph.step(Timestamp(i), if i % 2 == 0 { 1.0 } else { -1.0 });
        }
        assert!(ph.up.abs() < 2e6 && ph.down.abs() < 2e6);
    }

    #[test]
    fn contract() {
        let mut noise = Noise(4);
        let xs: std::vec::Vec<f64> = (0..300)
            .map(|i| noise.next() + if i > 150 { 3.0 } else { 0.0 })
            .collect();
        check_contract(PageHinkley::default(), &xs);
    }

    proptest! {
        #[test]
        fn arbitrary_input_keeps_scores_in_range(xs in samples()) {
            check_arbitrary(PageHinkley::default(), &xs);
        }
    }
}
