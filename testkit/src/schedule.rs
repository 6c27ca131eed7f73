//! Seeded fault schedules for [`crate::FaultProxy::run_schedule`].
//!
//! The sequence of faults is a pure function of the seed, so a failing run
//! can be replayed by printing the seed (as the sync simulator does with
//! `SIM_SEED`). Wall-clock interleaving with the processes under test is of
//! course not reproducible; the schedule only removes one source of
//! randomness.

use std::time::Duration;

use crate::Mode;

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast, well-mixed PRNG.
/// Enough for fault schedules; pulling in `rand` for this is not worth it.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed` (any value, including 0).
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0). The modulo bias is below 2^-32
    /// for the small `n` used here.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A duration uniformly in `min..=max` at millisecond resolution
    /// (`min` when `max <= min`).
    pub fn duration_between(&mut self, min: Duration, max: Duration) -> Duration {
        let (lo, hi) = (min.as_millis() as u64, max.as_millis() as u64);
        if hi <= lo {
            return min;
        }
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// One step of a fault schedule: put the proxy in `mode` (after dropping
/// every connection if `drop_connections`) and keep it there for `hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The mode for this step.
    pub mode: Mode,
    /// Close all current connections first (clients must reconnect).
    pub drop_connections: bool,
    /// How long the step lasts.
    pub hold: Duration,
}

/// A deterministic schedule of `steps` steps drawn from `seed`: faulty
/// steps (a mode drawn from `faults`, a connection drop with probability
/// 1/4) alternate with `Pass` steps so that progress is possible between
/// faults; every hold is drawn from `min_hold..=max_hold`. The last step
/// is always `Pass`, so the system under test can converge afterwards.
///
/// An empty `faults` yields only drops and `Pass`.
pub fn schedule(
    seed: u64,
    steps: usize,
    faults: &[Mode],
    min_hold: Duration,
    max_hold: Duration,
) -> Vec<Step> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(steps);
    for i in 0..steps {
        let last = i + 1 == steps;
        let faulty = i % 2 == 0 && !last;
        let mode = if faulty {
            let pick = rng.below(faults.len() as u64) as usize;
            faults.get(pick).copied().unwrap_or(Mode::Pass)
        } else {
            Mode::Pass
        };
        // Always draw, so the hold sequence does not depend on `faults`.
        let drop_draw = rng.below(4) == 0;
        out.push(Step {
            mode,
            drop_connections: faulty && (drop_draw || faults.is_empty()),
            hold: rng.duration_between(min_hold, max_hold),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // First outputs for seed 1234567 of the reference C implementation
        // (https://prng.di.unimi.it/splitmix64.c).
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
        assert_eq!(rng.next_u64(), 9817491932198370423);
    }

    #[test]
    fn same_seed_same_schedule_other_seed_other_schedule() {
        let faults = [Mode::Partition, Mode::Blackhole];
        let ms = Duration::from_millis;
        let a = schedule(7, 20, &faults, ms(10), ms(500));
        assert_eq!(a, schedule(7, 20, &faults, ms(10), ms(500)));
        assert_ne!(a, schedule(8, 20, &faults, ms(10), ms(500)));
        assert_eq!(a.len(), 20);
        assert!(a.iter().all(|s| (ms(10)..=ms(500)).contains(&s.hold)));
        assert_eq!(a.last().map(|s| s.mode), Some(Mode::Pass));
        assert!(a.iter().skip(1).step_by(2).all(|s| s.mode == Mode::Pass));
        assert!(a.iter().any(|s| s.mode == Mode::Partition));
        assert!(a.iter().any(|s| s.mode == Mode::Blackhole));
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert!(schedule(1, 0, &[], Duration::ZERO, Duration::ZERO).is_empty());
        let only_drops = schedule(1, 3, &[], Duration::from_secs(1), Duration::ZERO);
        assert!(only_drops.iter().all(|s| s.mode == Mode::Pass));
        assert!(only_drops[0].drop_connections);
        assert!(only_drops.iter().all(|s| s.hold == Duration::from_secs(1)));
        assert_eq!(SplitMix64::new(0).below(0), 0);
    }
}
