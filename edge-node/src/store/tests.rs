//! Unit tests that need the store's internals.

use super::*;
use crate::reading::{Item, Origin, Sample, Submission};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreOptions {
        path: dir.path().join("sub/edge.db"),
        synchronous_full: false,
        disk_budget_bytes: 0,
        keep_raw: true,
        node_id: None,
        cache_keys: 64,
    })
    .unwrap()
}

fn reading(seq: u64, ts: u64, value: f64) -> Submission {
    Submission {
        origin: Some(Origin {
            source: "dev".into(),
            seq,
        }),
        items: vec![Item::Reading(Sample {
            sensor: SensorId(1),
            ts: Timestamp(ts),
            value,
        })],
    }
}

#[test]
fn pragmas_are_set_on_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let q = |p: &str| -> String {
        s.conn
            .query_row(&format!("PRAGMA {p}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| format!("{v:?}"))
            .unwrap()
    };
    assert_eq!(q("auto_vacuum"), "Integer(2)");
    assert_eq!(q("journal_mode"), "Text(\"wal\")");
    assert_eq!(q("foreign_keys"), "Integer(1)");
    assert_eq!(
        q("user_version"),
        format!("Integer({})", migrations::latest())
    );
}

#[test]
fn a_failed_batch_drops_the_caches_and_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.ingest(&[reading(1, 1_000, 1.0)]).unwrap();
    let bad = [reading(2, 2_000, 2.0), reading(3, 3_000, f64::NAN)];
    assert_eq!(s.ingest(&bad).unwrap_err().reason(), "non_finite");
    assert!(s.sources.is_empty());
    assert_eq!(s.version_high(), 4);
    // The cached 1 m/1 h/1 d rows were dropped: the next batch reads the
    // committed ones and versions continue from the committed high.
    let r = s.ingest(&[reading(2, 2_000, 2.0)]).unwrap();
    assert_eq!(r.outcomes, vec![Outcome::Applied { readings: 1 }]);
    assert_eq!(r.version_high, 8);
    let day = s
        .aggregates(&AggregateQuery {
            sensor: SensorId(1),
            resolution: Resolution::Day,
            from: Timestamp(0),
            to: Timestamp(u64::MAX / 2),
            limit: 10,
        })
        .unwrap();
    assert_eq!(day.len(), 1);
    assert_eq!(day[0].summary.count, 2);
    assert_eq!(day[0].version, 8);
}

#[test]
fn below_floor_skips_only_that_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.floors = [10, 0, 0];
    let r = s
        .ingest(&[reading(1, 5_000, 1.0), reading(2, 15_000, 1.0)])
        .unwrap();
    assert_eq!(r.late_skipped, 1);
    // 1 m, 1 h, 1 d shared by both, plus the 1 s bucket 15: 4 keys.
    assert_eq!(r.version_high, 4);
}
