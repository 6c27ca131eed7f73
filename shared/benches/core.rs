//! Core benchmarks: CRDT join throughput, delta codec throughput, and wire
//! bytes per aggregate entry.
//!
//! Criterion measures; after it finishes, one JSON line per result goes to
//! stdout, `{"name","unit","value","baseline","baseline_value","ratio"}`,
//! where the baseline is a plain reference workload on the same data in the
//! same run (so ratios stay comparable on a noisy or different machine):
//! - join: inserting the same entries into one flat `BTreeMap` (the least a
//!   keyed store must do);
//! - codec: the same entries encoded naively, one self-contained CBOR array
//!   per entry with absolute times and full-width floats.
//!
//! Run: `cargo bench -p tributary-core --bench core` (add `-- --quick` for a
//! fast, rougher pass).

use std::collections::BTreeMap;
use std::hint::black_box;

mod support;

use criterion::{BatchSize, Criterion, Throughput};
use support::{Line, criterion_dir, mean_ns, print_lines};
use tributary_core::codec::v1::{self, Delta, Message};
use tributary_core::crdt::aggregate::{AggregateState, Entry, Key};
use tributary_core::ids::{Bucket, NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;

const SENSORS: u32 = 100;
const MINUTES: u64 = 60;
const NODES: u64 = 10;
const START_MS: u64 = 1_767_225_600_000;

/// One node's hour of 1-minute entries for its own 100 sensors (sensor ids
/// are fleet-unique, so each key has one writer), each summarising 60
/// readings at 1 Hz of a value with two decimals (as sensors report).
fn node_entries(node: u64, version_base: u64) -> Vec<(Key, Entry)> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ node;
    let mut out = Vec::new();
    let mut version = version_base;
    let first = node as u32 * SENSORS;
    for sensor in first..first + SENSORS {
        for m in 0..MINUTES {
            let bucket_start = START_MS / 60_000 * 60_000 + m * 60_000;
            let mut s = Summary::EMPTY;
            for sec in 0..60 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = f64::from((2000 + (x % 500) as i32) as f32 / 100.0);
                let _ = s.record(Timestamp(bucket_start + sec * 1000), v);
            }
            version += 1;
            let key = Key::new(
                SensorId(sensor),
                Resolution::Minute,
                Bucket::containing(Timestamp(bucket_start), Resolution::Minute),
            );
            out.push((
                key,
                Entry {
                    version,
                    summary: s,
                },
            ));
        }
    }
    out
}

fn hub_with(nodes: &[Vec<(Key, Entry)>]) -> AggregateState {
    let mut s = AggregateState::new();
    for (n, entries) in nodes.iter().enumerate() {
        for (k, e) in entries {
            s.join_entry(*k, NodeId(n as u64), *e);
        }
    }
    s
}

/// The naive wire form: each entry its own CBOR array, everything absolute.
fn naive_encode(node: NodeId, entries: &[(Key, Entry)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = minicbor::Encoder::new(&mut out);
    let _ = e.array(entries.len() as u64);
    for (k, en) in entries {
        let s = &en.summary;
        let _ = e
            .array(12)
            .and_then(|e| e.u64(node.0))
            .and_then(|e| e.u32(k.sensor.0))
            .and_then(|e| e.u8(k.resolution as u8))
            .and_then(|e| e.u64(k.bucket.0))
            .and_then(|e| e.u64(en.version))
            .and_then(|e| e.u64(s.count))
            .and_then(|e| e.f64(s.sum))
            .and_then(|e| e.f64(s.min))
            .and_then(|e| e.f64(s.max))
            .and_then(|e| e.f64(s.sum_sq))
            .and_then(|e| e.u64(s.first_ts.0))
            .and_then(|e| e.u64(s.last_ts.0));
    }
    out
}

fn naive_decode(bytes: &[u8]) -> Vec<(Key, NodeId, Entry)> {
    let mut d = minicbor::Decoder::new(bytes);
    let n = d.array().ok().flatten().unwrap_or(0);
    let mut out = Vec::new();
    for _ in 0..n {
        let r: Result<_, minicbor::decode::Error> = (|| {
            d.array()?;
            let node = NodeId(d.u64()?);
            let sensor = SensorId(d.u32()?);
            let res = Resolution::ALL
                .get(usize::from(d.u8()?))
                .copied()
                .unwrap_or(Resolution::Minute);
            let bucket = Bucket(d.u64()?);
            let version = d.u64()?;
            let summary = Summary {
                count: d.u64()?,
                sum: d.f64()?,
                min: d.f64()?,
                max: d.f64()?,
                sum_sq: d.f64()?,
                first_ts: Timestamp(d.u64()?),
                last_ts: Timestamp(d.u64()?),
            };
            Ok((
                Key::new(sensor, res, bucket),
                node,
                Entry { version, summary },
            ))
        })();
        match r {
            Ok(x) => out.push(x),
            Err(_) => break,
        }
    }
    out
}

fn main() {
    let out_dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&out_dir)
        .configure_from_args();

    let old: Vec<Vec<(Key, Entry)>> = (0..NODES).map(|n| node_entries(n, 0)).collect();
    let new: Vec<Vec<(Key, Entry)>> = (0..NODES).map(|n| node_entries(n, 1_000_000)).collect();
    let total = (SENSORS as u64 * MINUTES * NODES) as usize;
    let hub_old = hub_with(&old);

    let mut g = c.benchmark_group("join");
    g.throughput(Throughput::Elements(total as u64));
    // Steady state at a hub: every key exists, newer versions replace.
    g.bench_function("update", |b| {
        b.iter_batched_ref(
            || hub_old.clone(),
            |hub| {
                for (n, entries) in new.iter().enumerate() {
                    for (k, e) in entries {
                        hub.join_entry(*k, NodeId(n as u64), *e);
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
    // A hub seeing these buckets for the first time.
    g.bench_function("insert", |b| b.iter(|| black_box(hub_with(&new))));
    g.bench_function("baseline_flat_btreemap", |b| {
        b.iter(|| {
            let mut m: BTreeMap<(Key, NodeId), Entry> = BTreeMap::new();
            for (n, entries) in new.iter().enumerate() {
                for (k, e) in entries {
                    let slot = m.entry((*k, NodeId(n as u64))).or_insert(*e);
                    if e.version > slot.version {
                        *slot = *e;
                    }
                }
            }
            black_box(m)
        })
    });
    g.finish();

    let node = NodeId(7);
    let entries = &new[0];
    let delta = Message::Delta(Delta::from_entries(
        node,
        1_000_000,
        1_000_000 + entries.len() as u64,
        entries.iter().copied(),
    ));
    let wire = v1::encode(&delta);
    let naive = naive_encode(node, entries);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("delta_encode", |b| {
        b.iter(|| black_box(v1::encode(black_box(&delta))))
    });
    g.bench_function("delta_decode", |b| {
        b.iter(|| black_box(v1::decode(black_box(&wire))))
    });
    g.throughput(Throughput::Bytes(naive.len() as u64));
    g.bench_function("naive_encode", |b| {
        b.iter(|| black_box(naive_encode(node, black_box(entries))))
    });
    g.bench_function("naive_decode", |b| {
        b.iter(|| black_box(naive_decode(black_box(&naive))))
    });
    g.finish();
    c.final_summary();

    // Guard against benchmarking a broken decoder.
    assert!(matches!(v1::decode(&wire), Ok(Message::Delta(ref d)) if d.len() == entries.len()));
    assert_eq!(naive_decode(&naive).len(), entries.len());

    let ns = |group: &str, id: &str| mean_ns(&out_dir, group, id);
    let per_sec = |n: usize, t: Option<f64>| t.map_or(f64::NAN, |t| n as f64 / (t * 1e-9));
    let mbps =
        |bytes: usize, t: Option<f64>| t.map_or(f64::NAN, |t| bytes as f64 / 1e6 / (t * 1e-9));
    let flat = per_sec(total, ns("join", "baseline_flat_btreemap"));
    let lines = [
        Line {
            name: "core.join.update".into(),
            unit: "entries/s",
            value: per_sec(total, ns("join", "update")),
            baseline: "flat_btreemap_insert",
            baseline_value: flat,
        },
        Line {
            name: "core.join.insert".into(),
            unit: "entries/s",
            value: per_sec(total, ns("join", "insert")),
            baseline: "flat_btreemap_insert",
            baseline_value: flat,
        },
        Line {
            name: "core.delta.encode".into(),
            unit: "MB/s",
            value: mbps(wire.len(), ns("codec", "delta_encode")),
            baseline: "naive_cbor_encode",
            baseline_value: mbps(naive.len(), ns("codec", "naive_encode")),
        },
        Line {
            name: "core.delta.decode".into(),
            unit: "MB/s",
            value: mbps(wire.len(), ns("codec", "delta_decode")),
            baseline: "naive_cbor_decode",
            baseline_value: mbps(naive.len(), ns("codec", "naive_decode")),
        },
        Line {
            name: "core.delta.bytes_per_1m_entry".into(),
            unit: "bytes",
            value: wire.len() as f64 / entries.len() as f64,
            baseline: "naive_cbor",
            baseline_value: naive.len() as f64 / entries.len() as f64,
        },
    ];
    print_lines(&lines);
}
