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
    alarms_from(config, s, u64::from(config.warmup))
}

/// Every `(sample index, score)` at or above the alert threshold from
/// sample `from` on.
fn alarms_from(config: EnsembleConfig, s: Sine, from: u64) -> Vec<(u64, f64)> {
    let mut ensemble = Ensemble::new(config);
    let mut noise = Noise(0x5eed ^ s.start_ms);
    let mut out = Vec::new();
    for i in 0..s.samples {
        let t = Timestamp::from_millis(s.start_ms + i * s.step_ms);
        let angle = core::f64::consts::TAU * i as f64 / s.period + s.phase;
        let x = s.level + s.amp * angle.sin() + s.noise * noise.next();
        let score = ensemble.step(t, x);
        if i >= from && score >= DEFAULT_ALERT_THRESHOLD {
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
    }
}

/// A smooth sine at 1 Hz with a period of 40 samples: the discount cancels
/// most of its surprise.
const DISCOUNTED_SINE: Sine = Sine {
    period: 40.0,
    amp: 0.001,
    start_ms: 1_600_000_000_000,
    samples: 4_000,
    ..Sine::REPRO
};

/// With the recurring-hour discount on (the default), the discount drives
/// the combined surprise of a periodic series (a Page-Hinkley peak every
/// cycle) to exactly 0 for most samples. Before the fix the long-run
/// reference of the normalisation step learned those zeros, its variance
/// collapsed, and the next peak a fraction of a nat above the remembered one
/// (or the first peak in a new hour of the day) scored a z in the tens, so
/// most smooth sines alarmed, at any sample rate. The reference's deviation
/// is now floored at `norm_floor` times the mean undiscounted surprise.
#[test]
fn smooth_sine_with_the_recurring_discount_does_not_alarm() {
    assert_eq!(alarms(EnsembleConfig::DEFAULT, DISCOUNTED_SINE), []);
}

/// The floor is what fixes it: without it the same sine alarms again, so
/// the test above is not passing by accident of tuning.
#[test]
fn without_the_normalisation_floor_the_discounted_sine_alarms() {
    let s = DISCOUNTED_SINE;
    let config = EnsembleConfig {
        norm_floor: 0.0,
        ..EnsembleConfig::DEFAULT
    };
    assert_ne!(alarms(config, s), []);
}

/// The same pipeline still sees a real anomaly in such a series, so the
/// tests above are not passing because the ensemble went deaf.
#[test]
fn a_spike_in_the_sine_still_alarms() {
    for config in [no_recurring(), EnsembleConfig::DEFAULT] {
        for spike_at in [2_500, 2_950] {
            let mut ensemble = Ensemble::new(config);
            let s = Sine::REPRO;
            let mut spike = 0.0;
            for i in 0..s.samples {
                let t = Timestamp::from_millis(s.start_ms + i * s.step_ms);
                let x = s.amp * (core::f64::consts::TAU * i as f64 / s.period).sin();
                let x = if i == spike_at { x + 5.0 } else { x };
                let score = ensemble.step(t, x);
                if i == spike_at {
                    spike = score;
                }
            }
            assert!(
                spike >= DEFAULT_ALERT_THRESHOLD,
                "{spike} at {spike_at}, {config:?}"
            );
        }
    }
}

/// Every score of `s` under `config`.
fn scores(config: EnsembleConfig, s: Sine) -> Vec<f64> {
    let mut ensemble = Ensemble::new(config);
    let mut noise = Noise(0x5eed);
    (0..s.samples)
        .map(|i| {
            let t = Timestamp::from_millis(s.start_ms + i * s.step_ms);
            let angle = core::f64::consts::TAU * i as f64 / s.period + s.phase;
            ensemble.step(t, s.level + s.amp * angle.sin() + s.noise * noise.next())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The root of issue #7, as a property: on a stream's first day no
    /// hour-of-day or hour-of-week slot has an earlier visit, so the seasonal
    /// profile must not predict at all, and with the recurring discount off
    /// nothing else in the ensemble reads the clock. So moving the whole
    /// series in time (across any hour or day boundary) must not change a
    /// single score. Before the fix the profile began predicting 255 samples
    /// into any hour, at a sample that depended on where the hours fell.
    #[test]
    fn first_day_scores_do_not_depend_on_the_clock(
        period in 20.0..3_000.0f64,
        phase in 0.0..core::f64::consts::TAU,
        amp in 1e-3..1e3f64,
        noise in prop_oneof![Just(0.0), 1e-4..1e-2f64],
        start_ms in 1_600_000_000_000u64..1_900_000_000_000,
        shift_ms in 1u64..7 * 86_400_000,
        step_ms in prop_oneof![Just(1_000u64), Just(5_000), 100u64..30_000],
    ) {
        // Stay within 23 hours, so the shifted copy is on its first day too.
        let samples = (23 * 3_600_000 / step_ms).min(3_000);
        let s = Sine { start_ms, step_ms, period, phase, amp, level: 0.0, noise: noise * amp, samples };
        let moved = Sine { start_ms: start_ms + shift_ms, ..s };
        let a = scores(no_recurring(), s);
        let b = scores(no_recurring(), moved);
        let first_difference = a.iter().zip(&b).position(|(x, y)| x.to_bits() != y.to_bits());
        prop_assert_eq!(first_difference, None, "{:?} moved by {} ms", s, shift_ms);
    }

    /// Issue #7 under the defaults: a smooth sine of any period, amplitude,
    /// phase, level and sample rate, started anywhere on the clock (so it
    /// crosses hour boundaries, and a day boundary at most once), never
    /// reaches the alert threshold once the ensemble has warmed up.
    ///
    /// It stays within 23 hours: from the second day on, the seasonal
    /// profile of a sine whose period nearly divides a day (4.9 cycles a
    /// day, say) fits well enough to count and then drifts out of phase,
    /// which can alarm (about 1 case in 3 000 here); that is the seasonal
    /// model's limit, not issue #7. The two-day tests above cover day two.
    #[test]
    fn smooth_sines_never_alarm_under_the_defaults(
        period in 10.0..1_000.0f64,
        phase in 0.0..core::f64::consts::TAU,
        amp in 1e-3..1e3f64,
        level in -1e3..1e3f64,
        start_ms in 1_600_000_000_000u64..1_900_000_000_000,
        step_ms in prop_oneof![Just(1_000u64), Just(60_000), 100u64..120_000],
    ) {
        let samples = (23 * 3_600_000 / step_ms).min(4_000);
        let s = Sine { start_ms, step_ms, period, phase, amp, level, noise: 0.0, samples };
        let found = alarms(EnsembleConfig::DEFAULT, s);
        prop_assert_eq!(found.first(), None, "{:?}: {} alarms", s, found.len());
    }
}
