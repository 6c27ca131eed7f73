//! Alerts: recorded with the node's hybrid clock (persisted in `meta`, so
//! it resumes after a restart and never goes backwards), listed newest
//! first, resolved in place.

use rusqlite::{Row, params};
use tributary_core::codec::v1::{Alert, DetectorKind};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{SensorId, Timestamp};
use tributary_core::summary::Summary;

use super::{
    AlertQuery, NewAlert, ResolvedAlert, Store, StoreError, StoredAlert, from_sql, meta, set_meta,
    summary_at, to_sql,
};

/// Detectors by stored number (the wire index, never reused).
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

fn detector_number(d: DetectorKind) -> u8 {
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

const COLUMNS: &str = "id, hlc, sensor, at, value, score, detector, w_count, w_sum, w_min, w_max,
    w_sum_sq, w_first_ts, w_last_ts, resolved_at, peak";

fn alert_of(r: &Row<'_>) -> rusqlite::Result<Result<StoredAlert, StoreError>> {
    let detector: i64 = r.get(6)?;
    let window = summary_at(r, 7)?;
    let Some(detector) = usize::try_from(detector)
        .ok()
        .and_then(|i| DETECTORS.get(i).copied())
    else {
        return Ok(Err(StoreError::Corrupt("alert detector")));
    };
    Ok(Ok(StoredAlert {
        id: r.get(0)?,
        hlc: Hlc::from_u64(from_sql(r.get(1)?)),
        sensor: SensorId(r.get(2)?),
        at: Timestamp(from_sql(r.get(3)?)),
        value: r.get(4)?,
        score: r.get(5)?,
        detector,
        // An empty window's min/max are ±inf, stored as 0: restore EMPTY.
        window: if window.count == 0 {
            Summary::EMPTY
        } else {
            window
        },
        resolved_at: r.get::<_, Option<i64>>(14)?.map(|t| Timestamp(from_sql(t))),
        peak: r.get(15)?,
    }))
}

impl Store {
    /// Records an alert stamped with the next HLC tick at wall time `now`.
    pub fn record_alert(
        &mut self,
        a: &NewAlert,
        now: Timestamp,
    ) -> Result<StoredAlert, StoreError> {
        // The tick advances the in-memory clock even if the insert fails:
        // harmless, the clock only has to be monotonic.
        let hlc = self.clock.tick(now.as_millis())?;
        let w = if a.window.is_empty() {
            Summary {
                min: 0.0,
                max: 0.0,
                ..Summary::EMPTY
            }
        } else {
            a.window
        };
        let id = self.in_tx(|s| {
            s.conn
                .prepare_cached(
                    "INSERT INTO alert (hlc, sensor, at, value, score, detector, w_count, w_sum,
                     w_min, w_max, w_sum_sq, w_first_ts, w_last_ts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )?
                .execute(params![
                    to_sql(hlc.as_u64()),
                    a.sensor.0,
                    to_sql(a.at.as_millis()),
                    a.value,
                    a.score,
                    detector_number(a.detector),
                    to_sql(w.count),
                    w.sum,
                    w.min,
                    w.max,
                    w.sum_sq,
                    to_sql(w.first_ts.0),
                    to_sql(w.last_ts.0)
                ])?;
            let id = s.conn.last_insert_rowid();
            set_meta(&s.conn, meta::HLC, hlc.as_u64())?;
            Ok(id)
        })?;
        Ok(StoredAlert {
            id,
            hlc,
            sensor: a.sensor,
            at: a.at,
            value: a.value,
            score: a.score,
            detector: a.detector,
            window: a.window,
            resolved_at: None,
            peak: None,
        })
    }

    /// Closes the open alert(s) of `r.sensor` whose `at` is `r.opened_at`.
    pub fn resolve_alert(&mut self, r: &ResolvedAlert) -> Result<(), StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE alert SET resolved_at = ?3, peak = ?4
                 WHERE sensor = ?1 AND at = ?2 AND resolved_at IS NULL",
            )?
            .execute(params![
                r.sensor.0,
                to_sql(r.opened_at.as_millis()),
                to_sql(r.at.as_millis()),
                r.peak
            ])?;
        if n == 0 {
            return Err(StoreError::UnknownAlert {
                sensor: r.sensor,
                opened_at: r.opened_at.as_millis(),
            });
        }
        Ok(())
    }

    /// Alerts, newest first.
    pub fn alerts(&self, q: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        let open = if q.open_only {
            " AND resolved_at IS NULL"
        } else {
            ""
        };
        let sensor = if q.sensor.is_some() {
            "sensor = ?1"
        } else {
            "?1 IS NULL"
        };
        let sql =
            format!("SELECT {COLUMNS} FROM alert WHERE {sensor}{open} ORDER BY id DESC LIMIT ?2");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                q.sensor.map(|s| s.0),
                i64::try_from(q.limit).unwrap_or(i64::MAX)
            ],
            alert_of,
        )?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }
}

/// `meta` key: the highest alert id the hub acknowledged.
const ALERTS_ACKED: &str = "alerts_acked";

impl Store {
    /// The highest alert id the hub acknowledged (0: none).
    pub fn alerts_acked(&self) -> Result<i64, StoreError> {
        let v: Option<i64> = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([ALERTS_ACKED], |r| r.get(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        Ok(v.unwrap_or(0))
    }

    /// The alert outbox: up to `limit` alerts the hub has not acknowledged,
    /// oldest first, with their ids, as wire messages. The sync sends these
    /// before any aggregate delta (alerts are small and urgent). Ids are
    /// monotonic (`AUTOINCREMENT`), so "acknowledged up to id" is exact.
    pub fn pending_alerts(&self, limit: usize) -> Result<Vec<(i64, Alert)>, StoreError> {
        let acked = self.alerts_acked()?;
        let sql = format!("SELECT {COLUMNS} FROM alert WHERE id > ?1 ORDER BY id LIMIT ?2");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![acked, i64::try_from(limit).unwrap_or(i64::MAX)],
            alert_of,
        )?;
        let mut out = Vec::new();
        for r in rows {
            let a = r??;
            out.push((
                a.id,
                Alert {
                    node: self.node,
                    sensor: a.sensor,
                    hlc: a.hlc,
                    at: a.at,
                    value: a.value,
                    score: a.score,
                    detector: a.detector,
                    window: a.window,
                },
            ));
        }
        Ok(out)
    }

    /// The hub acknowledged every alert up to `id`. Monotonic: a lower id
    /// (a late, reordered acknowledgement) changes nothing; an id above the
    /// highest recorded alert is an error (the hub cannot have seen it).
    pub fn set_alerts_acked(&mut self, id: i64) -> Result<(), StoreError> {
        if id <= self.alerts_acked()? {
            return Ok(());
        }
        let max: i64 = self
            .conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM alert", [], |r| r.get(0))?;
        if id > max {
            return Err(StoreError::AlertAckAhead { id, max });
        }
        set_meta(&self.conn, ALERTS_ACKED, from_sql(id))
    }
}

#[cfg(test)]
mod outbox_tests {
    use super::*;
    use crate::store::StoreOptions;

    fn open(dir: &std::path::Path) -> Store {
        Store::open(&StoreOptions {
            path: dir.join("a.db"),
            synchronous_full: false,
            disk_budget_bytes: 1 << 30,
            keep_raw: false,
            node_id: None,
            cache_keys: 16,
        })
        .unwrap()
    }

    fn alert(sensor: u32, at: u64) -> NewAlert {
        NewAlert {
            sensor: SensorId(sensor),
            at: Timestamp(at),
            value: 9.0,
            score: 0.95,
            detector: DetectorKind::Ensemble,
            window: Summary::of(Timestamp(at), 9.0).unwrap(),
        }
    }

    #[test]
    fn pending_alerts_drain_in_order_and_the_ack_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        for i in 0..5 {
            s.record_alert(&alert(i, 1_000 + u64::from(i)), Timestamp(2_000))
                .unwrap();
        }
        let pending = s.pending_alerts(3).unwrap();
        let ids: Vec<i64> = pending.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(pending[0].1.node, s.node_id());
        assert_eq!(pending[0].1.window.count, 1);
        assert!(pending.windows(2).all(|w| w[0].1.hlc < w[1].1.hlc));
        s.set_alerts_acked(3).unwrap();
        s.set_alerts_acked(2).unwrap(); // late and reordered: no effect
        assert!(matches!(
            s.set_alerts_acked(6),
            Err(StoreError::AlertAckAhead { id: 6, max: 5 })
        ));
        drop(s);
        let s = open(dir.path());
        let ids: Vec<i64> = s
            .pending_alerts(10)
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(ids, [4, 5]);
    }
}
