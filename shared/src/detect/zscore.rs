//! Robust z-score against an exponentially weighted mean and variance.

use super::{Detector, Ewma, z_score_to_surprise};
use crate::ids::Timestamp;

/// Scores each sample by its z-score against an EWMA mean and variance of the
/// samples before it, mapped through the two-sided Gaussian tail
/// ([`z_score_to_score`](super::z_score_to_score)).
///
/// Robust: each update is clipped to `±clip·σ`, so a single spike barely moves
/// the baseline, while a lasting level shift is absorbed within a few
/// `1/alpha` samples. Outputs `0` during the first `warmup` samples.
///
/// ```
/// use tributary_core::detect::{Detector, EwmaZScore};
/// use tributary_core::ids::Timestamp;
///
/// let mut z = EwmaZScore::default();
/// for i in 0..100 {
///     z.step(Timestamp(i), if i % 2 == 0 { 1.0 } else { -1.0 });
/// }
/// assert!(z.step(Timestamp(100), 10.0) > 0.999);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EwmaZScore {
    alpha: f64,
    clip: f64,
    stats: Ewma,
    warmup: u32,
}

impl EwmaZScore {
    /// State size in bytes (`size_of::<EwmaZScore>()`).
    pub const STATE_BYTES: usize = 48;

    /// A detector with EWMA weight `alpha` (memory of about `1/alpha`
    /// samples), update clipping at `clip` standard deviations (`0` disables
    /// clipping) and `warmup` samples of silence.
    pub const fn new(alpha: f64, clip: f64, warmup: u32) -> Self {
        EwmaZScore {
            alpha,
            clip,
            stats: Ewma::NEW,
            warmup,
        }
    }

    /// The signed z-score `x` would get now, without updating (`0` before
    /// the first sample).
    pub fn z(&self, x: f64) -> f64 {
        self.stats.z(x)
    }

    /// The current baseline mean.
    pub fn mean(&self) -> f64 {
        self.stats.mean
    }

    /// The current baseline standard deviation.
    pub fn std(&self) -> f64 {
        self.stats.std()
    }

    /// Scores `x`, then folds it into the baseline; returns the signed
    /// z-score (`0` during warm-up or for non-finite `x`).
    pub fn step_z(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        let z = if self.stats.n >= self.warmup {
            self.stats.z(x)
        } else {
            0.0
        };
        self.stats.update(x, self.alpha, self.clip);
        z
    }
}

impl Default for EwmaZScore {
    /// `alpha = 0.01`, `clip = 4`, `warmup = 30`.
    fn default() -> Self {
        Self::new(0.01, 4.0, 30)
    }
}

impl Detector for EwmaZScore {
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
        assert_eq!(core::mem::size_of::<EwmaZScore>(), EwmaZScore::STATE_BYTES);
    }

    #[test]
    fn spike_scores_high_and_noise_low() {
        let mut noise = Noise(7);
        let mut xs: std::vec::Vec<f64> = (0..1000).map(|_| 10.0 + noise.next()).collect();
        xs[900] = 20.0;
        let scores = run(&mut EwmaZScore::default(), &xs);
        assert!(scores[900] > 0.9999);
        let false_alarms = scores[100..900].iter().filter(|&&s| s > 0.999).count();
        assert_eq!(false_alarms, 0);
        assert!(scores[901] < 0.99, "the spike must not poison the baseline");
    }

    #[test]
    fn silent_during_warmup() {
        let xs = [1.0, 100.0, -50.0, 3.0];
        assert!(
            run(&mut EwmaZScore::default(), &xs)
                .iter()
                .all(|&s| s == 0.0)
        );
    }

    #[test]
    fn contract() {
        let mut noise = Noise(1);
        let xs: std::vec::Vec<f64> = (0..300).map(|i| f64::from(i % 17) + noise.next()).collect();
        check_contract(EwmaZScore::default(), &xs);
    }

    proptest! {
        #[test]
        fn arbitrary_input_keeps_scores_in_range(xs in samples()) {
            check_arbitrary(EwmaZScore::default(), &xs);
        }
    }
}
