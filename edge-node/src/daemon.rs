//! `tributary-edge run`: starts the actors in dependency order and stops
//! them in reverse, draining (STYLE.md §2, mini-redis's shutdown):
//!
//! 1. the store (its own thread; opening it runs migrations and fixes the
//!    node id), the detector, ingest, the sources, the HTTP API;
//! 2. on the shutdown signal: `/readyz` turns 503, sources stop taking new
//!    data, the HTTP server finishes in-flight requests and closes, ingest
//!    commits everything it accepted, the store checkpoints its WAL.
//!
//! Every acknowledged reading is committed before it was acknowledged, so a
//! `kill -9` instead of this orderly path loses nothing acknowledged either:
//! the drain only saves the senders a retransmission.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::watch;
use tributary_core::ids::NodeId;

use crate::api::{ApiState, serve};
use crate::config::Config;
use crate::detect::DetectorActor;
use crate::ingest::{Drain, Ingest, retry_after};
use crate::metrics::Metrics;
use crate::store::StoreOptions;
use crate::store::actor::{Checkpoint, StoreActor};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The store could not be opened.
    #[error("cannot open the store in {dir}: {source}")]
    Store {
        /// The data directory.
        dir: String,
        /// The cause.
        source: crate::store::StoreError,
    },
    /// The fleet configuration document could not be opened.
    #[error("cannot open the fleet configuration {path}: {source}")]
    Fleet {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: tributary_fleet::ReplicaError,
    },
    /// The HTTP server could not start.
    #[error("cannot start the HTTP API: {0}")]
    Http(#[from] std::io::Error),
}

/// A running gateway, as started by [`start`].
#[derive(Debug)]
pub struct Running {
    /// This gateway's node id.
    pub node_id: NodeId,
    /// The registry (tests read counters from it).
    pub metrics: Metrics,
    store: Addr<StoreActor>,
    ingest: Addr<Ingest>,
    server: actix_web::dev::ServerHandle,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
    draining: Arc<AtomicBool>,
    stop_sources: watch::Sender<bool>,
    sources: Vec<tokio::task::JoinHandle<()>>,
}

/// The database file inside the data directory.
pub const DB_FILE: &str = "edge.sqlite3";
/// The fleet configuration document's file inside the data directory: its
/// own file, so a large sync never stalls the ingest path's writer (see
/// `tributary_fleet::Replica`).
pub const FLEET_FILE: &str = "fleet.sqlite3";

/// Starts every actor and the HTTP API on `listener`. Must run inside an
/// actix system.
pub async fn start(config: &Config, listener: TcpListener) -> Result<Running, DaemonError> {
    let metrics = Metrics::new();
    metrics
        .store_disk_budget_bytes
        .set(i64::try_from(config.store.disk_budget_bytes).unwrap_or(i64::MAX));
    let opts = StoreOptions {
        path: config.data_dir.join(DB_FILE),
        synchronous_full: config.store.synchronous_full,
        disk_budget_bytes: config.store.disk_budget_bytes,
        keep_raw: config.store.keep_raw,
        node_id: config.node_id,
        cache_keys: config.store.cache_keys,
    };
    let (store, node_id) =
        crate::store::actor::start(opts, metrics.clone()).map_err(|source| DaemonError::Store {
            dir: config.data_dir.display().to_string(),
            source,
        })?;
    tracing::info!(node_id = %node_id, data_dir = %config.data_dir.display(), "store open");

    // The fleet document: this gateway is replica `node_id`, syncing with
    // the hub only (docs/fleet-config.md).
    let fleet_path = config.data_dir.join(FLEET_FILE);
    let (fleet, fleet_rx) = tributary_fleet::FleetActor::open_and_start(
        &fleet_path,
        node_id,
        metrics.fleet.hooks(),
        64,
    )
    .map_err(|source| DaemonError::Fleet {
        path: fleet_path.clone(),
        source,
    })?;

    let detector = config.detect.enabled.then(|| {
        DetectorActor::new(
            config.detect.policy,
            store.clone().recipient(),
            store.clone().recipient(),
            metrics.clone(),
        )
        .with_thresholds(fleet.view.clone())
        .start()
        .recipient()
    });
    let ingest = Ingest::new(
        config.ingest,
        store.clone().recipient(),
        detector,
        metrics.clone(),
    )
    .start();

    let (stop_sources, stop_rx) = watch::channel(false);
    let mut sources = Vec::new();
    let src = &config.sources;
    let recipient = ingest.clone().recipient();
    let m = &metrics;
    if let Some(o) = &src.serial {
        tracing::info!(path = %o.path.display(), "serial source on");
        sources.push(actix::spawn(log_exit(
            "serial",
            crate::sources::serial::run(o.clone(), recipient.clone(), m.clone(), stop_rx.clone()),
        )));
    }
    if let Some(o) = &src.mqtt {
        tracing::info!(host = %o.host, port = o.port, "local MQTT source on");
        sources.push(actix::spawn(log_exit(
            "mqtt",
            crate::sources::mqtt::run(o.clone(), recipient.clone(), m.clone(), stop_rx.clone()),
        )));
    }
    if let Some(o) = &src.simulator {
        tracing::info!(sensors = o.sensors, rate_hz = o.rate_hz, "simulator on");
        sources.push(actix::spawn(log_exit(
            "simulator",
            crate::sources::simulator::run(
                o.clone(),
                recipient.clone(),
                m.clone(),
                stop_rx.clone(),
            ),
        )));
    }
    if let Some(o) = &src.replay {
        tracing::info!(path = %o.path.display(), speed = o.speed, "CSV replay on");
        sources.push(actix::spawn(log_exit(
            "replay",
            crate::sources::replay::run(o.clone(), recipient.clone(), m.clone(), stop_rx.clone()),
        )));
    }

    let uplink = Arc::new(crate::sync::UplinkStatus::default());
    if let Some(o) = &config.uplink {
        tracing::info!(host = %o.host, port = o.port, "uplink to the hub on");
        let (o, store, m, st, stop) = (
            o.clone(),
            store.clone(),
            metrics.clone(),
            uplink.clone(),
            stop_rx.clone(),
        );
        let link = tributary_fleet::FleetLink {
            actor: fleet.actor.clone(),
            out: fleet_rx,
        };
        sources.push(actix::spawn(async move {
            match crate::sync::run(o, node_id, store, m, st, Some(link), stop).await {
                Ok(()) => tracing::info!("uplink stopped"),
                Err(e) => tracing::error!(error = %e, "uplink failed"),
            }
        }));
    }

    let draining = Arc::new(AtomicBool::new(false));
    let local = listener.local_addr()?;
    let server = serve(
        listener,
        ApiState {
            ingest: ingest.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            max_body_bytes: config.http_max_body_bytes,
            retry_after: retry_after(&config.ingest),
            draining: draining.clone(),
            started: Instant::now(),
            uplink,
            fleet: Some(fleet),
        },
    )?;
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    tracing::info!(url = %format!("http://{local}/api/v1/status"), "HTTP API listening");
    Ok(Running {
        node_id,
        metrics,
        store,
        ingest,
        server: handle,
        server_task,
        draining,
        stop_sources,
        sources,
    })
}

/// Runs a source to its end and logs how it ended (a source error is
/// logged, not fatal: the other sources and the API keep working).
async fn log_exit(
    name: &'static str,
    source: impl std::future::Future<Output = Result<(), crate::sources::SourceError>>,
) {
    match source.await {
        Ok(()) => tracing::info!(source = name, "source stopped"),
        Err(e) => tracing::error!(source = name, error = %e, "source failed"),
    }
}

impl Running {
    /// The orderly stop (see the module docs).
    pub async fn shutdown(self) {
        tracing::info!("shutting down: draining");
        self.draining.store(true, Ordering::Relaxed);
        let _ = self.stop_sources.send(true);
        for s in self.sources {
            let _ = s.await;
        }
        self.server.stop(true).await;
        let _ = self.server_task.await;
        let _ = self.ingest.send(Drain).await;
        if let Ok(Err(e)) = self.store.send(Checkpoint).await {
            tracing::warn!(error = %e, "final WAL checkpoint failed (the WAL is replayed at the next start)");
        }
        tracing::info!("stopped");
    }
}
