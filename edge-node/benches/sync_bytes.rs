//! Bytes on the wire to sync a gateway's offline backlog (issues #6, #9).
//!
//! `cargo bench -p tributary-edge --bench sync_bytes` prints one JSON line
//! per result, in the format of `benches/ingest.rs`:
//!
//! - `sync_bytes_24h_100x1hz`: every byte both MQTT peers send to bring the
//!   hub up to date after 24 h without an uplink, with the uplink's default
//!   `finest_resolution` (1 min: the 1 s buckets stay on the gateway),
//!   against the naive design
//!   that publishes each reading as its own JSON message (encoded with
//!   serde_json, not estimated); a second line against one CBOR message per
//!   reading (minicbor, `[node, sensor, ts, value]`).
//! - Informational: messages, bytes per reading, the same stream cut by
//!   `Store::read_delta` (64 KiB), outbox entries and bytes by resolution,
//!   what a 1 s entry's bytes are spent on, the sync with the 1 s buckets
//!   (`finest_resolution = "1s"`), ingest and outbox read+encode speed.
//!
//! Workload: 100 sensors × 1 Hz (ids 1000–1099), a daily sine (20 ± 5,
//! phase per sensor) plus ±0.25 of seeded splitmix64 noise, rounded to 0.01
//! as a real sensor reports, starting at a UTC midnight. Ingested into a
//! fresh store (temp dir; `BENCH_DIR` picks another file system) in batches
//! of 1000 readings (10 submissions of 100, as `benches/ingest.rs`), with
//! `keep_raw = false` (raw rows never travel; a gateway that syncs
//! aggregates needs none) and the default 1 GiB disk budget (the backlog
//! stays below it: nothing is evicted, so every 1 s bucket is synced).
//!
//! The sync is the real protocol: the uplink's `NodeSync` (default limits:
//! 64 KiB and 1500 entries per delta, window 4) reading the store as its
//! `DeltaSource`, talking to the hub's `HubSync`; every message is encoded
//! with `codec::v1::encode` and decoded again on the other side. Counted
//! per message: the payload, the MQTT 3.1.1 QoS 1 PUBLISH framing (what the
//! uplink's rumqttc speaks) and the PUBACK. Both directions count: `Hello`,
//! the deltas, the hub's `Resume` and one `Ack` per delta. Not counted, for
//! Tributary and the baselines alike: CONNECT/SUBSCRIBE (once per session)
//! and TCP/IP/TLS.
//!
//! `BENCH_HOURS=<n>` shrinks the backlog (default 24; CI: 1). Sizes, not
//! tests: nothing asserts on them, but the run fails if the hub's day
//! buckets do not count every reading ingested.

use std::collections::VecDeque;
use std::error::Error;
use std::time::Instant;

use tributary_core::codec::v1::{self, Delta, DeltaItem, Message};
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::sync::{DeltaSource, HubConfig, HubSync, MergeSink, NodeConfig, NodeSync};
use tributary_edge::reading::Sample;
use tributary_edge::store::{Store, StoreOptions, SyncView};
use tributary_edge::sync::{UplinkOptions, topic};

mod common;

const SENSORS: u32 = 100;
/// Sensor ids as the simulator numbers them (`first_sensor = 1000`): a
/// 4-digit id costs the JSON baseline what a real deployment's would.
const FIRST_SENSOR: u32 = 1000;
/// 2025-11-23T00:00:00Z: a midnight, so 24 h fill exactly one 1 d bucket
/// per sensor (and ms timestamps have their real 13 digits in JSON).
const START_MS: u64 = 1_763_856_000_000;
/// Readings per `Store::ingest` call, and per submission within it.
const BATCH: usize = 1_000;
const PER_SUBMISSION: usize = 100;
const NODE: NodeId = NodeId(0x0123_4567_89ab_cdef);
const SEED: u64 = 0x5eed_0006;
/// MQTT 3.1.1 PUBACK: fixed header (2) + packet id (2).
const PUBACK: u64 = 4;

/// splitmix64: tiny, seeded, and the same on every platform.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The readings of second `tick` (every sensor once), appended to `out`.
fn tick_readings(tick: u64, rng: &mut u64, out: &mut Vec<Sample>) {
    let day = std::f64::consts::TAU * tick as f64 / 86_400.0;
    for k in 0..SENSORS {
        // Uniform in [-0.25, 0.25): 53 random bits as a fraction.
        let noise = ((splitmix64(rng) >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.5;
        let raw = 20.0 + 5.0 * (day + f64::from(k) * 0.7).sin() + noise;
        out.push(Sample {
            sensor: SensorId(FIRST_SENSOR + k),
            ts: Timestamp(START_MS + tick * 1_000),
            // A sensor reporting 0.01 resolution: e.g. 21.37 (not exactly
            // representable in binary, so a float field costs 9 bytes).
            value: (raw * 100.0).round() / 100.0,
        });
    }
}

/// Bytes of one MQTT 3.1.1 QoS 1 PUBLISH of `payload` bytes on `topic`:
/// fixed header (type byte + remaining length, a 1–4 byte varint), topic
/// (2-byte length + name), packet id (2), payload.
fn publish_bytes(topic: &str, payload: usize) -> u64 {
    let rem = 2 + topic.len() as u64 + 2 + payload as u64;
    let varint = match rem {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + varint + rem
}

/// What one direction (or one design) puts on the wire.
#[derive(Clone, Copy, Debug, Default)]
struct Wire {
    messages: u64,
    payload: u64,
    /// PUBLISH framing plus the receiver's PUBACK.
    mqtt: u64,
}

impl Wire {
    fn publish(&mut self, topic: &str, payload: usize) {
        self.messages += 1;
        self.payload += payload as u64;
        self.mqtt += publish_bytes(topic, payload) - payload as u64 + PUBACK;
    }

    fn total(&self) -> u64 {
        self.payload + self.mqtt
    }

    fn add(&self, o: &Wire) -> Wire {
        Wire {
            messages: self.messages + o.messages,
            payload: self.payload + o.payload,
            mqtt: self.mqtt + o.mqtt,
        }
    }
}

/// The naive design's message: one reading as JSON.
#[derive(serde::Serialize)]
struct NaiveReading<'a> {
    node: &'a str,
    sensor: u32,
    ts: u64,
    value: f64,
}

/// Both per-reading baselines, encoded as the readings are generated.
struct Baselines {
    node_hex: String,
    topic: String,
    json: Wire,
    cbor: Wire,
    buf: Vec<u8>,
}

impl Baselines {
    fn new() -> Self {
        Baselines {
            node_hex: NODE.to_string(),
            // The same topic as the deltas, so the MQTT framing compares
            // like for like.
            topic: topic(NODE, "delta"),
            json: Wire::default(),
            cbor: Wire::default(),
            buf: Vec::with_capacity(128),
        }
    }

    fn add(&mut self, s: &Sample) -> Result<(), Box<dyn Error>> {
        self.buf.clear();
        serde_json::to_writer(
            &mut self.buf,
            &NaiveReading {
                node: &self.node_hex,
                sensor: s.sensor.0,
                ts: s.ts.0,
                value: s.value,
            },
        )?;
        self.json.publish(&self.topic, self.buf.len());
        self.buf.clear();
        // The compact choices a careful CBOR design would make: the node as
        // an integer, the value as the f64 it is.
        minicbor::Encoder::new(&mut self.buf)
            .array(4)?
            .u64(NODE.0)?
            .u32(s.sensor.0)?
            .u64(s.ts.0)?
            .f64(s.value)?;
        self.cbor.publish(&self.topic, self.buf.len());
        Ok(())
    }
}

/// Ingests `seconds` of readings into `store`; returns (readings, time
/// spent in `Store::ingest`, evicted 1 s buckets) and the baselines.
fn ingest(store: &mut Store, seconds: u64) -> Result<(u64, f64, u64, Baselines), Box<dyn Error>> {
    let mut rng = SEED;
    let mut base = Baselines::new();
    let ticks_per_batch = (BATCH / SENSORS as usize) as u64;
    let (mut readings, mut secs, mut evicted, mut seq) = (0u64, 0f64, 0u64, 0u64);
    let mut samples = Vec::with_capacity(BATCH);
    let mut tick = 0;
    while tick < seconds {
        samples.clear();
        let end = (tick + ticks_per_batch).min(seconds);
        for t in tick..end {
            tick_readings(t, &mut rng, &mut samples);
        }
        tick = end;
        for s in &samples {
            base.add(s)?;
        }
        // Built outside the timed call, as in benches/ingest.rs.
        let batch = common::submissions(&samples, PER_SUBMISSION, &mut seq);
        let t0 = Instant::now();
        let r = store.ingest(&batch)?;
        secs += t0.elapsed().as_secs_f64();
        readings += samples.len() as u64;
        evicted += r.evicted.bucket_1s;
    }
    Ok((readings, secs, evicted, base))
}

fn res_index(r: Resolution) -> usize {
    Resolution::ALL.iter().position(|&x| x == r).unwrap_or(0)
}

const RES_NAMES: [&str; 4] = ["1s", "1m", "1h", "1d"];

/// Per resolution: what the deltas carried and where its bytes went.
#[derive(Clone, Copy, Debug, Default)]
struct ResTally {
    entries: u64,
    /// Readings the entries summarise.
    readings: u64,
    groups: u64,
    /// Encoded groups (header + items).
    bytes: u64,
    /// Of `bytes`: the four float fields (sum, min, max, sum_sq).
    float_bytes: u64,
    /// Of `bytes`: the version field.
    version_bytes: u64,
}

fn encoded_len<T: minicbor::Encode<()>>(x: &T) -> Result<u64, Box<dyn Error>> {
    Ok(minicbor::to_vec(x)?.len() as u64)
}

/// Attributes a delta's bytes to resolutions, per field, with the real
/// encoder: a field's bytes are the item's length minus the length with
/// that field at its cheapest value, plus that cheapest length.
fn tally_delta(d: &Delta, t: &mut [ResTally; 4]) -> Result<(), Box<dyn Error>> {
    for g in &d.groups {
        let r = &mut t[res_index(g.resolution)];
        r.groups += 1;
        r.bytes += encoded_len(g)?;
        for it in &g.items {
            r.entries += 1;
            r.readings += it.count;
            let full = encoded_len(it)?;
            let no_floats = DeltaItem {
                sum: 0.0,
                min: 0.0,
                max: 0.0,
                sum_sq: 0.0,
                ..*it
            };
            // 0.0 is a 3-byte half float; 0 a 1-byte integer.
            r.float_bytes += full - encoded_len(&no_floats)? + 4 * 3;
            let no_version = DeltaItem { version: 0, ..*it };
            r.version_bytes += full - encoded_len(&no_version)? + 1;
        }
    }
    Ok(())
}

/// The hub's side: counts what was merged (the join itself is the hub
/// bench's business).
#[derive(Default)]
struct Tally {
    by_res: [ResTally; 4],
    error: Option<String>,
}

impl MergeSink for Tally {
    fn join_delta(&mut self, _node: NodeId, delta: &Delta) {
        if let Err(e) = tally_delta(delta, &mut self.by_res) {
            self.error.get_or_insert(e.to_string());
        }
    }
}

struct Session {
    up: Wire,
    down: Wire,
    deltas: u64,
    /// Encoded `Delta` messages alone.
    delta_payload: u64,
    tally: Tally,
    secs: f64,
}

/// One uplink session from watermark 0 until the hub holds everything.
fn session(src: &impl DeltaSource, cfg: NodeConfig) -> Result<Session, Box<dyn Error>> {
    let t0 = Instant::now();
    let mut node = NodeSync::new(NODE, cfg, 0);
    let mut hub = HubSync::new(HubConfig::default());
    let mut tally = Tally::default();
    let (mut up, mut down) = (Wire::default(), Wire::default());
    let (mut deltas, mut delta_payload) = (0, 0);
    let ack_topic = topic(NODE, "ack");
    let mut to_hub: VecDeque<Message> = node.on_connect(0, src).into();
    while let Some(m) = to_hub.pop_front() {
        let kind = match &m {
            Message::Hello(_) => "hello",
            Message::Delta(_) => {
                deltas += 1;
                "delta"
            }
            other => return Err(format!("node sent {other:?}").into()),
        };
        let bytes = v1::encode(&m);
        if kind == "delta" {
            delta_payload += bytes.len() as u64;
        }
        up.publish(&topic(NODE, kind), bytes.len());
        // What the hub works with is what came off the wire.
        for reply in hub.on_message(NODE, v1::decode(&bytes)?, 0, &mut tally)? {
            let bytes = v1::encode(&reply);
            down.publish(&ack_topic, bytes.len());
            to_hub.extend(node.on_message(v1::decode(&bytes)?, 0, src)?);
        }
    }
    if let Some(e) = tally.error.take() {
        return Err(e.into());
    }
    if !node.is_synced(src) {
        return Err("the session ended before the hub held everything".into());
    }
    Ok(Session {
        up,
        down,
        deltas,
        delta_payload,
        tally,
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// The outbox through `Store::read_delta` (64 KiB), as the store actor's
/// `ReadDelta` serves it: deltas only, no acks.
fn read_delta_all(store: &Store, max_bytes: usize) -> Result<(Wire, u64, f64), Box<dyn Error>> {
    let t0 = Instant::now();
    let (mut wire, mut entries, mut after) = (Wire::default(), 0u64, 0u64);
    let t = topic(NODE, "delta");
    while let Some(m) = store.read_delta(after, max_bytes)? {
        let Message::Delta(d) = &m else {
            return Err("read_delta returned a non-delta".into());
        };
        entries += d.groups.iter().map(|g| g.items.len() as u64).sum::<u64>();
        after = d.to;
        wire.publish(&t, v1::encode(&m).len());
    }
    Ok((wire, entries, t0.elapsed().as_secs_f64()))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn main() -> Result<(), Box<dyn Error>> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and
    // only wants to know the target runs: two minutes of readings then.
    let seconds = if std::env::args().any(|a| a == "--bench") {
        let hours: u64 = std::env::var("BENCH_HOURS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(24);
        hours.max(1) * 3_600
    } else {
        120
    };
    let span = if seconds % 3_600 == 0 {
        format!("{}h", seconds / 3_600)
    } else {
        format!("{seconds}s")
    };
    let hours = round3(seconds as f64 / 3_600.0);
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let mut store = Store::open(&StoreOptions {
        path: dir.path().join("store.db"),
        synchronous_full: true,
        disk_budget_bytes: 1 << 30,
        keep_raw: false,
        node_id: Some(NODE),
        cache_keys: 65_536,
    })?;
    let (readings, ingest_secs, evicted_1s, base) = ingest(&mut store, seconds)?;
    let opts = UplinkOptions::default();
    let uplink = opts.node_config();
    // The headline: the uplink as configured by default, which syncs
    // `finest_resolution` (1 min) and coarser; the 1 s buckets stay local.
    let view = SyncView {
        store: &store,
        finest: opts.finest_resolution,
    };
    let s = session(&view, uplink)?;
    // Every resolution (`finest_resolution = "1s"`): the breakdown by
    // resolution below comes from this session.
    let full = session(&store, uplink)?;
    for sess in [&s, &full] {
        let day_readings = sess.tally.by_res[res_index(Resolution::Day)].readings;
        if day_readings != readings {
            return Err(
                format!("hub day buckets count {day_readings} of {readings} readings").into(),
            );
        }
    }
    let total = s.up.add(&s.down);
    let value = total.total();
    let name = format!("sync_bytes_{span}_100x1hz");
    for (b, w) in [
        ("naive_json_per_reading", &base.json),
        ("cbor_per_reading", &base.cbor),
    ] {
        println!(
            "{}",
            serde_json::json!({
                "name": name, "unit": "bytes", "value": value,
                "baseline": b, "baseline_value": w.total(),
                "ratio": (value as f64 / w.total() as f64 * 1e5).round() / 1e5,
                "hours": hours, "readings": readings,
            })
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "name": format!("sync_messages_{span}"), "unit": "messages", "value": total.messages,
            "deltas": s.deltas, "node_to_hub": s.up.messages, "hub_to_node": s.down.messages,
            "baseline": "naive_json_per_reading", "baseline_value": base.json.messages,
        })
    );
    println!(
        "{}",
        serde_json::json!({
            "name": format!("sync_bytes_per_reading_{span}"), "unit": "bytes/reading",
            "value": round3(value as f64 / readings as f64),
            "payload": round3(total.payload as f64 / readings as f64),
            "mqtt": round3(total.mqtt as f64 / readings as f64),
            "baseline": "naive_json_per_reading",
            "baseline_value": round3(base.json.total() as f64 / readings as f64),
            "baseline_payload": round3(base.json.payload as f64 / readings as f64),
            "cbor_per_reading": round3(base.cbor.total() as f64 / readings as f64),
        })
    );
    println!(
        "{}",
        serde_json::json!({
            "name": format!("sync_bytes_split_{span}"), "unit": "bytes", "value": value,
            "delta_payload": s.delta_payload,
            "delta_headers": s.delta_payload - s.tally.by_res.iter().map(|r| r.bytes).sum::<u64>(),
            "hello_payload": s.up.payload - s.delta_payload,
            "hub_payload": s.down.payload, "mqtt_framing_and_pubacks": total.mqtt,
        })
    );
    let full_value = full.up.add(&full.down).total();
    let entries: u64 = full.tally.by_res.iter().map(|r| r.entries).sum();
    for (i, r) in full.tally.by_res.iter().enumerate() {
        println!(
            "{}",
            serde_json::json!({
                "name": format!("sync_outbox_{}_{span}", RES_NAMES[i]), "unit": "bytes",
                "value": r.bytes, "share": round3(r.bytes as f64 / full_value as f64),
                "entries": r.entries, "groups": r.groups, "readings": r.readings,
                "bytes_per_entry": round3(r.bytes as f64 / r.entries.max(1) as f64),
                "float_bytes_per_entry": round3(r.float_bytes as f64 / r.entries.max(1) as f64),
                "version_bytes_per_entry":
                    round3(r.version_bytes as f64 / r.entries.max(1) as f64),
            })
        );
    }
    // The same outbox cut by Store::read_delta, as the brief of #6 reads
    // it: deltas only (no Hello/Resume/Ack), 64 KiB each.
    let (rd, rd_entries, rd_secs) = read_delta_all(&store, uplink.max_batch_bytes)?;
    println!(
        "{}",
        serde_json::json!({
            "name": format!("sync_bytes_read_delta_{span}"), "unit": "bytes", "value": rd.total(),
            "messages": rd.messages, "entries": rd_entries,
            "baseline": "naive_json_per_reading", "baseline_value": base.json.total(),
            "ratio": (rd.total() as f64 / base.json.total() as f64 * 1e5).round() / 1e5,
        })
    );
    // With the 1 s buckets (`finest_resolution = "1s"`).
    let cv = full.up.add(&full.down);
    println!(
        "{}",
        serde_json::json!({
            "name": format!("sync_bytes_with_1s_{span}"), "unit": "bytes", "value": cv.total(),
            "messages": cv.messages,
            "baseline": "naive_json_per_reading", "baseline_value": base.json.total(),
            "ratio": (cv.total() as f64 / base.json.total() as f64 * 1e5).round() / 1e5,
        })
    );
    // Main file plus WAL: recent pages may still sit in the latter.
    let db_bytes: u64 = ["store.db", "store.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{}",
        serde_json::json!({
            "name": format!("sync_ingest_{span}"), "unit": "readings/s",
            "value": (readings as f64 / ingest_secs).round(), "seconds": round3(ingest_secs),
            "keep_raw": false, "evicted_1s": evicted_1s,
            "db_bytes": db_bytes,
        })
    );
    println!(
        "{}",
        serde_json::json!({
            "name": format!("sync_read_encode_{span}"), "unit": "entries/s",
            "value": (rd_entries as f64 / rd_secs).round(), "seconds": round3(rd_secs),
            "path": "Store::read_delta + codec::v1::encode",
        })
    );
    println!(
        "{}",
        serde_json::json!({
            "name": format!("sync_session_{span}"), "unit": "entries/s",
            "value": (entries as f64 / s.secs).round(), "seconds": round3(s.secs),
            "path": "NodeSync over the store + encode + decode + HubSync (no merge)",
        })
    );
    Ok(())
}
