//! The SQLite backend of [`MergeStore`]: the default, zero set-up store.
//!
//! # Opening
//!
//! [`SqliteStore::open`] creates the parent directory, sets WAL,
//! `synchronous = FULL` (a merge the hub acks survives power loss; `NORMAL`
//! is an option for tests and benches), `foreign_keys`, a busy timeout, then
//! applies the embedded migrations in one transaction keyed by
//! `PRAGMA user_version` (the edge's scheme, STYLE.md §6). A database
//! written by a newer binary is refused.
//!
//! # Schema and the upsert
//!
//! `aggregate` holds one row per (key, node). Its primary key is
//! `(node, resolution, bucket, sensor)`: node-major, then time-major, the
//! order in which a node's deltas arrive. A delta (10 s of 1 s buckets of
//! all of a node's sensors, plus new versions of their current minute, hour
//! and day) then lands in a few contiguous runs of pages, so a commit
//! writes tens of pages rather than one per sensor: the bench measured
//! ~430k entries/s this way against ~67k/s with a sensor-major key.
//!
//! Reads are one sensor's series: a partial index `(sensor, resolution,
//! bucket) WHERE resolution >= 1` serves minute and coarser (a 30-day 1 m
//! chart is one index range). It is cheap to keep because only a *new*
//! bucket inserts into it (once a minute per sensor), never the updates of
//! the current one. 1 s buckets (most of the inserts) are not indexed by
//! sensor: a 1 s query seeks each node's time range and filters by sensor,
//! fine for the short ranges 1 s is read at.
//!
//! Each entry is one
//!
//! ```sql
//! INSERT ... ON CONFLICT (resolution, bucket, sensor, node) DO UPDATE SET ...
//! WHERE excluded.version > aggregate.version OR (excluded.version = aggregate.version AND <tie>)
//! ```
//!
//! where `<tie>` is the core's order over the summary bits (count, then
//! the bits of sum, min, max, sum_sq, then first_ts, last_ts, all compared
//! as unsigned 64-bit integers), written out in SQL.
//!
//! **Floats are stored as their IEEE bits in INTEGER columns** (`*_bits`).
//! A REAL column does not round-trip every value: SQLite stores `-0.0` as
//! the integer 0 and reads it back as `+0.0`, and the merged sums must be
//! bit-identical to the core's. u64 values (node ids, counts, timestamps)
//! are stored bit for bit as i64, so their SQL order differs from the u64
//! order above 2^63: the tie-break compares them unsigned, and the merge
//! orders nodes in Rust.
//!
//! `node` holds the per-node bookkeeping ([`NodeRecord`]).
//!
//! Version 2 adds `alert` (one row per `(node, hlc)`, see `sqlite/alerts.rs`) and
//! `sensor_node`: per (node, sensor) the newest reading time, maintained by
//! the merge (one upsert per distinct sensor of a batch, only when an entry
//! was applied, and written only when the time moves forward), so `/sensors`
//! reads a table of fleet size × sensors instead of grouping `aggregate`.
//! Its key is node-major like `aggregate`'s, so a delta touches a few
//! contiguous pages; the index by sensor changes only when a node reports a
//! new sensor.
//!
//! # Readers
//!
//! [`SqliteStore::open_reader`] opens another connection to a database the
//! writer already migrated, with `query_only` set: the API's reader threads
//! use these beside the writer (WAL: readers see the last commit and never
//! block it).

mod alerts;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tributary_core::codec::v1::Alert;
use tributary_core::crdt::aggregate::{Entry, Key};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;

use super::{
    AlertOutcome, AlertQuery, MergeError, MergeOutcome, MergeStore, NodeBatch, NodeBucket,
    NodeRecord, RangeQuery, SUMMARY_COLS, SensorRecord, StoredAlert, from_sql, summary_columns,
    summary_of_columns, to_sql, validate_alerts,
};

/// Version 1: aggregates and nodes.
const V1: &str = "
CREATE TABLE aggregate (
    sensor      INTEGER NOT NULL,
    resolution  INTEGER NOT NULL,
    bucket      INTEGER NOT NULL,
    node        INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    sum_bits    INTEGER NOT NULL,
    min_bits    INTEGER NOT NULL,
    max_bits    INTEGER NOT NULL,
    sum_sq_bits INTEGER NOT NULL,
    first_ts    INTEGER NOT NULL,
    last_ts     INTEGER NOT NULL,
    PRIMARY KEY (node, resolution, bucket, sensor)
) WITHOUT ROWID;
CREATE INDEX aggregate_by_sensor ON aggregate (sensor, resolution, bucket)
    WHERE resolution >= 1;

CREATE TABLE node (
    id           INTEGER PRIMARY KEY,
    version_high INTEGER NOT NULL,
    watermark    INTEGER NOT NULL,
    last_seen_ms INTEGER
);
";

/// Version 2: alerts and the sensor directory (backfilled from the
/// aggregates of version 1).
const V2: &str = "
CREATE TABLE alert (
    node          INTEGER NOT NULL,
    hlc           INTEGER NOT NULL,
    sensor        INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    value_bits    INTEGER NOT NULL,
    score_bits    INTEGER NOT NULL,
    detector      INTEGER NOT NULL,
    w_count       INTEGER NOT NULL,
    w_sum_bits    INTEGER NOT NULL,
    w_min_bits    INTEGER NOT NULL,
    w_max_bits    INTEGER NOT NULL,
    w_sum_sq_bits INTEGER NOT NULL,
    w_first_ts    INTEGER NOT NULL,
    w_last_ts     INTEGER NOT NULL,
    received_ms   INTEGER NOT NULL,
    acked_ms      INTEGER,
    PRIMARY KEY (node, hlc)
) WITHOUT ROWID;
CREATE INDEX alert_by_time ON alert (at, node, hlc);
CREATE INDEX alert_open ON alert (at) WHERE acked_ms IS NULL;

CREATE TABLE sensor_node (
    node    INTEGER NOT NULL,
    sensor  INTEGER NOT NULL,
    newest  INTEGER NOT NULL,
    PRIMARY KEY (node, sensor)
) WITHOUT ROWID;
CREATE INDEX sensor_node_by_sensor ON sensor_node (sensor);
INSERT INTO sensor_node (node, sensor, newest)
    SELECT node, sensor, max(last_ts) FROM aggregate GROUP BY node, sensor;
";

/// Every migration, in order. Shipped migrations are never edited.
const MIGRATIONS: &[&str] = &[V1, V2];

/// How long a statement waits for another connection's lock (a backup,
/// the `sqlite3` shell) before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How the store is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The database file; its directory is created if missing.
    pub path: PathBuf,
    /// `synchronous = FULL` (a commit survives power loss) or `NORMAL`.
    pub synchronous_full: bool,
}

impl SqliteOptions {
    /// Durable defaults for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            synchronous_full: true,
        }
    }
}

/// The SQLite merge store. Not `Sync`: one thread (a store actor) owns it.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    upsert: String,
    sensor_upsert: String,
    opts: SqliteOptions,
}

/// SQL for "`a` > `b` as unsigned 64-bit integers" on i64 columns that
/// hold u64 bits: a negative i64 is a u64 at or above 2^63.
fn gt_unsigned(a: &str, b: &str) -> String {
    format!("(({a} < 0 AND {b} >= 0) OR (({a} < 0) = ({b} < 0) AND {a} > {b}))")
}

/// The core's `Entry::supersedes` for equal versions: lexicographic
/// unsigned comparison of the summary columns, excluded vs stored.
fn tie_break() -> String {
    let mut expr = String::from("FALSE");
    for col in SUMMARY_COLS.iter().rev() {
        let (new, old) = (format!("excluded.{col}"), format!("aggregate.{col}"));
        expr = format!(
            "({} OR ({new} = {old} AND {expr}))",
            gt_unsigned(&new, &old)
        );
    }
    expr
}

/// Moves a sensor's newest reading time forward (never back: a late,
/// older delta leaves it). Compared unsigned, as the timestamps are u64
/// bits.
fn sensor_upsert_sql() -> String {
    format!(
        "INSERT INTO sensor_node (node, sensor, newest) VALUES (?1, ?2, ?3)
         ON CONFLICT (node, sensor) DO UPDATE SET newest = excluded.newest
         WHERE {}",
        gt_unsigned("excluded.newest", "sensor_node.newest")
    )
}

fn upsert_sql() -> String {
    let set: Vec<String> = std::iter::once("version")
        .chain(SUMMARY_COLS)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO aggregate (sensor, resolution, bucket, node, version, {cols})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (resolution, bucket, sensor, node) DO UPDATE SET {set}
         WHERE excluded.version > aggregate.version
            OR (excluded.version = aggregate.version AND {tie})",
        cols = SUMMARY_COLS.join(", "),
        set = set.join(", "),
        tie = tie_break(),
    )
}

/// Reads the 7 summary columns starting at `at`.
fn summary_at(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Summary> {
    let mut c = [0i64; 7];
    for (i, v) in c.iter_mut().enumerate() {
        *v = row.get(at + i)?;
    }
    Ok(summary_of_columns(c))
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`
    /// with durable settings.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, MergeError> {
        Self::open_with(&SqliteOptions::new(path.as_ref()))
    }

    /// Opens with explicit options.
    pub fn open_with(opts: &SqliteOptions) -> Result<SqliteStore, MergeError> {
        let mut conn = tributary_sqlite::open(
            &opts.path,
            &tributary_sqlite::Pragmas {
                synchronous_full: opts.synchronous_full,
                // 16 MiB of page cache: the hot part of the key index stays
                // resident.
                cache_kib: 16_384,
                statement_cache: 32,
                // The hub does not evict (yet): no incremental vacuum.
                incremental_vacuum: false,
                busy_timeout: BUSY_TIMEOUT,
            },
        )?;
        tributary_sqlite::migrate(&mut conn, MIGRATIONS)?;
        Ok(SqliteStore::from_conn(conn, opts))
    }

    /// Opens a read-only connection (`PRAGMA query_only`) to a database
    /// that [`open_with`](SqliteStore::open_with) already created and
    /// migrated: it never migrates, and refuses a schema other than this
    /// binary's. Every write method then fails with an SQLite error.
    pub fn open_reader(opts: &SqliteOptions) -> Result<SqliteStore, MergeError> {
        if !opts.path.exists() {
            return Err(MergeError::Io {
                path: opts.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no database: the writer creates it",
                ),
            });
        }
        let conn = tributary_sqlite::open(
            &opts.path,
            &tributary_sqlite::Pragmas {
                synchronous_full: opts.synchronous_full,
                cache_kib: 16_384,
                statement_cache: 32,
                incremental_vacuum: false,
                busy_timeout: BUSY_TIMEOUT,
            },
        )?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = tributary_sqlite::latest(MIGRATIONS);
        if found > known {
            return Err(MergeError::NewerSchema { found, known });
        }
        if found < known {
            return Err(MergeError::Corrupt("database not migrated yet"));
        }
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(SqliteStore::from_conn(conn, opts))
    }

    fn from_conn(conn: Connection, opts: &SqliteOptions) -> SqliteStore {
        SqliteStore {
            conn,
            upsert: upsert_sql(),
            sensor_upsert: sensor_upsert_sql(),
            opts: opts.clone(),
        }
    }

    /// The options it was opened with (to reopen after a failure).
    pub fn options(&self) -> &SqliteOptions {
        &self.opts
    }

    /// Number of stored (key, node) entries.
    pub fn entry_count(&self) -> Result<u64, MergeError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM aggregate", [], |r| r.get(0))?;
        Ok(from_sql(n.max(0)))
    }

    /// Every stored `(key, node, entry)`, in key then node order (as the
    /// core's `AggregateState::iter_entries`). A full scan: for tests,
    /// exports and checks, not for serving.
    pub fn all_entries(&self) -> Result<Vec<(Key, NodeId, Entry)>, MergeError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT sensor, resolution, bucket, node, version, {} FROM aggregate",
            SUMMARY_COLS.join(", ")
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, i64>(1)?,
                from_sql(r.get(2)?),
                NodeId(from_sql(r.get(3)?)),
                from_sql(r.get(4)?),
                summary_at(r, 5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (sensor, res, bucket, node, version, summary) = row?;
            let key = Key::new(
                tributary_core::ids::SensorId(sensor),
                resolution_of(res)?,
                tributary_core::ids::Bucket(bucket),
            );
            out.push((key, node, Entry { version, summary }));
        }
        out.sort_unstable_by_key(|(k, n, _)| (*k, *n));
        Ok(out)
    }

    /// Reads the schema version: a cheap proof that the file answers
    /// queries (readiness checks).
    pub fn probe(&self) -> Result<(), MergeError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }

    /// `PRAGMA integrity_check` returned `ok`.
    pub fn integrity_ok(&self) -> Result<bool, MergeError> {
        let s: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        Ok(s == "ok")
    }

    /// Moves the WAL into the database file and truncates it (shutdown).
    pub fn checkpoint(&mut self) -> Result<(), MergeError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Rows of one sensor and resolution with a bucket index in
    /// `[lo, hi)`, by bucket then ascending node id, at most `limit`
    /// distinct buckets.
    fn range(
        &self,
        q: &RangeQuery,
        only: Option<NodeId>,
    ) -> Result<Vec<(u64, NodeId, Entry)>, MergeError> {
        let ms = q.resolution.millis();
        let lo = q.from.as_millis().div_ceil(ms);
        let hi = q.to.as_millis().div_ceil(ms);
        let mut out: Vec<(u64, NodeId, Entry)> = Vec::new();
        if lo >= hi || q.limit == 0 {
            return Ok(out);
        }
        // Bucket indices of valid entries fit in i64 (Bucket::is_valid).
        let (lo, hi) = (
            i64::try_from(lo).unwrap_or(i64::MAX),
            i64::try_from(hi).unwrap_or(i64::MAX),
        );
        let mut stmt;
        let mut rows = match only {
            None => {
                stmt = self.conn.prepare_cached(&range_sql(q.resolution))?;
                stmt.query(params![q.sensor.0, q.resolution as u8, lo, hi])?
            }
            Some(node) => {
                stmt = self.conn.prepare_cached(&node_range_sql(q.resolution))?;
                stmt.query(params![
                    q.sensor.0,
                    q.resolution as u8,
                    lo,
                    hi,
                    to_sql(node.0)
                ])?
            }
        };
        let mut buckets = 0usize;
        let mut last: Option<u64> = None;
        while let Some(r) = rows.next()? {
            let bucket = from_sql(r.get(0)?);
            if last != Some(bucket) {
                if buckets == q.limit {
                    break;
                }
                buckets += 1;
                last = Some(bucket);
            }
            out.push((
                bucket,
                NodeId(from_sql(r.get(1)?)),
                Entry {
                    version: from_sql(r.get(2)?),
                    summary: summary_at(r, 3)?,
                },
            ));
        }
        // The index orders nodes as i64; the merge order is u64.
        out.sort_by_key(|(b, n, _)| (*b, *n));
        Ok(out)
    }
}

/// The range query of [`SqliteStore::range`]. The literal
/// `resolution >= 1` lets the planner use the partial index; 1 s rows are
/// found per node through the primary key.
fn range_sql(resolution: Resolution) -> String {
    let filter = if resolution == Resolution::Second {
        "node IN (SELECT id FROM node) AND resolution = ?2 \
         AND bucket >= ?3 AND bucket < ?4 AND sensor = ?1"
    } else {
        "sensor = ?1 AND resolution = ?2 AND bucket >= ?3 AND bucket < ?4 \
         AND resolution >= 1"
    };
    format!(
        "SELECT bucket, node, version, {} FROM aggregate WHERE {filter} ORDER BY bucket",
        SUMMARY_COLS.join(", ")
    )
}

/// [`range_sql`] restricted to one node (`?5`): 1 s rows through the
/// primary key, coarser ones through the sensor index.
fn node_range_sql(resolution: Resolution) -> String {
    let filter = if resolution == Resolution::Second {
        "node = ?5 AND resolution = ?2 AND bucket >= ?3 AND bucket < ?4 AND sensor = ?1"
    } else {
        "sensor = ?1 AND resolution = ?2 AND bucket >= ?3 AND bucket < ?4 \
         AND resolution >= 1 AND node = ?5"
    };
    format!(
        "SELECT bucket, node, version, {} FROM aggregate WHERE {filter} ORDER BY bucket",
        SUMMARY_COLS.join(", ")
    )
}

fn resolution_of(i: i64) -> rusqlite::Result<Resolution> {
    usize::try_from(i)
        .ok()
        .and_then(|i| Resolution::ALL.get(i).copied())
        .ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Integer,
                "resolution out of range".into(),
            )
        })
}

impl MergeStore for SqliteStore {
    fn probe(&self) -> Result<(), MergeError> {
        // The inherent method (path calls prefer it over the trait's).
        SqliteStore::probe(self)
    }

    fn write_validated(
        &mut self,
        group: &[NodeBatch<'_>],
    ) -> Result<Vec<MergeOutcome>, MergeError> {
        self.write(group)
    }

    fn touch(&mut self, node: NodeId, seen_ms: u64) -> Result<(), MergeError> {
        self.conn
            .prepare_cached(
                "INSERT INTO node (id, version_high, watermark, last_seen_ms) VALUES (?1, 0, 0, ?2)
                 ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
            )?
            .execute(params![to_sql(node.0), to_sql(seen_ms)])?;
        Ok(())
    }

    fn merged(&self, q: &RangeQuery) -> Result<Vec<(Timestamp, Summary)>, MergeError> {
        let ms = q.resolution.millis();
        let mut out: Vec<(Timestamp, Summary)> = Vec::new();
        let mut current: Option<u64> = None;
        for (bucket, _, e) in self.range(q, None)? {
            match out.last_mut() {
                // Rows come by bucket then ascending node: combining in that
                // order is `AggregateState::merged`.
                Some((_, acc)) if current == Some(bucket) => acc.combine(&e.summary),
                _ => {
                    current = Some(bucket);
                    out.push((Timestamp(bucket.saturating_mul(ms)), e.summary));
                }
            }
        }
        Ok(out)
    }

    fn per_node(&self, q: &RangeQuery) -> Result<Vec<NodeBucket>, MergeError> {
        let ms = q.resolution.millis();
        Ok(self
            .range(q, None)?
            .into_iter()
            .map(|(bucket, node, entry)| NodeBucket {
                bucket_start: Timestamp(bucket.saturating_mul(ms)),
                node,
                entry,
            })
            .collect())
    }

    fn node_series(&self, node: NodeId, q: &RangeQuery) -> Result<Vec<NodeBucket>, MergeError> {
        let ms = q.resolution.millis();
        Ok(self
            .range(q, Some(node))?
            .into_iter()
            .map(|(bucket, node, entry)| NodeBucket {
                bucket_start: Timestamp(bucket.saturating_mul(ms)),
                node,
                entry,
            })
            .collect())
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, MergeError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, version_high, watermark, last_seen_ms FROM node")?;
        let rows = stmt.query_map([], |r| {
            Ok(NodeRecord {
                node: NodeId(from_sql(r.get(0)?)),
                version_high: from_sql(r.get(1)?),
                watermark: from_sql(r.get(2)?),
                last_seen_ms: r.get::<_, Option<i64>>(3)?.map(from_sql),
            })
        })?;
        let mut out = rows.collect::<Result<Vec<_>, _>>()?;
        out.sort_unstable_by_key(|n| n.node);
        Ok(out)
    }

    fn insert_alerts(
        &mut self,
        node: NodeId,
        alerts: &[Alert],
        received_ms: u64,
    ) -> Result<AlertOutcome, MergeError> {
        validate_alerts(node, alerts)?;
        self.write_alerts(alerts, received_ms)
    }

    fn alerts(&self, q: &AlertQuery) -> Result<Vec<StoredAlert>, MergeError> {
        self.query_alerts(q)
    }

    fn ack_alert(&mut self, node: NodeId, hlc: Hlc, acked_ms: u64) -> Result<bool, MergeError> {
        self.set_acked(node, hlc, acked_ms)
    }

    fn open_alert_count(&self) -> Result<u64, MergeError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM alert WHERE acked_ms IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(from_sql(n.max(0)))
    }

    fn sensors(&self) -> Result<Vec<SensorRecord>, MergeError> {
        self.sensor_records(None)
    }

    fn sensor(&self, sensor: SensorId) -> Result<Option<SensorRecord>, MergeError> {
        Ok(self.sensor_records(Some(sensor))?.into_iter().next())
    }
}

impl SqliteStore {
    /// One node's record, if the node is known.
    pub fn node(&self, node: NodeId) -> Result<Option<NodeRecord>, MergeError> {
        Ok(self
            .conn
            .query_row(
                "SELECT version_high, watermark, last_seen_ms FROM node WHERE id = ?1",
                [to_sql(node.0)],
                |r| {
                    Ok(NodeRecord {
                        node,
                        version_high: from_sql(r.get(0)?),
                        watermark: from_sql(r.get(1)?),
                        last_seen_ms: r.get::<_, Option<i64>>(2)?.map(from_sql),
                    })
                },
            )
            .optional()?)
    }
}

impl SqliteStore {
    /// Writes a validated group in one transaction.
    fn write(&mut self, group: &[NodeBatch<'_>]) -> Result<Vec<MergeOutcome>, MergeError> {
        // Dropping an uncommitted transaction rolls it back: an error
        // anywhere below leaves nothing of the group.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(group.len());
        {
            let mut upsert = tx.prepare_cached(&self.upsert)?;
            let mut sensor_upsert = tx.prepare_cached(&self.sensor_upsert)?;
            // (sensor, newest reading) of the applied entries of a batch.
            let mut touched: Vec<(u32, u64)> = Vec::new();
            // Validated: versions and the watermark are at most i64::MAX,
            // so the signed max() is the unsigned one.
            let mut node_row = tx.prepare_cached(
                "INSERT INTO node (id, version_high, watermark, last_seen_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET
                   version_high = max(node.version_high, excluded.version_high),
                   watermark = max(node.watermark, excluded.watermark),
                   last_seen_ms = coalesce(excluded.last_seen_ms, node.last_seen_ms)",
            )?;
            for b in group {
                let node_sql = to_sql(b.node.0);
                let mut outcome = MergeOutcome::default();
                let mut version_high = 0u64;
                for (k, e) in b.entries {
                    let s = &e.summary;
                    let head = [
                        i64::from(k.sensor.0),
                        i64::from(k.resolution as u8),
                        to_sql(k.bucket.0),
                        node_sql,
                        to_sql(e.version),
                    ];
                    let changed = upsert.execute(rusqlite::params_from_iter(
                        head.into_iter().chain(summary_columns(s)),
                    ))?;
                    if changed > 0 {
                        outcome.applied += 1;
                        touched.push((k.sensor.0, s.last_ts.0));
                    } else {
                        outcome.stale += 1;
                    }
                    version_high = version_high.max(e.version);
                }
                // One upsert per distinct sensor: the newest time first, so
                // dedup keeps it.
                touched.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
                touched.dedup_by_key(|t| t.0);
                for (sensor, newest) in touched.drain(..) {
                    sensor_upsert.execute(params![node_sql, sensor, to_sql(newest)])?;
                }
                if !b.entries.is_empty() || b.progress.is_some() {
                    node_row.execute(params![
                        node_sql,
                        to_sql(version_high),
                        to_sql(b.progress.map_or(0, |p| p.watermark)),
                        b.progress.map(|p| to_sql(p.seen_ms)),
                    ])?;
                }
                outcomes.push(outcome);
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The range queries use an index, never a scan of the whole table: a
    /// schema change that loses this would still pass every other test.
    #[test]
    fn range_queries_use_the_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("hub.db")).unwrap();
        for r in Resolution::ALL {
            let mut stmt = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", range_sql(r)))
                .unwrap();
            let plan: Vec<String> = stmt
                .query_map(params![1, r as u8, 0, 10], |row| row.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let first = plan.first().cloned().unwrap_or_default();
            let want = if r == Resolution::Second {
                "SEARCH aggregate USING PRIMARY KEY (node=? AND resolution=? AND bucket>? AND bucket<?)"
            } else {
                "SEARCH aggregate USING INDEX aggregate_by_sensor (sensor=? AND resolution=? AND bucket>? AND bucket<?)"
            };
            assert_eq!(first, want, "{r}: {plan:?}");
            let mut stmt = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", node_range_sql(r)))
                .unwrap();
            let plan: Vec<String> = stmt
                .query_map(params![1, r as u8, 0, 10, 3], |row| row.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.len() == 1 && plan[0].starts_with("SEARCH aggregate USING"),
                "{r}: {plan:?}"
            );
        }
    }

    /// A version-1 database gets the sensor directory built from its
    /// aggregates by the version-2 migration.
    #[test]
    fn migration_2_backfills_the_sensor_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        tributary_sqlite::migrate(&mut conn, &[V1]).unwrap();
        for (sensor, node, last_ts) in [(4, 1, 10), (4, 1, 30), (4, 2, 20), (6, 2, 5)] {
            conn.execute(
                "INSERT INTO aggregate VALUES (?1, 1, ?2, ?3, 1, 1, 0, 0, 0, 0, ?4, ?4)",
                params![sensor, last_ts, node, last_ts],
            )
            .unwrap();
        }
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        let got: Vec<_> = store
            .sensors()
            .unwrap()
            .into_iter()
            .map(|r| (r.sensor.0, r.nodes, r.newest.0))
            .collect();
        assert_eq!(
            got,
            vec![(4, vec![NodeId(1), NodeId(2)], 30), (6, vec![NodeId(2)], 5)]
        );
    }

    /// A REAL column would turn -0.0 into +0.0; the bits columns keep it.
    #[test]
    fn negative_zero_survives_the_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path().join("hub.db")).unwrap();
        let key = Key::containing(
            tributary_core::ids::SensorId(1),
            Resolution::Minute,
            Timestamp(0),
        );
        let e = Entry {
            version: 1,
            summary: Summary::of(Timestamp(0), -0.0).unwrap(),
        };
        store.apply(NodeId(1), &[(key, e)]).unwrap();
        let got = store.all_entries().unwrap();
        assert_eq!(got, vec![(key, NodeId(1), e)]);
        assert_eq!(got[0].2.summary.min.to_bits(), (-0.0f64).to_bits());
    }
}
