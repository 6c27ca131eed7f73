//! A hub's store, actors and HTTP API served in-process on a free port,
//! for the API and dashboard tests (one copy of the set-up).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tributary_hub::api::auth::Tokens;
use tributary_hub::api::{ApiState, Health, server_with_tls};
use tributary_hub::metrics::Metrics;
use tributary_hub::store::actor::{start_readers, start_writer};
use tributary_hub::store::{SqliteOptions, SqliteStore};
use tributary_testkit::http::get;
use tributary_testkit::poll_for;

/// The wall clock in ms.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A running API over a seeded store; stopped on drop.
pub struct ServedHub {
    pub addr: SocketAddr,
    pub health: Arc<Health>,
    /// The store's database file.
    pub db: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for ServedHub {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens a store in a temp dir, lets `seed` fill it (given the wall clock
/// at seeding), then serves it: the writer and two readers, the API with a
/// five-minute online window (nodes seen at seeding stay online however
/// slow the machine), MQTT marked connected if `mqtt_connected`.
pub fn serve<T>(
    mqtt_connected: bool,
    seed: impl FnOnce(&mut SqliteStore, u64) -> T,
) -> (ServedHub, T, u64) {
    serve_with(mqtt_connected, Tokens::default(), seed)
}

/// [`serve`] with `/api/v1` closed to all but `tokens`.
pub fn serve_with<T>(
    mqtt_connected: bool,
    tokens: Tokens,
    seed: impl FnOnce(&mut SqliteStore, u64) -> T,
) -> (ServedHub, T, u64) {
    serve_full(mqtt_connected, tokens, None, seed)
}

/// [`serve`] over HTTPS with `tls`.
pub fn serve_tls<T>(
    tls: Arc<rustls::ServerConfig>,
    seed: impl FnOnce(&mut SqliteStore, u64) -> T,
) -> (ServedHub, T, u64) {
    serve_full(false, Tokens::default(), Some(tls), seed)
}

fn serve_full<T>(
    mqtt_connected: bool,
    tokens: Tokens,
    tls: Option<Arc<rustls::ServerConfig>>,
    seed: impl FnOnce(&mut SqliteStore, u64) -> T,
) -> (ServedHub, T, u64) {
    let https = tls.is_some();
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        path: dir.path().join("hub.db"),
        synchronous_full: false,
    };
    let now = wall_ms();
    let mut store = SqliteStore::open_with(&opts).unwrap();
    let seeded = seed(&mut store, now);
    let health = Arc::new(Health::new());
    health
        .mqtt_connected
        .store(mqtt_connected, Ordering::Relaxed);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let h = health.clone();
    let fleet_path = dir.path().join("fleet.sqlite3");
    // The hub gets its own thread and actix system: the test's blocking
    // HTTP client (and browser) must not block the thread its actors run on.
    let thread = std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            let metrics = Metrics::new();
            let writer = start_writer(store, metrics.clone());
            let reader = start_readers(&opts, 2).unwrap();
            // The fleet document, with no MQTT peer: its messages go nowhere.
            let (fleet, _) = tributary_fleet::FleetActor::open_and_start(
                &fleet_path,
                tributary_fleet::HUB,
                metrics.fleet.hooks(),
                16,
            )
            .unwrap();
            let state = ApiState::new(reader, writer, metrics, h)
                .with_online_window(Duration::from_secs(300))
                .with_tokens(tokens)
                .with_fleet(fleet);
            let (srv, addr) = server_with_tls("127.0.0.1:0".parse().unwrap(), state, tls).unwrap();
            let handle = srv.handle();
            let running = actix::spawn(srv);
            addr_tx.send(addr).unwrap();
            let _ = stopped.await;
            handle.stop(true).await;
            let _ = running.await;
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    // Over HTTPS the test checks readiness itself (the listener is bound
    // before the address is sent).
    let up = https
        || poll_for(Duration::from_secs(20), || {
            get(addr, "/healthz").ok().filter(|r| r.status == 200)
        })
        .is_some();
    assert!(up, "hub not up");
    let db = dir.path().join("hub.db");
    (
        ServedHub {
            addr,
            health,
            db,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        },
        seeded,
        now,
    )
}

/// `GET path`, asserting 200, as JSON.
pub fn ok_json(addr: SocketAddr, path: &str) -> Value {
    let r = get(addr, path).unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}
