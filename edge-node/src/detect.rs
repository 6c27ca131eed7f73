//! The detector actor: runs the core's detector ensemble per sensor over
//! every committed reading and turns its scores into alerts (opened,
//! resolved) that the store records and the API and sync expose.
//!
//! It sees readings only after they are durable, so an alert never points at
//! data that a crash could take back. Detection is best effort: readings
//! older than the last one scored for their sensor (late or out of order)
//! are skipped and counted, because the detectors are causal streams; their
//! values still count in the aggregates.
//!
//! Alert thresholds come from the fleet configuration document
//! (docs/fleet-config.md): a sensor with a threshold there uses it instead
//! of the configured policy, from the next batch of readings on, without a
//! restart ([`DetectorActor::with_thresholds`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;
use tributary_core::codec::v1::DetectorKind;
use tributary_core::detect::{
    AlertEvent, AlertPolicy, AlertState, Detector, Ensemble, EnsembleConfig,
};
use tributary_core::ids::{Bucket, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_fleet::{FleetView, Threshold};

use crate::metrics::Metrics;
use crate::reading::Sample;
use crate::store::actor::{RecordAlert, ResolveAlert};
use crate::store::{NewAlert, ResolvedAlert};

/// Readings that were just committed, in commit order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReadingsCommitted(pub Vec<Sample>);

/// One sensor's detection state: fixed size (≈ 2 KiB), no heap.
#[derive(Clone, Copy, Debug)]
struct SensorState {
    ensemble: Ensemble,
    alert: AlertState,
    last_ts: Timestamp,
    /// The readings of the current minute: the context an alert carries.
    window: Summary,
    window_bucket: Bucket,
}

/// The detector actor.
#[derive(Debug)]
pub struct DetectorActor {
    policy: AlertPolicy,
    /// Per-sensor thresholds of the fleet document, and where they come from.
    thresholds: BTreeMap<SensorId, Threshold>,
    fleet: Option<tokio::sync::watch::Receiver<Arc<FleetView>>>,
    sensors: HashMap<SensorId, SensorState>,
    record: Recipient<RecordAlert>,
    resolve: Recipient<ResolveAlert>,
    metrics: Metrics,
}

impl DetectorActor {
    /// A detector that reports alerts to the store.
    pub fn new(
        policy: AlertPolicy,
        record: Recipient<RecordAlert>,
        resolve: Recipient<ResolveAlert>,
        metrics: Metrics,
    ) -> DetectorActor {
        DetectorActor {
            policy,
            thresholds: BTreeMap::new(),
            fleet: None,
            sensors: HashMap::new(),
            record,
            resolve,
            metrics,
        }
    }

    /// Follows the per-sensor thresholds of the fleet document in `view`.
    pub fn with_thresholds(
        mut self,
        mut view: tokio::sync::watch::Receiver<Arc<FleetView>>,
    ) -> DetectorActor {
        self.thresholds = view.borrow_and_update().snapshot.thresholds.clone();
        self.fleet = Some(view);
        self
    }

    /// Picks up thresholds changed since the last batch.
    fn refresh_thresholds(&mut self) {
        let Some(view) = self.fleet.as_mut() else {
            return;
        };
        if view.has_changed().unwrap_or(false) {
            let next = view.borrow_and_update().snapshot.thresholds.clone();
            if next != self.thresholds {
                tracing::info!(
                    sensors = next.len(),
                    "alert thresholds updated from the fleet configuration"
                );
                self.thresholds = next;
            }
        }
    }

    /// The policy of `sensor`: its fleet threshold if it has one. Without
    /// its own `close`, the configured policy's hysteresis is kept in
    /// proportion (close / open).
    fn policy_of(&self, sensor: SensorId) -> AlertPolicy {
        match self.thresholds.get(&sensor) {
            None => self.policy,
            Some(t) => AlertPolicy {
                open: t.open,
                close: t
                    .close
                    .unwrap_or(t.open * (self.policy.close / self.policy.open)),
                clear_after: self.policy.clear_after,
            },
        }
    }

    fn step(&mut self, s: Sample, ctx: &mut Context<Self>) {
        let policy = self.policy_of(s.sensor);
        let state = self.sensors.entry(s.sensor).or_insert_with(|| SensorState {
            ensemble: Ensemble::new(EnsembleConfig::DEFAULT),
            alert: AlertState::new(),
            last_ts: Timestamp::from_millis(0),
            window: Summary::EMPTY,
            window_bucket: Bucket::containing(s.ts, Resolution::Minute),
        });
        if s.ts < state.last_ts {
            self.metrics
                .detect_skipped
                .get_or_create(&[("reason", "out_of_order")])
                .inc();
            return;
        }
        state.last_ts = s.ts;
        let bucket = Bucket::containing(s.ts, Resolution::Minute);
        if bucket != state.window_bucket {
            state.window = Summary::EMPTY;
            state.window_bucket = bucket;
        }
        // Ingest refused non-finite values, so this cannot fail; a failure
        // would only leave the context window short by one reading.
        let _ = state.window.record(s.ts, s.value);
        let score = state.ensemble.step(s.ts, s.value);
        let Some(event) = state.alert.step(&policy, s.ts, score) else {
            return;
        };
        match event {
            AlertEvent::Opened { at, score } => {
                self.metrics
                    .alerts
                    .get_or_create(&[("event", "opened")])
                    .inc();
                tracing::info!(sensor = %s.sensor, score, value = s.value, "alert opened");
                let alert = NewAlert {
                    sensor: s.sensor,
                    at,
                    value: s.value,
                    score,
                    detector: DetectorKind::Ensemble,
                    window: state.window,
                };
                let sent = self.record.send(RecordAlert(alert));
                let metrics = self.metrics.clone();
                ctx.spawn(actix::fut::wrap_future(async move {
                    if !matches!(sent.await, Ok(Ok(_))) {
                        metrics
                            .store_errors
                            .get_or_create(&[("op", "record_alert")])
                            .inc();
                        tracing::error!("could not store an alert");
                    }
                }));
            }
            AlertEvent::Resolved {
                opened_at,
                at,
                peak,
            } => {
                self.metrics
                    .alerts
                    .get_or_create(&[("event", "resolved")])
                    .inc();
                tracing::info!(sensor = %s.sensor, peak, "alert resolved");
                let sent = self.resolve.send(ResolveAlert(ResolvedAlert {
                    sensor: s.sensor,
                    opened_at,
                    at,
                    peak,
                }));
                let metrics = self.metrics.clone();
                ctx.spawn(actix::fut::wrap_future(async move {
                    if !matches!(sent.await, Ok(Ok(()))) {
                        metrics
                            .store_errors
                            .get_or_create(&[("op", "resolve_alert")])
                            .inc();
                        tracing::error!("could not store an alert resolution");
                    }
                }));
            }
        }
    }
}

impl Actor for DetectorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Ingest uses try_send and counts what does not fit.
        ctx.set_mailbox_capacity(256);
    }
}

impl Handler<ReadingsCommitted> for DetectorActor {
    type Result = ();

    fn handle(&mut self, msg: ReadingsCommitted, ctx: &mut Self::Context) {
        self.refresh_thresholds();
        for s in msg.0 {
            self.step(s, ctx);
        }
    }
}
