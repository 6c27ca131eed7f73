//! Seasonal baseline: hour-of-day and hour-of-week profiles.

use super::{Detector, Ewma, z_score_to_surprise};
use crate::ids::Timestamp;

const HOUR_MS: u64 = 3_600_000;
const DAY_SLOTS: usize = 24;
const WEEK_SLOTS: usize = 7 * 24;
/// 1970-01-01 was a Thursday; shifting by three days makes slot 0 Monday 00:00 UTC.
const WEEK_OFFSET_HOURS: u64 = 3 * 24;

/// One EWMA mean per coarse time slot, as `f32` to keep the state small.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Profile<const S: usize> {
    mean: [f32; S],
    count: [u8; S],
}

impl<const S: usize> Profile<S> {
    const NEW: Self = Profile {
        mean: [0.0; S],
        count: [0; S],
    };

    /// The slot's mean, if it has seen at least `warmup` samples (the count
    /// saturates at 255).
    fn get(&self, slot: usize, warmup: u8) -> Option<f64> {
        let n = *self.count.get(slot)?;
        let m = *self.mean.get(slot)?;
        (n >= warmup.max(1)).then_some(f64::from(m))
    }

    fn update(&mut self, slot: usize, x: f64, alpha: f64) {
        let (Some(m), Some(n)) = (self.mean.get_mut(slot), self.count.get_mut(slot)) else {
            return;
        };
        let w = alpha.max(1.0 / (f64::from(*n) + 1.0));
        let new = (f64::from(*m) + w * (x - f64::from(*m))) as f32;
        if new.is_finite() {
            *m = new;
            *n = n.saturating_add(1);
        }
    }
}

/// Learns what is normal at each hour of the day (24 slots) and each hour of
/// the week (7 × 24 slots, Monday 00:00 UTC first), each an EWMA of the
/// samples falling in it, keyed by the sample's timestamp. A sample is
/// compared with its hour-of-week mean once that slot has `warmup` samples
/// from earlier visits (samples from the current hour do not count, so the
/// baseline is last day's or last week's, never the last few minutes'), else
/// with its hour-of-day mean on the same terms; the residual is scored by its
/// z-score against an EWMA of past residuals.
///
/// Slots are one hour wide, so within-hour variation (the slope of a daily
/// cycle across an hour) stays in the residual; for a slowly varying profile
/// that is small. [`Seasonal::residual_ratio`] tells how much of the series'
/// variance the profile explains. Outputs `0` until a slot and 30 residuals
/// have been learned.
///
/// ```
/// use tributary_core::detect::{Detector, Seasonal};
/// use tributary_core::ids::Timestamp;
///
/// let mut s = Seasonal::default();
/// let day = |i: u64| if (i / 12) % 24 < 12 { 10.0 } else { 20.0 }; // 5-min samples
/// for i in 0..12 * 24 * 14 {
///     s.step(Timestamp(i * 300_000), day(i) + (i % 3) as f64 * 0.1);
/// }
/// let i = 12 * 24 * 14; // midnight: the profile says 10
/// assert!(s.step(Timestamp(i * 300_000), 20.0) > 0.999);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seasonal {
    alpha: f64,
    residuals: Ewma,
    raw: Ewma,
    day: Profile<DAY_SLOTS>,
    week: Profile<WEEK_SLOTS>,
    /// The hour (since the epoch) of the latest sample, and how many samples
    /// fell in it: those do not count towards a slot's warm-up, so a slot
    /// predicts from earlier days or weeks, never from the last few minutes.
    hour: u64,
    in_hour: u8,
    warmup: u8,
}

impl Seasonal {
    /// State size in bytes (`size_of::<Seasonal>()`).
    pub const STATE_BYTES: usize = 1032;

    /// Residual z-scores are silent until this many residuals were seen.
    const RESIDUAL_WARMUP: u32 = 30;

    /// A detector whose slots learn with EWMA weight `alpha` and are trusted
    /// after `warmup` samples from earlier visits.
    pub const fn new(alpha: f64, warmup: u8) -> Self {
        Seasonal {
            alpha,
            residuals: Ewma::NEW,
            raw: Ewma::NEW,
            day: Profile::NEW,
            week: Profile::NEW,
            hour: u64::MAX,
            in_hour: 0,
            warmup,
        }
    }

    /// The profile's prediction for time `t`, once learned.
    pub fn expected(&self, t: Timestamp) -> Option<f64> {
        let hours = t.as_millis() / HOUR_MS;
        let week_slot = ((hours + WEEK_OFFSET_HOURS) % WEEK_SLOTS as u64) as usize;
        let day_slot = (hours % DAY_SLOTS as u64) as usize;
        let this_visit = if hours == self.hour { self.in_hour } else { 0 };
        let need = self.warmup.max(1).saturating_add(this_visit);
        self.week
            .get(week_slot, need)
            .or_else(|| self.day.get(day_slot, need))
    }

    /// Residual variance over raw variance (EWMA estimates): near 0 when the
    /// daily/weekly profile explains the series, about 1 or more when it
    /// does not. `1` before anything is learned.
    pub fn residual_ratio(&self) -> f64 {
        if self.residuals.n < Self::RESIDUAL_WARMUP || self.raw.var <= 0.0 {
            return 1.0;
        }
        let r = self.residuals.var / self.raw.var;
        if r.is_finite() { r } else { 1.0 }
    }

    /// Scores `x` at `t` and learns it; returns the residual's signed
    /// z-score (`0` while not learned or for non-finite `x`).
    pub fn step_z(&mut self, t: Timestamp, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        let mut z = 0.0;
        if let Some(expected) = self.expected(t) {
            let r = x - expected;
            if r.is_finite() {
                if self.residuals.n >= Self::RESIDUAL_WARMUP {
                    z = self.residuals.z(r);
                }
                self.residuals.update(r, 0.01, 4.0);
            }
        }
        self.raw.update(x, 0.01, 0.0);
        let hours = t.as_millis() / HOUR_MS;
        let week_slot = ((hours + WEEK_OFFSET_HOURS) % WEEK_SLOTS as u64) as usize;
        let day_slot = (hours % DAY_SLOTS as u64) as usize;
        self.day.update(day_slot, x, self.alpha);
        self.week.update(week_slot, x, self.alpha);
        if hours == self.hour {
            self.in_hour = self.in_hour.saturating_add(1);
        } else {
            self.hour = hours;
            self.in_hour = 1;
        }
        z
    }
}

impl Default for Seasonal {
    /// `alpha = 0.1`, `warmup = 2`.
    fn default() -> Self {
        Self::new(0.1, 2)
    }
}

impl Detector for Seasonal {
    fn step_surprise(&mut self, t: Timestamp, x: f64) -> f64 {
        z_score_to_surprise(self.step_z(t, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{Noise, check_arbitrary, check_contract, samples};
    use proptest::prelude::*;

    const FIVE_MIN: u64 = 300_000;

    fn daily_sine(i: u64) -> f64 {
        let phase = (i % 288) as f64 / 288.0 * core::f64::consts::TAU;
        50.0 + 20.0 * libm::sin(phase)
    }

    #[test]
    fn state_size_is_documented() {
        assert_eq!(core::mem::size_of::<Seasonal>(), Seasonal::STATE_BYTES);
    }

    #[test]
    fn learns_a_daily_sine_and_flags_a_deviation_at_the_same_hour() {
        let mut s = Seasonal::default();
        let mut noise = Noise(12);
        let days = 14;
        let mut last_day = std::vec::Vec::new();
        for i in 0..288 * days {
            let score = s.step(Timestamp(i * FIVE_MIN), daily_sine(i) + noise.next());
            if i >= 288 * (days - 1) {
                last_day.push(score);
            }
        }
        assert!(s.residual_ratio() < 0.1, "{}", s.residual_ratio());
        // A normal day is quiet.
        assert!(last_day.iter().all(|&x| x < 0.9999));
        // Same hour (06:00, the sine's peak), a value that would be normal at
        // 18:00 (the trough) is flagged.
        let i = 288 * days + 72;
        assert!(s.step(Timestamp(i * FIVE_MIN), 30.0) > 0.9999);
    }

    #[test]
    fn never_predicts_from_the_current_hour_alone() {
        let mut s = Seasonal::default();
        for i in 0..12 {
            s.step(Timestamp(i * FIVE_MIN), 5.0);
        }
        assert_eq!(s.expected(Timestamp(11 * FIVE_MIN)), None);
        // The next day, the same hour has two earlier samples and more.
        assert_eq!(s.expected(Timestamp(288 * FIVE_MIN)), Some(5.0));
    }

    #[test]
    fn weekly_slot_overrides_daily() {
        let mut s = Seasonal::default();
        // Weekends (Saturday, Sunday) are at 0, weekdays at 100.
        let level = |i: u64| {
            let day = (i / 24 + 3) % 7; // hourly samples, 0 = Monday
            if day >= 5 { 0.0 } else { 100.0 }
        };
        let mut noise = Noise(4);
        for i in 0..24 * 7 * 6 {
            s.step(Timestamp(i * HOUR_MS), level(i) + noise.next());
        }
        let t = 24 * 7 * 6;
        assert_eq!(
            s.expected(Timestamp(t * HOUR_MS)).map(|e| e.round()),
            Some(level(t))
        );
    }

    #[test]
    fn contract() {
        let mut noise = Noise(13);
        let xs: std::vec::Vec<f64> = (0..600).map(|i| daily_sine(i) + noise.next()).collect();
        check_contract(Seasonal::default(), &xs);
    }

    proptest! {
        #[test]
        fn arbitrary_input_keeps_scores_in_range(xs in samples()) {
            check_arbitrary(Seasonal::default(), &xs);
        }
    }
}
