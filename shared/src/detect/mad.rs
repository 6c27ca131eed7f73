//! Robust z-score against the median and MAD of a fixed window.

use super::{Detector, z_score_to_surprise};
use crate::ids::Timestamp;

/// Scores each sample by `(x − median) / (1.4826 · MAD)` over the last `N`
/// samples before it (a ring buffer), mapped through the two-sided Gaussian
/// tail. The median and MAD are exact, found by two O(N) selections on a
/// stack copy of the window (`select_nth_unstable_by`), so the cost per step is
/// O(N) and the state is exactly `N` values; a streaming quantile sketch would
/// be smaller but approximate, and for `N ≈ 32` exactness is cheap.
///
/// When more than half of the window is one value the MAD is 0; then the
/// scale falls back to the mean absolute deviation from the median, and if
/// that is 0 too (a constant window), any other value scores 1.
///
/// Outputs `0` until the window is full.
///
/// ```
/// use tributary_core::detect::{Detector, MadZScore};
/// use tributary_core::ids::Timestamp;
///
/// let mut m = MadZScore::<16>::new();
/// for i in 0..16 {
///     m.step(Timestamp(i), (i % 4) as f64);
/// }
/// assert!(m.step(Timestamp(16), 50.0) > 0.999);
/// assert!(m.step(Timestamp(17), 2.0) < 0.9);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MadZScore<const N: usize> {
    window: [f64; N],
    next: u32,
    len: u32,
}

impl<const N: usize> MadZScore<N> {
    /// State size in bytes: `8·N + 8`.
    pub const STATE_BYTES: usize = 8 * N + 8;

    /// An empty window of `N` samples.
    pub const fn new() -> Self {
        MadZScore {
            window: [0.0; N],
            next: 0,
            len: 0,
        }
    }

    /// Scores `x` against the window, then pushes it; returns the signed
    /// robust z-score (`0` until the window is full or for non-finite `x`).
    pub fn step_z(&mut self, x: f64) -> f64 {
        if !x.is_finite() || N == 0 {
            return 0.0;
        }
        let z = if self.len as usize >= N {
            robust_z(&self.window, x)
        } else {
            0.0
        };
        let i = self.next as usize % N;
        if let Some(slot) = self.window.get_mut(i) {
            *slot = x;
        }
        self.next = ((i + 1) % N) as u32;
        self.len = self.len.saturating_add(1).min(N as u32);
        z
    }
}

/// The median of `v`, reordering it.
fn median_in_place(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

fn robust_z<const N: usize>(window: &[f64; N], x: f64) -> f64 {
    let mut tmp = *window;
    let med = median_in_place(&mut tmp);
    let mut mean_abs = 0.0;
    for v in tmp.iter_mut() {
        *v = libm::fabs(*v - med);
        mean_abs += *v / N as f64;
    }
    let mad = median_in_place(&mut tmp);
    // 1.4826·MAD and 1.2533·mean|dev| both estimate σ for Gaussian data.
    let scale = if mad > 0.0 {
        1.4826 * mad
    } else {
        1.2533 * mean_abs
    };
    let d = x - med;
    if !(scale > 0.0 && scale.is_finite()) {
        return if d == 0.0 {
            0.0
        } else {
            f64::INFINITY.copysign(d)
        };
    }
    let z = d / scale;
    if z.is_nan() { 0.0 } else { z }
}

impl<const N: usize> Default for MadZScore<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Detector for MadZScore<N> {
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
            core::mem::size_of::<MadZScore<32>>(),
            MadZScore::<32>::STATE_BYTES
        );
        assert_eq!(MadZScore::<32>::STATE_BYTES, 264);
    }

    #[test]
    fn spike_scores_high_and_noise_low() {
        let mut noise = Noise(3);
        let mut xs: std::vec::Vec<f64> = (0..500).map(|_| noise.next()).collect();
        xs[400] = 8.0;
        let scores = run(&mut MadZScore::<32>::new(), &xs);
        assert!(scores[..32].iter().all(|&s| s == 0.0));
        assert!(scores[400] > 0.9999);
        assert!(scores[32..400].iter().all(|&s| s < 0.9999));
    }

    #[test]
    fn outliers_in_the_window_do_not_mask_a_spike() {
        let mut m = MadZScore::<32>::new();
        for i in 0..32 {
            let x = if i % 8 == 0 { 1e6 } else { (i % 3) as f64 };
            m.step(Timestamp(i), x);
        }
        assert!(m.step(Timestamp(32), 40.0) > 0.9999);
    }

    #[test]
    fn constant_window_flags_any_change() {
        let mut m = MadZScore::<8>::new();
        for i in 0..8 {
            m.step(Timestamp(i), 5.0);
        }
        assert_eq!(m.step(Timestamp(8), 5.0), 0.0);
        assert_eq!(m.step(Timestamp(9), 5.5), 1.0);
    }

    #[test]
    fn contract() {
        let mut noise = Noise(11);
        let xs: std::vec::Vec<f64> = (0..200).map(|_| noise.next() * 3.0).collect();
        check_contract(MadZScore::<32>::new(), &xs);
    }

    proptest! {
        #[test]
        fn arbitrary_input_keeps_scores_in_range(xs in samples()) {
            check_arbitrary(MadZScore::<32>::new(), &xs);
            check_arbitrary(MadZScore::<1>::new(), &xs);
        }
    }
}
