//! `/api/v1/config` for actix-web, the same on the hub and on every gateway
//! (docs/hub-api.md, docs/edge-api.md): read the fleet configuration, edit
//! the registry and the per-sensor alert thresholds. Each daemon mounts
//! [`configure`] inside its `/api/v1` scope (so its own middleware — the
//! hub's tokens, both daemons' response counters — applies) and registers a
//! [`FleetHandle`] as app data; without one the routes answer 503.
//!
//! Errors have both daemons' shape, `{"code", "message", "details"}`: a
//! refused edit is 400 `bad_request` with the document's reason in
//! `details.reason`; a failed write is 500 `fleet_store`.

use std::sync::Arc;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;
use tokio::sync::watch;
use tributary_core::ids::{NodeId, SensorId};

use crate::json::{ConfigOut, NodeIn, SensorIn, ThresholdIo};
use crate::{Edit, FleetActor, FleetConfig, FleetError, FleetView, ReplicaError};

/// The document's actor and its latest view: what the handlers need.
#[derive(Clone, Debug)]
pub struct FleetHandle {
    /// The actor (edits go there).
    pub actor: Addr<FleetActor>,
    /// Its latest contents (reads come from here, without waiting).
    pub view: watch::Receiver<Arc<FleetView>>,
}

/// The routes, as registered by [`configure`] (actix patterns, relative to
/// `/api/v1`).
pub const ROUTES: &[&str] = &[
    "/config",
    "/config/nodes/{node}",
    "/config/sensors/{sensor}",
    "/config/sensors/{sensor}/threshold",
];

/// Registers the routes of [`ROUTES`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/config", web::get().to(get_config))
        .route("/config/nodes/{node}", web::put().to(put_node))
        .route("/config/sensors/{sensor}", web::put().to(put_sensor))
        .route(
            "/config/sensors/{sensor}/threshold",
            web::put().to(put_threshold),
        )
        .route(
            "/config/sensors/{sensor}/threshold",
            web::delete().to(delete_threshold),
        );
}

/// An error answer; see the [module docs](self).
#[derive(Debug)]
pub struct ConfigError {
    status: StatusCode,
    code: &'static str,
    reason: &'static str,
    message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl actix_web::ResponseError for ConfigError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(json!({
            "code": self.code,
            "message": self.message,
            "details": {"reason": self.reason},
        }))
    }
}

fn bad(reason: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        status: StatusCode::BAD_REQUEST,
        code: "bad_request",
        reason,
        message: message.into(),
    }
}

fn unavailable() -> ConfigError {
    ConfigError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "unavailable",
        reason: "fleet_unavailable",
        message: "the fleet configuration is not available".into(),
    }
}

type Handle = Option<web::Data<FleetHandle>>;

fn handle(h: &Handle) -> Result<&FleetHandle, ConfigError> {
    h.as_ref().map(|d| d.get_ref()).ok_or_else(unavailable)
}

fn sensor_param(s: &str) -> Result<SensorId, ConfigError> {
    s.parse::<u32>()
        .map(SensorId)
        .map_err(|_| bad("invalid_sensor", "the sensor must be a decimal u32"))
}

fn node_param(s: &str) -> Result<NodeId, ConfigError> {
    s.parse()
        .map_err(|_| bad("invalid_node", "the node must be 1 to 16 hex digits"))
}

/// Runs one edit on the document's actor and answers the document after it.
async fn edit(
    h: &Handle,
    f: impl FnOnce(&mut FleetConfig) -> Result<(), FleetError> + Send + 'static,
) -> Result<HttpResponse, ConfigError> {
    let view = handle(h)?
        .actor
        .send(Edit(Box::new(f)))
        .await
        .map_err(|_| unavailable())?
        .map_err(|e| match e {
            // `document` is Automerge refusing a valid edit: a bug, not
            // the caller's fault.
            ReplicaError::Fleet(f) if f.reason() != "document" => bad(f.reason(), f.to_string()),
            e => ConfigError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "fleet_store",
                reason: e.reason(),
                message: e.to_string(),
            },
        })?;
    Ok(HttpResponse::Ok().json(ConfigOut::from(&*view)))
}

/// The fleet configuration: registry, thresholds, acknowledgements.
#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/api/v1/config", tag = "config",
    responses(
        (status = 200, description = "The document", body = ConfigOut),
        (status = 503, description = "The document is not running"),
    )))]
pub async fn get_config(h: Handle) -> Result<HttpResponse, ConfigError> {
    let view = handle(&h)?.view.borrow().clone();
    Ok(HttpResponse::Ok().json(ConfigOut::from(&*view)))
}

/// Names a node and says where it is.
#[cfg_attr(feature = "openapi", utoipa::path(put, path = "/api/v1/config/nodes/{node}", tag = "config",
    params(("node" = String, Path, description = "16 hex digits")),
    request_body = NodeIn,
    responses(
        (status = 200, description = "The document after the edit", body = ConfigOut),
        (status = 400, description = "Invalid node id or field (details.reason)"),
    )))]
pub async fn put_node(
    path: web::Path<String>,
    body: web::Json<NodeIn>,
    h: Handle,
) -> Result<HttpResponse, ConfigError> {
    let node = node_param(&path)?;
    edit(&h, body.into_inner().apply(node)).await
}

/// Registers a sensor: name, unit, location.
#[cfg_attr(feature = "openapi", utoipa::path(put, path = "/api/v1/config/sensors/{sensor}", tag = "config",
    params(("sensor" = u32, Path, description = "The sensor id")),
    request_body = SensorIn,
    responses(
        (status = 200, description = "The document after the edit", body = ConfigOut),
        (status = 400, description = "Invalid sensor id or field (details.reason)"),
    )))]
pub async fn put_sensor(
    path: web::Path<String>,
    body: web::Json<SensorIn>,
    h: Handle,
) -> Result<HttpResponse, ConfigError> {
    let sensor = sensor_param(&path)?;
    edit(&h, body.into_inner().apply(sensor)).await
}

/// Sets a sensor's alert threshold; gateways apply it without a restart.
#[cfg_attr(feature = "openapi", utoipa::path(put, path = "/api/v1/config/sensors/{sensor}/threshold", tag = "config",
    params(("sensor" = u32, Path, description = "The sensor id")),
    request_body = ThresholdIo,
    responses(
        (status = 200, description = "The document after the edit", body = ConfigOut),
        (status = 400, description = "Invalid sensor id, or open/close out of range (details.reason)"),
    )))]
pub async fn put_threshold(
    path: web::Path<String>,
    body: web::Json<ThresholdIo>,
    h: Handle,
) -> Result<HttpResponse, ConfigError> {
    let sensor = sensor_param(&path)?;
    edit(&h, body.into_inner().apply(sensor)).await
}

/// Removes a sensor's threshold (back to the detector's default).
#[cfg_attr(feature = "openapi", utoipa::path(delete, path = "/api/v1/config/sensors/{sensor}/threshold", tag = "config",
    params(("sensor" = u32, Path, description = "The sensor id")),
    responses(
        (status = 200, description = "The document after the edit", body = ConfigOut),
        (status = 400, description = "Invalid sensor id (details.reason)"),
    )))]
pub async fn delete_threshold(
    path: web::Path<String>,
    h: Handle,
) -> Result<HttpResponse, ConfigError> {
    let sensor = sensor_param(&path)?;
    edit(&h, move |d| d.clear_threshold(sensor).map(|_| ())).await
}
