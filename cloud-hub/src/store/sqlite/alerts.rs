//! The alert and sensor-directory queries of [`SqliteStore`] (schema
//! version 2, see the parent module).
//!
//! Alerts are listed newest event time first, ties broken by `(node, hlc)`
//! as SQL orders the stored integers: a total order, so a cursor of
//! `(at, node, hlc)` compared as an SQL row value resumes exactly after the
//! previous page. The `alert_by_time` index serves that order.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, TransactionBehavior, params, params_from_iter};
use tributary_core::codec::v1::{Alert, DetectorKind};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, SensorId, Timestamp};

use super::{SqliteStore, summary_at};
use crate::store::{AlertOutcome, AlertQuery, MergeError, SensorRecord, StoredAlert};
use crate::store::{from_sql, summary_columns, to_sql};

/// The wire index of a detector (stable: indices are never reused).
fn detector_index(d: DetectorKind) -> i64 {
    match d {
        DetectorKind::ZScore => 0,
        DetectorKind::MadZScore => 1,
        DetectorKind::Cusum => 2,
        DetectorKind::PageHinkley => 3,
        DetectorKind::Flatline => 4,
        DetectorKind::RateOfChange => 5,
        DetectorKind::Range => 6,
        DetectorKind::Seasonal => 7,
        DetectorKind::Ensemble => 8,
    }
}

fn detector_of(i: i64) -> rusqlite::Result<DetectorKind> {
    Ok(match i {
        0 => DetectorKind::ZScore,
        1 => DetectorKind::MadZScore,
        2 => DetectorKind::Cusum,
        3 => DetectorKind::PageHinkley,
        4 => DetectorKind::Flatline,
        5 => DetectorKind::RateOfChange,
        6 => DetectorKind::Range,
        7 => DetectorKind::Seasonal,
        8 => DetectorKind::Ensemble,
        _ => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                6,
                rusqlite::types::Type::Integer,
                "unknown detector".into(),
            ));
        }
    })
}

const ALERT_COLS: &str = "node, hlc, sensor, at, value_bits, score_bits, detector, \
    w_count, w_sum_bits, w_min_bits, w_max_bits, w_sum_sq_bits, w_first_ts, w_last_ts, \
    received_ms, acked_ms";

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAlert> {
    Ok(StoredAlert {
        alert: Alert {
            node: NodeId(from_sql(r.get(0)?)),
            sensor: SensorId(r.get(2)?),
            hlc: Hlc::from_u64(from_sql(r.get(1)?)),
            at: Timestamp(from_sql(r.get(3)?)),
            value: f64::from_bits(from_sql(r.get(4)?)),
            score: f64::from_bits(from_sql(r.get(5)?)),
            detector: detector_of(r.get(6)?)?,
            window: summary_at(r, 7)?,
        },
        received_ms: from_sql(r.get(14)?),
        acked_ms: r.get::<_, Option<i64>>(15)?.map(from_sql),
    })
}

/// A time bound as the signed SQL integer: validated alert times are at
/// most `i64::MAX`, so clamping keeps the comparison's meaning.
fn time_sql(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Writes validated alerts in one transaction.
    pub(super) fn write_alerts(
        &mut self,
        alerts: &[Alert],
        received_ms: u64,
    ) -> Result<AlertOutcome, MergeError> {
        let mut out = AlertOutcome::default();
        if alerts.is_empty() {
            return Ok(out);
        }
        // Dropped uncommitted on error: nothing of the call is kept.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO alert ({ALERT_COLS}) VALUES
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, NULL)
                 ON CONFLICT (node, hlc) DO NOTHING"
            ))?;
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
                let row = head
                    .into_iter()
                    .chain(summary_columns(&a.window))
                    .chain([to_sql(received_ms)]);
                let changed = insert.execute(params_from_iter(row))?;
                if changed > 0 {
                    out.new += 1;
                } else {
                    out.duplicate += 1;
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    pub(super) fn query_alerts(&self, q: &AlertQuery) -> Result<Vec<StoredAlert>, MergeError> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let mut sql = format!("SELECT {ALERT_COLS} FROM alert WHERE 1");
        let mut args: Vec<Value> = Vec::new();
        if let Some(n) = q.node {
            sql.push_str(" AND node = ?");
            args.push(Value::Integer(to_sql(n.0)));
        }
        if let Some(s) = q.sensor {
            sql.push_str(" AND sensor = ?");
            args.push(Value::Integer(i64::from(s.0)));
        }
        match q.acknowledged {
            Some(true) => sql.push_str(" AND acked_ms IS NOT NULL"),
            Some(false) => sql.push_str(" AND acked_ms IS NULL"),
            None => {}
        }
        if let Some(from) = q.from {
            sql.push_str(" AND at >= ?");
            args.push(Value::Integer(time_sql(from)));
        }
        if let Some(to) = q.to {
            sql.push_str(" AND at < ?");
            args.push(Value::Integer(time_sql(to)));
        }
        if let Some(c) = q.after {
            sql.push_str(" AND (at, node, hlc) < (?, ?, ?)");
            args.push(Value::Integer(time_sql(c.at)));
            args.push(Value::Integer(to_sql(c.node.0)));
            args.push(Value::Integer(to_sql(c.hlc.as_u64())));
        }
        sql.push_str(" ORDER BY at DESC, node DESC, hlc DESC LIMIT ?");
        args.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        // At most 2^6 shapes of the statement: the cache keeps the hot ones.
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), alert_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub(super) fn set_acked(
        &mut self,
        node: NodeId,
        hlc: Hlc,
        acked_ms: u64,
    ) -> Result<bool, MergeError> {
        let key = params![to_sql(node.0), to_sql(hlc.as_u64())];
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE alert SET acked_ms = ?3 WHERE node = ?1 AND hlc = ?2 AND acked_ms IS NULL",
            )?
            .execute(params![
                to_sql(node.0),
                to_sql(hlc.as_u64()),
                to_sql(acked_ms)
            ])?;
        if changed > 0 {
            return Ok(true);
        }
        // Already acknowledged (first time kept) or absent.
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM alert WHERE node = ?1 AND hlc = ?2")?
            .query_row(key, |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The sensor directory, all sensors or one.
    pub(super) fn sensor_records(
        &self,
        only: Option<SensorId>,
    ) -> Result<Vec<SensorRecord>, MergeError> {
        let mut stmt;
        let rows = match only {
            Some(s) => {
                stmt = self.conn.prepare_cached(
                    "SELECT sensor, node, newest FROM sensor_node WHERE sensor = ?1",
                )?;
                stmt.query(params![s.0])?
            }
            None => {
                stmt = self.conn.prepare_cached(
                    "SELECT sensor, node, newest FROM sensor_node ORDER BY sensor",
                )?;
                stmt.query([])?
            }
        };
        let mut read = Vec::new();
        let mut rows = rows;
        while let Some(r) = rows.next()? {
            read.push((
                SensorId(r.get(0)?),
                NodeId(from_sql(r.get(1)?)),
                Timestamp(from_sql(r.get(2)?)),
            ));
        }
        Ok(SensorRecord::fold(read))
    }
}
