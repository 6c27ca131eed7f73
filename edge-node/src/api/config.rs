//! `/api/v1/config`: this gateway's replica of the fleet configuration
//! (docs/fleet-config.md). Edits made here while the uplink is down are
//! kept (persisted before the answer), take effect in the detectors at
//! once, and merge with the hub's when the uplink returns. The JSON is the
//! hub's (`tributary_fleet::json`).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use tributary_core::ids::{NodeId, SensorId};
use tributary_fleet::json::{ConfigOut, NodeIn, SensorIn, ThresholdIo};
use tributary_fleet::{Edit, FleetConfig, FleetError, FleetView, ReplicaError};

use super::{ApiError, ApiState};

fn fleet(state: &ApiState) -> Result<&super::FleetHandle, ApiError> {
    state
        .fleet
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("the fleet configuration"))
}

fn bad(reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        details: serde_json::json!({ "reason": reason }),
        ..ApiError::bad_request(message)
    }
}

fn sensor_param(s: &str) -> Result<SensorId, ApiError> {
    s.parse::<u32>()
        .map(SensorId)
        .map_err(|_| bad("invalid_sensor", "the sensor must be a decimal u32"))
}

fn node_param(s: &str) -> Result<NodeId, ApiError> {
    s.parse()
        .map_err(|_| bad("invalid_node", "the node must be 1 to 16 hex digits"))
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
        .map_err(|_| ApiError::unavailable("the fleet configuration"))?
        .map_err(|e| match e {
            ReplicaError::Fleet(f) if f.reason() != "document" => bad(f.reason(), f.to_string()),
            e => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "fleet_store",
                e.to_string(),
            ),
        })?;
    Ok(HttpResponse::Ok().json(ConfigOut::from(&*view)))
}

/// `GET /api/v1/config`.
pub(super) async fn get_config(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let view = fleet(&state)?.view.borrow().clone();
    Ok(HttpResponse::Ok().json(ConfigOut::from(&*view)))
}

/// `PUT /api/v1/config/nodes/{node}`.
pub(super) async fn put_node(
    path: web::Path<String>,
    body: web::Json<NodeIn>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let node = node_param(&path)?;
    edit(&state, body.into_inner().apply(node)).await
}

/// `PUT /api/v1/config/sensors/{sensor}`.
pub(super) async fn put_sensor(
    path: web::Path<String>,
    body: web::Json<SensorIn>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let sensor = sensor_param(&path)?;
    edit(&state, body.into_inner().apply(sensor)).await
}

/// `PUT /api/v1/config/sensors/{sensor}/threshold`.
pub(super) async fn put_threshold(
    path: web::Path<String>,
    body: web::Json<ThresholdIo>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let sensor = sensor_param(&path)?;
    edit(&state, body.into_inner().apply(sensor)).await
}

/// `DELETE /api/v1/config/sensors/{sensor}/threshold`.
pub(super) async fn delete_threshold(
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let sensor = sensor_param(&path)?;
    edit(&state, move |d| d.clear_threshold(sensor).map(|_| ())).await
}
