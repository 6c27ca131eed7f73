//! NAB's "Windowed Gaussian" baseline, re-implemented from its description
//! to check the run → score pipeline end to end against a published figure
//! (39.65 standard). It is not a product detector: it keeps a `Vec`, which
//! the core's detectors must not.

use std::collections::VecDeque;

/// Values in the reference window (NAB's tuned `windowSize`).
pub const WINDOW: usize = 6400;
/// Once the window is full, it slides by this many values at a time, and
/// mean and deviation are only recomputed then (NAB's `stepSize`).
pub const STEP: usize = 100;

/// Scores each value by how far it lies from the mean of a window of past
/// values: `1 − Q(|z|)`, with `Q` the Gaussian upper-tail probability, so
/// the score is 0.5 at the mean and tends to 1 in either tail. Causal: the
/// current value joins the window only after it has been scored.
#[derive(Debug, Clone)]
pub struct WindowedGaussian {
    window: VecDeque<f64>,
    pending: Vec<f64>,
    mean: f64,
    std: f64,
    /// Welford's sum of squared deviations while the window fills, so
    /// filling is O(1) per value without the cancellation of `Σx² − n·mean²`
    /// on large values with a small spread.
    m2: f64,
}

impl Default for WindowedGaussian {
    fn default() -> Self {
        Self {
            window: VecDeque::with_capacity(WINDOW),
            pending: Vec::with_capacity(STEP),
            mean: 0.0,
            std: 1.0,
            m2: 0.0,
        }
    }
}

impl WindowedGaussian {
    /// Scores `x` against the window, then feeds it in.
    pub fn step(&mut self, x: f64) -> f64 {
        let score = if self.window.is_empty() {
            0.0
        } else {
            1.0 - upper_tail((x - self.mean).abs() / self.std)
        };
        if self.window.len() < WINDOW {
            self.window.push_back(x);
            let n = self.window.len() as f64;
            let delta = x - self.mean;
            self.mean += delta / n;
            self.m2 += delta * (x - self.mean);
            self.set_std((self.m2 / n).max(0.0).sqrt());
        } else {
            self.pending.push(x);
            if self.pending.len() == STEP {
                self.window.drain(..STEP);
                self.window.extend(self.pending.drain(..));
                // Two-pass over the window, as numpy's mean/std: the
                // running sums would lose precision on long series.
                let n = self.window.len() as f64;
                self.mean = self.window.iter().sum::<f64>() / n;
                let var = self
                    .window
                    .iter()
                    .map(|v| (v - self.mean).powi(2))
                    .sum::<f64>()
                    / n;
                self.set_std(var.sqrt());
            }
        }
        score
    }

    fn set_std(&mut self, std: f64) {
        // A constant window would make every new value infinitely unlikely;
        // NAB floors the deviation at 1e-6 instead.
        self.std = if std == 0.0 { 1e-6 } else { std };
    }
}

/// `Q(z) = P(Z > z)` for a standard normal `Z`.
fn upper_tail(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_scores_zero_then_the_mean_scores_one_half() {
        let mut g = WindowedGaussian::default();
        assert_eq!(g.step(1.0), 0.0);
        assert_eq!(g.step(3.0), 1.0);
        assert!((g.step(2.0) - 0.5).abs() < 1e-12);
        let far = g.step(2.0 + 3.0 * (2.0f64 / 3.0).sqrt());
        assert!((far - (1.0 - 0.001_349_898)).abs() < 1e-6, "{far}");
    }

    #[test]
    fn the_window_slides_by_whole_steps() {
        let mut g = WindowedGaussian::default();
        for i in 0..WINDOW {
            g.step(i as f64);
        }
        let mean = g.mean;
        for _ in 0..STEP - 1 {
            g.step(0.0);
        }
        assert_eq!(g.mean, mean);
        g.step(0.0);
        assert!(g.mean < mean);
        assert_eq!(g.window.len(), WINDOW);
    }
}
