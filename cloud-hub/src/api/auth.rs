//! Bearer tokens for `/api/v1` (issue #5): who may read, who may act.
//!
//! Two roles. A **reader** token may call every `GET`; an **admin** token
//! may also acknowledge alerts (every other method). With no token
//! configured at all the API is open (the zero set-up default, for a hub
//! on loopback); configuring any token closes it. Answers:
//!
//! - no `Authorization: Bearer …` header, or a token that is not
//!   configured: **401** `unauthorized` with `WWW-Authenticate: Bearer`
//!   (who are you?);
//! - a reader token on an admin route: **403** `forbidden` (you may not).
//!
//! Every refusal is counted in `tributary_hub_http_auth_refused_total
//! {reason="missing|invalid|forbidden"}` and logged without the token.
//! `/api/v1/openapi.json` stays public (it describes the API, it holds no
//! data), and so do `/healthz`, `/readyz` and `/metrics`, which
//! orchestrators and scrapers call without credentials; bind the HTTP
//! listener to a private address if the metrics must not be public.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};

use super::ApiState;
use super::error::ApiError;

/// A token's rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Every `GET`.
    Reader,
    /// Everything, including acknowledging alerts.
    Admin,
}

/// The configured tokens. Empty: the API is open.
#[derive(Clone, Default)]
pub struct Tokens(Vec<(Vec<u8>, Role)>);

impl std::fmt::Debug for Tokens {
    // Never print a secret, not even in a debug dump of the config.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

impl Tokens {
    /// Reader and admin tokens.
    pub fn new(readers: &[String], admins: &[String]) -> Tokens {
        let tokens = readers
            .iter()
            .map(|t| (t.as_bytes().to_vec(), Role::Reader))
            .chain(admins.iter().map(|t| (t.as_bytes().to_vec(), Role::Admin)))
            .collect();
        Tokens(tokens)
    }

    /// Whether any token is configured (the API is closed).
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// The role of `presented`, if it is a configured token. Compares
    /// against every token in time independent of where they differ, so
    /// response times do not leak a token byte by byte.
    pub fn role(&self, presented: &[u8]) -> Option<Role> {
        let mut found = None;
        for (t, role) in &self.0 {
            if constant_time_eq(t, presented) {
                found = found.max(Some(*role));
            }
        }
        found
    }
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The role a request needs: admin for anything that changes state.
fn needed(method: &Method) -> Role {
    if method == Method::GET || method == Method::HEAD {
        Role::Reader
    } else {
        Role::Admin
    }
}

/// The middleware on the `/api/v1` scope; see the [module docs](self).
pub(super) async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<ApiState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    if !state.tokens.enabled() || req.path() == "/api/v1/openapi.json" {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    let refusal = match presented.map(|t| state.tokens.role(t)) {
        None => Some(("missing", unauthorized("a bearer token is required"))),
        Some(None) => Some(("invalid", unauthorized("the bearer token is not valid"))),
        Some(Some(role)) if role < needed(req.method()) => Some((
            "forbidden",
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token may only read; changing anything needs an admin token",
            )
            .error_response(),
        )),
        Some(Some(_)) => None,
    };
    let Some((reason, response)) = refusal else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    state
        .metrics
        .http_auth_refused
        .get_or_create(&[("reason", reason)])
        .inc();
    tracing::warn!(path = req.path(), method = %req.method(), reason, "API request refused");
    Ok(req.into_response(response).map_into_right_body())
}

fn unauthorized(message: &str) -> HttpResponse {
    let mut res = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).error_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"tributary\""),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_token() {
        let t = Tokens::new(&["r".repeat(20)], &["a".repeat(20)]);
        assert!(t.enabled());
        assert_eq!(t.role(&b"r".repeat(20)), Some(Role::Reader));
        assert_eq!(t.role(&b"a".repeat(20)), Some(Role::Admin));
        assert_eq!(t.role(&b"a".repeat(19)), None);
        assert_eq!(t.role(b""), None);
        assert!(!Tokens::default().enabled());
        assert_eq!(format!("{t:?}"), "Tokens(2 configured)");
        assert_eq!(needed(&Method::GET), Role::Reader);
        assert_eq!(needed(&Method::POST), Role::Admin);
    }
}
