//! Ingest throughput of the store against plain SQLite.
//!
//! `cargo bench -p tributary-edge --bench ingest` prints one JSON line per
//! result:
//!
//! - `edge_ingest_raw_sqlite`: the baseline, a plain rusqlite batched INSERT
//!   of the readings into one table (one transaction per 1000 readings),
//!   with the store's pragmas (WAL, `synchronous = FULL`).
//! - `edge_ingest_store`: the same readings through `Store::ingest`, same
//!   batch size, durability on: dedup windows, raw readings, four resolutions of
//!   versioned buckets, version index, all in one transaction per batch.
//! - `edge_ingest_store_no_raw` (informational): the same with
//!   `keep_raw = false`.
//! - `edge_ingest_store_10hz`: the same number of readings from 100 sensors
//!   at 10 Hz (a 1 s bucket then holds ten readings instead of one), against
//!   the baseline on that data.
//! - `edge_ingest_http`: the 1 Hz readings through `POST /api/v1/readings`
//!   of a whole gateway started in-process (JSON, 1000 readings per
//!   request, 4 clients), durability on.
//! - `edge_rss_1000x10hz`: peak resident memory of the real binary with its
//!   simulator at 1,000 sensors × 10 Hz for `BENCH_RSS_SECONDS` (20), with
//!   the idle binary as the baseline; also the readings/s it stored.
//!
//! `BENCH_ONLY=store` runs only the raw/store lines (quick iterations),
//! `BENCH_ONLY=store1` only the 1 Hz baseline and store lines.
//!
//! Readings are deterministic; the databases are temp files on disk.
//! Throughput numbers, not tests: nothing asserts on them.

use std::time::Instant;

use rusqlite::{Connection, params};
use tributary_core::ids::{SensorId, Timestamp};
use tributary_edge::reading::{Sample, Submission};
use tributary_edge::store::{Store, StoreOptions};

const SENSORS: u64 = 100;
const READINGS: u64 = 200_000;
const BATCH: usize = 1_000;
/// Readings per submission: one device's share of a batch.
const PER_SUBMISSION: usize = 100;
const START_MS: u64 = 1_700_000_000_000;

mod common;
mod gateway;

fn readings() -> Vec<Sample> {
    readings_at(1)
}

/// `READINGS` readings of `SENSORS` sensors sampled at `hz`.
fn readings_at(hz: u64) -> Vec<Sample> {
    // BENCH_READINGS: fewer readings, e.g. under valgrind.
    let n = std::env::var("BENCH_READINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(READINGS);
    (0..n)
        .map(|i| {
            let (tick, k) = (i / SENSORS, i % SENSORS);
            let t = tick * 1_000 / hz / 1_000; // whole seconds, for the wave
            let ms = tick * 1_000 / hz;
            // A slow wave per sensor plus deterministic jitter.
            let jitter = ((i.wrapping_mul(2_654_435_761)) % 1_000) as f64 / 1_000.0;
            Sample {
                sensor: SensorId(k as u32),
                ts: Timestamp(START_MS + ms),
                value: 20.0 + (t as f64 / 60.0 + k as f64).sin() * 5.0 + jitter,
            }
        })
        .collect()
}

fn raw_sqlite(dir: &std::path::Path, data: &[Sample]) -> rusqlite::Result<f64> {
    let mut conn = Connection::open(dir.join("raw.db"))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE raw (id INTEGER PRIMARY KEY, sensor INTEGER NOT NULL,
         ts INTEGER NOT NULL, value REAL NOT NULL)",
    )?;
    let t0 = Instant::now();
    for chunk in data.chunks(BATCH) {
        let tx = conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT INTO raw (sensor, ts, value) VALUES (?1, ?2, ?3)")?;
            for s in chunk {
                stmt.execute(params![s.sensor.0, s.ts.as_millis() as i64, s.value])?;
            }
        }
        tx.commit()?;
    }
    Ok(data.len() as f64 / t0.elapsed().as_secs_f64())
}

fn store(
    dir: &std::path::Path,
    data: &[Sample],
    keep_raw: bool,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut store = Store::open(&StoreOptions {
        path: dir.join(format!("store-{keep_raw}.db")),
        synchronous_full: true,
        disk_budget_bytes: 0,
        keep_raw,
        node_id: None,
        cache_keys: 16_384,
    })?;
    // Built outside the timed loop: the baseline gets its rows for free too.
    let mut seq = 0;
    let batches: Vec<Vec<Submission>> = data
        .chunks(BATCH)
        .map(|chunk| common::submissions(chunk, PER_SUBMISSION, &mut seq))
        .collect();
    let t0 = Instant::now();
    for b in &batches {
        store.ingest(b)?;
    }
    Ok(data.len() as f64 / t0.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and
    // only wants to know the target runs.
    let data = if std::env::args().any(|a| a == "--bench") {
        readings()
    } else {
        readings().into_iter().take(2 * BATCH).collect()
    };
    // Temp files on disk (fsync costs are part of what is measured);
    // BENCH_DIR picks another file system, e.g. the Pi's SD card.
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let base = raw_sqlite(dir.path(), &data)?;
    println!(
        "{}",
        serde_json::json!({"name": "edge_ingest_raw_sqlite", "unit": "readings/s", "value": base.round()})
    );
    let value = store(dir.path(), &data, true)?;
    println!(
        "{}",
        serde_json::json!({
            "name": "edge_ingest_store", "unit": "readings/s", "value": value.round(),
            "baseline": "edge_ingest_raw_sqlite", "baseline_value": base.round(),
            "ratio": (value / base * 1000.0).round() / 1000.0,
        })
    );
    // BENCH_ONLY=store1: the 1 Hz lines only (e.g. under callgrind).
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "store1") {
        return Ok(());
    }
    let emit = |name: &str, unit: &str, value: f64, baseline: &str, base: f64| {
        println!(
            "{}",
            serde_json::json!({
                "name": name, "unit": unit, "value": (value * 10.0).round() / 10.0,
                "baseline": baseline, "baseline_value": (base * 10.0).round() / 10.0,
                "ratio": (value / base * 1000.0).round() / 1000.0,
            })
        );
    };
    let quick = !std::env::args().any(|a| a == "--bench");
    let data10: Vec<Sample> = if quick {
        readings_at(10).into_iter().take(2 * BATCH).collect()
    } else {
        readings_at(10)
    };
    let dir10 = tempfile::tempdir_in(dir.path())?;
    let base10 = raw_sqlite(dir10.path(), &data10)?;
    let v10 = store(dir10.path(), &data10, true)?;
    emit(
        "edge_ingest_store_10hz",
        "readings/s",
        v10.round(),
        "edge_ingest_raw_sqlite_10hz",
        base10.round(),
    );
    // BENCH_ONLY=store: only the store lines (quick iterations on the store).
    let store_only = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "store");
    if store_only {
        let no_raw = store(dir.path(), &data, false)?;
        emit(
            "edge_ingest_store_no_raw",
            "readings/s",
            no_raw.round(),
            "edge_ingest_raw_sqlite",
            base.round(),
        );
        return Ok(());
    }
    let http = gateway::http_ingest(dir.path(), &data, BATCH, 4)?;
    emit(
        "edge_ingest_http",
        "readings/s",
        http.round(),
        "edge_ingest_raw_sqlite",
        base.round(),
    );
    let seconds = if quick {
        2
    } else {
        std::env::var("BENCH_RSS_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20)
    };
    let mem = gateway::memory(dir.path(), 1000, 10.0, seconds)?;
    emit(
        "edge_rss_1000x10hz",
        "MiB",
        mem.peak_mib,
        "edge_rss_idle",
        mem.idle_mib,
    );
    println!(
        "{}",
        serde_json::json!({"name": "edge_rss_run_ingest", "unit": "readings/s",
            "value": mem.ingested_per_s.round(), "offered": 10_000})
    );
    // Informational: the same without raw rows (buckets only).
    let no_raw = store(dir.path(), &data, false)?;
    println!(
        "{}",
        serde_json::json!({
            "name": "edge_ingest_store_no_raw", "unit": "readings/s", "value": no_raw.round(),
            "baseline": "edge_ingest_raw_sqlite", "baseline_value": base.round(),
            "ratio": (no_raw / base * 1000.0).round() / 1000.0,
        })
    );
    Ok(())
}
