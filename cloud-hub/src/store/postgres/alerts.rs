//! The alert and sensor-directory queries of [`PgStore`](super::PgStore):
//! the same tables, order and paging as SQLite's (`sqlite/alerts.rs`).
//!
//! Alerts are listed newest event time first, ties broken by `(node, hlc)`
//! as SQL orders the stored integers: a total order, so a cursor of
//! `(at, node, hlc)` compared as a row value resumes exactly after the
//! previous page, and both backends page identically.

use std::collections::HashMap;

use postgres::Statement;
use postgres::types::ToSql;
use tributary_core::codec::v1::{Alert, DetectorKind};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, SensorId, Timestamp};

use super::{Conn, sensor_of, summary_at};
use crate::store::{AlertOutcome, AlertQuery, MergeError, SensorRecord, StoredAlert};
use crate::store::{from_sql, summary_columns, to_sql};

/// Detectors by their wire index (`#[n(i)]`; indices are never reused, so
/// stored values keep their meaning).
const DETECTORS: [DetectorKind; 9] = [
    DetectorKind::ZScore,
    DetectorKind::MadZScore,
    DetectorKind::Cusum,
    DetectorKind::PageHinkley,
    DetectorKind::Flatline,
    DetectorKind::RateOfChange,
    DetectorKind::Range,
    DetectorKind::Seasonal,
    DetectorKind::Ensemble,
];

const ALERT_COLS: &str = "node, hlc, sensor, at, value_bits, score_bits, detector, \
    w_count, w_sum_bits, w_min_bits, w_max_bits, w_sum_sq_bits, w_first_ts, w_last_ts, \
    received_ms, acked_ms";

/// Most distinct filter shapes of [`query`]: 2^6 (each filter present or
/// not, `acknowledged` three ways) — all of them fit the cache.
const QUERY_CACHE: usize = 128;

/// The prepared alert statements of one connection, and the alert queries
/// prepared so far by shape.
pub(super) struct Statements {
    insert: Statement,
    ack: Statement,
    pub(super) open_count: Statement,
    sensors_all: Statement,
    sensors_one: Statement,
    queries: HashMap<String, Statement>,
}

impl Statements {
    pub(super) fn prepare(client: &mut postgres::Client) -> Result<Statements, postgres::Error> {
        let arrays: Vec<String> = (1..=14).map(|i| format!("${i}::int8[]")).collect();
        Ok(Statements {
            // Re-sends (same node and HLC, also twice within one call) are
            // skipped; RETURNING counts the new ones.
            insert: client.prepare(&format!(
                "INSERT INTO alert ({ALERT_COLS})
                 SELECT *, $15::int8, NULL::int8 FROM UNNEST({})
                 ON CONFLICT (node, hlc) DO NOTHING
                 RETURNING hlc",
                arrays.join(", ")
            ))?,
            // One round trip: the update, or whether the alert exists
            // (already acknowledged: the first time is kept).
            ack: client.prepare(
                "WITH u AS (
                     UPDATE alert SET acked_ms = $3
                     WHERE node = $1 AND hlc = $2 AND acked_ms IS NULL RETURNING 1
                 )
                 SELECT EXISTS (SELECT 1 FROM u)
                     OR EXISTS (SELECT 1 FROM alert WHERE node = $1 AND hlc = $2)",
            )?,
            open_count: client.prepare("SELECT count(*) FROM alert WHERE acked_ms IS NULL")?,
            sensors_all: client
                .prepare("SELECT sensor, node, newest FROM sensor_node ORDER BY sensor")?,
            sensors_one: client
                .prepare("SELECT sensor, node, newest FROM sensor_node WHERE sensor = $1")?,
            queries: HashMap::new(),
        })
    }
}

fn detector_index(d: DetectorKind) -> i64 {
    DETECTORS
        .iter()
        .position(|x| *x == d)
        .and_then(|i| i64::try_from(i).ok())
        .unwrap_or(-1)
}

fn detector_of(i: i64) -> Result<DetectorKind, MergeError> {
    usize::try_from(i)
        .ok()
        .and_then(|i| DETECTORS.get(i).copied())
        .ok_or(MergeError::Corrupt("unknown detector"))
}

fn alert_row(r: &postgres::Row) -> Result<StoredAlert, MergeError> {
    let u = |i: usize| -> Result<u64, postgres::Error> { Ok(from_sql(r.try_get(i)?)) };
    Ok(StoredAlert {
        alert: Alert {
            node: NodeId(u(0)?),
            hlc: Hlc::from_u64(u(1)?),
            sensor: sensor_of(r.try_get(2)?)?,
            at: Timestamp(u(3)?),
            value: f64::from_bits(u(4)?),
            score: f64::from_bits(u(5)?),
            detector: detector_of(r.try_get(6)?)?,
            window: summary_at(r, 7)?,
        },
        received_ms: u(14)?,
        acked_ms: r.try_get::<_, Option<i64>>(15)?.map(from_sql),
    })
}

/// A time bound as the signed SQL integer: validated alert times are at
/// most `i64::MAX`, so clamping keeps the comparison's meaning.
fn time_sql(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// Writes validated alerts in one statement (its own transaction).
pub(super) fn insert(
    c: &mut Conn,
    alerts: &[Alert],
    received_ms: u64,
) -> Result<AlertOutcome, MergeError> {
    let mut cols: [Vec<i64>; 14] = Default::default();
    for a in alerts {
        let head = [
            to_sql(a.node.0),
            to_sql(a.hlc.as_u64()),
            i64::from(a.sensor.0),
            to_sql(a.at.0),
            to_sql(a.value.to_bits()),
            to_sql(a.score.to_bits()),
            detector_index(a.detector),
        ];
        let row = head.into_iter().chain(summary_columns(&a.window));
        for (col, x) in cols.iter_mut().zip(row) {
            col.push(x);
        }
    }
    let received = to_sql(received_ms);
    let mut params: Vec<&(dyn ToSql + Sync)> =
        cols.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
    params.push(&received);
    let new = c.client.execute(&c.stmts.alerts.insert, &params)?;
    let total = alerts.len() as u64;
    Ok(AlertOutcome {
        new,
        duplicate: total.saturating_sub(new),
    })
}

pub(super) fn query(c: &mut Conn, q: &AlertQuery) -> Result<Vec<StoredAlert>, MergeError> {
    let mut sql = format!("SELECT {ALERT_COLS} FROM alert WHERE TRUE");
    let mut args: Vec<i64> = Vec::new();
    let mut arg = |sql: &mut String, text: &str, v: i64| {
        args.push(v);
        sql.push_str(&text.replace('?', &format!("${}", args.len())));
    };
    if let Some(n) = q.node {
        arg(&mut sql, " AND node = ?", to_sql(n.0));
    }
    if let Some(s) = q.sensor {
        arg(&mut sql, " AND sensor = ?", i64::from(s.0));
    }
    match q.acknowledged {
        Some(true) => sql.push_str(" AND acked_ms IS NOT NULL"),
        Some(false) => sql.push_str(" AND acked_ms IS NULL"),
        None => {}
    }
    if let Some(from) = q.from {
        arg(&mut sql, " AND at >= ?", time_sql(from));
    }
    if let Some(to) = q.to {
        arg(&mut sql, " AND at < ?", time_sql(to));
    }
    if let Some(cur) = q.after {
        arg(&mut sql, " AND (at, node, hlc) < (?", time_sql(cur.at));
        arg(&mut sql, ", ?", to_sql(cur.node.0));
        arg(&mut sql, ", ?)", to_sql(cur.hlc.as_u64()));
    }
    sql.push_str(" ORDER BY at DESC, node DESC, hlc DESC");
    arg(
        &mut sql,
        " LIMIT ?",
        i64::try_from(q.limit).unwrap_or(i64::MAX),
    );
    let stmt = match c.stmts.alerts.queries.get(&sql) {
        Some(s) => s.clone(),
        None => {
            let s = c.client.prepare(&sql)?;
            if c.stmts.alerts.queries.len() < QUERY_CACHE {
                c.stmts.alerts.queries.insert(sql, s.clone());
            }
            s
        }
    };
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
    c.client
        .query(&stmt, &params)?
        .iter()
        .map(alert_row)
        .collect()
}

pub(super) fn ack(c: &mut Conn, node: NodeId, hlc: Hlc, acked_ms: u64) -> Result<bool, MergeError> {
    let found: bool = c
        .client
        .query_one(
            &c.stmts.alerts.ack,
            &[&to_sql(node.0), &to_sql(hlc.as_u64()), &to_sql(acked_ms)],
        )?
        .try_get(0)?;
    Ok(found)
}

/// The sensor directory, all sensors or one.
pub(super) fn sensor_records(
    c: &mut Conn,
    only: Option<SensorId>,
) -> Result<Vec<SensorRecord>, MergeError> {
    let rows = match only {
        Some(s) => c
            .client
            .query(&c.stmts.alerts.sensors_one, &[&i64::from(s.0)])?,
        None => c.client.query(&c.stmts.alerts.sensors_all, &[])?,
    };
    let read = rows
        .iter()
        .map(|r| {
            Ok((
                sensor_of(r.try_get(0)?)?,
                NodeId(from_sql(r.try_get(1)?)),
                Timestamp(from_sql(r.try_get(2)?)),
            ))
        })
        .collect::<Result<Vec<_>, MergeError>>()?;
    Ok(SensorRecord::fold(read))
}
