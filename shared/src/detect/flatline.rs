//! Flatline (stuck sensor) detector.

use super::Detector;
use crate::ids::Timestamp;

/// Flags a sensor whose value has not changed for at least `limit`
/// consecutive samples, scaled by how unusual that is for this sensor.
///
/// It tracks `p`, an EWMA of "the value changed" (starting at 1). After `r`
/// repeats the chance of no change by luck is about `(1 − p)^r`, so the score
/// is `0` while `r < limit` and `1 − (1 − p)^r` from then on: a sensor that
/// normally changes every sample scores near 1 after `limit` repeats, while a
/// quantised or often idle one needs a much longer flat run. `p` is capped at
/// `0.999` and updates during a run, so a stuck value slowly becomes normal.
///
/// ```
/// use tributary_core::detect::{Detector, Flatline};
/// use tributary_core::ids::Timestamp;
///
/// let mut f = Flatline::default();
/// for i in 0..100 {
///     assert_eq!(f.step(Timestamp(i), i as f64), 0.0); // always changing
/// }
/// let scores: Vec<f64> = (0..10).map(|i| f.step(Timestamp(100 + i), 7.0)).collect();
/// assert!(scores[..8].iter().all(|&s| s == 0.0)); // first value + 7 repeats
/// assert!(scores[8] > 0.99); // 8 repeats: stuck
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flatline {
    alpha: f64,
    change_rate: f64,
    last: f64,
    repeats: u32,
    limit: u32,
    seen: bool,
}

impl Flatline {
    /// State size in bytes (`size_of::<Flatline>()`).
    pub const STATE_BYTES: usize = 40;

    /// A detector that needs at least `limit` repeats and learns the change
    /// rate with EWMA weight `alpha`.
    pub const fn new(limit: u32, alpha: f64) -> Self {
        Flatline {
            alpha,
            change_rate: 1.0,
            last: 0.0,
            repeats: 0,
            limit,
            seen: false,
        }
    }

    /// How many consecutive samples have repeated the previous value.
    pub fn repeats(&self) -> u32 {
        self.repeats
    }
}

impl Default for Flatline {
    /// `limit = 8`, `alpha = 0.01`.
    fn default() -> Self {
        Self::new(8, 0.01)
    }
}

impl Detector for Flatline {
    fn step_surprise(&mut self, _t: Timestamp, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        let same = self.seen && x == self.last;
        if self.seen {
            let changed = if same { 0.0 } else { 1.0 };
            self.change_rate += self.alpha * (changed - self.change_rate);
            self.change_rate = self.change_rate.clamp(0.0, 0.999);
        }
        self.repeats = if same {
            self.repeats.saturating_add(1)
        } else {
            0
        };
        self.last = x;
        self.seen = true;
        if self.repeats < self.limit.max(1) {
            return 0.0;
        }
        // −ln((1 − p)^r); p ≤ 0.999 keeps it finite.
        -f64::from(self.repeats) * libm::log(1.0 - self.change_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{Noise, check_arbitrary, check_contract, run, samples};
    use proptest::prelude::*;

    #[test]
    fn state_size_is_documented() {
        assert_eq!(core::mem::size_of::<Flatline>(), Flatline::STATE_BYTES);
    }

    #[test]
    fn stuck_value_is_flagged_after_limit_repeats() {
        let mut noise = Noise(2);
        let mut xs: std::vec::Vec<f64> = (0..300).map(|_| noise.next()).collect();
        for x in &mut xs[200..230] {
            *x = 0.25;
        }
        let scores = run(&mut Flatline::new(5, 0.01), &xs);
        // xs[200] is the first of the run; xs[205] is its fifth repeat.
        assert!(scores[..205].iter().all(|&s| s == 0.0));
        assert!(scores[205] > 0.99);
        assert!(scores[205..230].iter().all(|&s| s > 0.99));
        assert_eq!(scores[230], 0.0);
    }

    #[test]
    fn often_idle_sensor_needs_a_longer_run() {
        // Changes on every fourth sample only.
        let xs: std::vec::Vec<f64> = (0..2000).map(|i| f64::from(i / 4)).collect();
        let mut f = Flatline::default();
        run(&mut f, &xs);
        let scores: std::vec::Vec<f64> =
            (0..40).map(|i| f.step(Timestamp(3000 + i), 1.0)).collect();
        assert!(scores[8] < 0.95, "{}", scores[8]);
        assert!(scores[39] > 0.99, "{}", scores[39]);
    }

    #[test]
    fn contract() {
        let xs: std::vec::Vec<f64> = (0..300).map(|i| f64::from((i / 10) % 3)).collect();
        check_contract(Flatline::default(), &xs);
    }

    proptest! {
        #[test]
        fn arbitrary_input_keeps_scores_in_range(xs in samples()) {
            check_arbitrary(Flatline::default(), &xs);
        }
    }
}
