//! The store actor: one thread (actix `SyncArbiter` with one worker, STYLE.md
//! §2) owns the SQLite connection; every other actor talks to it through
//! these messages. It is the imperative shell around [`Store`]: it reads the
//! wall clock (for the alert HLC), records metrics and logs failures.
//!
//! Restarts: a handler that meets a fatal error ([`StoreError::is_fatal`])
//! stops the actor; the `SyncArbiter` then builds a new one, which reopens
//! the database from the options and counts
//! `tributary_actor_restarts_total{actor="store"}`. If reopening fails, the
//! actor answers [`StoreError::Unavailable`] and retries the open on every
//! message. The message in flight at the failure got its error; durability
//! lives in the database, never in the mailbox.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};
use tributary_core::codec::v1;
use tributary_core::ids::{NodeId, Resolution};
use tributary_core::sync::{NodeConfig, NodeSync, SyncError};

use super::{
    AggregateQuery, AggregateRow, AlertQuery, BatchResult, NewAlert, Outcome, ResolvedAlert, Store,
    StoreError, StoreOptions, StoreStatus, StoredAlert, SyncView,
};
use crate::metrics::Metrics;
use crate::reading::Submission;

/// How often (at most) the exact `outbox_pending_entries` count is
/// refreshed after batches: it is an index range scan, too costly per batch
/// when the hub has been away for days.
const PENDING_REFRESH: Duration = Duration::from_secs(1);

/// Stores a batch of submissions in one transaction.
#[derive(Debug, Message)]
#[rtype(result = "Result<BatchResult, StoreError>")]
pub struct StoreBatch(pub Vec<Submission>);

/// Reads a range of buckets.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<AggregateRow>, StoreError>")]
pub struct QueryAggregates(pub AggregateQuery);

/// Records an alert (stamped with the HLC at the actor's wall clock).
#[derive(Debug, Message)]
#[rtype(result = "Result<StoredAlert, StoreError>")]
pub struct RecordAlert(pub NewAlert);

/// Closes an alert.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct ResolveAlert(pub ResolvedAlert);

/// Lists alerts.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<StoredAlert>, StoreError>")]
pub struct QueryAlerts(pub AlertQuery);

/// The store's status.
#[derive(Debug, Message)]
#[rtype(result = "Result<StoreStatus, StoreError>")]
pub struct GetStatus;

/// The next delta for the hub (see [`Store::read_delta`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<v1::Message>, StoreError>")]
pub struct ReadDelta {
    /// Versions above this.
    pub after: u64,
    /// Encoded size limit.
    pub max_bytes: usize,
}

/// Records the hub's watermark.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SetHubWatermark(pub u64);

/// Checkpoints the WAL (shutdown).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Checkpoint;

/// An event of the sync session with the hub, fed to the node's protocol
/// state machine ([`NodeSync`]), which lives in the store actor because it
/// reads the outbox ([`DeltaSource`](tributary_core::sync::DeltaSource))
/// synchronously on every event that may send.
#[derive(Debug)]
pub enum SyncEvent {
    /// The uplink connected (and subscribed to its ack topic): start a
    /// session with these limits, syncing buckets at the given resolution
    /// and coarser.
    Connect(NodeConfig, Resolution),
    /// A `Resume` or `Ack` from the hub.
    Received(v1::Message),
    /// Time passed (retransmissions) or readings were written (more to send).
    Tick,
    /// Time for an anti-entropy round: a `Hello` with the next digest cells
    /// (`NodeSync::digest_hello`).
    Digest,
    /// The uplink dropped.
    Disconnect,
}

/// One [`SyncEvent`] at wall time `now_ms`.
#[derive(Debug, Message)]
#[rtype(result = "Result<SyncOutput, StoreError>")]
pub struct SyncStep {
    /// What happened.
    pub event: SyncEvent,
    /// The wall clock, ms since the epoch.
    pub now_ms: u64,
}

/// What the sync state machine answered.
#[derive(Debug, Default)]
pub struct SyncOutput {
    /// Messages to publish, in order.
    pub send: Vec<v1::Message>,
    /// A message from the hub that was refused (counted by the caller).
    pub refused: Option<SyncError>,
    /// The hub's acknowledged watermark (persisted before this answer).
    pub acked: u64,
    /// The node's highest version.
    pub version_high: u64,
    /// Whether a session is established.
    pub streaming: bool,
    /// Changes when the session state was lost (the actor restarted): the
    /// uplink must then start over with [`SyncEvent::Connect`].
    pub epoch: u64,
    /// Cells the hub asked to repair (their rows were re-stamped).
    pub repaired_cells: usize,
}

/// Distinguishes the session state of one actor instance from the next.
static SYNC_EPOCH: AtomicU64 = AtomicU64::new(1);

/// Owns the [`Store`]; see the module docs.
#[derive(Debug)]
pub struct StoreActor {
    store: Option<Store>,
    opts: StoreOptions,
    metrics: Metrics,
    pending_refreshed: Option<Instant>,
    /// The sync session's protocol state, created on the first `Connect`.
    sync: Option<NodeSync>,
    /// The finest resolution the uplink syncs.
    sync_finest: Resolution,
    epoch: u64,
}

/// Opens the store on the calling thread (so a bad path, a newer schema or
/// a node id mismatch fails here), then moves it into a one-thread
/// `SyncArbiter`. Must be called inside a running actix `System`.
pub fn start(
    opts: StoreOptions,
    metrics: Metrics,
) -> Result<(Addr<StoreActor>, NodeId), StoreError> {
    let store = Store::open(&opts)?;
    let node = store.node_id();
    metrics
        .store_disk_budget_bytes
        .set(i64::try_from(opts.disk_budget_bytes).unwrap_or(i64::MAX));
    metrics
        .node_version
        .set(i64::try_from(store.version_high()).unwrap_or(i64::MAX));
    metrics
        .outbox_acked_version
        .set(i64::try_from(store.hub_watermark()).unwrap_or(i64::MAX));
    // The factory runs on the arbiter's thread: first with the store opened
    // here, then (after a restart) reopening from the options.
    let first = Mutex::new(Some(store));
    let addr = SyncArbiter::start(1, move || {
        let reused = first.lock().ok().and_then(|mut s| s.take());
        let store = match reused {
            Some(s) => Some(s),
            None => {
                metrics
                    .actor_restarts
                    .get_or_create(&[("actor", "store")])
                    .inc();
                reopen(&opts)
            }
        };
        StoreActor {
            store,
            opts: opts.clone(),
            metrics: metrics.clone(),
            pending_refreshed: None,
            sync: None,
            sync_finest: Resolution::Minute,
            epoch: SYNC_EPOCH.fetch_add(1, Ordering::Relaxed),
        }
    });
    Ok((addr, node))
}

fn reopen(opts: &StoreOptions) -> Option<Store> {
    match Store::open(opts) {
        Ok(s) => {
            tracing::info!(node_id = %s.node_id(), "store reopened");
            Some(s)
        }
        Err(e) => {
            tracing::error!(error = %e, reason = e.reason(), "store reopen failed");
            None
        }
    }
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Actor for StoreActor {
    type Context = SyncContext<Self>;
}

impl StoreActor {
    /// Runs `f` on the store, counting and logging a failure under `op`;
    /// a fatal failure restarts the actor (reopening the database).
    fn run<T>(
        &mut self,
        op: &'static str,
        ctx: &mut SyncContext<Self>,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.store.is_none() {
            self.store = reopen(&self.opts);
        }
        let res = match self.store.as_mut() {
            Some(s) => f(s),
            None => Err(StoreError::Unavailable(
                "database could not be reopened".into(),
            )),
        };
        if let Err(e) = &res {
            self.metrics.store_errors.get_or_create(&[("op", op)]).inc();
            tracing::error!(op, error = %e, reason = e.reason(), "store operation failed");
            if e.is_fatal() {
                use actix::ActorContext;
                ctx.stop();
            }
        }
        res
    }
}

impl Handler<StoreBatch> for StoreActor {
    type Result = Result<BatchResult, StoreError>;

    fn handle(&mut self, msg: StoreBatch, ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let r = self.run("ingest", ctx, |s| s.ingest(&msg.0))?;
        let m = &self.metrics;
        m.store_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        let readings: u64 = r
            .outcomes
            .iter()
            .map(|o| match o {
                Outcome::Applied { readings } => *readings,
                Outcome::Duplicate => 0,
            })
            .sum();
        m.store_batch_readings.observe(readings as f64);
        for (kind, n) in r.evicted.by_kind() {
            if n > 0 {
                m.store_evicted.get_or_create(&[("kind", kind)]).inc_by(n);
            }
        }
        m.node_version.set(gauge(r.version_high));
        if let Some(s) = &self.store {
            if let Ok(b) = s.db_bytes() {
                m.store_disk_bytes.set(gauge(b));
            }
            let due = self
                .pending_refreshed
                .is_none_or(|t| t.elapsed() >= PENDING_REFRESH);
            if due && let Ok(n) = s.unsynced_entries() {
                m.outbox_pending_entries.set(gauge(n));
                self.pending_refreshed = Some(Instant::now());
            }
        }
        if r.evicted.budget_exhausted {
            tracing::error!("disk budget exhausted: only day buckets left and still over budget");
        }
        Ok(r)
    }
}

impl Handler<QueryAggregates> for StoreActor {
    type Result = Result<Vec<AggregateRow>, StoreError>;

    fn handle(&mut self, msg: QueryAggregates, ctx: &mut Self::Context) -> Self::Result {
        self.run("query_aggregates", ctx, |s| s.aggregates(&msg.0))
    }
}

impl Handler<RecordAlert> for StoreActor {
    type Result = Result<StoredAlert, StoreError>;

    fn handle(&mut self, msg: RecordAlert, ctx: &mut Self::Context) -> Self::Result {
        let now = crate::ingest::wall_clock();
        self.run("record_alert", ctx, |s| s.record_alert(&msg.0, now))
    }
}

impl Handler<ResolveAlert> for StoreActor {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: ResolveAlert, ctx: &mut Self::Context) -> Self::Result {
        self.run("resolve_alert", ctx, |s| s.resolve_alert(&msg.0))
    }
}

impl Handler<QueryAlerts> for StoreActor {
    type Result = Result<Vec<StoredAlert>, StoreError>;

    fn handle(&mut self, msg: QueryAlerts, ctx: &mut Self::Context) -> Self::Result {
        self.run("query_alerts", ctx, |s| s.alerts(&msg.0))
    }
}

impl Handler<GetStatus> for StoreActor {
    type Result = Result<StoreStatus, StoreError>;

    fn handle(&mut self, _: GetStatus, ctx: &mut Self::Context) -> Self::Result {
        let st = self.run("status", ctx, |s| s.status())?;
        self.metrics.store_disk_bytes.set(gauge(st.db_bytes));
        self.metrics
            .outbox_pending_entries
            .set(gauge(st.unsynced_entries));
        Ok(st)
    }
}

impl Handler<ReadDelta> for StoreActor {
    type Result = Result<Option<v1::Message>, StoreError>;

    fn handle(&mut self, msg: ReadDelta, ctx: &mut Self::Context) -> Self::Result {
        self.run("read_delta", ctx, |s| {
            s.read_delta(msg.after, msg.max_bytes)
        })
    }
}

impl Handler<SetHubWatermark> for StoreActor {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: SetHubWatermark, ctx: &mut Self::Context) -> Self::Result {
        let w = self.run("set_hub_watermark", ctx, |s| {
            s.set_hub_watermark(msg.0)?;
            Ok(s.hub_watermark())
        })?;
        self.metrics.outbox_acked_version.set(gauge(w));
        Ok(())
    }
}

impl Handler<Checkpoint> for StoreActor {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, _: Checkpoint, ctx: &mut Self::Context) -> Self::Result {
        self.run("checkpoint", ctx, |s| s.checkpoint())
    }
}

/// The alert outbox: up to `limit` unacknowledged alerts, oldest first,
/// with their ids (see [`Store::pending_alerts`](super::Store::pending_alerts)).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<(i64, tributary_core::codec::v1::Alert)>, StoreError>")]
pub struct PendingAlerts {
    /// Most alerts returned.
    pub limit: usize,
}

/// The hub acknowledged every alert up to this id.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct AckAlerts(pub i64);

impl Handler<PendingAlerts> for StoreActor {
    type Result = Result<Vec<(i64, tributary_core::codec::v1::Alert)>, StoreError>;

    fn handle(&mut self, msg: PendingAlerts, ctx: &mut Self::Context) -> Self::Result {
        self.run("pending_alerts", ctx, |s| s.pending_alerts(msg.limit))
    }
}

impl Handler<AckAlerts> for StoreActor {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: AckAlerts, ctx: &mut Self::Context) -> Self::Result {
        self.run("ack_alerts", ctx, |s| s.set_alerts_acked(msg.0))
    }
}

impl Handler<SyncStep> for StoreActor {
    type Result = Result<SyncOutput, StoreError>;

    fn handle(&mut self, msg: SyncStep, ctx: &mut Self::Context) -> Self::Result {
        let SyncStep { event, now_ms } = msg;
        if let SyncEvent::Connect(_, finest) = &event {
            self.sync_finest = *finest;
        }
        let finest = self.sync_finest;
        let epoch = self.epoch;
        let mut slot = self.sync.take();
        let res = self.run("sync", ctx, |s| {
            let mut out = SyncOutput {
                epoch,
                ..SyncOutput::default()
            };
            match event {
                SyncEvent::Connect(cfg, _) => {
                    // The acknowledged watermark survives in the database;
                    // a new session starts from it.
                    let view = SyncView { store: s, finest };
                    let sync = slot
                        .get_or_insert_with(|| NodeSync::new(s.node_id(), cfg, s.hub_watermark()));
                    out.send = sync.on_connect(now_ms, &view);
                }
                SyncEvent::Received(m) => {
                    if let Some(sync) = slot.as_mut() {
                        let view = SyncView { store: s, finest };
                        match sync.on_message(m, now_ms, &view) {
                            Ok(send) => out.send = send,
                            Err(e) => out.refused = Some(e),
                        }
                        let cells = sync.take_repairs();
                        if !cells.is_empty() {
                            // Fresh versions put the cells' rows above the
                            // watermark: they stream to the hub again. If
                            // this fails, the next digest round asks again.
                            let rows = s.restamp_cells(&cells, finest)?;
                            out.repaired_cells = cells.len();
                            tracing::warn!(cells = cells.len(), rows,
                                "the hub lacks data it had acknowledged: re-sending the affected cells");
                            let view = SyncView { store: s, finest };
                            out.send.extend(sync.on_tick(now_ms, &view));
                        }
                    }
                }
                SyncEvent::Digest => {
                    let view = SyncView { store: s, finest };
                    if let Some(sync) = slot.as_mut() {
                        out.send = sync.digest_hello(&view);
                    }
                }
                SyncEvent::Tick => {
                    let view = SyncView { store: s, finest };
                    if let Some(sync) = slot.as_mut() {
                        out.send = sync.on_tick(now_ms, &view);
                    }
                }
                SyncEvent::Disconnect => {
                    if let Some(sync) = slot.as_mut() {
                        sync.on_disconnect();
                    }
                }
            }
            if let Some(sync) = slot.as_ref() {
                // Persist before anything else relies on it; the watermark
                // only lets the node forget, so writing it late is safe and
                // writing it early never happens (it comes from the hub).
                if sync.acked() > s.hub_watermark() {
                    s.set_hub_watermark(sync.acked())?;
                }
                out.streaming = sync.is_streaming();
            }
            out.acked = s.hub_watermark();
            out.version_high = s.version_high();
            Ok(out)
        });
        self.sync = slot;
        if let Ok(out) = &res {
            self.metrics.outbox_acked_version.set(gauge(out.acked));
        }
        res
    }
}
