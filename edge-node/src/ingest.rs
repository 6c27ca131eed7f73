//! The ingest actor: every source sends it [`Submit`]; it validates,
//! groups submissions from all sources into one store transaction (group
//! commit: up to `batch_max_readings` or `batch_interval`, whichever comes
//! first), and answers each sender only after that transaction committed,
//! so an acknowledgement always means "durable".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use tokio::sync::oneshot;
use tributary_core::ids::Timestamp;

use crate::config::IngestConfig;
use crate::detect::ReadingsCommitted;
use crate::metrics::Metrics;
use crate::reading::{Item, Limits, Rejected, Sample, SourceKind, Submission};
use crate::store::actor::StoreBatch;
use crate::store::{BatchResult, Outcome, StoreError};

/// A source hands over one submission and waits for the verdict.
#[derive(Debug, Message)]
#[rtype(result = "Result<Accepted, IngestError>")]
pub struct Submit {
    /// Which kind of source (metric label).
    pub source: SourceKind,
    /// The readings.
    pub submission: Submission,
}

/// The submission is durable (or was already).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Readings newly stored by this submission (0 for a duplicate).
    pub readings: u64,
    /// The (source, seq) was stored before: nothing changed.
    pub duplicate: bool,
}

/// Why a submission was not stored. Only `Rejected` is final; the others
/// mean "not now": the sender keeps the data and retries.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// Invalid input (see [`Rejected`]).
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// Too many readings waiting for a commit: back off and retry.
    #[error("ingest is saturated; retry later")]
    Busy,
    /// The gateway is stopping.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The store failed to commit; nothing of this submission was stored.
    #[error("store error: {0}")]
    Store(String),
}

impl IngestError {
    /// Stable metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Rejected(r) => r.reason.reason(),
            IngestError::Busy => "busy",
            IngestError::ShuttingDown => "shutting_down",
            IngestError::Store(_) => "store_error",
        }
    }
}

/// Stop admitting new submissions, commit everything waiting, and answer
/// once nothing is pending or in flight (the shutdown drain).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// The ingest actor (see the module docs).
pub struct Ingest {
    config: IngestConfig,
    store: Recipient<StoreBatch>,
    detector: Option<Recipient<ReadingsCommitted>>,
    metrics: Metrics,
    /// Submissions waiting for the next transaction, in arrival order.
    waiting: Vec<Waiting>,
    /// Readings in `waiting` plus those in the transaction in flight: the
    /// admission limit counts both, as both hold memory and neither is
    /// durable yet.
    pending_readings: usize,
    in_flight: bool,
    timer_armed: bool,
    draining: bool,
    drained: Vec<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("waiting", &self.waiting.len())
            .field("pending_readings", &self.pending_readings)
            .field("in_flight", &self.in_flight)
            .field("draining", &self.draining)
            .finish()
    }
}

struct Waiting {
    source: SourceKind,
    submission: Submission,
    readings: usize,
    reply: oneshot::Sender<Result<Accepted, IngestError>>,
}

/// What stays behind while a submission is in the store's hands.
struct InFlight {
    source: SourceKind,
    readings: usize,
    samples: Vec<Sample>,
    reply: oneshot::Sender<Result<Accepted, IngestError>>,
}

impl Ingest {
    /// An ingest actor writing to `store` and, after each commit, feeding
    /// `detector`.
    pub fn new(
        config: IngestConfig,
        store: Recipient<StoreBatch>,
        detector: Option<Recipient<ReadingsCommitted>>,
        metrics: Metrics,
    ) -> Ingest {
        Ingest {
            config,
            store,
            detector,
            metrics,
            waiting: Vec::new(),
            pending_readings: 0,
            in_flight: false,
            timer_armed: false,
            draining: false,
            drained: Vec::new(),
        }
    }

    fn refuse(&self, source: SourceKind, e: &IngestError) {
        self.metrics
            .ingest_refused
            .get_or_create(&[("source", source.as_str()), ("reason", e.reason())])
            .inc();
    }

    /// Starts a transaction with the oldest waiting submissions, up to
    /// `batch_max_readings` (always at least one submission).
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.waiting.is_empty() {
            return;
        }
        let mut take = 0;
        let mut readings = 0;
        for w in &self.waiting {
            if take > 0 && readings + w.readings > self.config.batch_max_readings {
                break;
            }
            readings += w.readings;
            take += 1;
        }
        let want_samples = self.detector.is_some();
        let (submissions, in_flight): (Vec<Submission>, Vec<InFlight>) = self
            .waiting
            .drain(..take)
            .map(|w| {
                let samples = if want_samples {
                    w.submission
                        .items
                        .iter()
                        .filter_map(|i| match i {
                            Item::Reading(s) => Some(*s),
                            Item::Window { .. } => None,
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let f = InFlight {
                    source: w.source,
                    readings: w.readings,
                    samples,
                    reply: w.reply,
                };
                (w.submission, f)
            })
            .unzip();
        self.in_flight = true;
        let sent = self.store.send(StoreBatch(submissions));
        ctx.spawn(sent.into_actor(self).map(move |res, act, ctx| {
            let res = match res {
                Ok(r) => r.map_err(|e: StoreError| e.to_string()),
                Err(e) => Err(format!("store actor unavailable: {e}")),
            };
            act.complete(res, in_flight, ctx);
        }));
    }

    fn complete(
        &mut self,
        res: Result<BatchResult, String>,
        batch: Vec<InFlight>,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight = false;
        let done: usize = batch.iter().map(|f| f.readings).sum();
        self.pending_readings = self.pending_readings.saturating_sub(done);
        match res {
            Ok(result) => {
                let mut committed = Vec::new();
                for (f, outcome) in batch.into_iter().zip(result.outcomes) {
                    let accepted = match outcome {
                        Outcome::Applied { readings } => {
                            self.metrics
                                .readings_ingested
                                .get_or_create(&[("source", f.source.as_str())])
                                .inc_by(readings);
                            committed.extend(f.samples);
                            Accepted {
                                readings,
                                duplicate: false,
                            }
                        }
                        Outcome::Duplicate => {
                            self.metrics
                                .submissions_duplicate
                                .get_or_create(&[("source", f.source.as_str())])
                                .inc();
                            Accepted {
                                readings: 0,
                                duplicate: true,
                            }
                        }
                    };
                    // A sender that gave up waiting is not an error: the
                    // data is durable either way.
                    let _ = f.reply.send(Ok(accepted));
                }
                self.feed_detector(committed);
            }
            Err(msg) => {
                tracing::error!(error = %msg, submissions = batch.len(), "group commit failed");
                for f in batch {
                    let e = IngestError::Store(msg.clone());
                    self.refuse(f.source, &e);
                    let _ = f.reply.send(Err(e));
                }
            }
        }
        self.metrics
            .ingest_pending
            .set(gauge(self.pending_readings));
        // Whatever arrived during the commit has already waited that long.
        self.flush(ctx);
        if !self.in_flight && self.waiting.is_empty() {
            for tx in self.drained.drain(..) {
                let _ = tx.send(());
            }
        }
    }

    fn feed_detector(&self, samples: Vec<Sample>) {
        let (Some(detector), false) = (&self.detector, samples.is_empty()) else {
            return;
        };
        let n = samples.len() as u64;
        // Shed, not block: detection is best effort, the data is already
        // durable, and a slow detector must not stall ingest.
        if detector.try_send(ReadingsCommitted(samples)).is_err() {
            self.metrics
                .detect_skipped
                .get_or_create(&[("reason", "mailbox_full")])
                .inc_by(n);
        }
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch by the system clock.
pub fn wall_clock() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Timestamp::from_millis(ms)
}

impl Actor for Ingest {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Sources use `send().await`, so a full mailbox slows them down
        // rather than growing memory; the admission limit below is the
        // real bound (in readings, not messages).
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Submit> for Ingest {
    type Result = ResponseFuture<Result<Accepted, IngestError>>;

    fn handle(&mut self, msg: Submit, ctx: &mut Self::Context) -> Self::Result {
        let Submit { source, submission } = msg;
        let limits = Limits {
            now: wall_clock(),
            max_future_ms: u64::try_from(self.config.max_future.as_millis()).unwrap_or(u64::MAX),
            max_items: self.config.max_readings_per_submission,
        };
        let verdict = if self.draining {
            Err(IngestError::ShuttingDown)
        } else if let Err(r) = submission.validate(&limits) {
            self.metrics
                .readings_rejected
                .get_or_create(&[("source", source.as_str()), ("reason", r.reason.reason())])
                .inc();
            return Box::pin(async move { Err(IngestError::Rejected(r)) });
        } else if self.pending_readings + submission.items.len() > self.config.max_pending_readings
        {
            Err(IngestError::Busy)
        } else {
            Ok(())
        };
        if let Err(e) = verdict {
            self.refuse(source, &e);
            return Box::pin(async move { Err(e) });
        }
        let readings = submission.items.len();
        let (reply, rx) = oneshot::channel();
        self.waiting.push(Waiting {
            source,
            submission,
            readings,
            reply,
        });
        self.pending_readings += readings;
        self.metrics
            .ingest_pending
            .set(gauge(self.pending_readings));
        let waiting_readings: usize = self.waiting.iter().map(|w| w.readings).sum();
        if waiting_readings >= self.config.batch_max_readings {
            self.flush(ctx);
        } else if !self.timer_armed && !self.in_flight {
            self.timer_armed = true;
            ctx.run_later(self.config.batch_interval, |act, ctx| {
                act.timer_armed = false;
                act.flush(ctx);
            });
        }
        Box::pin(async move {
            // The sender is dropped only if the actor stopped first.
            rx.await.unwrap_or(Err(IngestError::ShuttingDown))
        })
    }
}

impl Handler<Drain> for Ingest {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) -> Self::Result {
        self.draining = true;
        self.flush(ctx);
        let (tx, rx) = oneshot::channel();
        if !self.in_flight && self.waiting.is_empty() {
            let _ = tx.send(());
        } else {
            self.drained.push(tx);
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// How long a caller should wait before retrying after [`IngestError::Busy`]:
/// about one group-commit interval, at least one second for HTTP clients.
pub fn retry_after(config: &IngestConfig) -> Duration {
    config.batch_interval.max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tributary_core::ids::SensorId;

    use super::*;
    use crate::reading::Origin;
    use crate::store::Evictions;

    /// A store that records batches and answers each after `release` opens
    /// (or at once when `hold` is false); duplicates are submissions whose
    /// origin it saw before.
    struct FakeStore {
        batches: Arc<Mutex<Vec<usize>>>,
        seen: Vec<Origin>,
        hold: Option<tokio::sync::watch::Receiver<bool>>,
    }

    impl Actor for FakeStore {
        type Context = Context<Self>;
    }

    impl Handler<StoreBatch> for FakeStore {
        type Result = ResponseFuture<Result<BatchResult, StoreError>>;

        fn handle(&mut self, msg: StoreBatch, _: &mut Self::Context) -> Self::Result {
            self.batches.lock().unwrap().push(msg.0.len());
            let outcomes = msg
                .0
                .iter()
                .map(|s| match &s.origin {
                    Some(o) if self.seen.contains(o) => Outcome::Duplicate,
                    o => {
                        self.seen.extend(o.clone());
                        Outcome::Applied {
                            readings: s.items.len() as u64,
                        }
                    }
                })
                .collect();
            let result = BatchResult {
                outcomes,
                version_high: 0,
                late_skipped: 0,
                below_window: 0,
                evicted: Evictions::default(),
            };
            let hold = self.hold.clone();
            Box::pin(async move {
                if let Some(mut h) = hold {
                    let _ = h.wait_for(|open| *open).await;
                }
                Ok(result)
            })
        }
    }

    fn config(max_pending: usize) -> IngestConfig {
        IngestConfig {
            batch_max_readings: 100,
            batch_interval: Duration::from_millis(30),
            max_pending_readings: max_pending,
            max_readings_per_submission: 10,
            max_future: Duration::from_secs(60),
        }
    }

    fn submission(seq: Option<u64>, n: usize) -> Submit {
        let now = wall_clock();
        Submit {
            source: SourceKind::Http,
            submission: Submission {
                origin: seq.map(|seq| Origin {
                    source: "t".into(),
                    seq,
                }),
                items: (0..n)
                    .map(|_| {
                        Item::Reading(Sample {
                            sensor: SensorId(1),
                            ts: now,
                            value: 1.0,
                        })
                    })
                    .collect(),
            },
        }
    }

    #[actix::test]
    async fn concurrent_submissions_share_one_transaction_and_duplicates_are_reported() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let store = FakeStore {
            batches: batches.clone(),
            seen: Vec::new(),
            hold: None,
        }
        .start();
        let metrics = Metrics::new();
        let ingest = Ingest::new(config(1000), store.recipient(), None, metrics.clone()).start();
        let replies = futures_join(vec![
            ingest.send(submission(Some(1), 2)),
            ingest.send(submission(Some(2), 3)),
            ingest.send(submission(Some(1), 2)),
        ])
        .await;
        assert_eq!(*batches.lock().unwrap(), vec![3], "one group commit");
        assert_eq!(
            replies[0],
            Ok(Accepted {
                readings: 2,
                duplicate: false
            })
        );
        assert_eq!(
            replies[1],
            Ok(Accepted {
                readings: 3,
                duplicate: false
            })
        );
        assert_eq!(
            replies[2],
            Ok(Accepted {
                readings: 0,
                duplicate: true
            })
        );
        assert_eq!(
            metrics
                .readings_ingested
                .get_or_create(&[("source", "http")])
                .get(),
            5
        );
        assert_eq!(
            metrics
                .submissions_duplicate
                .get_or_create(&[("source", "http")])
                .get(),
            1
        );
    }

    #[actix::test]
    async fn over_the_pending_limit_is_busy_and_drain_waits_for_the_commit() {
        let (open, hold) = tokio::sync::watch::channel(false);
        let store = FakeStore {
            batches: Arc::default(),
            seen: Vec::new(),
            hold: Some(hold),
        }
        .start();
        let metrics = Metrics::new();
        let ingest = Ingest::new(config(12), store.recipient(), None, metrics.clone()).start();
        // 10 readings wait for a commit that is held open...
        let first = ingest.send(submission(Some(1), 10));
        let first = actix::spawn(first);
        // ...so 3 more exceed the limit of 12 (the mailbox is ordered: the
        // first submission was admitted before this one is looked at).
        assert_eq!(
            ingest.send(submission(Some(2), 3)).await.unwrap(),
            Err(IngestError::Busy)
        );
        assert_eq!(
            metrics
                .ingest_refused
                .get_or_create(&[("source", "http"), ("reason", "busy")])
                .get(),
            1
        );
        // Invalid input is refused at once, with its reason.
        let mut bad = submission(None, 1);
        if let Item::Reading(s) = &mut bad.submission.items[0] {
            s.value = f64::NAN;
        }
        let verdict = ingest.send(bad).await.unwrap();
        assert!(
            matches!(verdict, Err(IngestError::Rejected(r)) if r.reason.reason() == "non_finite")
        );
        // Drain answers only after the held commit completes.
        let drain = actix::spawn(ingest.send(Drain));
        tokio::task::yield_now().await;
        assert!(!drain.is_finished());
        open.send(true).unwrap();
        drain.await.unwrap().unwrap();
        assert_eq!(
            first.await.unwrap().unwrap(),
            Ok(Accepted {
                readings: 10,
                duplicate: false
            })
        );
        // After the drain, nothing new is admitted.
        assert_eq!(
            ingest.send(submission(Some(3), 1)).await.unwrap(),
            Err(IngestError::ShuttingDown)
        );
    }

    /// Sends all, then awaits all: the submissions reach the actor before
    /// any commit starts.
    async fn futures_join<F>(fs: Vec<F>) -> Vec<Result<Accepted, IngestError>>
    where
        F: std::future::Future<Output = Result<Result<Accepted, IngestError>, MailboxError>>
            + 'static,
    {
        let handles: Vec<_> = fs.into_iter().map(actix::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap().unwrap());
        }
        out
    }
}
