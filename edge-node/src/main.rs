//! # tributary-edge
//!
//! The gateway daemon that runs on a Raspberry Pi next to the sensors
//! (DESIGN.md §4). It will own: the sources (serial frames from firmware, a
//! local MQTT subscription, `POST /api/v1/readings`, a simulator, CSV
//! replay); the actors that aggregate readings into the core's aggregate
//! CRDT, run the detectors and store everything in SQLite (WAL, group
//! commit, migrations, a disk budget); the outbox and the MQTT sync agent;
//! and the local HTTP API. It must not hold domain logic of its own: CRDT,
//! codec and detector decisions belong to `tributary-core`.
//!
//! Status: a shell. The daemon is issue #4; until it lands this binary only
//! says so and exits with status 2, so no script mistakes it for a gateway.

fn main() -> std::process::ExitCode {
    eprintln!(
        "tributary-edge {}: the gateway daemon is not built yet (issue #4); \
         run `cargo run -p tributary-core --example converge` for the core demo",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(2)
}
