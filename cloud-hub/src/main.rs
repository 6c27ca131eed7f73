//! # tributary-hub
//!
//! The cloud hub (DESIGN.md §5). It will own: the embedded MQTT broker (or a
//! client of an external one), the idempotent merge of node deltas into
//! SQLite or PostgreSQL, per-node watermarks, the `/api/v1` HTTP API with
//! its OpenAPI document, the dashboard, credentials, and the fleet
//! configuration document. The merge itself is the core's CRDT join; the hub
//! only persists and serves it.
//!
//! Status: the library has the merge store and the embedded broker
//! (`tributary_hub::{store, broker}`), but no service loop feeds deltas
//! into the store yet (issue #5). Until that lands this binary only says so
//! and exits with status 2, so no script mistakes it for a hub.

fn main() -> std::process::ExitCode {
    eprintln!(
        "tributary-hub {}: the hub service is not built yet (issue #5); \
         run `cargo run -p tributary-core --example converge` for the core demo",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(2)
}
