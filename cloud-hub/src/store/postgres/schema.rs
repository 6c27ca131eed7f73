//! The PostgreSQL schema and its migrations (see the parent module).

use postgres::Client;

use crate::store::MergeError;

/// Version 1: everything of the SQLite schema version 2.
const V1: &str = "
CREATE TABLE aggregate (
    node        BIGINT NOT NULL,
    resolution  BIGINT NOT NULL,
    bucket      BIGINT NOT NULL,
    sensor      BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    count       BIGINT NOT NULL,
    sum_bits    BIGINT NOT NULL,
    min_bits    BIGINT NOT NULL,
    max_bits    BIGINT NOT NULL,
    sum_sq_bits BIGINT NOT NULL,
    first_ts    BIGINT NOT NULL,
    last_ts     BIGINT NOT NULL,
    PRIMARY KEY (node, resolution, bucket, sensor)
);
CREATE INDEX aggregate_by_sensor ON aggregate (sensor, resolution, bucket)
    WHERE resolution >= 1;

CREATE TABLE node (
    id           BIGINT PRIMARY KEY,
    version_high BIGINT NOT NULL,
    watermark    BIGINT NOT NULL,
    last_seen_ms BIGINT
);

CREATE TABLE alert (
    node          BIGINT NOT NULL,
    hlc           BIGINT NOT NULL,
    sensor        BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    value_bits    BIGINT NOT NULL,
    score_bits    BIGINT NOT NULL,
    detector      BIGINT NOT NULL,
    w_count       BIGINT NOT NULL,
    w_sum_bits    BIGINT NOT NULL,
    w_min_bits    BIGINT NOT NULL,
    w_max_bits    BIGINT NOT NULL,
    w_sum_sq_bits BIGINT NOT NULL,
    w_first_ts    BIGINT NOT NULL,
    w_last_ts     BIGINT NOT NULL,
    received_ms   BIGINT NOT NULL,
    acked_ms      BIGINT,
    PRIMARY KEY (node, hlc)
);
CREATE INDEX alert_by_time ON alert (at, node, hlc);
CREATE INDEX alert_open ON alert (at) WHERE acked_ms IS NULL;

CREATE TABLE sensor_node (
    node    BIGINT NOT NULL,
    sensor  BIGINT NOT NULL,
    newest  BIGINT NOT NULL,
    PRIMARY KEY (node, sensor)
);
CREATE INDEX sensor_node_by_sensor ON sensor_node (sensor);
";

/// Every migration, in order: migration `i` takes the schema from version
/// `i` to `i + 1`. Shipped migrations are never edited.
const MIGRATIONS: &[&str] = &[V1];

/// The advisory lock key migrations run under ("tributar" in ASCII): any
/// fixed number that no other application on the database uses.
const MIGRATION_LOCK: i64 = 0x7472_6962_7574_6172;

/// The schema version after every migration of this binary.
pub(super) fn latest() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Brings the schema to the newest version in one transaction (see the
/// module docs), or refuses a newer one.
pub(super) fn migrate(client: &mut Client) -> Result<(), MergeError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tributary_schema (
             version    BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    let current: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0)::int8 FROM tributary_schema",
            &[],
        )?
        .try_get(0)?;
    let known = latest();
    if current > known {
        return Err(MergeError::NewerSchema {
            found: current,
            known,
        });
    }
    for (version, m) in (1i64..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.batch_execute(m)?;
        tx.execute(
            "INSERT INTO tributary_schema (version) VALUES ($1)",
            &[&version],
        )?;
    }
    tx.commit()?;
    Ok(())
}
