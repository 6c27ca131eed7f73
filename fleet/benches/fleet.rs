//! Size and speed of the fleet document at the scale: 1,000 nodes
//! × 20 sensors (names, units, locations, thresholds), against the same
//! registry as serde_json.
//!
//! Prints one JSON line per result on stdout,
//! `{"name","unit","value","baseline","baseline_value","ratio"}`
//! (ratio = value / baseline_value), like the other benches
//! (docs/benchmarks.md). Run with `cargo bench -p tributary-fleet`;
//! `BENCH_NODES` changes the fleet size; without `--bench` (as under
//! `cargo test --benches`) it runs on 20 nodes as a smoke test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tributary_core::ids::{NodeId, SensorId};
use tributary_fleet::{FleetConfig, NodeInfo, Peer, SensorInfo, Threshold};

const SENSORS_PER_NODE: u32 = 20;
const RUNS: usize = 5;

#[derive(Serialize, Deserialize)]
struct JsonNode {
    name: String,
    location: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct JsonSensor {
    name: String,
    unit: String,
    location: Option<String>,
    open: f64,
    close: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct JsonRegistry {
    nodes: BTreeMap<String, JsonNode>,
    sensors: BTreeMap<u32, JsonSensor>,
}

const UNITS: [&str; 5] = ["°C", "bar", "m³/h", "kWh", "%RH"];

fn node_info(n: u64) -> NodeInfo {
    NodeInfo {
        name: format!("gateway {n:04}"),
        location: Some(format!("site {} / building {}", n / 50, n % 50)),
    }
}

fn sensor_info(n: u64, s: u32) -> SensorInfo {
    SensorInfo {
        name: format!("sensor {s:02} of gateway {n:04}"),
        unit: UNITS[s as usize % UNITS.len()].to_string(),
        location: Some(format!("rack {}, slot {s}", n % 10)),
    }
}

fn threshold(s: u32) -> Threshold {
    Threshold {
        open: 0.8 + f64::from(s % 4) * 0.05,
        close: Some(0.5),
    }
}

fn sensor_id(n: u64, s: u32) -> SensorId {
    SensorId(n as u32 * SENSORS_PER_NODE + s)
}

/// The registry as one batch of edits, or one commit per node (`commit_each`).
fn build(nodes: u64, commit_each: bool) -> FleetConfig {
    let mut doc = FleetConfig::new(NodeId(0xffff), 1);
    for n in 0..nodes {
        doc.set_node(NodeId(n), &node_info(n)).expect("valid node");
        for s in 0..SENSORS_PER_NODE {
            doc.set_sensor(sensor_id(n, s), &sensor_info(n, s))
                .expect("valid sensor");
            doc.set_threshold(sensor_id(n, s), threshold(s))
                .expect("valid threshold");
        }
        if commit_each {
            doc.commit();
        }
    }
    doc.commit();
    doc
}

fn json(nodes: u64) -> JsonRegistry {
    let mut reg = JsonRegistry {
        nodes: BTreeMap::new(),
        sensors: BTreeMap::new(),
    };
    for n in 0..nodes {
        let info = node_info(n);
        reg.nodes.insert(
            NodeId(n).to_string(),
            JsonNode {
                name: info.name,
                location: info.location,
            },
        );
        for s in 0..SENSORS_PER_NODE {
            let info = sensor_info(n, s);
            let t = threshold(s);
            reg.sensors.insert(
                sensor_id(n, s).0,
                JsonSensor {
                    name: info.name,
                    unit: info.unit,
                    location: info.location,
                    open: t.open,
                    close: t.close,
                },
            );
        }
    }
    reg
}

fn median(mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn line(name: &str, unit: &str, value: f64, baseline: &str, baseline_value: f64) {
    let ratio = if baseline_value > 0.0 {
        value / baseline_value
    } else {
        f64::NAN
    };
    println!(
        "{}",
        serde_json::json!({"name": name, "unit": unit, "value": value,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio})
    );
}

/// Syncs `from` into `to` until quiescent: (bytes, messages, largest message).
fn full_sync(from: &mut FleetConfig, to: &mut FleetConfig) -> (usize, usize, usize) {
    let (mut a_peer, mut b_peer) = (Peer::new(), Peer::new());
    let (mut bytes, mut messages, mut largest) = (0, 0, 0);
    loop {
        let a = from.generate(&mut a_peer);
        let b = to.generate(&mut b_peer);
        if a.is_none() && b.is_none() {
            return (bytes, messages, largest);
        }
        for (m, doc, peer) in [(a, &mut *to, &mut b_peer), (b, &mut *from, &mut a_peer)] {
            if let Some(m) = m {
                bytes += m.len();
                messages += 1;
                largest = largest.max(m.len());
                let _ = doc.receive(peer, &m).expect("honest message");
            }
        }
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let nodes: u64 = std::env::var("BENCH_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 1000 } else { 20 });
    eprintln!("fleet bench: {nodes} nodes × {SENSORS_PER_NODE} sensors");

    let start = Instant::now();
    let mut doc = build(nodes, false);
    let build_time = start.elapsed();
    let reg = json(nodes);
    let json_bytes = serde_json::to_vec(&reg).expect("serialisable");
    let json_parse = median(|| {
        let r: JsonRegistry = serde_json::from_slice(&json_bytes).expect("own json");
        std::hint::black_box(r);
    });
    let json_write = median(|| {
        std::hint::black_box(serde_json::to_vec(&reg).expect("serialisable"));
    });
    line(
        "fleet_build_one_batch",
        "ms",
        ms(build_time),
        "json_serialise",
        ms(json_write),
    );

    let saved = doc.save();
    line(
        "fleet_save_size",
        "bytes",
        saved.len() as f64,
        "json_size",
        json_bytes.len() as f64,
    );
    let save_time = median(|| {
        std::hint::black_box(doc.save());
    });
    line(
        "fleet_save",
        "ms",
        ms(save_time),
        "json_serialise",
        ms(json_write),
    );
    let load_time = median(|| {
        std::hint::black_box(FleetConfig::load(&saved, NodeId(1), 2).expect("own save"));
    });
    line(
        "fleet_load",
        "ms",
        ms(load_time),
        "json_parse",
        ms(json_parse),
    );
    let loaded = FleetConfig::load(&saved, NodeId(1), 2).expect("own save");
    let snapshot_time = median(|| {
        std::hint::black_box(loaded.snapshot());
    });
    line(
        "fleet_snapshot",
        "ms",
        ms(snapshot_time),
        "json_parse",
        ms(json_parse),
    );
    assert_eq!(
        loaded.sensors().len() as u64,
        nodes * u64::from(SENSORS_PER_NODE)
    );

    // History kept compact or not: one commit per node instead of one batch.
    let mut chatty = build(nodes, true);
    let chatty_saved = chatty.save();
    line(
        "fleet_save_size_commit_per_node",
        "bytes",
        chatty_saved.len() as f64,
        "json_size",
        json_bytes.len() as f64,
    );
    let chatty_load = median(|| {
        std::hint::black_box(FleetConfig::load(&chatty_saved, NodeId(1), 2).expect("own save"));
    });
    line(
        "fleet_load_commit_per_node",
        "ms",
        ms(chatty_load),
        "json_parse",
        ms(json_parse),
    );

    // Initial full sync: a gateway with an empty document meets the hub.
    let mut sync_stats = (0, 0, 0);
    let sync_time = median(|| {
        let mut hub = FleetConfig::load(&saved, NodeId(1), 3).expect("own save");
        let mut gw = FleetConfig::new(NodeId(2), 1);
        sync_stats = full_sync(&mut hub, &mut gw);
        assert_eq!(
            gw.sensors().len() as u64,
            nodes * u64::from(SENSORS_PER_NODE)
        );
    });
    let (sync_bytes, messages, largest) = sync_stats;
    line(
        "fleet_initial_sync_bytes",
        "bytes",
        sync_bytes as f64,
        "json_size",
        json_bytes.len() as f64,
    );
    line(
        "fleet_initial_sync_largest_message",
        "bytes",
        largest as f64,
        "json_size",
        json_bytes.len() as f64,
    );
    line(
        "fleet_initial_sync_messages",
        "count",
        messages as f64,
        "one_json_message",
        1.0,
    );
    line(
        "fleet_initial_sync",
        "ms",
        ms(sync_time),
        "json_parse",
        ms(json_parse),
    );

    // Steady state: one threshold edit on the hub reaches an in-sync gateway.
    let mut hub = FleetConfig::load(&saved, NodeId(1), 4).expect("own save");
    let mut gw = FleetConfig::load(&saved, NodeId(2), 4).expect("own save");
    let (_, _, _) = full_sync(&mut hub, &mut gw);
    hub.set_threshold(
        sensor_id(0, 0),
        Threshold {
            open: 0.99,
            close: None,
        },
    )
    .expect("valid");
    let edit_chunk = hub.save_incremental();
    let (edit_bytes, edit_messages, _) = full_sync(&mut hub, &mut gw);
    let one_json = serde_json::to_vec(&reg.sensors[&sensor_id(0, 0).0]).expect("serialisable");
    line(
        "fleet_one_edit_sync_bytes",
        "bytes",
        edit_bytes as f64,
        "json_sensor_record",
        one_json.len() as f64,
    );
    line(
        "fleet_one_edit_incremental_save",
        "bytes",
        edit_chunk.len() as f64,
        "json_sensor_record",
        one_json.len() as f64,
    );
    eprintln!("one edit: {edit_messages} messages; initial sync: {messages} messages");
}
