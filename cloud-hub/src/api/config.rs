//! `/api/v1/config`: the fleet configuration document (docs/fleet-config.md)
//! — read it, and edit the registry and the per-sensor alert thresholds.
//! Edits are admin requests (PUT/DELETE); each is one Automerge change,
//! persisted before the answer and synced to every gateway heard from.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use tributary_core::ids::SensorId;
use tributary_fleet::json::{ConfigOut, NodeIn, SensorIn, ThresholdIo};
use tributary_fleet::{Edit, FleetConfig, FleetError, FleetView, ReplicaError};

use super::ApiState;
use super::error::{ApiError, ErrorBody};

fn fleet(state: &ApiState) -> Result<&super::FleetHandle, ApiError> {
    state
        .fleet
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("fleet configuration"))
}

fn sensor_param(s: &str) -> Result<SensorId, ApiError> {
    s.parse::<u32>().map(SensorId).map_err(|_| {
        ApiError::bad_param("sensor", "invalid_sensor", "`sensor` must be a decimal u32")
    })
}

/// Runs one edit on the document's actor: a refused edit is 400 with the
/// document's reason, a failed write 500.
async fn edit(
    state: &ApiState,
    f: impl FnOnce(&mut FleetConfig) -> Result<(), FleetError> + Send + 'static,
) -> Result<HttpResponse, ApiError> {
    let view: Arc<FleetView> = fleet(state)?
        .actor
        .send(Edit(Box::new(f)))
        .await
        .map_err(|_| ApiError::unavailable("fleet configuration"))?
        .map_err(|e| match e {
            ReplicaError::Fleet(f) if f.reason() != "document" => {
                ApiError::bad_param("body", f.reason(), f.to_string())
            }
            e => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "fleet_store",
                e.to_string(),
            ),
        })?;
    Ok(HttpResponse::Ok().json(ConfigOut::from(&*view)))
}

/// The fleet configuration: registry, thresholds, acknowledgements.
#[utoipa::path(get, path = "/api/v1/config", tag = "config",
    responses(
        (status = 200, description = "The document", body = ConfigOut),
        (status = 503, description = "The document is not running", body = ErrorBody),
    ))]
pub(super) async fn get_config(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let view = fleet(&state)?.view.borrow().clone();
    Ok(HttpResponse::Ok().json(ConfigOut::from(&*view)))
}

/// Names a node (and says where it is).
#[utoipa::path(put, path = "/api/v1/config/nodes/{node}", tag = "config",
    params(("node" = String, Path, description = "16 hex digits")),
    request_body = NodeIn,
    responses(
        (status = 200, description = "The document after the edit", body = ConfigOut),
        (status = 400, description = "Invalid node id or field", body = ErrorBody),
    ))]
pub(super) async fn put_node(
    path: web::Path<String>,
    body: web::Json<NodeIn>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let node = super::v1::node_param("node", &path)?;
    edit(&state, body.into_inner().apply(node)).await
}

/// Registers a sensor: name, unit, location.
#[utoipa::path(put, path = "/api/v1/config/sensors/{sensor}", tag = "config",
    params(("sensor" = u32, Path, description = "The sensor id")),
    request_body = SensorIn,
    responses(
        (status = 200, description = "The document after the edit", body = ConfigOut),
        (status = 400, description = "Invalid sensor id or field", body = ErrorBody),
    ))]
pub(super) async fn put_sensor(
    path: web::Path<String>,
    body: web::Json<SensorIn>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let sensor = sensor_param(&path)?;
    edit(&state, body.into_inner().apply(sensor)).await
}

/// Sets a sensor's alert threshold; gateways apply it without a restart.
#[utoipa::path(put, path = "/api/v1/config/sensors/{sensor}/threshold", tag = "config",
    params(("sensor" = u32, Path, description = "The sensor id")),
    request_body = ThresholdIo,
    responses(
        (status = 200, description = "The document after the edit", body = ConfigOut),
        (status = 400, description = "Invalid sensor id, or open/close out of range", body = ErrorBody),
    ))]
pub(super) async fn put_threshold(
    path: web::Path<String>,
    body: web::Json<ThresholdIo>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let sensor = sensor_param(&path)?;
    edit(&state, body.into_inner().apply(sensor)).await
}

/// Removes a sensor's threshold (back to the detector's default).
#[utoipa::path(delete, path = "/api/v1/config/sensors/{sensor}/threshold", tag = "config",
    params(("sensor" = u32, Path, description = "The sensor id")),
    responses(
        (status = 200, description = "The document after the edit", body = ConfigOut),
        (status = 400, description = "Invalid sensor id", body = ErrorBody),
    ))]
pub(super) async fn delete_threshold(
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let sensor = sensor_param(&path)?;
    edit(&state, move |d| d.clear_threshold(sensor).map(|_| ())).await
}
