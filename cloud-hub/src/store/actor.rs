//! The store's actors (STYLE.md §2): blocking SQLite work on actix
//! `SyncArbiter` threads, never on the async executor.
//!
//! - [`Writer`]: exactly one thread, owning the connection that writes
//!   (merges, alerts, progress, acks). One writer is also what SQLite
//!   allows; the sync shell sends it grouped deltas with `send().await`,
//!   so a slow disk slows the consumers instead of queueing without bound.
//! - [`Reader`]: N threads, each owning its own read-only connection to the
//!   same file; WAL lets them read the last commit beside the writer, so
//!   API queries never wait for a merge commit.
//!
//! Start the writer first ([`start_writer`] takes the store
//! [`SqliteStore::open_with`] created and migrated), then
//! [`start_readers`], which refuses a database that is not migrated.
//! Both must be called inside a running actix `System`.
//!
//! Restarts: if a `SyncArbiter` rebuilds an actor, the new one reopens its
//! connection from the options; if that fails it answers the open error and
//! retries on every message. Durability lives in the database, never in a
//! mailbox.

use std::sync::Mutex;
use std::time::Instant;

use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};
use tributary_core::codec::v1::Alert;
use tributary_core::crdt::aggregate::{Entry, Key};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_core::sync::digest::Cell;

use super::{
    AlertOutcome, AlertQuery, MergeError, MergeOutcome, MergeStore, NodeBatch, NodeBucket,
    NodeRecord, PgStore, Progress, RangeQuery, SensorRecord, SqliteOptions, SqliteStore,
    StoredAlert,
};

/// Where the store lives, and so how an actor (re)opens its connection.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A SQLite file (the default).
    Sqlite(SqliteOptions),
    /// A PostgreSQL database, by connection URL (several hubs may share it).
    Postgres(String),
}

/// A store behind the trait: the actors do not care which backend.
pub type DynStore = Box<dyn MergeStore + Send>;

/// Runs `f` on a thread of its own: the `postgres` client blocks on a
/// runtime of its own, which tokio refuses inside another runtime (the
/// daemon opens its first connections from its async start-up).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl Backend {
    /// The writing connection, migrating the schema.
    pub fn open_writer(&self) -> Result<DynStore, MergeError> {
        Ok(match self {
            Backend::Sqlite(o) => Box::new(SqliteStore::open_with(o)?),
            Backend::Postgres(url) => Box::new(off_runtime(|| PgStore::connect(url))?),
        })
    }

    /// A read-only connection; refuses a store that is not migrated.
    pub fn open_reader(&self) -> Result<DynStore, MergeError> {
        Ok(match self {
            Backend::Sqlite(o) => Box::new(SqliteStore::open_reader(o)?),
            Backend::Postgres(url) => Box::new(off_runtime(|| PgStore::connect_reader(url))?),
        })
    }

    /// For logs: the file, or the database without credentials.
    pub fn describe(&self) -> String {
        match self {
            Backend::Sqlite(o) => o.path.display().to_string(),
            Backend::Postgres(url) => match url.split_once('@') {
                // postgres://user:secret@host/db → postgres://host/db
                Some((scheme_user, rest)) => {
                    let scheme = scheme_user.split("://").next().unwrap_or("postgres");
                    format!("{scheme}://{rest}")
                }
                None => url.clone(),
            },
        }
    }
}
use crate::metrics::Metrics;

/// One node's batch, owned (it crosses threads), for [`MergeGroup`].
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedBatch {
    /// The authenticated sender: the writer of every entry.
    pub node: NodeId,
    /// Its entries.
    pub entries: Vec<(Key, Entry)>,
    /// Progress recorded with them.
    pub progress: Option<Progress>,
}

/// Merges several nodes' batches in one transaction
/// ([`MergeStore::apply_group`]); one outcome per batch.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<MergeOutcome>, MergeError>")]
pub struct MergeGroup {
    /// The batches, applied in order.
    pub batches: Vec<OwnedBatch>,
}

/// Stores a node's alerts ([`MergeStore::insert_alerts`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<AlertOutcome, MergeError>")]
pub struct InsertAlerts {
    /// The authenticated sender.
    pub node: NodeId,
    /// Its alerts.
    pub alerts: Vec<Alert>,
    /// Hub wall clock at arrival (ms).
    pub received_ms: u64,
}

/// Records that a node was heard from ([`MergeStore::touch`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), MergeError>")]
pub struct Touch {
    /// The node.
    pub node: NodeId,
    /// Hub wall clock (ms).
    pub seen_ms: u64,
}

/// Every node's durable watermark ([`MergeStore::watermarks`]), read on the
/// writer's connection so it reflects every commit the writer made.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<(NodeId, u64)>, MergeError>")]
pub struct Watermarks;

/// One node's durable watermark (0 if unknown): what another hub replica
/// sharing the store has merged.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, MergeError>")]
pub struct NodeWatermark(pub NodeId);

impl Handler<NodeWatermark> for Writer {
    type Result = Result<u64, MergeError>;

    fn handle(&mut self, msg: NodeWatermark, _: &mut SyncContext<Self>) -> Self::Result {
        Ok(self
            .store()?
            .watermarks()?
            .into_iter()
            .find(|(n, _)| *n == msg.0)
            .map_or(0, |(_, w)| w))
    }
}

/// The hub's hashes of a node's anti-entropy cells
/// ([`MergeStore::cell_hashes`]), in the order asked.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<u64>, MergeError>")]
pub struct CellHashes {
    /// The node.
    pub node: NodeId,
    /// Its cells.
    pub cells: Vec<Cell>,
}

impl Handler<CellHashes> for Writer {
    type Result = Result<Vec<u64>, MergeError>;

    fn handle(&mut self, msg: CellHashes, _: &mut SyncContext<Self>) -> Self::Result {
        self.store()?.cell_hashes(msg.node, &msg.cells)
    }
}

/// Acknowledges an alert ([`MergeStore::ack_alert`]): `false` if there is
/// no such alert.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, MergeError>")]
pub struct AckAlert {
    /// The alert's node.
    pub node: NodeId,
    /// The alert's HLC.
    pub hlc: Hlc,
    /// Hub wall clock (ms).
    pub acked_ms: u64,
}

/// Owns the writing connection; see the module docs.
#[derive(Debug)]
pub struct Writer {
    store: Option<DynStore>,
    backend: Backend,
    metrics: Metrics,
}

impl std::fmt::Debug for dyn MergeStore + Send {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MergeStore")
    }
}

impl Actor for Writer {
    type Context = SyncContext<Self>;
}

/// Moves `store` (opened and migrated by the caller, so a bad path fails
/// there) into a one-thread `SyncArbiter`. Must be called inside a running
/// actix `System`.
pub fn start_writer(store: SqliteStore, metrics: Metrics) -> Addr<Writer> {
    let backend = Backend::Sqlite(store.options().clone());
    start_writer_on(backend, Box::new(store), metrics)
}

/// [`start_writer`] for any backend: `store` is its writing connection,
/// opened (and migrated) by the caller with [`Backend::open_writer`].
pub fn start_writer_on(backend: Backend, store: DynStore, metrics: Metrics) -> Addr<Writer> {
    // The factory runs on the arbiter's thread: first with the store opened
    // by the caller, then (after a restart) reopening from the backend.
    let first = Mutex::new(Some(store));
    SyncArbiter::start(1, move || {
        let store = first
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .or_else(|| reopen(&backend, Backend::open_writer));
        Writer {
            store,
            backend: backend.clone(),
            metrics: metrics.clone(),
        }
    })
}

fn reopen(
    backend: &Backend,
    open: fn(&Backend) -> Result<DynStore, MergeError>,
) -> Option<DynStore> {
    match open(backend) {
        Ok(s) => {
            tracing::info!(store = %backend.describe(), "store connection reopened");
            Some(s)
        }
        Err(e) => {
            tracing::error!(store = %backend.describe(), error = %e, "store connection cannot be reopened");
            None
        }
    }
}

impl Writer {
    /// The store, reopening it if a previous open failed.
    fn store(&mut self) -> Result<&mut DynStore, MergeError> {
        if self.store.is_none() {
            self.store = Some(self.backend.open_writer()?);
        }
        self.store
            .as_mut()
            .ok_or(MergeError::Corrupt("store not open"))
    }
}

impl Handler<MergeGroup> for Writer {
    type Result = Result<Vec<MergeOutcome>, MergeError>;

    #[tracing::instrument(skip_all, fields(batches = msg.batches.len()))]
    fn handle(&mut self, msg: MergeGroup, _: &mut SyncContext<Self>) -> Self::Result {
        if msg.batches.is_empty() {
            return Ok(Vec::new());
        }
        let group: Vec<NodeBatch<'_>> = msg
            .batches
            .iter()
            .map(|b| NodeBatch {
                node: b.node,
                entries: &b.entries,
                progress: b.progress,
            })
            .collect();
        let started = Instant::now();
        let result = self.store().and_then(|s| s.apply_group(&group));
        let m = &self.metrics;
        match &result {
            Ok(outcomes) => {
                m.merge_commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                m.merge_group_deltas.observe(group.len() as f64);
                let applied: u64 = outcomes.iter().map(|o| o.applied).sum();
                let stale: u64 = outcomes.iter().map(|o| o.stale).sum();
                m.merge_entries
                    .get_or_create(&[("outcome", "applied")])
                    .inc_by(applied);
                m.merge_entries
                    .get_or_create(&[("outcome", "stale")])
                    .inc_by(stale);
            }
            // The sender logs it (it knows the nodes); counted here so a
            // failing disk shows even if every sender retries quietly.
            Err(_) => {
                m.merge_errors.inc();
            }
        }
        result
    }
}

impl Handler<InsertAlerts> for Writer {
    type Result = Result<AlertOutcome, MergeError>;

    #[tracing::instrument(skip_all, fields(node_id = %msg.node, alerts = msg.alerts.len()))]
    fn handle(&mut self, msg: InsertAlerts, _: &mut SyncContext<Self>) -> Self::Result {
        let out = self
            .store()?
            .insert_alerts(msg.node, &msg.alerts, msg.received_ms)?;
        let m = &self.metrics;
        m.alerts
            .get_or_create(&[("outcome", "new")])
            .inc_by(out.new);
        m.alerts
            .get_or_create(&[("outcome", "duplicate")])
            .inc_by(out.duplicate);
        Ok(out)
    }
}

impl Handler<Touch> for Writer {
    type Result = Result<(), MergeError>;

    fn handle(&mut self, msg: Touch, _: &mut SyncContext<Self>) -> Self::Result {
        self.store()?.touch(msg.node, msg.seen_ms)
    }
}

impl Handler<Watermarks> for Writer {
    type Result = Result<Vec<(NodeId, u64)>, MergeError>;

    fn handle(&mut self, _: Watermarks, _: &mut SyncContext<Self>) -> Self::Result {
        self.store()?.watermarks()
    }
}

impl Handler<AckAlert> for Writer {
    type Result = Result<bool, MergeError>;

    #[tracing::instrument(skip_all, fields(node_id = %msg.node, hlc = msg.hlc.as_u64()))]
    fn handle(&mut self, msg: AckAlert, _: &mut SyncContext<Self>) -> Self::Result {
        self.store()?.ack_alert(msg.node, msg.hlc, msg.acked_ms)
    }
}

/// Owns one read-only connection; see the module docs.
#[derive(Debug)]
pub struct Reader {
    store: Option<DynStore>,
    backend: Backend,
}

impl Actor for Reader {
    type Context = SyncContext<Self>;
}

/// Opens `threads` (at least 1) read-only connections to the database the
/// writer migrated (so a bad path fails here, not in an arbiter thread),
/// then starts one `SyncArbiter` thread per connection. Must be called
/// inside a running actix `System`.
pub fn start_readers(opts: &SqliteOptions, threads: usize) -> Result<Addr<Reader>, MergeError> {
    start_readers_on(&Backend::Sqlite(opts.clone()), threads)
}

/// [`start_readers`] for any backend.
pub fn start_readers_on(backend: &Backend, threads: usize) -> Result<Addr<Reader>, MergeError> {
    let threads = threads.max(1);
    let conns = (0..threads)
        .map(|_| backend.open_reader())
        .collect::<Result<Vec<_>, _>>()?;
    let pool = Mutex::new(conns);
    let backend = backend.clone();
    Ok(SyncArbiter::start(threads, move || {
        let store = pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .or_else(|| reopen(&backend, Backend::open_reader));
        Reader {
            store,
            backend: backend.clone(),
        }
    }))
}

impl Reader {
    fn store(&mut self) -> Result<&DynStore, MergeError> {
        if self.store.is_none() {
            self.store = Some(self.backend.open_reader()?);
        }
        self.store
            .as_ref()
            .ok_or(MergeError::Corrupt("store not open"))
    }
}

/// Every known node ([`MergeStore::nodes`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<NodeRecord>, MergeError>")]
pub struct QueryNodes;

/// Merged buckets of a range ([`MergeStore::merged`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<(Timestamp, Summary)>, MergeError>")]
pub struct QueryMerged(pub RangeQuery);

/// Per-node buckets of a range ([`MergeStore::per_node`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<NodeBucket>, MergeError>")]
pub struct QueryPerNode(pub RangeQuery);

/// One node's buckets of a range ([`MergeStore::node_series`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<NodeBucket>, MergeError>")]
pub struct QueryNodeSeries {
    /// The node.
    pub node: NodeId,
    /// The range.
    pub range: RangeQuery,
}

/// Alerts ([`MergeStore::alerts`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<StoredAlert>, MergeError>")]
pub struct QueryAlerts(pub AlertQuery);

/// Alerts not acknowledged yet ([`MergeStore::open_alert_count`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, MergeError>")]
pub struct CountOpenAlerts;

/// Every sensor ([`MergeStore::sensors`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<SensorRecord>, MergeError>")]
pub struct QuerySensors;

/// One sensor ([`MergeStore::sensor`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<SensorRecord>, MergeError>")]
pub struct QuerySensor(pub SensorId);

/// Whether the database answers a query (`/readyz`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), MergeError>")]
pub struct Probe;

/// A reader handler: run `$f` on the store.
macro_rules! read_handler {
    ($msg:ty, $out:ty, |$s:ident, $m:ident| $body:expr) => {
        impl Handler<$msg> for Reader {
            type Result = Result<$out, MergeError>;

            fn handle(&mut self, $m: $msg, _: &mut SyncContext<Self>) -> Self::Result {
                let $s = self.store()?;
                $body
            }
        }
    };
}

read_handler!(QueryNodes, Vec<NodeRecord>, |s, _m| s.nodes());
read_handler!(QueryMerged, Vec<(Timestamp, Summary)>, |s, m| s
    .merged(&m.0));
read_handler!(QueryPerNode, Vec<NodeBucket>, |s, m| s.per_node(&m.0));
read_handler!(QueryNodeSeries, Vec<NodeBucket>, |s, m| s
    .node_series(m.node, &m.range));
read_handler!(QueryAlerts, Vec<StoredAlert>, |s, m| s.alerts(&m.0));
read_handler!(CountOpenAlerts, u64, |s, _m| s.open_alert_count());
read_handler!(QuerySensors, Vec<SensorRecord>, |s, _m| s.sensors());
read_handler!(QuerySensor, Option<SensorRecord>, |s, m| s.sensor(m.0));
read_handler!(Probe, (), |s, _m| s.probe());
