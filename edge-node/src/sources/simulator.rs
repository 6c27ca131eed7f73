//! A built-in simulator: `sensors` sensors (ids `first_sensor..`), each
//! reading `rate_hz` times a second, deterministic for a seed.
//!
//! Entry point: [`run`] with [`SimulatorOptions`]; the value generator is the
//! pure [`Simulator`] (`next_tick(now)`), which `run` wraps in a timer loop.
//!
//! Each sensor's value is its base level plus a daily sine (its own phase),
//! gaussian noise, and — at configured rates — a spike (one reading far off),
//! a stuck period (the same value repeated, as a frozen sensor does) and, on
//! a share of the sensors, a slow linear drift. These are the faults the
//! detectors look for, so a demo shows alerts.
//!
//! Event times are the wall clock (ms) at each tick. One submission per tick
//! carries every sensor's reading for that tick, with no origin: the
//! simulator never retransmits (a refused submission is retried as the same
//! submission; one abandoned at shutdown is simply lost), so there is
//! nothing to deduplicate. When ingest is slower than the rate, missed ticks
//! are skipped, not queued, and logged.

use std::f64::consts::TAU;
use std::time::{Duration, Instant};

use actix::Recipient;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use tokio::sync::watch;
use tributary_core::ids::{SensorId, Timestamp};

use super::{SourceError, Verdict, stopped, submit, wall_now};
use crate::ingest::Submit;
use crate::metrics::Metrics;
use crate::reading::{Item, Sample, SourceKind, Submission};

const DAY_MS: f64 = 86_400_000.0;
const HOUR_MS: f64 = 3_600_000.0;

/// Options of the simulator.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorOptions {
    /// Number of sensors (1..=10 000).
    pub sensors: u32,
    /// Id of the first sensor; the others follow.
    pub first_sensor: u32,
    /// Readings per second per sensor (0 < rate ≤ 1000).
    pub rate_hz: f64,
    /// Seed of the generator: the same seed and tick times give the same
    /// values.
    pub seed: u64,
    /// Mean base level; each sensor's base is drawn within
    /// `base_level ± level_spread`.
    pub base_level: f64,
    /// Spread of the sensors' base levels.
    pub level_spread: f64,
    /// Amplitude of the daily sine.
    pub daily_amplitude: f64,
    /// Standard deviation of the noise.
    pub noise_stddev: f64,
    /// Chance that a reading is a spike.
    pub spike_probability: f64,
    /// How far off a spike is (added or subtracted, times 1..2).
    pub spike_magnitude: f64,
    /// Chance per reading that a stuck period starts.
    pub stuck_probability: f64,
    /// Readings a stuck period lasts.
    pub stuck_readings: u32,
    /// Share of the sensors that drift (each decided once, from the seed).
    pub drift_share: f64,
    /// Drift of a drifting sensor, in value units per hour (sign drawn per
    /// sensor).
    pub drift_per_hour: f64,
    /// Stop after this many ticks (each tick is one reading per sensor);
    /// 0 runs until shutdown. A finite run gives tests and demos a known,
    /// final set of readings to compare replicas against.
    pub ticks: u64,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            sensors: 4,
            first_sensor: 1000,
            rate_hz: 1.0,
            seed: 1,
            base_level: 20.0,
            level_spread: 5.0,
            daily_amplitude: 3.0,
            noise_stddev: 0.2,
            spike_probability: 0.001,
            spike_magnitude: 10.0,
            stuck_probability: 0.0005,
            stuck_readings: 60,
            drift_share: 0.25,
            drift_per_hour: 0.5,
            ticks: 0,
        }
    }
}

impl SimulatorOptions {
    /// Checks every option; all problems at once.
    pub fn validate(&self) -> Result<(), SourceError> {
        let mut problems = Vec::new();
        if !(1..=10_000).contains(&self.sensors) {
            problems.push(format!("sensors = {} (1..=10000)", self.sensors));
        }
        if self.first_sensor.checked_add(self.sensors).is_none() {
            problems.push("first_sensor + sensors overflows a sensor id".to_owned());
        }
        if !(self.rate_hz.is_finite() && self.rate_hz > 0.0 && self.rate_hz <= 1000.0) {
            problems.push(format!("rate_hz = {} (0 < rate_hz <= 1000)", self.rate_hz));
        }
        for (name, p) in [
            ("spike_probability", self.spike_probability),
            ("stuck_probability", self.stuck_probability),
            ("drift_share", self.drift_share),
        ] {
            if !(0.0..=1.0).contains(&p) {
                problems.push(format!("{name} = {p} (0..=1)"));
            }
        }
        for (name, x) in [
            ("base_level", self.base_level),
            ("level_spread", self.level_spread),
            ("daily_amplitude", self.daily_amplitude),
            ("noise_stddev", self.noise_stddev),
            ("spike_magnitude", self.spike_magnitude),
            ("drift_per_hour", self.drift_per_hour),
        ] {
            // Values stay far below where squares overflow, so a reading
            // can never be refused as non-finite.
            if !(x.is_finite() && x.abs() <= 1e12) {
                problems.push(format!("{name} = {x} (finite, |x| <= 1e12)"));
            }
        }
        if self.noise_stddev < 0.0 {
            problems.push("noise_stddev must not be negative".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SourceError::Config {
                source_kind: "simulator",
                detail: problems.join("; "),
            })
        }
    }
}

#[derive(Clone, Debug)]
struct SensorState {
    id: SensorId,
    base: f64,
    phase: f64,
    /// Value units per ms; 0 for a sensor that does not drift.
    drift_per_ms: f64,
    stuck_left: u32,
    last: f64,
}

/// What the simulator injected so far (for tests and logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// Readings produced.
    pub readings: u64,
    /// Spikes.
    pub spikes: u64,
    /// Stuck periods started.
    pub stuck_periods: u64,
    /// Sensors that drift.
    pub drifting_sensors: u32,
}

/// The pure value generator: no clock, no I/O; deterministic for a seed and
/// a sequence of tick times.
#[derive(Clone, Debug)]
pub struct Simulator {
    opts: SimulatorOptions,
    rng: Xoshiro256PlusPlus,
    start: Timestamp,
    sensors: Vec<SensorState>,
    injected: Injected,
}

impl Simulator {
    /// A simulator whose drift starts at `start`. `opts` should have passed
    /// [`SimulatorOptions::validate`].
    pub fn new(opts: SimulatorOptions, start: Timestamp) -> Simulator {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(opts.seed);
        let mut injected = Injected::default();
        let sensors = (0..opts.sensors)
            .map(|i| {
                let base = opts.base_level + opts.level_spread * (2.0 * rng.random::<f64>() - 1.0);
                let phase = TAU * rng.random::<f64>();
                let drifts = rng.random_bool(opts.drift_share.clamp(0.0, 1.0));
                let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                let drift_per_ms = if drifts {
                    injected.drifting_sensors += 1;
                    sign * opts.drift_per_hour / HOUR_MS
                } else {
                    0.0
                };
                SensorState {
                    id: SensorId(opts.first_sensor.saturating_add(i)),
                    base,
                    phase,
                    drift_per_ms,
                    stuck_left: 0,
                    last: base,
                }
            })
            .collect();
        Simulator {
            opts,
            rng,
            start,
            sensors,
            injected,
        }
    }

    /// One reading per sensor at `now`.
    pub fn next_tick(&mut self, now: Timestamp) -> Vec<Item> {
        let o = &self.opts;
        let day = (now.as_millis() as f64 % DAY_MS) / DAY_MS;
        let since_start = now.as_millis().saturating_sub(self.start.as_millis()) as f64;
        let mut items = Vec::with_capacity(self.sensors.len());
        for s in &mut self.sensors {
            // Draw every random number every tick, whatever the state, so a
            // sensor's stream does not shift when another gets stuck.
            let noise = gaussian(&mut self.rng) * o.noise_stddev;
            let spike = self.rng.random_bool(o.spike_probability.clamp(0.0, 1.0));
            let spike_size = o.spike_magnitude * (1.0 + self.rng.random::<f64>());
            let spike_sign = if self.rng.random_bool(0.5) { 1.0 } else { -1.0 };
            let sticks = self.rng.random_bool(o.stuck_probability.clamp(0.0, 1.0));
            let value = if s.stuck_left > 0 {
                s.stuck_left -= 1;
                s.last
            } else if sticks && o.stuck_readings > 0 {
                // The sensor freezes at its last value.
                self.injected.stuck_periods += 1;
                s.stuck_left = o.stuck_readings - 1;
                s.last
            } else {
                let clean = s.base
                    + o.daily_amplitude * (TAU * day + s.phase).sin()
                    + s.drift_per_ms * since_start
                    + noise;
                if spike {
                    self.injected.spikes += 1;
                    // A spike is one bad reading: the next one is normal and
                    // a stuck period repeats the last normal value.
                    clean + spike_sign * spike_size
                } else {
                    s.last = clean;
                    clean
                }
            };
            self.injected.readings += 1;
            items.push(Item::Reading(Sample {
                sensor: s.id,
                ts: now,
                value,
            }));
        }
        items
    }

    /// What was injected so far.
    pub fn injected(&self) -> Injected {
        self.injected
    }
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut Xoshiro256PlusPlus) -> f64 {
    // 1 - u is in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// Runs the simulator until `shutdown`; see the [module docs](self).
///
/// Returns `Ok(())` on shutdown or when ingest is shutting down, `Err` for
/// invalid options.
pub async fn run(
    opts: SimulatorOptions,
    ingest: Recipient<Submit>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    opts.validate()?;
    let period = Duration::from_secs_f64(1.0 / opts.rate_hz);
    let opts_ticks = opts.ticks;
    tracing::info!(
        sensors = opts.sensors,
        first_sensor = opts.first_sensor,
        rate_hz = opts.rate_hz,
        seed = opts.seed,
        "simulator started"
    );
    let mut sim = Simulator::new(opts, wall_now());
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tick_no: u64 = 0;
    let mut skipped: u64 = 0;
    let mut last_skip_log = Instant::now();
    loop {
        let tick = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            t = interval.tick() => t,
        };
        if opts_ticks != 0 && tick_no >= opts_ticks {
            tracing::info!(ticks = tick_no, "simulator: all ticks done");
            break;
        }
        let items = sim.next_tick(wall_now());
        tick_no += 1;
        let submission = Submission {
            origin: None,
            items,
        };
        let what = format!("tick {tick_no}");
        let verdict = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            v = submit(&ingest, SourceKind::Simulator, submission, &metrics, &what) => v,
        };
        if verdict == Verdict::ShuttingDown {
            break;
        }
        // Ticks that passed while ingest answered are skipped by the
        // interval; say so now and then.
        let late = tick.elapsed().as_secs_f64() / period.as_secs_f64();
        if late >= 1.0 {
            skipped += late as u64;
            if last_skip_log.elapsed() >= Duration::from_secs(60) {
                tracing::warn!(
                    skipped,
                    "simulator: ingest slower than the tick rate; ticks skipped"
                );
                skipped = 0;
                last_skip_log = Instant::now();
            }
        }
    }
    let injected = sim.injected();
    tracing::info!(
        readings = injected.readings,
        spikes = injected.spikes,
        stuck_periods = injected.stuck_periods,
        "simulator stopped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn values(sim: &mut Simulator, ticks: u64, step_ms: u64) -> Vec<Vec<f64>> {
        (0..ticks)
            .map(|i| {
                sim.next_tick(Timestamp(T0 + i * step_ms))
                    .into_iter()
                    .map(|item| match item {
                        Item::Reading(s) => s.value,
                        Item::Window { .. } => f64::NAN,
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn same_seed_same_values_other_seed_other_values() {
        let opts = SimulatorOptions::default();
        let a = values(&mut Simulator::new(opts.clone(), Timestamp(T0)), 200, 1000);
        let b = values(&mut Simulator::new(opts.clone(), Timestamp(T0)), 200, 1000);
        assert_eq!(a, b);
        let other = SimulatorOptions { seed: 2, ..opts };
        let c = values(&mut Simulator::new(other, Timestamp(T0)), 200, 1000);
        assert_ne!(a, c);
    }

    #[test]
    fn one_reading_per_sensor_per_tick_with_the_tick_time() {
        let opts = SimulatorOptions {
            sensors: 3,
            first_sensor: 7,
            ..SimulatorOptions::default()
        };
        let mut sim = Simulator::new(opts, Timestamp(T0));
        let items = sim.next_tick(Timestamp(T0 + 5));
        let ids: Vec<_> = items.iter().map(|i| i.sensor().0).collect();
        assert_eq!(ids, [7, 8, 9]);
        assert!(items.iter().all(|i| i.last_ts() == Timestamp(T0 + 5)));
    }

    #[test]
    fn faults_appear_at_roughly_their_rates_and_values_stay_finite() {
        let opts = SimulatorOptions {
            sensors: 20,
            spike_probability: 0.01,
            stuck_probability: 0.002,
            stuck_readings: 10,
            noise_stddev: 0.1,
            ..SimulatorOptions::default()
        };
        let ticks = 5_000;
        let mut sim = Simulator::new(opts.clone(), Timestamp(T0));
        let v = values(&mut sim, ticks, 1000);
        let n = (ticks * 20) as f64;
        let inj = sim.injected();
        assert_eq!(inj.readings, ticks * 20);
        assert!(v.iter().flatten().all(|x| x.is_finite()));

        // Spikes: ~1 % of readings (binomial, 1000 ± ~100), and visible in
        // the data as readings far from both neighbours.
        let spike_rate = inj.spikes as f64 / n;
        assert!(
            (0.007..0.013).contains(&spike_rate),
            "spike rate {spike_rate}"
        );
        let mut outliers = 0;
        for s in 0..20 {
            for t in 1..v.len() - 1 {
                let (a, x, b) = (v[t - 1][s], v[t][s], v[t + 1][s]);
                if (x - a).abs() > 5.0 && (x - b).abs() > 5.0 {
                    outliers += 1;
                }
            }
        }
        let seen = outliers as f64 / inj.spikes as f64;
        assert!(seen > 0.9, "{outliers} outliers for {} spikes", inj.spikes);

        // Stuck periods: started at ~0.2 % of the readings that are not
        // already stuck, each repeating one value 10 times.
        let stuck_rate = inj.stuck_periods as f64 / n;
        assert!(
            (0.0012..0.0028).contains(&stuck_rate),
            "stuck rate {stuck_rate}"
        );
        let mut runs = 0;
        for s in 0..20 {
            let mut same = 1;
            for t in 1..v.len() {
                if v[t][s] == v[t - 1][s] {
                    same += 1;
                } else {
                    same = 1;
                }
                // Noise makes equal neighbours otherwise (practically)
                // impossible.
                if same == 10 {
                    runs += 1;
                }
            }
        }
        assert!(
            runs as f64 >= 0.9 * inj.stuck_periods as f64,
            "{runs} runs of 10 for {} stuck periods",
            inj.stuck_periods
        );
    }

    #[test]
    fn drifting_sensors_move_away_from_their_start() {
        let opts = SimulatorOptions {
            sensors: 8,
            drift_share: 1.0,
            drift_per_hour: 1.0,
            daily_amplitude: 0.0,
            noise_stddev: 0.0,
            spike_probability: 0.0,
            stuck_probability: 0.0,
            ..SimulatorOptions::default()
        };
        let mut sim = Simulator::new(opts, Timestamp(T0));
        let first = values(&mut sim, 1, 0).remove(0);
        let later = sim.next_tick(Timestamp(T0 + 10 * 3_600_000));
        assert_eq!(sim.injected().drifting_sensors, 8);
        for (a, item) in first.iter().zip(later) {
            let Item::Reading(s) = item else { panic!() };
            assert!(
                ((s.value - a).abs() - 10.0).abs() < 1e-6,
                "{a} -> {}",
                s.value
            );
        }
    }

    #[test]
    fn invalid_options_are_all_reported() {
        let opts = SimulatorOptions {
            sensors: 0,
            rate_hz: f64::NAN,
            spike_probability: 2.0,
            ..SimulatorOptions::default()
        };
        let err = opts.validate().unwrap_err().to_string();
        for word in ["sensors", "rate_hz", "spike_probability"] {
            assert!(err.contains(word), "{err}");
        }
        let parsed: SimulatorOptions = serde_json::from_str(r#"{"sensors": 2}"#).unwrap();
        assert_eq!(parsed.sensors, 2);
        assert!(serde_json::from_str::<SimulatorOptions>(r#"{"sensor": 2}"#).is_err());
    }
}
