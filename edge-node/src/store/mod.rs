//! The gateway's SQLite store: aggregates (the node's share of the
//! aggregate CRDT), raw readings, the per-source dedup windows, alerts and
//! the sync watermark, in one database owned by one actor ([`actor`]).
//!
//! # Opening
//!
//! [`Store::open`] creates the parent directory, sets `auto_vacuum =
//! INCREMENTAL` (effective only before the first table, so on a new file),
//! WAL, `synchronous = FULL` (or `NORMAL`), `foreign_keys`, a busy timeout,
//! then applies the embedded migrations (`store/migrations.rs`) in one transaction
//! keyed by `PRAGMA user_version`. A database written by a newer binary is
//! refused ([`StoreError::NewerSchema`]). The node id is drawn once from the
//! OS RNG (non-zero) and persisted; a configured id that differs from the
//! stored one is refused ([`StoreError::NodeIdMismatch`]).
//!
//! # Ingest ([`Store::ingest`])
//!
//! A batch of submissions is one transaction: on any error it is rolled
//! back, the in-memory caches are dropped, and nothing of the batch is
//! stored (dedup windows included). Per submission with an origin, the
//! (source, seq) pair goes through the source's anti-replay window
//! ([`dedup`]): a seen seq, or one below the window, makes the submission a
//! [`Outcome::Duplicate`] (the latter also counts in
//! [`BatchResult::below_window`]). Applied items update buckets:
//!
//! - `Item::Reading` is recorded (`Summary::record`) in the bucket
//!   containing its time at every resolution, and kept in `raw` if
//!   `keep_raw` (all of a batch's raw readings in one packed row).
//! - `Item::Window` is combined into every resolution whose bucket contains
//!   both its `first_ts` and `last_ts`; finer ones cannot hold it.
//!
//! Within a batch, each key's changes are summed first (readings in order),
//! then combined into the stored row, and each changed key gets **one** new
//! version: `version_high + 1, + 2, …` in the table's key order
//! (resolution, bucket, sensor), so versions are unique per node and a
//! delta of versions `(a, b]` is exactly the keys changed in between.
//! Floating-point sums therefore depend (in the last bits) on how readings
//! were split into batches; counts, min and max never do.
//!
//! Hot rows live in a bounded cache (`store/cache.rs`, `cache_keys`), and
//! per resolution the greatest stored (bucket, sensor) is remembered, so a
//! key beyond it is inserted without a SELECT: the steady state (new 1 s
//! buckets, current minute/hour/day cached) reads nothing from SQLite.
//!
//! ## Throughput
//!
//! `benches/ingest.rs` compares ingest with a plain batched INSERT of the
//! same readings (1 row per reading). Measured with callgrind (instructions
//! per reading, 1 Hz × 100 sensors, 1000 readings per batch): the baseline
//! needs ~2.7 k; the store needed ~24 k and needs ~16.6 k since:
//!
//! - raw readings are packed one row per batch (`raw` in
//!   `store/migrations.rs`): −2.5 k;
//! - the bucket cache and sensor set hash with a keyed multiply hasher and
//!   keep their allocations across generations (`store/cache.rs`): −2 k;
//! - a batch's changes are collected in a hash map and sorted once instead
//!   of a BTreeMap, and new rows go 32 per INSERT statement, bound
//!   directly: −2 k;
//! - a bucket of one reading leaves the columns derivable from it NULL
//!   (half the row, half the pages and WAL bytes): −0.8 k.
//!
//! What remains is SQLite's b-tree work for the rows themselves: at 1 Hz
//! every reading creates a 1 s bucket row (table append plus unique-index
//! insert, ~10 k instructions, two thirds of the total: without 1 s rows the
//! store needs ~5.7 k), and each batch moves every sensor's 1 m, 1 h and 1 d
//! rows to new versions (~15 k per row). Going further needs fewer 1 s rows
//! at ≤ 1 Hz (e.g. one row per sensor and minute holding per-second
//! entries, each with its own version, and an outbox index to keep
//! `read_delta` exact), see the report on issue #4.
//!
//! # Eviction ([`Store::enforce_budget`])
//!
//! Used bytes are `(page_count − freelist_count) × page_size` of the main
//! database file (the WAL is bounded by checkpoints and not counted). Above
//! the budget, rows are deleted in chunks until usage is at most 90 % of
//! it: raw readings oldest (first arrived) first, then 1 s buckets oldest
//! first, then 1 m, then 1 h — never 1 d — then `PRAGMA incremental_vacuum`
//! returns the freed pages to the file system. Bucket eviction removes whole
//! bucket indices (every sensor), and the first surviving index becomes the
//! resolution's *floor* (persisted in `meta`).
//!
//! Why nothing unsynced is lost: every reading updated all four resolutions
//! when it was ingested, so an evicted 1 s bucket's readings are already
//! inside its 1 m, 1 h and 1 d buckets (and an evicted 1 m bucket's inside
//! 1 h and 1 d). 1 d buckets are never evicted, so every reading ever
//! ingested stays counted in a bucket that is synced; eviction only loses
//! *detail* the hub has not seen yet, never a total. A late reading for a
//! bucket below a floor skips that resolution (counted in
//! [`BatchResult::late_skipped`]) — re-creating a partial bucket with a new
//! version would overwrite the complete one at the hub. If only 1 d rows
//! are left and usage is still above the budget,
//! [`Evictions::budget_exhausted`] is set; ingest goes on.
//!
//! # Sync
//!
//! [`Store::read_delta`] cuts `Delta` messages by encoded size from the
//! rows in version (= rowid) order; the `DeltaSource` impl serves the I/O-free
//! `tributary_core::sync::NodeSync` directly. The hub's watermark is
//! persisted with [`Store::set_hub_watermark`] (monotonic).
//!
//! # JSON
//!
//! Row types derive `serde::Serialize`; core fields go through [`json`]
//! (documented there).

pub mod actor;
mod alerts;
mod batch;
mod budget;
mod cache;
pub mod dedup;
mod digest;
mod error;
pub mod json;
pub(crate) mod migrations;
mod outbox;
pub use outbox::SyncView;
mod rows;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use rand::TryRng;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tributary_core::crdt::aggregate::Key;
use tributary_core::hlc::{Hlc, HlcClock};
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;

use cache::{BucketCache, FastSet};
use dedup::ReplayWindow;
pub use error::StoreError;
pub use rows::{
    AggregateQuery, AggregateRow, AlertQuery, BatchResult, Evictions, NewAlert, Outcome,
    ResolvedAlert, StoreStatus, StoredAlert,
};

/// How the store is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// The database file; its directory is created if missing.
    pub path: PathBuf,
    /// `synchronous = FULL` (an ack survives power loss) or `NORMAL` (may
    /// lose the last transactions on power loss, never corrupts).
    pub synchronous_full: bool,
    /// Disk budget for the database file in bytes; 0 means unlimited.
    pub disk_budget_bytes: u64,
    /// Keep raw readings (evicted first when over budget).
    pub keep_raw: bool,
    /// The configured node id; `None` uses (or creates) the stored one.
    pub node_id: Option<NodeId>,
    /// Aggregate rows kept in memory (0 disables the cache).
    pub cache_keys: usize,
}

/// `meta` keys.
mod meta {
    pub(super) const NODE_ID: &str = "node_id";
    pub(super) const VERSION_HIGH: &str = "version_high";
    pub(super) const HUB_WATERMARK: &str = "hub_watermark";
    pub(super) const HLC: &str = "hlc";
    /// First surviving bucket index per evictable resolution (1s, 1m, 1h).
    pub(super) const FLOORS: [&str; 3] = ["floor_1s", "floor_1m", "floor_1h"];
}

/// How long a statement waits for another connection's lock (backups,
/// `sqlite3` on the Pi) before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on the maps keyed by network input (source names, sensors); past
/// it a map is cleared, costing one reload per entry.
const MAP_CAP: usize = 65_536;

/// SQLite integers are i64; u64 ids, seqs and HLCs are stored bit for bit.
fn to_sql(x: u64) -> i64 {
    x as i64
}

fn from_sql(x: i64) -> u64 {
    x as u64
}

fn resolution_of(i: i64) -> Result<Resolution, StoreError> {
    usize::try_from(i)
        .ok()
        .and_then(|i| Resolution::ALL.get(i).copied())
        .ok_or(StoreError::Corrupt("resolution"))
}

/// Reads 7 summary columns starting at `at`; `min`, `max`, `sum_sq` and
/// `last_ts` are NULL in a [`single`] row and derived from `sum` and
/// `first_ts`.
fn summary_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Summary> {
    let sum: f64 = row.get(at + 1)?;
    let first_ts = Timestamp(from_sql(row.get(at + 5)?));
    let min: Option<f64> = row.get(at + 2)?;
    let max: Option<f64> = row.get(at + 3)?;
    let sum_sq: Option<f64> = row.get(at + 4)?;
    let last_ts: Option<i64> = row.get(at + 6)?;
    Ok(Summary {
        count: from_sql(row.get(at)?),
        sum,
        min: min.unwrap_or(sum),
        max: max.unwrap_or(sum),
        sum_sq: sum_sq.unwrap_or(sum * sum),
        first_ts,
        last_ts: last_ts.map_or(first_ts, |t| Timestamp(from_sql(t))),
    })
}

/// Whether `s` is exactly (bit for bit) the summary of one reading of
/// value `sum` at `first_ts`, so its row can leave `min`, `max`, `sum_sq`
/// and `last_ts` NULL. At ≤ 1 Hz nearly every 1 s bucket is such a row:
/// ~30 instead of ~60 bytes, so half the pages (and WAL bytes) per batch.
/// Anything else (e.g. a reading of −0.0, whose `min` differs from its
/// `sum` in the sign bit) is stored in full.
fn single(s: &Summary) -> bool {
    s.count == 1
        && s.min.to_bits() == s.sum.to_bits()
        && s.max.to_bits() == s.sum.to_bits()
        && s.sum_sq.to_bits() == (s.sum * s.sum).to_bits()
        && s.last_ts == s.first_ts
}

/// The SQLite store. Not `Sync`: one thread (the store actor) owns it.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    node: NodeId,
    keep_raw: bool,
    budget: u64,
    version_high: u64,
    hub_watermark: u64,
    clock: HlcClock,
    /// First surviving bucket index for 1s, 1m, 1h.
    floors: [u64; 3],
    cache: BucketCache,
    /// Per resolution, the greatest stored (bucket, sensor), `Some(None)`
    /// if none, `None` if not loaded: a key above it is known absent
    /// without a SELECT. Never lower than the truth (eviction only lowers
    /// the truth).
    frontier: [Option<Option<(u64, u32)>>; 4],
    /// Sensors known to be in the `sensor` table.
    sensors: FastSet<SensorId>,
    sources: HashMap<String, ReplayWindow>,
}

impl Store {
    /// Opens (creating and migrating if needed) the database.
    pub fn open(opts: &StoreOptions) -> Result<Store, StoreError> {
        let mut conn = tributary_sqlite::open(
            &opts.path,
            &tributary_sqlite::Pragmas {
                synchronous_full: opts.synchronous_full,
                // 8 MiB of page cache (default 2 MiB): the table's tail, the
                // hot part of the key index and the raw table's tail stay
                // resident.
                cache_kib: 8192,
                statement_cache: 64,
                incremental_vacuum: true,
                busy_timeout: BUSY_TIMEOUT,
            },
        )?;
        tributary_sqlite::migrate(&mut conn, migrations::MIGRATIONS)?;

        let node = Self::node_identity(&conn, opts.node_id)?;
        let get = |k: &str| -> Result<u64, StoreError> {
            let v: Option<i64> = conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                .optional()?;
            Ok(v.map_or(0, from_sql))
        };
        let version_high = get(meta::VERSION_HIGH)?;
        let hub_watermark = get(meta::HUB_WATERMARK)?;
        // Ticking only needs the last value; max_forward matters for
        // `observe`, which the store never calls.
        let clock = HlcClock::resume(Hlc::from_u64(get(meta::HLC)?), 0);
        let floors = [
            get(meta::FLOORS[0])?,
            get(meta::FLOORS[1])?,
            get(meta::FLOORS[2])?,
        ];
        Ok(Store {
            conn,
            node,
            keep_raw: opts.keep_raw,
            budget: opts.disk_budget_bytes,
            version_high,
            hub_watermark,
            clock,
            floors,
            cache: BucketCache::new(opts.cache_keys),
            frontier: [None; 4],
            sensors: FastSet::default(),
            sources: HashMap::new(),
        })
    }

    fn node_identity(conn: &Connection, configured: Option<NodeId>) -> Result<NodeId, StoreError> {
        let stored: Option<i64> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [meta::NODE_ID],
                |r| r.get(0),
            )
            .optional()?;
        match (stored.map(|v| NodeId(from_sql(v))), configured) {
            (Some(s), Some(c)) if s != c => Err(StoreError::NodeIdMismatch {
                stored: s,
                configured: c,
            }),
            (Some(s), _) => Ok(s),
            (None, c) => {
                let id = match c {
                    Some(c) => c,
                    None => random_node_id()?,
                };
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![meta::NODE_ID, to_sql(id.0)],
                )?;
                Ok(id)
            }
        }
    }

    /// This gateway's CRDT actor id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// Highest version written.
    pub fn version_high(&self) -> u64 {
        self.version_high
    }

    /// Highest version the hub acknowledged.
    pub fn hub_watermark(&self) -> u64 {
        self.hub_watermark
    }

    /// Records the hub's contiguous watermark. Monotonic: a lower or equal
    /// one (a late or repeated ack) is a no-op; one above
    /// [`version_high`](Store::version_high) is an error (the hub claims
    /// versions this node never wrote: wrong node or a restored backup).
    pub fn set_hub_watermark(&mut self, w: u64) -> Result<(), StoreError> {
        if w > self.version_high {
            return Err(StoreError::WatermarkAhead {
                watermark: w,
                version_high: self.version_high,
            });
        }
        if w <= self.hub_watermark {
            return Ok(());
        }
        set_meta(&self.conn, meta::HUB_WATERMARK, w)?;
        self.hub_watermark = w;
        Ok(())
    }

    /// Buckets of one sensor at one resolution whose start lies in
    /// `[from, to)`, oldest first, at most `limit`. The table is time-major
    /// (see `store/migrations.rs`), so this walks every sensor's rows from `from`
    /// on until `limit` rows of this sensor are found: cheap for 1 m and
    /// coarser, proportional to the number of sensors for 1 s.
    pub fn aggregates(&self, q: &AggregateQuery) -> Result<Vec<AggregateRow>, StoreError> {
        let ms = q.resolution.millis();
        let lo = q.from.as_millis().div_ceil(ms);
        let hi = q.to.as_millis().div_ceil(ms);
        let mut stmt = self.conn.prepare_cached(
            "SELECT bucket, version, count, sum, min, max, sum_sq, first_ts, last_ts
             FROM aggregate WHERE sensor = ?1 AND resolution = ?2 AND bucket >= ?3 AND bucket < ?4
             ORDER BY bucket LIMIT ?5",
        )?;
        let rows = stmt.query_map(
            params![
                q.sensor.0,
                q.resolution as u8,
                to_sql(lo),
                to_sql(hi),
                i64::try_from(q.limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(AggregateRow {
                    sensor: q.sensor,
                    resolution: q.resolution,
                    bucket_start: Timestamp(from_sql(r.get(0)?).saturating_mul(ms)),
                    version: from_sql(r.get(1)?),
                    summary: summary_at(r, 2)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Bytes in use: `(page_count − freelist_count) × page_size`.
    pub fn db_bytes(&self) -> Result<u64, StoreError> {
        let q = |p: &str| -> Result<u64, StoreError> {
            let v: i64 = self
                .conn
                .query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))?;
            Ok(from_sql(v.max(0)))
        };
        let pages = q("page_count")?.saturating_sub(q("freelist_count")?);
        Ok(pages.saturating_mul(q("page_size")?))
    }

    /// Counts for the status page. `unsynced_entries` and the counts are
    /// index scans, so callers poll it, not call it per batch.
    pub fn status(&self) -> Result<StoreStatus, StoreError> {
        let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<u64, StoreError> {
            let v: i64 = self.conn.query_row(sql, p, |r| r.get(0))?;
            Ok(from_sql(v.max(0)))
        };
        // Raw rows are only ever deleted oldest-first and ids count
        // readings, so the id span is the reading count without a scan.
        let raw = count(
            "SELECT coalesce((SELECT id + count FROM raw ORDER BY id DESC LIMIT 1)
                           - (SELECT id FROM raw ORDER BY id LIMIT 1), 0)",
            &[],
        )?;
        Ok(StoreStatus {
            node_id: self.node,
            version_high: self.version_high,
            hub_watermark: self.hub_watermark,
            unsynced_entries: self.unsynced_entries()?,
            db_bytes: self.db_bytes()?,
            budget_bytes: self.budget,
            raw_readings: raw,
            sensors: count("SELECT count(*) FROM sensor", &[])?,
            open_alerts: count("SELECT count(*) FROM alert WHERE resolved_at IS NULL", &[])?,
        })
    }

    /// Aggregate rows with a version above the hub's watermark.
    pub fn unsynced_entries(&self) -> Result<u64, StoreError> {
        let v: i64 = self.conn.query_row(
            "SELECT count(*) FROM aggregate WHERE version > ?1",
            [to_sql(self.hub_watermark)],
            |r| r.get(0),
        )?;
        Ok(from_sql(v.max(0)))
    }

    /// Moves the WAL into the database file and truncates it (shutdown).
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Drops every in-memory copy of database state (after a rollback).
    fn forget(&mut self) {
        self.cache.clear();
        self.frontier = [None; 4];
        self.sensors.clear();
        self.sources.clear();
    }

    /// Runs `f` in an IMMEDIATE transaction; on error rolls back and
    /// forgets the caches.
    fn in_tx<T>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let res = f(self).and_then(|v| {
            self.conn.execute_batch("COMMIT")?;
            Ok(v)
        });
        if res.is_err() {
            // Rolls back whatever is open; fails harmlessly if SQLite
            // already rolled back on its own (e.g. SQLITE_FULL).
            let _ = self.conn.execute_batch("ROLLBACK");
            self.forget();
        }
        res
    }
}

fn set_meta(conn: &Connection, key: &str, v: u64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, to_sql(v)])?;
    Ok(())
}

fn random_node_id() -> Result<NodeId, StoreError> {
    // Zero is reserved ("no node"); 2^-64 per draw, so a few tries suffice.
    for _ in 0..8 {
        let v = rand::rngs::SysRng
            .try_next_u64()
            .map_err(|e| StoreError::Entropy(e.to_string()))?;
        if v != 0 {
            return Ok(NodeId(v));
        }
    }
    Err(StoreError::Entropy("OS RNG returned only zeros".into()))
}

/// The store's key for a bucket row.
fn key_params(k: &Key) -> (u32, u8, i64) {
    (k.sensor.0, k.resolution as u8, to_sql(k.bucket.0))
}

#[cfg(test)]
mod tests;
