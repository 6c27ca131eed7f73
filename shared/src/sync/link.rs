//! The uplink's connectivity state machine: online, offline, backing off
//! with full-jitter exponential delays, and a circuit breaker that rests
//! the link after a run of failures.
//!
//! Like the rest of [`sync`](crate::sync) it owns no socket, clock or RNG:
//! the shell reports events with the current time and a seed fixes the
//! jitter, so a simulation replays exactly.
//!
//! Delays follow "full jitter" (AWS Architecture Blog, *Exponential Backoff
//! And Jitter*, 2015): attempt `n` waits a uniformly random time in
//! `[0, min(max, initial × multiplierⁿ)]`. Spreading retries over the whole
//! interval keeps a fleet of gateways that lost the hub at the same moment
//! from reconnecting in lock-step. After `breaker_failures` consecutive
//! failures the breaker opens: no attempt for `breaker_open_ms` (a cellular
//! link is not hammered for hours), then one trial attempt ("half-open"):
//! success closes it, failure opens it again.
//!
//! ```
//! use tributary_core::sync::link::{Link, LinkConfig, LinkState};
//!
//! let mut link = Link::new(LinkConfig::default(), 7);
//! assert!(link.should_attempt(0));
//! link.on_attempt_failed(0);
//! let retry = link.next_attempt_ms().unwrap();
//! assert!(retry <= LinkConfig::default().initial_ms);
//! assert!(matches!(link.state(), LinkState::BackingOff { .. }));
//! link.on_connected(retry);
//! assert_eq!(link.state(), LinkState::Online { since_ms: retry });
//! assert_eq!(link.offline_ms(retry + 5), 0);
//! ```

/// Delays and breaker limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// Cap of the first retry delay, ms.
    pub initial_ms: u64,
    /// Cap of any retry delay, ms.
    pub max_ms: u64,
    /// Growth of the cap per failed attempt (≥ 1).
    pub multiplier: f64,
    /// Consecutive failures that open the breaker (0: never).
    pub breaker_failures: u32,
    /// How long an open breaker rests the link, ms.
    pub breaker_open_ms: u64,
}

impl Default for LinkConfig {
    /// 1 s initial cap doubling to 5 min; the breaker opens after 20
    /// failures in a row (over an hour of trying) and rests 15 min.
    fn default() -> Self {
        LinkConfig {
            initial_ms: 1_000,
            max_ms: 300_000,
            multiplier: 2.0,
            breaker_failures: 20,
            breaker_open_ms: 900_000,
        }
    }
}

/// Where the link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Connected since `since_ms`.
    Online {
        /// When the connection came up.
        since_ms: u64,
    },
    /// Not connected and free to try now (initially, and after a loss).
    Offline {
        /// Since when the link is down.
        since_ms: u64,
    },
    /// Waiting before the next attempt.
    BackingOff {
        /// Since when the link is down.
        since_ms: u64,
        /// When the next attempt may start.
        retry_at_ms: u64,
        /// Consecutive failed attempts so far.
        failures: u32,
    },
    /// Resting after too many failures; one trial attempt at `until_ms`.
    CircuitOpen {
        /// Since when the link is down.
        since_ms: u64,
        /// When the trial attempt may start.
        until_ms: u64,
    },
}

impl LinkState {
    /// A stable label for metrics and the status API.
    pub fn as_str(&self) -> &'static str {
        match self {
            LinkState::Online { .. } => "online",
            LinkState::Offline { .. } => "offline",
            LinkState::BackingOff { .. } => "backing_off",
            LinkState::CircuitOpen { .. } => "circuit_open",
        }
    }
}

/// The uplink's state machine (see the module docs).
#[derive(Clone, Debug)]
pub struct Link {
    config: LinkConfig,
    state: LinkState,
    failures: u32,
    rng: u64,
    /// Whether the current attempt is the breaker's trial.
    trial: bool,
}

impl Link {
    /// A link that has never connected, free to try at once. `seed` fixes
    /// the jitter.
    pub fn new(config: LinkConfig, seed: u64) -> Link {
        Link {
            config,
            state: LinkState::Offline { since_ms: 0 },
            failures: 0,
            rng: seed,
            trial: false,
        }
    }

    /// [`new`](Self::new), down since `now_ms` (the shell's start), so
    /// [`offline_ms`](Self::offline_ms) counts from there rather than from
    /// the epoch.
    pub fn starting_at(config: LinkConfig, seed: u64, now_ms: u64) -> Link {
        Link {
            state: LinkState::Offline { since_ms: now_ms },
            ..Link::new(config, seed)
        }
    }

    /// The current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Whether a connection attempt may start at `now_ms`.
    pub fn should_attempt(&self, now_ms: u64) -> bool {
        match self.state {
            LinkState::Online { .. } => false,
            LinkState::Offline { .. } => true,
            LinkState::BackingOff { retry_at_ms, .. } => now_ms >= retry_at_ms,
            LinkState::CircuitOpen { until_ms, .. } => now_ms >= until_ms,
        }
    }

    /// When the next attempt may start (`None` while online).
    pub fn next_attempt_ms(&self) -> Option<u64> {
        match self.state {
            LinkState::Online { .. } => None,
            LinkState::Offline { since_ms } => Some(since_ms),
            LinkState::BackingOff { retry_at_ms, .. } => Some(retry_at_ms),
            LinkState::CircuitOpen { until_ms, .. } => Some(until_ms),
        }
    }

    /// How long the link has been down at `now_ms` (0 while online).
    pub fn offline_ms(&self, now_ms: u64) -> u64 {
        match self.state {
            LinkState::Online { .. } => 0,
            LinkState::Offline { since_ms }
            | LinkState::BackingOff { since_ms, .. }
            | LinkState::CircuitOpen { since_ms, .. } => now_ms.saturating_sub(since_ms),
        }
    }

    /// Consecutive failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The connection came up: reset the backoff and close the breaker.
    pub fn on_connected(&mut self, now_ms: u64) {
        self.failures = 0;
        self.trial = false;
        self.state = LinkState::Online { since_ms: now_ms };
    }

    /// An established connection was lost: free to reconnect at once (the
    /// first retry after a loss is not delayed; failures then back off).
    pub fn on_disconnected(&mut self, now_ms: u64) {
        if let LinkState::Online { .. } = self.state {
            self.state = LinkState::Offline { since_ms: now_ms };
        }
    }

    /// An attempt failed at `now_ms`: back off, or open the breaker.
    pub fn on_attempt_failed(&mut self, now_ms: u64) {
        let since_ms = match self.state {
            // Reported while marked online (the shell saw the failure
            // before the loss): the outage starts now.
            LinkState::Online { .. } => now_ms,
            LinkState::Offline { since_ms }
            | LinkState::BackingOff { since_ms, .. }
            | LinkState::CircuitOpen { since_ms, .. } => since_ms,
        };
        self.failures = self.failures.saturating_add(1);
        let breaker = self.config.breaker_failures;
        if self.trial || (breaker > 0 && self.failures >= breaker) {
            self.trial = true;
            self.state = LinkState::CircuitOpen {
                since_ms,
                until_ms: now_ms.saturating_add(self.config.breaker_open_ms),
            };
            return;
        }
        let delay = self.jittered_delay(self.failures - 1);
        self.state = LinkState::BackingOff {
            since_ms,
            retry_at_ms: now_ms.saturating_add(delay),
            failures: self.failures,
        };
    }

    /// The cap for attempt `n` (0-based): `min(max, initial × multiplierⁿ)`.
    pub fn cap_ms(&self, n: u32) -> u64 {
        let c = &self.config;
        let max = c.max_ms.max(c.initial_ms) as f64;
        let mut cap = c.initial_ms as f64;
        let m = if c.multiplier.is_finite() {
            c.multiplier.max(1.0)
        } else {
            1.0
        };
        for _ in 0..n {
            cap *= m;
            if cap >= max {
                return max as u64;
            }
        }
        cap.min(max) as u64
    }

    fn jittered_delay(&mut self, n: u32) -> u64 {
        let cap = self.cap_ms(n);
        // Uniform in [0, cap]; the modulo bias is below 2^-40 for caps
        // under 2^24 ms and irrelevant for spreading retries.
        splitmix(&mut self.rng) % cap.saturating_add(1)
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn config() -> LinkConfig {
        LinkConfig {
            initial_ms: 100,
            max_ms: 10_000,
            multiplier: 2.0,
            breaker_failures: 5,
            breaker_open_ms: 60_000,
        }
    }

    #[test]
    fn a_link_started_later_counts_its_outage_from_its_start() {
        let mut l = Link::starting_at(config(), 1, 5_000);
        assert_eq!(l.state(), LinkState::Offline { since_ms: 5_000 });
        assert_eq!(l.offline_ms(7_000), 2_000);
        assert!(l.should_attempt(5_000));
        l.on_attempt_failed(6_000);
        assert_eq!(l.offline_ms(8_000), 3_000);
    }

    #[test]
    fn caps_grow_geometrically_to_the_maximum() {
        let l = Link::new(config(), 1);
        let caps: std::vec::Vec<u64> = (0..9).map(|n| l.cap_ms(n)).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(l.cap_ms(u32::MAX), 10_000);
    }

    #[test]
    fn breaker_opens_after_the_run_of_failures_and_a_failed_trial_reopens_it() {
        let mut l = Link::new(config(), 3);
        let mut now = 0;
        for i in 1..5 {
            assert!(l.should_attempt(now));
            l.on_attempt_failed(now);
            assert!(matches!(l.state(), LinkState::BackingOff { failures, .. } if failures == i));
            now = l.next_attempt_ms().unwrap();
        }
        l.on_attempt_failed(now);
        assert_eq!(
            l.state(),
            LinkState::CircuitOpen {
                since_ms: 0,
                until_ms: now + 60_000
            }
        );
        assert!(!l.should_attempt(now + 59_999));
        assert!(l.should_attempt(now + 60_000));
        // The trial fails: open again, for the full rest.
        l.on_attempt_failed(now + 60_000);
        assert_eq!(
            l.state(),
            LinkState::CircuitOpen {
                since_ms: 0,
                until_ms: now + 120_000
            }
        );
        assert_eq!(l.offline_ms(now + 120_000), now + 120_000);
        // The next trial succeeds: closed, counters reset.
        l.on_connected(now + 120_000);
        assert_eq!(l.failures(), 0);
        l.on_disconnected(now + 130_000);
        assert_eq!(
            l.state(),
            LinkState::Offline {
                since_ms: now + 130_000
            }
        );
        l.on_attempt_failed(now + 130_000);
        assert!(
            matches!(l.state(), LinkState::BackingOff { failures: 1, since_ms, .. } if since_ms == now + 130_000)
        );
    }

    #[test]
    fn jitter_spreads_a_fleet() {
        // 100 gateways losing the hub at once: by their seventh attempt
        // (cap 6.4 s) they retry at nearly all different times. Uniform
        // draws from 6401 values give ~99 distinct of 100.
        let no_breaker = LinkConfig {
            breaker_failures: 0,
            ..config()
        };
        let mut retries: std::vec::Vec<u64> = (0..100)
            .map(|seed| {
                let mut l = Link::new(no_breaker, seed);
                for _ in 0..7 {
                    l.on_attempt_failed(0);
                }
                l.next_attempt_ms().unwrap()
            })
            .collect();
        assert!(retries.iter().all(|&r| r <= 6_400));
        retries.sort_unstable();
        let spread = retries[99] - retries[0];
        retries.dedup();
        assert!(
            retries.len() >= 90,
            "{} distinct retry times",
            retries.len()
        );
        assert!(spread > 3_200, "retries spread over {spread} ms only");
    }

    proptest! {
        #[test]
        fn delays_stay_within_the_cap_and_replay_from_the_seed(
            seed in any::<u64>(),
            events in proptest::collection::vec((0u8..3, 0u64..50_000), 1..60),
        ) {
            let mut a = Link::new(config(), seed);
            let mut b = Link::new(config(), seed);
            let mut now = 0u64;
            for (kind, dt) in events {
                now += dt;
                for l in [&mut a, &mut b] {
                    match kind {
                        0 => l.on_attempt_failed(now),
                        1 => l.on_connected(now),
                        _ => l.on_disconnected(now),
                    }
                }
                prop_assert_eq!(a.state(), b.state());
                // Right after a failure, the wait is within the cap of that
                // attempt, and no attempt is allowed before it ends.
                if let (0, LinkState::BackingOff { retry_at_ms, failures, .. }) = (kind, a.state()) {
                    prop_assert!(retry_at_ms >= now);
                    prop_assert!(retry_at_ms - now <= a.cap_ms(failures - 1));
                    prop_assert!(retry_at_ms == now || !a.should_attempt(retry_at_ms - 1));
                    prop_assert!(a.should_attempt(retry_at_ms));
                }
                if let LinkState::Online { .. } = a.state() {
                    prop_assert_eq!(a.offline_ms(now + 1), 0);
                    prop_assert_eq!(a.failures(), 0);
                }
            }
        }
    }
}
