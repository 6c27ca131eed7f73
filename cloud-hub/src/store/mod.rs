//! The hub's merge store: node deltas joined idempotently into durable
//! storage (DESIGN.md §5, STYLE.md §6).
//!
//! The data model is the core's aggregate CRDT
//! ([`tributary_core::crdt::aggregate`]): per key `(sensor, resolution,
//! bucket)` one entry per node, and per (key, node) the entry with the
//! higher version wins. Equal versions (a node that lost its counter and
//! reused one) are broken by the core's total order over the summary bits
//! (`Entry::supersedes`), so every replica, in memory or in a database,
//! picks the same winner. The merged value of a key is the per-node
//! summaries combined in ascending [`NodeId`] order, bit for bit what
//! `AggregateState::merged` computes.
//!
//! [`MergeStore`] is the backend-neutral interface;
//! [`sqlite::SqliteStore`] is the default backend, [`postgres::PgStore`]
//! the PostgreSQL one (same answers, bit for bit; docs/hub-storage.md).
//!
//! # Validation
//!
//! A batch is checked entirely before anything is written: one bad entry
//! rejects the whole batch ([`MergeError::Invalid`], with the entry's index
//! and a stable reason), so a hostile or broken node cannot get half a
//! batch merged. The checks are those of the wire decoder
//! (`Delta::validate`) plus the storage limits:
//!
//! | reason | what |
//! |---|---|
//! | `version_out_of_range` | version 0 (versions start at 1) or above `i64::MAX` (SQL integers are signed; 2^63 writes is not a real node) |
//! | `bucket_out_of_range` | `Bucket::is_valid` fails |
//! | `empty_entry` | a summary with no reading |
//! | `summary_not_finite`, `summary_bounds_inverted`, `empty_summary_with_data` | `Summary::validate` |
//! | `time_outside_bucket` | `first_ts` or `last_ts` outside the entry's bucket |
//! | `watermark_out_of_range` | a progress watermark above `i64::MAX` |
//!
//! Alerts are checked the same way, a whole call at a time
//! ([`validate_alerts`]): `wrong_node` (an alert of another node than the
//! authenticated sender), `score_out_of_range`, `value_not_finite`, the
//! window's summary reasons, `time_out_of_range`.
//!
//! # Actors
//!
//! [`actor`] runs the store on actix `SyncArbiter` threads: one
//! [`Writer`](actor::Writer) owns the connection that writes, N
//! [`Reader`](actor::Reader)s each own a read-only connection to the same
//! file (WAL lets them read beside the writer).

pub mod actor;
pub mod alert;
pub mod postgres;
pub mod sqlite;

use tributary_core::codec::v1::Alert;
use tributary_core::crdt::aggregate::{Entry, Key};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{Bucket, NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_core::sync::digest::{Cell, CellHash, DIGEST_RESOLUTIONS};

pub use alert::{
    AlertCursor, AlertOutcome, AlertQuery, ParseCursorError, SensorRecord, StoredAlert,
    validate_alerts,
};
pub use postgres::PgStore;
pub use sqlite::{SqliteOptions, SqliteStore};

/// What one [`MergeStore::apply`] did. `applied + stale` is the number of
/// entries in the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Entries that changed the stored state (new, or superseding the
    /// stored entry of that key and node), applied in batch order.
    pub applied: u64,
    /// Entries that changed nothing: the store already held that version or
    /// a newer one (replays, late or reordered deliveries).
    pub stale: u64,
}

/// The sync progress recorded together with a batch, in the same
/// transaction (so the `Ack` the shell sends afterwards never claims more
/// than is durable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The wall clock of the hub when the batch arrived (ms since the
    /// epoch): the node's "last seen". The latest report wins, even if the
    /// clock stepped back.
    pub seen_ms: u64,
    /// The node's contiguous watermark after this batch (`HubSync`'s
    /// `watermark(node)`). Monotonic: a lower one changes nothing.
    pub watermark: u64,
}

/// One node's batch within [`MergeStore::apply_group`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeBatch<'a> {
    /// The authenticated sender: the writer of every entry.
    pub node: NodeId,
    /// Its entries.
    pub entries: &'a [(Key, Entry)],
    /// Progress recorded with them.
    pub progress: Option<Progress>,
}

/// The hub's bookkeeping for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node.
    pub node: NodeId,
    /// The highest entry version received from it (merged or stale), as
    /// the core's version vector counts it.
    pub version_high: u64,
    /// Every entry of the node up to this version is merged (what
    /// `HubSync::restore` needs after a restart).
    pub watermark: u64,
    /// When the hub last accepted a message of it (hub wall ms); `None`
    /// if only entries without [`Progress`] were applied.
    pub last_seen_ms: Option<u64>,
}

/// One node's entry of one bucket, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeBucket {
    /// The first millisecond of the bucket.
    pub bucket_start: Timestamp,
    /// The writer.
    pub node: NodeId,
    /// Its version and summary.
    pub entry: Entry,
}

/// A range of buckets of one sensor at one resolution: those whose start
/// lies in `[from, to)`, oldest first, at most `limit` buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeQuery {
    /// The sensor.
    pub sensor: SensorId,
    /// The bucket width.
    pub resolution: Resolution,
    /// Inclusive lower bound on the bucket start.
    pub from: Timestamp,
    /// Exclusive upper bound on the bucket start.
    pub to: Timestamp,
    /// Most buckets returned.
    pub limit: usize,
}

/// Why a store operation failed. [`reason`](MergeError::reason) is a stable
/// metric label.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// An entry of the batch failed validation; nothing of the batch was
    /// applied.
    #[error("entry {index} rejected: {reason}")]
    Invalid {
        /// Its index in the batch.
        index: usize,
        /// A stable reason (see the module docs).
        reason: &'static str,
    },
    /// Batch `batch` of a group failed validation; nothing of the group
    /// was applied.
    #[error("batch {batch} of the group rejected: {source}")]
    InvalidBatch {
        /// The batch's index in the group.
        batch: usize,
        /// Why (an `Invalid` or `InvalidProgress`).
        source: Box<MergeError>,
    },
    /// The progress record was out of range; nothing was applied.
    #[error("progress rejected: {0}")]
    InvalidProgress(&'static str),
    /// SQLite failed (I/O, full disk, corruption, locked…); the batch was
    /// rolled back.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database directory could not be created.
    #[error("cannot create directory {path}: {source}")]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database was written by a newer binary.
    #[error(
        "database newer than this binary: schema version {found}, this binary knows up to {known}"
    )]
    NewerSchema {
        /// `user_version` in the file.
        found: i64,
        /// The newest version this binary has migrations for.
        known: i64,
    },
    /// A stored value is outside what this binary writes.
    #[error("corrupt store: {0}")]
    Corrupt(&'static str),
    /// PostgreSQL failed (connection lost or refused, a constraint, the
    /// server's disk…); the transaction was rolled back, the next call
    /// reconnects if the connection was lost.
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
}

impl From<tributary_sqlite::Error> for MergeError {
    fn from(e: tributary_sqlite::Error) -> MergeError {
        match e {
            tributary_sqlite::Error::Io { path, source } => MergeError::Io { path, source },
            tributary_sqlite::Error::Sqlite(e) => MergeError::Sqlite(e),
            tributary_sqlite::Error::NoWal => MergeError::Corrupt("journal_mode WAL refused"),
            tributary_sqlite::Error::NewerSchema { found, known } => {
                MergeError::NewerSchema { found, known }
            }
        }
    }
}

impl MergeError {
    /// Stable label for metrics (`rejected deltas by reason`) and logs:
    /// the validation reason itself for rejected input.
    pub fn reason(&self) -> &'static str {
        match self {
            MergeError::Invalid { reason, .. } => reason,
            MergeError::InvalidProgress(r) => r,
            MergeError::InvalidBatch { source, .. } => source.reason(),
            MergeError::Sqlite(_) => "sqlite",
            MergeError::Io { .. } => "io",
            MergeError::NewerSchema { .. } => "database_newer",
            MergeError::Corrupt(_) => "corrupt",
            MergeError::Postgres(_) => "postgres",
        }
    }

    /// Whether the input was at fault (reject and count) rather than the
    /// store (retry later, the node will re-send).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            MergeError::Invalid { .. }
                | MergeError::InvalidProgress(_)
                | MergeError::InvalidBatch { .. }
        )
    }
}

/// The summary columns of an aggregate row (an alert's window uses the
/// same with a `w_` prefix), in the core's tie-break order.
pub(crate) const SUMMARY_COLS: [&str; 7] = [
    "count",
    "sum_bits",
    "min_bits",
    "max_bits",
    "sum_sq_bits",
    "first_ts",
    "last_ts",
];

/// A u64 as the i64 with the same bits: what an SQL integer column holds
/// (ids and versions above 2^63 become negative; [`from_sql`] undoes it).
pub(crate) fn to_sql(x: u64) -> i64 {
    x as i64
}

/// The u64 whose bits an SQL integer column holds ([`to_sql`]).
pub(crate) fn from_sql(x: i64) -> u64 {
    x as u64
}

/// `s` as the values of [`SUMMARY_COLS`]. Floats are stored as their IEEE
/// bits: an SQL REAL would turn −0.0 into +0.0 and break bit-exact
/// convergence.
pub(crate) fn summary_columns(s: &Summary) -> [i64; 7] {
    [
        to_sql(s.count),
        to_sql(s.sum.to_bits()),
        to_sql(s.min.to_bits()),
        to_sql(s.max.to_bits()),
        to_sql(s.sum_sq.to_bits()),
        to_sql(s.first_ts.0),
        to_sql(s.last_ts.0),
    ]
}

/// The summary stored as [`summary_columns`].
pub(crate) fn summary_of_columns(c: [i64; 7]) -> Summary {
    let [count, sum, min, max, sum_sq, first_ts, last_ts] = c.map(from_sql);
    Summary {
        count,
        sum: f64::from_bits(sum),
        min: f64::from_bits(min),
        max: f64::from_bits(max),
        sum_sq: f64::from_bits(sum_sq),
        first_ts: Timestamp(first_ts),
        last_ts: Timestamp(last_ts),
    }
}

/// A durable, idempotent store of the aggregate CRDT. Every implementation
/// must give, for any order, duplication and batching of the same entries,
/// the same [`merged`](MergeStore::merged) values as the core's
/// `AggregateState` join, bit for bit.
pub trait MergeStore {
    /// Joins `node`'s entries in one transaction (see [`MergeOutcome`]).
    /// Either the whole batch is applied or, on error, none of it.
    fn apply(
        &mut self,
        node: NodeId,
        entries: &[(Key, Entry)],
    ) -> Result<MergeOutcome, MergeError> {
        self.apply_with(node, entries, None)
    }

    /// [`apply`](MergeStore::apply), also recording `progress` (last seen,
    /// watermark) in the same transaction.
    fn apply_with(
        &mut self,
        node: NodeId,
        entries: &[(Key, Entry)],
        progress: Option<Progress>,
    ) -> Result<MergeOutcome, MergeError> {
        validate_batch(entries, progress.as_ref())?;
        if entries.is_empty() && progress.is_none() {
            return Ok(MergeOutcome::default());
        }
        let out = self.write_validated(&[NodeBatch {
            node,
            entries,
            progress,
        }])?;
        Ok(out.first().copied().unwrap_or_default())
    }

    /// Several nodes' batches in ONE transaction, in order: the sync shell
    /// groups the deltas that arrive within a few milliseconds so that one
    /// commit (one fsync, each hot page written once) serves many of them.
    /// Validated entirely first: one invalid batch rejects the group
    /// ([`MergeError::InvalidBatch`]); validate each delta on arrival
    /// ([`validate_batch`]) so that a hostile node cannot reject others'.
    /// Returns one outcome per batch.
    fn apply_group(&mut self, group: &[NodeBatch<'_>]) -> Result<Vec<MergeOutcome>, MergeError> {
        validate_group(group)?;
        self.write_validated(group)
    }

    /// The backend's transaction: joins `group` (already validated by
    /// [`apply_with`](MergeStore::apply_with) or
    /// [`apply_group`](MergeStore::apply_group), the only callers) in one
    /// transaction, one outcome per batch.
    fn write_validated(&mut self, group: &[NodeBatch<'_>])
    -> Result<Vec<MergeOutcome>, MergeError>;

    /// Records that `node` was heard from at `seen_ms` (a `Hello`).
    fn touch(&mut self, node: NodeId, seen_ms: u64) -> Result<(), MergeError>;

    /// The merged summary of each bucket in the range that has an entry:
    /// `(bucket_start, summary)`, oldest first.
    fn merged(&self, q: &RangeQuery) -> Result<Vec<(Timestamp, Summary)>, MergeError>;

    /// The per-node entries of each bucket in the range (at most
    /// `q.limit` buckets), by bucket then ascending node id.
    fn per_node(&self, q: &RangeQuery) -> Result<Vec<NodeBucket>, MergeError>;

    /// One node's entries of each bucket in the range where it has one (at
    /// most `q.limit` buckets), oldest first.
    fn node_series(&self, node: NodeId, q: &RangeQuery) -> Result<Vec<NodeBucket>, MergeError>;

    /// Every known node, by ascending node id.
    fn nodes(&self) -> Result<Vec<NodeRecord>, MergeError>;

    /// Whether the database answers a query (`/readyz`).
    fn probe(&self) -> Result<(), MergeError>;

    /// Anti-entropy: the hub's hash of each of `node`'s `cells`, over its
    /// hour and day entries (`tributary_core::sync::digest`), to compare
    /// with the digest of a `Hello`. Two small range reads per cell.
    fn cell_hashes(&self, node: NodeId, cells: &[Cell]) -> Result<Vec<u64>, MergeError> {
        cells
            .iter()
            .map(|c| {
                let mut h = CellHash::default();
                for r in DIGEST_RESOLUTIONS {
                    let (lo, hi) = c.buckets(r);
                    let q = RangeQuery {
                        sensor: c.sensor,
                        resolution: r,
                        from: lo.start(r),
                        to: Timestamp(hi.start(r).0.saturating_add(r.millis())),
                        limit: usize::try_from(hi.0 - lo.0 + 1).unwrap_or(usize::MAX),
                    };
                    for b in self.node_series(node, &q)? {
                        let key = Key::new(c.sensor, r, Bucket::containing(b.bucket_start, r));
                        h.add(node, &key, b.entry.version);
                    }
                }
                Ok(h.hash())
            })
            .collect()
    }

    /// Every node's durable watermark, by node id: the argument of
    /// `HubSync::restore` after a restart.
    fn watermarks(&self) -> Result<Vec<(NodeId, u64)>, MergeError> {
        Ok(self
            .nodes()?
            .into_iter()
            .map(|n| (n.node, n.watermark))
            .collect())
    }

    /// Stores `node`'s alerts in one transaction, idempotently on
    /// `(node, alert.hlc)`: a stored alert is never changed by a re-send.
    /// Validated entirely first ([`validate_alerts`]): one bad alert
    /// rejects the call and nothing is written.
    fn insert_alerts(
        &mut self,
        node: NodeId,
        alerts: &[Alert],
        received_ms: u64,
    ) -> Result<AlertOutcome, MergeError>;

    /// The alerts matching `q`, newest event time first (see
    /// [`AlertQuery`], [`AlertCursor`] for paging).
    fn alerts(&self, q: &AlertQuery) -> Result<Vec<StoredAlert>, MergeError>;

    /// Acknowledges the alert `(node, hlc)` at `acked_ms`. `false` if there
    /// is no such alert; acknowledging again keeps the first time.
    fn ack_alert(&mut self, node: NodeId, hlc: Hlc, acked_ms: u64) -> Result<bool, MergeError>;

    /// Alerts not acknowledged yet.
    fn open_alert_count(&self) -> Result<u64, MergeError>;

    /// Every sensor with stored entries, by ascending sensor id.
    fn sensors(&self) -> Result<Vec<SensorRecord>, MergeError>;

    /// One sensor's record, `None` if it has no stored entry.
    fn sensor(&self, sensor: SensorId) -> Result<Option<SensorRecord>, MergeError>;
}

/// Checks one entry (see the module docs for the reasons).
pub fn validate_entry(key: &Key, entry: &Entry) -> Result<(), &'static str> {
    if entry.version == 0 || i64::try_from(entry.version).is_err() {
        return Err("version_out_of_range");
    }
    if !key.bucket.is_valid(key.resolution) {
        return Err("bucket_out_of_range");
    }
    let s = &entry.summary;
    if s.is_empty() {
        return Err("empty_entry");
    }
    s.validate()?;
    if !(key.bucket.contains(key.resolution, s.first_ts)
        && key.bucket.contains(key.resolution, s.last_ts))
    {
        return Err("time_outside_bucket");
    }
    Ok(())
}

/// Validates a whole batch and its progress; the first failure, with the
/// entry's index.
pub fn validate_batch(
    entries: &[(Key, Entry)],
    progress: Option<&Progress>,
) -> Result<(), MergeError> {
    for (index, (k, e)) in entries.iter().enumerate() {
        validate_entry(k, e).map_err(|reason| MergeError::Invalid { index, reason })?;
    }
    if progress.is_some_and(|p| i64::try_from(p.watermark).is_err()) {
        return Err(MergeError::InvalidProgress("watermark_out_of_range"));
    }
    Ok(())
}

/// Validates every batch of a group.
pub(crate) fn validate_group(group: &[NodeBatch<'_>]) -> Result<(), MergeError> {
    for (batch, b) in group.iter().enumerate() {
        validate_batch(b.entries, b.progress.as_ref()).map_err(|e| MergeError::InvalidBatch {
            batch,
            source: Box::new(e),
        })?;
    }
    Ok(())
}
