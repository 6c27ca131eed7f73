//! Merge throughput into SQLite, durable (WAL, `synchronous = FULL`), with
//! one transaction per delta (`apply`) and with `GROUP` deltas per
//! transaction (`apply_group`, what the sync shell does under load). One
//! JSON line per result, each with baselines measured in the same run on the
//! same entries and transactions:
//!
//! - `core_join`: the core's in-memory `AggregateState::join_entry` (the
//!   upper bound: no storage at all);
//! - `sqlite_plain_insert`: `INSERT OR REPLACE` of the same rows into the
//!   same table with the same pragmas and transactions (storage without
//!   the version check).
//!
//! The workload is the sync stream of a fleet: `NODES` gateways, each with
//! `SENSORS` sensors read at 1 Hz, shipping a delta every 10 s of what
//! changed since the last one (new 1 s buckets plus new versions of the
//! current 1 m, 1 h and 1 d buckets), interleaved across nodes. Then the
//! same stream is replayed (every entry stale).
//!
//! Then the read side: the merged 1 m series of one sensor over 30 days
//! (43,200 buckets) from a store holding `QUERY_SENSORS` such series,
//! against the core computing `merged` for the same keys in memory.
//!
//! The same stream into PostgreSQL (`merge_postgres_durable*`, when it is
//! installed): a [`PgStore`] on a throwaway durable cluster over loopback,
//! with the SQLite merge of the same run and a one-upsert-per-entry client
//! (on the first deltas) as baselines.
//!
//! The Automerge baseline (issue #9): the first `AUTOMERGE_DELTAS` deltas
//! of the same stream kept as an Automerge document (a map per node, a map
//! per entry key holding its version and summary fields, replaced when a
//! newer version arrives: the same join), one commit per delta, against
//! the SQLite merge of the same deltas; entries/s and the bytes each keeps
//! (Automerge's `save()`, SQLite's used pages).
//!
//! Besides its own lines it prints the standard figure lines
//! `{"name","unit","value","baseline","baseline_value","ratio"}` that
//! `tributary-bench all` collects.
//!
//! Run: `cargo bench -p tributary-hub --bench merge`. The database lives
//! under `$TRIBUTARY_BENCH_DIR`, else the system temp dir: put it on the
//! disk you mean to measure (a tmpfs makes fsync free).

use std::time::Instant;

use rusqlite::params;
use tributary_core::crdt::aggregate::{AggregateState, Entry, Key};
use tributary_core::ids::{Bucket, NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_hub::store::{
    MergeOutcome, MergeStore, NodeBatch, PgStore, RangeQuery, SqliteOptions, SqliteStore,
};
use tributary_testkit::{Postgres, PostgresOptions};

const NODES: u64 = 8;
const SENSORS: u32 = 100;
const STEP_S: u64 = 10;
const STEPS: u64 = 60;
/// Deltas per transaction in the grouped run: two rounds of the fleet.
const GROUP: usize = 16;
/// 2023-11-14T22:13:20Z: a realistic epoch offset for bucket indices.
const T0_MS: u64 = 1_700_000_000_000;

type Batch = (NodeId, Vec<(Key, Entry)>);

fn stream() -> Vec<Batch> {
    let mut states: Vec<AggregateState> = (0..NODES).map(|_| AggregateState::new()).collect();
    let mut shipped = vec![0u64; NODES as usize];
    let mut out = Vec::new();
    for step in 0..STEPS {
        for (i, state) in states.iter_mut().enumerate() {
            let node = NodeId(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1));
            for s in 0..STEP_S {
                let t = T0_MS + (step * STEP_S + s) * 1_000 + i as u64;
                // A sensor belongs to one gateway: ids unique in the fleet.
                for s in 0..SENSORS {
                    let sensor = i as u32 * SENSORS + s;
                    let x = 20.0 + f64::from(s) * 0.1 + (t % 7_919) as f64 * 1e-3;
                    state
                        .record_all_resolutions(node, SensorId(sensor), Timestamp(t), x)
                        .expect("finite reading");
                }
            }
            let entries = state.node_entries_since(node, shipped[i]);
            shipped[i] = state.version_of(node);
            out.push((node, entries));
        }
    }
    out
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("TRIBUTARY_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("bench dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

fn rate(entries: u64, secs: f64) -> f64 {
    (entries as f64 / secs).round()
}

fn core_join(batches: &[Batch]) -> f64 {
    let start = Instant::now();
    let mut s = AggregateState::new();
    for (node, entries) in batches {
        for (k, e) in entries {
            s.join_entry(*k, *node, *e);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(&s);
    secs
}

/// The same rows, `INSERT OR REPLACE`, same schema, pragmas, transactions
/// (`group` deltas each).
fn plain_insert(batches: &[Batch], group: usize) -> f64 {
    let dir = bench_dir();
    let path = dir.path().join("plain.db");
    drop(SqliteStore::open(&path).expect("open")); // same schema and pragmas
    let mut conn = rusqlite::Connection::open(&path).expect("open");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("pragma");
    conn.pragma_update(None, "cache_size", -16384)
        .expect("pragma");
    let start = Instant::now();
    for g in batches.chunks(group) {
        let tx = conn.transaction().expect("tx");
        for (node, entries) in g {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO aggregate (sensor, resolution, bucket, node, version,
                     count, sum_bits, min_bits, max_bits, sum_sq_bits, first_ts, last_ts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .expect("prepare");
            for (k, e) in entries {
                let s = &e.summary;
                st.execute(params![
                    k.sensor.0,
                    k.resolution as u8,
                    k.bucket.0 as i64,
                    node.0 as i64,
                    e.version as i64,
                    s.count as i64,
                    s.sum.to_bits() as i64,
                    s.min.to_bits() as i64,
                    s.max.to_bits() as i64,
                    s.sum_sq.to_bits() as i64,
                    s.first_ts.0 as i64,
                    s.last_ts.0 as i64,
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    start.elapsed().as_secs_f64()
}

/// Merges the stream into `store`, `group` deltas per transaction; then
/// replays it. Returns (merge secs, replay secs).
fn merge_into(store: &mut impl MergeStore, batches: &[Batch], group: usize) -> (f64, f64) {
    let entries: u64 = batches.iter().map(|(_, e)| e.len() as u64).sum();
    let mut run = || -> (f64, MergeOutcome) {
        let start = Instant::now();
        let mut total = MergeOutcome::default();
        for g in batches.chunks(group) {
            let nb: Vec<NodeBatch<'_>> = g
                .iter()
                .map(|(node, entries)| NodeBatch {
                    node: *node,
                    entries,
                    progress: None,
                })
                .collect();
            let outs = if let [b] = nb.as_slice() {
                vec![store.apply(b.node, b.entries).expect("apply")]
            } else {
                store.apply_group(&nb).expect("apply_group")
            };
            for o in outs {
                total.applied += o.applied;
                total.stale += o.stale;
            }
        }
        (start.elapsed().as_secs_f64(), total)
    };
    let (merge_secs, first) = run();
    assert_eq!(first.applied, entries, "a fresh store applies every entry");
    let (replay_secs, again) = run();
    assert_eq!(again.stale, entries, "a replay applies nothing");
    (merge_secs, replay_secs)
}

/// Merges the stream into a fresh SQLite store, `group` deltas per
/// transaction; then replays it. Returns (merge secs, replay secs, stored
/// rows).
fn merge(batches: &[Batch], group: usize) -> (f64, f64, u64) {
    let dir = bench_dir();
    let mut store =
        SqliteStore::open_with(&SqliteOptions::new(dir.path().join("hub.db"))).expect("open store");
    let (merge_secs, replay_secs) = merge_into(&mut store, batches, group);
    (merge_secs, replay_secs, store.entry_count().expect("count"))
}

/// The same into a fresh database of `pg` (a [`PgStore`] over loopback).
fn merge_pg(pg: &Postgres, batches: &[Batch], group: usize) -> (f64, f64, u64) {
    let url = pg
        .create_database(&format!("merge_g{group}"))
        .expect("createdb");
    let mut store = PgStore::connect(&url).expect("connect");
    let (merge_secs, replay_secs) = merge_into(&mut store, batches, group);
    (merge_secs, replay_secs, store.entry_count().expect("count"))
}

/// Deltas of the row-by-row baseline: one round trip per entry is slow
/// enough that a prefix of the stream measures it.
const ROW_BY_ROW_DELTAS: usize = 48;

/// The alternative to `UNNEST`: one single-row upsert (version check only)
/// per entry, same transactions. Returns (secs, entries).
fn pg_row_by_row(pg: &Postgres, batches: &[Batch], group: usize) -> (f64, u64) {
    let url = pg
        .create_database(&format!("rows_g{group}"))
        .expect("createdb");
    drop(PgStore::connect(&url).expect("migrate"));
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let st = client
        .prepare(
            "INSERT INTO aggregate AS a (node, resolution, bucket, sensor, version,
             count, sum_bits, min_bits, max_bits, sum_sq_bits, first_ts, last_ts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (node, resolution, bucket, sensor) DO UPDATE SET
             version = excluded.version, count = excluded.count,
             sum_bits = excluded.sum_bits, min_bits = excluded.min_bits,
             max_bits = excluded.max_bits, sum_sq_bits = excluded.sum_sq_bits,
             first_ts = excluded.first_ts, last_ts = excluded.last_ts
             WHERE excluded.version > a.version",
        )
        .expect("prepare");
    let batches = &batches[..ROW_BY_ROW_DELTAS.min(batches.len())];
    let start = Instant::now();
    let mut n = 0u64;
    for g in batches.chunks(group) {
        let mut tx = client.transaction().expect("tx");
        for (node, entries) in g {
            for (k, e) in entries {
                let s = &e.summary;
                tx.execute(
                    &st,
                    &[
                        &(node.0 as i64),
                        &i64::from(k.resolution as u8),
                        &(k.bucket.0 as i64),
                        &i64::from(k.sensor.0),
                        &(e.version as i64),
                        &(s.count as i64),
                        &(s.sum.to_bits() as i64),
                        &(s.min.to_bits() as i64),
                        &(s.max.to_bits() as i64),
                        &(s.sum_sq.to_bits() as i64),
                        &(s.first_ts.0 as i64),
                        &(s.last_ts.0 as i64),
                    ],
                )
                .expect("upsert");
                n += 1;
            }
        }
        tx.commit().expect("commit");
    }
    (start.elapsed().as_secs_f64(), n)
}

/// Sensors with 30 days of 1 m buckets in the query benchmark.
const QUERY_SENSORS: u32 = 50;
const MINUTES_30D: u64 = 30 * 24 * 60;

/// Median time of `merged` for one sensor's 30-day 1 m series, and of the
/// core's in-memory `merged` for the same keys.
fn query_30d() -> (f64, f64, u64) {
    let dir = bench_dir();
    let mut store = SqliteStore::open_with(&SqliteOptions::new(dir.path().join("query.db")))
        .expect("open store");
    query_30d_in(&mut store)
}

/// [`query_30d`] against PostgreSQL (a fresh database of `pg`).
fn query_30d_pg(pg: &Postgres) -> (f64, f64, u64) {
    let url = pg.create_database("query").expect("createdb");
    let mut store = PgStore::connect(&url).expect("connect");
    query_30d_in(&mut store)
}

fn query_30d_in(store: &mut impl MergeStore) -> (f64, f64, u64) {
    let node = NodeId(7);
    let first = T0_MS / 60_000;
    let mut version = 0u64;
    let mut core = AggregateState::new();
    let mut batch = Vec::with_capacity(20_000);
    for m in 0..MINUTES_30D {
        for sensor in 0..QUERY_SENSORS {
            version += 1;
            let t = (first + m) * 60_000;
            let mut summary =
                Summary::of(Timestamp(t + 1), 20.0 + (m % 97) as f64 * 0.01).expect("finite");
            summary.combine(&Summary::of(Timestamp(t + 59_000), 21.5).expect("finite"));
            let key = Key::new(SensorId(sensor), Resolution::Minute, Bucket(first + m));
            let entry = Entry { version, summary };
            if sensor == 0 {
                core.join_entry(key, node, entry);
            }
            batch.push((key, entry));
        }
        if batch.len() >= 20_000 {
            store.apply(node, &batch).expect("seed");
            batch.clear();
        }
    }
    store.apply(node, &batch).expect("seed");
    let q = RangeQuery {
        sensor: SensorId(0),
        resolution: Resolution::Minute,
        from: Timestamp(first * 60_000),
        to: Timestamp((first + MINUTES_30D) * 60_000),
        limit: usize::MAX,
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut sql = Vec::new();
    let mut mem = Vec::new();
    let mut buckets = 0;
    for _ in 0..7 {
        let start = Instant::now();
        let series = store.merged(&q).expect("query");
        sql.push(start.elapsed().as_secs_f64());
        buckets = series.len() as u64;
        let start = Instant::now();
        let series: Vec<Summary> = (0..MINUTES_30D)
            .map(|m| {
                core.merged(&Key::new(
                    SensorId(0),
                    Resolution::Minute,
                    Bucket(first + m),
                ))
            })
            .collect();
        mem.push(start.elapsed().as_secs_f64());
        std::hint::black_box(series);
    }
    assert_eq!(buckets, MINUTES_30D);
    (median(sql), median(mem), buckets)
}

/// Deltas of the Automerge baseline (~26,000 entries: Automerge applies
/// them about a hundred times slower than the merge, so the whole stream
/// would take minutes).
const AUTOMERGE_DELTAS: usize = 20;

/// Prints one standard figure line.
fn figure(name: &str, unit: &str, value: f64, baseline: &str, baseline_value: f64) {
    println!(
        "{}",
        serde_json::json!({"name": name, "unit": unit, "value": value.round(),
            "baseline": baseline, "baseline_value": baseline_value.round(),
            "ratio": (value / baseline_value * 1e4).round() / 1e4})
    );
}

/// The Automerge baseline: (secs, saved bytes) for `batches`.
fn automerge_merge(batches: &[Batch]) -> (f64, usize) {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue, Value};
    let start = Instant::now();
    let mut doc = AutoCommit::new();
    let mut nodes = std::collections::HashMap::new();
    for (node, entries) in batches {
        let map = match nodes.get(node) {
            Some(m) => automerge::ObjId::clone(m),
            None => {
                let m = doc
                    .put_object(ROOT, node.to_string(), ObjType::Map)
                    .expect("node map");
                nodes.insert(*node, m.clone());
                m
            }
        };
        for (key, entry) in entries {
            let k = format!("{}/{:?}/{}", key.sensor.0, key.resolution, key.bucket.0);
            // The join: a newer version replaces the entry, an older one is
            // ignored.
            let newer = match doc.get(&map, &k).expect("get") {
                Some((Value::Object(_), id)) => match doc.get(&id, "v").expect("get v") {
                    Some((Value::Scalar(v), _)) => match v.as_ref() {
                        ScalarValue::Uint(old) => entry.version > *old,
                        _ => true,
                    },
                    _ => true,
                },
                _ => true,
            };
            if !newer {
                continue;
            }
            let e = doc.put_object(&map, &k, ObjType::Map).expect("entry");
            let s = &entry.summary;
            doc.put(&e, "v", entry.version).expect("put");
            doc.put(&e, "n", s.count).expect("put");
            doc.put(&e, "sum", s.sum).expect("put");
            doc.put(&e, "min", s.min).expect("put");
            doc.put(&e, "max", s.max).expect("put");
        }
        doc.commit();
    }
    let secs = start.elapsed().as_secs_f64();
    (secs, doc.save().len())
}

/// The SQLite merge of `batches`, one delta per transaction, into a fresh
/// store: (secs, bytes of used pages).
fn sqlite_merge_bytes(batches: &[Batch]) -> (f64, u64) {
    let dir = bench_dir();
    let path = dir.path().join("hub.db");
    let mut store = SqliteStore::open_with(&SqliteOptions::new(&path)).expect("open store");
    let start = Instant::now();
    for (node, entries) in batches {
        store.apply(*node, entries).expect("apply");
    }
    let secs = start.elapsed().as_secs_f64();
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("reopen");
    let used: i64 = conn
        .query_row(
            "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
            [],
            |r| r.get(0),
        )
        .expect("pages");
    (secs, u64::try_from(used).unwrap_or(0))
}

fn main() {
    let batches = stream();
    let entries: u64 = batches.iter().map(|(_, e)| e.len() as u64).sum();
    let per_delta = entries / batches.len() as u64;
    let core_secs = core_join(&batches);
    // Durable like the SQLite runs: fsync and synchronous_commit on. Its
    // cluster lives in the system temp dir ($TMPDIR).
    let pg = match Postgres::start_with(PostgresOptions {
        durable: true,
        ..PostgresOptions::default()
    }) {
        Ok(pg) => pg,
        Err(e) => panic!("postgres: {e}"),
    };
    if pg.is_none() {
        eprintln!("PostgreSQL not installed: no postgres lines");
    }
    for group in [1, GROUP] {
        let plain_secs = plain_insert(&batches, group);
        let (merge_secs, replay_secs, stored) = merge(&batches, group);
        for (name, secs) in [
            ("merge_sqlite_durable", merge_secs),
            ("merge_sqlite_durable_replay", replay_secs),
        ] {
            println!(
                "{}",
                serde_json::json!({
                    "bench": name,
                    "entries": entries,
                    "deltas": batches.len(),
                    "entries_per_delta": per_delta,
                    "deltas_per_transaction": group,
                    "transactions": batches.len().div_ceil(group),
                    "stored_rows": stored,
                    "nodes": NODES,
                    "sensors_per_node": SENSORS,
                    "durability": "WAL, synchronous=FULL",
                    "secs": secs,
                    "entries_per_s": rate(entries, secs),
                    "baseline": {
                        "core_join_entries_per_s": rate(entries, core_secs),
                        "sqlite_plain_insert_entries_per_s": rate(entries, plain_secs),
                    },
                    "goal_entries_per_s": 200_000,
                })
            );
        }
        figure(
            &format!("hub_merge_sqlite_group{group}"),
            "entries/s",
            rate(entries, merge_secs),
            "sqlite_plain_insert",
            rate(entries, plain_secs),
        );
        let Some(pg) = &pg else { continue };
        let sqlite_secs = merge_secs;
        let (merge_secs, replay_secs, stored) = merge_pg(pg, &batches, group);
        let (rows_secs, rows) = pg_row_by_row(pg, &batches, group);
        figure(
            &format!("hub_merge_postgres_group{group}"),
            "entries/s",
            rate(entries, merge_secs),
            "postgres_row_by_row_upsert",
            rate(rows, rows_secs),
        );
        for (name, secs) in [
            ("merge_postgres_durable", merge_secs),
            ("merge_postgres_durable_replay", replay_secs),
        ] {
            println!(
                "{}",
                serde_json::json!({
                    "bench": name,
                    "entries": entries,
                    "deltas": batches.len(),
                    "deltas_per_transaction": group,
                    "transactions": batches.len().div_ceil(group),
                    "stored_rows": stored,
                    "durability": "fsync=on, synchronous_commit=on, loopback TCP",
                    "secs": secs,
                    "entries_per_s": rate(entries, secs),
                    "baseline": {
                        "sqlite_merge_entries_per_s": rate(entries, sqlite_secs),
                        "postgres_row_by_row_upsert_entries_per_s": rate(rows, rows_secs),
                    },
                })
            );
        }
    }
    // Against Automerge, on the first deltas of the same stream.
    let head = &batches[..AUTOMERGE_DELTAS.min(batches.len())];
    let head_entries: u64 = head.iter().map(|(_, e)| e.len() as u64).sum();
    let (am_secs, am_bytes) = automerge_merge(head);
    let (sq_secs, sq_bytes) = sqlite_merge_bytes(head);
    figure(
        "hub_merge_sqlite_vs_automerge",
        "entries/s",
        rate(head_entries, sq_secs),
        "automerge_document",
        rate(head_entries, am_secs),
    );
    figure(
        "hub_merge_stored_bytes_vs_automerge",
        "bytes",
        sq_bytes as f64,
        "automerge_document_save",
        am_bytes as f64,
    );

    let (sql_secs, mem_secs, buckets) = query_30d();
    println!(
        "{}",
        serde_json::json!({
            "bench": "query_merged_30d_1m_sqlite",
            "buckets": buckets,
            "stored_rows": u64::from(QUERY_SENSORS) * MINUTES_30D,
            "sensors_stored": QUERY_SENSORS,
            "median_ms": sql_secs * 1e3,
            "baseline": { "core_merged_in_memory_median_ms": mem_secs * 1e3 },
        })
    );
    if let Some(pg) = &pg {
        let (pg_secs, _, buckets) = query_30d_pg(pg);
        println!(
            "{}",
            serde_json::json!({
                "bench": "query_merged_30d_1m_postgres",
                "buckets": buckets,
                "stored_rows": u64::from(QUERY_SENSORS) * MINUTES_30D,
                "sensors_stored": QUERY_SENSORS,
                "median_ms": pg_secs * 1e3,
                "baseline": {
                    "sqlite_median_ms": sql_secs * 1e3,
                    "core_merged_in_memory_median_ms": mem_secs * 1e3,
                },
            })
        );
    }
}
