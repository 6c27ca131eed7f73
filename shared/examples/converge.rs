//! Three gateways aggregate readings offline; two hubs receive their deltas
//! over a lossy, duplicating, reordering "network" and still converge to
//! bit-identical aggregates that count every reading exactly once.
//!
//! Run: `cargo run -p tributary-core --example converge [seed]`

use std::process::ExitCode;

use tributary_core::codec::v1::{self, Delta, Message};
use tributary_core::crdt::Join;
use tributary_core::crdt::aggregate::{AggregateState, Key};
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};

/// Deterministic xorshift so the run is replayable from its seed; the core
/// itself never draws random numbers.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const START_MS: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const SENSORS: u32 = 2;
const MINUTES: u64 = 5;

fn main() -> ExitCode {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026_u64);
    let mut rng = Rng(seed | 1);
    let gateways = [NodeId(0xa1), NodeId(0xb2), NodeId(0xc3)];

    // Each gateway samples every sensor once a second for five minutes and
    // ships a delta after every minute, as its uplink allows.
    let mut states: Vec<AggregateState> = gateways.iter().map(|_| AggregateState::new()).collect();
    let mut shipped = vec![0u64; gateways.len()];
    let mut wire: Vec<Vec<u8>> = Vec::new();
    let mut readings = 0u64;
    for minute in 0..MINUTES {
        for (g, node) in gateways.iter().enumerate() {
            for s in 0..60 {
                let t = Timestamp(START_MS + (minute * 60 + s) * 1_000);
                for sensor in 0..SENSORS {
                    let base = 20.0 + 5.0 * f64::from(sensor) + g as f64;
                    let noise = (rng.below(200) as f64 - 100.0) / 100.0;
                    if states[g]
                        .record_all_resolutions(*node, SensorId(sensor), t, base + noise)
                        .is_ok()
                    {
                        readings += 1;
                    }
                }
            }
            let to = states[g].version_of(*node);
            let entries = states[g].node_entries_since(*node, shipped[g]);
            let delta = Delta::from_entries(*node, shipped[g], to, entries);
            wire.push(v1::encode(&Message::Delta(delta)));
            shipped[g] = to;
        }
    }
    let bytes: usize = wire.iter().map(Vec::len).sum();

    // The network: every message delivered at least once, some twice, in a
    // different shuffled order to each hub.
    let deliver = |rng: &mut Rng| -> AggregateState {
        let mut inbox: Vec<&Vec<u8>> = wire.iter().collect();
        for m in &wire {
            if rng.below(3) == 0 {
                inbox.push(m); // duplicate
            }
        }
        for i in (1..inbox.len()).rev() {
            inbox.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut hub = AggregateState::new();
        for bytes in inbox {
            match v1::decode(bytes) {
                Ok(Message::Delta(d)) => {
                    for (key, entry) in d.entries() {
                        hub.join_entry(key, d.node, entry);
                    }
                }
                other => eprintln!("unexpected message: {other:?}"),
            }
        }
        hub
    };
    let hub_a = deliver(&mut rng);
    let hub_b = deliver(&mut rng);

    println!(
        "{} gateways x {SENSORS} sensors x {MINUTES} min at 1 Hz = {readings} readings; \
         {} deltas, {bytes} bytes on the wire (seed {seed})",
        gateways.len(),
        wire.len()
    );
    println!();
    println!(
        "{:<8} {:>4} {:<17} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "sensor", "res", "bucket (UTC)", "count", "mean", "stddev", "min", "max"
    );
    for (key, s) in hub_a
        .iter_merged()
        .filter(|(k, _)| k.resolution >= Resolution::Minute)
    {
        println!(
            "{:<8} {:>4} {:<17} {:>6} {:>8.3} {:>8.3} {:>8.2} {:>8.2}",
            key.sensor.0,
            key.resolution.as_str(),
            utc_minute(key.bucket.start(key.resolution)),
            s.count,
            s.mean().unwrap_or(f64::NAN),
            s.stddev().unwrap_or(f64::NAN),
            s.min,
            s.max
        );
    }

    let mut truth = AggregateState::new();
    for s in &states {
        truth.join(s);
    }
    let day_total: u64 = (0..SENSORS)
        .map(|s| {
            hub_a
                .merged(&Key::containing(
                    SensorId(s),
                    Resolution::Day,
                    Timestamp(START_MS),
                ))
                .count
        })
        .sum();
    let identical = hub_a == hub_b && hub_a == truth;
    println!();
    println!("hub A == hub B == union of gateways (bit for bit): {identical}");
    println!("readings counted at 1 d resolution: {day_total} of {readings}");
    if identical && day_total == readings {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `YYYY-MM-DD HH:MM` in UTC, from the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`): enough for a demo's table without a
/// date crate.
fn utc_minute(t: Timestamp) -> String {
    let secs = t.as_millis() / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60
    )
}
