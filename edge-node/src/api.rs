//! The local HTTP API (actix-web), under `/api/v1`, plus `/healthz`,
//! `/readyz` and `/metrics`. docs/edge-api.md describes every route.
//!
//! Errors are `{"code", "message", "details"}` with the matching status:
//! 400 for input that will never be accepted (with the offending reading's
//! index and a reason), 413 for a body over the limit, 415 for a content
//! type other than JSON or CBOR, 503 + `Retry-After` when ingest is
//! saturated or stopping (the client keeps its data and retries), 500 when
//! the store failed. A 200 on `POST /api/v1/readings` means the readings
//! are durable.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary_core::ids::{Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;

use crate::ingest::{Accepted, Ingest, IngestError, Submit, wall_clock};
use crate::metrics::Metrics;
use crate::reading::{BodyError, MAX_EVENT_MS, SourceKind, parse_body};
use crate::store::actor::{GetStatus, QueryAggregates, QueryAlerts, StoreActor};
use crate::store::{AggregateQuery, AggregateRow, AlertQuery, StoreError, StoredAlert};

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// Where readings go.
    pub ingest: Addr<Ingest>,
    /// Where queries go.
    pub store: Addr<StoreActor>,
    /// The registry behind `/metrics`.
    pub metrics: Metrics,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// `Retry-After` for 503 responses.
    pub retry_after: Duration,
    /// Set when shutdown began: `/readyz` turns 503 so a load balancer or
    /// supervisor stops sending.
    pub draining: Arc<AtomicBool>,
    /// Process start, for `uptime_seconds`.
    pub started: Instant,
    /// The uplink to the hub, for the status.
    pub uplink: Arc<crate::sync::UplinkStatus>,
    /// The fleet configuration document (`/api/v1/config`; without it
    /// those routes answer 503).
    pub fleet: Option<tributary_fleet::http::FleetHandle>,
}

/// Most rows one query returns.
pub const MAX_LIMIT: usize = 10_000;
/// Rows a query returns when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 1_000;

/// An error response: `{"code", "message", "details"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: serde_json::Value,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: serde_json::Value::Null,
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn store(e: &StoreError) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            e.to_string(),
        )
    }

    fn unavailable(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what} is not available"),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if let Some(d) = self.retry_after {
            r.insert_header((header::RETRY_AFTER, d.as_secs().max(1).to_string()));
        }
        r.json(json!({"code": self.code, "message": self.message, "details": self.details}))
    }
}

/// Starts the HTTP server on an already-bound listener (tests bind port 0).
/// The caller stops it through the returned handle (graceful: in-flight
/// requests, which may be waiting for a commit, finish first).
pub fn serve(listener: TcpListener, state: ApiState) -> std::io::Result<Server> {
    let max_body = state.max_body_bytes;
    let fleet = state.fleet.clone().map(web::Data::new);
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let app = App::new().app_data(data.clone());
        let app = match &fleet {
            Some(f) => app.app_data(f.clone()),
            None => app,
        };
        app.app_data(web::PayloadConfig::new(max_body))
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                ApiError::bad_request(format!("invalid query parameters: {e}")).into()
            }))
            .app_data(
                web::JsonConfig::default()
                    .limit(64 * 1024)
                    .error_handler(|e, _| {
                        ApiError::bad_request(format!("invalid JSON body: {e}")).into()
                    }),
            )
            .wrap(from_fn(count_responses))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
            .service(
                web::scope("/api/v1")
                    .route("/readings", web::post().to(post_readings))
                    .route("/aggregates", web::get().to(get_aggregates))
                    .route("/alerts", web::get().to(get_alerts))
                    .route("/status", web::get().to(get_status))
                    .configure(tributary_fleet::http::configure),
            )
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such route",
                ))
            }))
    })
    // Two workers: the handlers only forward to actors, and the Pi's
    // cores are better spent on SQLite.
    .workers(2)
    // Signals belong to the daemon, which drains in order.
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
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
    let res = next.call(req).await?;
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

fn route_label(pattern: Option<&str>) -> &'static str {
    match pattern {
        Some("/healthz") => "/healthz",
        Some("/readyz") => "/readyz",
        Some("/metrics") => "/metrics",
        Some("/api/v1/readings") => "/api/v1/readings",
        Some("/api/v1/aggregates") => "/api/v1/aggregates",
        Some("/api/v1/alerts") => "/api/v1/alerts",
        Some("/api/v1/status") => "/api/v1/status",
        Some("/api/v1/config") => "/api/v1/config",
        Some("/api/v1/config/nodes/{node}") => "/api/v1/config/nodes/{node}",
        Some("/api/v1/config/sensors/{sensor}") => "/api/v1/config/sensors/{sensor}",
        Some("/api/v1/config/sensors/{sensor}/threshold") => {
            "/api/v1/config/sensors/{sensor}/threshold"
        }
        _ => "other",
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body("ok\n")
}

async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    if state.draining.load(Ordering::Relaxed) {
        return HttpResponse::ServiceUnavailable().body("draining\n");
    }
    match state.store.send(GetStatus).await {
        Ok(Ok(_)) => HttpResponse::Ok()
            .content_type(ContentType::plaintext())
            .body("ready\n"),
        _ => HttpResponse::ServiceUnavailable().body("store unavailable\n"),
    }
}

async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}

#[derive(Serialize)]
struct ReadingsAccepted {
    accepted: u64,
    duplicate: bool,
}

async fn post_readings(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let reject = |e: BodyError| {
        state
            .metrics
            .readings_rejected
            .get_or_create(&[("source", "http"), ("reason", e.reason)])
            .inc();
        let status = if e.reason == "unsupported_media_type" {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, e.reason, e.detail)
    };
    let submission = parse_body(Some(content_type), &body, wall_clock()).map_err(reject)?;
    let verdict = state
        .ingest
        .send(Submit {
            source: SourceKind::Http,
            submission,
        })
        .await
        .map_err(|_| ApiError::unavailable("ingest"))?;
    match verdict {
        Ok(Accepted {
            readings,
            duplicate,
        }) => Ok(HttpResponse::Ok().json(ReadingsAccepted {
            accepted: readings,
            duplicate,
        })),
        Err(IngestError::Rejected(r)) => Err(ApiError {
            details: json!({"index": r.index, "reason": r.reason.reason()}),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_reading", r.to_string())
        }),
        Err(e @ (IngestError::Busy | IngestError::ShuttingDown)) => Err(ApiError {
            retry_after: Some(state.retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.reason(), e.to_string())
        }),
        Err(e @ IngestError::Store(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            e.to_string(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AggregatesParams {
    sensor: u32,
    resolution: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
    limit: Option<usize>,
}

/// One bucket of one sensor, as the API shows it.
#[derive(Serialize)]
struct BucketOut {
    bucket_start: u64,
    count: u64,
    mean: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    stddev: Option<f64>,
    sum: f64,
    first_ts: Option<u64>,
    last_ts: Option<u64>,
    version: u64,
}

fn bucket_out(row: &AggregateRow) -> BucketOut {
    let s: &Summary = &row.summary;
    let some = |x: f64| (!s.is_empty()).then_some(x);
    BucketOut {
        bucket_start: row.bucket_start.as_millis(),
        count: s.count,
        mean: s.mean(),
        min: some(s.min),
        max: some(s.max),
        stddev: s.stddev(),
        sum: s.sum,
        first_ts: (!s.is_empty()).then_some(s.first_ts.as_millis()),
        last_ts: (!s.is_empty()).then_some(s.last_ts.as_millis()),
        version: row.version,
    }
}

fn limit(l: Option<usize>) -> Result<usize, ApiError> {
    match l.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(ApiError::bad_request("limit must be at least 1")),
        n if n > MAX_LIMIT => Err(ApiError::bad_request(format!(
            "limit must be at most {MAX_LIMIT}"
        ))),
        n => Ok(n),
    }
}

async fn get_aggregates(
    q: web::Query<AggregatesParams>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let resolution: Resolution = match q.resolution.as_deref().unwrap_or("1m").parse() {
        Ok(r) => r,
        Err(_) => {
            return Err(ApiError::bad_request(
                "resolution must be one of 1s, 1m, 1h, 1d",
            ));
        }
    };
    let from = q.from.unwrap_or(0);
    let to = q.to.unwrap_or(MAX_EVENT_MS);
    if from >= to {
        return Err(ApiError::bad_request("`from` must be before `to`"));
    }
    let limit = limit(q.limit)?;
    // One more than asked tells whether there is a next page.
    let query = AggregateQuery {
        sensor: SensorId(q.sensor),
        resolution,
        from: Timestamp::from_millis(from),
        to: Timestamp::from_millis(to),
        limit: limit + 1,
    };
    let rows = state
        .store
        .send(QueryAggregates(query))
        .await
        .map_err(|_| ApiError::unavailable("store"))?
        .map_err(|e| ApiError::store(&e))?;
    let next = rows.get(limit).map(|r| r.bucket_start.as_millis());
    let items: Vec<BucketOut> = rows.iter().take(limit).map(bucket_out).collect();
    Ok(HttpResponse::Ok().json(json!({
        "sensor": q.sensor,
        "resolution": resolution.as_str(),
        "items": items,
        "next_from": next,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsParams {
    sensor: Option<u32>,
    open: Option<bool>,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct AlertOut {
    id: i64,
    hlc: u64,
    sensor: u32,
    at: u64,
    value: f64,
    score: f64,
    detector: String,
    resolved_at: Option<u64>,
    peak: Option<f64>,
    window: WindowOut,
}

#[derive(Serialize)]
struct WindowOut {
    count: u64,
    mean: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

fn alert_out(a: &StoredAlert) -> AlertOut {
    let w = &a.window;
    AlertOut {
        id: a.id,
        hlc: a.hlc.as_u64(),
        sensor: a.sensor.0,
        at: a.at.as_millis(),
        value: a.value,
        score: a.score,
        detector: format!("{:?}", a.detector).to_lowercase(),
        resolved_at: a.resolved_at.map(Timestamp::as_millis),
        peak: a.peak,
        window: WindowOut {
            count: w.count,
            mean: w.mean(),
            min: (!w.is_empty()).then_some(w.min),
            max: (!w.is_empty()).then_some(w.max),
        },
    }
}

async fn get_alerts(
    q: web::Query<AlertsParams>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let query = AlertQuery {
        sensor: q.sensor.map(SensorId),
        open_only: q.open.unwrap_or(false),
        limit: limit(q.limit)?,
    };
    let alerts = state
        .store
        .send(QueryAlerts(query))
        .await
        .map_err(|_| ApiError::unavailable("store"))?
        .map_err(|e| ApiError::store(&e))?;
    let items: Vec<AlertOut> = alerts.iter().map(alert_out).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

async fn get_status(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let s = state
        .store
        .send(GetStatus)
        .await
        .map_err(|_| ApiError::unavailable("store"))?
        .map_err(|e| ApiError::store(&e))?;
    Ok(HttpResponse::Ok().json(json!({
        "node_id": s.node_id.to_string(),
        "version_high": s.version_high,
        "hub_watermark": s.hub_watermark,
        "unsynced_entries": s.unsynced_entries,
        "db_bytes": s.db_bytes,
        "disk_budget_bytes": s.budget_bytes,
        "raw_readings": s.raw_readings,
        "sensors": s.sensors,
        "open_alerts": s.open_alerts,
        "pending_readings": state.metrics.ingest_pending.get(),
        "uplink": state.uplink.snapshot(),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "draining": state.draining.load(Ordering::Relaxed),
    })))
}
