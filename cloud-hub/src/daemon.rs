//! `tributary-hub run`: starts the parts in dependency order and stops them
//! in reverse (STYLE.md §2):
//!
//! 1. the store writer (its own thread; opening runs migrations) and the
//!    readers, the embedded broker (unless external), the sync shell (its
//!    MQTT client), the HTTP API;
//! 2. on the shutdown signal: the sync shell stops taking messages and
//!    commits what it received, the HTTP server finishes in-flight requests.
//!
//! Every `Ack` is published only after its merge committed, so a `kill -9`
//! instead of this orderly path loses nothing acknowledged either.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::Addr;
use tokio::sync::watch;

use crate::api::{ApiState, Health};
use crate::broker::{BrokerConfig, EmbeddedBroker};
use crate::config::{BrokerMode, Config};
use crate::metrics::Metrics;
use crate::store::MergeError;
use crate::store::SqliteOptions;
use crate::store::actor::{Backend, Writer, start_readers_on, start_writer_on};

/// The database file inside the data directory.
pub const DB_FILE: &str = "hub.sqlite3";
/// The fleet configuration document's file inside the data directory
/// (its own file: see `tributary_fleet::Replica`).
pub const FLEET_FILE: &str = "fleet.sqlite3";

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The store could not be opened.
    #[error("cannot open the store {dir}: {source}")]
    Store {
        /// The SQLite file or the PostgreSQL database (no credentials).
        dir: String,
        /// The cause.
        source: MergeError,
    },
    /// The embedded broker could not start.
    #[error("cannot start the embedded MQTT broker: {0}")]
    Broker(#[from] crate::broker::BrokerError),
    /// The fleet configuration document could not be opened.
    #[error("cannot open the fleet configuration {path}: {source}")]
    Fleet {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: tributary_fleet::ReplicaError,
    },
    /// The HTTP server could not start.
    #[error("cannot start the HTTP API on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running hub, as started by [`start`].
#[derive(Debug)]
pub struct Running {
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    /// Where the MQTT broker is (embedded or external).
    pub mqtt: String,
    /// The registry.
    pub metrics: Metrics,
    /// Health flags shared with `/readyz`.
    pub health: Arc<Health>,
    writer: Addr<Writer>,
    server: actix_web::dev::ServerHandle,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: watch::Sender<bool>,
    sync_task: tokio::task::JoinHandle<()>,
    /// Kept alive for the process's life (rumqttd has no shutdown call).
    _broker: Option<EmbeddedBroker>,
}

/// Starts every part. Must run inside an actix system.
pub async fn start(config: &Config) -> Result<Running, DaemonError> {
    let metrics = Metrics::new();
    let backend = match &config.postgres_url {
        Some(url) => Backend::Postgres(url.clone()),
        None => Backend::Sqlite(SqliteOptions {
            path: config.data_dir.join(DB_FILE),
            synchronous_full: config.synchronous_full,
        }),
    };
    let store_err = |source| DaemonError::Store {
        dir: backend.describe(),
        source,
    };
    let store = backend.open_writer().map_err(store_err)?;
    let writer = start_writer_on(backend.clone(), store, metrics.clone());
    let reader = start_readers_on(&backend, config.readers).map_err(store_err)?;
    tracing::info!(store = %backend.describe(), "store open");

    let (broker, mqtt) = match &config.broker {
        BrokerMode::Embedded(listen) => {
            let b = EmbeddedBroker::start_with_metrics(
                &BrokerConfig {
                    listen: *listen,
                    max_payload_size: config.sync.max_packet_bytes,
                    node_passwords: config.node_passwords.clone(),
                    tls: config.broker_tls.clone(),
                    ..BrokerConfig::default()
                },
                metrics.broker_refused.clone(),
            )?;
            let addr = b.addr();
            tracing::info!(%addr, "embedded MQTT broker listening");
            (Some(b), addr.to_string())
        }
        BrokerMode::External => (None, format!("{}:{}", config.sync.host, config.sync.port)),
    };
    let mut sync_opts = config.sync.clone();
    if let Some(b) = &broker {
        // Port 0 was resolved by the broker; behind a gate the hub talks
        // to rumqttd directly with its own account.
        let (addr, credentials) = b.hub_endpoint();
        sync_opts.host = addr.ip().to_string();
        sync_opts.port = addr.port();
        if credentials.is_some() {
            sync_opts.credentials = credentials;
        }
    }

    // The fleet document: the hub is replica `HUB` (0), in a new session
    // per process start (docs/fleet-config.md, "Actors").
    let fleet_path = config.data_dir.join(FLEET_FILE);
    // Its queue has room for one round to every gateway of a large fleet
    // after an edit.
    let (fleet, fleet_rx) = tributary_fleet::FleetActor::open_and_start(
        &fleet_path,
        tributary_fleet::HUB,
        metrics.fleet.hooks(),
        4096,
    )
    .map_err(|source| DaemonError::Fleet {
        path: fleet_path.clone(),
        source,
    })?;

    let health = Arc::new(Health::default());
    let (stop, stop_rx) = watch::channel(false);
    let sync_task = actix::spawn({
        let (w, m, h) = (writer.clone(), metrics.clone(), health.clone());
        let link = tributary_fleet::FleetLink {
            actor: fleet.actor.clone(),
            out: fleet_rx,
        };
        async move {
            if let Err(e) = crate::sync::run(sync_opts, w, m, h, Some(link), stop_rx).await {
                tracing::error!(error = %e, "hub sync failed");
            }
        }
    });

    if !config.http_listen.ip().is_loopback() {
        if !config.api_tokens.enabled() {
            tracing::warn!(listen = %config.http_listen,
                "the API is open to anyone who can reach this address: set http.reader_tokens / http.admin_tokens");
        } else if config.http_tls.is_none() {
            tracing::warn!(listen = %config.http_listen,
                "API tokens travel in clear over plain HTTP: set http.tls_cert / http.tls_key");
        }
    }
    let state = ApiState::new(reader, writer.clone(), metrics.clone(), health.clone())
        .with_online_window(config.online_window)
        .with_tokens(config.api_tokens.clone())
        .with_fleet(fleet);
    let (server, http) =
        crate::api::server_with_tls(config.http_listen, state, config.http_tls.clone()).map_err(
            |source| DaemonError::Http {
                addr: config.http_listen,
                source,
            },
        )?;
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    Ok(Running {
        http,
        mqtt,
        metrics,
        health,
        writer,
        server: handle,
        server_task,
        stop,
        sync_task,
        _broker: broker,
    })
}

impl Running {
    /// The orderly stop (see the module docs).
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        let _ = self.stop.send(true);
        let _ = self.sync_task.await;
        self.server.stop(true).await;
        let _ = self.server_task.await;
        drop(self.writer);
        tracing::info!("stopped");
    }
}
