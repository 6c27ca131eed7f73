//! Issue #7: the ensemble must stay quiet on a smooth periodic series.
//!
//! The series are fed the way the edge's detector actor feeds them: one
//! `Ensemble` per sensor, `Timestamp`s in UTC milliseconds, one sample after
//! another. Nothing in them is unusual, so no score may reach the alert
//! threshold once the ensemble has warmed up. Before the fix, a 1 Hz sine
//! alarmed (0.8–1.0) about 300 samples into the first full hour and, from
//! the second day on, at every hour boundary.

use proptest::prelude::*;
use tributary_core::detect::{DEFAULT_ALERT_THRESHOLD, Detector, Ensemble, EnsembleConfig};
use tributary_core::ids::Timestamp;

/// 2025-11-23 14:00:00 UTC, an hour boundary.
const HOUR_BOUNDARY_MS: u64 = 1_763_906_400_000;
/// 2025-11-24 00:00:00 UTC, a day boundary.
const DAY_BOUNDARY_MS: u64 = 1_763_942_400_000;

/// Per-sample noise in `[-1, 1)` (xorshift64), deterministic per seed.
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A sine series: `level + amp·sin(2π·i/period + phase) + noise·[-1, 1)`.
#[derive(Clone, Copy, Debug)]
struct Sine {
    start_ms: u64,
    step_ms: u64,
    period: f64,
    phase: f64,
    amp: f64,
    level: f64,
    noise: f64,
    samples: u64,
}

impl Sine {
    /// The issue's repro: period 188 samples at 1 Hz, small amplitude, an
    /// hour boundary crossed 50 s in.
    const REPRO: Sine = Sine {
        start_ms: HOUR_BOUNDARY_MS - 50_000 + 321,
        step_ms: 1_000,
        period: 188.0,
        phase: 0.0,
        amp: 0.5,
        level: 0.0,
        noise: 0.0,
        samples: 3_000,
    };
}

/// Every `(sample index, score)` at or above the alert threshold after the
/// ensemble's warm-up.
fn alarms(config: EnsembleConfig, s: Sine) -> Vec<(u64, f64)> {
    let mut ensemble = Ensemble::new(config);
    let mut noise = Noise(0x5eed ^ s.start_ms);
    let mut out = Vec::new();
    for i in 0..s.samples {
        let t = Timestamp::from_millis(s.start_ms + i * s.step_ms);
        let angle = core::f64::consts::TAU * i as f64 / s.period + s.phase;
        let x = s.level + s.amp * angle.sin() + s.noise * noise.next();
        let score = ensemble.step(t, x);
        if i >= u64::from(config.warmup) && score >= DEFAULT_ALERT_THRESHOLD {
            out.push((i, score));
        }
    }
    out
}

fn no_recurring() -> EnsembleConfig {
    EnsembleConfig {
        recurring_weight: 0.0,
        ..EnsembleConfig::DEFAULT
    }
}

#[test]
fn issue_7_repro_does_not_alarm() {
    for config in [no_recurring(), EnsembleConfig::DEFAULT] {
        assert_eq!(alarms(config, Sine::REPRO), [], "{config:?}");
    }
}

#[test]
fn other_periods_offsets_and_amplitudes_do_not_alarm() {
    for period in [60.0, 100.0, 188.0, 301.0, 1_000.0] {
        for before_boundary_s in [0, 50, 120, 1_000, 3_599] {
            for (amp, level, noise) in [(0.5, 0.0, 0.0), (0.01, 20.0, 0.0), (3.0, -7.0, 0.001)] {
                let s = Sine {
                    start_ms: HOUR_BOUNDARY_MS - before_boundary_s * 1_000 + 321,
                    period,
                    amp,
                    level,
                    noise,
                    ..Sine::REPRO
                };
                assert_eq!(alarms(no_recurring(), s), [], "{s:?}");
            }
        }
    }
}

#[test]
fn crossing_a_day_boundary_does_not_alarm() {
    let s = Sine {
        start_ms: DAY_BOUNDARY_MS - 50_000 + 321,
        ..Sine::REPRO
    };
    assert_eq!(alarms(no_recurring(), s), []);
}

/// Two days at 1 Hz: on the second day every hour-of-day slot has earlier
/// visits, so the seasonal profile predicts, and each hour boundary switches
/// it to another slot. Before the fix each of those switches alarmed.
#[test]
fn two_days_at_one_hertz_do_not_alarm() {
    for (period, noise) in [(188.0, 0.0), (997.0, 0.002)] {
        let s = Sine {
            start_ms: DAY_BOUNDARY_MS - 5 * 3_600_000 - 50_000 + 321,
            period,
            noise,
            samples: 2 * 86_400 + 3_600,
            ..Sine::REPRO
        };
        assert_eq!(alarms(no_recurring(), s), [], "{s:?}");
        assert_eq!(alarms(EnsembleConfig::DEFAULT, s), [], "{s:?}");
    }
}

/// The same pipeline still sees a real anomaly in such a series, so the
/// tests above are not passing because the ensemble went deaf.
#[test]
fn a_spike_in_the_sine_still_alarms() {
    let mut ensemble = Ensemble::new(no_recurring());
    let s = Sine::REPRO;
    let mut spike = 0.0;
    for i in 0..s.samples {
        let t = Timestamp::from_millis(s.start_ms + i * s.step_ms);
        let x = s.amp * (core::f64::consts::TAU * i as f64 / s.period).sin();
        let x = if i == 2_500 { x + 5.0 } else { x };
        let score = ensemble.step(t, x);
        if i == 2_500 {
            spike = score;
        }
    }
    assert!(spike >= DEFAULT_ALERT_THRESHOLD, "{spike}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A smooth sinusoid with any period, phase, amplitude, level, start
    /// time and sample spacing never alarms once the ensemble is warm.
    #[test]
    fn smooth_sinusoid_never_alarms(
        period in 20.0..3_000.0f64,
        phase in 0.0..core::f64::consts::TAU,
        amp in 1e-3..1e3f64,
        level in -1e3..1e3f64,
        start_ms in 1_600_000_000_000u64..1_900_000_000_000,
        step_ms in prop_oneof![Just(1_000u64), Just(5_000), 100u64..30_000],
        recurring in prop_oneof![Just(0.0f32), Just(1.0)],
    ) {
        let s = Sine { start_ms, step_ms, period, phase, amp, level, noise: 0.0, samples: 4_000 };
        let config = EnsembleConfig { recurring_weight: recurring, ..EnsembleConfig::DEFAULT };
        prop_assert_eq!(alarms(config, s), vec![], "{:?}", s);
    }
}
