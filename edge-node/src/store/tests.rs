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
        format!(
            "Integer({})",
            tributary_sqlite::latest(migrations::MIGRATIONS)
        )
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

#[test]
fn single_reading_rows_are_compact_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    // 70 distinct 1 s buckets in one batch: two 32-row INSERTs and a
    // remainder of single-row ones; -0.0 and a huge value are stored in
    // full or compact as `single` says, and all read back exactly.
    let values: Vec<f64> = (0..70)
        .map(|i| match i {
            3 => -0.0,
            4 => 1e150,
            5 => f64::MIN_POSITIVE,
            _ => i as f64 * 0.1 - 2.0,
        })
        .collect();
    let items = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            Item::Reading(Sample {
                sensor: SensorId(1),
                ts: Timestamp(i as u64 * 1_000 + 7),
                value: v,
            })
        })
        .collect();
    s.ingest(&[Submission {
        origin: None,
        items,
    }])
    .unwrap();
    let got = s.entries_after(0, 1_000).unwrap();
    let seconds: Vec<_> = got
        .iter()
        .filter(|(k, _)| k.resolution == Resolution::Second)
        .collect();
    assert_eq!(seconds.len(), 70);
    for (i, (k, e)) in seconds.iter().enumerate() {
        let want = Summary::of(Timestamp(i as u64 * 1_000 + 7), values[i]).unwrap();
        assert_eq!(k.bucket.0, i as u64);
        if i == 3 {
            // SQLite stores an integral REAL as an integer, so a stored
            // -0.0 reads back as +0.0 (as it always did): equal as numbers.
            assert_eq!((e.summary.min, e.summary.max), (want.min, want.max));
            assert_eq!(e.summary.min.to_bits(), 0);
        } else {
            assert_eq!(e.summary, want, "bit for bit");
        }
        assert_eq!(
            (e.summary.first_ts, e.summary.last_ts),
            (want.first_ts, want.last_ts)
        );
    }
    let full: i64 = s
        .conn
        .query_row(
            "SELECT count(*) FROM aggregate WHERE resolution = 0 AND min IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // Only -0.0 (sum +0.0, min -0.0) needs its full row.
    assert_eq!(full, 1);
    // Coarser buckets hold many readings and are stored in full.
    let minute = got
        .iter()
        .find(|(k, _)| k.resolution == Resolution::Minute && k.bucket.0 == 0)
        .unwrap();
    assert_eq!(minute.1.summary.count, 60);
    assert_eq!(minute.1.summary.last_ts, Timestamp(59_007));
}

#[test]
fn eviction_returns_every_freed_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&StoreOptions {
        path: dir.path().join("edge.db"),
        synchronous_full: false,
        disk_budget_bytes: 64 * 1024,
        keep_raw: true,
        node_id: None,
        cache_keys: 64,
    })
    .unwrap();
    let mut evicted = false;
    for b in 0..200u64 {
        let items = (0..200u64)
            .map(|i| {
                Item::Reading(Sample {
                    sensor: SensorId((i % 4) as u32),
                    ts: Timestamp((b * 200 + i) * 1_000),
                    value: i as f64,
                })
            })
            .collect();
        let r = s
            .ingest(&[Submission {
                origin: None,
                items,
            }])
            .unwrap();
        if r.evicted.raw > 0 || r.evicted.bucket_1s > 0 {
            evicted = true;
            // `PRAGMA incremental_vacuum` frees one page per step: all
            // of them, not just the first.
            let free: i64 = s
                .conn
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                .unwrap();
            assert_eq!(free, 0, "after batch {b}");
        }
    }
    assert!(evicted);
}

#[test]
fn the_sync_view_skips_finer_buckets_and_still_ends_at_version_high() {
    use tributary_core::sync::DeltaSource;
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    // Two minutes of 1 Hz readings: 120 one-second rows, 2 minute rows,
    // 1 hour row, 1 day row (each rewritten many times).
    let subs: Vec<Submission> = (0..120)
        .map(|i| reading(i, 1_763_856_000_000 + i * 1_000, i as f64))
        .collect();
    s.ingest(&subs).unwrap();
    let all = s.entries_after(0, 10_000).unwrap();
    let view = super::outbox::SyncView {
        store: &s,
        finest: Resolution::Minute,
    };
    let node = s.node_id();
    let synced = view.entries_since(node, 0, 10_000).unwrap();
    let want: Vec<_> = all
        .iter()
        .filter(|(k, _)| k.resolution != Resolution::Second)
        .copied()
        .collect();
    assert_eq!(synced, want);
    assert_eq!(synced.len(), 4);
    assert!(synced.windows(2).all(|w| w[0].1.version < w[1].1.version));
    // The watermark protocol still covers every version up to the top.
    assert_eq!(view.version_high(node), s.version_high());
    let day = synced.last().unwrap();
    assert_eq!(day.1.summary.count, 120);
}

/// Anti-entropy on the gateway: the digest walks every (sensor, day) cell
/// newest first, page by page, and a re-stamp gives a cell's synced rows
/// fresh versions (so they are sent again) without changing them.
#[test]
fn digest_walks_cells_and_restamp_resends_a_cell() {
    use tributary_core::ids::Bucket;
    use tributary_core::sync::digest::Cell;
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    const DAY: u64 = 86_400_000;
    // Sensors 1..=3 on days 10 and 11, two readings each.
    let mut seq = 0;
    for day in [10, 11] {
        for sensor in 1..=3 {
            for k in 0..2 {
                seq += 1;
                let mut sub = reading(seq, day * DAY + k * 3_600_000, 1.0 + k as f64);
                if let Some(Item::Reading(r)) = sub.items.first_mut() {
                    r.sensor = SensorId(sensor);
                }
                s.ingest(&[sub]).unwrap();
            }
        }
    }
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = s.digest_cells(after, 4, Resolution::Minute).unwrap();
        walked.extend(page.iter().map(|(c, h)| (*c, h.entries())));
        if page.len() < 4 {
            break;
        }
        after = page.last().map(|(c, _)| *c);
    }
    let cell = |day, sensor| Cell {
        day: Bucket(day),
        sensor: SensorId(sensor),
    };
    // Each cell hashes its day row and its two hour rows.
    assert_eq!(
        walked,
        [(11, 3), (11, 2), (11, 1), (10, 3), (10, 2), (10, 1)].map(|(d, x)| (cell(d, x), 3))
    );
    // Not offered when the uplink does not sync hour buckets.
    assert!(s.digest_cells(None, 4, Resolution::Day).unwrap().is_empty());

    let high = s.version_high();
    let before = s.digest_cells(None, 6, Resolution::Minute).unwrap();
    let target = cell(10, 2);
    // Minute, hour and day rows: 2 + 2 + 1 (1 s rows are not synced here).
    assert_eq!(s.restamp_cells(&[target], Resolution::Minute).unwrap(), 5);
    assert_eq!(s.version_high(), high + 5);
    let resent = s.entries_after(high, 100).unwrap();
    assert_eq!(resent.len(), 5);
    assert!(resent.iter().all(|(k, _)| target.contains(k)));
    assert_eq!(
        resent.iter().map(|(_, e)| e.summary.count).sum::<u64>(),
        2 + 2 + 2,
        "same summaries: 2 minutes and 2 hours of one reading, a day of two"
    );
    let after_restamp = s.digest_cells(None, 6, Resolution::Minute).unwrap();
    for ((c, h0), (c1, h1)) in before.iter().zip(&after_restamp) {
        assert_eq!(c, c1);
        assert_eq!(*c == target, h0.hash() != h1.hash(), "{c:?}");
    }
}
