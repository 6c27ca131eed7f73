//! Seasonal baseline: hour-of-day and hour-of-week profiles.

use super::{Detector, Ewma, z_score_to_surprise};
use crate::ids::Timestamp;

const HOUR_MS: u64 = 3_600_000;
const DAY_SLOTS: usize = 24;
const WEEK_SLOTS: usize = 7 * 24;
/// 1970-01-01 was a Thursday; shifting by three days makes slot 0 Monday 00:00 UTC.
const WEEK_OFFSET_HOURS: u64 = 3 * 24;
/// The detector learns as if sampled at most once per this interval: a sample
/// closer to the previous one counts for its share of a whole one in the
/// slots, and the residual and raw spreads learn once per interval. Five
/// minutes is the spacing the defaults were tuned at (most of NAB), so a slot
/// remembers about `1/alpha` × 5 min (50 min by default) at any sample rate.
const LEARN_INTERVAL_MS: u64 = 300_000;

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

    /// How many samples the slot has learned (saturating at 255; 0 for a
    /// slot out of range).
    fn count(&self, slot: usize) -> u8 {
        self.count.get(slot).copied().unwrap_or(0)
    }

    /// The slot's mean (`None` for a slot out of range).
    fn mean(&self, slot: usize) -> Option<f64> {
        self.mean.get(slot).map(|&m| f64::from(m))
    }

    /// Folds `x` in with weight `max(alpha, 1/(n+1))·share`, where `share`
    /// in `[0, 1]` is the part of a full sample this one stands for (the
    /// first sample of a slot always takes it whole).
    fn update(&mut self, slot: usize, x: f64, alpha: f64, share: f64) {
        let (Some(m), Some(n)) = (self.mean.get_mut(slot), self.count.get_mut(slot)) else {
            return;
        };
        let w = if *n == 0 {
            1.0
        } else {
            alpha.max(1.0 / (f64::from(*n) + 1.0)) * share
        };
        let new = (f64::from(*m) + w * (x - f64::from(*m))) as f32;
        if new.is_finite() {
            *m = new;
            *n = n.saturating_add(1);
        }
    }
}

/// Learns what is normal at each hour of the day (24 slots) and each hour of
/// the week (7 × 24 slots, Monday 00:00 UTC first), each an EWMA of the
/// samples falling in it, keyed by the sample's timestamp. It learns as if
/// sampled at most once per 5 minutes (closer samples count for their share
/// of time), so it behaves the same at 1 Hz as at the 5-minute spacing its
/// defaults were tuned at. A sample is
/// compared with its hour-of-week mean once that slot has `warmup` samples
/// from earlier visits (samples from the current hour do not count, so the
/// baseline is last day's or last week's, never the last few minutes'), else
/// with its hour-of-day mean on the same terms; the residual is scored by its
/// z-score against an EWMA of past residuals, which starts from the raw
/// spread (the profile explains nothing until shown otherwise).
///
/// Slots are one hour wide, so within-hour variation (the slope of a daily
/// cycle across an hour) stays in the residual; for a slowly varying profile
/// that is small. [`Seasonal::residual_ratio`] tells how much of the series'
/// variance the profile explains. Outputs `0` until a slot and 30 residuals
/// (one per 5 minutes at most) have been learned.
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
    /// The latest sample's time in ms (meaningful once `seen`).
    last: u64,
    seen: bool,
    /// Shares of a whole sample (see [`LEARN_INTERVAL_MS`]) since the
    /// spreads last learned.
    pending: f32,
    /// The day and week slots' sample counts for the latest sample's hour as
    /// they were before its first sample: only those earlier visits count
    /// towards a slot's warm-up, so a slot predicts from earlier days or
    /// weeks, never from the last few minutes.
    ///
    /// Why counts at the visit's start rather than "count minus samples in
    /// this hour": both saturate at 255, so on a stream with more than 255
    /// samples an hour (one every 14 s) the subtraction stopped excluding the
    /// current visit, and 255 samples into any hour a never-seen slot began
    /// predicting from its own last few samples (issue #7's false alarm about
    /// 300 samples after the series started or crossed an hour). A snapshot
    /// taken before the visit cannot saturate into a wrong answer.
    day_before: u8,
    week_before: u8,
    warmup: u8,
}

impl Seasonal {
    /// State size in bytes (`size_of::<Seasonal>()`).
    pub const STATE_BYTES: usize = 1032;

    /// Residual z-scores are silent until this many residuals were seen.
    const RESIDUAL_WARMUP: u32 = 30;

    /// How many residuals the prior on the residual spread weighs: the
    /// residual EWMA's `1/alpha`, so the prior fades like any old residual,
    /// by 1 % per learned residual.
    const RESIDUAL_PRIOR: u32 = 100;

    /// A detector whose slots learn with EWMA weight `alpha` and are trusted
    /// after `warmup` samples from earlier visits.
    pub const fn new(alpha: f64, warmup: u8) -> Self {
        Seasonal {
            alpha,
            residuals: Ewma::NEW,
            raw: Ewma::NEW,
            day: Profile::NEW,
            week: Profile::NEW,
            last: 0,
            seen: false,
            pending: 0.0,
            day_before: 0,
            week_before: 0,
            warmup,
        }
    }

    /// Whether hour `hours` (since the epoch) is the latest sample's.
    fn in_latest_hour(&self, hours: u64) -> bool {
        self.seen && self.last / HOUR_MS == hours
    }

    /// The profile's prediction for time `t`, once learned.
    pub fn expected(&self, t: Timestamp) -> Option<f64> {
        let hours = t.as_millis() / HOUR_MS;
        let week_slot = ((hours + WEEK_OFFSET_HOURS) % WEEK_SLOTS as u64) as usize;
        let day_slot = (hours % DAY_SLOTS as u64) as usize;
        let need = self.warmup.max(1);
        // In the hour being visited, judge warm-up by the counts before the
        // visit; any other hour has no samples of this visit in its slots.
        let (week_n, day_n) = if self.in_latest_hour(hours) {
            (self.week_before, self.day_before)
        } else {
            (self.week.count(week_slot), self.day.count(day_slot))
        };
        let week = (week_n >= need)
            .then(|| self.week.mean(week_slot))
            .flatten();
        week.or_else(|| (day_n >= need).then(|| self.day.mean(day_slot)).flatten())
    }

    /// Residual variance over raw variance (EWMA estimates): near 0 when the
    /// daily/weekly profile explains the series, about 1 or more when it
    /// does not. `1` before anything is learned.
    pub fn residual_ratio(&self) -> f64 {
        if self.residuals.n < Self::RESIDUAL_PRIOR + Self::RESIDUAL_WARMUP || self.raw.var <= 0.0 {
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
        // The part of a whole sample this one stands for: 1 at one sample per
        // `LEARN_INTERVAL_MS` or slower, the elapsed share of it above that
        // rate (0 for a repeated or earlier timestamp).
        let share = if self.seen {
            let dt = t.as_millis().saturating_sub(self.last);
            (dt as f64 / LEARN_INTERVAL_MS as f64).min(1.0)
        } else {
            1.0
        };
        // Why the spreads learn once per interval rather than per sample:
        // the raw spread's memory (1/0.01 samples) would be 100 s at 1 Hz, a
        // fraction of a slow cycle, and the residuals' warm-up 30 s; both
        // then see a smooth series as nearly constant.
        self.pending = (self.pending + share as f32).min(1.0);
        let learn_spread = self.pending >= 1.0;
        if learn_spread {
            self.pending = 0.0;
        }
        let mut z = 0.0;
        if let Some(expected) = self.expected(t) {
            let r = x - expected;
            if r.is_finite() {
                if self.residuals.n == 0 {
                    // Start from "the profile explains nothing": residual
                    // spread = raw spread, weighing like a full EWMA memory.
                    // Why: estimated from scratch, the spread of the first
                    // 30 residuals of a smooth series (2.5 hours at 5-minute
                    // samples) is far below what the rest of its cycle
                    // brings, so the gate opened on a profile that explained
                    // nothing and the next ordinary residual scored a huge z
                    // (issue #7: most smooth sines alarmed once on their
                    // second day). Real evidence has to outweigh the prior.
                    self.residuals = Ewma {
                        mean: 0.0,
                        var: self.raw.var,
                        n: Self::RESIDUAL_PRIOR,
                    };
                }
                if self.residuals.n >= Self::RESIDUAL_PRIOR + Self::RESIDUAL_WARMUP {
                    z = self.residuals.z(r);
                }
                if learn_spread {
                    self.residuals.update(r, 0.01, 4.0);
                }
            }
        }
        if learn_spread {
            self.raw.update(x, 0.01, 0.0);
        }
        let hours = t.as_millis() / HOUR_MS;
        let week_slot = ((hours + WEEK_OFFSET_HOURS) % WEEK_SLOTS as u64) as usize;
        let day_slot = (hours % DAY_SLOTS as u64) as usize;
        if !self.in_latest_hour(hours) {
            self.day_before = self.day.count(day_slot);
            self.week_before = self.week.count(week_slot);
        }
        // Why a share of time and not a fixed weight per sample: with `alpha`
        // per sample a slot forgets all but its last ~1/alpha samples, which
        // at 1 Hz is the last 10 seconds of the hour, not the hour: the
        // profile became a short moving average that "explained" any smooth
        // series (so the gate let it count), predicted each new hour from
        // the last seconds of yesterday's, and raised a near-certain alarm at
        // every hour boundary from the second day on (issue #7). Capping the
        // learning at `alpha` per 5 minutes keeps a slot's memory most of an
        // hour long at any rate; at one sample per 5 minutes or slower (most
        // of NAB) every sample is whole, as before.
        self.day.update(day_slot, x, self.alpha, share);
        self.week.update(week_slot, x, self.alpha, share);
        self.last = t.as_millis();
        self.seen = true;
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
    fn never_predicts_from_the_current_hour_even_past_255_samples() {
        // Issue #7: the in-hour sample count saturated at 255 together with
        // the slot's own count, so 255 samples into a never-seen hour the
        // slot began predicting from itself.
        let mut s = Seasonal::default();
        for i in 0..3_600 {
            let t = Timestamp(i * 1_000);
            assert_eq!(s.expected(t), None, "sample {i}");
            s.step(t, 5.0);
        }
        // The next hour was never visited either; the first one was.
        assert_eq!(s.expected(Timestamp(3_600_000)), None);
        assert!(s.expected(Timestamp(86_400_000)).is_some());
    }

    #[test]
    fn a_fast_stream_remembers_the_hour_not_its_last_seconds() {
        // 50 minutes at 0 then 10 minutes at 10, one sample a second: the
        // slot weighs time as at 5-minute samples, so it holds mostly the
        // 50 minutes (per-sample weights would leave only the last ~10 s).
        let mut s = Seasonal::default();
        for i in 0..3_600u64 {
            s.step(Timestamp(i * 1_000), if i < 3_000 { 0.0 } else { 10.0 });
        }
        let next_day = s.expected(Timestamp(86_400_000));
        assert!(matches!(next_day, Some(m) if m < 3.0), "{next_day:?}");
    }

    #[test]
    fn a_cycle_the_day_does_not_explain_keeps_the_gate_shut_on_day_two() {
        // A smooth 200-sample (16 h 40 min) sine at 5-minute samples: the
        // hour-of-day profile cannot explain it, since it does not repeat
        // daily. Before the residual spread started from the raw spread,
        // its first 30 residuals (2.5 h of a smooth curve) made the profile
        // look like a good fit (ratio about 0.3) on the second day.
        let mut s = Seasonal::default();
        let x = |i: u64| libm::sin(i as f64 * core::f64::consts::TAU / 200.0);
        for i in 0..600 {
            s.step(Timestamp(i * FIVE_MIN), x(i));
            if i > 288 {
                assert!(s.residual_ratio() > 0.6, "{i}: {}", s.residual_ratio());
            }
        }
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
