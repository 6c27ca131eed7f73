//! A fixed join workload for instruction-level profiling, where criterion's
//! timings are too noisy to compare two designs: 10 nodes × 100 own sensors ×
//! 60 one-minute entries, joined `REPS` times (default 3) into a hub that
//! already holds older versions (`update`) or into an empty one (`insert`).
//!
//! ```sh
//! cargo build --release -p tributary-core --example join_workload
//! valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/dev/null \
//!     target/release/examples/join_workload update
//! ```

use tributary_core::crdt::aggregate::{AggregateState, Entry, Key};
use tributary_core::ids::{Bucket, NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;

fn entries(node: u32, version_base: u64) -> Vec<(Key, Entry)> {
    let mut out = Vec::new();
    let mut version = version_base;
    for sensor in node * 100..node * 100 + 100 {
        for minute in 0..60u64 {
            version += 1;
            let Ok(summary) = Summary::of(
                Timestamp(minute * 60_000),
                f64::from(sensor) + minute as f64,
            ) else {
                continue;
            };
            let key = Key::new(SensorId(sensor), Resolution::Minute, Bucket(minute));
            out.push((key, Entry { version, summary }));
        }
    }
    out
}

fn join_all(hub: &mut AggregateState, nodes: &[Vec<(Key, Entry)>]) {
    for (n, entries) in nodes.iter().enumerate() {
        for (k, e) in entries {
            hub.join_entry(*k, NodeId(n as u64), *e);
        }
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "update".into());
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let old: Vec<_> = (0..10).map(|n| entries(n, 0)).collect();
    let new: Vec<_> = (0..10).map(|n| entries(n, 1_000_000)).collect();
    let mut base = AggregateState::new();
    join_all(&mut base, &old);
    for _ in 0..reps {
        let mut hub = if mode == "insert" {
            AggregateState::new()
        } else {
            base.clone()
        };
        join_all(&mut hub, &new);
        std::hint::black_box(hub);
    }
    println!(
        "{mode}: {reps} x {} entries joined",
        new.iter().map(Vec::len).sum::<usize>()
    );
}
