//! The hub's HTTP API (actix-web): `/api/v1` (nodes, sensors, aggregates,
//! alerts, fleet, the OpenAPI document) plus `/healthz`, `/readyz` and
//! `/metrics`. docs/hub-api.md describes every route.
//!
//! Handlers only parse, ask a store actor and shape the answer: queries go
//! to the [`Reader`] pool (own connections, never waiting for a merge
//! commit), acknowledgements to the single [`Writer`]. Errors are
//! `{"code", "message", "details"}` like the edge gateway's API: 400 with
//! the parameter and a stable reason, 404 for an unknown node or alert, 500
//! when the store failed, 503 when a store actor is gone or the hub is not
//! ready. Every response is counted in
//! `tributary_hub_http_responses_total{route, class}`.
//!
//! The OpenAPI 3 document is generated from the handlers' and DTOs'
//! annotations by utoipa ([`ApiDoc`]); a test checks that it lists every
//! route of [`ROUTES`].

pub mod auth;
mod dto;
mod error;
mod v1;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::ContentType;
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpResponse, HttpServer, web};
use serde_json::json;
use tracing::Instrument;
use tributary_fleet::http::FleetHandle;
use utoipa::OpenApi;

use crate::metrics::Metrics;
use crate::store::actor::{Probe, QueryNodes, Reader, Writer};
use error::{ApiError, ErrorBody};

/// Most buckets or alerts one request returns.
pub const MAX_LIMIT: usize = 10_000;
/// Buckets or alerts a request returns when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 1_000;
/// A node is online when heard from within this window, unless
/// [`ApiState::with_online_window`] says otherwise.
pub const DEFAULT_ONLINE_WINDOW: Duration = Duration::from_secs(60);

/// Every route (as its actix pattern); the OpenAPI document lists each.
pub const ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/nodes",
    "/api/v1/sensors",
    "/api/v1/aggregates",
    "/api/v1/alerts",
    "/api/v1/alerts/{node}/{hlc}/ack",
    "/api/v1/fleet",
    "/api/v1/config",
    "/api/v1/config/nodes/{node}",
    "/api/v1/config/sensors/{sensor}",
    "/api/v1/config/sensors/{sensor}/threshold",
];

/// What the rest of the hub tells the API about its health. The sync shell
/// sets the flags; `/readyz` and `/api/v1/fleet` read them.
#[derive(Debug)]
pub struct Health {
    /// The hub's MQTT client is connected to the broker.
    pub mqtt_connected: AtomicBool,
    /// The last store write succeeded (cleared on a store failure, set
    /// again on the next success).
    pub store_ok: AtomicBool,
    /// When the process started (for `uptime_seconds`).
    pub started: Instant,
}

impl Health {
    /// Not connected yet, store fine, started now.
    pub fn new() -> Health {
        Health {
            mqtt_connected: AtomicBool::new(false),
            store_ok: AtomicBool::new(true),
            started: Instant::now(),
        }
    }
}

impl Default for Health {
    fn default() -> Health {
        Health::new()
    }
}

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct ApiState {
    reader: Addr<Reader>,
    writer: Addr<Writer>,
    metrics: Metrics,
    health: Arc<Health>,
    online_window: Duration,
    tokens: auth::Tokens,
    fleet: Option<FleetHandle>,
}

impl ApiState {
    /// The state of an API answering from `reader`, acknowledging through
    /// `writer`, with the default online window.
    pub fn new(
        reader: Addr<Reader>,
        writer: Addr<Writer>,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> ApiState {
        ApiState {
            reader,
            writer,
            metrics,
            health,
            online_window: DEFAULT_ONLINE_WINDOW,
            tokens: auth::Tokens::default(),
            fleet: None,
        }
    }

    /// Serves and edits the fleet configuration through `fleet`
    /// (`/api/v1/config`; without it those routes answer 503).
    pub fn with_fleet(self, fleet: FleetHandle) -> ApiState {
        ApiState {
            fleet: Some(fleet),
            ..self
        }
    }

    /// Closes `/api/v1` to requests without one of `tokens` ([`auth`]).
    pub fn with_tokens(self, tokens: auth::Tokens) -> ApiState {
        ApiState { tokens, ..self }
    }

    /// A node counts as online when heard from within `window`.
    pub fn with_online_window(self, window: Duration) -> ApiState {
        ApiState {
            online_window: window,
            ..self
        }
    }

    fn online_window_ms(&self) -> u64 {
        u64::try_from(self.online_window.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The hub's wall clock, ms since the epoch (0 before 1970).
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Binds `listen` (port 0 picks a free one) and builds the server; the
/// caller spawns or awaits it and stops it through its handle (graceful:
/// in-flight requests finish first). Returns the bound address. Signals
/// are left to the daemon. Must be called inside a running actix `System`.
pub fn server(listen: SocketAddr, state: ApiState) -> std::io::Result<(Server, SocketAddr)> {
    server_with_tls(listen, state, None)
}

/// [`server`], serving HTTPS with `tls` if given (docs/security.md).
pub fn server_with_tls(
    listen: SocketAddr,
    state: ApiState,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let fleet = state.fleet.clone().map(web::Data::new);
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let app = actix_web::App::new().app_data(data.clone());
        let app = match &fleet {
            Some(f) => app.app_data(f.clone()),
            None => app,
        };
        app.configure(configure)
    })
    // Two workers: handlers only forward to the store actors, whose threads
    // do the work.
    .workers(2)
    .disable_signals()
    .shutdown_timeout(10);
    let server = match tls {
        Some(cfg) => server.listen_rustls_0_23(listener, (*cfg).clone())?,
        None => server.listen(listener)?,
    };
    Ok((server.run(), addr))
}

/// Registers every route, the error handlers and the response counter on
/// an app that already holds `web::Data<ApiState>` (for tests with
/// `actix_web::test`: `App::new().app_data(web::Data::new(state)).configure(configure)`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default().error_handler(|e, _| ApiError::unparsable("query", e).into()),
    )
    .app_data(
        web::PathConfig::default().error_handler(|e, _| ApiError::unparsable("path", e).into()),
    )
    .app_data(
        // Config edits are small JSON documents.
        web::JsonConfig::default()
            .limit(64 * 1024)
            .error_handler(|e, _| ApiError::unparsable("body", e).into()),
    )
    .service(
        web::scope("")
            .wrap(from_fn(count_responses))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
            .service(
                web::scope("/api/v1")
                    .wrap(from_fn(auth::authorize))
                    .route("/openapi.json", web::get().to(openapi))
                    .route("/nodes", web::get().to(v1::get_nodes))
                    .route("/sensors", web::get().to(v1::get_sensors))
                    .route("/aggregates", web::get().to(v1::get_aggregates))
                    .route("/alerts", web::get().to(v1::get_alerts))
                    .route("/alerts/{node}/{hlc}/ack", web::post().to(v1::post_ack))
                    .route("/fleet", web::get().to(v1::get_fleet))
                    .configure(tributary_fleet::http::configure),
            )
            .configure(crate::dashboard::configure)
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::not_found("no such route"))
            })),
    );
}

/// Counts every response by route pattern and status class.
async fn count_responses(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req
        .app_data::<web::Data<ApiState>>()
        .map(|s| s.metrics.clone());
    let route = route_label(req.match_pattern().as_deref());
    // One span per request (STYLE.md §5); handlers' store calls nest in it.
    let span = tracing::debug_span!("http_request", method = %req.method(), route);
    let res = next.call(req).instrument(span).await?;
    if let Some(m) = metrics {
        let class = match res.status().as_u16() {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        m.http_responses
            .get_or_create(&[("route", route), ("class", class)])
            .inc();
    }
    Ok(res)
}

/// The route's pattern from the bounded set, `other` for anything else
/// (a label never takes a client-chosen value).
fn route_label(pattern: Option<&str>) -> &'static str {
    pattern
        .and_then(|p| {
            ROUTES
                .iter()
                .chain(crate::dashboard::ROUTES)
                .find(|r| **r == p)
        })
        .copied()
        .unwrap_or("other")
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is up", body = String, content_type = "text/plain")))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body("ok\n")
}

/// Ready to serve: the store answers and the MQTT client is connected.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "Not ready; `details.reason` says why", body = ErrorBody),
    ))]
async fn readyz(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mqtt = state.health.mqtt_connected.load(Ordering::Relaxed);
    let store_ok = state.health.store_ok.load(Ordering::Relaxed);
    let readable = matches!(state.reader.send(Probe).await, Ok(Ok(())));
    let checks = json!({"mqtt_connected": mqtt, "store_ok": store_ok, "store_readable": readable});
    if !readable {
        return Err(ApiError::not_ready(
            "store_unreadable",
            "the store does not answer queries",
            checks,
        ));
    }
    if !store_ok {
        return Err(ApiError::not_ready(
            "store_failing",
            "the last store write failed",
            checks,
        ));
    }
    if !mqtt {
        return Err(ApiError::not_ready(
            "mqtt_disconnected",
            "the MQTT client is not connected",
            checks,
        ));
    }
    Ok(HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body("ready\n"))
}

/// Prometheus metrics; the per-node gauges are refreshed from the store at
/// each scrape.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "OpenMetrics text", body = String,
        content_type = "application/openmetrics-text")))]
async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let m = &state.metrics;
    // A failing store leaves the last values: the scrape still shows the
    // merge and HTTP counters, which tell what is wrong.
    if let Ok(Ok(nodes)) = state.reader.send(QueryNodes).await {
        let now = wall_ms();
        for r in &nodes {
            let label = [("node", r.node.to_string())];
            let lag = r.version_high.saturating_sub(r.watermark);
            m.node_lag_versions
                .get_or_create(&label)
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
            if let Some(seen) = r.last_seen_ms {
                m.node_last_seen_age_seconds
                    .get_or_create(&label)
                    .set(now.saturating_sub(seen) as f64 / 1_000.0);
            }
        }
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(m.encode())
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3 document of this API", body = Object)))]
async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(openapi_json())
}

/// The OpenAPI document, rendered once.
pub fn openapi_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| json!({"error": e.to_string()}).to_string())
    })
}

/// The OpenAPI 3 document of the hub's API, generated from the handlers'
/// `#[utoipa::path]` annotations and the DTOs' `ToSchema` derives.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Tributary hub API",
        description = "Fleet nodes, sensors, merged aggregates with completeness, alerts. \
                       Errors are {code, message, details}. See docs/hub-api.md."
    ),
    paths(
        healthz,
        readyz,
        metrics,
        openapi,
        v1::get_nodes,
        v1::get_sensors,
        v1::get_aggregates,
        v1::get_alerts,
        v1::post_ack,
        v1::get_fleet,
        tributary_fleet::http::get_config,
        tributary_fleet::http::put_node,
        tributary_fleet::http::put_sensor,
        tributary_fleet::http::put_threshold,
        tributary_fleet::http::delete_threshold
    ),
    tags(
        (name = "fleet", description = "Nodes and their health"),
        (name = "aggregates", description = "Sensors and merged aggregates"),
        (name = "alerts", description = "Alerts and acknowledgements"),
        (name = "config", description = "The fleet configuration document: registry and thresholds"),
        (name = "health", description = "Probes, metrics, this document")
    )
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_and_parses() {
        let doc: serde_json::Value = serde_json::from_str(openapi_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for r in ROUTES {
            assert!(paths.contains_key(*r), "{r} missing from the document");
        }
        assert_eq!(paths.len(), ROUTES.len());
        let params = &doc["paths"]["/api/v1/aggregates"]["get"]["parameters"];
        let names: Vec<&str> = params
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "sensor",
                "resolution",
                "from",
                "to",
                "node",
                "per_node",
                "limit"
            ]
        );
    }

    #[test]
    fn route_labels_are_bounded() {
        assert_eq!(route_label(Some("/api/v1/nodes")), "/api/v1/nodes");
        assert_eq!(route_label(Some("/assets/{name}")), "/assets/{name}");
        assert_eq!(route_label(Some("/evil/{x}")), "other");
        assert_eq!(route_label(None), "other");
    }
}
