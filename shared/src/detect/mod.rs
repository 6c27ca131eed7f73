//! Streaming anomaly detectors: step functions with fixed-size `Copy` state.
//!
//! Each detector takes one sample `(t, x)` and returns an anomaly score in
//! `[0, 1]`, using only samples up to `t` (causal). The state is a plain
//! fixed-size struct: no heap, no clock, no randomness, so a detector can be
//! copied, snapshotted and replayed, and the same code runs on a
//! microcontroller, on the edge gateway and in the NAB benchmark.
//!
//! Scores are "one minus a tail probability": a score of `s` means "under the
//! detector's model of normal, something at least this unusual happens with
//! probability about `1 − s`". So a single threshold sweep means the same
//! thing across detectors, and [`Ensemble`] can combine them in log space.
//! Every detector also gives the unsaturated form,
//! [`Detector::step_surprise`], `−ln p` in nats (the score is
//! `1 − e^(−surprise)`), which still ranks samples whose scores would all
//! round to 1.
//!
//! **Non-finite input** (NaN, ±∞) is a missing reading: every detector
//! returns `0.0` for it and leaves its state unchanged. Rejecting or counting
//! such readings is the ingest's job (the aggregate summary rejects them too).
//! Finite but huge inputs never poison the state either: an update whose
//! result would not be finite is dropped.
//!
//! | detector | what it flags | state bytes | default parameters |
//! |---|---|---|---|
//! | [`EwmaZScore`] | spikes against an EWMA mean/variance | 48 | `alpha = 0.01`, `clip = 4σ`, `warmup = 30` |
//! | [`MadZScore<32>`](MadZScore) | spikes against the median/MAD of the last `N` values | 264 (`8·N + 8`) | `N = 32`, `warmup = N` |
//! | [`Cusum`] | sustained mean shifts (two-sided CUSUM) | 72 | `k = 0.5σ`, `h = 8σ`, `alpha = 0.005`, `warmup = 30` |
//! | [`PageHinkley`] | mean shifts and drifts against the segment mean | 88 | `delta = 0.5σ`, `lambda = 8σ`, `alpha = 0.005`, `warmup = 30` |
//! | [`Flatline`] | a value stuck for at least `limit` samples | 40 | `limit = 8`, `alpha = 0.01` |
//! | [`RateOfChange`] | jumps between consecutive samples | 64 | `alpha = 0.01`, `clip = 4σ`, `warmup = 30` |
//! | [`RangeLimits`] | values outside configured `[min, max]` | 16 | disabled (`−∞ ..= +∞`) |
//! | [`Seasonal`] | deviations from the hour-of-day / hour-of-week profile | 1032 | `alpha = 0.1` per 5 min, `warmup = 2` samples per slot from earlier visits |
//! | [`Ensemble`] | all of the above, one calibrated score | 1872 | [`EnsembleConfig::DEFAULT`] |
//!
//! The sizes are `core::mem::size_of`, asserted at compile time on every
//! target (the 32-bit thumb ones included: `f64` and `u64` are 8-byte aligned
//! there too), by a test next to each detector, and by one that checks this
//! table.
//!
//! Scores become alerts through [`AlertState`] (32 bytes per stream): an
//! alert opens at [`AlertPolicy::open`], stays open within a hysteresis band
//! and resolves after [`AlertPolicy::clear_after`] calm samples, so a noisy
//! sensor cannot flood the uplink with alerts.
//!
//! Throughput of the default ensemble: about 3.8 million samples per second
//! on one x86-64 core (release build); see `benches/detect.rs`.
//!
//! ```
//! use tributary_core::detect::{Detector, Ensemble, RangeLimits};
//! use tributary_core::ids::Timestamp;
//!
//! let mut detector = Ensemble::default();
//! let mut last = 0.0;
//! for i in 0..2_000u64 {
//!     let t = Timestamp::from_millis(i * 60_000); // one sample per minute
//!     let x = 20.0 + if i % 2 == 0 { 0.1 } else { -0.1 }; // steady noise
//!     let x = if i == 1_500 { 35.0 } else { x }; // one spike
//!     let score = detector.step(t, x);
//!     assert!((0.0..=1.0).contains(&score));
//!     if i == 1_500 { last = score; }
//! }
//! assert!(last > 0.9);
//!
//! let mut limits = RangeLimits::new(-40.0, 85.0);
//! assert_eq!(limits.step(Timestamp::from_millis(0), 90.0), 1.0);
//! ```

mod alert;
mod cusum;
mod ensemble;
mod flatline;
mod mad;
mod page_hinkley;
mod range;
mod rate;
mod seasonal;
mod zscore;

pub use alert::{AlertEvent, AlertPolicy, AlertState};
pub use cusum::Cusum;
pub use ensemble::{Ensemble, EnsembleConfig};
pub use flatline::Flatline;
pub use mad::MadZScore;
pub use page_hinkley::PageHinkley;
pub use range::RangeLimits;
pub use rate::RateOfChange;
pub use seasonal::Seasonal;
pub use zscore::EwmaZScore;

use crate::ids::Timestamp;

/// The alert threshold on [`Ensemble`] scores that gateways and tools use
/// unless configured otherwise. The default ensemble's `scale` is chosen so
/// that this is NAB's optimal threshold on the standard profile, rounded
/// down: the optimiser picks 0.805 and 0.8 scores 61.58 against 61.68
/// (docs/detection.md). Raise it to trade missed anomalies for fewer false
/// alarms.
pub const DEFAULT_ALERT_THRESHOLD: f64 = 0.8;

// The documented state sizes hold on every target this crate builds for,
// including the 32-bit thumb ones: checked at compile time, not just in tests.
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<EwmaZScore>() == EwmaZScore::STATE_BYTES);
    assert!(size_of::<MadZScore<32>>() == MadZScore::<32>::STATE_BYTES);
    assert!(size_of::<Cusum>() == Cusum::STATE_BYTES);
    assert!(size_of::<PageHinkley>() == PageHinkley::STATE_BYTES);
    assert!(size_of::<Flatline>() == Flatline::STATE_BYTES);
    assert!(size_of::<RateOfChange>() == RateOfChange::STATE_BYTES);
    assert!(size_of::<RangeLimits>() == RangeLimits::STATE_BYTES);
    assert!(size_of::<Seasonal>() == Seasonal::STATE_BYTES);
    assert!(size_of::<Ensemble>() == Ensemble::STATE_BYTES);
    assert!(size_of::<AlertState>() == AlertState::STATE_BYTES);
};

/// A streaming anomaly detector: one sample in, one score in `[0, 1]` out.
///
/// Implementations are causal (the score at `t` depends only on samples up
/// to and including `t`), deterministic, and keep fixed-size state. They
/// return `0.0` for a non-finite `x` without changing state. Timestamps are
/// expected to be non-decreasing; detectors that ignore time accept any.
pub trait Detector {
    /// Feeds the sample `x` taken at `t` and returns its surprise: `−ln p`
    /// in nats, where `p` is the model's probability of something at least
    /// as unusual. `0` is normal; it may be `+∞` (impossible under the
    /// model) but never NaN or negative. Unlike the score it does not
    /// saturate, so it can rank very unusual samples against each other.
    fn step_surprise(&mut self, t: Timestamp, x: f64) -> f64;

    /// Feeds the sample `x` taken at `t` and returns its anomaly score in
    /// `[0, 1]`: `1 − e^(−surprise)` (`0` = normal, close to `1` = very
    /// unlikely under the model).
    fn step(&mut self, t: Timestamp, x: f64) -> f64 {
        surprise_to_score(self.step_surprise(t, x))
    }
}

/// The two-sided Gaussian tail score of a z-score: `1 − P(|Z| ≥ |z|)`.
///
/// `0` for `z = 0`, `0.683` for `|z| = 1`, `0.9973` for `|z| = 3`; `0` for NaN.
pub fn z_score_to_score(z: f64) -> f64 {
    if z.is_nan() {
        return 0.0;
    }
    clamp_unit(libm::erf(libm::fabs(z) * core::f64::consts::FRAC_1_SQRT_2))
}

/// The two-sided Gaussian surprise of a z-score, `−ln P(|Z| ≥ |z|)` in nats,
/// computed without saturating: `z²/2 + ln|z| + ln√(π/2)` asymptotically.
/// `0` for `z = 0` or NaN, `+∞` for infinite `z`.
pub fn z_score_to_surprise(z: f64) -> f64 {
    let z = libm::fabs(z);
    if z.is_nan() {
        return 0.0;
    }
    if z < 8.0 {
        let p = libm::erfc(z * core::f64::consts::FRAC_1_SQRT_2);
        return (-libm::log(p)).max(0.0);
    }
    // erfc(x) ≈ e^(−x²)/(x√π)·(1 − 1/(2x²)), x = z/√2; error < 1e-4 nats here.
    let x2 = 0.5 * z * z;
    x2 + libm::log(z) + 0.5 * libm::log(core::f64::consts::FRAC_PI_2) - libm::log(1.0 - 0.5 / x2)
}

/// `−ln(1 − score)`: the surprise of a score in nats (`0` for a score of 0,
/// about `ln 2` for 0.5), capped at [`MAX_SURPRISE`] so a score of exactly 1
/// stays finite.
pub fn score_to_surprise(score: f64) -> f64 {
    let p = 1.0 - clamp_unit(score);
    if p <= libm::exp(-MAX_SURPRISE) {
        MAX_SURPRISE
    } else {
        -libm::log(p)
    }
}

/// The inverse of [`score_to_surprise`]: `1 − e^(−s)`, for `s ≥ 0` (`0` for
/// NaN or negative `s`, `1` for `+∞`).
pub fn surprise_to_score(surprise: f64) -> f64 {
    if surprise.is_nan() || surprise <= 0.0 {
        return 0.0;
    }
    clamp_unit(1.0 - libm::exp(-surprise))
}

/// The largest surprise (nats) scores are mapped to: a tail probability of
/// about `1e-16`, below which `f64` cannot tell a score from `1`.
pub const MAX_SURPRISE: f64 = 36.0;

/// Clamps to `[0, 1]`, mapping NaN to `0`.
fn clamp_unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// An exponentially weighted mean and variance that starts as a plain running
/// mean (the weight is `max(alpha, 1/n)`) and clips each update to
/// `±clip·σ`, so one outlier moves it by a bounded amount.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ewma {
    mean: f64,
    var: f64,
    n: u32,
}

impl Ewma {
    const NEW: Ewma = Ewma {
        mean: 0.0,
        var: 0.0,
        n: 0,
    };

    /// The standard deviation, floored relative to the mean's magnitude so a
    /// constant series does not divide by zero.
    fn std(&self) -> f64 {
        let floor = 1e-9 * (1.0 + libm::fabs(self.mean));
        libm::sqrt(self.var).max(floor)
    }

    /// `(x − mean) / σ`, or 0 before the first sample.
    fn z(&self, x: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let z = (x - self.mean) / self.std();
        if z.is_nan() { 0.0 } else { z }
    }

    /// Folds `x` in. Non-finite results are dropped, keeping the old state.
    fn update(&mut self, x: f64, alpha: f64, clip: f64) {
        if !x.is_finite() {
            return;
        }
        if self.n == 0 {
            *self = Ewma {
                mean: x,
                var: 0.0,
                n: 1,
            };
            return;
        }
        let n = self.n.saturating_add(1);
        let w = alpha.max(1.0 / f64::from(n));
        let mut d = x - self.mean;
        // Only clip once the variance means something.
        if self.n > 8 && clip > 0.0 {
            let lim = clip * self.std();
            d = d.clamp(-lim, lim);
        }
        let mean = self.mean + w * d;
        let var = (1.0 - w) * (self.var + w * d * d);
        if mean.is_finite() && var.is_finite() {
            *self = Ewma { mean, var, n };
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Shared helpers for the detector tests.
    use super::Detector;
    use crate::ids::Timestamp;

    /// A deterministic pseudo-random sequence in `[-1, 1)` (xorshift64).
    pub struct Noise(pub u64);
    impl Noise {
        pub fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    /// Runs `d` over `xs` at one sample per minute, returning every score.
    pub fn run<D: Detector>(d: &mut D, xs: &[f64]) -> std::vec::Vec<f64> {
        xs.iter()
            .enumerate()
            .map(|(i, &x)| d.step(Timestamp(i as u64 * 60_000), x))
            .collect()
    }

    /// The change-point detectors' shared checks: on uniform noise, a level
    /// shift at sample 600 (by 2, −2 and 4, i.e. 3.5σ to 7σ) raises the first
    /// score ≥ `alarm` within 10 samples, and 5 000 samples of the same
    /// noise without a shift never reach `alarm`.
    pub fn check_level_step_and_quiet_noise<D: Detector + Copy>(fresh: D, alarm: f64) {
        for (seed, shift) in [(1, 2.0), (2, -2.0), (3, 4.0)] {
            let mut noise = Noise(seed);
            let xs: std::vec::Vec<f64> = (0..1000)
                .map(|i| noise.next() + if i >= 600 { shift } else { 0.0 })
                .collect();
            let scores = run(&mut fresh.clone(), &xs);
            let first = scores.iter().position(|&s| s >= alarm);
            assert!(
                matches!(first, Some(i) if (600..610).contains(&i)),
                "shift {shift}: first alarm {first:?}"
            );
        }
        let mut noise = Noise(5);
        let xs: std::vec::Vec<f64> = (0..5000).map(|_| noise.next()).collect();
        assert!(run(&mut fresh.clone(), &xs).iter().all(|&s| s < alarm));
    }

    /// Arbitrary samples: mostly ordinary values, with NaN, ±∞, huge and
    /// tiny values mixed in.
    pub fn samples() -> impl proptest::strategy::Strategy<Value = std::vec::Vec<f64>> {
        use proptest::prelude::*;
        let x = prop_oneof![
            8 => -1e3..1e3f64,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            1 => Just(f64::MAX),
            1 => Just(-f64::MAX),
            1 => any::<f64>(),
            1 => Just(0.0),
        ];
        proptest::collection::vec(x, 0..400)
    }

    /// Runs `d` over arbitrary `xs`, checking every score is in `[0, 1]` and
    /// that no NaN ever enters the state (its `Debug` form shows every field).
    pub fn check_arbitrary<D: Detector + Copy + core::fmt::Debug>(mut d: D, xs: &[f64]) {
        for (i, &x) in xs.iter().enumerate() {
            let s = d.step(Timestamp(i as u64 * 300_000), x);
            assert!((0.0..=1.0).contains(&s), "score {s} out of range");
            let state = std::format!("{d:?}");
            assert!(!state.contains("NaN"), "NaN in state: {state}");
        }
        check_contract(d, &[1.0, 2.0, 1.5, 1.0, 100.0, 1.0]);
    }

    /// Checks that a detector's scores stay in `[0, 1]`, that non-finite input
    /// does not change its future scores, and that a copy replays identically.
    pub fn check_contract<D: Detector + Copy>(fresh: D, xs: &[f64]) {
        let mut a = fresh;
        let mut b = fresh;
        for (i, &x) in xs.iter().enumerate() {
            let t = Timestamp(i as u64 * 60_000);
            let sa = a.step(t, x);
            assert!((0.0..=1.0).contains(&sa), "score {sa} out of range");
            // `b` also sees garbage between samples; it must not matter.
            assert_eq!(b.step(t, f64::NAN), 0.0);
            assert_eq!(b.step(t, f64::INFINITY), 0.0);
            assert_eq!(b.step(t, f64::NEG_INFINITY), 0.0);
            let sb = b.step(t, x);
            assert_eq!(sa.to_bits(), sb.to_bits(), "NaN changed the state");
        }
        let mut c = a;
        for (i, &x) in xs.iter().enumerate() {
            let t = Timestamp((xs.len() + i) as u64 * 60_000);
            assert_eq!(a.step(t, x).to_bits(), c.step(t, x).to_bits());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_surprise_agree() {
        assert_eq!(z_score_to_score(0.0), 0.0);
        assert!((z_score_to_score(3.0) - 0.9973).abs() < 1e-4);
        assert_eq!(z_score_to_score(f64::NAN), 0.0);
        assert_eq!(z_score_to_score(f64::INFINITY), 1.0);
        assert_eq!(score_to_surprise(1.0), MAX_SURPRISE);
        assert_eq!(z_score_to_surprise(f64::INFINITY), f64::INFINITY);
        assert_eq!(z_score_to_surprise(f64::NAN), 0.0);
        // Continuous where the asymptotic form takes over, and monotone.
        let below = z_score_to_surprise(8.0 - 1e-9);
        let above = z_score_to_surprise(8.0);
        assert!((below - above).abs() < 1e-3, "{below} {above}");
        let mut last = 0.0;
        for i in 0..2000 {
            let s = z_score_to_surprise(f64::from(i) * 0.01);
            assert!(s >= last);
            last = s;
        }
        for z in [0.5, 1.0, 3.0, 5.0] {
            assert!(
                (surprise_to_score(z_score_to_surprise(z)) - z_score_to_score(z)).abs() < 1e-12
            );
        }
        assert_eq!(score_to_surprise(f64::NAN), 0.0);
        for s in [0.0, 0.1, 0.5, 0.9, 0.999] {
            assert!((surprise_to_score(score_to_surprise(s)) - s).abs() < 1e-12);
        }
    }

    #[test]
    fn state_bytes_match_the_module_table() {
        assert_eq!(EwmaZScore::STATE_BYTES, 48);
        assert_eq!(MadZScore::<32>::STATE_BYTES, 264);
        assert_eq!(Cusum::STATE_BYTES, 72);
        assert_eq!(PageHinkley::STATE_BYTES, 88);
        assert_eq!(Flatline::STATE_BYTES, 40);
        assert_eq!(RateOfChange::STATE_BYTES, 64);
        assert_eq!(RangeLimits::STATE_BYTES, 16);
        assert_eq!(Seasonal::STATE_BYTES, 1032);
        assert_eq!(Ensemble::STATE_BYTES, 1872);
    }

    #[test]
    fn ewma_survives_huge_values() {
        let mut e = Ewma::NEW;
        for x in [f64::MAX, -f64::MAX, 1.0, f64::MAX, -f64::MAX] {
            e.update(x, 0.5, 3.0);
            assert!(e.mean.is_finite() && e.var.is_finite());
        }
    }
}
