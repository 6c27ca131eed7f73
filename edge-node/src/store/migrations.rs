//! The schema as an ordered, embedded list of migrations keyed by
//! `PRAGMA user_version` (STYLE.md §6, rusqlite_migration's scheme).
//!
//! Migration `i` (0-based) takes the database from version `i` to `i + 1`.
//! Pending migrations run in one transaction that also sets
//! `user_version`, so a crash leaves either the old or the new schema.
//! Shipped migrations are never edited; a change is a new entry.

/// Version 1: the whole store.
///
/// - `meta`: single integer values (node id, version high, hub watermark,
///   HLC, eviction floors).
/// - `source`: the anti-replay window per submission source.
/// - `sensor`: every sensor with at least one bucket (eviction walks it;
///   the status page counts it).
/// - `aggregate`: one row per (resolution, bucket, sensor) with its current
///   version and summary. The version is the rowid: every write of a row
///   moves it to the end of the table (SQLite's cheap append path), and the
///   outbox (`read_delta`) is a rowid range scan. The key index is
///   time-major on purpose: a batch's new 1 s buckets and its updated
///   1 m/1 h/1 d buckets are each one contiguous run of index pages, so a
///   commit writes a few pages to the WAL instead of one per sensor
///   (sensor-major was several times slower at 100 sensors), and eviction
///   oldest-first is a key-range delete. The price: a per-sensor range query
///   walks every sensor's entries in that time range (see
///   `Store::aggregates`).
///   A bucket of exactly one reading (nearly every 1 s bucket at ≤ 1 Hz)
///   leaves `min`, `max`, `sum_sq` and `last_ts` NULL: they are derived
///   from `sum` and `first_ts` (`store::single`, `store::summary_at`), which
///   halves the row. Changed in place before the first release.
/// - `raw`: raw readings in arrival order, evicted first, packed: one row
///   per ingest batch holding `count` readings as `data`, 20 bytes each
///   (sensor u32, ts u64 ms, value f64, little-endian, in arrival order);
///   `id` is the sequence number of its first reading, so the next row's id
///   is `id + count` and the readings stored are `max(id + count) −
///   min(id)`. Raw readings are write-only (an archive the budget may
///   evict), and one row per reading cost as much as the baseline's whole
///   insert per reading (`benches/ingest.rs`); one blob per batch is one
///   b-tree insert. Changed in place before the first release (no database
///   with the per-reading layout exists).
/// - `alert`: alerts with their HLC; `AUTOINCREMENT` keeps ids monotonic
///   even if rows are ever deleted.
const V1: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE source (
    name TEXT PRIMARY KEY NOT NULL,
    high INTEGER NOT NULL,
    seen BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE sensor (
    id INTEGER PRIMARY KEY
);

CREATE TABLE aggregate (
    version    INTEGER PRIMARY KEY,
    resolution INTEGER NOT NULL,
    bucket     INTEGER NOT NULL,
    sensor     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    sum        REAL NOT NULL,
    min        REAL,
    max        REAL,
    sum_sq     REAL,
    first_ts   INTEGER NOT NULL,
    last_ts    INTEGER
);
CREATE UNIQUE INDEX aggregate_by_key ON aggregate (resolution, bucket, sensor);

CREATE TABLE raw (
    id    INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    data  BLOB NOT NULL
);

CREATE TABLE alert (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hlc         INTEGER NOT NULL UNIQUE,
    sensor      INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    value       REAL NOT NULL,
    score       REAL NOT NULL,
    detector    INTEGER NOT NULL,
    w_count     INTEGER NOT NULL,
    w_sum       REAL NOT NULL,
    w_min       REAL NOT NULL,
    w_max       REAL NOT NULL,
    w_sum_sq    REAL NOT NULL,
    w_first_ts  INTEGER NOT NULL,
    w_last_ts   INTEGER NOT NULL,
    resolved_at INTEGER,
    peak        REAL
);
CREATE INDEX alert_by_sensor ON alert (sensor, id);
CREATE INDEX alert_open ON alert (sensor, at) WHERE resolved_at IS NULL;
";

/// Every migration, in order.
pub(crate) const MIGRATIONS: &[&str] = &[V1];
