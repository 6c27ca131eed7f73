//! The API's error responses: `{"code", "message", "details"}` with the
//! matching status, as the edge gateway's API answers (docs/edge-api.md).

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::store::MergeError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// A stable code: `bad_request`, `not_found`, `not_ready`,
    /// `store_error`, `unavailable`.
    code: String,
    /// A human-readable explanation.
    message: String,
    /// Machine-readable context, e.g. `{"parameter": "limit", "reason":
    /// "limit_out_of_range"}`; `null` when there is none.
    #[schema(value_type = Object)]
    details: serde_json::Value,
}

/// An error response.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: serde_json::Value,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    /// A 400 about one parameter, with a stable reason.
    pub(crate) fn bad_param(
        parameter: &str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            details: json!({"parameter": parameter, "reason": reason}),
            ..ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
        }
    }

    /// A 400 for a query string or path that does not parse at all.
    pub(crate) fn unparsable(what: &str, e: impl std::fmt::Display) -> Self {
        ApiError {
            details: json!({"reason": format!("invalid_{what}")}),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("invalid {what}: {e}"),
            )
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The store failed a query (500; the reason is the store's metric
    /// label).
    pub(crate) fn store(e: &MergeError) -> Self {
        ApiError {
            details: json!({"reason": e.reason()}),
            ..ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                e.to_string(),
            )
        }
    }

    /// A store actor is gone (shutting down): 503.
    pub(crate) fn unavailable(what: &str) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what} is not available"),
        )
    }

    /// `/readyz` refuses: 503 with the failed check as the reason.
    pub(crate) fn not_ready(
        reason: &'static str,
        message: &str,
        checks: serde_json::Value,
    ) -> Self {
        ApiError {
            details: json!({"reason": reason, "checks": checks}),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
        }
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
        HttpResponse::build(self.status).json(ErrorBody {
            code: self.code.to_string(),
            message: self.message.clone(),
            details: self.details.clone(),
        })
    }
}
