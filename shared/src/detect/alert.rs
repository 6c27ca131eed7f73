//! Alert state with hysteresis: turns a stream of scores into open / resolved
//! events, so a noisy sensor hovering around the threshold raises one alert,
//! not one per sample.
//!
//! An alert **opens** when a score reaches `open`. It stays open while scores
//! keep reaching `close` (below `open`: the hysteresis band), and
//! **resolves** once `clear_after` consecutive samples have scored below
//! `close`. So two alerts of one stream are always at least `clear_after`
//! samples apart, which bounds the alert rate whatever the sensor does.
//!
//! ```
//! use tributary_core::detect::{AlertEvent, AlertPolicy, AlertState};
//! use tributary_core::ids::Timestamp;
//!
//! let policy = AlertPolicy { open: 0.8, close: 0.5, clear_after: 3 };
//! let mut state = AlertState::new();
//! let scores = [0.1, 0.9, 0.6, 0.85, 0.2, 0.2, 0.2, 0.1];
//! let events: Vec<_> = scores
//!     .iter()
//!     .enumerate()
//!     .filter_map(|(i, &s)| state.step(&policy, Timestamp(i as u64), s))
//!     .collect();
//! assert_eq!(events, [
//!     AlertEvent::Opened { at: Timestamp(1), score: 0.9 },
//!     AlertEvent::Resolved { opened_at: Timestamp(1), at: Timestamp(6), peak: 0.9 },
//! ]);
//! ```

use super::DEFAULT_ALERT_THRESHOLD;
use crate::ids::Timestamp;

/// When alerts open and resolve. `close` above `open` is treated as `open`
/// (no band), so a misconfiguration cannot keep an alert open forever.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlertPolicy {
    /// Score at or above which an alert opens.
    pub open: f64,
    /// Score at or above which an open alert counts as still active.
    pub close: f64,
    /// Consecutive samples below `close` that resolve an open alert.
    pub clear_after: u16,
}

impl AlertPolicy {
    /// Opens at [`DEFAULT_ALERT_THRESHOLD`], stays open down to 0.5, resolves
    /// after 30 calm samples (half a minute at 1 Hz, half an hour per minute).
    pub const DEFAULT: AlertPolicy = AlertPolicy {
        open: DEFAULT_ALERT_THRESHOLD,
        close: 0.5,
        clear_after: 30,
    };
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy::DEFAULT
    }
}

/// A change of a stream's alert state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AlertEvent {
    /// An alert opened.
    Opened {
        /// When (the sample's time).
        at: Timestamp,
        /// The score that opened it.
        score: f64,
    },
    /// The open alert resolved.
    Resolved {
        /// When it opened.
        opened_at: Timestamp,
        /// The sample that resolved it.
        at: Timestamp,
        /// The highest score while it was open.
        peak: f64,
    },
}

/// One stream's alert state: 32 bytes, `Copy`, no heap.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AlertState {
    open: Option<Timestamp>,
    peak: f64,
    calm: u16,
}

impl AlertState {
    /// `size_of::<AlertState>()`, asserted by a test.
    pub const STATE_BYTES: usize = 32;

    /// No alert open.
    pub const fn new() -> Self {
        AlertState {
            open: None,
            peak: 0.0,
            calm: 0,
        }
    }

    /// Whether an alert is open.
    pub const fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Feeds one score; returns the event it causes, if any. A NaN score is
    /// treated as calm (detectors never return one; this keeps the state
    /// total if a caller does).
    pub fn step(&mut self, policy: &AlertPolicy, t: Timestamp, score: f64) -> Option<AlertEvent> {
        let close = if policy.close > policy.open {
            policy.open
        } else {
            policy.close
        };
        match self.open {
            None => {
                if score >= policy.open {
                    *self = AlertState {
                        open: Some(t),
                        peak: score,
                        calm: 0,
                    };
                    return Some(AlertEvent::Opened { at: t, score });
                }
                None
            }
            Some(opened_at) => {
                if score >= close {
                    self.calm = 0;
                    self.peak = self.peak.max(score);
                    return None;
                }
                self.calm = self.calm.saturating_add(1);
                if self.calm >= policy.clear_after.max(1) {
                    let peak = self.peak;
                    *self = AlertState::new();
                    return Some(AlertEvent::Resolved {
                        opened_at,
                        at: t,
                        peak,
                    });
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const P: AlertPolicy = AlertPolicy {
        open: 0.8,
        close: 0.5,
        clear_after: 5,
    };

    fn run(policy: &AlertPolicy, scores: &[f64]) -> Vec<(usize, AlertEvent)> {
        let mut s = AlertState::new();
        scores
            .iter()
            .enumerate()
            .filter_map(|(i, &x)| s.step(policy, Timestamp(i as u64), x).map(|e| (i, e)))
            .collect()
    }

    #[test]
    fn a_sensor_hovering_at_the_threshold_raises_one_alert() {
        let scores: Vec<f64> = (0..1000)
            .map(|i| if i % 2 == 0 { 0.79 } else { 0.81 })
            .collect();
        let events = run(&P, &scores);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(matches!(events[0], (1, AlertEvent::Opened { .. })));
    }

    #[test]
    fn resolves_after_clear_after_calm_samples_and_reopens_later() {
        let mut scores = std::vec![0.0, 0.9, 0.95, 0.6];
        scores.extend([0.1; 5]); // indices 4..=8: resolves at 8
        scores.extend([0.85]); // index 9: opens again
        let events = run(&P, &scores);
        assert_eq!(
            events,
            [
                (
                    1,
                    AlertEvent::Opened {
                        at: Timestamp(1),
                        score: 0.9
                    }
                ),
                (
                    8,
                    AlertEvent::Resolved {
                        opened_at: Timestamp(1),
                        at: Timestamp(8),
                        peak: 0.95
                    }
                ),
                (
                    9,
                    AlertEvent::Opened {
                        at: Timestamp(9),
                        score: 0.85
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_score_in_the_band_keeps_the_alert_open() {
        let mut scores = std::vec![0.9];
        for _ in 0..100 {
            scores.extend([0.1, 0.1, 0.1, 0.1, 0.6]); // never 5 calm in a row
        }
        assert_eq!(run(&P, &scores).len(), 1);
    }

    #[test]
    fn nan_is_calm_and_an_inverted_band_is_no_band() {
        let events = run(&P, &[0.9, f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN]);
        assert!(matches!(
            events.last(),
            Some((5, AlertEvent::Resolved { .. }))
        ));
        let inverted = AlertPolicy {
            open: 0.8,
            close: 0.95,
            clear_after: 2,
        };
        // 0.85 keeps it open under `close = open`; 0.7 counts as calm.
        let events = run(&inverted, &[0.9, 0.85, 0.7, 0.7]);
        assert!(
            matches!(events.last(), Some((3, AlertEvent::Resolved { .. }))),
            "{events:?}"
        );
    }

    #[test]
    fn state_size_is_as_documented() {
        assert_eq!(core::mem::size_of::<AlertState>(), AlertState::STATE_BYTES);
    }

    proptest! {
        /// Events alternate, start with Opened, and two openings are at
        /// least `clear_after + 1` samples apart: the flood bound.
        #[test]
        fn events_alternate_and_openings_are_spaced(
            scores in proptest::collection::vec(prop_oneof![0.0f64..1.0, Just(0.79), Just(0.81)], 0..400),
            clear_after in 1u16..20,
        ) {
            let policy = AlertPolicy { clear_after, ..P };
            let events = run(&policy, &scores);
            let mut last_open: Option<usize> = None;
            for (k, (i, e)) in events.iter().enumerate() {
                let opened = matches!(e, AlertEvent::Opened { .. });
                prop_assert_eq!(opened, k % 2 == 0, "{:?}", events);
                if opened {
                    if let Some(prev) = last_open {
                        prop_assert!(i - prev > usize::from(clear_after));
                    }
                    last_open = Some(*i);
                }
            }
        }
    }
}
