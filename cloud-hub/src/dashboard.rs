//! The dashboard: one page (plain HTML, CSS and JavaScript, no framework,
//! no build step) that reads `/api/v1` from the browser and shows the fleet
//! (nodes, online state, lag, completeness), per-sensor charts of
//! aggregates with their min/max band, and the alerts with an acknowledge
//! button. docs/hub-api.md ("Dashboard") describes it.
//!
//! The three files live in `cloud-hub/assets/dashboard/` and are compiled
//! into the binary with `include_str!`: the hub serves them with no file
//! system access, and the page loads nothing from any other host (no CDN,
//! no web font), which its Content-Security-Policy enforces in the browser.

use actix_web::http::header::{self, ContentType};
use actix_web::{HttpResponse, web};
use serde_json::json;

/// The dashboard's routes (as actix patterns), beside the API's
/// [`crate::api::ROUTES`]: the response counter labels them by these.
pub const ROUTES: &[&str] = &["/", "/assets/{name}"];

/// The page itself.
const INDEX_HTML: &str = include_str!("../assets/dashboard/index.html");

/// Every file served under `/assets/`: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/dashboard/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/dashboard/style.css"),
    ),
];

/// Only this hub's own scripts, styles and API: a page that tried to load
/// anything from elsewhere would fail visibly in the test's browser rather
/// than work only while a network happens to be there. `data:` images are
/// the empty favicon (which spares the browser a 404 per load).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// Registers `GET /` and `GET /assets/{name}` (inside the API's counted
/// scope, see [`crate::api::configure`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/assets/{name}", web::get().to(asset));
}

/// The content type and body of the asset called `name`, if there is one.
pub fn asset_body(name: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ct, body)| (*ct, *body))
}

/// The common headers: `no-cache` (revalidate each load) so a browser never
/// runs an old app.js against a newer hub after an upgrade.
fn page(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .body(body)
}

async fn index() -> HttpResponse {
    page("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(name: web::Path<String>) -> HttpResponse {
    match asset_body(&name) {
        Some((content_type, body)) => page(content_type, body),
        // The API's error shape, so a client sees one convention everywhere.
        None => HttpResponse::NotFound()
            .content_type(ContentType::json())
            .body(
                json!({
                    "code": "not_found",
                    "message": "no such asset",
                    "details": {"asset": name.as_str()},
                })
                .to_string(),
            ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_every_asset_and_only_local_urls() {
        for (name, _, _) in ASSETS {
            assert!(INDEX_HTML.contains(&format!("/assets/{name}")), "{name}");
        }
        for (name, body) in [("index.html", INDEX_HTML)]
            .into_iter()
            .chain(ASSETS.iter().map(|(n, _, b)| (*n, *b)))
        {
            // The SVG namespace is a name, not a URL the browser loads.
            let body = body.replace("http://www.w3.org/2000/svg", "");
            // No CDN, no web font: nothing may point at another host.
            for scheme in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!body.contains(scheme), "{name} contains {scheme}");
            }
        }
    }

    #[test]
    fn unknown_assets_are_not_served() {
        assert!(asset_body("app.js").is_some());
        assert!(asset_body("index.html").is_none());
        assert!(asset_body("../src/main.rs").is_none());
    }
}
