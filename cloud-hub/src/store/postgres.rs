//! The PostgreSQL backend of [`MergeStore`]: for a hub whose storage must
//! outlive one machine, or that runs as several replicas merging into one
//! database (docs/hub-storage.md).
//!
//! Same data model, semantics and answers as [`SqliteStore`](super::SqliteStore)
//! (`store/sqlite.rs`), bit for bit: the property test
//! `tests/store_postgres.rs` checks both against the core's
//! `AggregateState` on the same deliveries.
//!
//! # Connecting
//!
//! [`PgStore::connect`] takes a libpq-style URL or key/value string
//! (`postgres://user@host:5432/db`, see [`postgres::Config`]); no TLS yet
//! (a loopback or private-network database). It then applies the embedded
//! migrations in one transaction: each applied version is a row of
//! `tributary_schema`, taken under a transaction-scoped advisory lock so
//! that hub replicas starting together migrate once. A database written by
//! a newer binary is refused ([`MergeError::NewerSchema`]), shipped
//! migrations are never edited (the idea of `tributary_sqlite::migrate`).
//!
//! A lost connection (server restart, network) fails the call in flight
//! with [`MergeError::Postgres`]; the next call reconnects.
//!
//! # Schema and the upsert
//!
//! The tables of the SQLite schema (version 2), with `BIGINT` for every
//! integer: `aggregate` keyed `(node, resolution, bucket, sensor)` with a
//! partial index by sensor for minute and coarser buckets, `node`, `alert`,
//! `sensor_node`. Floats are their IEEE bits in `BIGINT` columns, as in
//! SQLite: exact for every value including `-0.0` with no argument about
//! float8 text or binary transfer, and the tie-break compares the bits
//! anyway. u64 values are stored bit for bit as i64; where their order
//! matters, SQL compares them unsigned as `x # (-2^63)` (flipping the sign
//! bit maps the u64 order onto the i64 order).
//!
//! A batch (or a whole [`MergeStore::apply_group`]) is one transaction of
//! a few statements, whatever its size: the entries go as 12 arrays into
//!
//! ```sql
//! INSERT INTO aggregate AS a (...) SELECT * FROM UNNEST($1::int8[], ...)
//! ON CONFLICT (node, resolution, bucket, sensor) DO UPDATE SET ...
//! WHERE (excluded.version, excluded.count # S, excluded.sum_bits # S, ...)
//!     > (a.version, a.count # S, a.sum_bits # S, ...)
//! RETURNING node, resolution, bucket, sensor, last_ts
//! ```
//!
//! The row comparison is the core's `Entry::supersedes`: the higher
//! version, then the summary bits as unsigned integers. The returned rows
//! are the applied entries (the [`MergeOutcome`] counts and the sensor
//! directory's updates). One statement cannot update a row twice, so a
//! (key, node) that occurs k times in a group is sent in k statements, the
//! i-th occurrences together, in delivery order: the same result and counts
//! as applying entry by entry. Rows are sent sorted by primary key (and
//! `sensor_node`, `node` after `aggregate`), so concurrent writers lock in
//! one order; a deadlock or serialization failure is retried.
//!
//! `UNNEST` rather than multi-row `VALUES`: one prepared statement with 12
//! parameters for any batch size (`VALUES` needs 12 per row, a new
//! statement text per size, and stops at 65,535 parameters), measured in
//! docs/hub-storage.md against a statement per entry.

mod alerts;
mod schema;
mod write;

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Row, Statement};
use tributary_core::codec::v1::Alert;
use tributary_core::crdt::aggregate::{Entry, Key};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{Bucket, NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;

use super::{
    AlertOutcome, AlertQuery, MergeError, MergeOutcome, MergeStore, NodeBatch, NodeBucket,
    NodeRecord, RangeQuery, SUMMARY_COLS, SensorRecord, StoredAlert, from_sql, summary_of_columns,
    to_sql, validate_alerts,
};

/// How often a write that lost a deadlock or a serialization conflict
/// against another writer (a second hub replica) is tried in all.
const WRITE_ATTEMPTS: usize = 4;

/// Used when the URL sets no `connect_timeout`: a hub must not hang at
/// start on an unreachable database.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const TOUCH: &str = "
INSERT INTO node (id, version_high, watermark, last_seen_ms) VALUES ($1, 0, 0, $2)
ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms";

/// The range query: like SQLite's, the literal `resolution >= 1` lets the
/// planner use the partial index; 1 s rows are found per node through the
/// primary key. `$5` restricts to one node.
fn range_sql(resolution: Resolution, one_node: bool) -> String {
    let mut filter = if resolution == Resolution::Second {
        if one_node {
            "node = $5 AND resolution = $2 AND bucket >= $3 AND bucket < $4 AND sensor = $1"
        } else {
            "node IN (SELECT id FROM node) AND resolution = $2 \
             AND bucket >= $3 AND bucket < $4 AND sensor = $1"
        }
        .to_string()
    } else {
        "sensor = $1 AND resolution = $2 AND bucket >= $3 AND bucket < $4 AND resolution >= 1"
            .to_string()
    };
    if one_node && resolution != Resolution::Second {
        filter.push_str(" AND node = $5");
    }
    format!(
        "SELECT bucket, node, version, {} FROM aggregate WHERE {filter} ORDER BY bucket",
        SUMMARY_COLS.join(", ")
    )
}

/// Reads the 7 summary columns starting at `at`.
fn summary_at(row: &Row, at: usize) -> Result<Summary, postgres::Error> {
    let mut c = [0i64; 7];
    for (i, v) in c.iter_mut().enumerate() {
        *v = row.try_get(at + i)?;
    }
    Ok(summary_of_columns(c))
}

fn resolution_of(i: i64) -> Result<Resolution, MergeError> {
    usize::try_from(i)
        .ok()
        .and_then(|i| Resolution::ALL.get(i).copied())
        .ok_or(MergeError::Corrupt("resolution out of range"))
}

fn sensor_of(i: i64) -> Result<SensorId, MergeError> {
    u32::try_from(i)
        .map(SensorId)
        .map_err(|_| MergeError::Corrupt("sensor id out of range"))
}

/// The prepared statements of one connection.
struct Statements {
    upsert: Statement,
    sensor_upsert: Statement,
    node_upsert: Statement,
    touch: Statement,
    /// By resolution index: all nodes, one node.
    range: Vec<(Statement, Statement)>,
    nodes: Statement,
    node: Statement,
    alerts: alerts::Statements,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Statements, postgres::Error> {
        let mut range = Vec::with_capacity(Resolution::ALL.len());
        for r in Resolution::ALL {
            range.push((
                client.prepare(&range_sql(r, false))?,
                client.prepare(&range_sql(r, true))?,
            ));
        }
        Ok(Statements {
            upsert: client.prepare(&write::upsert_sql())?,
            sensor_upsert: client.prepare(&write::sensor_upsert_sql())?,
            node_upsert: client.prepare(write::NODE_UPSERT)?,
            touch: client.prepare(TOUCH)?,
            range,
            nodes: client.prepare("SELECT id, version_high, watermark, last_seen_ms FROM node")?,
            node: client
                .prepare("SELECT version_high, watermark, last_seen_ms FROM node WHERE id = $1")?,
            alerts: alerts::Statements::prepare(client)?,
        })
    }
}

/// A live connection and its statements.
struct Conn {
    client: Client,
    stmts: Statements,
}

/// The PostgreSQL merge store: one connection. Several `PgStore`s (threads
/// of one hub, or hub replicas) may write the same database concurrently:
/// every write is one transaction and the upsert is atomic per row.
pub struct PgStore {
    config: Config,
    /// `&self` reads need the client mutably (the sync client's calls take
    /// `&mut`); a store has one owner thread, so the lock is uncontended.
    conn: Mutex<Option<Conn>>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Config's Debug redacts the password.
        f.debug_struct("PgStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Fills in what the URL left out: a connect timeout, the application
/// name (`pg_stat_activity`), and server notices as `tracing` debug events
/// (the client's default logs them through the `log` crate, which the hub
/// does not collect; the migration's `IF NOT EXISTS` notices every start).
fn complete_config(config: &mut Config, application_name: &str) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    config.notice_callback(|notice| {
        tracing::debug!(
            severity = notice.severity(),
            message = notice.message(),
            "postgres notice"
        );
    });
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:pass@host:port/db`
    /// or `host=... dbname=...`) and brings its schema up to date.
    pub fn connect(url: &str) -> Result<PgStore, MergeError> {
        Self::connect_with(Config::from_str(url)?)
    }

    /// [`connect`](PgStore::connect) with a built configuration.
    pub fn connect_with(mut config: Config) -> Result<PgStore, MergeError> {
        complete_config(&mut config, "tributary-hub");
        let mut client = config.connect(NoTls)?;
        schema::migrate(&mut client)?;
        let stmts = Statements::prepare(&mut client)?;
        Ok(PgStore {
            config,
            conn: Mutex::new(Some(Conn { client, stmts })),
        })
    }

    /// Connects a read-only store to a database that
    /// [`connect`](PgStore::connect) already migrated (the API's reader
    /// threads; the role may lack write rights): it never migrates, and
    /// refuses a schema other than this binary's. Its sessions run with
    /// `default_transaction_read_only`, so every write method fails with
    /// [`MergeError::Postgres`].
    pub fn connect_reader(url: &str) -> Result<PgStore, MergeError> {
        Self::connect_reader_with(Config::from_str(url)?)
    }

    /// [`connect_reader`](PgStore::connect_reader) with a built
    /// configuration.
    pub fn connect_reader_with(mut config: Config) -> Result<PgStore, MergeError> {
        // In the startup options, so a reconnect is read-only too.
        let options = match config.get_options() {
            Some(o) => format!("{o} -c default_transaction_read_only=on"),
            None => "-c default_transaction_read_only=on".to_string(),
        };
        config.options(&options);
        complete_config(&mut config, "tributary-hub-reader");
        let mut client = config.connect(NoTls)?;
        // Two statements: a query naming a missing table fails to parse.
        let migrated: bool = client
            .query_one("SELECT to_regclass('tributary_schema') IS NOT NULL", &[])?
            .try_get(0)?;
        let found: Option<i64> = if migrated {
            client
                .query_one("SELECT max(version)::int8 FROM tributary_schema", &[])?
                .try_get(0)?
        } else {
            None
        };
        let known = schema::latest();
        match found {
            Some(found) if found > known => return Err(MergeError::NewerSchema { found, known }),
            Some(found) if found == known => {}
            _ => return Err(MergeError::Corrupt("database not migrated yet")),
        }
        let stmts = Statements::prepare(&mut client)?;
        Ok(PgStore {
            config,
            conn: Mutex::new(Some(Conn { client, stmts })),
        })
    }

    /// The configuration it connects with (the password included: do not
    /// print it other than through `Debug`, which redacts it).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs `f` on the connection, reconnecting first if the last one was
    /// lost. A failed call leaves a broken connection to be replaced by
    /// the next one.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, MergeError>,
    ) -> Result<T, MergeError> {
        // A panic while holding the lock cannot leave the protocol state
        // half-written in a way the client does not detect: it tracks its
        // own connection state, so a poisoned lock is still usable.
        let mut guard: MutexGuard<'_, Option<Conn>> =
            self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = None;
            let mut client = self.config.connect(NoTls)?;
            let stmts = Statements::prepare(&mut client)?;
            *guard = Some(Conn { client, stmts });
        }
        match guard.as_mut() {
            Some(conn) => f(conn),
            None => Err(MergeError::Corrupt("no connection")),
        }
    }

    /// Number of stored (key, node) entries.
    pub fn entry_count(&self) -> Result<u64, MergeError> {
        self.with_conn(|c| {
            let n: i64 = c
                .client
                .query_one("SELECT count(*) FROM aggregate", &[])?
                .try_get(0)?;
            Ok(from_sql(n.max(0)))
        })
    }

    /// Every stored `(key, node, entry)`, in key then node order (as the
    /// core's `AggregateState::iter_entries`). A full scan: for tests,
    /// exports and checks, not for serving.
    pub fn all_entries(&self) -> Result<Vec<(Key, NodeId, Entry)>, MergeError> {
        let rows = self.with_conn(|c| {
            Ok(c.client.query(
                &format!(
                    "SELECT sensor, resolution, bucket, node, version, {} FROM aggregate",
                    SUMMARY_COLS.join(", ")
                ),
                &[],
            )?)
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let key = Key::new(
                sensor_of(r.try_get(0)?)?,
                resolution_of(r.try_get(1)?)?,
                Bucket(from_sql(r.try_get(2)?)),
            );
            let node = NodeId(from_sql(r.try_get(3)?));
            let entry = Entry {
                version: from_sql(r.try_get(4)?),
                summary: summary_at(r, 5)?,
            };
            out.push((key, node, entry));
        }
        out.sort_unstable_by_key(|(k, n, _)| (*k, *n));
        Ok(out)
    }

    /// Reads the schema version: a cheap proof that the database answers
    /// (readiness checks).
    pub fn probe(&self) -> Result<(), MergeError> {
        self.with_conn(|c| {
            c.client
                .query_one("SELECT max(version) FROM tributary_schema", &[])?
                .try_get::<_, Option<i64>>(0)?;
            Ok(())
        })
    }

    /// One node's record, if the node is known.
    pub fn node(&self, node: NodeId) -> Result<Option<NodeRecord>, MergeError> {
        self.with_conn(|c| {
            let Some(r) = c.client.query_opt(&c.stmts.node, &[&to_sql(node.0)])? else {
                return Ok(None);
            };
            Ok(Some(NodeRecord {
                node,
                version_high: from_sql(r.try_get(0)?),
                watermark: from_sql(r.try_get(1)?),
                last_seen_ms: r.try_get::<_, Option<i64>>(2)?.map(from_sql),
            }))
        })
    }

    /// Writes a validated group in one transaction, retrying lost lock
    /// races.
    fn write(&self, group: &[NodeBatch<'_>]) -> Result<Vec<MergeOutcome>, MergeError> {
        let mut attempt = 1;
        loop {
            let result = self.with_conn(|c| {
                let mut tx = c.client.transaction()?;
                let out = write::write_group(&mut tx, &c.stmts, group)?;
                tx.commit()?;
                Ok(out)
            });
            match result {
                Err(e) if attempt < WRITE_ATTEMPTS && write::is_retryable(&e) => attempt += 1,
                other => return other,
            }
        }
    }

    /// Rows of one sensor and resolution with a bucket start in the
    /// query's range, by bucket then ascending node id, at most `limit`
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
        let sensor = i64::from(q.sensor.0);
        let res = i64::from(q.resolution as u8);
        self.with_conn(|c| {
            let Some((all, one)) = c.stmts.range.get(q.resolution as usize) else {
                return Err(MergeError::Corrupt("resolution out of range"));
            };
            let node = only.map(|n| to_sql(n.0));
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&sensor, &res, &lo, &hi];
            let stmt = match &node {
                Some(n) => {
                    params.push(n);
                    one
                }
                None => all,
            };
            // Streamed: a small limit over a long range stops early.
            let mut rows = c.client.query_raw(stmt, params)?;
            let mut buckets = 0usize;
            let mut last: Option<u64> = None;
            while let Some(r) = rows.next()? {
                let bucket = from_sql(r.try_get(0)?);
                if last != Some(bucket) {
                    if buckets == q.limit {
                        break;
                    }
                    buckets += 1;
                    last = Some(bucket);
                }
                out.push((
                    bucket,
                    NodeId(from_sql(r.try_get(1)?)),
                    Entry {
                        version: from_sql(r.try_get(2)?),
                        summary: summary_at(&r, 3)?,
                    },
                ));
            }
            Ok(())
        })?;
        // SQL orders nodes as i64; the merge order is u64.
        out.sort_by_key(|(b, n, _)| (*b, *n));
        Ok(out)
    }

    fn buckets(&self, q: &RangeQuery, only: Option<NodeId>) -> Result<Vec<NodeBucket>, MergeError> {
        let ms = q.resolution.millis();
        Ok(self
            .range(q, only)?
            .into_iter()
            .map(|(bucket, node, entry)| NodeBucket {
                bucket_start: Timestamp(bucket.saturating_mul(ms)),
                node,
                entry,
            })
            .collect())
    }
}

impl MergeStore for PgStore {
    fn probe(&self) -> Result<(), MergeError> {
        // The inherent method (path calls prefer it over the trait's).
        PgStore::probe(self)
    }

    fn write_validated(
        &mut self,
        group: &[NodeBatch<'_>],
    ) -> Result<Vec<MergeOutcome>, MergeError> {
        self.write(group)
    }

    fn touch(&mut self, node: NodeId, seen_ms: u64) -> Result<(), MergeError> {
        self.with_conn(|c| {
            c.client
                .execute(&c.stmts.touch, &[&to_sql(node.0), &to_sql(seen_ms)])?;
            Ok(())
        })
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
        self.buckets(q, None)
    }

    fn node_series(&self, node: NodeId, q: &RangeQuery) -> Result<Vec<NodeBucket>, MergeError> {
        self.buckets(q, Some(node))
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, MergeError> {
        let rows = self.with_conn(|c| Ok(c.client.query(&c.stmts.nodes, &[])?))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(NodeRecord {
                node: NodeId(from_sql(r.try_get(0)?)),
                version_high: from_sql(r.try_get(1)?),
                watermark: from_sql(r.try_get(2)?),
                last_seen_ms: r.try_get::<_, Option<i64>>(3)?.map(from_sql),
            });
        }
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
        if alerts.is_empty() {
            return Ok(AlertOutcome::default());
        }
        self.with_conn(|c| alerts::insert(c, alerts, received_ms))
    }

    fn alerts(&self, q: &AlertQuery) -> Result<Vec<StoredAlert>, MergeError> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        self.with_conn(|c| alerts::query(c, q))
    }

    fn ack_alert(&mut self, node: NodeId, hlc: Hlc, acked_ms: u64) -> Result<bool, MergeError> {
        self.with_conn(|c| alerts::ack(c, node, hlc, acked_ms))
    }

    fn open_alert_count(&self) -> Result<u64, MergeError> {
        self.with_conn(|c| {
            let n: i64 = c
                .client
                .query_one(&c.stmts.alerts.open_count, &[])?
                .try_get(0)?;
            Ok(from_sql(n.max(0)))
        })
    }

    fn sensors(&self) -> Result<Vec<SensorRecord>, MergeError> {
        self.with_conn(|c| alerts::sensor_records(c, None))
    }

    fn sensor(&self, sensor: SensorId) -> Result<Option<SensorRecord>, MergeError> {
        Ok(self
            .with_conn(|c| alerts::sensor_records(c, Some(sensor)))?
            .into_iter()
            .next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store actors move a store into its `SyncArbiter` thread.
    #[test]
    fn a_store_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<PgStore>();
    }

    /// The range queries can use an index under a generic plan (the one a
    /// prepared statement settles on): a schema or query change that loses
    /// this (e.g. the literal `resolution >= 1` the partial index needs)
    /// would still pass every other test. Sequential scans are disabled
    /// because on an empty table the planner rightly prefers them.
    #[test]
    fn range_queries_can_use_the_indexes() {
        let pg = match tributary_testkit::Postgres::start() {
            Ok(Some(pg)) => pg,
            Ok(None) => {
                eprintln!("skipped: PostgreSQL not installed");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        drop(PgStore::connect(&pg.url()).unwrap());
        let mut c = Client::connect(&pg.url(), NoTls).unwrap();
        c.batch_execute("SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan")
            .unwrap();
        for (i, r) in Resolution::ALL.into_iter().enumerate() {
            for one in [false, true] {
                let (types, args) = if one {
                    ("int8, int8, int8, int8, int8", format!("1, {i}, 0, 10, 3"))
                } else {
                    ("int8, int8, int8, int8", format!("1, {i}, 0, 10"))
                };
                let name = format!("q{i}{}", u8::from(one));
                c.batch_execute(&format!(
                    "PREPARE {name} ({types}) AS {}",
                    range_sql(r, one)
                ))
                .unwrap();
                let plan: Vec<String> = c
                    .query(&format!("EXPLAIN EXECUTE {name} ({args})"), &[])
                    .unwrap()
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let plan = plan.join("\n");
                assert!(!plan.contains("Seq Scan on aggregate"), "{r} {one}: {plan}");
                let want = if r == Resolution::Second {
                    "aggregate_pkey"
                } else {
                    "aggregate_by_sensor"
                };
                assert!(one || plan.contains(want), "{r}: {plan}");
            }
        }
    }

    #[test]
    fn range_sql_names_the_partial_index_predicate_for_coarse_buckets() {
        for r in Resolution::ALL {
            for one in [false, true] {
                let sql = range_sql(r, one);
                assert_eq!(sql.contains("resolution >= 1"), r != Resolution::Second);
                assert_eq!(sql.contains("$5"), one, "{sql}");
            }
        }
    }
}
